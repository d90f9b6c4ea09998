/*!
 * @durable-streams/client 0.2.7, bundled for the browser by
 * scripts/vendor-dashboard.sh with esbuild 0.25.12. Do not edit: re-run the script.
 * Its package.json declares Apache-2.0; the LICENSE file it ships (also in
 * durable-streams-client.LICENSE.txt beside this file) reads:
 *
 * MIT License
 *
 * Copyright (c) 2025 durable-stream
 *
 * Permission is hereby granted, free of charge, to any person obtaining a copy
 * of this software and associated documentation files (the "Software"), to deal
 * in the Software without restriction, including without limitation the rights
 * to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 * copies of the Software, and to permit persons to whom the Software is
 * furnished to do so, subject to the following conditions:
 *
 * The above copyright notice and this permission notice shall be included in all
 * copies or substantial portions of the Software.
 *
 * THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 * IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 * FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 * AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 * LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 * OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 * SOFTWARE.
 */
var __defProp = Object.defineProperty;
var __typeError = (msg) => {
  throw TypeError(msg);
};
var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);
var __accessCheck = (obj, member, msg) => member.has(obj) || __typeError("Cannot " + msg);
var __privateGet = (obj, member, getter) => (__accessCheck(obj, member, "read from private field"), getter ? getter.call(obj) : member.get(obj));
var __privateAdd = (obj, member, value) => member.has(obj) ? __typeError("Cannot add the same private member more than once") : member instanceof WeakSet ? member.add(obj) : member.set(obj, value);
var __privateSet = (obj, member, value, setter) => (__accessCheck(obj, member, "write to private field"), setter ? setter.call(obj, value) : member.set(obj, value), value);
var __privateMethod = (obj, member, method) => (__accessCheck(obj, member, "access private method"), method);
var __privateWrapper = (obj, member, setter, getter) => ({
  set _(value) {
    __privateSet(obj, member, value, setter);
  },
  get _() {
    return __privateGet(obj, member, getter);
  }
});

