// The patient's page: who may see my vital signs, giving and withdrawing that, and who looked.
//
// Session and CSRF (an assumption the sign-in work defines): the page calls the API with the
// session cookie (credentials "same-origin"); every POST carries the session's CSRF token in
// the X-CSRF-Token header, read from the cookie `vitaltrail_csrf` when there is one, else
// from the `csrf_token` field of GET /auth/session. A caller with a bearer token (the tests)
// needs neither. A 401 sends the patient to sign in.
//
// Signing: a consent is signed here, with the patient's own Ed25519 key (WebCrypto), made
// non-extractable at first use and kept in this browser's IndexedDB; its public half is
// registered at POST /api/v1/me/keys. The statement's deterministic CBOR is built here
// (cbor.js), the COSE_Sign1 too (cose.js): the server records it only if the patient's
// registered key signed it, and never signs for the patient.

import { encode } from "./cbor.js";
import { base64url, hex, keyId, sign1 } from "./cose.js";

const PURPOSES = {
  TREAT: "My treatment",
  CAREMGT: "Coordinating my care",
  PATRQT: "My own request",
  HRESCH: "Health research",
  ETREAT: "Emergency treatment",
};
const DATA = { "vital-signs": "Vital signs", readings: "Signed readings", proofs: "Proofs", consents: "Your permissions", "access-log": "This log" };
const STATES = {
  "in-force": ["In force", "ok"],
  withdrawn: ["Withdrawn", "off"],
  expired: ["Ended", "off"],
  scheduled: ["Starts later", "later"],
};
// Why a read was refused, in the patient's words (access/policy.py's reason codes).
const REFUSALS = {
  "no-consent": "You had not given access",
  "not-in-care-team": "Not in your care team",
  "not-own-record": "Not their record",
  "insufficient-scope": "Not allowed to read this",
  "admin-reads-no-patient-data": "Administrators read no health data",
  "bad-break-glass-reason": "No valid emergency reason given",
};
const DAY_MS = 86_400_000;
const $ = (id) => document.getElementById(id);
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
// the log's times to the second: reads within one minute stay apart, in order
const logTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

let record = null; // GET /api/v1/me/consents
let appNames = new Map();
let csrfToken = null;

// --- the API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `the server answered ${status}`);
    this.status = status;
    this.reason = body && body.reason;
  }
}

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
}

async function csrf() {
  if (csrfToken === null) csrfToken = cookie("vitaltrail_csrf");
  if (csrfToken === null) {
    try {
      const r = await fetch("/auth/session", { credentials: "same-origin" });
      if (r.ok) csrfToken = (await r.json()).csrf_token || "";
    } catch {
      csrfToken = "";
    }
  }
  return csrfToken || "";
}

async function api(path, body) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    const token = await csrf();
    if (token) init.headers["X-CSRF-Token"] = token;
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (response.status === 401) showSignedOut();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// --- the patient's key ----------------------------------------------------------------------

function keyStore(mode, act) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("vitaltrail-patient", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction("keys", mode);
      const request = act(tx.objectStore("keys"));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    };
  });
}

async function localKey() {
  const pair = await keyStore("readonly", (s) => s.get(record.patient));
  if (!pair) return null;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, raw, kid: await keyId(raw) };
}

async function newKey() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  await keyStore("readwrite", (s) => s.put(pair, record.patient));
  return localKey();
}

/** This browser's key, registered as the patient's active key (made and registered if not). */
async function signingKey() {
  let key = (await localKey()) || (await newKey());
  if (record.keys.some((k) => k.active && k.kid === hex(key.kid))) return key;
  try {
    await api("/api/v1/me/keys", { key: base64url(key.raw) });
  } catch (error) {
    if (error.reason !== "revoked-key-reused") throw error;
    key = await newKey(); // this browser's key was replaced on another device: make a new one
    await api("/api/v1/me/keys", { key: base64url(key.raw) });
  }
  return key;
}

// Refusals that mean the record changed elsewhere since the page read it: another device
// used the statement number, or registered a key that revoked this browser's.
const STALE = new Set(["seq-taken", "revoked-key", "unknown-key"]);

