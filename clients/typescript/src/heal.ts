/** Closing mirror gaps: replay a worker's local transcript into the gateway. */

import { importSessionToStore } from "@anthropic-ai/claude-agent-sdk";
import type { SessionStore } from "@anthropic-ai/claude-agent-sdk";

export interface HealOptions {
  /** The agent's working directory (the SDK searches every project directory when omitted). */
  dir?: string;
  /** Also replay the session's subagent transcripts (default true). */
  includeSubagents?: boolean;
  /** Entries per append (the SDK's default, 500, when omitted). */
  batchSize?: number;
}

/**
 * Make the store's copy of a session complete again after a mirror gap.
 *
 * Replays the worker's local JSONL transcript of `sessionId` (and, by default,
 * its subagents) into `store` with the SDK's `importSessionToStore`. The
 * gateway stores an entry whose `uuid` it already holds only once, so entries
 * mirrored before the gap stay where they are, the gap's entries are added
 * after them in file order, and healing again adds nothing that carries a
 * uuid (entries without one, such as titles, are appended again: the SDK's
 * contract never deduplicates those). Rejects when the local transcript is gone.
 */
export async function heal(store: SessionStore, sessionId: string, options: HealOptions = {}): Promise<void> {
  await importSessionToStore(sessionId, store, {
    dir: options.dir,
    includeSubagents: options.includeSubagents ?? true,
    ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
  });
}
