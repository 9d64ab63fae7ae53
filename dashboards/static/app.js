// The ward page a charge nurse keeps open all shift: every visible patient as a tile, in the
// server's order (GET /api/v1/ward: NEWS2 tier, total, oldest stale vital - never re-sorted
// here), and the open alerts beside them with Acknowledge and Snooze.
//
// Updates: alerts and "new readings" come through the alert stream (EventSource on
// /api/v1/alerts/stream); while it is absent or failing the page polls both every 5 s. The
// ward is also polled every 10 s as a floor, and follows new readings at most every 3 s. Sparklines (3 h, one bucket per 3 min) are the
// costly part - one request each, each recorded in the access trail - so they are fetched
// only for tiles on screen, at most SPARK_PARALLEL at once, and each at most every 5 min.
//
// CSP: this is a module of this origin; nothing here writes inline style or script.

import { sparkline } from "./charts.js";

const TIERS = {
  routine: { label: "Routine", rank: 0 },
  low: { label: "Low", rank: 1 },
  "low-medium": { label: "Single 3", rank: 2 },
  medium: { label: "Urgent", rank: 3 },
  high: { label: "Emergency", rank: 4 },
};
// The tile's vitals in the NEWS2 chart's order; `low`-`high` is the range scoring 0 (scale 1).
const VITALS = [
  { codes: ["9279-1"], label: "Resp", parameter: "respiration_rate", low: 12, high: 20 },
  { codes: ["59408-5"], label: "SpO₂", parameter: "spo2", low: 96, high: 100 },
  { codes: ["8480-6", "8462-4"], label: "BP", parameter: "systolic_bp", low: 111, high: 219 },
  { codes: ["8867-4"], label: "Pulse", parameter: "pulse", low: 51, high: 90 },
  { codes: ["8310-5"], label: "Temp", parameter: "temperature", low: 36.1, high: 38.0,
    digits: 1 },
  { codes: ["2339-0"], label: "Glucose" },
];
const UNITS = { "/min": "/min", "%": "%", Cel: "°C", "mm[Hg]": "mmHg", "mg/dL": "mg/dL" };
const PARAMETERS = {
  respiration_rate: "Resp", spo2: "SpO₂", air_or_oxygen: "Air/O₂", systolic_bp: "BP",
  pulse: "Pulse", consciousness: "ACVPU", temperature: "Temp",
};
const WARD_FLOOR_MS = 10_000;
// "New readings" nudges come up to once a second; the tiles follow at most every 3 s. A summary
// of 200 patients costs the server about 20 ms (docs/benchmarks.md, bench ward), and alerts do
// not wait for it: they come through the stream at once.
const WARD_NUDGE_MS = 3_000;
const POLL_MS = 5_000;
const SPARK_WINDOW_MS = 3 * 3600_000;
const SPARK_BUCKET_S = 180;
const SPARK_REFRESH_MS = 5 * 60_000;
const SPARK_PARALLEL = 3;
const FRESH_MS = 60_000;

const $ = (id) => document.getElementById(id);
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit",
                                                   hourCycle: "h23" });

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

