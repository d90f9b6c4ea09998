/** The ported SessionStore conformance suite: proven on the SDK's InMemorySessionStore, then run over HTTP. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { InMemorySessionStore } from "@anthropic-ai/claude-agent-sdk";
import type { SessionKey, SessionStore, SessionStoreEntry } from "@anthropic-ai/claude-agent-sdk";

import { GatewaySessionStore } from "../src/index.js";
import { CONTRACTS, runSessionStoreConformance } from "./conformance.js";
import { Gateway, newTaskId, startGateway } from "./gateway.js";

describe("the ported conformance suite", () => {
  test("the SDK's InMemorySessionStore passes all 14 contracts with no optional method skipped", async () => {
    const ran = await runSessionStoreConformance(() => new InMemorySessionStore());
    assert.deepStrictEqual(ran, [...CONTRACTS]);
  });

  // A store that breaks one contract each: the suite must reject every one, naming it.
  const broken: Array<[string, string, (inner: InMemorySessionStore) => Partial<SessionStore>]> = [
    ["load reverses the entries", "1 ", (s) => ({ load: async (k) => (await s.load(k))?.reverse() ?? null })],
    ["load of an unknown key returns []", "2 ", (s) => ({ load: async (k) => (await s.load(k)) ?? [] })],
    [
      "append([]) stores a marker",
      "4 ",
      (s) => ({
        append: (k: SessionKey, entries: SessionStoreEntry[]) =>
          s.append(k, entries.length ? entries : [{ type: "empty" }]),
      }),
    ],
    [
      "listSessions lists a session once more per subkey",
      "8 ",
      (s) => ({
        listSessions: async (p: string) => {
          const out: Array<{ sessionId: string; mtime: number }> = [];
          for (const x of await s.listSessions(p)) {
            out.push(x);
            for (const _ of await s.listSubkeys({ projectKey: p, sessionId: x.sessionId })) out.push(x);
          }
          return out;
        },
      }),
    ],
    [
      "listSessionSummaries reports mtimes in seconds",
      "14 ",
      (s) => ({
        listSessionSummaries: async (p: string) =>
          (await s.listSessionSummaries(p)).map((x) => ({ ...x, mtime: Math.floor(x.mtime / 1000) })),
      }),
    ],
    [
      "delete of a main key leaves its subkeys",
      "10 ",
      (s) => ({
        delete: async (k: SessionKey) => {
          const subkeys = k.subpath === undefined ? await s.listSubkeys(k) : [];
          const kept = await Promise.all(subkeys.map(async (p) => [p, await s.load({ ...k, subpath: p })] as const));
          await s.delete(k);
          for (const [p, entries] of kept) await s.append({ ...k, subpath: p }, entries ?? []);
        },
      }),
    ],
  ];
  for (const [what, contract, override] of broken) {
    test(`the suite rejects a store whose ${what} (contract ${contract.trim()})`, async () => {
      const make = (): SessionStore => {
        const inner = new InMemorySessionStore();
        const store: SessionStore = {
          append: (k, e) => inner.append(k, e),
          load: (k) => inner.load(k),
          listSessions: (p) => inner.listSessions(p),
          listSessionSummaries: (p) => inner.listSessionSummaries(p),
          delete: (k) => inner.delete(k),
          listSubkeys: (k) => inner.listSubkeys(k),
        };
        return Object.assign(store, override(inner));
      };
      await assert.rejects(runSessionStoreConformance(make), (error: Error) => {
        assert.match(error.message, new RegExp(`^contract ${contract}`));
        return true;
      });
    });
  }
});

describe("GatewaySessionStore over HTTP against a live gateway", () => {
  let gateway: Gateway;
  before(async () => {
    gateway = await startGateway();
  });
  after(async () => {
    await gateway?.stop();
  });

  test("passes all 14 contracts with no optional method skipped, each store on its own task and token", async () => {
    const stores: GatewaySessionStore[] = [];
    const calls = new Set<string>();
    const methods = ["append", "load", "listSessions", "listSessionSummaries", "delete", "listSubkeys"] as const;
    const ran = await runSessionStoreConformance(() => {
      const task = newTaskId();
      const store = new GatewaySessionStore({ baseUrl: gateway.url, taskId: task, token: gateway.token(task) });
      stores.push(store);
      // Record which methods the suite exercised through this store.
      const recording = store as unknown as Record<string, (...args: unknown[]) => unknown>;
      for (const name of methods) {
        const method = recording[name]!.bind(store);
        recording[name] = (...args: unknown[]) => {
          calls.add(name);
          return method(...args);
        };
      }
      return store;
    });
    await Promise.all(stores.map((s) => s.close()));
    assert.deepStrictEqual(ran, [...CONTRACTS]);
    assert.strictEqual(stores.length, 1 + CONTRACTS.length, "a probe plus one store per contract");
    assert.deepStrictEqual([...calls].sort(), [...methods].sort(), "every method exercised");
    console.log(`conformance against ${gateway.url}: ${ran.length} contracts passed`);
  });
});