async function signAndSend(build) {
  for (let attempt = 0; ; attempt++) {
    const key = await signingKey();
    const statement = build(record.next_seq, Date.now());
    const message = await sign1(key.pair.privateKey, key.kid, encode(statement));
    try {
      return await api("/api/v1/me/consents", { message: base64url(message) });
    } catch (error) {
      if (!STALE.has(error.reason) || attempt > 0) throw error;
      await load(); // read the record again, then sign once more
    }
  }
}

// --- statements -----------------------------------------------------------------------------

export function grantStatement(patient, seq, time, clientId, purpose, start, end) {
  return {
    patient, seq, status: "active", time, grantee: ["app", clientId], actions: ["access"],
    data: ["vital-signs"], purpose: [purpose], start, end,
  };
}

export function withdrawalStatement(patient, seq, time, ends) {
  return { patient, seq, status: "inactive", time, ends };
}

// --- rendering ------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function say(text, tone = "info") {
  const status = $("status");
  status.textContent = text;
  status.className = `notice ${tone}`;
  status.hidden = !text;
}

function showSignedOut() {
  $("signed-out").hidden = false;
  $("content").hidden = true;
}

function appName(id) {
  return appNames.get(id) || id;
}

function period(s) {
  const from = dateFormat.format(new Date(s.start_ms));
  return s.end_ms ? `${from} – ${dateFormat.format(new Date(s.end_ms - 1))}` : `From ${from}`;
}

function detail(list, term, value) {
  list.append(el("dt", "", term), el("dd", "", value));
}

function renderGrants() {
  const list = $("grants");
  list.replaceChildren();
  // what holds now first (in force, then starting later), then the rest; newest first in each
  const rank = (s) => ({ "in-force": 0, scheduled: 1 })[s.state] ?? 2;
  const grants = record.statements
    .filter((s) => s.status === "active")
    .reverse()
    .sort((a, b) => rank(a) - rank(b));
  $("no-grants").hidden = grants.length > 0;
  for (const s of grants) {
    const [label, tone] = STATES[s.state] || [s.state, "off"];
    const item = el("li", `grant ${tone}`);
    item.dataset.seq = String(s.seq);
    const top = el("div", "grant-top");
    const name = s.grantee.kind === "app" ? appName(s.grantee.id) : s.grantee.id;
    top.append(el("h3", "", name), el("span", `badge ${tone}`, label));
    const facts = el("dl", "facts");
    detail(facts, "May see", s.data.map((d) => DATA[d] || d).join(", "));
    detail(facts, "For", s.purpose.map((p) => PURPOSES[p] || p).join(", "));
    detail(facts, "Period", period(s));
    const by = s.kind === "signed"
      ? "You, signed on your device"
      : `${s.recorded_by.by} (${s.recorded_by.role}) for you: “${s.recorded_by.reason}”`;
    detail(facts, "Given by", by);
    if (s.withdrawn_by !== null) {
      const w = record.statements.find((x) => x.seq === s.withdrawn_by);
      detail(facts, "Withdrawn", w ? timeFormat.format(new Date(w.time_ms)) : "yes");
    }
    item.append(top, facts);
    if (s.state === "in-force" || s.state === "scheduled") {
      const button = el("button", "secondary", "Withdraw access");
      button.type = "button";
      button.setAttribute("aria-label", `Withdraw access for ${name}`);
      button.addEventListener("click", () => withdraw(s, name, button));
      item.append(button);
    }
    list.append(item);
  }
}

function renderKey(key) {
  const active = record.keys.find((k) => k.active);
  const here = key && active && active.kid === hex(key.kid);
  $("key-status").textContent = here
    ? `Set up on this device. Key fingerprint ${active.kid.slice(0, 16)}…`
    : active
      ? "Your key is on another device. Giving or withdrawing access here sets up this device instead."
      : "Not set up yet. It is made on this device the first time you give or withdraw access.";
}

// One entry of GET /api/v1/me/access-log: `who` is a user name, or an app's client id.
function who(entry) {
  if (entry.kind === "app") return `${appName(entry.who)} (app)`;
  return `${entry.who} (${entry.role})`;
}

function cell(row, label, text, className = "") {
  const td = el("td", className, text);
  td.dataset.label = label;
  row.append(td);
  return td;
}