// node_modules/@durable-streams/client/dist/index.js
var STREAM_OFFSET_HEADER = `Stream-Next-Offset`;
var STREAM_CURSOR_HEADER = `Stream-Cursor`;
var STREAM_UP_TO_DATE_HEADER = `Stream-Up-To-Date`;
var STREAM_CLOSED_HEADER = `Stream-Closed`;
var STREAM_SEQ_HEADER = `Stream-Seq`;
var STREAM_TTL_HEADER = `Stream-TTL`;
var STREAM_EXPIRES_AT_HEADER = `Stream-Expires-At`;
var PRODUCER_ID_HEADER = `Producer-Id`;
var PRODUCER_EPOCH_HEADER = `Producer-Epoch`;
var PRODUCER_SEQ_HEADER = `Producer-Seq`;
var PRODUCER_EXPECTED_SEQ_HEADER = `Producer-Expected-Seq`;
var PRODUCER_RECEIVED_SEQ_HEADER = `Producer-Received-Seq`;
var OFFSET_QUERY_PARAM = `offset`;
var LIVE_QUERY_PARAM = `live`;
var CURSOR_QUERY_PARAM = `cursor`;
var STREAM_SSE_DATA_ENCODING_HEADER = `stream-sse-data-encoding`;
var SSE_OFFSET_FIELD = `streamNextOffset`;
var SSE_CURSOR_FIELD = `streamCursor`;
var SSE_CLOSED_FIELD = `streamClosed`;
var SSE_COMPATIBLE_CONTENT_TYPES = [`text/`, `application/json`];
var DURABLE_STREAM_PROTOCOL_QUERY_PARAMS = [
  OFFSET_QUERY_PARAM,
  LIVE_QUERY_PARAM,
  CURSOR_QUERY_PARAM
];
var FetchError = class FetchError2 extends Error {
  constructor(status, text, json, headers, url, message) {
    super(message || `HTTP Error ${status} at ${url}: ${text ?? JSON.stringify(json)}`);
    __publicField(this, "status");
    __publicField(this, "text");
    __publicField(this, "json");
    __publicField(this, "headers");
    this.url = url;
    this.name = `FetchError`;
    this.status = status;
    this.text = text;
    this.json = json;
    this.headers = headers;
  }
  static async fromResponse(response, url) {
    const status = response.status;
    const headers = Object.fromEntries([...response.headers.entries()]);
    let text = void 0;
    let json = void 0;
    const contentType = response.headers.get(`content-type`);
    if (!response.bodyUsed && response.body !== null) if (contentType && contentType.includes(`application/json`)) try {
      json = await response.json();
    } catch {
      text = await response.text();
    }
    else text = await response.text();
    return new FetchError2(status, text, json, headers, url);
  }
};
var FetchBackoffAbortError = class extends Error {
  constructor() {
    super(`Fetch with backoff aborted`);
    this.name = `FetchBackoffAbortError`;
  }
};
var DurableStreamError = class DurableStreamError2 extends Error {
  constructor(message, code, status, details) {
    super(message);
    /**
    * HTTP status code, if applicable.
    */
    __publicField(this, "status");
    /**
    * Structured error code for programmatic handling.
    */
    __publicField(this, "code");
    /**
    * Additional error details (e.g., raw response body).
    */
    __publicField(this, "details");
    this.name = `DurableStreamError`;
    this.code = code;
    this.status = status;
    this.details = details;
  }
  /**
  * Create a DurableStreamError from an HTTP response.
  */
  static async fromResponse(response, url) {
    const status = response.status;
    let details;
    const contentType = response.headers.get(`content-type`);
    if (!response.bodyUsed && response.body !== null) if (contentType && contentType.includes(`application/json`)) try {
      details = await response.json();
    } catch {
      details = await response.text();
    }
    else details = await response.text();
    const code = statusToCode(status);
    const message = `Durable stream error at ${url}: ${response.statusText || status}`;
    return new DurableStreamError2(message, code, status, details);
  }
  /**
  * Create a DurableStreamError from a FetchError.
  */
  static fromFetchError(error) {
    const code = statusToCode(error.status);
    return new DurableStreamError2(error.message, code, error.status, error.json ?? error.text);
  }
};
function statusToCode(status) {
  switch (status) {
    case 400:
      return `BAD_REQUEST`;
    case 401:
      return `UNAUTHORIZED`;
    case 403:
      return `FORBIDDEN`;
    case 404:
      return `NOT_FOUND`;
    case 409:
      return `CONFLICT_SEQ`;
    case 429:
      return `RATE_LIMITED`;
    case 503:
      return `BUSY`;
    default:
      return `UNKNOWN`;
  }
}
var MissingStreamUrlError = class extends Error {
  constructor() {
    super(`Invalid stream options: missing required url parameter`);
    this.name = `MissingStreamUrlError`;
  }
};
var StreamClosedError = class extends DurableStreamError {
  constructor(url, finalOffset) {
    super(`Cannot append to closed stream`, `STREAM_CLOSED`, 409, url);
    __publicField(this, "code", `STREAM_CLOSED`);
    __publicField(this, "status", 409);
    __publicField(this, "streamClosed", true);
    /**
    * The final offset of the stream, if available from the response.
    */
    __publicField(this, "finalOffset");
    this.name = `StreamClosedError`;
    this.finalOffset = finalOffset;
  }
};
var InvalidSignalError = class extends Error {
  constructor() {
    super(`Invalid signal option. It must be an instance of AbortSignal.`);
    this.name = `InvalidSignalError`;
  }
};
var HTTP_RETRY_STATUS_CODES = [429, 503];
var BackoffDefaults = {
  initialDelay: 100,
  maxDelay: 6e4,
  multiplier: 1.3,
  maxRetries: Infinity
};
function parseRetryAfterHeader(retryAfter) {
  if (!retryAfter) return 0;
  const retryAfterSec = Number(retryAfter);
  if (Number.isFinite(retryAfterSec) && retryAfterSec > 0) return retryAfterSec * 1e3;
  const retryDate = Date.parse(retryAfter);
  if (!isNaN(retryDate)) {
    const deltaMs = retryDate - Date.now();
    return Math.max(0, Math.min(deltaMs, 36e5));
  }
  return 0;
}
function createFetchWithBackoff(fetchClient, backoffOptions = BackoffDefaults) {
  const { initialDelay, maxDelay, multiplier, debug = false, onFailedAttempt, maxRetries = Infinity } = backoffOptions;
  return async (...args) => {
    const url = args[0];
    const options = args[1];
    let delay = initialDelay;
    let attempt = 0;
    while (true) try {
      const result = await fetchClient(...args);
      if (result.ok) return result;
      const err = await FetchError.fromResponse(result, url.toString());
      throw err;
    } catch (e) {
      onFailedAttempt?.();
      if (options?.signal?.aborted) throw new FetchBackoffAbortError();
      else if (e instanceof FetchError && !HTTP_RETRY_STATUS_CODES.includes(e.status) && e.status >= 400 && e.status < 500) throw e;
      else {
        attempt++;
        if (attempt > maxRetries) {
          if (debug) console.log(`Max retries reached (${attempt}/${maxRetries}), giving up`);
          throw e;
        }
        const serverMinimumMs = e instanceof FetchError ? parseRetryAfterHeader(e.headers[`retry-after`]) : 0;
        const jitter = Math.random() * delay;
        const clientBackoffMs = Math.min(jitter, maxDelay);
        const waitMs = Math.max(serverMinimumMs, clientBackoffMs);
        if (debug) {
          const source = serverMinimumMs > 0 ? `server+client` : `client`;
          console.log(`Retry attempt #${attempt} after ${waitMs}ms (${source}, serverMin=${serverMinimumMs}ms, clientBackoff=${clientBackoffMs}ms)`);
        }
        await new Promise((resolve) => setTimeout(resolve, waitMs));
        delay = Math.min(delay * multiplier, maxDelay);
      }
    }
  };
}
var NO_BODY_STATUS_CODES = [
  201,
  204,
  205
];
function createFetchWithConsumedBody(fetchClient) {
  return async (...args) => {
    const url = args[0];
    const res = await fetchClient(...args);
    try {
      if (res.status < 200 || NO_BODY_STATUS_CODES.includes(res.status)) return res;
      const buf = await res.arrayBuffer();
      return new Response(buf, {
        status: res.status,
        statusText: res.statusText,
        headers: res.headers
      });
    } catch (err) {
      if (args[1]?.signal?.aborted) throw new FetchBackoffAbortError();
      throw new FetchError(res.status, void 0, void 0, Object.fromEntries([...res.headers.entries()]), url.toString(), err instanceof Error ? err.message : typeof err === `string` ? err : `failed to read body`);
    }
  };
}
function hasAsyncIterator(stream$1) {
  return typeof Symbol !== `undefined` && typeof Symbol.asyncIterator === `symbol` && typeof stream$1[Symbol.asyncIterator] === `function`;
}
function defineAsyncIterator(stream$1) {
  if (typeof Symbol === `undefined` || typeof Symbol.asyncIterator !== `symbol`) return;
  if (typeof stream$1[Symbol.asyncIterator] === `function`) return;
  const createIterator = function() {
    const reader = this.getReader();
    let finished = false;
    let pendingReads = 0;
    const iterator = {
      async next() {
        if (finished) return {
          done: true,
          value: void 0
        };
        pendingReads++;
        try {
          const { value, done } = await reader.read();
          if (done) {
            finished = true;
            reader.releaseLock();
            return {
              done: true,
              value: void 0
            };
          }
          return {
            done: false,
            value
          };
        } catch (err) {
          finished = true;
          try {
            reader.releaseLock();
          } catch {
          }
          throw err;
        } finally {
          pendingReads--;
        }
      },
      async return(value) {
        if (pendingReads > 0) throw new TypeError(`Cannot close a readable stream reader when it has pending read requests`);
        finished = true;
        const cancelPromise = reader.cancel(value);
        reader.releaseLock();
        await cancelPromise;
        return {
          done: true,
          value: void 0
        };
      },
      async throw(err) {
        if (pendingReads > 0) throw new TypeError(`Cannot close a readable stream reader when it has pending read requests`);
        finished = true;
        const cancelPromise = reader.cancel(err);
        reader.releaseLock();
        await cancelPromise;
        throw err;
      },
      [Symbol.asyncIterator]() {
        return this;
      }
    };
    return iterator;
  };
  try {
    Object.defineProperty(stream$1, Symbol.asyncIterator, {
      configurable: true,
      writable: true,
      value: createIterator
    });
  } catch {
    return;
  }
  try {
    Object.defineProperty(stream$1, `values`, {
      configurable: true,
      writable: true,
      value: createIterator
    });
  } catch {
  }
}
function asAsyncIterableReadableStream(stream$1) {
  if (!hasAsyncIterator(stream$1)) defineAsyncIterator(stream$1);
  return stream$1;
}
async function* parseSSEStream(stream$1, signal) {
  const reader = stream$1.getReader();
  const decoder = new TextDecoder();
  let buffer = ``;
  let currentEvent = { data: [] };
  try {
    while (true) {
      if (signal?.aborted) break;
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      buffer = buffer.replace(/\r\n/g, `
`).replace(/\r/g, `
`);
      const lines = buffer.split(`
`);
      buffer = lines.pop() ?? ``;
      for (const line of lines) if (line === ``) {
        if (currentEvent.type && currentEvent.data.length > 0) {
          const dataStr = currentEvent.data.join(`
`);
          if (currentEvent.type === `data`) yield {
            type: `data`,
            data: dataStr
          };
          else if (currentEvent.type === `control`) try {
            const control = JSON.parse(dataStr);
            yield {
              type: `control`,
              streamNextOffset: control.streamNextOffset,
              streamCursor: control.streamCursor,
              upToDate: control.upToDate,
              streamClosed: control.streamClosed
            };
          } catch (err) {
            const preview = dataStr.length > 100 ? dataStr.slice(0, 100) + `...` : dataStr;
            throw new DurableStreamError(`Failed to parse SSE control event: ${err instanceof Error ? err.message : String(err)}. Data: ${preview}`, `PARSE_ERROR`);
          }
        }
        currentEvent = { data: [] };
      } else if (line.startsWith(`event:`)) {
        const eventType = line.slice(6);
        currentEvent.type = eventType.startsWith(` `) ? eventType.slice(1) : eventType;
      } else if (line.startsWith(`data:`)) {
        const content = line.slice(5);
        currentEvent.data.push(content.startsWith(` `) ? content.slice(1) : content);
      }
    }
    const remaining = decoder.decode();
    if (remaining) buffer += remaining;
    if (buffer && currentEvent.type && currentEvent.data.length > 0) {
      const dataStr = currentEvent.data.join(`
`);
      if (currentEvent.type === `data`) yield {
        type: `data`,
        data: dataStr
      };
      else if (currentEvent.type === `control`) try {
        const control = JSON.parse(dataStr);
        yield {
          type: `control`,
          streamNextOffset: control.streamNextOffset,
          streamCursor: control.streamCursor,
          upToDate: control.upToDate,
          streamClosed: control.streamClosed
        };
      } catch (err) {
        const preview = dataStr.length > 100 ? dataStr.slice(0, 100) + `...` : dataStr;
        throw new DurableStreamError(`Failed to parse SSE control event: ${err instanceof Error ? err.message : String(err)}. Data: ${preview}`, `PARSE_ERROR`);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
var StreamResponseState = class {
  shouldContinueLive(stopAfterUpToDate, liveMode) {
    if (stopAfterUpToDate && this.upToDate) return false;
    if (liveMode === false) return false;
    if (this.streamClosed) return false;
    return true;
  }
};
var LongPollState = class LongPollState2 extends StreamResponseState {
  constructor(fields) {
    super();
    __publicField(this, "offset");
    __publicField(this, "cursor");
    __publicField(this, "upToDate");
    __publicField(this, "streamClosed");
    this.offset = fields.offset;
    this.cursor = fields.cursor;
    this.upToDate = fields.upToDate;
    this.streamClosed = fields.streamClosed;
  }
  shouldUseSse() {
    return false;
  }
  withResponseMetadata(update) {
    return new LongPollState2({
      offset: update.offset ?? this.offset,
      cursor: update.cursor ?? this.cursor,
      upToDate: update.upToDate,
      streamClosed: this.streamClosed || update.streamClosed
    });
  }
  withSSEControl(event) {
    const streamClosed = this.streamClosed || (event.streamClosed ?? false);
    return new LongPollState2({
      offset: event.streamNextOffset,
      cursor: event.streamCursor || this.cursor,
      upToDate: event.streamClosed ?? false ? true : event.upToDate ?? this.upToDate,
      streamClosed
    });
  }
  pause() {
    return new PausedState(this);
  }
};
var SSEState = class SSEState2 extends StreamResponseState {
  constructor(fields) {
    super();
    __publicField(this, "offset");
    __publicField(this, "cursor");
    __publicField(this, "upToDate");
    __publicField(this, "streamClosed");
    __publicField(this, "consecutiveShortConnections");
    __publicField(this, "connectionStartTime");
    this.offset = fields.offset;
    this.cursor = fields.cursor;
    this.upToDate = fields.upToDate;
    this.streamClosed = fields.streamClosed;
    this.consecutiveShortConnections = fields.consecutiveShortConnections ?? 0;
    this.connectionStartTime = fields.connectionStartTime;
  }
  shouldUseSse() {
    return true;
  }
  withResponseMetadata(update) {
    return new SSEState2({
      offset: update.offset ?? this.offset,
      cursor: update.cursor ?? this.cursor,
      upToDate: update.upToDate,
      streamClosed: this.streamClosed || update.streamClosed,
      consecutiveShortConnections: this.consecutiveShortConnections,
      connectionStartTime: this.connectionStartTime
    });
  }
  withSSEControl(event) {
    const streamClosed = this.streamClosed || (event.streamClosed ?? false);
    return new SSEState2({
      offset: event.streamNextOffset,
      cursor: event.streamCursor || this.cursor,
      upToDate: event.streamClosed ?? false ? true : event.upToDate ?? this.upToDate,
      streamClosed,
      consecutiveShortConnections: this.consecutiveShortConnections,
      connectionStartTime: this.connectionStartTime
    });
  }
  startConnection(now) {
    return new SSEState2({
      offset: this.offset,
      cursor: this.cursor,
      upToDate: this.upToDate,
      streamClosed: this.streamClosed,
      consecutiveShortConnections: this.consecutiveShortConnections,
      connectionStartTime: now
    });
  }
  handleConnectionEnd(now, wasAborted, config) {
    if (this.connectionStartTime === void 0) return {
      action: `healthy`,
      state: this
    };
    const duration = now - this.connectionStartTime;
    if (duration < config.minConnectionDuration && !wasAborted) {
      const newCount = this.consecutiveShortConnections + 1;
      if (newCount >= config.maxShortConnections) return {
        action: `fallback`,
        state: new LongPollState({
          offset: this.offset,
          cursor: this.cursor,
          upToDate: this.upToDate,
          streamClosed: this.streamClosed
        })
      };
      return {
        action: `reconnect`,
        state: new SSEState2({
          offset: this.offset,
          cursor: this.cursor,
          upToDate: this.upToDate,
          streamClosed: this.streamClosed,
          consecutiveShortConnections: newCount,
          connectionStartTime: this.connectionStartTime
        }),
        backoffAttempt: newCount
      };
    }
    if (duration >= config.minConnectionDuration) return {
      action: `healthy`,
      state: new SSEState2({
        offset: this.offset,
        cursor: this.cursor,
        upToDate: this.upToDate,
        streamClosed: this.streamClosed,
        consecutiveShortConnections: 0,
        connectionStartTime: this.connectionStartTime
      })
    };
    return {
      action: `healthy`,
      state: this
    };
  }
  pause() {
    return new PausedState(this);
  }
};
var _inner, _a;
var PausedState = (_a = class extends StreamResponseState {
  constructor(inner) {
    super();
    __privateAdd(this, _inner);
    __privateSet(this, _inner, inner);
  }
  get offset() {
    return __privateGet(this, _inner).offset;
  }
  get cursor() {
    return __privateGet(this, _inner).cursor;
  }
  get upToDate() {
    return __privateGet(this, _inner).upToDate;
  }
  get streamClosed() {
    return __privateGet(this, _inner).streamClosed;
  }
  shouldUseSse() {
    return __privateGet(this, _inner).shouldUseSse();
  }
  withResponseMetadata(update) {
    const newInner = __privateGet(this, _inner).withResponseMetadata(update);
    return new _a(newInner);
  }
  withSSEControl(event) {
    const newInner = __privateGet(this, _inner).withSSEControl(event);
    return new _a(newInner);
  }
  pause() {
    return this;
  }
  resume() {
    return {
      state: __privateGet(this, _inner),
      justResumed: true
    };
  }
}, _inner = new WeakMap(), _a);
var PAUSE_STREAM = `PAUSE_STREAM`;
var _headers, _status, _statusText, _ok, _isLoading, _syncState, _isJsonMode, _abortController, _fetchNext, _startSSE, _closedResolve, _closedReject, _closed, _stopAfterUpToDate, _consumptionMethod, _state, _requestAbortController, _unsubscribeFromVisibilityChanges, _pausePromise, _pauseResolve, _sseResilience, _encoding, _responseStream, _StreamResponseImpl_instances, subscribeToVisibilityChanges_fn, pause_fn, resume_fn, ensureJsonMode_fn, markClosed_fn, markError_fn, ensureNoConsumption_fn, shouldContinueLive_fn, updateStateFromResponse_fn, updateStateFromSSEControl_fn, updateEncodingFromSSEResponse_fn, markSSEConnectionStart_fn, trySSEReconnect_fn, processSSEEvents_fn, processSSEDataEvent_fn, createResponseStream_fn, getResponseReader_fn, createBodyStreamInternal_fn, _a2;
var StreamResponseImpl = (_a2 = class {
  constructor(config) {
    __privateAdd(this, _StreamResponseImpl_instances);
    __publicField(this, "url");
    __publicField(this, "contentType");
    __publicField(this, "live");
    __publicField(this, "startOffset");
    __privateAdd(this, _headers);
    __privateAdd(this, _status);
    __privateAdd(this, _statusText);
    __privateAdd(this, _ok);
    __privateAdd(this, _isLoading);
    __privateAdd(this, _syncState);
    __privateAdd(this, _isJsonMode);
    __privateAdd(this, _abortController);
    __privateAdd(this, _fetchNext);
    __privateAdd(this, _startSSE);
    __privateAdd(this, _closedResolve);
    __privateAdd(this, _closedReject);
    __privateAdd(this, _closed);
    __privateAdd(this, _stopAfterUpToDate, false);
    __privateAdd(this, _consumptionMethod, null);
    __privateAdd(this, _state, `active`);
    __privateAdd(this, _requestAbortController);
    __privateAdd(this, _unsubscribeFromVisibilityChanges);
    __privateAdd(this, _pausePromise);
    __privateAdd(this, _pauseResolve);
    __privateAdd(this, _sseResilience);
    __privateAdd(this, _encoding);
    __privateAdd(this, _responseStream);
    this.url = config.url;
    this.contentType = config.contentType;
    this.live = config.live;
    this.startOffset = config.startOffset;
    const syncFields = {
      offset: config.initialOffset,
      cursor: config.initialCursor,
      upToDate: config.initialUpToDate,
      streamClosed: config.initialStreamClosed
    };
    __privateSet(this, _syncState, config.startSSE ? new SSEState(syncFields) : new LongPollState(syncFields));
    __privateSet(this, _headers, config.firstResponse.headers);
    __privateSet(this, _status, config.firstResponse.status);
    __privateSet(this, _statusText, config.firstResponse.statusText);
    __privateSet(this, _ok, config.firstResponse.ok);
    __privateSet(this, _isLoading, false);
    __privateSet(this, _isJsonMode, config.isJsonMode);
    __privateSet(this, _abortController, config.abortController);
    __privateSet(this, _fetchNext, config.fetchNext);
    __privateSet(this, _startSSE, config.startSSE);
    __privateSet(this, _sseResilience, {
      minConnectionDuration: config.sseResilience?.minConnectionDuration ?? 1e3,
      maxShortConnections: config.sseResilience?.maxShortConnections ?? 3,
      backoffBaseDelay: config.sseResilience?.backoffBaseDelay ?? 100,
      backoffMaxDelay: config.sseResilience?.backoffMaxDelay ?? 5e3,
      logWarnings: config.sseResilience?.logWarnings ?? true
    });
    __privateSet(this, _encoding, config.encoding);
    __privateSet(this, _closed, new Promise((resolve, reject) => {
      __privateSet(this, _closedResolve, resolve);
      __privateSet(this, _closedReject, reject);
    }));
    __privateSet(this, _responseStream, __privateMethod(this, _StreamResponseImpl_instances, createResponseStream_fn).call(this, config.firstResponse));
    __privateGet(this, _abortController).signal.addEventListener(`abort`, () => {
      var _a6;
      __privateGet(this, _requestAbortController)?.abort(__privateGet(this, _abortController).signal.reason);
      (_a6 = __privateGet(this, _pauseResolve)) == null ? void 0 : _a6.call(this);
      __privateSet(this, _pausePromise, void 0);
      __privateSet(this, _pauseResolve, void 0);
    }, { once: true });
    __privateMethod(this, _StreamResponseImpl_instances, subscribeToVisibilityChanges_fn).call(this);
  }
  get headers() {
    return __privateGet(this, _headers);
  }
  get status() {
    return __privateGet(this, _status);
  }
  get statusText() {
    return __privateGet(this, _statusText);
  }
  get ok() {
    return __privateGet(this, _ok);
  }
  get isLoading() {
    return __privateGet(this, _isLoading);
  }
  get offset() {
    return __privateGet(this, _syncState).offset;
  }
  get cursor() {
    return __privateGet(this, _syncState).cursor;
  }
  get upToDate() {
    return __privateGet(this, _syncState).upToDate;
  }
  get streamClosed() {
    return __privateGet(this, _syncState).streamClosed;
  }
  async body() {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `body`);
    __privateSet(this, _stopAfterUpToDate, true);
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    const blobs = [];
    try {
      let result = await reader.read();
      while (!result.done) {
        const wasUpToDate = this.upToDate;
        const blob = await result.value.blob();
        if (blob.size > 0) blobs.push(blob);
        if (wasUpToDate) break;
        result = await reader.read();
      }
    } finally {
      reader.releaseLock();
    }
    __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
    if (blobs.length === 0) return new Uint8Array(0);
    if (blobs.length === 1) return new Uint8Array(await blobs[0].arrayBuffer());
    const combined = new Blob(blobs);
    return new Uint8Array(await combined.arrayBuffer());
  }
  async json() {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `json`);
    __privateMethod(this, _StreamResponseImpl_instances, ensureJsonMode_fn).call(this);
    __privateSet(this, _stopAfterUpToDate, true);
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    const items = [];
    try {
      let result = await reader.read();
      while (!result.done) {
        const wasUpToDate = this.upToDate;
        const text = await result.value.text();
        const content = text.trim() || `[]`;
        let parsed;
        try {
          parsed = JSON.parse(content);
        } catch (err) {
          const preview = content.length > 100 ? content.slice(0, 100) + `...` : content;
          throw new DurableStreamError(`Failed to parse JSON response: ${err instanceof Error ? err.message : String(err)}. Data: ${preview}`, `PARSE_ERROR`);
        }
        if (Array.isArray(parsed)) items.push(...parsed);
        else items.push(parsed);
        if (wasUpToDate) break;
        result = await reader.read();
      }
    } finally {
      reader.releaseLock();
    }
    __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
    return items;
  }
  async text() {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `text`);
    __privateSet(this, _stopAfterUpToDate, true);
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    const parts = [];
    try {
      let result = await reader.read();
      while (!result.done) {
        const wasUpToDate = this.upToDate;
        const text = await result.value.text();
        if (text) parts.push(text);
        if (wasUpToDate) break;
        result = await reader.read();
      }
    } finally {
      reader.releaseLock();
    }
    __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
    return parts.join(``);
  }
  bodyStream() {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `bodyStream`);
    return asAsyncIterableReadableStream(__privateMethod(this, _StreamResponseImpl_instances, createBodyStreamInternal_fn).call(this));
  }
  jsonStream() {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `jsonStream`);
    __privateMethod(this, _StreamResponseImpl_instances, ensureJsonMode_fn).call(this);
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    let pendingItems = [];
    const stream$1 = new ReadableStream({
      pull: async (controller) => {
        if (pendingItems.length > 0) {
          controller.enqueue(pendingItems.shift());
          return;
        }
        let result = await reader.read();
        while (!result.done) {
          const response = result.value;
          const text = await response.text();
          const content = text.trim() || `[]`;
          let parsed;
          try {
            parsed = JSON.parse(content);
          } catch (err) {
            const preview = content.length > 100 ? content.slice(0, 100) + `...` : content;
            throw new DurableStreamError(`Failed to parse JSON response: ${err instanceof Error ? err.message : String(err)}. Data: ${preview}`, `PARSE_ERROR`);
          }
          pendingItems = Array.isArray(parsed) ? parsed : [parsed];
          if (pendingItems.length > 0) {
            controller.enqueue(pendingItems.shift());
            return;
          }
          result = await reader.read();
        }
        __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
        controller.close();
        return;
      },
      cancel: () => {
        reader.releaseLock();
        this.cancel();
      }
    });
    return asAsyncIterableReadableStream(stream$1);
  }
  textStream() {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `textStream`);
    const decoder = new TextDecoder();
    const stream$1 = __privateMethod(this, _StreamResponseImpl_instances, createBodyStreamInternal_fn).call(this).pipeThrough(new TransformStream({
      transform(chunk, controller) {
        controller.enqueue(decoder.decode(chunk, { stream: true }));
      },
      flush(controller) {
        const remaining = decoder.decode();
        if (remaining) controller.enqueue(remaining);
      }
    }));
    return asAsyncIterableReadableStream(stream$1);
  }
  subscribeJson(subscriber) {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `subscribeJson`);
    __privateMethod(this, _StreamResponseImpl_instances, ensureJsonMode_fn).call(this);
    const abortController = new AbortController();
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    const consumeJsonSubscription = async () => {
      try {
        let result = await reader.read();
        while (!result.done) {
          if (abortController.signal.aborted) break;
          const response = result.value;
          const { offset, cursor, upToDate, streamClosed } = getMetadataFromResponse(response, this.offset, this.cursor, this.streamClosed);
          const text = await response.text();
          const content = text.trim() || `[]`;
          let parsed;
          try {
            parsed = JSON.parse(content);
          } catch (err) {
            const preview = content.length > 100 ? content.slice(0, 100) + `...` : content;
            throw new DurableStreamError(`Failed to parse JSON response: ${err instanceof Error ? err.message : String(err)}. Data: ${preview}`, `PARSE_ERROR`);
          }
          const items = Array.isArray(parsed) ? parsed : [parsed];
          await subscriber({
            items,
            offset,
            cursor,
            upToDate,
            streamClosed
          });
          result = await reader.read();
        }
        __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } catch (e) {
        const isAborted = abortController.signal.aborted;
        const isBodyError = e instanceof TypeError && String(e).includes(`Body`);
        if (!isAborted && !isBodyError) __privateMethod(this, _StreamResponseImpl_instances, markError_fn).call(this, e instanceof Error ? e : new Error(String(e)));
        else __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } finally {
        reader.releaseLock();
      }
    };
    consumeJsonSubscription();
    return () => {
      abortController.abort();
      this.cancel();
    };
  }
  subscribeBytes(subscriber) {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `subscribeBytes`);
    const abortController = new AbortController();
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    const consumeBytesSubscription = async () => {
      try {
        let result = await reader.read();
        while (!result.done) {
          if (abortController.signal.aborted) break;
          const response = result.value;
          const { offset, cursor, upToDate, streamClosed } = getMetadataFromResponse(response, this.offset, this.cursor, this.streamClosed);
          const buffer = await response.arrayBuffer();
          await subscriber({
            data: new Uint8Array(buffer),
            offset,
            cursor,
            upToDate,
            streamClosed
          });
          result = await reader.read();
        }
        __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } catch (e) {
        const isAborted = abortController.signal.aborted;
        const isBodyError = e instanceof TypeError && String(e).includes(`Body`);
        if (!isAborted && !isBodyError) __privateMethod(this, _StreamResponseImpl_instances, markError_fn).call(this, e instanceof Error ? e : new Error(String(e)));
        else __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } finally {
        reader.releaseLock();
      }
    };
    consumeBytesSubscription();
    return () => {
      abortController.abort();
      this.cancel();
    };
  }
  subscribeText(subscriber) {
    __privateMethod(this, _StreamResponseImpl_instances, ensureNoConsumption_fn).call(this, `subscribeText`);
    const abortController = new AbortController();
    const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
    const consumeTextSubscription = async () => {
      try {
        let result = await reader.read();
        while (!result.done) {
          if (abortController.signal.aborted) break;
          const response = result.value;
          const { offset, cursor, upToDate, streamClosed } = getMetadataFromResponse(response, this.offset, this.cursor, this.streamClosed);
          const text = await response.text();
          await subscriber({
            text,
            offset,
            cursor,
            upToDate,
            streamClosed
          });
          result = await reader.read();
        }
        __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } catch (e) {
        const isAborted = abortController.signal.aborted;
        const isBodyError = e instanceof TypeError && String(e).includes(`Body`);
        if (!isAborted && !isBodyError) __privateMethod(this, _StreamResponseImpl_instances, markError_fn).call(this, e instanceof Error ? e : new Error(String(e)));
        else __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } finally {
        reader.releaseLock();
      }
    };
    consumeTextSubscription();
    return () => {
      abortController.abort();
      this.cancel();
    };
  }
  cancel(reason) {
    var _a6;
    __privateGet(this, _abortController).abort(reason);
    (_a6 = __privateGet(this, _unsubscribeFromVisibilityChanges)) == null ? void 0 : _a6.call(this);
    __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
  }
  get closed() {
    return __privateGet(this, _closed);
  }
}, _headers = new WeakMap(), _status = new WeakMap(), _statusText = new WeakMap(), _ok = new WeakMap(), _isLoading = new WeakMap(), _syncState = new WeakMap(), _isJsonMode = new WeakMap(), _abortController = new WeakMap(), _fetchNext = new WeakMap(), _startSSE = new WeakMap(), _closedResolve = new WeakMap(), _closedReject = new WeakMap(), _closed = new WeakMap(), _stopAfterUpToDate = new WeakMap(), _consumptionMethod = new WeakMap(), _state = new WeakMap(), _requestAbortController = new WeakMap(), _unsubscribeFromVisibilityChanges = new WeakMap(), _pausePromise = new WeakMap(), _pauseResolve = new WeakMap(), _sseResilience = new WeakMap(), _encoding = new WeakMap(), _responseStream = new WeakMap(), _StreamResponseImpl_instances = new WeakSet(), /**
* Subscribe to document visibility changes to pause/resume syncing.
* When the page is hidden, we pause to save battery and bandwidth.
* When visible again, we resume syncing.
*/
subscribeToVisibilityChanges_fn = function() {
  if (typeof document === `object` && typeof document.hidden === `boolean` && typeof document.addEventListener === `function`) {
    const visibilityHandler = () => {
      if (document.hidden) __privateMethod(this, _StreamResponseImpl_instances, pause_fn).call(this);
      else __privateMethod(this, _StreamResponseImpl_instances, resume_fn).call(this);
    };
    document.addEventListener(`visibilitychange`, visibilityHandler);
    __privateSet(this, _unsubscribeFromVisibilityChanges, () => {
      if (typeof document === `object`) document.removeEventListener(`visibilitychange`, visibilityHandler);
    });
    if (document.hidden) __privateMethod(this, _StreamResponseImpl_instances, pause_fn).call(this);
  }
}, /**
* Pause the stream when page becomes hidden.
* Aborts any in-flight request to free resources.
* Creates a promise that pull() will await while paused.
*/
pause_fn = function() {
  if (__privateGet(this, _state) === `active`) {
    __privateSet(this, _state, `pause-requested`);
    __privateSet(this, _syncState, __privateGet(this, _syncState).pause());
    __privateSet(this, _pausePromise, new Promise((resolve) => {
      __privateSet(this, _pauseResolve, resolve);
    }));
    __privateGet(this, _requestAbortController)?.abort(PAUSE_STREAM);
  }
}, /**
* Resume the stream when page becomes visible.
* Resolves the pause promise to unblock pull().
*/
resume_fn = function() {
  var _a6;
  if (__privateGet(this, _state) === `paused` || __privateGet(this, _state) === `pause-requested`) {
    if (__privateGet(this, _abortController).signal.aborted) return;
    if (__privateGet(this, _syncState) instanceof PausedState) __privateSet(this, _syncState, __privateGet(this, _syncState).resume().state);
    __privateSet(this, _state, `active`);
    (_a6 = __privateGet(this, _pauseResolve)) == null ? void 0 : _a6.call(this);
    __privateSet(this, _pausePromise, void 0);
    __privateSet(this, _pauseResolve, void 0);
  }
}, ensureJsonMode_fn = function() {
  if (!__privateGet(this, _isJsonMode)) throw new DurableStreamError(`JSON methods are only valid for JSON-mode streams. Content-Type is "${this.contentType}" and json hint was not set.`, `BAD_REQUEST`);
}, markClosed_fn = function() {
  var _a6;
  (_a6 = __privateGet(this, _unsubscribeFromVisibilityChanges)) == null ? void 0 : _a6.call(this);
  __privateGet(this, _closedResolve).call(this);
}, markError_fn = function(err) {
  var _a6;
  (_a6 = __privateGet(this, _unsubscribeFromVisibilityChanges)) == null ? void 0 : _a6.call(this);
  __privateGet(this, _closedReject).call(this, err);
}, /**
* Ensure only one consumption method is used per StreamResponse.
* Throws if any consumption method was already called.
*/
ensureNoConsumption_fn = function(method) {
  if (__privateGet(this, _consumptionMethod) !== null) throw new DurableStreamError(`Cannot call ${method}() - this StreamResponse is already being consumed via ${__privateGet(this, _consumptionMethod)}()`, `ALREADY_CONSUMED`);
  __privateSet(this, _consumptionMethod, method);
}, /**
* Determine if we should continue with live updates based on live mode
* and whether we've received upToDate or streamClosed.
*/
shouldContinueLive_fn = function() {
  return __privateGet(this, _syncState).shouldContinueLive(__privateGet(this, _stopAfterUpToDate), this.live);
}, /**
* Update state from response headers.
*/
updateStateFromResponse_fn = function(response) {
  __privateSet(this, _syncState, __privateGet(this, _syncState).withResponseMetadata({
    offset: response.headers.get(STREAM_OFFSET_HEADER) || void 0,
    cursor: response.headers.get(STREAM_CURSOR_HEADER) || void 0,
    upToDate: response.headers.has(STREAM_UP_TO_DATE_HEADER),
    streamClosed: response.headers.get(STREAM_CLOSED_HEADER)?.toLowerCase() === `true`
  }));
  __privateSet(this, _headers, response.headers);
  __privateSet(this, _status, response.status);
  __privateSet(this, _statusText, response.statusText);
  __privateSet(this, _ok, response.ok);
}, /**
* Update instance state from an SSE control event.
*/
updateStateFromSSEControl_fn = function(controlEvent) {
  __privateSet(this, _syncState, __privateGet(this, _syncState).withSSEControl(controlEvent));
}, updateEncodingFromSSEResponse_fn = function(response) {
  __privateSet(this, _encoding, response.headers.get(STREAM_SSE_DATA_ENCODING_HEADER) === `base64` ? `base64` : void 0);
}, /**
* Mark the start of an SSE connection for duration tracking.
* If the state is not SSEState (e.g., auto-detected SSE from content-type),
* transitions to SSEState first.
*/
markSSEConnectionStart_fn = function() {
  if (!(__privateGet(this, _syncState) instanceof SSEState)) __privateSet(this, _syncState, new SSEState({
    offset: __privateGet(this, _syncState).offset,
    cursor: __privateGet(this, _syncState).cursor,
    upToDate: __privateGet(this, _syncState).upToDate,
    streamClosed: __privateGet(this, _syncState).streamClosed
  }));
  __privateSet(this, _syncState, __privateGet(this, _syncState).startConnection(Date.now()));
}, trySSEReconnect_fn = async function() {
  if (!__privateGet(this, _syncState).shouldUseSse()) return null;
  if (!__privateMethod(this, _StreamResponseImpl_instances, shouldContinueLive_fn).call(this) || !__privateGet(this, _startSSE)) return null;
  const result = __privateGet(this, _syncState).handleConnectionEnd(Date.now(), __privateGet(this, _abortController).signal.aborted, __privateGet(this, _sseResilience));
  __privateSet(this, _syncState, result.state);
  if (result.action === `fallback`) {
    if (__privateGet(this, _sseResilience).logWarnings) console.warn("[Durable Streams] SSE connections are closing immediately (possibly due to proxy buffering or misconfiguration). Falling back to long polling. Your proxy must support streaming SSE responses (not buffer the complete response). Configuration: Nginx add 'X-Accel-Buffering: no', Caddy add 'flush_interval -1' to reverse_proxy.");
    return null;
  }
  if (result.action === `reconnect`) {
    const maxDelay = Math.min(__privateGet(this, _sseResilience).backoffMaxDelay, __privateGet(this, _sseResilience).backoffBaseDelay * Math.pow(2, result.backoffAttempt));
    const delayMs = Math.floor(Math.random() * maxDelay);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  __privateMethod(this, _StreamResponseImpl_instances, markSSEConnectionStart_fn).call(this);
  __privateSet(this, _requestAbortController, new AbortController());
  const newSSEResponse = await __privateGet(this, _startSSE).call(this, this.offset, this.cursor, __privateGet(this, _requestAbortController).signal);
  __privateMethod(this, _StreamResponseImpl_instances, updateEncodingFromSSEResponse_fn).call(this, newSSEResponse);
  if (newSSEResponse.body) return parseSSEStream(newSSEResponse.body, __privateGet(this, _requestAbortController).signal);
  return null;
}, processSSEEvents_fn = async function(sseEventIterator) {
  const { done, value: event } = await sseEventIterator.next();
  if (done) {
    try {
      const newIterator = await __privateMethod(this, _StreamResponseImpl_instances, trySSEReconnect_fn).call(this);
      if (newIterator) return {
        type: `continue`,
        newIterator
      };
    } catch (err) {
      return {
        type: `error`,
        error: err instanceof Error ? err : new Error(`SSE reconnection failed`)
      };
    }
    return { type: `closed` };
  }
  if (event.type === `data`) return __privateMethod(this, _StreamResponseImpl_instances, processSSEDataEvent_fn).call(this, event.data, sseEventIterator);
  __privateMethod(this, _StreamResponseImpl_instances, updateStateFromSSEControl_fn).call(this, event);
  if (event.upToDate) {
    const response = createSSESyntheticResponse(``, event.streamNextOffset, event.streamCursor, true, event.streamClosed ?? false, this.contentType, __privateGet(this, _encoding));
    return {
      type: `response`,
      response
    };
  }
  return { type: `continue` };
}, processSSEDataEvent_fn = async function(pendingData, sseEventIterator) {
  const bufferedDataParts = [pendingData];
  while (true) {
    const { done: controlDone, value: controlEvent } = await sseEventIterator.next();
    if (controlDone) {
      const response = createSSESyntheticResponseFromParts(bufferedDataParts, this.offset, this.cursor, this.upToDate, this.streamClosed, this.contentType, __privateGet(this, _encoding), __privateGet(this, _isJsonMode));
      try {
        const newIterator = await __privateMethod(this, _StreamResponseImpl_instances, trySSEReconnect_fn).call(this);
        return {
          type: `response`,
          response,
          newIterator: newIterator ?? void 0
        };
      } catch (err) {
        return {
          type: `error`,
          error: err instanceof Error ? err : new Error(`SSE reconnection failed`)
        };
      }
    }
    if (controlEvent.type === `control`) {
      __privateMethod(this, _StreamResponseImpl_instances, updateStateFromSSEControl_fn).call(this, controlEvent);
      const response = createSSESyntheticResponseFromParts(bufferedDataParts, controlEvent.streamNextOffset, controlEvent.streamCursor, controlEvent.upToDate ?? false, controlEvent.streamClosed ?? false, this.contentType, __privateGet(this, _encoding), __privateGet(this, _isJsonMode));
      return {
        type: `response`,
        response
      };
    }
    bufferedDataParts.push(controlEvent.data);
  }
}, /**
* Create the core ReadableStream<Response> that yields responses.
* This is consumed once - all consumption methods use this same stream.
*
* For long-poll mode: yields actual Response objects.
* For SSE mode: yields synthetic Response objects created from SSE data events.
*/
createResponseStream_fn = function(firstResponse) {
  let firstResponseYielded = false;
  let sseEventIterator = null;
  return new ReadableStream({
    pull: async (controller) => {
      try {
        if (!firstResponseYielded) {
          firstResponseYielded = true;
          const isSSE = firstResponse.headers.get(`content-type`)?.includes(`text/event-stream`) ?? false;
          if (isSSE && firstResponse.body) {
            __privateMethod(this, _StreamResponseImpl_instances, markSSEConnectionStart_fn).call(this);
            __privateMethod(this, _StreamResponseImpl_instances, updateEncodingFromSSEResponse_fn).call(this, firstResponse);
            __privateSet(this, _requestAbortController, new AbortController());
            sseEventIterator = parseSSEStream(firstResponse.body, __privateGet(this, _requestAbortController).signal);
          } else {
            controller.enqueue(firstResponse);
            if (this.upToDate && !__privateMethod(this, _StreamResponseImpl_instances, shouldContinueLive_fn).call(this)) {
              __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
              controller.close();
              return;
            }
            return;
          }
        }
        if (!sseEventIterator && this.upToDate && __privateGet(this, _startSSE) && __privateMethod(this, _StreamResponseImpl_instances, shouldContinueLive_fn).call(this)) {
          if (__privateGet(this, _state) === `pause-requested` || __privateGet(this, _state) === `paused`) {
            __privateSet(this, _state, `paused`);
            if (__privateGet(this, _pausePromise)) await __privateGet(this, _pausePromise);
            if (__privateGet(this, _abortController).signal.aborted) {
              __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
              controller.close();
              return;
            }
          }
          __privateMethod(this, _StreamResponseImpl_instances, markSSEConnectionStart_fn).call(this);
          __privateSet(this, _requestAbortController, new AbortController());
          const sseResponse = await __privateGet(this, _startSSE).call(this, this.offset, this.cursor, __privateGet(this, _requestAbortController).signal);
          __privateMethod(this, _StreamResponseImpl_instances, updateEncodingFromSSEResponse_fn).call(this, sseResponse);
          if (sseResponse.body) sseEventIterator = parseSSEStream(sseResponse.body, __privateGet(this, _requestAbortController).signal);
        }
        if (sseEventIterator) {
          if (__privateGet(this, _state) === `pause-requested` || __privateGet(this, _state) === `paused`) {
            __privateSet(this, _state, `paused`);
            if (__privateGet(this, _pausePromise)) await __privateGet(this, _pausePromise);
            if (__privateGet(this, _abortController).signal.aborted) {
              __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
              controller.close();
              return;
            }
            const newIterator = await __privateMethod(this, _StreamResponseImpl_instances, trySSEReconnect_fn).call(this);
            if (newIterator) sseEventIterator = newIterator;
            else {
              __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
              controller.close();
              return;
            }
          }
          while (true) {
            const result = await __privateMethod(this, _StreamResponseImpl_instances, processSSEEvents_fn).call(this, sseEventIterator);
            switch (result.type) {
              case `response`:
                if (result.newIterator) sseEventIterator = result.newIterator;
                controller.enqueue(result.response);
                return;
              case `closed`:
                __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
                controller.close();
                return;
              case `error`:
                __privateMethod(this, _StreamResponseImpl_instances, markError_fn).call(this, result.error);
                controller.error(result.error);
                return;
              case `continue`:
                if (result.newIterator) sseEventIterator = result.newIterator;
                continue;
            }
          }
        }
        if (__privateMethod(this, _StreamResponseImpl_instances, shouldContinueLive_fn).call(this)) {
          let resumingFromPause = false;
          if (__privateGet(this, _state) === `pause-requested` || __privateGet(this, _state) === `paused`) {
            __privateSet(this, _state, `paused`);
            if (__privateGet(this, _pausePromise)) await __privateGet(this, _pausePromise);
            if (__privateGet(this, _abortController).signal.aborted) {
              __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
              controller.close();
              return;
            }
            resumingFromPause = true;
          }
          if (__privateGet(this, _abortController).signal.aborted) {
            __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
            controller.close();
            return;
          }
          __privateSet(this, _requestAbortController, new AbortController());
          const response = await __privateGet(this, _fetchNext).call(this, this.offset, this.cursor, __privateGet(this, _requestAbortController).signal, this.upToDate, resumingFromPause);
          __privateMethod(this, _StreamResponseImpl_instances, updateStateFromResponse_fn).call(this, response);
          controller.enqueue(response);
          return;
        }
        __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
        controller.close();
      } catch (err) {
        if (__privateGet(this, _requestAbortController)?.signal.aborted && __privateGet(this, _requestAbortController).signal.reason === PAUSE_STREAM) {
          if (__privateGet(this, _state) === `pause-requested`) __privateSet(this, _state, `paused`);
          return;
        }
        if (__privateGet(this, _abortController).signal.aborted) {
          __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
          controller.close();
        } else {
          __privateMethod(this, _StreamResponseImpl_instances, markError_fn).call(this, err instanceof Error ? err : new Error(String(err)));
          controller.error(err);
        }
      }
    },
    cancel: () => {
      var _a6;
      __privateGet(this, _abortController).abort();
      (_a6 = __privateGet(this, _unsubscribeFromVisibilityChanges)) == null ? void 0 : _a6.call(this);
      __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
    }
  });
}, /**
* Get the response stream reader. Can only be called once.
*/
getResponseReader_fn = function() {
  return __privateGet(this, _responseStream).getReader();
}, /**
* Internal helper to create the body stream without consumption check.
* Used by both bodyStream() and textStream().
*/
createBodyStreamInternal_fn = function() {
  const { readable, writable } = new TransformStream();
  const reader = __privateMethod(this, _StreamResponseImpl_instances, getResponseReader_fn).call(this);
  const pipeBodyStream = async () => {
    try {
      let result = await reader.read();
      while (!result.done) {
        const wasUpToDate = this.upToDate;
        const body = result.value.body;
        if (body) await body.pipeTo(writable, {
          preventClose: true,
          preventAbort: true,
          preventCancel: true
        });
        if (wasUpToDate && !__privateMethod(this, _StreamResponseImpl_instances, shouldContinueLive_fn).call(this)) break;
        result = await reader.read();
      }
      await writable.close();
      __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
    } catch (err) {
      if (__privateGet(this, _abortController).signal.aborted) {
        try {
          await writable.close();
        } catch {
        }
        __privateMethod(this, _StreamResponseImpl_instances, markClosed_fn).call(this);
      } else {
        try {
          await writable.abort(err);
        } catch {
        }
        __privateMethod(this, _StreamResponseImpl_instances, markError_fn).call(this, err instanceof Error ? err : new Error(String(err)));
      }
    } finally {
      reader.releaseLock();
    }
  };
  pipeBodyStream();
  return readable;
}, _a2);
function getMetadataFromResponse(response, fallbackOffset, fallbackCursor, fallbackStreamClosed) {
  const offset = response.headers.get(STREAM_OFFSET_HEADER);
  const cursor = response.headers.get(STREAM_CURSOR_HEADER);
  const upToDate = response.headers.has(STREAM_UP_TO_DATE_HEADER);
  const streamClosed = response.headers.get(STREAM_CLOSED_HEADER)?.toLowerCase() === `true`;
  return {
    offset: offset ?? fallbackOffset,
    cursor: cursor ?? fallbackCursor,
    upToDate,
    streamClosed: streamClosed || fallbackStreamClosed
  };
}
function decodeBase64(base64Str) {
  const cleaned = base64Str.replace(/[\n\r]/g, ``);
  if (cleaned.length === 0) return new Uint8Array(0);
  if (cleaned.length % 4 !== 0) throw new DurableStreamError(`Invalid base64 data: length ${cleaned.length} is not a multiple of 4`, `PARSE_ERROR`);
  try {
    if (typeof Buffer !== `undefined`) return new Uint8Array(Buffer.from(cleaned, `base64`));
    else {
      const binaryStr = atob(cleaned);
      const bytes = new Uint8Array(binaryStr.length);
      for (let i = 0; i < binaryStr.length; i++) bytes[i] = binaryStr.charCodeAt(i);
      return bytes;
    }
  } catch (err) {
    throw new DurableStreamError(`Failed to decode base64 data: ${err instanceof Error ? err.message : String(err)}`, `PARSE_ERROR`);
  }
}
function createSSESyntheticResponse(data, offset, cursor, upToDate, streamClosed, contentType, encoding) {
  return createSSESyntheticResponseFromParts([data], offset, cursor, upToDate, streamClosed, contentType, encoding);
}
function createSSESyntheticResponseFromParts(dataParts, offset, cursor, upToDate, streamClosed, contentType, encoding, isJsonMode) {
  const headers = {
    "content-type": contentType ?? `application/json`,
    [STREAM_OFFSET_HEADER]: String(offset)
  };
  if (cursor) headers[STREAM_CURSOR_HEADER] = cursor;
  if (upToDate) headers[STREAM_UP_TO_DATE_HEADER] = `true`;
  if (streamClosed) headers[STREAM_CLOSED_HEADER] = `true`;
  let body;
  if (encoding === `base64`) {
    const decodedParts = dataParts.filter((part) => part.length > 0).map((part) => decodeBase64(part));
    if (decodedParts.length === 0) body = new ArrayBuffer(0);
    else if (decodedParts.length === 1) {
      const decoded = decodedParts[0];
      body = decoded.buffer.slice(decoded.byteOffset, decoded.byteOffset + decoded.byteLength);
    } else {
      const totalLength = decodedParts.reduce((sum, part) => sum + part.length, 0);
      const combined = new Uint8Array(totalLength);
      let offset$1 = 0;
      for (const part of decodedParts) {
        combined.set(part, offset$1);
        offset$1 += part.length;
      }
      body = combined.buffer;
    }
  } else if (isJsonMode) {
    const mergedParts = [];
    for (const part of dataParts) {
      const trimmed = part.trim();
      if (trimmed.length === 0) continue;
      if (trimmed.startsWith(`[`) && trimmed.endsWith(`]`)) {
        const inner = trimmed.slice(1, -1).trim();
        if (inner.length > 0) mergedParts.push(inner);
      } else mergedParts.push(trimmed);
    }
    body = `[${mergedParts.join(`,`)}]`;
  } else body = dataParts.join(``);
  return new Response(body, {
    status: 200,
    headers
  });
}
async function resolveHeaders(headers) {
  const resolved = {};
  if (!headers) return resolved;
  for (const [key, value] of Object.entries(headers)) if (typeof value === `function`) resolved[key] = await value();
  else resolved[key] = value;
  return resolved;
}
async function handleErrorResponse(response, url, context) {
  const status = response.status;
  if (status === 404) throw new DurableStreamError(`Stream not found: ${url}`, `NOT_FOUND`, 404);
  if (status === 409) {
    const streamClosedHeader = response.headers.get(STREAM_CLOSED_HEADER);
    if (streamClosedHeader?.toLowerCase() === `true`) {
      const finalOffset = response.headers.get(STREAM_OFFSET_HEADER) ?? void 0;
      throw new StreamClosedError(url, finalOffset);
    }
    const message = context?.operation === `create` ? `Stream already exists: ${url}` : `Sequence conflict: seq is lower than last appended`;
    const code = context?.operation === `create` ? `CONFLICT_EXISTS` : `CONFLICT_SEQ`;
    throw new DurableStreamError(message, code, 409);
  }
  if (status === 400) throw new DurableStreamError(`Bad request (possibly content-type mismatch)`, `BAD_REQUEST`, 400);
  throw await DurableStreamError.fromResponse(response, url);
}
async function resolveParams(params) {
  const resolved = {};
  if (!params) return resolved;
  for (const [key, value] of Object.entries(params)) if (value !== void 0) if (typeof value === `function`) resolved[key] = await value();
  else resolved[key] = value;
  return resolved;
}
var warnedOrigins = /* @__PURE__ */ new Set();
function getNodeEnvSafely() {
  if (typeof process === `undefined`) return void 0;
  return "development";
}
function isBrowserEnvironment() {
  return typeof globalThis.window !== `undefined`;
}
function getWindowLocationHref() {
  if (typeof globalThis.window !== `undefined` && typeof globalThis.window.location !== `undefined`) return globalThis.window.location.href;
  return void 0;
}
function resolveUrlMaybe(urlString) {
  try {
    return new URL(urlString);
  } catch {
    const base = getWindowLocationHref();
    if (base) try {
      return new URL(urlString, base);
    } catch {
      return void 0;
    }
    return void 0;
  }
}
function warnIfUsingHttpInBrowser(url, warnOnHttp) {
  if (warnOnHttp === false) return;
  const nodeEnv = getNodeEnvSafely();
  if (nodeEnv === `test`) return;
  if (!isBrowserEnvironment() || typeof console === `undefined` || typeof console.warn !== `function`) return;
  const urlStr = url instanceof URL ? url.toString() : url;
  const parsedUrl = resolveUrlMaybe(urlStr);
  if (!parsedUrl) return;
  if (parsedUrl.protocol === `http:`) {
    if (!warnedOrigins.has(parsedUrl.origin)) {
      warnedOrigins.add(parsedUrl.origin);
      console.warn("[DurableStream] Using HTTP (not HTTPS) typically limits browsers to ~6 concurrent connections per origin under HTTP/1.1. This can cause slow streams and app freezes with multiple active streams. Use HTTPS for HTTP/2 support. See https://electric-sql.com/r/electric-http2 for more information.");
    }
  }
}
function _resetHttpWarningForTesting() {
  warnedOrigins.clear();
}
async function stream(options) {
  if (!options.url) throw new DurableStreamError(`Invalid stream options: missing required url parameter`, `BAD_REQUEST`);
  let currentHeaders = options.headers;
  let currentParams = options.params;
  while (true) try {
    return await streamInternal({
      ...options,
      headers: currentHeaders,
      params: currentParams
    });
  } catch (err) {
    if (options.onError) {
      const retryOpts = await options.onError(err instanceof Error ? err : new Error(String(err)));
      if (retryOpts === void 0) throw err;
      if (retryOpts.params) currentParams = {
        ...currentParams,
        ...retryOpts.params
      };
      if (retryOpts.headers) currentHeaders = {
        ...currentHeaders,
        ...retryOpts.headers
      };
      continue;
    }
    throw err;
  }
}
async function streamInternal(options) {
  const url = options.url instanceof URL ? options.url.toString() : options.url;
  warnIfUsingHttpInBrowser(url, options.warnOnHttp);
  const fetchUrl = new URL(url);
  const startOffset = options.offset ?? `-1`;
  fetchUrl.searchParams.set(OFFSET_QUERY_PARAM, startOffset);
  const live = options.live ?? true;
  const params = await resolveParams(options.params);
  for (const [key, value] of Object.entries(params)) fetchUrl.searchParams.set(key, value);
  const headers = await resolveHeaders(options.headers);
  const abortController = new AbortController();
  if (options.signal) options.signal.addEventListener(`abort`, () => abortController.abort(options.signal?.reason), { once: true });
  const baseFetchClient = options.fetch ?? ((...args) => fetch(...args));
  const backoffOptions = options.backoffOptions ?? BackoffDefaults;
  const fetchClient = createFetchWithBackoff(baseFetchClient, backoffOptions);
  let firstResponse;
  try {
    firstResponse = await fetchClient(fetchUrl.toString(), {
      method: `GET`,
      headers,
      signal: abortController.signal
    });
  } catch (err) {
    if (err instanceof FetchBackoffAbortError) throw new DurableStreamError(`Stream request was aborted`, `UNKNOWN`);
    throw err;
  }
  const contentType = firstResponse.headers.get(`content-type`) ?? void 0;
  const initialOffset = firstResponse.headers.get(STREAM_OFFSET_HEADER) ?? startOffset;
  const initialCursor = firstResponse.headers.get(STREAM_CURSOR_HEADER) ?? void 0;
  const initialUpToDate = firstResponse.headers.has(STREAM_UP_TO_DATE_HEADER);
  const initialStreamClosed = firstResponse.headers.get(STREAM_CLOSED_HEADER)?.toLowerCase() === `true`;
  const isJsonMode = options.json === true || (contentType?.includes(`application/json`) ?? false);
  const sseDataEncoding = firstResponse.headers.get(STREAM_SSE_DATA_ENCODING_HEADER);
  const encoding = sseDataEncoding === `base64` ? `base64` : void 0;
  const fetchNext = async (offset, cursor, signal, upToDate, resumingFromPause) => {
    const nextUrl = new URL(url);
    nextUrl.searchParams.set(OFFSET_QUERY_PARAM, offset);
    if (upToDate && !resumingFromPause) {
      if (live === true || live === `long-poll`) nextUrl.searchParams.set(LIVE_QUERY_PARAM, `long-poll`);
    }
    if (cursor) nextUrl.searchParams.set(`cursor`, cursor);
    const nextParams = await resolveParams(options.params);
    for (const [key, value] of Object.entries(nextParams)) nextUrl.searchParams.set(key, value);
    const nextHeaders = await resolveHeaders(options.headers);
    const response = await fetchClient(nextUrl.toString(), {
      method: `GET`,
      headers: nextHeaders,
      signal
    });
    if (!response.ok) await handleErrorResponse(response, url);
    return response;
  };
  const startSSE = live === `sse` ? async (offset, cursor, signal) => {
    const sseUrl = new URL(url);
    sseUrl.searchParams.set(OFFSET_QUERY_PARAM, offset);
    sseUrl.searchParams.set(LIVE_QUERY_PARAM, `sse`);
    if (cursor) sseUrl.searchParams.set(`cursor`, cursor);
    const sseParams = await resolveParams(options.params);
    for (const [key, value] of Object.entries(sseParams)) sseUrl.searchParams.set(key, value);
    const sseHeaders = await resolveHeaders(options.headers);
    const response = await fetchClient(sseUrl.toString(), {
      method: `GET`,
      headers: sseHeaders,
      signal
    });
    if (!response.ok) await handleErrorResponse(response, url);
    return response;
  } : void 0;
  return new StreamResponseImpl({
    url,
    contentType,
    live,
    startOffset,
    isJsonMode,
    initialOffset,
    initialCursor,
    initialUpToDate,
    initialStreamClosed,
    firstResponse,
    abortController,
    fetchNext,
    startSSE,
    sseResilience: options.sseResilience,
    encoding
  });
}
var _worker, _concurrency, _running, _queue, _head, _drainResolvers, _AsyncQueue_instances, processNext_fn, checkDrained_fn, _a3;
var AsyncQueue = (_a3 = class {
  constructor(worker, concurrency) {
    __privateAdd(this, _AsyncQueue_instances);
    __privateAdd(this, _worker);
    __privateAdd(this, _concurrency);
    __privateAdd(this, _running, 0);
    __privateAdd(this, _queue, []);
    __privateAdd(this, _head, 0);
    __privateAdd(this, _drainResolvers, []);
    if (!(concurrency >= 1)) throw new Error(`concurrency must be >= 1`);
    __privateSet(this, _worker, worker);
    __privateSet(this, _concurrency, concurrency);
  }
  push(task) {
    return new Promise((resolve, reject) => {
      __privateGet(this, _queue).push({
        task,
        resolve,
        reject
      });
      __privateMethod(this, _AsyncQueue_instances, processNext_fn).call(this);
    });
  }
  /**
  * Number of tasks waiting to run.
  */
  length() {
    return __privateGet(this, _queue).length - __privateGet(this, _head);
  }
  /**
  * Number of tasks currently running.
  */
  running() {
    return __privateGet(this, _running);
  }
  /**
  * True when nothing is queued or running.
  */
  idle() {
    return __privateGet(this, _head) >= __privateGet(this, _queue).length && __privateGet(this, _running) === 0;
  }
  /**
  * Resolves when every queued and in-flight task has completed.
  * Resolves immediately if the queue is already idle.
  */
  async drained() {
    if (this.idle()) return;
    return new Promise((resolve) => {
      __privateGet(this, _drainResolvers).push(resolve);
    });
  }
}, _worker = new WeakMap(), _concurrency = new WeakMap(), _running = new WeakMap(), _queue = new WeakMap(), _head = new WeakMap(), _drainResolvers = new WeakMap(), _AsyncQueue_instances = new WeakSet(), processNext_fn = function() {
  while (__privateGet(this, _running) < __privateGet(this, _concurrency) && __privateGet(this, _head) < __privateGet(this, _queue).length) {
    const item = __privateGet(this, _queue)[__privateGet(this, _head)];
    __privateGet(this, _queue)[__privateGet(this, _head)] = void 0;
    __privateWrapper(this, _head)._++;
    if (__privateGet(this, _head) > 1024 && __privateGet(this, _head) > __privateGet(this, _queue).length >>> 1) {
      __privateSet(this, _queue, __privateGet(this, _queue).slice(__privateGet(this, _head)));
      __privateSet(this, _head, 0);
    }
    __privateWrapper(this, _running)._++;
    __privateGet(this, _worker).call(this, item.task).then((result) => {
      __privateWrapper(this, _running)._--;
      item.resolve(result);
      __privateMethod(this, _AsyncQueue_instances, checkDrained_fn).call(this);
      __privateMethod(this, _AsyncQueue_instances, processNext_fn).call(this);
    }, (error) => {
      __privateWrapper(this, _running)._--;
      item.reject(error);
      __privateMethod(this, _AsyncQueue_instances, checkDrained_fn).call(this);
      __privateMethod(this, _AsyncQueue_instances, processNext_fn).call(this);
    });
  }
}, checkDrained_fn = function() {
  if (this.idle()) {
    const resolvers = __privateGet(this, _drainResolvers);
    __privateSet(this, _drainResolvers, []);
    for (const r of resolvers) r();
  }
}, _a3);
var StaleEpochError = class extends Error {
  constructor(currentEpoch) {
    super(`Producer epoch is stale. Current server epoch: ${currentEpoch}. Call restart() or create a new producer with a higher epoch.`);
    /**
    * The current epoch on the server.
    */
    __publicField(this, "currentEpoch");
    this.name = `StaleEpochError`;
    this.currentEpoch = currentEpoch;
  }
};
var SequenceGapError = class extends Error {
  constructor(expectedSeq, receivedSeq) {
    super(`Producer sequence gap: expected ${expectedSeq}, received ${receivedSeq}`);
    __publicField(this, "expectedSeq");
    __publicField(this, "receivedSeq");
    this.name = `SequenceGapError`;
    this.expectedSeq = expectedSeq;
    this.receivedSeq = receivedSeq;
  }
};
function normalizeContentType$1(contentType) {
  if (!contentType) return ``;
  return contentType.split(`;`)[0].trim().toLowerCase();
}
var _stream, _producerId, _epoch, _nextSeq, _autoClaim, _maxBatchBytes, _lingerMs, _fetchClient, _headers2, _signal, _onError, _pendingBatch, _batchBytes, _lingerTimeout, _queue2, _maxInFlight, _deferredEnqueues, _closed2, _closeResult, _pendingFinalMessage, _lastSuccessfulOffset, _epochClaimed, _seqState, _IdempotentProducer_instances, doClose_fn, enqueuePendingBatch_fn, pushBatch_fn, batchWorker_fn, recordSuccessfulOffset_fn, signalSeqComplete_fn, waitForSeq_fn, doSendBatch_fn, buildHeaders_fn, rejectPendingBatch_fn, _a4;
var IdempotentProducer = (_a4 = class {
  /**
  * Create an idempotent producer for a stream.
  *
  * @param stream - The DurableStream to write to
  * @param producerId - Stable identifier for this producer (e.g., "order-service-1")
  * @param opts - Producer options
  */
  constructor(stream$1, producerId, opts) {
    __privateAdd(this, _IdempotentProducer_instances);
    __privateAdd(this, _stream);
    __privateAdd(this, _producerId);
    __privateAdd(this, _epoch);
    __privateAdd(this, _nextSeq, 0);
    __privateAdd(this, _autoClaim);
    __privateAdd(this, _maxBatchBytes);
    __privateAdd(this, _lingerMs);
    __privateAdd(this, _fetchClient);
    __privateAdd(this, _headers2);
    __privateAdd(this, _signal);
    __privateAdd(this, _onError);
    __privateAdd(this, _pendingBatch, []);
    __privateAdd(this, _batchBytes, 0);
    __privateAdd(this, _lingerTimeout, null);
    __privateAdd(this, _queue2);
    __privateAdd(this, _maxInFlight);
    __privateAdd(this, _deferredEnqueues, /* @__PURE__ */ new Set());
    __privateAdd(this, _closed2, false);
    __privateAdd(this, _closeResult, null);
    __privateAdd(this, _pendingFinalMessage);
    __privateAdd(this, _lastSuccessfulOffset);
    __privateAdd(this, _epochClaimed);
    __privateAdd(this, _seqState, /* @__PURE__ */ new Map());
    const epoch = opts?.epoch ?? 0;
    const maxBatchBytes = opts?.maxBatchBytes ?? 1024 * 1024;
    const maxInFlight = opts?.maxInFlight ?? 5;
    const lingerMs = opts?.lingerMs ?? 5;
    if (epoch < 0) throw new Error(`epoch must be >= 0`);
    if (maxBatchBytes <= 0) throw new Error(`maxBatchBytes must be > 0`);
    if (maxInFlight <= 0) throw new Error(`maxInFlight must be > 0`);
    if (lingerMs < 0) throw new Error(`lingerMs must be >= 0`);
    __privateSet(this, _stream, stream$1);
    __privateSet(this, _producerId, producerId);
    __privateSet(this, _epoch, epoch);
    __privateSet(this, _autoClaim, opts?.autoClaim ?? false);
    __privateSet(this, _maxBatchBytes, maxBatchBytes);
    __privateSet(this, _lingerMs, lingerMs);
    __privateSet(this, _signal, opts?.signal);
    __privateSet(this, _headers2, opts?.headers);
    __privateSet(this, _onError, opts?.onError);
    __privateSet(this, _fetchClient, opts?.fetch ?? ((...args) => fetch(...args)));
    __privateSet(this, _maxInFlight, maxInFlight);
    __privateSet(this, _epochClaimed, !__privateGet(this, _autoClaim));
    __privateSet(this, _queue2, new AsyncQueue(__privateMethod(this, _IdempotentProducer_instances, batchWorker_fn).bind(this), __privateGet(this, _maxInFlight)));
    if (__privateGet(this, _signal)) __privateGet(this, _signal).addEventListener(`abort`, () => {
      __privateMethod(this, _IdempotentProducer_instances, rejectPendingBatch_fn).call(this, new DurableStreamError(`Producer aborted`, `ALREADY_CLOSED`, void 0, void 0));
    }, { once: true });
  }
  /**
  * Append data to the stream.
  *
  * This is fire-and-forget: returns immediately after adding to the batch.
  * The message is batched and sent when:
  * - maxBatchBytes is reached
  * - lingerMs elapses
  * - flush() is called
  *
  * Errors are reported via onError callback if configured. Use flush() to
  * wait for all pending messages to be sent.
  *
  * For JSON streams, pass pre-serialized JSON strings.
  * For byte streams, pass string or Uint8Array.
  *
  * @param body - Data to append (string or Uint8Array)
  *
  * @example
  * ```typescript
  * // JSON stream
  * producer.append(JSON.stringify({ message: "hello" }));
  *
  * // Byte stream
  * producer.append("raw text data");
  * producer.append(new Uint8Array([1, 2, 3]));
  * ```
  */
  append(body) {
    if (__privateGet(this, _closed2)) throw new DurableStreamError(`Producer is closed`, `ALREADY_CLOSED`, void 0, void 0);
    let bytes;
    if (typeof body === `string`) bytes = new TextEncoder().encode(body);
    else if (body instanceof Uint8Array) bytes = body;
    else throw new DurableStreamError(`append() requires string or Uint8Array. For objects, use JSON.stringify().`, `BAD_REQUEST`, 400, void 0);
    __privateGet(this, _pendingBatch).push({ body: bytes });
    __privateSet(this, _batchBytes, __privateGet(this, _batchBytes) + bytes.length);
    if (__privateGet(this, _batchBytes) >= __privateGet(this, _maxBatchBytes)) __privateMethod(this, _IdempotentProducer_instances, enqueuePendingBatch_fn).call(this);
    else if (!__privateGet(this, _lingerTimeout)) __privateSet(this, _lingerTimeout, setTimeout(() => {
      __privateSet(this, _lingerTimeout, null);
      if (__privateGet(this, _pendingBatch).length > 0) __privateMethod(this, _IdempotentProducer_instances, enqueuePendingBatch_fn).call(this);
    }, __privateGet(this, _lingerMs)));
  }
  /**
  * Send any pending batch immediately and wait for all in-flight batches.
  *
  * Call this before shutdown to ensure all messages are delivered.
  */
  async flush() {
    if (__privateGet(this, _lingerTimeout)) {
      clearTimeout(__privateGet(this, _lingerTimeout));
      __privateSet(this, _lingerTimeout, null);
    }
    if (__privateGet(this, _pendingBatch).length > 0) __privateMethod(this, _IdempotentProducer_instances, enqueuePendingBatch_fn).call(this);
    do {
      await __privateGet(this, _queue2).drained();
      await Promise.all(__privateGet(this, _deferredEnqueues));
    } while (__privateGet(this, _deferredEnqueues).size > 0 || this.inFlightCount > 0);
  }
  /**
  * Stop the producer without closing the underlying stream.
  *
  * Use this when you want to:
  * - Hand off writing to another producer
  * - Keep the stream open for future writes
  * - Stop this producer but not signal EOF to readers
  *
  * Flushes any pending messages before detaching.
  * After calling detach(), further append() calls will throw.
  */
  async detach() {
    if (__privateGet(this, _closed2)) return;
    __privateSet(this, _closed2, true);
    try {
      await this.flush();
    } catch {
    }
  }
  /**
  * Flush pending messages and close the underlying stream (EOF).
  *
  * This is the typical way to end a producer session. It:
  * 1. Flushes all pending messages
  * 2. Optionally appends a final message
  * 3. Closes the stream (no further appends permitted)
  *
  * **Idempotent**: Unlike `DurableStream.close({ body })`, this method is
  * idempotent even with a final message because it uses producer headers
  * for deduplication. Safe to retry on network failures.
  *
  * @param finalMessage - Optional final message to append atomically with close
  * @returns CloseResult with the final offset
  */
  async close(finalMessage) {
    if (__privateGet(this, _closed2)) {
      if (__privateGet(this, _closeResult)) return __privateGet(this, _closeResult);
      await this.flush();
      const result$1 = await __privateMethod(this, _IdempotentProducer_instances, doClose_fn).call(this, __privateGet(this, _pendingFinalMessage));
      __privateSet(this, _closeResult, result$1);
      return result$1;
    }
    __privateSet(this, _closed2, true);
    __privateSet(this, _pendingFinalMessage, finalMessage);
    await this.flush();
    const result = await __privateMethod(this, _IdempotentProducer_instances, doClose_fn).call(this, finalMessage);
    __privateSet(this, _closeResult, result);
    return result;
  }
  /**
  * Increment epoch and reset sequence.
  *
  * Call this when restarting the producer to establish a new session.
  * Flushes any pending messages first.
  */
  async restart() {
    await this.flush();
    __privateWrapper(this, _epoch)._++;
    __privateSet(this, _nextSeq, 0);
  }
  /**
  * Current epoch for this producer.
  */
  get epoch() {
    return __privateGet(this, _epoch);
  }
  /**
  * Next sequence number to be assigned.
  */
  get nextSeq() {
    return __privateGet(this, _nextSeq);
  }
  /**
  * Number of messages in the current pending batch.
  */
  get pendingCount() {
    return __privateGet(this, _pendingBatch).length;
  }
  /**
  * Number of batches currently in flight.
  */
  get inFlightCount() {
    return __privateGet(this, _queue2).length() + __privateGet(this, _queue2).running();
  }
  /**
  * The greatest non-empty stream offset returned by a successful producer
  * append or close request.
  */
  get lastSuccessfulOffset() {
    return __privateGet(this, _lastSuccessfulOffset);
  }
}, _stream = new WeakMap(), _producerId = new WeakMap(), _epoch = new WeakMap(), _nextSeq = new WeakMap(), _autoClaim = new WeakMap(), _maxBatchBytes = new WeakMap(), _lingerMs = new WeakMap(), _fetchClient = new WeakMap(), _headers2 = new WeakMap(), _signal = new WeakMap(), _onError = new WeakMap(), _pendingBatch = new WeakMap(), _batchBytes = new WeakMap(), _lingerTimeout = new WeakMap(), _queue2 = new WeakMap(), _maxInFlight = new WeakMap(), _deferredEnqueues = new WeakMap(), _closed2 = new WeakMap(), _closeResult = new WeakMap(), _pendingFinalMessage = new WeakMap(), _lastSuccessfulOffset = new WeakMap(), _epochClaimed = new WeakMap(), _seqState = new WeakMap(), _IdempotentProducer_instances = new WeakSet(), doClose_fn = async function(finalMessage) {
  const contentType = __privateGet(this, _stream).contentType ?? `application/octet-stream`;
  const isJson = normalizeContentType$1(contentType) === `application/json`;
  let body;
  if (finalMessage !== void 0) {
    const bodyBytes = typeof finalMessage === `string` ? new TextEncoder().encode(finalMessage) : finalMessage;
    if (isJson) {
      const jsonStr = new TextDecoder().decode(bodyBytes);
      body = `[${jsonStr}]`;
    } else body = bodyBytes;
  }
  const seqForThisRequest = __privateGet(this, _nextSeq);
  const headers = await __privateMethod(this, _IdempotentProducer_instances, buildHeaders_fn).call(this, {
    "content-type": contentType,
    [PRODUCER_ID_HEADER]: __privateGet(this, _producerId),
    [PRODUCER_EPOCH_HEADER]: __privateGet(this, _epoch).toString(),
    [PRODUCER_SEQ_HEADER]: seqForThisRequest.toString(),
    [STREAM_CLOSED_HEADER]: `true`
  });
  const response = await __privateGet(this, _fetchClient).call(this, __privateGet(this, _stream).url, {
    method: `POST`,
    headers,
    body,
    signal: __privateGet(this, _signal)
  });
  if (response.status === 204) {
    __privateSet(this, _nextSeq, seqForThisRequest + 1);
    const finalOffset = response.headers.get(STREAM_OFFSET_HEADER) ?? ``;
    __privateMethod(this, _IdempotentProducer_instances, recordSuccessfulOffset_fn).call(this, finalOffset);
    return { finalOffset };
  }
  if (response.status === 200) {
    __privateSet(this, _nextSeq, seqForThisRequest + 1);
    const finalOffset = response.headers.get(STREAM_OFFSET_HEADER) ?? ``;
    __privateMethod(this, _IdempotentProducer_instances, recordSuccessfulOffset_fn).call(this, finalOffset);
    return { finalOffset };
  }
  if (response.status === 403) {
    const currentEpochStr = response.headers.get(PRODUCER_EPOCH_HEADER);
    const currentEpoch = currentEpochStr ? parseInt(currentEpochStr, 10) : __privateGet(this, _epoch);
    if (__privateGet(this, _autoClaim)) {
      const newEpoch = currentEpoch + 1;
      __privateSet(this, _epoch, newEpoch);
      __privateSet(this, _nextSeq, 0);
      return __privateMethod(this, _IdempotentProducer_instances, doClose_fn).call(this, finalMessage);
    }
    throw new StaleEpochError(currentEpoch);
  }
  const error = await FetchError.fromResponse(response, __privateGet(this, _stream).url);
  throw error;
}, /**
* Enqueue the current pending batch for processing.
*/
enqueuePendingBatch_fn = function() {
  if (__privateGet(this, _pendingBatch).length === 0) return;
  const batch = __privateGet(this, _pendingBatch);
  __privateSet(this, _pendingBatch, []);
  __privateSet(this, _batchBytes, 0);
  if (__privateGet(this, _autoClaim) && !__privateGet(this, _epochClaimed) && this.inFlightCount > 0) {
    const deferred = __privateGet(this, _queue2).drained().then(() => {
      __privateMethod(this, _IdempotentProducer_instances, pushBatch_fn).call(this, batch);
    }).finally(() => {
      __privateGet(this, _deferredEnqueues).delete(deferred);
    });
    __privateGet(this, _deferredEnqueues).add(deferred);
    deferred.catch(() => {
    });
  } else __privateMethod(this, _IdempotentProducer_instances, pushBatch_fn).call(this, batch);
}, pushBatch_fn = function(batch) {
  const seq = __privateGet(this, _nextSeq);
  __privateWrapper(this, _nextSeq)._++;
  __privateGet(this, _queue2).push({
    batch,
    seq
  }).catch(() => {
  });
}, batchWorker_fn = async function(task) {
  const { batch, seq } = task;
  const epoch = __privateGet(this, _epoch);
  try {
    const result = await __privateMethod(this, _IdempotentProducer_instances, doSendBatch_fn).call(this, batch, seq, epoch);
    __privateMethod(this, _IdempotentProducer_instances, recordSuccessfulOffset_fn).call(this, result.offset);
    if (!__privateGet(this, _epochClaimed)) __privateSet(this, _epochClaimed, true);
    __privateMethod(this, _IdempotentProducer_instances, signalSeqComplete_fn).call(this, epoch, seq, void 0);
  } catch (error) {
    __privateMethod(this, _IdempotentProducer_instances, signalSeqComplete_fn).call(this, epoch, seq, error);
    if (__privateGet(this, _onError)) __privateGet(this, _onError).call(this, error);
    throw error;
  }
}, recordSuccessfulOffset_fn = function(offset) {
  if (offset && (!__privateGet(this, _lastSuccessfulOffset) || offset > __privateGet(this, _lastSuccessfulOffset))) __privateSet(this, _lastSuccessfulOffset, offset);
}, /**
* Signal that a sequence has completed (success or failure).
*/
signalSeqComplete_fn = function(epoch, seq, error) {
  let epochMap = __privateGet(this, _seqState).get(epoch);
  if (!epochMap) {
    epochMap = /* @__PURE__ */ new Map();
    __privateGet(this, _seqState).set(epoch, epochMap);
  }
  const state = epochMap.get(seq);
  if (state) {
    state.resolved = true;
    state.error = error;
    for (const waiter of state.waiters) waiter(error);
    state.waiters = [];
  } else epochMap.set(seq, {
    resolved: true,
    error,
    waiters: []
  });
  const cleanupThreshold = seq - __privateGet(this, _maxInFlight) * 3;
  if (cleanupThreshold > 0) {
    for (const oldSeq of epochMap.keys()) if (oldSeq < cleanupThreshold) epochMap.delete(oldSeq);
  }
}, /**
* Wait for a specific sequence to complete.
* Returns immediately if already completed.
* Throws if the sequence failed.
*/
waitForSeq_fn = function(epoch, seq) {
  let epochMap = __privateGet(this, _seqState).get(epoch);
  if (!epochMap) {
    epochMap = /* @__PURE__ */ new Map();
    __privateGet(this, _seqState).set(epoch, epochMap);
  }
  const state = epochMap.get(seq);
  if (state?.resolved) {
    if (state.error) return Promise.reject(state.error);
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const waiter = (err) => {
      if (err) reject(err);
      else resolve();
    };
    if (state) state.waiters.push(waiter);
    else epochMap.set(seq, {
      resolved: false,
      waiters: [waiter]
    });
  });
}, doSendBatch_fn = async function(batch, seq, epoch) {
  const contentType = __privateGet(this, _stream).contentType ?? `application/octet-stream`;
  const isJson = normalizeContentType$1(contentType) === `application/json`;
  let batchedBody;
  if (isJson) {
    const jsonStrings = batch.map((e) => new TextDecoder().decode(e.body));
    batchedBody = `[${jsonStrings.join(`,`)}]`;
  } else {
    const totalSize = batch.reduce((sum, e) => sum + e.body.length, 0);
    const concatenated = new Uint8Array(totalSize);
    let offset = 0;
    for (const entry of batch) {
      concatenated.set(entry.body, offset);
      offset += entry.body.length;
    }
    batchedBody = concatenated;
  }
  const url = __privateGet(this, _stream).url;
  const headers = await __privateMethod(this, _IdempotentProducer_instances, buildHeaders_fn).call(this, {
    "content-type": contentType,
    [PRODUCER_ID_HEADER]: __privateGet(this, _producerId),
    [PRODUCER_EPOCH_HEADER]: epoch.toString(),
    [PRODUCER_SEQ_HEADER]: seq.toString()
  });
  const response = await __privateGet(this, _fetchClient).call(this, url, {
    method: `POST`,
    headers,
    body: batchedBody,
    signal: __privateGet(this, _signal)
  });
  if (response.status === 204) return {
    offset: ``,
    duplicate: true
  };
  if (response.status === 200) {
    const resultOffset = response.headers.get(STREAM_OFFSET_HEADER) ?? ``;
    return {
      offset: resultOffset,
      duplicate: false
    };
  }
  if (response.status === 403) {
    const currentEpochStr = response.headers.get(PRODUCER_EPOCH_HEADER);
    const currentEpoch = currentEpochStr ? parseInt(currentEpochStr, 10) : epoch;
    if (__privateGet(this, _autoClaim)) {
      const newEpoch = currentEpoch + 1;
      __privateSet(this, _epoch, newEpoch);
      __privateSet(this, _nextSeq, 1);
      return __privateMethod(this, _IdempotentProducer_instances, doSendBatch_fn).call(this, batch, 0, newEpoch);
    }
    throw new StaleEpochError(currentEpoch);
  }
  if (response.status === 409) {
    const expectedSeqStr = response.headers.get(PRODUCER_EXPECTED_SEQ_HEADER);
    const expectedSeq = expectedSeqStr ? parseInt(expectedSeqStr, 10) : 0;
    if (expectedSeq < seq) {
      const waitPromises = [];
      for (let s = expectedSeq; s < seq; s++) waitPromises.push(__privateMethod(this, _IdempotentProducer_instances, waitForSeq_fn).call(this, epoch, s));
      await Promise.all(waitPromises);
      return __privateMethod(this, _IdempotentProducer_instances, doSendBatch_fn).call(this, batch, seq, epoch);
    }
    const receivedSeqStr = response.headers.get(PRODUCER_RECEIVED_SEQ_HEADER);
    const receivedSeq = receivedSeqStr ? parseInt(receivedSeqStr, 10) : seq;
    throw new SequenceGapError(expectedSeq, receivedSeq);
  }
  if (response.status === 400) {
    const error$1 = await DurableStreamError.fromResponse(response, url);
    throw error$1;
  }
  const error = await FetchError.fromResponse(response, url);
  throw error;
}, buildHeaders_fn = async function(protocolHeaders) {
  const streamHeaders = await __privateGet(this, _stream).resolveHeaders();
  const producerHeaders = await resolveHeaders(__privateGet(this, _headers2));
  return {
    ...streamHeaders,
    ...producerHeaders,
    ...protocolHeaders
  };
}, /**
* Clear pending batch and report error.
*/
rejectPendingBatch_fn = function(error) {
  if (__privateGet(this, _onError) && __privateGet(this, _pendingBatch).length > 0) __privateGet(this, _onError).call(this, error);
  __privateSet(this, _pendingBatch, []);
  __privateSet(this, _batchBytes, 0);
  if (__privateGet(this, _lingerTimeout)) {
    clearTimeout(__privateGet(this, _lingerTimeout));
    __privateSet(this, _lingerTimeout, null);
  }
}, _a4);
function normalizeContentType(contentType) {
  if (!contentType) return ``;
  return contentType.split(`;`)[0].trim().toLowerCase();
}
function isPromiseLike(value) {
  return value != null && typeof value.then === `function`;
}
var _options, _fetchClient2, _baseFetchClient, _onError2, _batchingEnabled, _queue3, _buffer, _DurableStream_instances, appendDirect_fn, appendWithBatching_fn, batchWorker_fn2, sendBatch_fn, buildRequest_fn, _a5;
var DurableStream = (_a5 = class {
  /**
  * Create a cold handle to a stream.
  * No network IO is performed by the constructor.
  */
  constructor(opts) {
    __privateAdd(this, _DurableStream_instances);
    /**
    * The URL of the durable stream.
    */
    __publicField(this, "url");
    /**
    * The content type of the stream (populated after connect/head/read).
    */
    __publicField(this, "contentType");
    __privateAdd(this, _options);
    __privateAdd(this, _fetchClient2);
    __privateAdd(this, _baseFetchClient);
    __privateAdd(this, _onError2);
    __privateAdd(this, _batchingEnabled);
    __privateAdd(this, _queue3);
    __privateAdd(this, _buffer, []);
    validateOptions(opts);
    const urlStr = opts.url instanceof URL ? opts.url.toString() : opts.url;
    this.url = urlStr;
    __privateSet(this, _options, {
      ...opts,
      url: urlStr
    });
    __privateSet(this, _onError2, opts.onError);
    if (opts.contentType) this.contentType = opts.contentType;
    __privateSet(this, _batchingEnabled, opts.batching !== false);
    if (__privateGet(this, _batchingEnabled)) __privateSet(this, _queue3, new AsyncQueue(__privateMethod(this, _DurableStream_instances, batchWorker_fn2).bind(this), 1));
    __privateSet(this, _baseFetchClient, opts.fetch ?? ((...args) => fetch(...args)));
    const backOffOpts = { ...opts.backoffOptions ?? BackoffDefaults };
    const fetchWithBackoffClient = createFetchWithBackoff(__privateGet(this, _baseFetchClient), backOffOpts);
    __privateSet(this, _fetchClient2, createFetchWithConsumedBody(fetchWithBackoffClient));
  }
  /**
  * Create a new stream (create-only PUT) and return a handle.
  * Fails with DurableStreamError(code="CONFLICT_EXISTS") if it already exists.
  */
  static async create(opts) {
    const stream$1 = new _a5(opts);
    await stream$1.create({
      contentType: opts.contentType,
      ttlSeconds: opts.ttlSeconds,
      expiresAt: opts.expiresAt,
      body: opts.body,
      closed: opts.closed
    });
    return stream$1;
  }
  /**
  * Validate that a stream exists and fetch metadata via HEAD.
  * Returns a handle with contentType populated (if sent by server).
  *
  * **Important**: This only performs a HEAD request for validation - it does
  * NOT open a session or start reading data. To read from the stream, call
  * `stream()` on the returned handle.
  *
  * @example
  * ```typescript
  * // Validate stream exists before reading
  * const handle = await DurableStream.connect({ url })
  * const res = await handle.stream() // Now actually read
  * ```
  */
  static async connect(opts) {
    const stream$1 = new _a5(opts);
    await stream$1.head();
    return stream$1;
  }
  /**
  * HEAD metadata for a stream without creating a handle.
  */
  static async head(opts) {
    const stream$1 = new _a5(opts);
    return stream$1.head();
  }
  /**
  * Delete a stream without creating a handle.
  */
  static async delete(opts) {
    const stream$1 = new _a5(opts);
    return stream$1.delete();
  }
  /**
  * HEAD metadata for this stream.
  */
  async head(opts) {
    const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
    const response = await __privateGet(this, _baseFetchClient).call(this, fetchUrl.toString(), {
      method: `HEAD`,
      headers: requestHeaders,
      signal: opts?.signal ?? __privateGet(this, _options).signal
    });
    if (!response.ok) {
      if (response.status === 404) return { exists: false };
      await handleErrorResponse(response, this.url);
    }
    const contentType = response.headers.get(`content-type`) ?? void 0;
    const offset = response.headers.get(STREAM_OFFSET_HEADER) ?? void 0;
    const etag = response.headers.get(`etag`) ?? void 0;
    const cacheControl = response.headers.get(`cache-control`) ?? void 0;
    const streamClosed = response.headers.get(STREAM_CLOSED_HEADER)?.toLowerCase() === `true`;
    if (contentType) this.contentType = contentType;
    return {
      exists: true,
      contentType,
      offset,
      etag,
      cacheControl,
      streamClosed
    };
  }
  /**
  * Create this stream (create-only PUT) using the URL/auth from the handle.
  */
  async create(opts) {
    const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
    const contentType = opts?.contentType ?? __privateGet(this, _options).contentType;
    if (contentType) requestHeaders[`content-type`] = contentType;
    if (opts?.ttlSeconds !== void 0) requestHeaders[STREAM_TTL_HEADER] = String(opts.ttlSeconds);
    if (opts?.expiresAt) requestHeaders[STREAM_EXPIRES_AT_HEADER] = opts.expiresAt;
    if (opts?.closed) requestHeaders[STREAM_CLOSED_HEADER] = `true`;
    const body = encodeBody(opts?.body);
    const response = await __privateGet(this, _fetchClient2).call(this, fetchUrl.toString(), {
      method: `PUT`,
      headers: requestHeaders,
      body,
      signal: __privateGet(this, _options).signal
    });
    if (!response.ok) await handleErrorResponse(response, this.url, { operation: `create` });
    const responseContentType = response.headers.get(`content-type`);
    if (responseContentType) this.contentType = responseContentType;
    else if (contentType) this.contentType = contentType;
    return this;
  }
  /**
  * Delete this stream.
  */
  async delete(opts) {
    const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
    const response = await __privateGet(this, _fetchClient2).call(this, fetchUrl.toString(), {
      method: `DELETE`,
      headers: requestHeaders,
      signal: opts?.signal ?? __privateGet(this, _options).signal
    });
    if (!response.ok) await handleErrorResponse(response, this.url);
  }
  /**
  * Close the stream, optionally with a final message.
  *
  * After closing:
  * - No further appends are permitted (server returns 409)
  * - Readers can observe the closed state and treat it as EOF
  * - The stream's data remains fully readable
  *
  * Closing is:
  * - **Durable**: The closed state is persisted
  * - **Monotonic**: Once closed, a stream cannot be reopened
  *
  * **Idempotency:**
  * - `close()` without body: Idempotent — safe to call multiple times
  * - `close({ body })` with body: NOT idempotent — throws `StreamClosedError`
  *   if stream is already closed (use `IdempotentProducer.close()` for
  *   idempotent close-with-body semantics)
  *
  * @returns CloseResult with the final offset
  * @throws StreamClosedError if called with body on an already-closed stream
  */
  async close(opts) {
    const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
    const contentType = opts?.contentType ?? __privateGet(this, _options).contentType ?? this.contentType;
    if (contentType) requestHeaders[`content-type`] = contentType;
    requestHeaders[STREAM_CLOSED_HEADER] = `true`;
    let body;
    if (opts?.body !== void 0) {
      const isJson = normalizeContentType(contentType) === `application/json`;
      if (isJson) {
        const bodyStr = typeof opts.body === `string` ? opts.body : new TextDecoder().decode(opts.body);
        body = `[${bodyStr}]`;
      } else body = typeof opts.body === `string` ? opts.body : opts.body;
    }
    const response = await __privateGet(this, _fetchClient2).call(this, fetchUrl.toString(), {
      method: `POST`,
      headers: requestHeaders,
      body,
      signal: opts?.signal ?? __privateGet(this, _options).signal
    });
    if (response.status === 409) {
      const isClosed = response.headers.get(STREAM_CLOSED_HEADER)?.toLowerCase() === `true`;
      if (isClosed) {
        const finalOffset$1 = response.headers.get(STREAM_OFFSET_HEADER) ?? void 0;
        throw new StreamClosedError(this.url, finalOffset$1);
      }
    }
    if (!response.ok) await handleErrorResponse(response, this.url);
    const finalOffset = response.headers.get(STREAM_OFFSET_HEADER) ?? ``;
    return { finalOffset };
  }
  /**
  * Append a single payload to the stream.
  *
  * Batching: when batching is enabled (default), append() calls that overlap
  * in time (e.g. fired without awaiting each one) are coalesced into a
  * single POST while a prior POST is in flight. If every call is awaited
  * before the next is issued, no batching happens — each call becomes its
  * own roundtrip. For tight loops driving an async iterable (e.g. LLM
  * token streams), prefer `appendStream()` / `writable()` which pipe the
  * source over a single POST, or fire `append()` calls without awaiting
  * each one and await the last promise (and `close()`) at the end.
  *
  * - `body` must be string or Uint8Array.
  * - For JSON streams, pass pre-serialized JSON strings.
  * - `body` may also be a Promise that resolves to string or Uint8Array.
  * - Strings are encoded as UTF-8.
  * - `seq` (if provided) is sent as stream-seq (writer coordination).
  *
  * @example
  * ```typescript
  * // JSON stream - pass pre-serialized JSON (single write)
  * await stream.append(JSON.stringify({ message: "hello" }));
  *
  * // Byte stream
  * await stream.append("raw text data");
  * await stream.append(new Uint8Array([1, 2, 3]));
  *
  * // Promise value - awaited before buffering
  * await stream.append(fetchData());
  *
  * // High-frequency writes from an async iterable - fire-and-track-last
  * let last: Promise<void> = Promise.resolve();
  * for await (const chunk of source) {
  *   last = stream.append(JSON.stringify(chunk));
  * }
  * await last;
  * await stream.close();
  * ```
  */
  async append(body, opts) {
    const resolvedBody = isPromiseLike(body) ? await body : body;
    if (__privateGet(this, _batchingEnabled) && __privateGet(this, _queue3)) return __privateMethod(this, _DurableStream_instances, appendWithBatching_fn).call(this, resolvedBody, opts);
    return __privateMethod(this, _DurableStream_instances, appendDirect_fn).call(this, resolvedBody, opts);
  }
  /**
  * Append a streaming body to the stream.
  *
  * Supports piping from any ReadableStream or async iterable:
  * - `source` yields Uint8Array or string chunks.
  * - Strings are encoded as UTF-8; no delimiters are added.
  * - Internally uses chunked transfer or HTTP/2 streaming.
  *
  * @example
  * ```typescript
  * // Pipe from a ReadableStream
  * const readable = new ReadableStream({
  *   start(controller) {
  *     controller.enqueue("chunk 1");
  *     controller.enqueue("chunk 2");
  *     controller.close();
  *   }
  * });
  * await stream.appendStream(readable);
  *
  * // Pipe from an async generator
  * async function* generate() {
  *   yield "line 1\n";
  *   yield "line 2\n";
  * }
  * await stream.appendStream(generate());
  *
  * // Pipe from fetch response body
  * const response = await fetch("https://example.com/data");
  * await stream.appendStream(response.body!);
  * ```
  */
  async appendStream(source, opts) {
    const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
    const contentType = opts?.contentType ?? __privateGet(this, _options).contentType ?? this.contentType;
    if (contentType) requestHeaders[`content-type`] = contentType;
    if (opts?.seq) requestHeaders[STREAM_SEQ_HEADER] = opts.seq;
    const body = toReadableStream(source);
    const response = await __privateGet(this, _fetchClient2).call(this, fetchUrl.toString(), {
      method: `POST`,
      headers: requestHeaders,
      body,
      duplex: `half`,
      signal: opts?.signal ?? __privateGet(this, _options).signal
    });
    if (!response.ok) await handleErrorResponse(response, this.url);
  }
  /**
  * Create a writable stream that pipes data to this durable stream.
  *
  * Returns a WritableStream that can be used with `pipeTo()` or
  * `pipeThrough()` from any ReadableStream source.
  *
  * Uses IdempotentProducer internally for:
  * - Automatic batching (controlled by lingerMs, maxBatchBytes)
  * - Exactly-once delivery semantics
  * - Streaming writes (doesn't buffer entire content in memory)
  *
  * @example
  * ```typescript
  * // Pipe from fetch response
  * const response = await fetch("https://example.com/data");
  * await response.body!.pipeTo(stream.writable());
  *
  * // Pipe through a transform
  * const readable = someStream.pipeThrough(new TextEncoderStream());
  * await readable.pipeTo(stream.writable());
  *
  * // With custom producer options
  * await source.pipeTo(stream.writable({
  *   producerId: "my-producer",
  *   lingerMs: 10,
  *   maxBatchBytes: 64 * 1024,
  * }));
  * ```
  */
  writable(opts) {
    const producerId = opts?.producerId ?? `writable-${crypto.randomUUID().slice(0, 8)}`;
    let writeError = null;
    const producer = new IdempotentProducer(this, producerId, {
      autoClaim: true,
      headers: opts?.headers,
      lingerMs: opts?.lingerMs,
      maxBatchBytes: opts?.maxBatchBytes,
      onError: (error) => {
        if (!writeError) writeError = error;
        opts?.onError?.(error);
      },
      signal: opts?.signal ?? __privateGet(this, _options).signal
    });
    return new WritableStream({
      write(chunk) {
        producer.append(chunk);
      },
      async close() {
        await producer.close();
        if (writeError) throw writeError;
      },
      abort(_reason) {
        producer.detach().catch((err) => {
          opts?.onError?.(err);
        });
      }
    });
  }
  /**
  * Start a fetch-like streaming session against this handle's URL/headers/params.
  * The first request is made inside this method; it resolves when we have
  * a valid first response, or rejects on errors.
  *
  * Call-specific headers and params are merged with handle-level ones,
  * with call-specific values taking precedence.
  *
  * @example
  * ```typescript
  * const handle = await DurableStream.connect({
  *   url,
  *   headers: { Authorization: `Bearer ${token}` }
  * });
  * const res = await handle.stream<{ message: string }>();
  *
  * // Accumulate all JSON items
  * const items = await res.json();
  *
  * // Or stream live with ReadableStream
  * const reader = res.jsonStream().getReader();
  * let result = await reader.read();
  * while (!result.done) {
  *   console.log(result.value);
  *   result = await reader.read();
  * }
  *
  * // Or use subscriber for backpressure-aware consumption
  * res.subscribeJson(async (batch) => {
  *   for (const item of batch.items) {
  *     console.log(item);
  *   }
  * });
  * ```
  */
  async stream(options) {
    const mergedHeaders = {
      ...__privateGet(this, _options).headers,
      ...options?.headers
    };
    const mergedParams = {
      ...__privateGet(this, _options).params,
      ...options?.params
    };
    return stream({
      url: this.url,
      headers: mergedHeaders,
      params: mergedParams,
      signal: options?.signal ?? __privateGet(this, _options).signal,
      fetch: __privateGet(this, _options).fetch,
      backoffOptions: __privateGet(this, _options).backoffOptions,
      offset: options?.offset,
      live: options?.live,
      json: options?.json,
      onError: options?.onError ?? __privateGet(this, _onError2),
      warnOnHttp: options?.warnOnHttp ?? __privateGet(this, _options).warnOnHttp
    });
  }
  /**
  * Resolve the stream's configured headers.
  * Used by IdempotentProducer to merge auth headers into its requests.
  * @internal
  */
  async resolveHeaders() {
    return resolveHeaders(__privateGet(this, _options).headers);
  }
}, _options = new WeakMap(), _fetchClient2 = new WeakMap(), _baseFetchClient = new WeakMap(), _onError2 = new WeakMap(), _batchingEnabled = new WeakMap(), _queue3 = new WeakMap(), _buffer = new WeakMap(), _DurableStream_instances = new WeakSet(), appendDirect_fn = async function(body, opts) {
  const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
  const contentType = opts?.contentType ?? __privateGet(this, _options).contentType ?? this.contentType;
  if (contentType) requestHeaders[`content-type`] = contentType;
  if (opts?.seq) requestHeaders[STREAM_SEQ_HEADER] = opts.seq;
  const isJson = normalizeContentType(contentType) === `application/json`;
  let encodedBody;
  if (isJson) {
    const bodyStr = typeof body === `string` ? body : new TextDecoder().decode(body);
    encodedBody = `[${bodyStr}]`;
  } else if (typeof body === `string`) encodedBody = body;
  else encodedBody = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  const response = await __privateGet(this, _fetchClient2).call(this, fetchUrl.toString(), {
    method: `POST`,
    headers: requestHeaders,
    body: encodedBody,
    signal: opts?.signal ?? __privateGet(this, _options).signal
  });
  if (!response.ok) await handleErrorResponse(response, this.url);
}, appendWithBatching_fn = async function(body, opts) {
  return new Promise((resolve, reject) => {
    __privateGet(this, _buffer).push({
      data: body,
      seq: opts?.seq,
      contentType: opts?.contentType,
      signal: opts?.signal,
      resolve,
      reject
    });
    if (__privateGet(this, _queue3).idle()) {
      const batch = __privateGet(this, _buffer).splice(0);
      __privateGet(this, _queue3).push(batch).catch((err) => {
        for (const msg of batch) msg.reject(err);
      });
    }
  });
}, batchWorker_fn2 = async function(batch) {
  try {
    await __privateMethod(this, _DurableStream_instances, sendBatch_fn).call(this, batch);
    for (const msg of batch) msg.resolve();
    if (__privateGet(this, _buffer).length > 0) {
      const nextBatch = __privateGet(this, _buffer).splice(0);
      __privateGet(this, _queue3).push(nextBatch).catch((err) => {
        for (const msg of nextBatch) msg.reject(err);
      });
    }
  } catch (error) {
    for (const msg of batch) msg.reject(error);
    for (const msg of __privateGet(this, _buffer)) msg.reject(error);
    __privateSet(this, _buffer, []);
    throw error;
  }
}, sendBatch_fn = async function(batch) {
  if (batch.length === 0) return;
  const { requestHeaders, fetchUrl } = await __privateMethod(this, _DurableStream_instances, buildRequest_fn).call(this);
  const contentType = batch[0]?.contentType ?? __privateGet(this, _options).contentType ?? this.contentType;
  if (contentType) requestHeaders[`content-type`] = contentType;
  let highestSeq;
  for (let i = batch.length - 1; i >= 0; i--) if (batch[i].seq !== void 0) {
    highestSeq = batch[i].seq;
    break;
  }
  if (highestSeq) requestHeaders[STREAM_SEQ_HEADER] = highestSeq;
  const isJson = normalizeContentType(contentType) === `application/json`;
  let batchedBody;
  if (isJson) {
    const jsonStrings = batch.map((m) => typeof m.data === `string` ? m.data : new TextDecoder().decode(m.data));
    batchedBody = `[${jsonStrings.join(`,`)}]`;
  } else {
    const hasUint8Array = batch.some((m) => m.data instanceof Uint8Array);
    const hasString = batch.some((m) => typeof m.data === `string`);
    if (hasUint8Array && !hasString) {
      const chunks = batch.map((m) => m.data);
      const totalLength = chunks.reduce((sum, c) => sum + c.length, 0);
      const combined = new Uint8Array(totalLength);
      let offset = 0;
      for (const chunk of chunks) {
        combined.set(chunk, offset);
        offset += chunk.length;
      }
      batchedBody = combined;
    } else if (hasString && !hasUint8Array) batchedBody = batch.map((m) => m.data).join(``);
    else {
      const encoder = new TextEncoder();
      const chunks = batch.map((m) => typeof m.data === `string` ? encoder.encode(m.data) : m.data);
      const totalLength = chunks.reduce((sum, c) => sum + c.length, 0);
      const combined = new Uint8Array(totalLength);
      let offset = 0;
      for (const chunk of chunks) {
        combined.set(chunk, offset);
        offset += chunk.length;
      }
      batchedBody = combined;
    }
  }
  const signals = [];
  if (__privateGet(this, _options).signal) signals.push(__privateGet(this, _options).signal);
  for (const msg of batch) if (msg.signal) signals.push(msg.signal);
  const combinedSignal = signals.length > 0 ? AbortSignal.any(signals) : void 0;
  const response = await __privateGet(this, _fetchClient2).call(this, fetchUrl.toString(), {
    method: `POST`,
    headers: requestHeaders,
    body: batchedBody,
    signal: combinedSignal
  });
  if (!response.ok) await handleErrorResponse(response, this.url);
}, buildRequest_fn = async function() {
  const requestHeaders = await resolveHeaders(__privateGet(this, _options).headers);
  const fetchUrl = new URL(this.url);
  const params = await resolveParams(__privateGet(this, _options).params);
  for (const [key, value] of Object.entries(params)) fetchUrl.searchParams.set(key, value);
  return {
    requestHeaders,
    fetchUrl
  };
}, _a5);
function encodeBody(body) {
  if (body === void 0) return void 0;
  if (typeof body === `string`) return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof Blob || body instanceof FormData || body instanceof ReadableStream || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return body;
  return new TextEncoder().encode(JSON.stringify(body));
}
function toReadableStream(source) {
  if (source instanceof ReadableStream) return source.pipeThrough(new TransformStream({ transform(chunk, controller) {
    if (typeof chunk === `string`) controller.enqueue(new TextEncoder().encode(chunk));
    else controller.enqueue(chunk);
  } }));
  const encoder = new TextEncoder();
  const iterator = source[Symbol.asyncIterator]();
  return new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await iterator.next();
        if (done) controller.close();
        else if (typeof value === `string`) controller.enqueue(encoder.encode(value));
        else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
      }
    },
    cancel() {
      iterator.return?.();
    }
  });
}
function validateOptions(options) {
  if (!options.url) throw new MissingStreamUrlError();
  if (options.signal && !(options.signal instanceof AbortSignal)) throw new InvalidSignalError();
  warnIfUsingHttpInBrowser(options.url, options.warnOnHttp);
}
export {
  BackoffDefaults,
  CURSOR_QUERY_PARAM,
  DURABLE_STREAM_PROTOCOL_QUERY_PARAMS,
  DurableStream,
  DurableStreamError,
  FetchBackoffAbortError,
  FetchError,
  IdempotentProducer,
  InvalidSignalError,
  LIVE_QUERY_PARAM,
  MissingStreamUrlError,
  OFFSET_QUERY_PARAM,
  PRODUCER_EPOCH_HEADER,
  PRODUCER_EXPECTED_SEQ_HEADER,
  PRODUCER_ID_HEADER,
  PRODUCER_RECEIVED_SEQ_HEADER,
  PRODUCER_SEQ_HEADER,
  SSE_CLOSED_FIELD,
  SSE_COMPATIBLE_CONTENT_TYPES,
  SSE_CURSOR_FIELD,
  SSE_OFFSET_FIELD,
  STREAM_CLOSED_HEADER,
  STREAM_CURSOR_HEADER,
  STREAM_EXPIRES_AT_HEADER,
  STREAM_OFFSET_HEADER,
  STREAM_SEQ_HEADER,
  STREAM_TTL_HEADER,
  STREAM_UP_TO_DATE_HEADER,
  SequenceGapError,
  StaleEpochError,
  StreamClosedError,
  _resetHttpWarningForTesting,
  asAsyncIterableReadableStream,
  createFetchWithBackoff,
  createFetchWithConsumedBody,
  stream,
  warnIfUsingHttpInBrowser
};
