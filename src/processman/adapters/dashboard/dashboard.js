// processman's dashboard (SPEC §11): the table kept live from api/events, commands, logs.
// Every URL is relative, so the page works mounted under a prefix. The token lives in
// sessionStorage and travels only in the Authorization header: streams are read with
// fetch, never EventSource, so it never appears in a URL.
"use strict";

const TOKEN_KEY = "processman-token";
const MEASURE_EVERY_MS = 2000;
const LOG_TAIL = 200;
const LOG_LINES_KEPT = 2000;

const statuses = new Map(); // id -> the status object, in the order first seen
let token = sessionStorage.getItem(TOKEN_KEY);
let eventsAbort = null;
let logsAbort = null;
let measureTimer = null;

const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

function headers() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers() } });
  if (response.status === 401) throw new Unauthorized();
  return response;
}

function say(text) {
  $("connection").textContent = text;
}

// --- the token ----------------------------------------------------------------------

function askForToken(message) {
  stopFollowing();
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  say("signed out");
  $("token").focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  begin();
});

// --- the table ----------------------------------------------------------------------

function formatUptime(status) {
  if (status.status !== "running" || !status.startTime) return "-";
  const whole = Math.max(0, Math.floor((Date.now() - Date.parse(status.startTime)) / 1000));
  if (whole < 60) return `${whole}s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes}m${String(whole % 60).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function cell(row, text, className, label) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  if (label) td.dataset.label = label;
  row.appendChild(td);
  return td;
}

function commandButtons(td, id, label) {
  td.className = "actions";
  for (const action of ["start", "stop", "restart"]) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action;
    button.dataset.action = action;
    button.dataset.id = id;
    button.setAttribute("aria-label", `${action} ${label}`);
    td.appendChild(button);
  }
}

function render() {
  const body = $("rows");
  const rows = [];
  const groups = new Map();
  for (const status of statuses.values()) {
    if (status.replica !== null && status.replica !== undefined) {
      if (!groups.has(status.group)) groups.set(status.group, []);
      groups.get(status.group).push(status);
    }
  }
  const grouped = new Set();
  for (const status of statuses.values()) {
    const group = status.replica !== null && status.replica !== undefined ? status.group : null;
    if (group !== null && !grouped.has(group)) {
      grouped.add(group);
      const members = groups.get(group);
      const row = document.createElement("tr");
      row.className = "group";
      row.dataset.group = group;
      const running = members.filter((s) => s.status === "running").length;
      const label = cell(row, `${group}: ${running} of ${members.length} running`);
      label.colSpan = 9;
      const actions = document.createElement("td");
      commandButtons(actions, group, `group ${group}`);
      row.appendChild(actions);
      rows.push(row);
    }
    rows.push(statusRow(status));
  }
  body.replaceChildren(...rows);
}

function statusRow(status) {
  const row = document.createElement("tr");
  row.dataset.id = status.id;
  const idCell = document.createElement("td");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link";
  open.textContent = status.id;
  open.dataset.logs = status.id;
  open.title = `show the logs of ${status.id}`;
  idCell.appendChild(open);
  row.appendChild(idCell);
  const running = status.status === "running";
  const cpu = status.cpuPercent;
  const fields = [
    ["status", status.status, `status status-${status.status}`, ""],
    ["ready", running ? (status.ready ? "yes" : "no") : "-", "", "ready"],
    ["pid", status.pid === null ? "-" : String(status.pid), "", "pid"],
    ["uptime", formatUptime(status), "", "up"],
    ["restarts", String(status.restartCount), "", "restarts"],
    ["cpu", cpu === null || cpu === undefined ? "-" : `${cpu.toFixed(1)}%`, "", "CPU"],
    ["memory", formatBytes(status.memoryBytes), "", "mem"],
    ["lastError", status.lastError || "", "error-cell", ""],
  ];
  for (const [field, text, className, label] of fields) {
    cell(row, text, className, label).dataset.field = field;
  }
  const actions = document.createElement("td");
  commandButtons(actions, status.id, status.id);
  row.appendChild(actions);
  return row;
}

$("rows").addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.logs) {
    showLogs(button.dataset.logs);
    return;
  }
  const { action, id } = button.dataset;
  if (!action) return;
  button.disabled = true;
  try {
    const response = await api(`api/processes/${encodeURIComponent(id)}/${action}`, {
      method: "POST",
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      say(`${action} ${id}: ${answer.error || response.status}`);
    }
  } catch (error) {
    if (error instanceof Unauthorized) askForToken("the token was refused");
    else say(`${action} ${id}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

// --- Server-Sent Events over fetch ----------------------------------------------------

async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      let comment = false;
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) {
          comment = true;
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: data.join("\n") };
      else if (comment) yield { event: "comment", data: "" };
    }
  }
}

