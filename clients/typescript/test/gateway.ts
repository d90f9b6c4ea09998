/**
 * A real gateway process for the tests: the binary in TG_TEST_GATEWAY_BIN
 * (default `target/debug/transcript-gateway` in the repository) on a free
 * loopback port, with a temporary data directory, a fresh TG_AUTH_SECRET and
 * the extra environment in TG_TEST_GATEWAY_EXTRA_ENV (S3 and DynamoDB), and
 * tokens minted with `transcript-gateway token mint`, as an orchestrator would.
 */

import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** clients/typescript (this file runs from build-test/test/). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REPO_ROOT = resolve(PACKAGE_ROOT, "..", "..");
const READY_TIMEOUT_MS = 30_000;

export function newTaskId(): string {
  return "t-" + randomUUID().replaceAll("-", "");
}

export function gatewayBinary(): string {
  const bin = resolve(REPO_ROOT, process.env["TG_TEST_GATEWAY_BIN"] ?? "target/debug/transcript-gateway");
  if (!existsSync(bin)) {
    throw new Error(`gateway binary ${bin} not found: run \`cargo build\` or set TG_TEST_GATEWAY_BIN`);
  }
  return bin;
}

/** The Python with the Python adapter installed (the repository's .venv unless TG_TEST_PYTHON). */
export function pythonBinary(): string {
  const python = resolve(REPO_ROOT, process.env["TG_TEST_PYTHON"] ?? ".venv/bin/python");
  if (!existsSync(python)) {
    throw new Error(`python ${python} not found: run scripts/py-env.sh or set TG_TEST_PYTHON`);
  }
  return python;
}

export function extraEnv(): Record<string, string> {
  const raw = process.env["TG_TEST_GATEWAY_EXTRA_ENV"];
  if (!raw) return {};
  const parsed: unknown = JSON.parse(raw);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error("TG_TEST_GATEWAY_EXTRA_ENV must be a JSON object");
  }
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
}

async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export class Gateway {
  constructor(
    readonly url: string,
    readonly secret: string,
    private readonly proc: ChildProcess,
    private readonly workdir: string,
  ) {}

  get logPath(): string {
    return join(this.workdir, "gateway.log");
  }

  /** A token for the task, minted by `transcript-gateway token mint`. */
  token(taskId: string, scope = "transcripts:write", ttl = "1h"): string {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("TG_") && v !== undefined) env[k] = v;
    }
    env["TG_AUTH_SECRET"] = this.secret;
    return execFileSync(
      gatewayBinary(),
      ["token", "mint", "--task", taskId, "--scope", scope, "--ttl", ttl],
      { env, encoding: "utf8" },
    ).trim();
  }

  /** The session's summary as the gateway stores it (`GET .../summary`), read with a token of its own. */
  async storedSummary(
    taskId: string,
    key: { projectKey: string; sessionId: string },
  ): Promise<{ version: number; data: Record<string, unknown> }> {
    const response = await fetch(
      `${this.url}/v1/tasks/${taskId}/projects/${key.projectKey}/sessions/${key.sessionId}/summary`,
      { headers: { authorization: `Bearer ${this.token(taskId)}` } },
    );
    if (response.status !== 200) throw new Error(`GET summary: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { data: { version: number; data: Record<string, unknown> } }).data;
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-40).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** SIGTERM to this gateway's own pid (SIGKILL if it has not exited within 15 s), then remove its data. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((done) => proc.once("exit", () => done()));
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.workdir, { recursive: true, force: true });
  }
}

/** Start a gateway with authentication on and wait until /healthz answers. */
export async function startGateway(): Promise<Gateway> {
  const workdir = mkdtempSync(join(tmpdir(), "tg-node-gateway-"));
  const secret = "node-" + randomBytes(32).toString("hex");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFd = openSync(join(workdir, "gateway.log"), "a");
  const proc = spawn(
    gatewayBinary(),
    ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(workdir, "data")],
    {
      env: { ...process.env, TG_AUTH_SECRET: secret, ...extraEnv() },
      stdio: ["ignore", logFd, logFd],
    },
  );
  closeSync(logFd);
  // Should the test process end without stopping it, its gateway ends with it.
  const reap = (): void => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  };
  process.once("exit", reap);
  proc.once("exit", () => process.removeListener("exit", reap));
  const gateway = new Gateway(url, secret, proc, workdir);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) {
      const log = gateway.log();
      await gateway.stop();
      throw new Error(`gateway exited with ${proc.exitCode} before it was ready:\n${log}`);
    }
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) return gateway;
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = gateway.log();
  await gateway.stop();
  throw new Error(`gateway at ${url} not healthy after ${READY_TIMEOUT_MS} ms (${last}):\n${log}`);
}