function renderLog(entries) {
  const body = $("log-rows");
  body.replaceChildren();
  $("no-log").hidden = entries.length > 0;
  $("log").hidden = entries.length === 0;
  for (const e of [...entries].reverse()) {
    const row = el("tr");
    const glass = e.break_glass;
    if (glass) row.className = "break-glass";
    cell(row, "When", logTimeFormat.format(new Date(e.time_ms)));
    cell(row, "Who", who(e));
    const data = e.data.map((d) => DATA[d] || d).join(", ");
    cell(row, "What", data || "—");
    const purposes = e.purpose.map((p) => PURPOSES[p] || p).join(", ");
    cell(row, "Why", purposes || "—");
    const permitted = e.outcome === "permit";
    const outcome = el("div", "outcome");
    outcome.append(el("span", `badge ${permitted ? "ok" : "refused"}`, permitted ? "Allowed" : "Refused"));
    if (!permitted) outcome.append(el("p", "refusal", REFUSALS[e.reason] || "Not allowed"));
    if (glass) {
      const flag = el("p", "glass-flag");
      flag.append(el("strong", "", "Emergency access"), document.createTextNode(` — “${glass}”`));
      outcome.append(flag);
    }
    cell(row, "Outcome", "").append(outcome);
    body.append(row);
  }
}

// --- actions --------------------------------------------------------------------------------

/** A browser session (not a bearer token): show the sign-out form, with its CSRF token. */
async function showSignOut() {
  const token = await csrf();
  if (!token) return;
  const form = $("sign-out");
  form.csrf_token.value = token;
  form.hidden = false;
}

async function load() {
  record = await api("/api/v1/me/consents");
  $("who").textContent = `Patient ${record.patient}`;
  renderGrants();
  renderKey(await localKey());
}

async function loadLog() {
  try {
    renderLog(await api("/api/v1/me/access-log"));
  } catch (error) {
    if (error.status === 401) return;
    $("no-log").textContent = "Your access log cannot be shown right now.";
    $("no-log").hidden = false;
    $("log").hidden = true;
  }
}

function dayStart(value) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).getTime();
}

async function grant(event) {
  event.preventDefault();
  const form = event.target;
  const clientId = form.app.value;
  const from = dayStart(form.from.value);
  const until = dayStart(form.until.value) + DAY_MS; // to the end of the chosen day
  if (!(until > from) || until <= Date.now()) {
    say("The last day must be today or later, and not before the first day.", "error");
    form.until.focus();
    return;
  }
  const purpose = form.purpose.value;
  form.submit.disabled = true;
  say("Signing with your key…");
  try {
    await signAndSend((seq, now) =>
      grantStatement(record.patient, seq, now, clientId, purpose, from > now ? from : now, until),
    );
    await load();
    say(`${appName(clientId)} may now see your vital signs.`, "success");
  } catch (error) {
    say(`Access was not given: ${error.message}`, "error");
  } finally {
    form.submit.disabled = false;
  }
}

async function withdraw(grantOut, name, button) {
  button.disabled = true;
  say("Signing with your key…");
  try {
    await signAndSend((seq, now) => withdrawalStatement(record.patient, seq, now, grantOut.seq));
    await load();
    say(`${name} can no longer see your vital signs.`, "success");
  } catch (error) {
    button.disabled = false;
    say(`Access was not withdrawn: ${error.message}`, "error");
  }
}

function isoDay(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

async function start() {
  const form = $("grant-form");
  form.from.value = isoDay(Date.now());
  form.until.value = isoDay(Date.now() + 90 * DAY_MS);
  form.addEventListener("submit", grant);
  if (!window.crypto || !crypto.subtle) {
    say("This browser cannot sign here (it needs a secure connection).", "error");
  }
  try {
    const apps = await api("/api/v1/me/apps");
    appNames = new Map(apps.map((a) => [a.client_id, a.name || a.client_id]));
    const select = form.app;
    for (const a of apps) select.append(new Option(a.name || a.client_id, a.client_id));
    $("no-apps").hidden = apps.length > 0;
    await load();
    await loadLog();
    await showSignOut();
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status !== 401) say(`Your page could not be loaded: ${error.message}`, "error");
  }
}

if (typeof document !== "undefined" && document.getElementById("grant-form")) start();