async function followEvents(signal) {
  while (!signal.aborted) {
    try {
      const response = await fetch("api/events", { headers: headers(), signal });
      if (response.status === 401) throw new Unauthorized();
      if (!response.ok) throw new Error(`api/events answered ${response.status}`);
      say("live");
      for await (const { event, data } of serverSentEvents(response)) {
        if (event === "status") {
          const status = JSON.parse(data);
          const before = statuses.get(status.id);
          if (before && status.status === "running" && status.cpuPercent === null) {
            status.cpuPercent = before.cpuPercent; // events carry no new measurement
            status.memoryBytes = before.memoryBytes;
          }
          statuses.set(status.id, status);
          render();
        } else if (event === "removed") {
          statuses.delete(JSON.parse(data).id);
          render();
        } else if (event === "gap") {
          statuses.clear(); // a fresh snapshot follows
        } else if (event === "end") {
          say("processman shut down");
          return;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unauthorized) {
        askForToken("the token was refused");
        return;
      }
    }
    say("reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function measure() {
  // CPU and memory are read when asked (SPEC §11): ask every 2 s while the page is open
  try {
    const response = await api("api/processes");
    if (!response.ok) return;
    for (const status of await response.json()) {
      if (statuses.has(status.id)) statuses.set(status.id, status);
    }
    render();
  } catch (error) {
    if (error instanceof Unauthorized) askForToken("the token was refused");
  }
}

function stopFollowing() {
  if (eventsAbort) eventsAbort.abort();
  eventsAbort = null;
  if (measureTimer) clearInterval(measureTimer);
  measureTimer = null;
}

async function begin() {
  stopFollowing();
  let response;
  try {
    response = await api("api/processes");
  } catch (error) {
    if (error instanceof Unauthorized) {
      askForToken(token ? "the token was refused" : "");
      return;
    }
    say(`cannot reach processman: ${error.message}`);
    return;
  }
  $("login").hidden = true;
  statuses.clear();
  for (const status of await response.json()) statuses.set(status.id, status);
  render();
  eventsAbort = new AbortController();
  followEvents(eventsAbort.signal);
  measureTimer = setInterval(measure, MEASURE_EVERY_MS);
}

// --- logs -----------------------------------------------------------------------------

function logLine(entry) {
  const span = document.createElement("span");
  if (entry.stream === "stderr") span.className = "stderr";
  const time = entry.time ? new Date(entry.time).toLocaleTimeString() : "";
  span.textContent = `${time} ${entry.line}\n`;
  return span;
}

function appendLines(entries) {
  const pre = $("log-lines");
  const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  for (const entry of entries) pre.appendChild(logLine(entry));
  while (pre.childNodes.length > LOG_LINES_KEPT) pre.removeChild(pre.firstChild);
  if (follow) pre.scrollTop = pre.scrollHeight;
}

async function showLogs(id) {
  if (logsAbort) logsAbort.abort();
  const abort = (logsAbort = new AbortController());
  $("logs").hidden = false;
  $("logs-id").textContent = id;
  $("log-lines").replaceChildren();
  const path = `api/processes/${encodeURIComponent(id)}`;
  try {
    // the stream first, then the tail: a line is never missed between the two, and
    // the ones the tail already holds are skipped
    const stream = await fetch(`${path}/logs/stream`, { headers: headers(), signal: abort.signal });
    if (stream.status === 401) throw new Unauthorized();
    const events = serverSentEvents(stream);
    await events.next(); // ": connected": subscribed from here on
    const tail = await api(`${path}/logs?tail=${LOG_TAIL}`, { signal: abort.signal });
    const shown = await tail.json();
    appendLines(shown);
    const key = (e) => `${e.time}\u0000${e.process || ""}\u0000${e.line}`;
    const seen = new Set(shown.map(key));
    for await (const { event, data } of events) {
      if (event === "end") break;
      if (event !== "message") continue;
      const entry = JSON.parse(data);
      if (seen.size && seen.has(key(entry))) continue;
      seen.clear(); // past the tail: every later line is new
      appendLines([entry]);
    }
  } catch (error) {
    if (abort.signal.aborted) return;
    if (error instanceof Unauthorized) askForToken("the token was refused");
  }
}

$("logs-close").addEventListener("click", () => {
  if (logsAbort) logsAbort.abort();
  logsAbort = null;
  $("logs").hidden = true;
});

setInterval(() => {
  for (const row of $("rows").querySelectorAll("tr[data-id]")) {
    const status = statuses.get(row.dataset.id);
    const uptime = row.querySelector('[data-field="uptime"]');
    if (status && uptime) uptime.textContent = formatUptime(status);
  }
}, 1000);

begin();
