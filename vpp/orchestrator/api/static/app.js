// The vpp dashboard: plain ES2020, no library, no build step (docs/dashboard.md).
//
// Data flow: /api/me decides between the login form and the dashboard; the first paint
// comes from /api/series and /api/timeline, then the server-sent events of /api/stream
// (a status snapshot with the timeline entries since the last one, every 0.2 s) keep it
// live. Messages only update the model and ask for a frame; drawing happens at most once
// per animation frame, so a burst of messages costs one paint.
"use strict";

const WINDOW_S = 300;            // the charts' time span
const BLOCK_S = 900;             // a market block (15 minutes)
const BAND_LO = 49.90;           // IEGC normal band (and the default droop deadband)
const BAND_HI = 50.05;
const NOMINAL = 50.0;
const STALE_S = 3;               // no message for this long: the stream is reopened
const TIMELINE_ROWS = 200;       // timeline entries kept on the page
const POLL_MARKET_S = 60;
// Reads the API sends as the user's identity are audited and published like any command;
// a successful one is not news on the timeline.
const READS = new Set(["status", "safety_history", "fleet", "events"]);

const $ = (id) => document.getElementById(id);

// Counters the browser test (and a curious operator, from the console) can read.
const stats = {
  updates: 0, frames: 0, drawMs: 0, rate: 0, reconnects: 0, connected: false, age: null,
};
window.vppDash = stats;

const S = {
  me: null,
  allowed: { field: new Set(), campus: new Set(), market: new Set() },
  snap: null,
  offset: 0,               // server clock minus browser clock, s
  lastMsg: 0,              // browser time of the last stream message, s
  freq: [],                // [t, hz, rocof]
  fleet: [],               // [t, kW, target kW]
  delivered: new Map(),    // block number (t / BLOCK_S) -> {sum, n} of fleet kW
  market: null,
  events: [],              // frequency events as [start, end or null] for the chart
  seq: 0,                  // newest timeline entry shown
  controller: {},          // unit -> its controller's status (enabled, latched, ...)
  rows: new Map(),         // unit -> row cells
  receipts: [],            // browser times of recent messages (the rate)
  es: null,
  backoff: 1,
  pending: false,
  sizesDirty: true,
  keys: {},                // last rendered JSON of lists, to skip unchanged ones
  timers: [],
  retry: 0,
  loaded: false,           // first paint done: timeline entries may trigger reads
};

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function describe(data, status) {
  // FastAPI's detail is a string, a {error, refused} object (a refused command), or a
  // list of validation errors.
  const d = data && data.detail !== undefined ? data.detail : data;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) {
    return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  }
  if (d && typeof d === "object") {
    const why = d.refused ? `${d.refused}: ` : "";
    return why + (d.error || JSON.stringify(d));
  }
  return `HTTP ${status}`;
}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", credentials: "same-origin", headers: {} };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  // The API refuses a cookie-authenticated change without it (a forged form cannot
  // add a header).
  if (init.method !== "GET") init.headers["X-VPP"] = "1";
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, describe(data, response.status));
  return data;
}

// ---------------------------------------------------------------- formatting

