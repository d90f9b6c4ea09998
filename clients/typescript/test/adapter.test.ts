/** The adapter's behaviour beyond the contracts: retries, idempotency, typed errors, summaries, close, helpers. */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { foldSessionSummary } from "@anthropic-ai/claude-agent-sdk";
import type { SessionKey, SessionStoreEntry } from "@anthropic-ai/claude-agent-sdk";

import {
  BindingConflictError,
  EpochRequiredError,
  ForbiddenError,
  GatewayError,
  GatewaySessionStore,
  GatewayUnavailableError,
  SUMMARY_KEYS,
  StaleWriterError,
  StoreClosedError,
  TaskErasedError,
  UnauthorizedError,
  UnknownEpochError,
  fromStoredSummary,
  heal,
  toStoredSummary,
} from "../src/index.js";
import type { GatewaySessionStoreOptions } from "../src/index.js";
import { FaultFetch, envelope, isEntriesPost, okEntries, scripted } from "./faults.js";
import { Gateway, newTaskId, startGateway } from "./gateway.js";

const KEY: SessionKey = { projectKey: "-workspace-t", sessionId: "s-1" };
const quiet = { warn: () => {} };

function entry(fields: Record<string, unknown> = {}): SessionStoreEntry {
  return { type: "user", uuid: randomUUID(), message: { role: "user", content: "hi" }, ...fields };
}

describe("retries without a gateway (scripted answers)", () => {
  const store = (fetchImpl: typeof fetch, extra: Partial<GatewaySessionStoreOptions> = {}) =>
    new GatewaySessionStore({
      baseUrl: "http://127.0.0.1:9",
      taskId: "t",
      fetch: fetchImpl,
      backoffMs: [1, 1],
      logger: quiet,
      ...extra,
    });

  for (const code of ["backend_unavailable", "timeout", "draining", "conflict", "overloaded"]) {
    test(`a ${code} answer is retried and the second attempt's answer returned`, async () => {
      const script = scripted([envelope(code === "conflict" ? 409 : 503, code), okEntries([{ type: "x" }])]);
      assert.deepStrictEqual(await store(script.fetch).load(KEY), [{ type: "x" }]);
      assert.strictEqual(script.calls.length, 2);
    });
  }

  test("a 502, 503 or 504 without the gateway's envelope (a proxy) is retried", async () => {
    for (const status of [502, 503, 504]) {
      const script = scripted([() => new Response("bad gateway", { status }), okEntries([])]);
      assert.deepStrictEqual(await store(script.fetch).load(KEY), []);
      assert.strictEqual(script.calls.length, 2, `status ${status}`);
    }
  });

  const refusals: Array<[number, string, typeof GatewayError]> = [
    [502, "checksum_mismatch", GatewayError],
    [502, "integrity_violation", GatewayError],
    [500, "internal", GatewayError],
    [400, "invalid_request", GatewayError],
    [401, "unauthorized", UnauthorizedError],
    [403, "forbidden", ForbiddenError],
    [409, "task_erased", TaskErasedError],
    [409, "stale_writer", StaleWriterError],
    [409, "unknown_epoch", UnknownEpochError],
    [409, "epoch_required", EpochRequiredError],
    [409, "binding_conflict", BindingConflictError],
  ];
  for (const [status, code, ErrorClass] of refusals) {
    test(`a ${status} ${code} is raised at once as ${ErrorClass.name}, never retried`, async () => {
      const script = scripted([envelope(status, code), okEntries([])]);
      await assert.rejects(store(script.fetch).load(KEY), (error: GatewayError) => {
        assert.ok(error instanceof ErrorClass, `${error.name} is not ${ErrorClass.name}`);
        assert.strictEqual(error.code, code);
        assert.strictEqual(error.status, status);
        assert.strictEqual(error.requestId, "inj");
        return true;
      });
      assert.strictEqual(script.calls.length, 1);
    });
  }

  test("a retry waits at least the answer's Retry-After", async () => {
    const script = scripted([envelope(503, "overloaded", { "retry-after": "1" }), okEntries([])]);
    await store(script.fetch).load(KEY);
    assert.strictEqual(script.calls.length, 2);
    assert.ok(script.calls[1]! - script.calls[0]! >= 950, `waited ${script.calls[1]! - script.calls[0]!} ms`);
  });

  test("the waits between attempts are random up to the backoff step (full jitter)", async () => {
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const script = scripted([envelope(503, "draining"), okEntries([])]);
      await store(script.fetch, { backoffMs: [120] }).load(KEY);
      waits.push(script.calls[1]! - script.calls[0]!);
    }
    assert.ok(waits.every((w) => w <= 200), `waits ${waits}`);
    assert.ok(new Set(waits.map((w) => Math.round(w / 10))).size > 1, `waits all alike: ${waits}`);
  });

  test("after the last attempt the last answer's error is raised; transport failures give GatewayUnavailableError", async () => {
    const unavailable = scripted([envelope(503, "backend_unavailable")]);
    await assert.rejects(store(unavailable.fetch).load(KEY), { code: "backend_unavailable", status: 503 });
    assert.strictEqual(unavailable.calls.length, 3);
    let calls = 0;
    const refused: typeof fetch = async () => {
      calls++;
      throw new TypeError("fetch failed");
    };
    await assert.rejects(store(refused).load(KEY), GatewayUnavailableError);
    assert.strictEqual(calls, 3);
  });
});

