/**
 * Cross-language round trip through one gateway: what the Python adapter
 * writes, the TypeScript adapter reads identically (summaries included, in the
 * TypeScript fold's form), and the reverse; a task bound from Python resumes
 * from TypeScript; a Python and a TypeScript writer share one summary.
 */

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { foldSessionSummary } from "@anthropic-ai/claude-agent-sdk";
import type { SessionKey, SessionStoreEntry } from "@anthropic-ai/claude-agent-sdk";

import { GatewaySessionStore, toStoredSummary } from "../src/index.js";
import { FaultFetch } from "./faults.js";
import { Gateway, PACKAGE_ROOT, newTaskId, pythonBinary, startGateway } from "./gateway.js";

const SCRIPT = join(PACKAGE_ROOT, "test", "crosslang.py");
const PYTHON_TIMEOUT_MS = 60_000;

type Json = Record<string, unknown>;

describe("cross-language round trip (Python adapter and TypeScript adapter)", () => {
  let gateway: Gateway;
  before(async () => {
    gateway = await startGateway();
  });
  after(async () => {
    await gateway?.stop();
  });

  const python = async (taskId: string, ...args: string[]): Promise<Json> => {
    const { stdout } = await promisify(execFile)(pythonBinary(), [SCRIPT, args[0]!, gateway.url, taskId, ...args.slice(1)], {
      env: { ...process.env, GATEWAY_TOKEN: gateway.token(taskId) },
      timeout: PYTHON_TIMEOUT_MS,
    });
    return JSON.parse(stdout.trim().split("\n").pop()!) as Json;
  };
  const store = (taskId: string): GatewaySessionStore =>
    new GatewaySessionStore({ baseUrl: gateway.url, taskId, token: gateway.token(taskId) });

  test("a session Python appended loads identically in TypeScript, its summary as the TypeScript fold gives it, and the bound task resumes from TypeScript", async () => {
    const taskId = newTaskId();
    const written = await python(taskId, "write");
    const pyKey = written["key"] as { project_key: string; session_id: string };
    const pyBinding = written["binding"] as Json;

    // A fresh TypeScript worker resumes the task: binding, lease, load.
    const ts = store(taskId);
    const binding = await ts.binding();
    assert.deepStrictEqual(binding, {
      claudeSessionId: pyBinding["claude_session_id"],
      projectKey: pyBinding["project_key"],
      cwd: pyBinding["cwd"],
      createdMs: pyBinding["created_ms"],
    });
    assert.strictEqual(binding!.claudeSessionId, pyKey.session_id);
    assert.ok((await ts.lease()) >= 2, "a lease newer than the Python writer's");
    const key: SessionKey = { projectKey: binding!.projectKey, sessionId: binding!.claudeSessionId };
    const main = written["main"] as SessionStoreEntry[];
    assert.strictEqual(main.length, 6);
    assert.deepStrictEqual(await ts.load(key), main);
    const subkeys = written["subkeys"] as Record<string, SessionStoreEntry[]>;
    assert.deepStrictEqual((await ts.listSubkeys(key)).sort(), Object.keys(subkeys).sort());
    for (const [subpath, entries] of Object.entries(subkeys)) {
      assert.deepStrictEqual(await ts.load({ ...key, subpath }), entries);
    }

    const [summary, ...others] = await ts.listSessionSummaries(key.projectKey);
    assert.strictEqual(others.length, 0);
    const expected = foldSessionSummary(undefined, key, main).data;
    assert.deepStrictEqual(summary!.data, expected);
    assert.strictEqual(summary!.data["customTitle"], "Failing test");
    // Python stored the same summary in its own (snake_case) form.
    const pySummaries = written["summaries"] as Json[];
    assert.deepStrictEqual(pySummaries[0]!["data"], toStoredSummary(expected));

    // The resumed worker continues the session under its lease.
    const more = [{ type: "user", uuid: randomUUID(), message: { role: "user", content: "continue" } }];
    await ts.append(key, more);
    assert.deepStrictEqual(await ts.load(key), [...main, ...more]);
    await ts.close();
  });

  test("a session TypeScript appended loads identically in Python, its summary as Python's fold gives it, and the task TypeScript bound resumes from Python", async () => {
    const taskId = newTaskId();
    const sessionId = randomUUID();
    const cwd = `/workspace/${taskId}`;
    const key: SessionKey = { projectKey: cwd.replace(/[^A-Za-z0-9]/g, "-"), sessionId };
    const at = (second: number) => `2025-03-01T10:00:${String(second).padStart(2, "0")}.000Z`;
    const base = (type: string, content: string, second: number): SessionStoreEntry => ({
      type,
      uuid: randomUUID(),
      sessionId,
      cwd,
      isSidechain: false,
      timestamp: at(second),
      message: { role: type, content },
    });
    const batches: SessionStoreEntry[][] = [
      [{ ...base("user", "Write the parser", 1), gitBranch: "feature" }, base("assistant", "On it", 2)],
      [{ type: "custom-title", customTitle: "Parser", sessionId }, { type: "tag", tag: "parsing", sessionId }],
      [{ ...base("user", "Add tests", 3), lastPrompt: "Add tests" }, { ...base("assistant", "Added", 4), summary: "Parser with tests" }],
    ];
    const subkeys: Record<string, SessionStoreEntry[]> = {
      "subagents/agent-a": [{ ...base("user", "sub a", 5), isSidechain: true }],
      "subagents/agent-b": [{ ...base("user", "sub b", 6), isSidechain: true }],
    };
    const ts = store(taskId);
    const epoch = await ts.lease();
    for (const batch of batches) await ts.append(key, batch);
    for (const [subpath, entries] of Object.entries(subkeys)) await ts.append({ ...key, subpath }, entries);
    const binding = await ts.bind(sessionId, key.projectKey, cwd);
    await ts.close();

    // A fresh Python worker resumes the task: binding, lease, load.
    const read = await python(taskId, "resume");
    assert.deepStrictEqual(read["binding"], {
      claude_session_id: binding.claudeSessionId,
      project_key: binding.projectKey,
      cwd: binding.cwd,
      created_ms: binding.createdMs,
    });
    assert.strictEqual(read["epoch"], epoch + 1);
    const main = batches.flat();
    assert.deepStrictEqual(read["main"], main);
    assert.deepStrictEqual(read["subkeys"], subkeys);
    const summaries = read["summaries"] as Json[];
    assert.strictEqual(summaries.length, 1);
    assert.deepStrictEqual(summaries[0]!["data"], read["fold"], "Python's own fold of the loaded entries");
    assert.deepStrictEqual(summaries[0]!["data"], toStoredSummary(foldSessionSummary(undefined, key, main).data));
    assert.strictEqual((summaries[0]!["data"] as Json)["custom_title"], "Parser");
  });

  test("a Python and a TypeScript writer on one session lose no summary update: in turns and at once", async () => {
    const taskId = newTaskId();
    const key: SessionKey = { projectKey: "-workspace-shared", sessionId: randomUUID() };
    const turns = 6;
    const rounds = 18;
    const child = spawn(pythonBinary(), [SCRIPT, "cas", gateway.url, taskId, key.projectKey, key.sessionId], {
      env: { ...process.env, GATEWAY_TOKEN: gateway.token(taskId) },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 2 * PYTHON_TIMEOUT_MS);
    try {
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      const nextLine = async (): Promise<unknown> => JSON.parse((await lines.next()).value as string);
      assert.strictEqual(await nextLine(), "ready");
      const recorder = new FaultFetch();
      const ts = new GatewaySessionStore({
        baseUrl: gateway.url,
        taskId,
        token: gateway.token(taskId),
        fetch: recorder.fetch,
      });
      const append = (i: number) => ts.append(key, [{ type: "x", uuid: randomUUID(), gitBranch: `ts-${i}` }]);

      // In turns: each writer appends after the other moved the summary past what it last wrote.
      for (let i = 0; i < turns; i++) {
        child.stdin!.write(`one ${i}\n`);
        assert.strictEqual(await nextLine(), "ok");
        await append(i);
      }
      // Every turn after the first found its summary moved on and wrote it by compare-and-set.
      assert.ok(
        recorder.matching("PUT", "/summary").length >= turns - 1,
        `${recorder.matching("PUT", "/summary").length} compare-and-set writes in ${turns} turns`,
      );
      // At once: both writers append 15 ms apart.
      child.stdin!.write(`burst ${turns} ${rounds}\n`);
      for (let i = turns; i < rounds; i++) {
        await append(i);
        await new Promise((r) => setTimeout(r, 15));
      }
      assert.strictEqual(await nextLine(), "done");
      child.stdin!.end();
      await ts.close();

      // Each writer's last value survives: neither folded on a summary the other had moved past.
      const [summary] = await store(taskId).listSessionSummaries(key.projectKey);
      assert.strictEqual(summary!.data["customTitle"], `py-${rounds - 1}`);
      assert.strictEqual(summary!.data["gitBranch"], `ts-${rounds - 1}`);
      const read = await python(taskId, "read", key.projectKey, key.sessionId);
      const pyData = (read["summaries"] as Json[])[0]!["data"] as Json;
      assert.strictEqual(pyData["custom_title"], `py-${rounds - 1}`);
      assert.strictEqual(pyData["git_branch"], `ts-${rounds - 1}`);
      assert.deepStrictEqual(Object.keys(pyData).filter((k) => /[A-Z]/.test(k)), [], "stored keys are snake_case");
      assert.strictEqual((read["main"] as unknown[]).length, 2 * rounds);
      const stored = await gateway.storedSummary(taskId, key);
      assert.strictEqual(stored.version, 2 * rounds, "one summary version per append");
    } finally {
      clearTimeout(killer);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
