// The clinician's page of one patient (/ward/patients/{id}): NEWS2 now and over time, a trend
// chart per vital, the readings with a proof badge each, the alerts, the device, and a form to
// document consciousness, oxygen and the SpO2 scale. The HTML holds no data: every value comes
// through the API's gates, with the session cookie (a bearer token in tests).
//
// Badges: "verified" only once this browser has checked the reading's proof bundle itself
// (verify.js: the checks and verdicts of `vitaltrail verify`) against the ledger key pinned in
// localStorage at first use (GET /api/v1/ledger/keys) and the witnesses' keys and quorum;
// "pending" while the API has no bundle yet (409: not sealed or not witnessed to quorum);
// "failed" naming the failing check. A ledger key that differs from the pinned one fails every
// badge: "ledger key changed"; so do witnesses weakened since they were pinned (a pinned key
// gone, a lower quorum): "witnesses changed". Readings are checked lazily, those in view first, a few at a
// time; a final verdict is kept, a pending one is asked again on the next refresh.

import { trendChart } from "./charts.js";
import { verifyBundle } from "./verify.js";

const PATIENT = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const BASE = `/api/v1/patients/${encodeURIComponent(PATIENT)}`;
const PIN = "vitaltrail.ledger-key";
const WITNESS_PIN = "vitaltrail.witnesses"; // {keys, quorum}: the witnesses first seen
const REFRESH_MS = 15_000;
const VERIFY_AT_ONCE = 3;
const READINGS = 120; // observations asked for: about twenty readings of five vitals
const COLLAPSED_ROWS = 8; // readings a phone shows before "Show all"
const WINDOWS = {
  "1h": { span: 3_600_000, bucket_s: 60 },
  "24h": { span: 86_400_000, bucket_s: 900 },
  "7d": { span: 7 * 86_400_000, bucket_s: 3600 },
};
const UNITS = { "/min": "/min", "%": "%", Cel: "°C", "mm[Hg]": "mmHg", "mg/dL": "mg/dL" };
// NEWS2 chart 1 (RCP 2017) as chart bands: {low, high] scores `score`.
const b = (low, high, score) => ({ low, high, score });
const SPO2_1 = [b(null, 91, 3), b(91, 93, 2), b(93, 95, 1), b(95, null, 0)];
const SPO2_2_AIR = [b(null, 83, 3), b(83, 85, 2), b(85, 87, 1), b(87, null, 0)];
const SPO2_2_O2 = [...SPO2_2_AIR.slice(0, 3), b(87, 92, 0), b(92, 94, 1), b(94, 96, 2),
                   b(96, null, 3)];
const VITALS = [
  { code: "8867-4", name: "Heart rate", digits: 0,
    bands: [b(null, 40, 3), b(40, 50, 1), b(50, 90, 0), b(90, 110, 1), b(110, 130, 2),
            b(130, null, 3)] },
  { code: "59408-5", name: "SpO₂", digits: 0, bands: SPO2_1 },
  { code: "9279-1", name: "Respiration rate", digits: 0,
    bands: [b(null, 8, 3), b(8, 11, 1), b(11, 20, 0), b(20, 24, 2), b(24, null, 3)] },
  { code: "8480-6", name: "Systolic BP", digits: 0,
    bands: [b(null, 90, 3), b(90, 100, 2), b(100, 110, 1), b(110, 219, 0), b(219, null, 3)] },
  { code: "8462-4", name: "Diastolic BP", digits: 0, bands: [] },
  { code: "8310-5", name: "Temperature", digits: 1,
    bands: [b(null, 35, 3), b(35, 36, 1), b(36, 38, 0), b(38, 39, 1), b(39, null, 2)] },
  { code: "2339-0", name: "Glucose", digits: 0, bands: [] },
];
const VITAL = Object.fromEntries(VITALS.map((v) => [v.code, v]));
const NEWS2_BANDS = [b(null, 4.5, 0), b(4.5, 6.5, 2), b(6.5, null, 3)];
const PARAMETERS = {
  respiration_rate: "respiration rate", spo2: "SpO₂", air_or_oxygen: "air or oxygen",
  systolic_bp: "systolic BP", pulse: "pulse", consciousness: "consciousness",
  temperature: "temperature",
};
const TIERS = {
  routine: "Routine", low: "Low", "low-medium": "Low-medium", medium: "Urgent", high: "Emergency",
};
const ACVPU = { A: "Alert", C: "New confusion", V: "Voice", P: "Pain", U: "Unresponsive" };
const KINDS = { consciousness: "Consciousness", air_or_oxygen: "Breathing", spo2_scale: "SpO₂ scale" };