describe("summary keys: the stored form is snake_case", () => {
  test("the TypeScript fold's keys are stored under exactly the names Python's fold gives them", () => {
    const folded = foldSessionSummary(undefined, KEY, [
      {
        type: "user",
        timestamp: "2024-01-01T00:00:00.000Z",
        cwd: "/workspace/t",
        message: { role: "user", content: "<command-name>/init</command-name>" },
      },
      {
        type: "user",
        isSidechain: false,
        message: { role: "user", content: "fix the bug" },
        customTitle: "ct",
        aiTitle: "ai",
        lastPrompt: "lp",
        summary: "sh",
        gitBranch: "main",
      },
      { type: "tag", tag: "t1" },
    ]).data;
    // Every key the fold produced is one the table knows (none would be stored camelCase).
    const known = new Set(SUMMARY_KEYS.map(([camel]) => camel));
    assert.deepStrictEqual(Object.keys(folded).filter((k) => !known.has(k)), []);
    assert.deepStrictEqual(toStoredSummary(folded), {
      is_sidechain: false,
      created_at: Date.parse("2024-01-01T00:00:00.000Z"),
      cwd: "/workspace/t",
      command_fallback: "/init",
      first_prompt: "fix the bug",
      first_prompt_locked: true,
      custom_title: "ct",
      ai_title: "ai",
      last_prompt: "lp",
      summary_hint: "sh",
      git_branch: "main",
      tag: "t1",
    });
    assert.deepStrictEqual(fromStoredSummary(toStoredSummary(folded)), folded);
  });

  test("keys outside the fold's pass through unchanged both ways", () => {
    assert.deepStrictEqual(toStoredSummary({ futureKey: 1, custom_title: "x" }), { futureKey: 1, custom_title: "x" });
    assert.deepStrictEqual(fromStoredSummary({ futureKey: 1, customTitle: "x" }), { futureKey: 1, customTitle: "x" });
  });
});