function fmt(v, digits = 1) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–";
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function clock(t, seconds = true) {
  const d = new Date(t * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return seconds ? `${hm}:${pad(d.getSeconds())}` : hm;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setClass(el, name) {
  if (el.className !== name) el.className = name;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function serverNow() {
  return Date.now() / 1000 + S.offset;
}

// ---------------------------------------------------------------- session

async function boot() {
  try {
    S.me = await api("/api/me");
  } catch (e) {
    if (e.status === 401) return showLogin();
    setConnection("bad", "API unreachable");
    S.timers.push(setTimeout(boot, 3000));
    return;
  }
  await showDashboard();
}

function showLogin(message = "") {
  closeStream();
  clearTimeout(S.retry);
  for (const t of S.timers) {
    clearTimeout(t);
    clearInterval(t);
  }
  S.timers = [];
  $("dash").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login-user").focus();
}

async function login(ev) {
  ev.preventDefault();
  const user = $("login-user").value;
  const password = $("login-password").value;
  $("login-submit").disabled = true;
  $("login-error").textContent = "";
  try {
    S.me = await api("/api/login", { method: "POST", body: { user, password } });
    $("login-password").value = "";
    await showDashboard();
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong user or password." : e.message;
  } finally {
    $("login-submit").disabled = false;
  }
}

async function logout() {
  try {
    await api("/api/logout", { method: "POST" });
  } catch (_) {
    // The session may already be gone; the login form is what follows either way.
  }
  location.reload();
}

async function showDashboard() {
  const me = S.me;
  for (const kind of ["field", "campus", "market"]) {
    S.allowed[kind] = new Set((me.allowed && me.allowed[kind]) || []);
  }
  $("login").hidden = true;
  $("dash").hidden = false;
  $("who").textContent = `${me.user} · ${me.roles.join(", ") || me.identity}`;
  $("who").title = `acts on the bus as ${me.identity}`;
  const campus = S.allowed.campus.has("set_target");
  $("target-form").hidden = !campus;
  $("market-controls").hidden = !S.allowed.market.has("run");
  document.body.classList.toggle("can-control", S.allowed.field.has("control"));
  // Rows carry the controls of the user who built them: a new login builds them anew.
  S.rows.clear();
  document.querySelector("#units tbody").replaceChildren();
  await loadHistory();
  S.loaded = true;
  openStream();
  refreshMarket();
  pollUnits();
  // Each read is a command the process audits, so the page asks again only when the
  // timeline says something changed (see addTimeline), and the market once a minute.
  S.timers.push(setInterval(refreshMarket, POLL_MARKET_S * 1000));
  // Ages grow and charts scroll even when no message comes.
  S.timers.push(setInterval(() => { watchdog(); requestDraw(); }, 1000));
}

// ---------------------------------------------------------------- data in

async function loadHistory() {
  try {
    const series = await api(`/api/series?window_s=${WINDOW_S}`);
    // Called again after a reconnect: only the points not yet counted go to the blocks.
    const known = S.fleet.length ? S.fleet[S.fleet.length - 1][0] : 0;
    S.freq = series.frequency.filter((p) => p[1] !== null);
    S.fleet = series.fleet;
    for (const p of S.fleet) if (p[0] > known) addDelivered(p[0], p[1]);
  } catch (e) {
    if (e.status === 401) return showLogin("Session ended; log in again.");
  }
  if (S.seq === 0) {
    try {
      addTimeline(await api("/api/timeline?since=0"));
    } catch (_) {
      // The stream brings the entries after its start; the older ones are a nicety.
    }
  }
  requestDraw();
}

function openStream() {
  closeStream();
  const es = new EventSource(`/api/stream?since=${S.seq}`);
  S.es = es;
  S.lastMsg = Date.now() / 1000;
  setConnection("wait", "connecting");
  es.onopen = () => setConnection("ok", "live");
  es.onmessage = (ev) => {
    let snap;
    try {
      snap = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    S.backoff = 1;
    onSnapshot(snap);
  };
  es.onerror = () => {
    // EventSource retries by itself after a dropped connection; a refused one (401:
    // the session ended) closes it, and then it is ours to reopen or to log in again.
    if (es.readyState === EventSource.CLOSED) reconnectLater();
    else setConnection("wait", "reconnecting");
  };
}

function closeStream() {
  if (S.es) {
    S.es.onerror = null;
    S.es.close();
    S.es = null;
  }
  stats.connected = false;
}

function reconnectLater() {
  closeStream();
  setConnection("bad", `reconnecting in ${S.backoff} s`);
  stats.reconnects += 1;
  const delay = S.backoff;
  S.backoff = Math.min(S.backoff * 2, 15);
  clearTimeout(S.retry);
  S.retry = setTimeout(async () => {
    try {
      await api("/api/me");
    } catch (e) {
      if (e.status === 401) return showLogin("Session ended; log in again.");
      return reconnectLater();
    }
    await loadHistory();   // fills the gap the charts have
    openStream();
  }, delay * 1000);
}

function watchdog() {
  // A connection can stay open with nothing coming (a stalled proxy, a stopped API):
  // the onerror above never fires then.
  if (S.es && Date.now() / 1000 - S.lastMsg > STALE_S) {
    setConnection("bad", "no data");
    reconnectLater();
  }
}

function setConnection(state, text) {
  const badge = $("conn");
  setText(badge, text);
  setClass(badge, `badge conn-${state}`);
  stats.connected = state === "ok";
}

function onSnapshot(snap) {
  const now = Date.now() / 1000;
  S.lastMsg = now;
  S.offset = snap.t - now;
  S.snap = snap;
  stats.updates += 1;
  S.receipts.push(now);
  while (S.receipts.length && S.receipts[0] < now - 2) S.receipts.shift();
  stats.rate = S.receipts.length / 2;
  if (!stats.connected) setConnection("ok", "live");

  const g = snap.grid;
  const last = S.freq[S.freq.length - 1];
  if (typeof g.hz === "number" && (!last || g.t > last[0])) S.freq.push([g.t, g.hz, g.rocof]);
  const f = snap.fleet;
  S.fleet.push([snap.t, f.p_kw, f.target_kw]);
  addDelivered(snap.t, f.p_kw);
  trim(S.freq, snap.t - WINDOW_S - 5);
  trim(S.fleet, snap.t - WINDOW_S - 5);
  if (snap.timeline && snap.timeline.length) addTimeline(snap.timeline);
  requestDraw();
}

function trim(points, t0) {
  let i = 0;
  while (i < points.length && points[i][0] < t0) i += 1;
  if (i) points.splice(0, i);
}

function addDelivered(t, kw) {
  if (typeof kw !== "number") return;
  const block = Math.floor(t / BLOCK_S);
  const acc = S.delivered.get(block) || { sum: 0, n: 0 };
  acc.sum += kw;
  acc.n += 1;
  S.delivered.set(block, acc);
  if (S.delivered.size > 200) S.delivered.delete(S.delivered.keys().next().value);
}

async function refreshMarket() {
  try {
    S.market = await api("/api/market");
  } catch (e) {
    S.market = { error: e.message };
  }
  requestDraw();
}

async function pollUnits() {
  const units = S.snap ? S.snap.units.map((u) => u.unit) : [];
  if (!units.length) {
    // The first snapshot has not come yet: the unit names come with it.
    S.timers.push(setTimeout(pollUnits, 500));
    return;
  }
  await Promise.all(units.map(pollUnit));
}

async function pollUnit(unit) {
  try {
    const u = await api(`/api/units/${encodeURIComponent(unit)}`);
    if (u.controller) S.controller[unit] = u.controller;
  } catch (_) {
    delete S.controller[unit];   // shown as unknown rather than as stale
  }
  requestDraw();
}

// ---------------------------------------------------------------- commands

function confirmAction(text, button) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = button;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function showOutcome(text, ok) {
  const out = $("outcome");
  out.textContent = `${clock(Date.now() / 1000)} ${text}`;
  out.className = `outcome ${ok === null ? "pending" : ok ? "ok" : "bad"}`;
}

async function command(what, path, body, unit) {
  showOutcome(`${what}: sending…`, null);
  try {
    const result = await api(path, { method: "POST", body });
    const device = result && result.device ? ` (device: ${result.device})` : "";
    showOutcome(`${what}: done${device}`, true);
  } catch (e) {
    showOutcome(`${what}: refused, ${e.message}`, false);
    if (e.status === 401) showLogin("Session ended; log in again.");
  }
  if (unit) pollUnit(unit);
}

const ACTIONS = {
  enable: ["Enable", "Enable unit {u}? It resumes writing setpoints."],
  disable: ["Disable", "Disable unit {u}? It stops following setpoints."],
  reset_alarms: ["Reset", "Reset the alarms and the safety latch of unit {u}?"],
  emergency_stop: ["E-stop", "Emergency stop unit {u}? The inverter stops at once; enable " +
                             "it again to resume."],
};

async function unitControl(unit, action) {
  const [label, question] = ACTIONS[action];
  if (!(await confirmAction(question.replace("{u}", unit), label))) return;
  await command(`${action} ${unit}`, `/api/units/${encodeURIComponent(unit)}/control`,
                { action }, unit);
}

async function unitPower(unit, input) {
  const kw = Number(input.value);
  if (input.value.trim() === "" || !Number.isFinite(kw)) {
    showOutcome(`set power ${unit}: enter kW (discharge positive)`, false);
    return;
  }
  await command(`set power ${unit} to ${kw} kW`,
                `/api/units/${encodeURIComponent(unit)}/power`, { kw }, unit);
}

async function campusTarget(kw) {
  const text = kw === null ? "Let the campus follow the market schedule?"
                           : `Set the campus target to ${kw} kW?`;
  if (!(await confirmAction(text, "Set"))) return;
  await command(kw === null ? "campus target: schedule" : `campus target ${kw} kW`,
                "/api/campus/target", { kw });
}

async function marketRun() {
  if (!(await confirmAction("Bid, clear and schedule the next delivery now?", "Run"))) return;
  await command("market run", "/api/market/run", {});
  refreshMarket();
}

// ---------------------------------------------------------------- drawing

function requestDraw() {
  if (!S.pending) {
    S.pending = true;
    requestAnimationFrame(frame);
  }
}

function frame() {
  const start = performance.now();
  S.pending = false;
  stats.frames += 1;
  if (S.sizesDirty) {
    for (const c of document.querySelectorAll("canvas.chart")) sizeCanvas(c);
    S.sizesDirty = false;
  }
  drawHeader();
  if (S.snap) {
    drawUnits(S.snap.units);
    drawAlarms(S.snap.alarms);
    drawProcesses(S.snap.processes);
  }
  drawFrequency();
  drawFleet();
  drawMarket();
  stats.drawMs += performance.now() - start;
}

function drawHeader() {
  const snap = S.snap;
  const now = serverNow();
  if (snap) {
    const g = snap.grid;
    const f = snap.fleet;
    setText($("site-name"), snap.site);
    setText($("hz"), fmt(g.hz, 3));
    setText($("rocof"), fmt(g.rocof, 3));
    setText($("band"), g.band || "–");
    setClass($("band"), `badge band-${g.band || "none"}`);
    setText($("fleet-p"), fmt(f.p_kw, 1));
    setText($("fleet-target"), fmt(f.target_kw, 1));
    setText($("fleet-source"), f.source || "no dispatch");
    setText($("fleet-soc"), fmt(f.soc_pct, 1));
    setText($("units-online"), `${f.units_online}/${f.units}`);
    setText($("fleet-safety"), `safety ${f.safety}`);
    const d = snap.dispatch || {};
    setText($("dispatch-text"), d.target_kw === undefined ? "none yet"
      : `${fmt(d.target_kw, 1)} kW from ${d.source || "?"}` +
        (d.shortfall_kw ? `, shortfall ${fmt(d.shortfall_kw, 1)} kW` : ""));
    const ev = g.event;
    const banner = $("event-banner");
    banner.hidden = !ev;
    if (ev) {
      setText(banner, `Frequency event under way since ${clock(ev.start)}: ` +
        `${ev.direction}-frequency, extreme ${fmt(ev.direction === "over" ? ev.zenith_hz
                                                                          : ev.nadir_hz, 3)} Hz`);
    }
    const age = g.t ? now - g.t : null;
    stats.age = age;
    setText($("age"), age === null ? "–" : `${fmt(Math.max(age, 0), 1)} s`);
    $("age").className = age !== null && age > 2 ? "stale" : "";
  }
  setText($("rate"), fmt(Date.now() / 1000 - S.lastMsg > 2 ? 0 : stats.rate, 0));
  const sched = scheduleAt(now);
  setText($("sched-now"), fmt(sched, 1));
  const block = Math.floor(now / BLOCK_S) * BLOCK_S;
  setText($("sched-block"), sched === null ? "no schedule"
    : `${clock(block, false)}–${clock(block + BLOCK_S, false)}`);
}

function scheduleAt(t) {
  const m = S.market;
  if (!m || !m.schedule_start || !m.schedule_kw || !m.schedule_kw.length) return null;
  const i = Math.floor((t - m.schedule_start) / BLOCK_S);
  return i >= 0 && i < m.schedule_kw.length ? m.schedule_kw[i] : null;
}

function drawUnits(units) {
  const body = document.querySelector("#units tbody");
  for (const u of units) {
    let row = S.rows.get(u.unit);
    if (!row) {
      row = unitRow(u);
      S.rows.set(u.unit, row);
      body.append(row.tr);
    }
    const ctl = S.controller[u.unit];
    setText(row.online, u.online ? "online" : "offline");
    setClass(row.online, `dot ${u.online ? "dot-ok" : "dot-bad"}`);
    const soc = typeof u.soc_pct === "number" ? Math.min(Math.max(u.soc_pct, 0), 100) : 0;
    const width = `${soc.toFixed(1)}%`;
    if (row.socFill.style.width !== width) row.socFill.style.width = width;
    setClass(row.socFill, `soc-fill${soc < 15 || soc > 90 ? " soc-edge" : ""}`);
    setText(row.socText, fmt(u.soc_pct, 1));
    setText(row.p, fmt(u.p_kw, 1));
    setText(row.setpoint, fmt(u.setpoint_kw, 1));
    setText(row.base, fmt(u.base_kw, 1));
    setText(row.response, fmt(u.response_kw, 1));
    setText(row.safety, u.safety);
    setClass(row.safety, `badge safety-${u.safety}`);
    let state = "–";
    if (ctl) state = (ctl.enabled ? "enabled" : "disabled") + (ctl.latched ? ", latched" : "");
    setText(row.state, state);
    setClass(row.state, ctl && !ctl.enabled ? "warn" : "");
    row.tr.classList.toggle("unit-offline", !u.online);
  }
}

function unitRow(u) {
  const cells = {
    name: el("td", { className: "unit-name", title: `${u.location} (${u.field}), ` +
                     `${u.rated_kw} kW / ${u.capacity_kwh} kWh` }, u.unit),
    online: el("span", { className: "dot" }),
    socFill: el("span", { className: "soc-fill" }),
    socText: el("span", { className: "soc-text" }),
    p: el("td", { className: "num" }),
    setpoint: el("td", { className: "num" }),
    base: el("td", { className: "num" }),
    response: el("td", { className: "num" }),
    safety: el("span", { className: "badge" }),
    state: el("span"),
  };
  const controls = el("td", { className: "ctl-col" });
  if (S.allowed.field.has("control")) {
    for (const action of Object.keys(ACTIONS)) {
      const b = el("button", { type: "button", className: action === "emergency_stop"
                     ? "small danger" : "small", dataset: { unit: u.unit, action } },
                   ACTIONS[action][0]);
      b.addEventListener("click", () => unitControl(u.unit, action));
      controls.append(b);
    }
  }
  if (S.allowed.field.has("set_power")) {
    const input = el("input", { type: "number", step: "any", className: "kw-input",
                                placeholder: "kW", title: "base power, kW (discharge +)",
                                dataset: { unit: u.unit } });
    const set = el("button", { type: "button", className: "small",
                               dataset: { unit: u.unit, action: "set_power" } }, "Set kW");
    set.addEventListener("click", () => unitPower(u.unit, input));
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") unitPower(u.unit, input); });
    controls.append(el("span", { className: "power-set" }, input, set));
  }
  const bar = el("span", { className: "soc-bar" }, cells.socFill);
  const tr = el("tr", { dataset: { unit: u.unit } },
    cells.name,
    el("td", {}, cells.online),
    el("td", { className: "soc-col" }, bar, cells.socText),
    cells.p, cells.setpoint, cells.base, cells.response,
    el("td", {}, cells.safety),
    el("td", {}, cells.state),
    controls);
  return { tr, ...cells };
}

function changed(name, value) {
  const key = JSON.stringify(value);
  if (S.keys[name] === key) return false;
  S.keys[name] = key;
  return true;
}

function drawAlarms(alarms) {
  if (!changed("alarms", alarms)) return;
  const list = $("alarms");
  setText($("alarm-count"), String(alarms.length));
  $("alarm-count").classList.toggle("count-bad", alarms.length > 0);
  list.replaceChildren(...(alarms.length ? alarms.slice(0, 30).map((a) => el("li",
    { className: `sev-${a.severity}` },
    el("span", { className: "alarm-unit" }, a.unit || "site"), ` ${a.text}`,
    a.t ? el("span", { className: "muted" }, ` ${clock(a.t)}`) : ""))
    : [el("li", { className: "muted" }, "none")]));
}

function drawProcesses(processes) {
  if (!changed("processes", processes)) return;
  const names = Object.keys(processes || {}).sort();
  $("processes").replaceChildren(...(names.length ? names.map((n) => {
    const p = processes[n];
    return el("li", {}, el("strong", {}, n), ` ${p.text || ""} `,
              el("span", { className: "muted" }, p.t ? clock(p.t) : ""));
  }) : [el("li", { className: "muted" }, "no changes reported")]));
}

// ---------------------------------------------------------------- timeline

const KIND_LABEL = {
  frequency_event: "event", compliance: "compliance", command: "command",
  process: "process", band: "band", device: "device", market: "market",
  market_error: "market", safety: "safety", result: "market",
};

function addTimeline(entries) {
  const list = $("timeline");
  const fresh = entries.filter((e) => e.seq > S.seq);
  if (!fresh.length) return;
  S.seq = fresh[fresh.length - 1].seq;
  const nodes = [];
  let units = false;
  let market = false;
  for (const e of fresh) {
    if (e.kind === "frequency_event") noteEvent(e.data);
    const d = e.data || {};
    if (e.kind === "command" && d.ok && READS.has(d.command)) continue;
    // A unit's enable state and latch live in its field controller: asked again when a
    // command or a process restart may have changed them.
    if (e.kind === "process" || (e.kind === "command" && e.unit)) units = true;
    if (e.kind === "result" || (e.kind === "command" && d.command === "run")) market = true;
    nodes.push(timelineItem(e));
  }
  if (units && S.loaded) pollUnits();
  if (market && S.loaded) refreshMarket();
  list.prepend(...nodes.reverse());
  while (list.children.length > TIMELINE_ROWS) list.lastElementChild.remove();
}

function noteEvent(d) {
  if (d.phase === "start") {
    S.events.push([d.start, null]);
  } else if (d.phase === "end") {
    const open = S.events.find((e) => e[0] === d.start);
    if (open) open[1] = d.end;
    else S.events.push([d.start, d.end]);
  }
  if (S.events.length > 50) S.events.shift();
}

function verdict(e) {
  const d = e.data || {};
  if (e.kind === "compliance") {
    if (!d.fleet) return ["not judged", "v-na"];
    return d.fleet.passed ? ["pass", "v-pass"] : ["fail", "v-fail"];
  }
  if (e.kind === "command") {
    return d.ok ? ["done", "v-pass"] : [d.refused || "refused", "v-fail"];
  }
  return null;
}

// A command as an operator reads it: the action, its target and value, who sent it and,
// when refused, why (the server's own text names the command only).
function commandText(e) {
  const d = e.data || {};
  const p = d.params || {};
  let what = `${d.command} ${d.target}`;
  if (d.command === "control" && p.action) what = `${p.action} ${d.target}`;
  else if (typeof p.kw === "number") what += ` ${p.kw} kW`;
  else if ("kw" in p && p.kw === null) what += " (follow schedule)";
  else if (typeof p.p_max_kw === "number") what += ` ${p.p_max_kw} kW`;
  const why = d.ok ? "" : `: ${d.detail || d.refused}`;
  return `${what} by ${d.identity || "(no identity)"}${why}`;
}

function timelineItem(e) {
  const v = verdict(e);
  const text = e.kind === "command" && e.data ? commandText(e) : e.text || e.kind;
  const li = el("li", { className: `tl sev-${e.severity}`,
                        dataset: { kind: e.kind, seq: String(e.seq) } },
    el("time", { className: "tl-time" }, clock(e.t)),
    el("span", { className: `tl-kind kind-${e.kind}` }, KIND_LABEL[e.kind] || e.kind),
    el("span", { className: "tl-text" }, text));
  // Two field controllers report the same band change: who said it tells them apart.
  if (e.kind !== "command" && e.sender) li.append(el("span", { className: "tl-from" }, e.sender));
  if (v) li.append(el("span", { className: `verdict ${v[1]}` }, v[0]));
  if (e.kind === "command" && e.data) {
    li.title = `${e.data.identity} (${e.data.role}) -> ${e.sender}: ` +
               JSON.stringify(e.data.params);
  }
  return li;
}

// ---------------------------------------------------------------- charts

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function sizeCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = Number(canvas.dataset.height);
  canvas.style.height = `${h}px`;
  canvas.width = Math.max(1, Math.round(w * dpr));
  canvas.height = Math.round(h * dpr);
  canvas.dataset.dpr = String(dpr);
}

// A chart's frame: the context scaled to CSS pixels and the plot area inside the axes.
function plot(canvas, x0, x1, y0, y1) {
  const ctx = canvas.getContext("2d");
  const dpr = Number(canvas.dataset.dpr || 1);
  const w = canvas.width / dpr;
  const h = canvas.height / dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const area = { left: 52, right: w - 8, top: 8, bottom: h - 20 };
  const sx = (x) => area.left + (x - x0) / (x1 - x0) * (area.right - area.left);
  const sy = (y) => area.bottom - (y - y0) / (y1 - y0) * (area.bottom - area.top);
  ctx.font = `11px ${css("--font")}`;
  return { ctx, w, h, area, sx, sy };
}

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function yAxis(p, y0, y1, digits, unit) {
  const { ctx, area, sy } = p;
  const step = niceStep(y1 - y0, Math.max(2, Math.floor((area.bottom - area.top) / 30)));
  ctx.strokeStyle = css("--grid");
  ctx.fillStyle = css("--muted");
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let v = Math.ceil(y0 / step) * step; v <= y1 + 1e-9; v += step) {
    const y = Math.round(sy(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(area.right, y);
    ctx.stroke();
    ctx.fillText(v.toFixed(digits), area.left - 6, y);
  }
  ctx.save();
  ctx.translate(10, (area.top + area.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(unit, 0, 0);
  ctx.restore();
}

function timeAxis(p, t0, t1) {
  const { ctx, area, sx } = p;
  ctx.fillStyle = css("--muted");
  ctx.strokeStyle = css("--grid");
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let t = Math.ceil(t0 / 60) * 60; t <= t1; t += 60) {
    const x = Math.round(sx(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, area.top);
    ctx.lineTo(x, area.bottom);
    ctx.stroke();
    ctx.fillText(clock(t, false), x, area.bottom + 4);
  }
}

// A polyline of points[i][k], broken where samples are more than `gap` s apart.
function line(p, points, k, t0, color, width, dash = []) {
  const { ctx, sx, sy } = p;
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.setLineDash(dash);
  ctx.beginPath();
  let prev = null;
  for (const pt of points) {
    const v = pt[k];
    if (pt[0] < t0 || typeof v !== "number") {
      prev = null;
      continue;
    }
    const x = sx(pt[0]);
    const y = sy(v);
    if (prev === null || pt[0] - prev > 5) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
    prev = pt[0];
  }
  ctx.stroke();
  ctx.setLineDash([]);
}

function range(values, lo, hi, pad) {
  let min = lo;
  let max = hi;
  for (const v of values) {
    if (typeof v === "number" && Number.isFinite(v)) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  const margin = (max - min) * pad || 1;
  return [min - margin, max + margin];
}

function drawFrequency() {
  const canvas = $("freq-chart");
  const t1 = serverNow();
  const t0 = t1 - WINDOW_S;
  const visible = S.freq.filter((pt) => pt[0] >= t0);
  const [y0, y1] = range(visible.map((pt) => pt[1]), BAND_LO - 0.03, BAND_HI + 0.03, 0.05);
  const p = plot(canvas, t0, t1, y0, y1);
  const { ctx, area, sx, sy } = p;
  // Frequency events first, as a wash behind everything.
  ctx.fillStyle = css("--event");
  for (const [start, end] of S.events) {
    const a = Math.max(sx(start), area.left);
    const b = Math.min(sx(end === null ? t1 : end), area.right);
    if (b > a) ctx.fillRect(a, area.top, b - a, area.bottom - area.top);
  }
  ctx.fillStyle = css("--band");
  ctx.fillRect(area.left, sy(BAND_HI), area.right - area.left, sy(BAND_LO) - sy(BAND_HI));
  yAxis(p, y0, y1, 2, "Hz");
  timeAxis(p, t0, t1);
  ctx.strokeStyle = css("--band-edge");
  ctx.setLineDash([4, 3]);
  ctx.fillStyle = css("--band-edge");
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  for (const [v, label] of [[BAND_LO, "49.90"], [BAND_HI, "50.05"]]) {
    const y = Math.round(sy(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(area.right, y);
    ctx.stroke();
    ctx.fillText(label, area.left + 4, v === BAND_LO ? y + 13 : y - 1);
  }
  ctx.setLineDash([]);
  ctx.strokeStyle = css("--grid-strong");
  const yn = Math.round(sy(NOMINAL)) + 0.5;
  ctx.beginPath();
  ctx.moveTo(area.left, yn);
  ctx.lineTo(area.right, yn);
  ctx.stroke();
  line(p, visible, 1, t0, css("--freq"), 1.5);
  const last = visible[visible.length - 1];
  if (last) {
    ctx.fillStyle = css("--freq");
    ctx.beginPath();
    ctx.arc(sx(last[0]), sy(last[1]), 3, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function drawFleet() {
  const canvas = $("fleet-chart");
  const t1 = serverNow();
  const t0 = t1 - WINDOW_S;
  const visible = S.fleet.filter((pt) => pt[0] >= t0);
  // The schedule as [t, kW] steps over the window.
  const steps = [];
  for (let t = Math.floor(t0 / BLOCK_S) * BLOCK_S; t <= t1; t += BLOCK_S) {
    const v = scheduleAt(t + 1);
    steps.push([Math.max(t, t0), v], [Math.min(t + BLOCK_S, t1) - 1e-3, v]);
  }
  const values = visible.flatMap((pt) => [pt[1], pt[2]]).concat(steps.map((s) => s[1]));
  const [y0, y1] = range(values, 0, 0, 0.1);
  const p = plot(canvas, t0, t1, y0, y1);
  yAxis(p, y0, y1, y1 - y0 < 10 ? 1 : 0, "kW");
  timeAxis(p, t0, t1);
  line(p, steps, 1, t0, css("--sched"), 2);
  line(p, visible, 2, t0, css("--target"), 1.5, [5, 4]);
  line(p, visible, 1, t0, css("--power"), 1.5);
}

function drawMarket() {
  const canvas = $("market-chart");
  const m = S.market;
  const kw = m && m.schedule_kw ? m.schedule_kw : [];
  const note = $("market-day");
  if (!kw.length || !m.schedule_start) {
    const p = plot(canvas, 0, 1, 0, 1);
    p.ctx.fillStyle = css("--muted");
    p.ctx.textAlign = "center";
    p.ctx.fillText(m && m.error ? `market: ${m.error}` : "no schedule yet", p.w / 2, p.h / 2);
    setText(note, "");
    return;
  }
  setText(note, `${m.delivery || ""}, ${kw.length} blocks from ${clock(m.schedule_start, false)}`);
  const first = m.schedule_start / BLOCK_S;
  const delivered = kw.map((_, i) => {
    const acc = S.delivered.get(Math.round(first) + i);
    return acc ? acc.sum / acc.n : null;
  });
  const [y0, y1] = range(kw.concat(delivered), 0, 0, 0.1);
  const p = plot(canvas, 0, kw.length, y0, y1);
  const { ctx, area, sx, sy } = p;
  yAxis(p, y0, y1, 0, "kW");
  const now = (serverNow() - m.schedule_start) / BLOCK_S;
  if (now >= 0 && now < kw.length) {
    ctx.fillStyle = css("--now");
    ctx.fillRect(sx(Math.floor(now)), area.top, sx(1) - sx(0), area.bottom - area.top);
  }
  const bw = Math.max(1, sx(1) - sx(0));
  ctx.fillStyle = css("--sched");
  kw.forEach((v, i) => {
    const a = sy(Math.max(v, 0));
    ctx.fillRect(sx(i) + bw * 0.1, a, bw * 0.8, Math.max(1, Math.abs(sy(v) - sy(0))));
  });
  ctx.fillStyle = css("--power");
  delivered.forEach((v, i) => {
    if (v === null) return;
    const a = sy(Math.max(v, 0));
    ctx.fillRect(sx(i) + bw * 0.3, a, bw * 0.4, Math.max(1, Math.abs(sy(v) - sy(0))));
  });
  ctx.strokeStyle = css("--grid-strong");
  ctx.beginPath();
  ctx.moveTo(area.left, Math.round(sy(0)) + 0.5);
  ctx.lineTo(area.right, Math.round(sy(0)) + 0.5);
  ctx.stroke();
  ctx.fillStyle = css("--muted");
  ctx.textBaseline = "top";
  const labels = Math.max(1, Math.ceil(kw.length / 8));
  for (let i = 0; i < kw.length; i += labels) {
    ctx.textAlign = "left";
    ctx.fillText(clock(m.schedule_start + i * BLOCK_S, false), sx(i), area.bottom + 4);
  }
}

// ---------------------------------------------------------------- start

function wire() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("target-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("target-kw").value;
    const kw = Number(v);
    if (v.trim() === "" || !Number.isFinite(kw)) {
      showOutcome("campus target: enter kW (discharge positive)", false);
      return;
    }
    campusTarget(kw);
  });
  $("target-clear").addEventListener("click", () => campusTarget(null));
  $("market-run").addEventListener("click", marketRun);
  window.addEventListener("resize", () => { S.sizesDirty = true; requestDraw(); });
  boot();
}

wire();
