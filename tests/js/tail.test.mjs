// The Durable Streams client (@durable-streams/client, from npm) tails a
// transcript served by two gateway processes over the same S3 bucket and
// DynamoDB tables (the embedded backend's catalog is one process's only):
// a catch-up from -1, then entries appended through the second instance
// reach a reader on the first once and in order, by SSE and by long-poll,
// and a read resumed from a saved offset misses nothing and repeats
// nothing.
//
// Needs TG_TEST_GATEWAY_BIN (the gateway binary) and the emulators'
// TG_TEST_S3_ENDPOINT, TG_TEST_S3_BUCKET and TG_TEST_DYNAMODB_ENDPOINT
// (scripts/test exports them). Every wait is bounded; the gateways are
// killed by pid at the end.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stream } from "@durable-streams/client";

const bin = process.env.TG_TEST_GATEWAY_BIN;
const s3 = process.env.TG_TEST_S3_ENDPOINT;
const bucket = process.env.TG_TEST_S3_BUCKET;
const dynamodb = process.env.TG_TEST_DYNAMODB_ENDPOINT;
const missing = [
  ["TG_TEST_GATEWAY_BIN", bin],
  ["TG_TEST_S3_ENDPOINT", s3],
  ["TG_TEST_S3_BUCKET", bucket],
  ["TG_TEST_DYNAMODB_ENDPOINT", dynamodb],
]
  .filter(([, v]) => !v)
  .map(([k]) => k);
if (missing.length > 0 && process.env.TG_TEST_REQUIRE_EMULATORS === "1") {
  throw new Error(`missing ${missing.join(", ")} (TG_TEST_REQUIRE_EMULATORS=1)`);
}
const skip = missing.length > 0 ? `SKIP: ${missing.join(", ")} not set (scripts/test sets them)` : false;

const prefix = `tg-js-${process.pid}-${Date.now()}`;
const work = mkdtempSync(join(tmpdir(), "tg-js-"));
const gateways = [];

