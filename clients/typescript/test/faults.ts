/** A fetch that records every request and injects failures into the matching ones. */

export interface Recorded {
  method: string;
  url: string;
  headers: Headers;
  body: string | undefined;
}

export interface FaultOptions {
  match?: (method: string, url: string) => boolean;
  /** Fail this many matching requests before they reach the gateway (a refused connection). */
  failBeforeSend?: number;
  /** Let this many matching requests reach the gateway, then lose the answer (a reset connection). */
  failAfterSend?: number;
  /** Hold matching requests until `release()` is called. */
  hold?: boolean;
}

export class FaultFetch {
  readonly requests: Recorded[] = [];
  private failBeforeSend: number;
  private failAfterSend: number;
  private readonly match: (method: string, url: string) => boolean;
  private readonly holding: boolean;
  private released!: () => void;
  private readonly gate = new Promise<void>((resolve) => {
    this.released = resolve;
  });
  /** Resolves when a held request has arrived. */
  readonly arrived: Promise<void>;
  private signalArrived!: () => void;

  constructor(options: FaultOptions = {}) {
    this.match = options.match ?? (() => true);
    this.failBeforeSend = options.failBeforeSend ?? 0;
    this.failAfterSend = options.failAfterSend ?? 0;
    this.holding = options.hold ?? false;
    this.arrived = new Promise((resolve) => {
      this.signalArrived = resolve;
    });
  }

  release(): void {
    this.released();
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const method = init?.method ?? "GET";
    const url = String(input);
    this.requests.push({
      method,
      url,
      headers: new Headers(init?.headers),
      body: typeof init?.body === "string" ? init.body : undefined,
    });
    const matched = this.match(method, url);
    if (matched && this.failBeforeSend > 0) {
      this.failBeforeSend--;
      throw new TypeError("fetch failed (injected before sending)");
    }
    if (matched && this.holding) {
      this.signalArrived();
      await this.gate;
    }
    const response = await fetch(input, init);
    if (matched && this.failAfterSend > 0) {
      this.failAfterSend--;
      await response.arrayBuffer();
      throw new TypeError("fetch failed (injected after the gateway answered)");
    }
    return response;
  };

  matching(method: string, pathSuffix: string): Recorded[] {
    return this.requests.filter((r) => r.method === method && new URL(r.url).pathname.endsWith(pathSuffix));
  }
}

export const isEntriesPost = (method: string, url: string): boolean =>
  method === "POST" && new URL(url).pathname.endsWith("/entries");

/** A fetch that answers from a script of responses (no gateway), recording each request. */
export function scripted(answers: Array<() => Response>): { fetch: typeof fetch; calls: number[] } {
  const calls: number[] = [];
  let i = 0;
  const fake: typeof fetch = async () => {
    calls.push(Date.now());
    const answer = answers[Math.min(i, answers.length - 1)]!;
    i++;
    return answer();
  };
  return { fetch: fake, calls };
}

export function envelope(status: number, code: string, headers: Record<string, string> = {}): () => Response {
  return () =>
    new Response(JSON.stringify({ error: { code, message: `injected ${code}`, request_id: "inj" } }), {
      status,
      headers: { "content-type": "application/json", ...headers },
    });
}

export function okEntries(entries: unknown[]): () => Response {
  return () =>
    new Response(JSON.stringify({ data: { entries } }), {
      status: 200,
      headers: { "content-type": "application/json" },
    });
}