const $ = (id) => document.getElementById(id);
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit",
                                                         second: "2-digit", hourCycle: "h23" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hourCycle: "h23" });

const state = {
  window: "1h",
  latest: [],
  news2: null,
  documented: null,
  keys: null, // {ledgerKey, witnessKeys, quorum} | {changed: what} | {missing: reason}
  charts: [],
  drawnAt: 0, // when the trends were drawn, and the newest reading they had
  drawnNewest: null,
};

// --- small helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

function when(ms) {
  const date = new Date(ms);
  return new Date().toDateString() === date.toDateString()
    ? timeFormat.format(date) : dateTimeFormat.format(date);
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}

const unit = (u) => UNITS[u] ?? u;

function value(code, v) {
  const digits = VITAL[code]?.digits ?? 1;
  return Number(v).toFixed(digits);
}

function notice(text, kind = "error") {
  const box = $("notice");
  box.hidden = !text;
  box.textContent = text || "";
  box.className = `notice ${kind}`;
}

// --- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && typeof body.detail === "string" && body.detail) || `the server answered ${status}`);
    this.status = status;
  }
}

function toSignIn() {
  location.assign("/sign-in?next=" + encodeURIComponent(location.pathname));
}

async function request(path, init = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...init });
  if (response.status === 401) {
    toSignIn();
    throw new ApiError(401, null);
  }
  return response;
}

