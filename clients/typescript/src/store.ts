/** The SessionStore adapter that keeps transcripts in a transcript-gateway task. */

import { randomUUID } from "node:crypto";
import { foldSessionSummary } from "@anthropic-ai/claude-agent-sdk";
import type {
  SessionKey,
  SessionStore,
  SessionStoreEntry,
  SessionSummaryEntry,
} from "@anthropic-ai/claude-agent-sdk";

import {
  GatewayError,
  GatewayUnavailableError,
  StaleWriterError,
  StoreClosedError,
  SummaryConflictError,
  envelopeCode,
  errorFromResponse,
  isRecord,
} from "./errors.js";
import { fromStoredSummary, toStoredSummary } from "./summary.js";
import { VERSION } from "./version.js";

/** A bearer token, or a function (sync or async) returning the current one, asked afresh per request. */
export type TokenSource = string | (() => string | Promise<string>);

/** A task's binding to its Claude session, as the gateway stores it. */
export interface Binding {
  claudeSessionId: string;
  projectKey: string;
  cwd: string;
  createdMs: number;
}

/** Where the store writes its warnings (project-key drift, a close that ran out of time). */
export interface Logger {
  warn(message: string): void;
  debug?(message: string): void;
}

export interface GatewaySessionStoreOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8787`. */
  baseUrl: string;
  /** The task this store serves (one store, one task). */
  taskId: string;
  /** The task's bearer token; omit for a gateway running with `--insecure-no-auth`. */
  token?: TokenSource;
  /** A writer epoch from `lease()` (sent as `X-Writer-Epoch` with every write). */
  epoch?: number;
  /** Budget of one call, retries included (default 50,000 ms, under the SDK's 60 s). */
  timeoutMs?: number;
  /** Limit of one HTTP attempt (default 20,000 ms). */
  attemptTimeoutMs?: number;
  /** Attempts per request, the first included (default 3). */
  maxAttempts?: number;
  /** Upper bounds of the random wait before each retry (default [200, 800] ms, full jitter). */
  backoffMs?: readonly number[];
  /** Compare-and-set rounds of a summary update before it gives up (default 8). */
  maxSummaryRounds?: number;
  /** `limit` of each page when listing (the gateway's default when omitted). */
  pageSize?: number;
  /** Sessions whose summary and failed-batch key the store remembers (default 1,024). */
  cacheSize?: number;
  /** The fetch to send requests with (default: the platform's). */
  fetch?: typeof fetch;
  /** Where warnings go (default: `console.warn`; debug lines, retries and conflicts, only when given). */
  logger?: Logger;
}

/** What the SDK's `MirrorErrorMessage` carries, or anything with a `key` and an `error`. */
export interface MirrorErrorLike {
  error?: unknown;
  key?: { projectKey?: string; sessionId?: string; subpath?: string } | null;
}

// What the gateway calls retryable: the same request may succeed shortly
// (appends carry an Idempotency-Key, so a retry never stores twice). Never
// checksum_mismatch, integrity_violation, internal or any 4xx refusal.
const RETRYABLE_CODES = new Set(["backend_unavailable", "timeout", "draining", "conflict", "overloaded"]);
// An answer without the gateway's envelope (a proxy or load balancer in front
// of it) is retried by its status.
const RETRY_STATUSES_WITHOUT_CODE = new Set([502, 503, 504]);
const MIN_ATTEMPT_MS = 50;
// Longest Retry-After honoured; the call's own deadline bounds it too.
const MAX_RETRY_AFTER_MS = 30_000;

interface Summary {
  version: number;
  /** In the TypeScript fold's (camelCase) form; undefined when none is stored. */
  data: Record<string, unknown> | undefined;
}

interface FailedAppend {
  body: string;
  idempotencyKey: string;
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

type Body = Record<string, unknown>;

/** A map that keeps at most `limit` entries, dropping the least recently used. */
class Lru<V> {
  private readonly items = new Map<string, V>();
  constructor(private readonly limit: number) {}

  get(key: string): V | undefined {
    const value = this.items.get(key);
    if (value !== undefined) {
      this.items.delete(key);
      this.items.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.items.delete(key);
    this.items.set(key, value);
    while (this.items.size > this.limit) {
      this.items.delete(this.items.keys().next().value as string);
    }
  }

  delete(key: string): void {
    this.items.delete(key);
  }

  keys(): string[] {
    return [...this.items.keys()];
  }
}

/** Claude Agent SDK `SessionStore` backed by one task on a transcript-gateway. */
export class GatewaySessionStore implements SessionStore {
  readonly baseUrl: string;
  readonly taskId: string;
  readonly timeoutMs: number;
  readonly attemptTimeoutMs: number;
  readonly maxAttempts: number;
  readonly backoffMs: readonly number[];
  readonly maxSummaryRounds: number;
  readonly pageSize: number | undefined;
  readonly cacheSize: number;

  private epochValue: number | undefined;
  private staleEpoch: number | undefined;
  private readonly token: TokenSource | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly logger: Logger;
  private readonly summaries: Lru<Summary>;
  private readonly failed: Lru<FailedAppend>;
  // One promise chain per session: appends to a session run one at a time, so
  // this store never races itself on the summary (the compare-and-set decides
  // between stores). Entries are dropped once their chain is idle.
  private readonly locks = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<void>>();
  private closing = false;
  private boundProject: string | undefined;
  private readonly driftWarned = new Set<string>();

  constructor(options: GatewaySessionStoreOptions) {
    const maxAttempts = options.maxAttempts ?? 3;
    const maxSummaryRounds = options.maxSummaryRounds ?? 8;
    const cacheSize = options.cacheSize ?? 1024;
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    if (!options.taskId) throw new TypeError("taskId is required");
    if (!(maxAttempts >= 1)) throw new RangeError("maxAttempts must be at least 1");
    if (!(maxSummaryRounds >= 1)) throw new RangeError("maxSummaryRounds must be at least 1");
    if (!(cacheSize >= 1)) throw new RangeError("cacheSize must be at least 1");
    const token = options.token;
    if (token !== undefined && typeof token !== "string" && typeof token !== "function") {
      throw new TypeError("token must be a string or a function returning one");
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.taskId = options.taskId;
    this.token = token;
    this.timeoutMs = options.timeoutMs ?? 50_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 20_000;
    this.maxAttempts = maxAttempts;
    this.backoffMs = options.backoffMs ?? [200, 800];
    this.maxSummaryRounds = maxSummaryRounds;
    this.pageSize = options.pageSize;
    this.cacheSize = cacheSize;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.logger = options.logger ?? { warn: (message) => console.warn(message) };
    this.summaries = new Lru(cacheSize);
    this.failed = new Lru(cacheSize);
    this.epoch = options.epoch;
  }

  /** The writer epoch sent as `X-Writer-Epoch` with every write, or undefined. */
  get epoch(): number | undefined {
    return this.epochValue;
  }

  set epoch(value: number | undefined) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new RangeError(`epoch must be a non-negative integer or undefined, not ${String(value)}`);
    }
    this.epochValue = value;
  }

  /**
   * Refuse new appends (`StoreClosedError`) from now on and wait for the ones
   * still running, at most `timeoutMs` (by default the store's). Resolves to
   * false if appends were still running when the wait ran out.
   */
  async close(timeoutMs: number = this.timeoutMs): Promise<boolean> {
    this.closing = true;
    if (this.pending.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const waited = Promise.allSettled([...this.pending]).then(() => true);
    const ranOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const drained = await Promise.race([waited, ranOut]);
    clearTimeout(timer);
    if (!drained) {
      this.logger.warn(
        `closing with ${this.pending.size} append(s) still running after ${timeoutMs} ms`,
      );
    }
    return drained;
  }

  // -- SessionStore -----------------------------------------------------------

  /** Append a batch of entries in order; main keys also fold the session summary. */
  append(key: SessionKey, entries: SessionStoreEntry[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    if (this.closing) {
      return Promise.reject(new StoreClosedError("the store is closing: no new appends"));
    }
    const running = this.appendOnce(key, entries);
    const tracked = running.then(
      () => undefined,
      () => undefined,
    );
    this.pending.add(tracked);
    void tracked.then(() => this.pending.delete(tracked));
    return running;
  }

  /** Every entry of a transcript in order, or null if it does not exist. */
  async load(key: SessionKey): Promise<SessionStoreEntry[] | null> {
    const deadline = this.deadline();
    const url = this.sessionUrl(key, "/entries") + query({ subpath: key.subpath });
    const answer = await this.send("GET", url, { deadline });
    if (answer.status === 404) return null;
    return (this.ok(answer)["data"] as Body)["entries"] as SessionStoreEntry[];
  }

  /** The main transcripts of a project with their mtimes in epoch ms. */
  async listSessions(projectKey: string): Promise<Array<{ sessionId: string; mtime: number }>> {
    const items = await this.listProject(projectKey, false);
    return items.map((item) => ({
      sessionId: String(item["session_id"]),
      mtime: Math.floor(Number(item["mtime"])),
    }));
  }

  /** The stored summary of every session in a project, in the TypeScript fold's form. */
  async listSessionSummaries(projectKey: string): Promise<SessionSummaryEntry[]> {
    const items = await this.listProject(projectKey, true);
    const out: SessionSummaryEntry[] = [];
    for (const item of items) {
      const data = item["data"];
      if (!isRecord(data)) continue;
      out.push({
        sessionId: String(item["session_id"]),
        mtime: Math.floor(Number(item["mtime"])),
        data: fromStoredSummary(data),
      });
    }
    return out;
  }

  /** Delete a transcript; a main key also deletes its subkeys and summary. */
  async delete(key: SessionKey): Promise<void> {
    const deadline = this.deadline();
    const url = this.sessionUrl(key, "") + query({ subpath: key.subpath });
    if (key.subpath === undefined) {
      const sid = sessionId(key);
      this.summaries.delete(sid);
      for (const kid of this.failed.keys()) {
        if (kid === sid || kid.startsWith(sid + "\u0000")) this.failed.delete(kid);
      }
    } else {
      this.failed.delete(keyId(key));
    }
    const answer = await this.write("DELETE", url, { deadline });
    if (answer.status !== 404) this.ok(answer, true);
  }

  /** The subpaths stored under a session, such as `subagents/agent-1`. */
  async listSubkeys(key: { projectKey: string; sessionId: string }): Promise<string[]> {
    const deadline = this.deadline();
    const out: string[] = [];
    let token: string | undefined;
    for (;;) {
      const url =
        this.sessionUrl(key, "/subkeys") + query({ limit: this.pageSize, next_token: token });
      const answer = await this.send("GET", url, { deadline });
      if (answer.status === 404) return out;
      const body = this.ok(answer);
      out.push(...((body["data"] as Body)["subkeys"] as string[]));
      token = nextToken(body, token);
      if (token === undefined) return out;
    }
  }

  // -- task binding, writer lease, mirror failures ------------------------------

  /**
   * Bind the task to a Claude session; the first binding wins. Returns the
   * stored binding whether this call created it or it already held the same
   * values; raises `BindingConflictError` if the task is bound to others.
   */
  async bind(claudeSessionId: string, projectKey: string, cwd: string): Promise<Binding> {
    const deadline = this.deadline();
    const body = JSON.stringify({ claude_session_id: claudeSessionId, project_key: projectKey, cwd });
    const answer = await this.write("PUT", this.bindingUrl(), { body, deadline });
    const binding = toBinding(this.ok(answer)["data"] as Body);
    this.boundProject = binding.projectKey;
    return binding;
  }

  /** The task's binding, or null if the task is not bound. */
  async binding(): Promise<Binding | null> {
    const deadline = this.deadline();
    const answer = await this.send("GET", this.bindingUrl(), { deadline });
    if (answer.status === 404) {
      const error = errorFromResponse(answer.status, answer.headers, answer.text);
      if (error.code === "not_found") return null;
      throw error;
    }
    const binding = toBinding(this.ok(answer)["data"] as Body);
    this.boundProject = binding.projectKey;
    return binding;
  }

  /**
   * Take a new writer lease: keep its epoch on this store and return it. Writes
   * from then on carry `X-Writer-Epoch`; a writer holding an older epoch for
   * this task is refused with `StaleWriterError`.
   */
  async lease(): Promise<number> {
    const deadline = this.deadline();
    const answer = await this.send("POST", `${this.taskUrl()}/lease`, { deadline });
    const epoch = Number((this.ok(answer)["data"] as Body)["epoch"]);
    this.epoch = epoch;
    return epoch;
  }

  /**
   * Report a mirror failure the gateway never saw: the SDK's `MirrorErrorMessage`
   * (a batch dropped after its retries), or anything with `key` and `error`.
   * Kept with the gateway's own failures for operators; returns the failure's id.
   */
  async reportMirrorError(message: MirrorErrorLike): Promise<string> {
    const key = message.key ?? {};
    const error = String(message.error ?? "") || "mirror error";
    const body: Body = { error: error.slice(0, 4096) };
    if (key.projectKey) body["project_key"] = key.projectKey;
    if (key.sessionId) body["session_id"] = key.sessionId;
    if (key.subpath) body["subpath"] = key.subpath;
    const deadline = this.deadline();
    const answer = await this.send("POST", `${this.taskUrl()}/mirror-failures`, {
      body: JSON.stringify(body),
      deadline,
    });
    return String((this.ok(answer)["data"] as Body)["id"]);
  }

  // -- appends and summaries ------------------------------------------------------

  private async appendOnce(key: SessionKey, entries: SessionStoreEntry[]): Promise<void> {
    this.checkNotFenced();
    this.warnOnDrift(key.projectKey);
    const deadline = this.deadline();
    const kid = keyId(key);
    const entriesJson = JSON.stringify(entries);
    // The same batch again on the same key right after it failed is the SDK's
    // retry: it reuses the failed attempt's key, so a batch that landed before
    // its answer was lost is not stored twice.
    const failed = this.failed.get(kid);
    const idempotencyKey =
      failed !== undefined && failed.body === entriesJson
        ? failed.idempotencyKey
        : randomUUID().replaceAll("-", "");
    try {
      if (key.subpath === undefined) {
        await this.locked(sessionId(key), () =>
          this.appendMain(key, entries, entriesJson, idempotencyKey, deadline),
        );
      } else {
        await this.postEntries(key, `{"entries":${entriesJson}}`, idempotencyKey, deadline);
      }
    } catch (error) {
      this.failed.set(kid, { body: entriesJson, idempotencyKey });
      throw error;
    }
    this.failed.delete(kid);
  }

  private async appendMain(
    key: SessionKey,
    entries: SessionStoreEntry[],
    entriesJson: string,
    idempotencyKey: string,
    deadline: number,
  ): Promise<void> {
    const sid = sessionId(key);
    try {
      const base = this.summaries.get(sid) ?? (await this.getSummary(key, deadline));
      const folded = fold(key, base, entries);
      const summary = JSON.stringify({ data: toStoredSummary(folded), expected_version: base.version });
      const body = `{"entries":${entriesJson},"summary":${summary}}`;
      const receipt = await this.postEntries(key, body, idempotencyKey, deadline);
      const outcome = isRecord(receipt["summary"]) ? receipt["summary"] : {};
      if (outcome["applied"] === true) {
        this.summaries.set(sid, { version: Number(outcome["version"]), data: folded });
        return;
      }
      this.summaries.delete(sid);
      await this.reconcileSummary(key, entries, deadline);
    } catch (error) {
      this.summaries.delete(sid);
      throw error;
    }
  }

  /** Re-read the summary, fold the batch onto it and write it with compare-and-set, until it holds. */
  private async reconcileSummary(
    key: SessionKey,
    entries: SessionStoreEntry[],
    deadline: number,
  ): Promise<void> {
    const sid = sessionId(key);
    const url = this.sessionUrl(key, "/summary");
    let conflict: GatewayError | undefined;
    for (let round = 0; round < this.maxSummaryRounds; round++) {
      if (round > 0) await pause(10 * 2 ** round * (0.5 + Math.random()), deadline);
      const current = await this.getSummary(key, deadline);
      const folded = fold(key, current, entries);
      const body = JSON.stringify({ data: toStoredSummary(folded), expected_version: current.version });
      const answer = await this.write("PUT", url, { body, deadline });
      if (answer.status === 409) {
        conflict = errorFromResponse(answer.status, answer.headers, answer.text);
        if (conflict.code === "summary_conflict") {
          this.logger.debug?.(`summary conflict on ${key.projectKey}/${key.sessionId}, retrying`);
          continue;
        }
        throw conflict;
      }
      const data = this.ok(answer)["data"] as Body;
      this.summaries.set(sid, { version: Number(data["version"]), data: folded });
      return;
    }
    throw new SummaryConflictError(
      `summary update lost ${this.maxSummaryRounds} compare-and-set rounds`,
      { status: 409, code: "summary_conflict", requestId: conflict?.requestId },
    );
  }

  private async getSummary(key: SessionKey, deadline: number): Promise<Summary> {
    const answer = await this.send("GET", this.sessionUrl(key, "/summary"), { deadline });
    if (answer.status === 404) return { version: 0, data: undefined };
    const data = this.ok(answer)["data"] as Body;
    const stored = data["data"];
    return {
      version: Number(data["version"] ?? 0),
      data: isRecord(stored) ? fromStoredSummary(stored) : undefined,
    };
  }

  private async locked(sid: string, task: () => Promise<void>): Promise<void> {
    const before = this.locks.get(sid) ?? Promise.resolve();
    const run = before.then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(sid, tail);
    try {
      await run;
    } finally {
      if (this.locks.get(sid) === tail) this.locks.delete(sid);
    }
  }

  private warnOnDrift(projectKey: string): void {
    const bound = this.boundProject;
    if (bound === undefined || projectKey === bound || this.driftWarned.has(projectKey)) return;
    this.driftWarned.add(projectKey);
    this.logger.warn(
      `task ${this.taskId} is bound to project key ${JSON.stringify(bound)} but the agent now ` +
        `writes under ${JSON.stringify(projectKey)}: its working directory moved, so a resume ` +
        `from the binding would look in the wrong place (keep the agent's cwd at the binding's cwd)`,
    );
  }

  /**
   * Refuse locally once the gateway has fenced this store's epoch off: epochs
   * only grow, so further writes with it (the SDK's own retries too) fail
   * without a request.
   */
  private checkNotFenced(): void {
    const epoch = this.epochValue;
    const stale = this.staleEpoch;
    if (epoch !== undefined && stale !== undefined && epoch <= stale) {
      throw new StaleWriterError(
        `writer epoch ${epoch} was fenced off by a newer lease on task ${this.taskId}; not sending`,
        { status: 409, code: "stale_writer" },
      );
    }
  }

  // -- HTTP -------------------------------------------------------------------------

  private async postEntries(
    key: SessionKey,
    body: string,
    idempotencyKey: string,
    deadline: number,
  ): Promise<Body> {
    const url = this.sessionUrl(key, "/entries") + query({ subpath: key.subpath });
    const answer = await this.write("POST", url, {
      body,
      headers: { "Idempotency-Key": idempotencyKey },
      deadline,
    });
    return this.ok(answer)["data"] as Body;
  }

  /**
   * A write of this task: with `X-Writer-Epoch` when the store holds an epoch,
   * refused locally once that epoch was fenced off, remembering a `stale_writer`
   * answer so later writes with the same epoch send nothing.
   */
  private async write(
    method: string,
    url: string,
    request: { deadline: number; body?: string; headers?: Record<string, string> },
  ): Promise<Answer> {
    this.checkNotFenced();
    const epoch = this.epochValue;
    const headers = { ...request.headers };
    if (epoch !== undefined) headers["X-Writer-Epoch"] = String(epoch);
    const answer = await this.send(method, url, { ...request, headers });
    if (answer.status === 409 && epoch !== undefined && codeOf(answer) === "stale_writer") {
      if (this.staleEpoch === undefined || epoch > this.staleEpoch) this.staleEpoch = epoch;
    }
    return answer;
  }

  /**
   * Send one request, retrying with the same body what can succeed shortly:
   * transport errors and the answers the gateway's code calls retryable, after
   * a random wait up to the backoff step (full jitter) and never before a
   * `Retry-After`. Anything else comes back at once.
   */
  private async send(
    method: string,
    url: string,
    request: { deadline: number; body?: string; headers?: Record<string, string> },
  ): Promise<Answer> {
    const headers: Record<string, string> = {
      "User-Agent": `transcript-gateway-client-ts/${VERSION}`,
      ...request.headers,
    };
    const authorization = await this.authorization();
    if (authorization !== undefined) headers["Authorization"] = authorization;
    if (request.body !== undefined) headers["Content-Type"] = "application/json";
    let lastError: unknown;
    let lastAnswer: Answer | undefined;
    let retryAfterMs = 0;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      if (attempt > 0) {
        const step = this.backoffMs.length
          ? this.backoffMs[Math.min(attempt - 1, this.backoffMs.length - 1)]!
          : 0;
        await pause(Math.max(Math.random() * step, retryAfterMs), request.deadline);
      }
      const remaining = request.deadline - Date.now();
      if (remaining < MIN_ATTEMPT_MS) break;
      let answer: Answer;
      try {
        const response = await this.fetchImpl(url, {
          method,
          headers,
          body: request.body,
          signal: AbortSignal.timeout(Math.min(this.attemptTimeoutMs, remaining)),
        });
        answer = { status: response.status, headers: response.headers, text: await response.text() };
      } catch (error) {
        this.logger.debug?.(`${method} ${url} attempt ${attempt + 1} failed: ${String(error)}`);
        lastError = error;
        lastAnswer = undefined;
        continue;
      }
      if (retryable(answer)) {
        this.logger.debug?.(`${method} ${url} attempt ${attempt + 1} got ${answer.status}`);
        lastError = undefined;
        lastAnswer = answer;
        retryAfterMs = retryAfter(answer);
        continue;
      }
      return answer;
    }
    if (lastAnswer !== undefined) {
      throw errorFromResponse(lastAnswer.status, lastAnswer.headers, lastAnswer.text);
    }
    throw new GatewayUnavailableError(
      lastError !== undefined ? `${method} ${url} failed: ${String(lastError)}` : `${method} ${url}: out of time`,
      {},
      { cause: lastError },
    );
  }

  private ok(answer: Answer, allowEmpty = false): Body {
    if (answer.status < 200 || answer.status >= 300) {
      throw errorFromResponse(answer.status, answer.headers, answer.text);
    }
    if (allowEmpty && answer.text === "") return {};
    let body: unknown;
    try {
      body = JSON.parse(answer.text);
    } catch (error) {
      throw new GatewayError(`malformed JSON from gateway: ${String(error)}`, {
        status: answer.status,
        requestId: answer.headers.get("x-request-id") ?? undefined,
      });
    }
    if (!isRecord(body) || (!("data" in body) && !allowEmpty)) {
      throw new GatewayError("response has no data envelope", {
        status: answer.status,
        requestId: answer.headers.get("x-request-id") ?? undefined,
      });
    }
    return body;
  }

  private async listProject(projectKey: string, summaries: boolean): Promise<Body[]> {
    const deadline = this.deadline();
    const base = `${this.projectUrl(projectKey)}/sessions`;
    const out: Body[] = [];
    let token: string | undefined;
    for (;;) {
      const url =
        base +
        query({ summaries: summaries ? "true" : undefined, limit: this.pageSize, next_token: token });
      const answer = await this.send("GET", url, { deadline });
      if (answer.status === 404) return out;
      const body = this.ok(answer);
      out.push(...((body["data"] as Body)["sessions"] as Body[]));
      token = nextToken(body, token);
      if (token === undefined) return out;
    }
  }

  private async authorization(): Promise<string | undefined> {
    let token = this.token;
    if (token === undefined) return undefined;
    if (typeof token === "function") token = await token();
    if (typeof token !== "string" || token === "") {
      throw new TypeError("the token function must return a non-empty string");
    }
    return `Bearer ${token}`;
  }

  private deadline(): number {
    return Date.now() + this.timeoutMs;
  }

  private taskUrl(): string {
    return `${this.baseUrl}/v1/tasks/${encodeURIComponent(this.taskId)}`;
  }

  private bindingUrl(): string {
    return `${this.taskUrl()}/binding`;
  }

  private projectUrl(projectKey: string): string {
    return `${this.taskUrl()}/projects/${encodeURIComponent(projectKey)}`;
  }

  private sessionUrl(key: { projectKey: string; sessionId: string }, suffix: string): string {
    return `${this.projectUrl(key.projectKey)}/sessions/${encodeURIComponent(key.sessionId)}${suffix}`;
  }
}

function sessionId(key: { projectKey: string; sessionId: string }): string {
  return `${key.projectKey}\u0000${key.sessionId}`;
}

function keyId(key: SessionKey): string {
  return key.subpath === undefined ? sessionId(key) : `${sessionId(key)}\u0000${key.subpath}`;
}

function fold(key: SessionKey, base: Summary, entries: SessionStoreEntry[]): Record<string, unknown> {
  const prev: SessionSummaryEntry | undefined =
    base.data === undefined ? undefined : { sessionId: key.sessionId, mtime: 0, data: base.data };
  return foldSessionSummary(prev, key, entries).data;
}

function query(params: Record<string, string | number | undefined>): string {
  const present = Object.entries(params).filter(([, value]) => value !== undefined);
  if (present.length === 0) return "";
  return (
    "?" +
    present
      .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`)
      .join("&")
  );
}

