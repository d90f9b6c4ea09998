/**
 * The 14 SessionStore contracts of the Python SDK's conformance suite
 * (`claude_agent_sdk.testing.run_session_store_conformance`), ported to the
 * TypeScript SDK's `SessionStore` (camelCase keys, `null` for absent).
 * Contracts for optional methods run when the store has the method and it is
 * not named in `skipOptional`; the returned list names every contract that ran.
 */

import assert from "node:assert/strict";
import { foldSessionSummary } from "@anthropic-ai/claude-agent-sdk";
import type { SessionKey, SessionStore, SessionStoreEntry } from "@anthropic-ai/claude-agent-sdk";

export type OptionalMethod = "listSessions" | "listSessionSummaries" | "delete" | "listSubkeys";
const OPTIONAL_METHODS: readonly OptionalMethod[] = [
  "listSessions",
  "listSessionSummaries",
  "delete",
  "listSubkeys",
];

export const CONTRACTS = [
  "1 append then load returns the same entries in order",
  "2 load of an unknown key or subpath returns null",
  "3 multiple appends keep call order",
  "4 append([]) is a no-op",
  "5 subpath keys are independent of the main key",
  "6 projectKey isolation",
  "7 listSessions returns the project's session ids with epoch-ms mtimes",
  "8 listSessions excludes subpaths",
  "14 listSessionSummaries returns fold output that round-trips",
  "9 delete then load returns null",
  "10 delete of a main key cascades to its subkeys",
  "11 delete with a subpath removes only that subkey",
  "12 listSubkeys returns subpaths",
  "13 listSubkeys excludes the main transcript",
] as const;

const KEY: SessionKey = { projectKey: "proj", sessionId: "sess" };

/** A test entry (`type` is required; its value is irrelevant to the contracts). */
function e(fields: Record<string, unknown>): SessionStoreEntry {
  return { type: "x", ...fields };
}

function has(store: SessionStore, method: OptionalMethod, skip: ReadonlySet<OptionalMethod>): boolean {
  return !skip.has(method) && typeof store[method] === "function";
}