/** "42 s", "3 min", "2 h 5 min", "3 d". */
export function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) {
    const m = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ""}`;
  }
  return `${Math.floor(s / 86400)} d`;
}

// --- the API ---------------------------------------------------------------------------------

function toSignIn() {
  window.location.assign("/sign-in?next=" + encodeURIComponent(window.location.pathname));
}

async function json(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (r.status === 401) {
    toSignIn();
    throw new Error("not signed in");
  }
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// A session's POSTs carry its CSRF token, which GET /auth/session gives (showSession); a
// caller with a bearer token has no session and needs none.
let csrfToken = "";

async function post(url, body) {
  await sessionReady; // the CSRF token
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body ?? {}),
  });
  if (r.status === 401) toSignIn();
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.detail || `the server answered ${r.status}`);
  return answer;
}

// Who is signed in, and the CSRF token the sign-out form posts (a session's, not a token's).
async function showSession() {
  const r = await fetch("/auth/session", { credentials: "same-origin" });
  if (!r.ok) return;
  const session = await r.json();
  csrfToken = session.csrf_token || "";
  const form = $("sign-out");
  form.querySelector("input[name=csrf_token]").value = session.csrf_token;
  $("who").textContent = `${session.user} (${session.roles.join(", ")})`;
  form.hidden = false;
}

// --- the ward --------------------------------------------------------------------------------

const tiles = new Map(); // patient_id -> {li, parts, vitals}
let serverOffsetMs = 0; // the server's clock minus ours, from the ward's time_ms
const serverNow = () => Date.now() + serverOffsetMs;

function tierOf(patient, ward) {
  const key = patient.news2.tier;
  const info = (ward.tiers && ward.tiers[key]) || patient.news2; // today's answer: per patient
  return { key, ...(TIERS[key] ?? TIERS.routine), response: info.response ?? "" };
}

function staleNames(news2) {
  return (news2.stale ?? []).map((s) => (typeof s === "string" ? s : s.parameter));
}

function documentedText(d) {
  if (d.kind === "consciousness") return `ACVPU ${d.value}`;
  if (d.kind === "air_or_oxygen") {
    if (!d.value) return "Air";
    return d.oxygen_flow_l_min ? `O₂ ${d.oxygen_flow_l_min} L/min` : "O₂";
  }
  if (d.kind === "spo2_scale") return `SpO₂ scale ${d.value}`;
  return `${d.kind} ${d.value}`;
}

function buildTile(patientId) {
  const li = el("li", "tile");
  li.dataset.patient = patientId;
  // the patient's name is the link; its ::after stretches over the tile (a tap anywhere opens
  // it) while the vitals stay plain content a screen reader reads in order
  const link = el("a", "tile-link", patientId);
  link.href = `/ward/patients/${encodeURIComponent(patientId)}`;
  const summary = el("span", "visually-hidden");
  link.append(summary);
  const head = el("div", "tile-head");
  const name = el("h3", "patient-name");
  name.append(link);
  const score = el("div", "score");
  const total = el("span", "score-total");
  const tier = el("span", "score-tier");
  score.append(total, tier);
  const flags = el("div", "flags");
  head.append(name, flags, score);
  const rows = el("ul", "vitals");
  const vitals = new Map();
  for (const spec of VITALS) {
    const row = el("li", "vital");
    row.dataset.code = spec.codes[0];
    const label = el("span", "vital-label", spec.label);
    const value = el("span", "vital-value");
    const points = el("span", "points");
    points.setAttribute("role", "img");
    const spark = el("span", "spark");
    spark.setAttribute("aria-hidden", "true");
    const when = el("span", "vital-age");
    row.append(label, value, points, spark, when);
    rows.append(row);
    vitals.set(spec.codes[0], { spec, row, value, points, spark, when, chart: null, shown: null });
  }
  const notes = el("p", "tile-notes");
  li.append(head, rows, notes);
  return { li, summary, total, tier, flags, notes, vitals, visible: false };
}

function renderVital(entry, patient, news2) {
  const { spec, row, value, points, when } = entry;
  const found = spec.codes.map((c) => patient.vitals.find((v) => v.code === c));
  const main = found[0];
  entry.shown = main ?? null;
  row.hidden = !main && !spec.parameter; // glucose only when measured
  row.classList.toggle("missing", !main);
  if (!main) {
    value.replaceChildren(el("span", "none", "—"));
    points.textContent = "";
    when.textContent = "not measured";
    row.dataset.stale = "false";
    return;
  }
  const number = found
    .filter(Boolean)
    .map((v) => (spec.digits ? v.value.toFixed(spec.digits) : `${Math.round(v.value * 10) / 10}`))
    .join("/");
  const unit = UNITS[main.unit] ?? main.unit;
  value.replaceChildren(el("span", "number", number), el("span", "unit", unit));
  value.dataset.entryIndex = main.entry_index;
  value.title = `${main.name}: reading ${main.entry_index}, ${clock.format(new Date(main.time_ms))}`;
  const sub = (news2.sub_scores ?? []).find((s) => s.parameter === spec.parameter);
  points.textContent = sub && sub.points > 0 ? `${sub.points}` : "";
  points.dataset.points = sub ? `${sub.points}` : "0";
  if (sub && sub.points > 0) points.setAttribute("aria-label", `scores ${sub.points}`);
  else points.removeAttribute("aria-label");
  when.dataset.time = main.time_ms;
  when.dataset.staleAfter = main.stale_after_s ?? "";
  row.dataset.stale = main.stale ? "true" : "false";
  tickVital(entry);
}

// Ages move on between refreshes; a value past its limit greys here before the server says so.
function tickVital(entry) {
  const { row, when } = entry;
  if (!when.dataset.time) return;
  const seconds = (serverNow() - Number(when.dataset.time)) / 1000;
  const limit = Number(when.dataset.staleAfter);
  const stale = row.dataset.stale === "true" || (limit > 0 && seconds > limit);
  row.classList.toggle("stale", stale);
  when.replaceChildren();
  if (stale) when.append(el("span", "stale-mark", "stale"), " ");
  when.append(age(seconds));
}

function renderTile(tile, patient, ward) {
  const { news2 } = patient;
  const tier = tierOf(patient, ward);
  tile.li.dataset.tier = tier.key;
  tile.li.dataset.partial = news2.partial ? "true" : "false";
  tile.li.dataset.redFlag = news2.red_flag ? "true" : "false";
  tile.total.textContent = news2.total;
  tile.tier.textContent = tier.label;
  const flags = [];
  if (news2.red_flag) {
    const flag = el("span", "badge red-flag", "⚑ Red flag");
    flag.title = "A single parameter scores 3";
    flags.push(flag);
  }
  const missing = [...(news2.missing ?? []), ...staleNames(news2)];
  if (news2.partial) {
    const partial = el("span", "badge partial", "Partial");
    partial.title = `Not scored: ${missing.map((p) => PARAMETERS[p] ?? p).join(", ")}`;
    flags.push(partial);
  }
  tile.flags.replaceChildren(...flags);
  const stale = staleNames(news2);
  tile.summary.textContent =
    `NEWS2 ${news2.total}${news2.partial ? " partial" : ""}, ${tier.label}` +
    `${news2.red_flag ? ", red flag" : ""}${tier.response ? `. ${tier.response}` : ""}` +
    `${stale.length ? `. Stale: ${stale.map((p) => PARAMETERS[p] ?? p).join(", ")}` : ""}`;
  for (const entry of tile.vitals.values()) renderVital(entry, patient, news2);
  const notes = (patient.documented ?? [])
    .filter((d) => d.kind !== "spo2_scale" || d.value !== 1)
    .map((d) => el("span", "documented", documentedText(d)));
  const unrecorded = (news2.missing ?? []).filter((p) => !VITALS.some((v) => v.parameter === p));
  if (unrecorded.length) {
    notes.push(el("span", "unrecorded",
                  `Not recorded: ${unrecorded.map((p) => PARAMETERS[p] ?? p).join(", ")}`));
  }
  tile.notes.replaceChildren(...notes);
  tile.notes.hidden = !notes.length;
}

function renderSummary(patients) {
  const counts = new Map();
  for (const p of patients) counts.set(p.news2.tier, (counts.get(p.news2.tier) ?? 0) + 1);
  const parts = Object.entries(TIERS)
    .reverse()
    .filter(([key]) => counts.get(key))
    .map(([key, info]) => {
      const chip = el("span", "summary-chip", `${counts.get(key)} ${info.label.toLowerCase()}`);
      chip.dataset.tier = key;
      return chip;
    });
  $("tier-summary").replaceChildren(...parts);
  $("patient-count").textContent = patients.length ? `${patients.length}` : "";
}

async function refreshWard() {
  try {
    const ward = await json("/api/v1/ward");
    serverOffsetMs = ward.time_ms - Date.now();
    const list = $("patients");
    const seen = new Set();
    const ordered = ward.patients.map((patient) => {
      let tile = tiles.get(patient.patient_id);
      if (!tile) {
        tile = buildTile(patient.patient_id);
        tiles.set(patient.patient_id, tile);
        visibility.observe(tile.li);
      }
      renderTile(tile, patient, ward);
      seen.add(patient.patient_id);
      return tile.li;
    });
    for (const [id, tile] of tiles) {
      if (!seen.has(id)) {
        visibility.unobserve(tile.li);
        tiles.delete(id);
      }
    }
    const inPlace = ordered.length === list.children.length &&
      ordered.every((li, i) => list.children[i] === li);
    if (ordered.length && !inPlace) list.replaceChildren(...ordered); // focus survives a no-op
    else if (!ordered.length) list.replaceChildren(el("li", "empty", "No patients in your care team have readings."));
    renderSummary(ward.patients);
    $("ward-error").hidden = true;
    scheduleSparklines();
  } catch (err) {
    $("ward-error").textContent = `The ward could not be refreshed (${err.message}).`;
    $("ward-error").hidden = false;
  }
  refreshLedger();
}

async function refreshLedger() {
  try {
    const ledger = await json("/api/v1/ledger");
    $("ledger").textContent =
      `ledger: ${ledger.tree_size} entries · ${ledger.sealed_size} sealed · ${ledger.blocks} blocks`;
  } catch (err) {
    $("ledger").textContent = `ledger: unreachable (${err.message})`;
  }
}

// --- sparklines: lazily, cached, a few at a time ---------------------------------------------

const sparkCache = new Map(); // "patient|code" -> {fetched, points}
const sparkQueue = [];
let sparkRunning = 0;

const visibility = new IntersectionObserver((seen) => {
  for (const e of seen) {
    const tile = tiles.get(e.target.dataset.patient);
    if (tile) tile.visible = e.isIntersecting;
  }
  scheduleSparklines();
}, { rootMargin: "200px" });

function scheduleSparklines() {
  const now = Date.now();
  for (const [patientId, tile] of tiles) {
    if (!tile.visible) continue;
    for (const [code, entry] of tile.vitals) {
      if (!entry.shown) continue;
      const key = `${patientId}|${code}`;
      const cached = sparkCache.get(key);
      if (cached && cached.points !== entry.drawn) drawSpark(entry, cached.points);
      if (cached && now - cached.fetched < SPARK_REFRESH_MS) continue;
      if (sparkQueue.some((q) => q.key === key)) continue;
      sparkCache.set(key, { fetched: now, points: cached?.points ?? null }); // not asked twice
      sparkQueue.push({ key, patientId, code });
    }
  }
  pumpSparklines();
}

function pumpSparklines() {
  while (sparkRunning < SPARK_PARALLEL && sparkQueue.length) {
    const job = sparkQueue.shift();
    sparkRunning++;
    const end = serverNow();
    const url = `/api/v1/patients/${encodeURIComponent(job.patientId)}/vitals/${job.code}` +
      `?start_ms=${end - SPARK_WINDOW_MS}&end_ms=${end}&bucket_s=${SPARK_BUCKET_S}`;
    json(url)
      .then((series) => {
        sparkCache.set(job.key, { fetched: Date.now(), points: series.points ?? [] });
        const entry = tiles.get(job.patientId)?.vitals.get(job.code);
        if (entry) drawSpark(entry, series.points ?? []);
      })
      .catch(() => {}) // the value and its age still show; the next round asks again
      .finally(() => {
        sparkRunning--;
        pumpSparklines();
      });
  }
}

function drawSpark(entry, points) {
  entry.drawn = points;
  if (entry.chart) entry.chart.destroy();
  entry.chart = null;
  entry.spark.replaceChildren();
  if (!points || !points.length) return;
  const { low = null, high = null } = entry.spec;
  const gap_ms = 3 * SPARK_BUCKET_S * 1000;
  entry.chart = sparkline(entry.spark, points, { low, high, height: 26, gap_ms });
}

// --- alerts ----------------------------------------------------------------------------------

const alerts = new Map(); // id -> AlertOut
const freshUntil = new Map(); // id -> ms: newly raised urgent alerts stand out for a while
let alertsLoaded = false;

function alertOrder(a, b) {
  const rank = (x) => TIERS[x.severity]?.rank ?? 0;
  const key = (x) => `${x.patient_id} ${x.kind} ${x.parameter} ${x.id}`;
  return rank(b) - rank(a) || a.raised_ms - b.raised_ms || (key(a) < key(b) ? -1 : 1);
}

function announce(alert) {
  if ((TIERS[alert.severity]?.rank ?? 0) < TIERS.medium.rank) return;
  freshUntil.set(alert.id, Date.now() + FRESH_MS);
  $("announce").textContent =
    `New ${TIERS[alert.severity].label.toLowerCase()} alert for ${alert.patient_id}: ` +
    alert.message;
}

function stateText(a) {
  if (a.state === "acknowledged" && a.acknowledged_by) {
    return `Acknowledged by ${a.acknowledged_by} at ${clock.format(new Date(a.acknowledged_ms))}`;
  }
  if (a.state === "snoozed" && a.snoozed_by) {
    return `Snoozed by ${a.snoozed_by} until ${clock.format(new Date(a.snoozed_until_ms))}`;
  }
  return "";
}

function alertItem(a) {
  const li = el("li", "alert");
  li.dataset.alert = a.id;
  li.dataset.severity = a.severity;
  li.dataset.state = a.state;
  li.classList.toggle("fresh", (freshUntil.get(a.id) ?? 0) > Date.now() && a.state === "raised");
  const top = el("div", "alert-top");
  const chip = el("span", "sev-chip", TIERS[a.severity]?.label ?? a.severity);
  chip.dataset.tier = a.severity;
  const who = el("a", "alert-patient", a.patient_id);
  who.href = `/ward/patients/${encodeURIComponent(a.patient_id)}`;
  const since = el("time", "alert-age", age((serverNow() - a.raised_ms) / 1000));
  since.dateTime = new Date(a.raised_ms).toISOString();
  since.dataset.time = a.raised_ms;
  since.title = `raised ${clock.format(new Date(a.raised_ms))}`;
  top.append(chip, who, since);
  li.append(top, el("p", "alert-message", a.message));
  const state = stateText(a);
  if (state) li.append(el("p", "alert-state", state));
  if (a.state !== "resolved") li.append(alertActions(a));
  return li;
}

function alertActions(a) {
  const actions = el("div", "alert-actions");
  const base = `/api/v1/patients/${encodeURIComponent(a.patient_id)}/alerts/${a.id}`;
  const what = `${a.patient_id}, ${a.message}`;
  if (a.state !== "acknowledged") {
    const ack = el("button", "ack", "Acknowledge");
    ack.type = "button";
    ack.setAttribute("aria-label", `Acknowledge: ${what}`);
    ack.addEventListener("click", () => act(actions, `${base}/acknowledge`, {}));
    actions.append(ack);
  }
  if (a.state !== "snoozed") {
    const group = el("span", "snooze");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", `Snooze: ${what}`);
    group.append(el("span", "snooze-label", "Snooze"));
    for (const minutes of [15, 30, 60]) {
      const b = el("button", "snooze-for", `${minutes}′`);
      b.type = "button";
      b.setAttribute("aria-label", `Snooze ${minutes} minutes`);
      b.addEventListener("click", () => act(actions, `${base}/snooze`, { minutes }));
      group.append(b);
    }
    actions.append(group);
  }
  return actions;
}

async function act(actions, url, body) {
  for (const b of actions.querySelectorAll("button")) b.disabled = true;
  try {
    const updated = await post(url, body);
    applyAlert(updated);
    $("alert-error").hidden = true;
  } catch (err) {
    $("alert-error").textContent = `Not done: ${err.message}`;
    $("alert-error").hidden = false;
    for (const b of actions.querySelectorAll("button")) b.disabled = false;
  }
}

// Stream changes that came while a GET /api/v1/alerts was out: one list per load in flight
// (the first load and the stream's opening one may overlap).
const arrivedWhileLoading = new Set();

/** A changed alert: from our own action, or the stream's `event` (raised, escalated...). */
function applyAlert(alert, event) {
  if (event) for (const arrived of arrivedWhileLoading) arrived.push(alert);
  if (alert.state === "resolved") alerts.delete(alert.id);
  else alerts.set(alert.id, alert);
  const calling = ["raised", "escalated", "snooze-expired"].includes(event);
  if (calling && alert.state === "raised") announce(alert);
  renderAlerts();
}

// A phone shows the first few of each list until asked for all: the tiles stay in reach.
const FEW_ALERTS = 3;

let alertsDrawn = "";

function renderAlerts() {
  const sorted = [...alerts.values()].sort(alertOrder);
  const expanded = $("alerts-more").getAttribute("aria-expanded") === "true";
  const drawn = JSON.stringify([expanded, sorted, [...freshUntil.keys()]]);
  if (drawn === alertsDrawn) return; // a poll that changed nothing leaves keyboard focus alone
  alertsDrawn = drawn;
  const focused = document.activeElement?.closest?.("[data-alert]");
  const focusKey = focused && [focused.dataset.alert, document.activeElement.className];
  let extra = 0;
  for (const category of ["clinical", "technical"]) {
    const items = sorted.filter((a) => a.category === category).map(alertItem);
    for (const item of items.slice(FEW_ALERTS)) item.classList.add("extra");
    extra += Math.max(0, items.length - FEW_ALERTS);
    const list = $(`alerts-${category}`);
    if (items.length) list.replaceChildren(...items);
    else list.replaceChildren(el("li", "none", `No open ${category} alerts.`));
  }
  const more = $("alerts-more");
  more.hidden = !extra;
  more.textContent = expanded ? "Show fewer alerts" : `Show all ${sorted.length} alerts`;
  const calling = sorted.filter((a) => a.state === "raised").length;
  $("alert-count").textContent = sorted.length ? `${calling} calling · ${sorted.length} open` : "";
  if (focusKey) {
    const again = document.querySelector(`[data-alert="${focusKey[0]}"]`);
    const button = again && [...again.querySelectorAll("button")]
      .find((b) => b.className === focusKey[1]);
    (button ?? again?.querySelector("button"))?.focus();
  }
}

async function loadAlerts() {
  const arrived = [];
  arrivedWhileLoading.add(arrived);
  try {
    const list = await json("/api/v1/alerts");
    const before = new Set(alerts.keys());
    alerts.clear();
    for (const a of list) {
      alerts.set(a.id, a);
      if (alertsLoaded && !before.has(a.id) && a.state === "raised") announce(a);
    }
    // a change the stream brought while the list was on its way may be newer than the list
    for (const a of arrived) {
      const listed = alerts.get(a.id);
      if (listed && listed.updated_ms > a.updated_ms) continue;
      if (a.state === "resolved") alerts.delete(a.id);
      else alerts.set(a.id, a);
    }
    alertsLoaded = true;
    renderAlerts();
    $("alert-error").hidden = true;
  } catch (err) {
    $("alert-error").textContent = `Alerts could not be loaded (${err.message}).`;
    $("alert-error").hidden = false;
  } finally {
    arrivedWhileLoading.delete(arrived);
  }
}

// --- live updates ----------------------------------------------------------------------------

let pollTimer = null;
let wardQueued = false;

function showLive(state, text) {
  $("live").dataset.state = state;
  $("live").textContent = text;
}

function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(() => {
    loadAlerts();
    refreshWard();
  }, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

let wardRefreshedAt = 0;

function wardSoon() {
  if (wardQueued) return;
  wardQueued = true;
  const wait = Math.max(1000, wardRefreshedAt + WARD_NUDGE_MS - Date.now());
  setTimeout(() => {
    wardQueued = false;
    wardRefreshedAt = Date.now();
    refreshWard();
  }, wait);
}

function connect() {
  if (!("EventSource" in window)) {
    showLive("polling", "updates every 5 s");
    startPolling();
    return;
  }
  const stream = new EventSource("/api/v1/alerts/stream", { withCredentials: true });
  stream.onopen = () => {
    stopPolling();
    showLive("live", "live");
    loadAlerts();
    refreshWard();
  };
  stream.addEventListener("alert", (e) => {
    const change = JSON.parse(e.data);
    applyAlert(change.alert, change.event);
  });
  stream.addEventListener("ward", wardSoon);
  stream.onerror = () => {
    startPolling();
    if (stream.readyState === EventSource.CLOSED) {
      // no stream here (404) or refused: poll, and try the stream again later
      showLive("polling", "updates every 5 s");
      setTimeout(connect, 60_000);
    } else {
      showLive("reconnecting", "reconnecting…");
    }
  };
}

function tick() {
  for (const tile of tiles.values()) for (const entry of tile.vitals.values()) tickVital(entry);
  for (const t of document.querySelectorAll(".alert-age")) {
    t.textContent = age((serverNow() - Number(t.dataset.time)) / 1000);
  }
  for (const li of document.querySelectorAll(".alert.fresh")) {
    if ((freshUntil.get(li.dataset.alert) ?? 0) <= Date.now()) li.classList.remove("fresh");
  }
}

$("alerts-more").addEventListener("click", (e) => {
  const expanded = e.currentTarget.getAttribute("aria-expanded") !== "true";
  e.currentTarget.setAttribute("aria-expanded", `${expanded}`);
  document.querySelector(".alerts").classList.toggle("expanded", expanded);
  renderAlerts();
});

const sessionReady = showSession().catch(() => {});
loadAlerts();
refreshWard();
connect();
setInterval(() => pollTimer || refreshWard(), WARD_FLOOR_MS); // polling covers it otherwise
setInterval(scheduleSparklines, 30_000);
setInterval(tick, 1000);