async function json(path) {
  const response = await request(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

let session = null;
async function currentSession() {
  if (session === null) {
    const r = await fetch("/auth/session", { credentials: "same-origin" });
    session = r.ok ? await r.json() : {};
  }
  return session;
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const csrf = (await currentSession()).csrf_token;
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const response = await request(path, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

// --- the ledger key, pinned at first use -------------------------------------------------------

async function fingerprint(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).slice(0, 8)].map((x) => x.toString(16).padStart(2, "0"))
    .join("");
}

/** The witnesses may only get stricter: a pinned witness key gone, or a quorum lower than the
 * pinned one, would let a server that shows a split view pass (a quorum of 0 checks no one).
 * Added witnesses and a higher quorum are pinned from now on. */
function witnessesWeakened(answer) {
  const now = { keys: [...answer.witness_keys].sort(), quorum: answer.quorum };
  let before = null;
  try {
    before = JSON.parse(localStorage.getItem(WITNESS_PIN) ?? "null");
  } catch {
    before = null; // not ours: pinned again below
  }
  if (before && Array.isArray(before.keys) && Number.isInteger(before.quorum)) {
    if (before.keys.some((k) => !now.keys.includes(k)) || now.quorum < before.quorum) return true;
  }
  localStorage.setItem(WITNESS_PIN, JSON.stringify(now));
  return false;
}

async function loadKeys() {
  let answer;
  try {
    answer = await json("/api/v1/ledger/keys");
  } catch (error) {
    state.keys = { missing: error.message };
    return;
  }
  const pinned = localStorage.getItem(PIN);
  if (pinned === null) localStorage.setItem(PIN, answer.ledger_key);
  const print = await fingerprint(pinned ?? answer.ledger_key);
  if (pinned !== null && pinned !== answer.ledger_key) {
    state.keys = { changed: "ledger key" };
    $("key-pin").textContent = `ledger key changed (pinned ${print})`;
    $("key-pin").className = "small key-changed";
    return;
  }
  if (witnessesWeakened(answer)) {
    state.keys = { changed: "witnesses" };
    $("key-pin").textContent = "witnesses changed: a pinned witness is gone or the quorum fell";
    $("key-pin").className = "small key-changed";
    return;
  }
  state.keys = {
    ledgerKey: answer.ledger_key, witnessKeys: answer.witness_keys, quorum: answer.quorum,
  };
  const name = answer.ledger_key.split("+")[0];
  $("key-pin").textContent = `ledger key ${name} · ${print}`;
  $("key-pin").title = "the SHA-256 of the pinned ledger key, first 16 hex digits:"
    + " docs/operations.md says how to check it";
}

// --- proof badges ------------------------------------------------------------------------------

const verdicts = new Map(); // entry index -> final verdict {status, failed, reason}
const pending = new Map(); // entry index -> the last pending verdict: shown, and asked again
const asked = new Map(); // entry index -> promise of a verdict under way
const queue = [];
let running = 0;

async function verdictOf(index) {
  if (state.keys?.changed) {
    const what = state.keys.changed;
    return { status: "failed", failed: what, reason: `${what} changed` };
  }
  if (!state.keys || state.keys.missing) {
    return { status: "pending", failed: null, reason: "the ledger's key is not known yet" };
  }
  const response = await request(`/api/v1/readings/${index}/proof`);
  if (response.status === 409) return verifyBundle(null, state.keys);
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    return { status: "failed", failed: "proof bundle",
             reason: (body && body.detail) || `the server answered ${response.status}` };
  }
  return verifyBundle(await response.text(), state.keys);
}

function pump() {
  while (running < VERIFY_AT_ONCE && queue.length) {
    const { index, resolve } = queue.shift();
    running += 1;
    verdictOf(index)
      .catch((error) => ({ status: "pending", failed: null, reason: String(error.message || error) }))
      .then((verdict) => {
        if (verdict.status === "pending") pending.set(index, verdict);
        else {
          verdicts.set(index, verdict);
          pending.delete(index);
        }
        asked.delete(index);
        resolve(verdict);
      })
      .finally(() => {
        running -= 1;
        pump();
      });
  }
}

function verify(index) {
  if (verdicts.has(index)) return Promise.resolve(verdicts.get(index));
  if (!asked.has(index)) {
    asked.set(index, new Promise((resolve) => {
      queue.push({ index, resolve });
      pump();
    }));
  }
  return asked.get(index);
}

const LABELS = { verified: "✓ verified", pending: "◷ pending", failed: "✗ failed" };

function showVerdict(badge, verdict) {
  badge.className = `badge ${verdict.status}`;
  badge.dataset.status = verdict.status;
  badge.textContent = verdict.status === "failed"
    ? `${LABELS.failed}: ${verdict.failed || "check"}` : LABELS[verdict.status];
  badge.title = verdict.reason || "every check passed";
}

function badge(index) {
  const node = el("span", { class: "badge checking", text: "checking…", "data-index": index });
  const known = verdicts.get(index) ?? pending.get(index);
  if (known) showVerdict(node, known);
  if (!verdicts.has(index)) watcher.observe(node);
  return node;
}

const watcher = new IntersectionObserver((seen) => {
  for (const entry of seen) {
    if (!entry.isIntersecting) continue;
    watcher.unobserve(entry.target);
    const index = Number(entry.target.dataset.index);
    verify(index).then((verdict) => {
      for (const node of document.querySelectorAll(`.badge[data-index="${index}"]`)) {
        showVerdict(node, verdict);
      }
    });
  }
}, { rootMargin: "200px" });

// --- NEWS2 now -------------------------------------------------------------------------------

function renderNews2(news) {
  const box = $("news2");
  box.className = `news2 tier-${news.tier}`;
  $("news2-total").textContent = news.partial ? `${news.total}+` : String(news.total);
  $("news2-total").title = news.partial ? "partial: at least this; some parameters unscored" : "";
  $("news2-response").textContent = news.response;
  $("news2-monitoring").textContent = `${news.monitoring} · clinical risk ${news.clinical_risk.toLowerCase()}`;
  const flags = [];
  if (news.red_flag) flags.push(el("span", { class: "flag red", text: "Red flag: a single 3" }));
  if (news.spo2_scale === 2) flags.push(el("span", { class: "flag", text: "SpO₂ scale 2" }));
  const missing = news.missing.map((p) => PARAMETERS[p] ?? p);
  const stale = news.stale.map((s) => PARAMETERS[s.parameter] ?? s.parameter);
  if (missing.length) flags.push(el("span", { class: "flag partial", text: `Missing: ${missing.join(", ")}` }));
  if (stale.length) flags.push(el("span", { class: "flag partial", text: `Stale: ${stale.join(", ")}` }));
  $("news2-flags").replaceChildren(...flags);
}

// --- latest values -----------------------------------------------------------------------------

function points(news, code) {
  const parameter = { "8867-4": "pulse", "59408-5": "spo2", "9279-1": "respiration_rate",
                      "8480-6": "systolic_bp", "8310-5": "temperature" }[code];
  return news?.sub_scores.find((s) => s.parameter === parameter)?.points ?? null;
}

function renderLatest() {
  const box = $("latest");
  const vitals = [...state.latest].sort((x, y) =>
    VITALS.findIndex((v) => v.code === x.code) - VITALS.findIndex((v) => v.code === y.code));
  if (!vitals.length) {
    box.replaceChildren(el("p", { class: "empty", text: "No readings yet." }));
    return;
  }
  const newest = Math.max(...vitals.map((v) => v.time_ms));
  $("last-reading").textContent = `Last reading ${when(newest)} (${ago(newest)})`;
  box.replaceChildren(...vitals.map((v) => {
    const scored = points(state.news2, v.code);
    return el("div", { class: `tile${scored ? ` score-${scored}` : ""}`, "data-code": v.code },
      el("div", { class: "tile-name", text: VITAL[v.code]?.name ?? v.name }),
      el("div", { class: "tile-value" },
        el("span", { class: "number", text: value(v.code, v.value) }),
        el("span", { class: "unit", text: ` ${unit(v.unit)}` })),
      el("div", { class: "tile-foot" },
        el("span", { class: "muted", text: when(v.time_ms) }), badge(v.entry_index)));
  }));
}

// --- trends ------------------------------------------------------------------------------------

function spo2Bands() {
  if (state.news2?.spo2_scale !== 2) return SPO2_1;
  const o2 = state.documented?.latest.find((d) => d.kind === "air_or_oxygen");
  return o2?.value === true ? SPO2_2_O2 : SPO2_2_AIR;
}

async function renderTrends() {
  const window = state.window;
  const { span, bucket_s } = WINDOWS[window];
  const end = Date.now(), start = end - span;
  const codes = VITALS.filter((v) => state.latest.some((l) => l.code === v.code));
  const [history, ...series] = await Promise.all([
    json(`${BASE}/news2/history?window=${window}`),
    ...codes.map((v) => json(`${BASE}/vitals/${v.code}?start_ms=${start}&end_ms=${end}&bucket_s=${bucket_s}`)),
  ]);
  if (window !== state.window) return; // the clinician switched while this loaded
  state.drawnAt = Date.now();
  const narrow = matchMedia("(max-width: 600px)").matches;
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  const news2Box = $("news2-chart");
  news2Box.replaceChildren();
  const news2Points = history.points.map((p) => ({ time_ms: p.time_ms, value: p.total }));
  state.charts.push(trendChart(news2Box, { bucket_ms: history.bucket_ms, points: news2Points }, {
    unit: "score", bands: NEWS2_BANDS, label: "NEWS2", start_ms: history.start_ms,
    end_ms: history.end_ms, height: narrow ? 130 : 160 }));
  news2Box.dataset.points = String(news2Points.length);
  const blocks = codes.map((v, i) => {
    const data = series[i];
    const latest = state.latest.find((l) => l.code === v.code);
    const chart = el("div", { class: "chart", "data-code": v.code,
                              "data-points": String(data.points.length) });
    const block = el("div", { class: "chart-block" },
      el("h3", {}, v.name, el("span", { class: "muted", text: ` ${unit(latest.unit)}` })), chart);
    return { block, chart, data, v, latest };
  });
  $("charts").replaceChildren(...blocks.map((x) => x.block));
  for (const { chart, data, v, latest } of blocks) {
    if (!data.points.length) {
      chart.append(el("p", { class: "empty", text: "No readings in this window." }));
      continue;
    }
    const bands = v.code === "59408-5" ? spo2Bands() : v.bands;
    state.charts.push(trendChart(chart, data, { unit: unit(latest.unit), bands, label: v.name,
                                                start_ms: start, end_ms: end, height: narrow ? 150 : 180 }));
  }
}

// --- readings ----------------------------------------------------------------------------------

const LEDGER_INDEX = "urn:vitaltrail:fhir:ledger-index";

const SHORT = { "8867-4": "HR", "59408-5": "SpO₂", "9279-1": "RR", "8480-6": "BP",
                "8310-5": "Temp", "2339-0": "Gluc" };

/** The LOINC code this page knows among an Observation's codings (SpO2 carries two). */
function knownCode(concept) {
  const codes = (concept?.coding ?? []).map((c) => c.code);
  return codes.find((c) => VITAL[c]) ?? codes[0];
}

function observationValues(resource) {
  if (resource.valueQuantity) {
    const q = resource.valueQuantity;
    return [{ code: knownCode(resource.code), value: q.value, unit: q.code }];
  }
  return (resource.component ?? []).filter((c) => c.valueQuantity).map((c) => ({
    code: knownCode(c.code), value: c.valueQuantity.value, unit: c.valueQuantity.code,
  }));
}

/** A reading's values, short: "HR 112 /min", and blood pressure as "BP 120/76 mmHg". */
function readingValues(values) {
  const at = (v) => VITALS.findIndex((x) => x.code === v.code);
  const sorted = [...values].sort((x, y) => at(x) - at(y));
  const diastolic = sorted.find((v) => v.code === "8462-4");
  return sorted.filter((v) => v !== diastolic).map((v) => {
    const shown = v.code === "8480-6" && diastolic
      ? `${value(v.code, v.value)}/${value(diastolic.code, diastolic.value)}` : value(v.code, v.value);
    return el("span", { class: "value", title: VITAL[v.code]?.name ?? v.code },
      el("span", { class: "value-name", text: `${SHORT[v.code] ?? VITAL[v.code]?.name ?? v.code} ` }),
      el("b", { text: shown }), ` ${unit(v.unit)}`);
  });
}

async function renderReadings() {
  const bundle = await json(
    `/fhir/Observation?patient=${encodeURIComponent(PATIENT)}&_sort=-date&_count=${READINGS}`);
  const byIndex = new Map();
  for (const { resource } of bundle.entry ?? []) {
    const index = resource.extension?.find((e) => e.url === LEDGER_INDEX)?.valueUnsignedInt;
    if (index == null) continue;
    const row = byIndex.get(index) ?? { index, time: Date.parse(resource.effectiveDateTime),
                                        device: resource.device?.reference?.split("/")[1],
                                        values: [] };
    row.values.push(...observationValues(resource));
    byIndex.set(index, row);
  }
  const rows = [...byIndex.values()].sort((x, y) => y.time - x.time || y.index - x.index);
  const body = $("readings").tBodies[0];
  if (!rows.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colSpan: 4, text: "No readings yet." })));
    return;
  }
  const more = $("readings-more");
  more.hidden = rows.length <= COLLAPSED_ROWS;
  more.textContent = `Show all ${rows.length} readings`;
  body.replaceChildren(...rows.map((r) => {
    const values = readingValues(r.values);
    return el("tr", { "data-index": r.index },
      el("td", { class: "time" }, el("time", { dateTime: new Date(r.time).toISOString(),
                                               text: when(r.time) })),
      el("td", { class: "values" }, ...values),
      el("td", { class: "num" }, el("a", { href: `/api/v1/readings/${r.index}`, text: `#${r.index}` })),
      el("td", { class: "proof" }, badge(r.index)));
  }));
}