export async function runSessionStoreConformance(
  makeStore: () => SessionStore | Promise<SessionStore>,
  options: { skipOptional?: Iterable<OptionalMethod> } = {},
): Promise<string[]> {
  const skip = new Set(options.skipOptional ?? []);
  for (const name of skip) assert.ok(OPTIONAL_METHODS.includes(name), `unknown optional method ${name}`);
  const fresh = async (): Promise<SessionStore> => await makeStore();
  const ran: string[] = [];
  const contract = async (index: number, body: () => Promise<void>): Promise<void> => {
    const name = CONTRACTS.find((c) => c.startsWith(`${index} `))!;
    try {
      await body();
    } catch (error) {
      if (error instanceof Error) error.message = `contract ${name}: ${error.message}`;
      throw error;
    }
    ran.push(name);
  };

  const probe = await fresh();
  const hasListSessions = has(probe, "listSessions", skip);
  const hasListSummaries = has(probe, "listSessionSummaries", skip);
  const hasDelete = has(probe, "delete", skip);
  const hasListSubkeys = has(probe, "listSubkeys", skip);

  // --- Required: append + load ---

  await contract(1, async () => {
    const store = await fresh();
    await store.append(KEY, [e({ uuid: "b", n: 1 }), e({ uuid: "a", n: 2 })]);
    // Deep-equal is the contract; byte-equal serialization is not.
    assert.deepStrictEqual(await store.load(KEY), [e({ uuid: "b", n: 1 }), e({ uuid: "a", n: 2 })]);
  });

  await contract(2, async () => {
    const store = await fresh();
    assert.strictEqual(await store.load({ projectKey: "proj", sessionId: "nope" }), null);
    await store.append(KEY, [e({ uuid: "x", n: 1 })]);
    assert.strictEqual(await store.load({ ...KEY, subpath: "nope" }), null);
  });

  await contract(3, async () => {
    const store = await fresh();
    await store.append(KEY, [e({ uuid: "z", n: 1 })]);
    await store.append(KEY, [e({ uuid: "a", n: 2 }), e({ uuid: "m", n: 3 })]);
    await store.append(KEY, [e({ uuid: "b", n: 4 })]);
    assert.deepStrictEqual(await store.load(KEY), [
      e({ uuid: "z", n: 1 }),
      e({ uuid: "a", n: 2 }),
      e({ uuid: "m", n: 3 }),
      e({ uuid: "b", n: 4 }),
    ]);
  });

  await contract(4, async () => {
    const store = await fresh();
    await store.append(KEY, [e({ uuid: "a", n: 1 })]);
    await store.append(KEY, []);
    assert.deepStrictEqual(await store.load(KEY), [e({ uuid: "a", n: 1 })]);
  });

  await contract(5, async () => {
    const store = await fresh();
    const sub: SessionKey = { ...KEY, subpath: "subagents/agent-1" };
    await store.append(KEY, [e({ uuid: "m", n: 1 })]);
    await store.append(sub, [e({ uuid: "s", n: 1 })]);
    assert.deepStrictEqual(await store.load(KEY), [e({ uuid: "m", n: 1 })]);
    assert.deepStrictEqual(await store.load(sub), [e({ uuid: "s", n: 1 })]);
  });

  await contract(6, async () => {
    const store = await fresh();
    await store.append({ projectKey: "A", sessionId: "s1" }, [e({ from: "A" })]);
    await store.append({ projectKey: "B", sessionId: "s1" }, [e({ from: "B" })]);
    assert.deepStrictEqual(await store.load({ projectKey: "A", sessionId: "s1" }), [e({ from: "A" })]);
    assert.deepStrictEqual(await store.load({ projectKey: "B", sessionId: "s1" }), [e({ from: "B" })]);
    if (hasListSessions) {
      assert.strictEqual((await store.listSessions!("A")).length, 1);
      assert.strictEqual((await store.listSessions!("B")).length, 1);
    }
  });

  // --- Optional: listSessions ---

  if (hasListSessions) {
    await contract(7, async () => {
      const store = await fresh();
      await store.append({ projectKey: "proj", sessionId: "a" }, [e({ n: 1 })]);
      await store.append({ projectKey: "proj", sessionId: "b" }, [e({ n: 1 })]);
      await store.append({ projectKey: "other", sessionId: "c" }, [e({ n: 1 })]);
      const sessions = await store.listSessions!("proj");
      assert.deepStrictEqual(sessions.map((s) => s.sessionId).sort(), ["a", "b"]);
      // mtime must be epoch-ms; >1e12 rules out epoch-seconds.
      assert.ok(
        sessions.every((s) => Number.isFinite(s.mtime) && s.mtime > 1e12),
        `mtimes must be epoch ms: ${JSON.stringify(sessions)}`,
      );
      assert.deepStrictEqual(await store.listSessions!("never-appended-project"), []);
    });

    await contract(8, async () => {
      const store = await fresh();
      await store.append({ projectKey: "proj", sessionId: "main" }, [e({ n: 1 })]);
      await store.append({ projectKey: "proj", sessionId: "main", subpath: "subagents/agent-1" }, [
        e({ n: 1 }),
      ]);
      const sessions = await store.listSessions!("proj");
      assert.deepStrictEqual(
        sessions.map((s) => s.sessionId),
        ["main"],
      );
    });
  }

  // --- Optional: listSessionSummaries ---

  if (hasListSummaries) {
    await contract(14, async () => {
      const store = await fresh();
      const key: SessionKey = { projectKey: "proj", sessionId: "summ-sess" };
      await store.append(key, [
        e({ timestamp: "2024-01-01T00:00:00.000Z", customTitle: "first" }),
        e({ timestamp: "2024-01-01T00:00:01.000Z" }),
      ]);
      await store.append(key, [e({ timestamp: "2024-01-01T00:00:02.000Z", customTitle: "second" })]);
      await store.append({ projectKey: "other", sessionId: "elsewhere" }, [
        e({ timestamp: "2024-01-01T00:00:00.000Z" }),
      ]);
      const summaries = await store.listSessionSummaries!("proj");
      assert.deepStrictEqual(
        summaries.map((s) => s.sessionId),
        ["summ-sess"],
      );
      const summ = summaries[0]!;
      assert.ok(Number.isFinite(summ.mtime) && summ.mtime > 1e12, `summary mtime ${summ.mtime}`);
      // The sidecar's mtime is its storage write time, on the clock of listSessions().
      if (hasListSessions) {
        const listed = new Map((await store.listSessions!("proj")).map((s) => [s.sessionId, s.mtime]));
        assert.ok(
          summ.mtime >= listed.get("summ-sess")!,
          `summary mtime ${summ.mtime} is older than the session's ${listed.get("summ-sess")}`,
        );
      }
      // data is opaque; the contract is that it round-trips into the fold.
      assert.ok(typeof summ.data === "object" && summ.data !== null && !Array.isArray(summ.data));
      const refolded = foldSessionSummary(summ, key, [e({ timestamp: "2024-01-01T00:00:03.000Z" })]);
      assert.strictEqual(refolded.sessionId, "summ-sess");
      // The fold keeps prev.mtime: mtime is stamped by the adapter, not by the fold.
      assert.strictEqual(refolded.mtime, summ.mtime);
      // Subagent appends must not affect the main session's summary.
      await store.append({ ...key, subpath: "subagents/agent-1" }, [
        e({ timestamp: "2024-01-01T00:00:09.000Z", customTitle: "subagent" }),
      ]);
      const afterSub = new Map((await store.listSessionSummaries!("proj")).map((s) => [s.sessionId, s]));
      assert.deepStrictEqual(afterSub.get("summ-sess")?.data, summ.data);
      assert.deepStrictEqual(await store.listSessionSummaries!("never-appended-project"), []);
      if (hasDelete) {
        await store.delete!(key);
        assert.deepStrictEqual(await store.listSessionSummaries!("proj"), []);
      }
    });
  }

  // --- Optional: delete ---

  const sub1: SessionKey = { ...KEY, subpath: "subagents/agent-1" };
  const sub2: SessionKey = { ...KEY, subpath: "subagents/agent-2" };

  if (hasDelete) {
    await contract(9, async () => {
      const store = await fresh();
      await store.delete!({ projectKey: "proj", sessionId: "never-written" });
      await store.append(KEY, [e({ n: 1 })]);
      await store.delete!(KEY);
      assert.strictEqual(await store.load(KEY), null);
    });

    await contract(10, async () => {
      const store = await fresh();
      const other: SessionKey = { projectKey: "proj", sessionId: "sess2" };
      const otherProj: SessionKey = { projectKey: "other-proj", sessionId: KEY.sessionId };
      await store.append(KEY, [e({ n: 1 })]);
      await store.append(sub1, [e({ n: 1 })]);
      await store.append(sub2, [e({ n: 1 })]);
      await store.append(other, [e({ n: 1 })]);
      await store.append(otherProj, [e({ n: 1 })]);

      await store.delete!(KEY);

      assert.strictEqual(await store.load(KEY), null);
      assert.strictEqual(await store.load(sub1), null);
      assert.strictEqual(await store.load(sub2), null);
      assert.strictEqual((await store.load(other))?.length, 1);
      assert.strictEqual((await store.load(otherProj))?.length, 1);
      if (hasListSubkeys) assert.deepStrictEqual(await store.listSubkeys!(KEY), []);
      if (hasListSessions) {
        const listed = await store.listSessions!(KEY.projectKey);
        assert.ok(!listed.some((s) => s.sessionId === KEY.sessionId), "deleted session still listed");
      }
    });

    await contract(11, async () => {
      const store = await fresh();
      await store.append(KEY, [e({ n: 1 })]);
      await store.append(sub1, [e({ n: 1 })]);
      await store.append(sub2, [e({ n: 1 })]);

      await store.delete!(sub1);

      assert.strictEqual(await store.load(sub1), null);
      assert.strictEqual((await store.load(sub2))?.length, 1);
      assert.strictEqual((await store.load(KEY))?.length, 1);
      if (hasListSubkeys) assert.deepStrictEqual(await store.listSubkeys!(KEY), ["subagents/agent-2"]);
    });
  }

  // --- Optional: listSubkeys ---

  if (hasListSubkeys) {
    await contract(12, async () => {
      const store = await fresh();
      await store.append(KEY, [e({ n: 1 })]);
      await store.append(sub1, [e({ n: 1 })]);
      await store.append(sub2, [e({ n: 1 })]);
      await store.append({ projectKey: KEY.projectKey, sessionId: "other-sess", subpath: "subagents/agent-x" }, [
        e({ n: 1 }),
      ]);
      const subkeys = await store.listSubkeys!(KEY);
      assert.deepStrictEqual([...subkeys].sort(), ["subagents/agent-1", "subagents/agent-2"]);
      assert.ok(!subkeys.includes("subagents/agent-x"));
    });

    await contract(13, async () => {
      const store = await fresh();
      await store.append(KEY, [e({ n: 1 })]);
      assert.deepStrictEqual(await store.listSubkeys!(KEY), []);
      assert.deepStrictEqual(await store.listSubkeys!({ projectKey: "proj", sessionId: "never-appended" }), []);
    });
  }

  return ran;
}