function nextToken(body: Body, previous: string | undefined): string | undefined {
  let token = body["next_token"];
  if ((token === undefined || token === null) && isRecord(body["data"])) {
    token = body["data"]["next_token"];
  }
  if (token === undefined || token === null || token === "") return undefined;
  if (token === previous) {
    throw new GatewayError("gateway repeated the same next_token", { code: "bad_pagination" });
  }
  return String(token);
}

function toBinding(data: Body): Binding {
  return {
    claudeSessionId: String(data["claude_session_id"]),
    projectKey: String(data["project_key"]),
    cwd: String(data["cwd"]),
    createdMs: Number(data["created_ms"]),
  };
}

function codeOf(answer: Answer): string | undefined {
  try {
    return envelopeCode(JSON.parse(answer.text));
  } catch {
    return undefined;
  }
}

/** Whether an answer is worth the same request again, by the gateway's error code. */
function retryable(answer: Answer): boolean {
  if (answer.status < 400) return false;
  const code = codeOf(answer);
  if (code === undefined) return RETRY_STATUSES_WITHOUT_CODE.has(answer.status);
  return RETRYABLE_CODES.has(code);
}

/** The answer's `Retry-After` in ms (0 when absent or not a number of seconds). */
function retryAfter(answer: Answer): number {
  const seconds = Number(answer.headers.get("retry-after") ?? "0");
  if (!Number.isFinite(seconds)) return 0;
  return Math.min(Math.max(seconds * 1000, 0), MAX_RETRY_AFTER_MS);
}

async function pause(ms: number, deadline: number): Promise<void> {
  const wait = Math.max(0, Math.min(ms, deadline - Date.now()));
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}