// --- alerts ------------------------------------------------------------------------------------

function alertItem(a) {
  const state_ = a.state === "open" ? "" : ` · ${a.state}`;
  return el("li", { class: `alert sev-${a.severity}`, "data-kind": a.kind },
    el("div", { class: "alert-head" },
      el("span", { class: "sev", text: TIERS[a.severity] ?? a.severity }),
      el("span", { class: "muted", text: `${when(a.raised_ms)}${state_}` })),
    el("div", { text: a.message }));
}

async function renderAlerts() {
  const alerts = await json(`${BASE}/alerts`);
  const open = $("alerts-open");
  open.replaceChildren(...(alerts.open.length ? alerts.open.map(alertItem)
    : [el("li", { class: "empty", text: "No open alerts." })]));
  const history = alerts.history.slice(0, 30).map((e) => el("li", {},
    el("span", { class: "muted", text: when(e.time_ms) }), " ",
    el("b", { text: e.event }), ` ${e.alert.message}`, e.by ? ` (${e.by})` : ""));
  $("alerts-history").replaceChildren(...(history.length ? history
    : [el("li", { class: "empty", text: "Nothing yet." })]));
}

// --- device (contract 3; absent until the devices route is there) --------------------------------

async function renderDevices() {
  const box = $("devices");
  let answer;
  try {
    answer = await json(`${BASE}/devices`);
  } catch (error) {
    if (error.status === 404) {
      box.replaceChildren(el("p", { class: "empty", text: "No device information." }));
      return;
    }
    throw error;
  }
  if (!answer.devices.length) {
    box.replaceChildren(el("p", { class: "empty", text: "No device information." }));
    return;
  }
  box.replaceChildren(...answer.devices.map((d) => {
    const battery = d.battery_pct == null ? "–" : `${d.battery_pct} %`;
    const meter = el("span", { class: `meter${d.battery_low ? " low" : ""}` },
      el("span", { class: "fill" }));
    meter.firstChild.style.width = `${Math.max(0, Math.min(100, d.battery_pct ?? 0))}%`;
    return el("div", { class: `device${d.silent ? " silent" : ""}`, "data-device": d.device_id },
      el("div", { class: "device-head" }, el("b", { text: d.device_id }),
        el("span", { class: `chip key-${d.key_status}`, text: `key ${d.key_status}` })),
      el("dl", {},
        el("dt", { text: "Battery" }), el("dd", {}, meter, ` ${battery}`),
        el("dt", { text: "Last seen" }),
        el("dd", { text: d.last_seen_ms == null ? "never" : `${when(d.last_seen_ms)} (${ago(d.last_seen_ms)})`,
                   class: d.silent ? "warn" : null }),
        el("dt", { text: "Key" }), el("dd", { class: "mono", text: d.key_thumbprint.slice(0, 16) + "…",
                                             title: d.key_thumbprint }),
        el("dt", { text: "Bad signatures" }),
        el("dd", { text: d.signature_failures ? `${d.signature_failures} (last ${d.last_failure_reason ?? "?"})` : "none",
                   class: d.signature_failures ? "warn" : null })));
  }));
}

