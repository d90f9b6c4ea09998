/** The published package: `npm pack` holds only the build, README and package.json, and installs into a fresh project. */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";

import { VERSION } from "../src/index.js";
import { PACKAGE_ROOT } from "./gateway.js";

const run = promisify(execFile);
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const OFFLINE = ["--offline", "--no-audit", "--no-fund", "--legacy-peer-deps", "--loglevel=error"];
const SDK = join(PACKAGE_ROOT, "node_modules", "@anthropic-ai", "claude-agent-sdk");

const made: string[] = [];
after(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tg-node-${name}-`));
  made.push(dir);
  return dir;
}

function freshProject(name: string): string {
  const dir = tempDir(name);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  return dir;
}

/** The SDK (the package's peer) linked from this package's dev install, so the test needs no registry. */
function linkSdk(dir: string): void {
  mkdirSync(join(dir, "node_modules", "@anthropic-ai"), { recursive: true });
  symlinkSync(SDK, join(dir, "node_modules", "@anthropic-ai", "claude-agent-sdk"), "dir");
}

const CONSUMER = `
import { GatewaySessionStore, TaskErasedError, GatewayError, heal, toStoredSummary } from "transcript-gateway-client";
import { InMemorySessionStore } from "@anthropic-ai/claude-agent-sdk";
const store = new GatewaySessionStore({ baseUrl: "http://127.0.0.1:8787", taskId: "t-1", token: "x" });
const ok = typeof store.append === "function" && typeof store.listSessionSummaries === "function"
  && new TaskErasedError("e") instanceof GatewayError && typeof heal === "function"
  && toStoredSummary({ customTitle: "a" }).custom_title === "a" && typeof InMemorySessionStore === "function";
console.log(ok ? "imported" : "broken");
`;

const TYPED = `
import type { SessionStore } from "@anthropic-ai/claude-agent-sdk";
import { GatewaySessionStore, type Binding } from "transcript-gateway-client";
const store: SessionStore = new GatewaySessionStore({ baseUrl: "http://127.0.0.1:8787", taskId: "t-1", epoch: 1 });
export const binding: Promise<Binding | null> = (store as GatewaySessionStore).binding();
`;

async function importsAndTypeChecks(dir: string): Promise<void> {
  linkSdk(dir);
  writeFileSync(join(dir, "consumer.mjs"), CONSUMER);
  const { stdout } = await run(process.execPath, ["consumer.mjs"], { cwd: dir, timeout: 30_000 });
  assert.strictEqual(stdout.trim(), "imported");
  writeFileSync(join(dir, "typed.ts"), TYPED);
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        module: "node16",
        moduleResolution: "node16",
        target: "es2022",
        lib: ["es2022", "dom"],
        types: [],
      },
      files: ["typed.ts"],
    }),
  );
  await run(process.execPath, [join(PACKAGE_ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "."], {
    cwd: dir,
    timeout: 60_000,
  }).catch((error: { stdout?: string }) => {
    assert.fail(`the installed declarations do not type-check:\n${error.stdout ?? String(error)}`);
  });
}

test("the version the client sends in its User-Agent is package.json's", () => {
  const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  assert.strictEqual(VERSION, manifest.version);
});

test("npm pack holds only the built files, README.md and package.json, and the tarball installs, imports and type-checks in a fresh project", async () => {
  const out = tempDir("pack");
  const { stdout } = await run(NPM, ["pack", "--json", "--pack-destination", out, "--loglevel=error"], {
    cwd: PACKAGE_ROOT,
    timeout: 120_000,
  });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const paths = packed!.files.map((f) => f.path).sort();
  const unexpected = paths.filter(
    (p) => p !== "package.json" && p !== "README.md" && !/^dist\/[^/]+\.(js|d\.ts)$/.test(p),
  );
  assert.deepStrictEqual(unexpected, [], "files beyond the build, README and package.json");
  for (const required of ["README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/store.js", "dist/store.d.ts"]) {
    assert.ok(paths.includes(required), `${required} missing from the package: ${paths}`);
  }

  const project = freshProject("tarball");
  await run(NPM, ["install", join(out, packed!.filename), ...OFFLINE], { cwd: project, timeout: 120_000 });
  await importsAndTypeChecks(project);
});

test("npm install ./clients/typescript into a fresh project imports and type-checks", async () => {
  const project = freshProject("directory");
  await run(NPM, ["install", PACKAGE_ROOT, ...OFFLINE], { cwd: project, timeout: 120_000 });
  await importsAndTypeChecks(project);
});
