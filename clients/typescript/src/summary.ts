/**
 * The stored form of a session summary's `data`.
 *
 * The two SDKs fold the same fields under different names: the TypeScript
 * `foldSessionSummary` writes camelCase (`customTitle`), Python's
 * `fold_session_summary` snake_case (`custom_title`). The gateway stores
 * `data` verbatim, so one form is canonical: snake_case, the form the Python
 * adapter has always stored. This adapter translates exactly the keys the
 * folds produce, on the way out (camel to snake) and on the way in (snake to
 * camel); any other key passes through unchanged in both directions.
 */

/** Every key `foldSessionSummary` writes, with the name Python's fold gives it. */
export const SUMMARY_KEYS: ReadonlyArray<readonly [camel: string, snake: string]> = [
  ["isSidechain", "is_sidechain"],
  ["createdAt", "created_at"],
  ["cwd", "cwd"],
  ["firstPrompt", "first_prompt"],
  ["firstPromptLocked", "first_prompt_locked"],
  ["commandFallback", "command_fallback"],
  ["customTitle", "custom_title"],
  ["aiTitle", "ai_title"],
  ["lastPrompt", "last_prompt"],
  ["summaryHint", "summary_hint"],
  ["gitBranch", "git_branch"],
  ["tag", "tag"],
];

const TO_SNAKE = new Map(SUMMARY_KEYS.map(([camel, snake]) => [camel, snake]));
const TO_CAMEL = new Map(SUMMARY_KEYS.map(([camel, snake]) => [snake, camel]));

/** The TypeScript fold's `data` in the stored (snake_case) form. */
export function toStoredSummary(data: Record<string, unknown>): Record<string, unknown> {
  return rename(data, TO_SNAKE);
}

/** Stored summary `data` in the form the TypeScript fold reads and writes (camelCase). */
export function fromStoredSummary(data: Record<string, unknown>): Record<string, unknown> {
  return rename(data, TO_CAMEL);
}

function rename(
  data: Record<string, unknown>,
  names: ReadonlyMap<string, string>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // Keys already in the target form first, so a translated key wins over a
  // stray copy under its target name (the translated one is what the fold kept).
  for (const [key, value] of Object.entries(data)) {
    if (!names.has(key)) out[key] = value;
  }
  for (const [key, value] of Object.entries(data)) {
    const renamed = names.get(key);
    if (renamed !== undefined) out[renamed] = value;
  }
  return out;
}