// --- documented values -------------------------------------------------------------------------

function documentedText(d) {
  if (d.kind === "consciousness") return `${d.value} · ${ACVPU[d.value] ?? ""}`;
  if (d.kind === "air_or_oxygen") {
    if (d.value !== true) return "Air";
    const detail = [d.oxygen_flow_l_min && `${d.oxygen_flow_l_min} L/min`, d.oxygen_device]
      .filter(Boolean).join(", ");
    return detail ? `Oxygen (${detail})` : "Oxygen";
  }
  return `Scale ${d.value}`;
}

async function renderDocumented() {
  state.documented = await json(`${BASE}/documented`);
  const items = ["consciousness", "air_or_oxygen", "spo2_scale"].flatMap((kind) => {
    const d = state.documented.latest.find((x) => x.kind === kind);
    return [el("dt", { text: KINDS[kind] }),
            el("dd", { "data-kind": kind }, d ? documentedText(d) : el("span", { class: "muted", text: "not documented" }),
               d ? el("small", { class: "muted", text: ` ${when(d.time_ms)} · ${d.by}` }) : null)];
  });
  $("documented-now").replaceChildren(...items);
}

function formBody(form) {
  const data = new FormData(form);
  const body = {};
  if (data.get("consciousness")) body.consciousness = data.get("consciousness");
  if (data.get("oxygen")) {
    body.oxygen = data.get("oxygen") === "oxygen";
    if (body.oxygen && data.get("flow")) body.oxygen_flow_l_min = Number(data.get("flow"));
    if (body.oxygen && data.get("device")?.trim()) body.oxygen_device = data.get("device").trim();
  }
  if (data.get("scale")) body.spo2_scale = Number(data.get("scale"));
  if (data.get("note")?.trim()) body.note = data.get("note").trim();
  return body;
}

