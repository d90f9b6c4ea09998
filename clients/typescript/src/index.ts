/** Claude Agent SDK SessionStore adapter for the transcript-gateway HTTP service. */

export {
  BindingConflictError,
  EpochRequiredError,
  ForbiddenError,
  GatewayError,
  GatewayUnavailableError,
  StaleWriterError,
  StoreClosedError,
  SummaryConflictError,
  TaskErasedError,
  UnauthorizedError,
  UnknownEpochError,
} from "./errors.js";
export type { GatewayErrorFields } from "./errors.js";
export { heal } from "./heal.js";
export type { HealOptions } from "./heal.js";
export { GatewaySessionStore } from "./store.js";
export type { Binding, GatewaySessionStoreOptions, Logger, MirrorErrorLike, TokenSource } from "./store.js";
export { SUMMARY_KEYS, fromStoredSummary, toStoredSummary } from "./summary.js";
export { VERSION } from "./version.js";
