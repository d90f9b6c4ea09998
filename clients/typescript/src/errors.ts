/** Errors raised by the transcript-gateway client: one class per gateway error code a caller handles. */

export interface GatewayErrorFields {
  status?: number;
  code?: string;
  requestId?: string;
}

/** A request to the gateway failed; carries the error envelope's `code`, `message` and `request_id`. */
export class GatewayError extends Error {
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly requestId: string | undefined;
  /** The envelope's message, without the status and code prefix of `message`. */
  readonly detail: string;

  constructor(detail: string, fields: GatewayErrorFields = {}, options?: ErrorOptions) {
    super(render(detail, fields), options);
    this.name = new.target.name;
    this.status = fields.status;
    this.code = fields.code;
    this.requestId = fields.requestId;
    this.detail = detail;
  }
}

/** The gateway could not be reached, or kept failing, within the retry budget. */
export class GatewayUnavailableError extends GatewayError {}

/** A summary compare-and-set kept losing to concurrent writers (409 `summary_conflict`). */
export class SummaryConflictError extends GatewayError {}

/** The task is already bound to a different Claude session, project key or cwd (409 `binding_conflict`). */
export class BindingConflictError extends GatewayError {}

/**
 * A newer writer holds the task's lease; this store's epoch is fenced off (409 `stale_writer`).
 * The write stored nothing and must not be retried with the same epoch.
 */
export class StaleWriterError extends GatewayError {}

/** The store's epoch was never issued for this task (409 `unknown_epoch`): take one with `lease()`. */
export class UnknownEpochError extends GatewayError {}

/** The task has a writer lease and this store sent no epoch (409 `epoch_required`): call `lease()` first. */
export class EpochRequiredError extends GatewayError {}

/**
 * The task was erased, or is being erased, while this write was under way (409 `task_erased`):
 * nothing of the write was kept. Never retried: sending it again would start a new transcript
 * after the erasure.
 */
export class TaskErasedError extends GatewayError {}

/** The gateway refused the token (401): missing, malformed, expired or wrongly signed. Never retried. */
export class UnauthorizedError extends GatewayError {}

/** The token is valid but not for this task or this operation (403). Never retried. */
export class ForbiddenError extends GatewayError {}

/** An append after `close()` began: the store takes no new writes. */
export class StoreClosedError extends GatewayError {}

const CODE_CLASSES: Record<string, typeof GatewayError> = {
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  summary_conflict: SummaryConflictError,
  binding_conflict: BindingConflictError,
  stale_writer: StaleWriterError,
  unknown_epoch: UnknownEpochError,
  epoch_required: EpochRequiredError,
  task_erased: TaskErasedError,
};

/** The error code of a gateway answer's envelope, if it has one. */
export function envelopeCode(body: unknown): string | undefined {
  const error = isRecord(body) ? body["error"] : undefined;
  const code = isRecord(error) ? error["code"] : undefined;
  return typeof code === "string" ? code : undefined;
}

/** The typed error for a non-2xx answer, from its JSON error envelope (or its text). */
export function errorFromResponse(status: number, headers: Headers, text: string): GatewayError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const error = isRecord(body) && isRecord(body["error"]) ? body["error"] : {};
  const code = typeof error["code"] === "string" ? error["code"] : undefined;
  const message = typeof error["message"] === "string" ? error["message"] : undefined;
  const requestId =
    (typeof error["request_id"] === "string" ? error["request_id"] : undefined) ??
    headers.get("x-request-id") ??
    undefined;
  const ErrorClass = (code !== undefined && CODE_CLASSES[code]) || GatewayError;
  return new ErrorClass(message ?? (text.slice(0, 500) || "request failed"), {
    status,
    code,
    requestId,
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function render(detail: string, fields: GatewayErrorFields): string {
  let head = fields.status !== undefined ? `HTTP ${fields.status}` : "gateway";
  if (fields.code) head = `${head} ${fields.code}`;
  let text = `${head}: ${detail}`;
  if (fields.requestId) text = `${text} (request_id=${fields.requestId})`;
  return text;
}