async function submitDocumented(event) {
  event.preventDefault();
  const form = event.target;
  const status = $("document-status");
  const body = formBody(form);
  if (!("consciousness" in body || "oxygen" in body || "spo2_scale" in body)) {
    status.textContent = "Choose at least one value.";
    return;
  }
  status.textContent = "Recording…";
  try {
    await post(`${BASE}/documented`, body);
    form.reset();
    $("oxygen-detail").hidden = true;
    status.textContent = `Recorded ${timeFormat.format(new Date())}.`;
    await Promise.all([renderDocumented(), refreshNews2()]);
    renderLatest();
    await renderTrends();
  } catch (error) {
    status.textContent = `Not recorded: ${error.message}`;
  }
}

// --- the page --------------------------------------------------------------------------------

async function refreshNews2() {
  state.news2 = await json(`${BASE}/news2`);
  renderNews2(state.news2);
}

/** Charts are redrawn when a reading came in, or a minute on (staleness moves NEWS2): not on
 * every poll, so a chart a clinician is pointing at stays put. */
async function trendsIfStale() {
  const newest = Math.max(0, ...state.latest.map((v) => v.time_ms));
  if (newest === state.drawnNewest && Date.now() - state.drawnAt < 60_000) return;
  await renderTrends();
  state.drawnNewest = newest;
}

