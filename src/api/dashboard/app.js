// The dashboard's behaviour. Every call sends the operator's token; every
// value from the API is written with textContent, never as HTML. URLs are
// relative to the page, so the gateway may sit under a path prefix.
import { stream } from "./durable-streams-client.js";

const TOKEN_KEY = "transcript-gateway.admin-token";
const PAGE_SIZE = 50;
const PREVIEW_CHARS = 400;
const MAX_TAIL_LINES = 2000;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ---- token -----------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showTokenState() {
  $("token-state").textContent = token()
    ? "Token set for this tab (sessionStorage); it is sent as a bearer token on every call."
    : "No token: the page shows nothing until you paste one. It is kept in this tab only (sessionStorage).";
}

// ---- HTTP --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function url(path) {
  return new URL(path, document.baseURI);
}

async function call(path, init = {}) {
  const headers = { Accept: "application/json", ...(init.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const resp = await fetch(url(path), { ...init, headers });
  if (!resp.ok) {
    let message = `HTTP ${resp.status}`;
    try {
      const body = await resp.json();
      if (body && body.error) message = `${body.error.code}: ${body.error.message}`;
    } catch {
      // Not our envelope: keep the status.
    }
    throw new ApiError(resp.status, message);
  }
  return resp;
}

async function data(path) {
  return (await call(path)).json();
}

function say(text, ok = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("ok", ok);
  el.hidden = !text;
}

function failed(what, err) {
  const hint = err.status === 401 || err.status === 403
    ? " (check the token: it needs task_id '*' and the scopes admin and transcripts:read)"
    : "";
  say(`${what}: ${err.message}${hint}`);
}

// ---- formatting ----------------------------------------------------------------

function bytes(n) {
  if (typeof n !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function when(ms) {
  if (typeof ms !== "number") return "never";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  td.title = td.textContent;
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function item(list, text, cls) {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  list.append(li);
  return li;
}

function failureText(f) {
  const key = [f.project_key, f.session_id, f.subpath].filter(Boolean).join(" / ");
  return `${when(f.at_ms)} · ${f.task_id}${key ? ` · ${key}` : ""} · ${f.reason} (${f.origin}): ${f.detail}`;
}

function fillFailures(list, failures, none) {
  list.replaceChildren();
  if (!failures || failures.length === 0) item(list, none, "none");
  for (const f of failures || []) item(list, failureText(f));
}

// ---- stats -------------------------------------------------------------------

async function loadStats() {
  const box = $("stats");
  try {
    const { data: s } = await data("admin/v1/stats");
    box.replaceChildren();
    for (const [label, value] of [
      ["tasks", s.tasks], ["sessions", s.sessions], ["subkeys", s.subkeys],
      ["parts", s.parts], ["stored", bytes(s.bytes)], ["entries", s.entries],
      ["appends, last hour", s.appends_last_hour], ["failures, last hour", s.failures_last_hour],
    ]) {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = String(value);
      const span = document.createElement("span");
      span.className = "muted";
      span.textContent = label;
      div.append(b, span);
      box.append(div);
    }
  } catch (err) {
    box.textContent = `Fleet totals unavailable: ${err.message}`;
  }
}

// ---- tasks -------------------------------------------------------------------

let tasksNext = null;
let openTaskId = null;
// Set once "More" has added a page: a refresh would drop what was paged in.
let tasksPaged = false;
// How often the totals and the first page of tasks are read again.
const REFRESH_MS = 5000;

async function loadTasks(more = false) {
  const body = $("tasks").tBodies[0];
  let path = `admin/v1/tasks?limit=${PAGE_SIZE}`;
  if (more && tasksNext) path += `&next_token=${enc(tasksNext)}`;
  try {
    const page = await data(path);
    tasksPaged = more;
    if (!more) body.replaceChildren();
    for (const t of page.data.tasks) body.append(taskRow(t));
    tasksNext = page.next_token || null;
    $("tasks-more").hidden = !tasksNext;
    if (!more && page.data.tasks.length === 0) {
      const row = body.insertRow();
      cell(row, "No task yet.", "muted").colSpan = 6;
    }
  } catch (err) {
    failed("Listing tasks failed", err);
  }
}

function taskRow(t) {
  const row = document.createElement("tr");
  row.className = "clickable";
  row.dataset.taskId = t.task_id;
  row.tabIndex = 0;
  cell(row, t.task_id, "mono").title = t.task_id;
  cell(row, t.subkeys ? `${t.sessions} (+${t.subkeys})` : t.sessions, "num");
  cell(row, t.entries, "num");
  cell(row, bytes(t.bytes), "num");
  cell(row, when(t.last_append_ms));
  const bad = t.failures > 0 || t.drift;
  cell(row, `${t.failures}${t.drift ? " · drift" : ""}`, bad ? "num bad" : "num");
  const open = () => openTask(t.task_id);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (e) => {
    if (e.key === "Enter") open();
  });
  if (t.task_id === openTaskId) row.classList.add("selected");
  return row;
}

// Opens a task's panel at once (its export needs nothing more), then fills
// in its details. The task is kept in the address (#task=<id>), so a link
// to it works for whoever holds a token.
async function openTask(taskId) {
  openTaskId = taskId;
  history.replaceState(null, "", `#task=${enc(taskId)}`);
  for (const row of $("tasks").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.taskId === taskId);
  }
  $("task-panel").hidden = false;
  $("task-title").textContent = `Task ${taskId}`;
  for (const id of ["task-binding", "task-failures", "task-drift"]) $(id).replaceChildren();
  $("transcripts").tBodies[0].replaceChildren();
  try {
    const { data: t } = await data(`admin/v1/tasks/${enc(taskId)}`);
    showTask(t);
  } catch (err) {
    failed(`Opening task ${taskId} failed`, err);
  }
}

function showTask(t) {
  $("task-panel").hidden = false;
  $("task-title").textContent = `Task ${t.task_id}`;
  const facts = $("task-binding");
  facts.replaceChildren();
  const fact = (label, value) => {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    facts.append(dt, dd);
  };
  if (t.binding) {
    fact("Claude session", t.binding.claude_session_id);
    fact("project key", t.binding.project_key);
    fact("cwd", t.binding.cwd);
    fact("bound", when(t.binding.created_ms));
  } else {
    fact("binding", "none yet");
  }
  fact("writer epoch", t.epoch ?? "none");

  const body = $("transcripts").tBodies[0];
  body.replaceChildren();
  for (const tr of t.transcripts || []) {
    const row = body.insertRow();
    row.dataset.sessionId = tr.session_id;
    if (tr.subpath) row.dataset.subpath = tr.subpath;
    cell(row, tr.project_key, "mono").title = tr.project_key;
    cell(row, tr.session_id, "mono").title = tr.session_id;
    cell(row, tr.subpath || "(main)", "mono");
    cell(row, tr.parts, "num");
    cell(row, tr.entries, "num");
    cell(row, bytes(tr.bytes), "num");
    cell(row, when(tr.mtime));
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Tail";
    button.dataset.testid = "tail";
    button.addEventListener("click", () => startTail(t.task_id, tr));
    td.append(button);
    row.append(td);
  }
  if (!t.transcripts || t.transcripts.length === 0) {
    cell(body.insertRow(), "No transcript.", "muted").colSpan = 8;
  }
  fillFailures($("task-failures"), t.failures, "No failure.");
  fillFailures($("task-drift"), t.drift, "No drift.");
}

// ---- export and erasure -----------------------------------------------------------

// The export needs the token, so it is fetched here and handed to the
// browser as a blob through an object URL (a plain link could not send it).
async function downloadExport() {
  if (!openTaskId) return;
  const taskId = openTaskId;
  try {
    const resp = await call(`admin/v1/tasks/${enc(taskId)}/export`, {
      headers: { Accept: "application/gzip" },
    });
    const blob = await resp.blob();
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = `${taskId}.jsonl.gz`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
    say(`Downloaded ${taskId}.jsonl.gz (${bytes(blob.size)}).`, true);
  } catch (err) {
    failed(`Export of ${taskId} failed`, err);
  }
}

async function eraseTask() {
  if (!openTaskId) return;
  const taskId = openTaskId;
  const sure = window.confirm(
    `Erase task ${taskId}? Every transcript, its binding and its index entries are deleted for good.`,
  );
  if (!sure) return;
  try {
    const resp = await call(`admin/v1/tasks/${enc(taskId)}`, { method: "DELETE" });
    const body = await resp.json();
    say(`Erased ${taskId}: ${JSON.stringify(body.data)}`, true);
    $("task-panel").hidden = true;
    openTaskId = null;
    history.replaceState(null, "", "#");
    await loadTasks();
  } catch (err) {
    failed(`Erasing ${taskId} failed`, err);
  }
}

// ---- live tail ------------------------------------------------------------------

let tail = null;

function stopTail() {
  if (tail) {
    tail.abort.abort();
    tail = null;
  }
  $("tail-state").textContent = "stopped";
}

function preview(entry) {
  const text = JSON.stringify(entry);
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
}

async function startTail(taskId, tr) {
  stopTail();
  const abort = new AbortController();
  const mine = { abort };
  tail = mine;
  const list = $("tail-entries");
  list.replaceChildren();
  $("tail-panel").hidden = false;
  $("tail-key").textContent = `${taskId} · ${tr.project_key} · ${tr.session_id}${tr.subpath ? ` · ${tr.subpath}` : ""}`;
  const state = (text) => {
    if (tail === mine) $("tail-state").textContent = text;
  };
  state("connecting…");
  const path = `v1/tasks/${enc(taskId)}/projects/${enc(tr.project_key)}/sessions/${enc(tr.session_id)}/stream`;
  try {
    const res = await stream({
      url: url(path).href,
      headers: { Authorization: () => `Bearer ${token()}` },
      params: tr.subpath ? { subpath: tr.subpath } : undefined,
      offset: "-1",
      live: "sse",
      json: true,
      signal: abort.signal,
    });
    res.subscribeJson(async (batch) => {
      if (tail !== mine) return;
      for (const entry of batch.items) {
        const li = item(list, preview(entry), "fresh");
        li.dataset.testid = "tail-entry";
        if (entry && typeof entry.uuid === "string") li.dataset.uuid = entry.uuid;
      }
      while (list.children.length > MAX_TAIL_LINES) list.firstElementChild.remove();
      list.lastElementChild?.scrollIntoView({ block: "nearest" });
      state(batch.upToDate ? `live · ${list.children.length} entries` : "catching up…");
    });
    res.closed.then(
      () => state("closed"),
      (err) => state(`error: ${err.message}`),
    );
  } catch (err) {
    if (!abort.signal.aborted) state(`error: ${err.message}`);
  }
}

// ---- fleet failures ---------------------------------------------------------------

let failuresNext = null;

async function loadFailures(more = false) {
  const list = $("failures");
  let path = `admin/v1/failures?limit=${PAGE_SIZE}`;
  if (more && failuresNext) path += `&next_token=${enc(failuresNext)}`;
  try {
    const page = await data(path);
    if (more) {
      for (const f of page.data.failures) item(list, failureText(f));
    } else {
      fillFailures(list, page.data.failures, "No failure recorded.");
    }
    failuresNext = page.next_token || null;
    $("failures-more").hidden = !failuresNext;
  } catch (err) {
    failed("Listing failures failed", err);
  }
}

// ---- wiring ---------------------------------------------------------------------

function linkedTask() {
  const m = /^#task=(.+)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

async function refreshAll() {
  say("");
  if (!token()) return;
  const linked = linkedTask();
  if (linked && linked !== openTaskId) openTask(linked);
  await Promise.all([loadStats(), loadTasks(), loadFailures()]);
}

function init() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    showTokenState();
    refreshAll();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stopTail();
    showTokenState();
    for (const id of ["stats", "failures"]) $(id).replaceChildren();
    $("tasks").tBodies[0].replaceChildren();
    $("task-panel").hidden = true;
    $("tail-panel").hidden = true;
    openTaskId = null;
  });
  $("tasks-refresh").addEventListener("click", () => {
    loadStats();
    loadTasks();
  });
  $("tasks-more").addEventListener("click", () => loadTasks(true));
  $("failures-refresh").addEventListener("click", () => loadFailures());
  $("failures-more").addEventListener("click", () => loadFailures(true));
  $("task-export").addEventListener("click", downloadExport);
  $("task-delete").addEventListener("click", eraseTask);
  $("tail-stop").addEventListener("click", stopTail);
  showTokenState();
  refreshAll();
  // The listing follows the fleet by itself while the tab is in view.
  setInterval(() => {
    if (!token() || document.hidden || tasksPaged) return;
    loadStats();
    loadTasks();
  }, REFRESH_MS);
}

init();