describe("against a live gateway", () => {
  let gateway: Gateway;
  const stores: GatewaySessionStore[] = [];
  before(async () => {
    gateway = await startGateway();
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await gateway?.stop();
  });
  const make = (options: Partial<GatewaySessionStoreOptions> = {}): GatewaySessionStore => {
    const taskId = options.taskId ?? newTaskId();
    const store = new GatewaySessionStore({
      baseUrl: gateway.url,
      taskId,
      token: gateway.token(taskId),
      backoffMs: [20, 50],
      logger: quiet,
      ...options,
    });
    stores.push(store);
    return store;
  };
  test("an append whose answer was lost is retried with the same Idempotency-Key and stored once", async () => {
    const faults = new FaultFetch({ match: isEntriesPost, failAfterSend: 1 });
    const store = make({ fetch: faults.fetch });
    // No uuids: only the idempotency key keeps the retried batch from being stored twice.
    const batch = [{ type: "x", n: 1 }, { type: "x", n: 2 }];
    await store.append(KEY, batch);
    const posts = faults.matching("POST", "/entries");
    assert.strictEqual(posts.length, 2);
    const key = posts[0]!.headers.get("idempotency-key");
    assert.ok(key && key.length >= 16);
    assert.strictEqual(posts[1]!.headers.get("idempotency-key"), key);
    assert.strictEqual(posts[1]!.body, posts[0]!.body);
    assert.deepStrictEqual(await store.load(KEY), batch);
  });

  test("the SDK's retry of a failed batch reuses its key, so a batch that landed is not stored twice", async () => {
    const faults = new FaultFetch({ match: isEntriesPost, failAfterSend: 3 });
    const store = make({ fetch: faults.fetch });
    const sub: SessionKey = { ...KEY, subpath: "subagents/agent-1" };
    const batch = [{ type: "x", n: 1 }];
    await assert.rejects(store.append(sub, batch), GatewayUnavailableError);
    await store.append(sub, [{ type: "x", n: 1 }]);
    await store.append(sub, [{ type: "x", n: 2 }]);
    const keys = faults.matching("POST", "/entries").map((r) => r.headers.get("idempotency-key"));
    assert.strictEqual(keys.length, 5);
    assert.strictEqual(new Set(keys.slice(0, 4)).size, 1, "the failed batch and its retry share one key");
    assert.notStrictEqual(keys[4], keys[0], "the next batch has its own key");
    assert.deepStrictEqual(await store.load(sub), [
      { type: "x", n: 1 },
      { type: "x", n: 2 },
    ]);
  });

  test("a refused connection is retried and the batch stored once", async () => {
    const faults = new FaultFetch({ match: isEntriesPost, failBeforeSend: 2 });
    const store = make({ fetch: faults.fetch });
    const batch = [entry()];
    await store.append(KEY, batch);
    assert.deepStrictEqual(await store.load(KEY), batch);
    assert.strictEqual(faults.matching("POST", "/entries").length, 3);
  });

  test("the summary travels with the append and is stored in the snake_case form", async () => {
    const faults = new FaultFetch();
    const store = make({ fetch: faults.fetch });
    const batches = [
      [entry({ timestamp: "2024-01-01T00:00:00.000Z", cwd: "/workspace/t", gitBranch: "main" })],
      [entry({ customTitle: "named" })],
    ];
    for (const batch of batches) await store.append(KEY, batch);
    assert.strictEqual(faults.matching("PUT", "/summary").length, 0, "no separate summary write");
    const stored = await gateway.storedSummary(store.taskId, KEY);
    assert.strictEqual(stored.version, 2);
    const expected = foldSessionSummary(undefined, KEY, batches.flat()).data;
    assert.deepStrictEqual(stored.data, toStoredSummary(expected));
    assert.ok(Object.keys(stored.data).every((k) => !/[A-Z]/.test(k)), `camelCase stored: ${Object.keys(stored.data)}`);
    const [listed] = await store.listSessionSummaries(KEY.projectKey);
    assert.deepStrictEqual(listed?.data, expected);
  });

  test("two stores appending to one session at once lose no summary update (compare-and-set)", async () => {
    const a = make();
    const b = make({ taskId: a.taskId });
    const rounds = 8;
    await Promise.all([
      (async () => {
        for (let i = 0; i < rounds; i++) await a.append(KEY, [entry({ customTitle: `a-${i}` })]);
      })(),
      (async () => {
        for (let i = 0; i < rounds; i++) await b.append(KEY, [entry({ gitBranch: `b-${i}` })]);
      })(),
    ]);
    const [summary] = await a.listSessionSummaries(KEY.projectKey);
    assert.strictEqual(summary?.data["customTitle"], `a-${rounds - 1}`);
    assert.strictEqual(summary?.data["gitBranch"], `b-${rounds - 1}`);
    assert.strictEqual((await gateway.storedSummary(a.taskId, KEY)).version, 2 * rounds, "one version per append");
    assert.strictEqual((await a.load(KEY))?.length, 2 * rounds);
  });

  test("a store whose cached summary went stale re-reads, folds again and writes with compare-and-set", async () => {
    const faults = new FaultFetch();
    const a = make({ fetch: faults.fetch });
    const b = make({ taskId: a.taskId });
    await a.append(KEY, [entry({ customTitle: "from-a" })]);
    await b.append(KEY, [entry({ gitBranch: "from-b" })]);
    await a.append(KEY, [entry({ lastPrompt: "again-a" })]);
    assert.strictEqual(faults.matching("PUT", "/summary").length, 1, "the stale fold was redone with a PUT");
    const [summary] = await a.listSessionSummaries(KEY.projectKey);
    assert.deepStrictEqual(
      [summary?.data["customTitle"], summary?.data["gitBranch"], summary?.data["lastPrompt"]],
      ["from-a", "from-b", "again-a"],
    );
  });

  test("refusals from the gateway are typed: 401, 403, binding conflict, stale, unknown and missing epochs", async () => {
    const taskId = newTaskId();
    await assert.rejects(make({ taskId, token: "not-a-token" }).load(KEY), UnauthorizedError);
    await assert.rejects(make({ taskId, token: gateway.token(newTaskId()) }).load(KEY), ForbiddenError);

    const a = make({ taskId });
    assert.strictEqual(await a.binding(), null);
    const bound = await a.bind("claude-1", KEY.projectKey, "/workspace/t");
    assert.deepStrictEqual(
      { ...bound, createdMs: 0 },
      { claudeSessionId: "claude-1", projectKey: KEY.projectKey, cwd: "/workspace/t", createdMs: 0 },
    );
    assert.ok(bound.createdMs > 1e12);
    assert.deepStrictEqual(await a.bind("claude-1", KEY.projectKey, "/workspace/t"), bound);
    assert.deepStrictEqual(await a.binding(), bound);
    await assert.rejects(a.bind("claude-2", KEY.projectKey, "/workspace/t"), BindingConflictError);

    const first = await a.lease();
    await a.append(KEY, [entry()]);
    await assert.rejects(make({ taskId }).append(KEY, [entry()]), EpochRequiredError);
    await assert.rejects(make({ taskId, epoch: first + 100 }).append(KEY, [entry()]), UnknownEpochError);

    const faults = new FaultFetch();
    const old = make({ taskId, epoch: first, fetch: faults.fetch });
    const b = make({ taskId });
    assert.strictEqual(await b.lease(), first + 1);
    await assert.rejects(old.append(KEY, [entry()]), StaleWriterError);
    const sent = faults.requests.length;
    await assert.rejects(old.append(KEY, [entry()]), StaleWriterError);
    assert.strictEqual(faults.requests.length, sent, "a fenced store sends nothing more");
    await b.append(KEY, [entry()]);
    assert.strictEqual((await b.load(KEY))?.length, 2);
  });

  test("close() waits for a pending append, then refuses new ones; with a short timeout it gives up", async () => {
    const faults = new FaultFetch({ match: isEntriesPost, hold: true });
    const store = make({ fetch: faults.fetch });
    const batch = [entry()];
    const appending = store.append(KEY, batch);
    await faults.arrived;
    let closed: boolean | undefined;
    const closing = store.close().then((drained) => (closed = drained));
    await new Promise((r) => setTimeout(r, 100));
    assert.strictEqual(closed, undefined, "close() returned while an append was pending");
    await assert.rejects(store.append(KEY, [entry()]), StoreClosedError);
    faults.release();
    await appending;
    assert.strictEqual(await closing, true);
    assert.deepStrictEqual(await store.load(KEY), batch);

    const held = new FaultFetch({ match: isEntriesPost, hold: true });
    const slow = make({ fetch: held.fetch });
    const pending = slow.append(KEY, [entry()]);
    await held.arrived;
    assert.strictEqual(await slow.close(100), false);
    held.release();
    await pending;
  });

  test("a token function, sync or async, is asked afresh for every request", async () => {
    const taskId = newTaskId();
    let asked = 0;
    const asyncStore = make({
      taskId,
      token: async () => {
        asked++;
        return gateway.token(taskId);
      },
    });
    await asyncStore.append(KEY, [entry()]);
    assert.strictEqual((await asyncStore.load(KEY))?.length, 1);
    assert.strictEqual(asked, 3, "GET summary, POST entries, GET entries");
    const token = gateway.token(taskId);
    const syncStore = make({ taskId, token: () => (asked++, token) });
    assert.strictEqual((await syncStore.load(KEY))?.length, 1);
    assert.strictEqual(asked, 4);
  });

  test("reportMirrorError sends the SDK's MirrorErrorMessage and returns the kept failure's id", async () => {
    const faults = new FaultFetch();
    const store = make({ fetch: faults.fetch });
    const id = await store.reportMirrorError({
      type: "system",
      subtype: "mirror_error",
      error: "append failed after 3 attempts",
      key: { projectKey: KEY.projectKey, sessionId: KEY.sessionId, subpath: "subagents/agent-1" },
    } as never);
    assert.ok(typeof id === "string" && id.length > 0);
    const [sent] = faults.matching("POST", "/mirror-failures");
    assert.deepStrictEqual(JSON.parse(sent!.body!), {
      error: "append failed after 3 attempts",
      project_key: KEY.projectKey,
      session_id: KEY.sessionId,
      subpath: "subagents/agent-1",
    });
  });

  test("heal replays the local transcript and its subagent: the gap is added once, healing again adds nothing", async () => {
    const root = mkdtempSync(join(tmpdir(), "tg-node-heal-"));
    const config = join(root, "claude-config");
    const cwd = join(root, "workspace");
    mkdirSync(cwd);
    const projectKey = realpathSync(cwd).replace(/[^A-Za-z0-9]/g, "-");
    const sessionId = randomUUID();
    const mainFile = join(config, "projects", projectKey, `${sessionId}.jsonl`);
    const subFile = join(config, "projects", projectKey, sessionId, "subagents", "agent-1.jsonl");
    const main = Array.from({ length: 6 }, (_, i) => entry({ sessionId, n: i }));
    const sub = [entry({ sessionId, isSidechain: true })];
    mkdirSync(join(config, "projects", projectKey, sessionId, "subagents"), { recursive: true });
    writeFileSync(mainFile, main.map((e) => JSON.stringify(e) + "\n").join(""));
    writeFileSync(subFile, sub.map((e) => JSON.stringify(e) + "\n").join(""));

    const store = make();
    const key: SessionKey = { projectKey, sessionId };
    await store.append(key, main.slice(0, 2)); // mirrored before the gap
    await store.append(key, main.slice(4)); // after it: entries 2 and 3 never arrived
    const previous = process.env["CLAUDE_CONFIG_DIR"];
    process.env["CLAUDE_CONFIG_DIR"] = config;
    try {
      await heal(store, sessionId, { dir: cwd });
      await heal(store, sessionId, { dir: cwd });
    } finally {
      if (previous === undefined) delete process.env["CLAUDE_CONFIG_DIR"];
      else process.env["CLAUDE_CONFIG_DIR"] = previous;
      rmSync(root, { recursive: true, force: true });
    }
    assert.deepStrictEqual(await store.load(key), [...main.slice(0, 2), ...main.slice(4), ...main.slice(2, 4)]);
    assert.deepStrictEqual(await store.load({ ...key, subpath: "subagents/agent-1" }), sub);
  });
});