async function refresh() {
  try {
    const [latest] = await Promise.all([
      json(`${BASE}/vitals`).then((v) => v.vitals).catch((e) => (e.status === 404 ? [] : Promise.reject(e))),
      refreshNews2(),
      renderDocumented(),
    ]);
    state.latest = latest;
    renderLatest();
    await Promise.all([renderReadings(), renderAlerts(), renderDevices(), trendsIfStale()]);
    notice(null);
  } catch (error) {
    if (error.status === 403) notice("You may not see this patient's record.");
    else if (error.status !== 401) notice(`Could not load everything: ${error.message}`);
  }
}

async function showWho() {
  const s = await currentSession();
  if (!s.user) return;
  $("who").textContent = `${s.user}`;
  const form = $("sign-out");
  form.csrf_token.value = s.csrf_token;
  form.hidden = false;
}

function start() {
  $("patient-id").textContent = PATIENT;
  document.title = `${PATIENT} · vitaltrail`;
  for (const button of document.querySelectorAll("[data-window]")) {
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      for (const b_ of document.querySelectorAll("[data-window]")) {
        b_.setAttribute("aria-pressed", String(b_ === button));
      }
      renderTrends().catch((error) => notice(`Could not draw the trends: ${error.message}`));
    });
  }
  $("readings-more").addEventListener("click", () => {
    $("readings").classList.remove("collapsed");
    $("readings-more").hidden = true;
  });
  const form = $("document");
  form.addEventListener("submit", submitDocumented);
  form.addEventListener("change", () => {
    $("oxygen-detail").hidden = new FormData(form).get("oxygen") !== "oxygen";
  });
  showWho();
  loadKeys().then(refresh);
  setInterval(refresh, REFRESH_MS);
}

start();