/** The gateway's settings: S3 + DynamoDB, nothing inherited from TG_*. */
function gatewayEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("TG_") || k.startsWith("TG_TEST_")) env[k] = v;
  }
  return {
    ...env,
    TG_LOG: "warn",
    TG_STORAGE: "s3",
    TG_S3_BUCKET: bucket,
    TG_S3_ENDPOINT_URL: s3,
    TG_S3_FORCE_PATH_STYLE: "true",
    TG_S3_PREFIX: prefix,
    TG_CATALOG: "dynamodb",
    TG_DYNAMODB_ENDPOINT_URL: dynamodb,
    TG_DYNAMODB_TABLE_PREFIX: prefix,
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `check()` is true; fails after `ms`. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function startGateway(name) {
  const port = await freePort();
  const log = join(work, `${name}.log`);
  const child = spawn(
    bin,
    ["serve", "--listen", `127.0.0.1:${port}`, "--insecure-no-auth", "--data-dir", join(work, name)],
    { env: gatewayEnv(), stdio: ["ignore", "ignore", openSync(log, "w")] },
  );
  const gw = { name, child, log, base: `http://127.0.0.1:${port}` };
  gateways.push(gw);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`${gw.base}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) return gw;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`gateway ${name} did not start:\n${readFileSync(log, "utf8")}`);
    }
    await sleep(50);
  }
}

async function stopGateway(gw) {
  if (gw.child.exitCode !== null || gw.child.signalCode !== null) return;
  const exited = new Promise((r) => gw.child.once("exit", r));
  process.kill(gw.child.pid, "SIGTERM");
  const timer = setTimeout(() => {
    if (gw.child.exitCode === null) process.kill(gw.child.pid, "SIGKILL");
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

let a;
let b;

before(async () => {
  if (skip) return;
  const migrated = spawnSync(bin, ["migrate"], { env: gatewayEnv(), timeout: 60_000, encoding: "utf8" });
  assert.equal(migrated.status, 0, `migrate: ${migrated.stdout}${migrated.stderr}`);
  [a, b] = await Promise.all([startGateway("a"), startGateway("b")]);
});

after(async () => {
  await Promise.all(gateways.map(stopGateway));
  rmSync(work, { recursive: true, force: true });
});

let counter = 0;
function freshSession() {
  counter += 1;
  return {
    task: `task-js-${process.pid}-${counter}`,
    project: "-workspace-task",
    session: `sess-js-${Date.now()}-${counter}`,
  };
}

const sessionPath = (s) => `/v1/tasks/${s.task}/projects/${s.project}/sessions/${s.session}`;
const streamUrl = (gw, s) => `${gw.base}${sessionPath(s)}/stream`;

/** Appends a batch through `gw`; resolves when acknowledged. */
async function append(gw, s, entries) {
  const r = await fetch(`${gw.base}${sessionPath(s)}/entries`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ entries }),
    signal: AbortSignal.timeout(30_000),
  });
  assert.equal(r.status, 200, await r.text());
}

const entry = (tag, i) => ({ type: "user", uuid: `${tag}-${i}`, tag, i });

/** A client session reading `url` from `offset` live, collecting items
 * and the live modes of the requests it made. */
async function tail(url, offset, live) {
  const seen = [];
  const arrivals = [];
  const modes = [];
  const res = await stream({
    url,
    offset,
    live,
    json: true,
    fetch: (input, init) => {
      modes.push(new URL(String(input)).searchParams.get("live") ?? "catch-up");
      return fetch(input, init);
    },
    // Every failure is fatal here: no endless retries.
    onError: () => undefined,
    backoffOptions: { initialDelay: 50, maxDelay: 200, multiplier: 2, maxRetries: 2 },
  });
  res.subscribeJson(async (batch) => {
    for (const item of batch.items) {
      seen.push(item);
      arrivals.push(Date.now());
    }
  });
  return { res, seen, arrivals, modes };
}

/** Appends `rounds` batches through B, each after the reader is waiting. */
async function appendRounds(s, tag, rounds, reader) {
  const latencies = [];
  for (let round = 0; round < rounds; round++) {
    await sleep(300);
    const before = reader.seen.length;
    const batch = [entry(`${tag}${round}`, 0), entry(`${tag}${round}`, 1)];
    const started = Date.now();
    await append(b, s, batch);
    const acknowledged = Date.now();
    await until(() => reader.seen.length >= before + 2, 10_000, `${tag} round ${round}`);
    latencies.push({ acknowledgedMs: acknowledged - started, deliveredAfterAckMs: reader.arrivals[before + 1] - acknowledged });
  }
  return latencies;
}

test("catch-up from -1 through one instance returns what the other appended", { skip }, async () => {
  const s = freshSession();
  const history = [entry("h", 0), entry("h", 1), entry("h", 2)];
  await append(b, s, history.slice(0, 2));
  await append(b, s, history.slice(2));
  const res = await stream({ url: streamUrl(a, s), offset: "-1", live: false, json: true });
  assert.deepEqual(await res.json(), history);
  assert.ok(res.upToDate);
  assert.match(res.offset, /^[0-9a-f]{16}_[0-9a-f]{16}$/);
  assert.notEqual(res.offset, "-1");
});

for (const live of ["sse", "long-poll"]) {
  test(`entries appended through the other instance arrive once and in order by ${live}`, { skip }, async () => {
    const s = freshSession();
    const history = [entry("h", 0), entry("h", 1)];
    await append(b, s, history);
    const reader = await tail(streamUrl(a, s), "-1", live);
    try {
      await until(() => reader.seen.length >= 2, 10_000, "the history");
      const latencies = await appendRounds(s, live, 4, reader);
      await sleep(500);
      const expected = [...history];
      for (let round = 0; round < 4; round++) {
        expected.push(entry(`${live}${round}`, 0), entry(`${live}${round}`, 1));
      }
      assert.deepEqual(reader.seen, expected, "every entry once, in order");
      // A catch-up first, then the live mode asked for (SSE: one connection).
      assert.equal(reader.modes[0], "catch-up");
      assert.ok(reader.modes.slice(1).length > 0 && reader.modes.slice(1).every((m) => m === live), reader.modes.join());
      if (live === "sse") assert.equal(reader.modes.length, 2, reader.modes.join());
      console.log(`${live}: cross-instance delivery ${JSON.stringify(latencies)}`);
      for (const l of latencies) {
        assert.ok(l.deliveredAfterAckMs < 1000, `delivered ${l.deliveredAfterAckMs} ms after the acknowledgement`);
      }
    } finally {
      reader.res.cancel();
    }
  });
}

test("a read resumed from a saved offset misses nothing and repeats nothing", { skip }, async () => {
  const s = freshSession();
  await append(b, s, [entry("a", 0), entry("a", 1)]);
  const first = await stream({ url: streamUrl(a, s), offset: "-1", live: false, json: true });
  assert.deepEqual(await first.json(), [entry("a", 0), entry("a", 1)]);
  const saved = first.offset;

  // Appended while no reader was connected, through either instance.
  await append(b, s, [entry("b", 0)]);
  await append(a, s, [entry("c", 0), entry("c", 1)]);

  // Resumed live on the other instance from the saved offset.
  const reader = await tail(streamUrl(b, s), saved, "long-poll");
  try {
    await until(() => reader.seen.length >= 3, 10_000, "the entries after the saved offset");
    await append(a, s, [entry("d", 0)]);
    await until(() => reader.seen.length >= 4, 10_000, "the live entry");
    await sleep(500);
    assert.deepEqual(reader.seen, [entry("b", 0), entry("c", 0), entry("c", 1), entry("d", 0)]);
  } finally {
    reader.res.cancel();
  }

  // And a catch-up from the end is empty, at the same offset.
  const all = await stream({ url: streamUrl(a, s), offset: "-1", live: false, json: true });
  assert.equal((await all.json()).length, 6);
  const end = await stream({ url: streamUrl(a, s), offset: all.offset, live: false, json: true });
  assert.deepEqual(await end.json(), []);
  assert.equal(end.offset, all.offset);
});
