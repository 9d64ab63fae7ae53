// The ward page: polls the API every 2 s and renders each patient's latest vitals.
"use strict";

const COLUMNS = [
  { codes: ["8867-4"], alert: (v) => v < 50 || v > 120 },
  { codes: ["59408-5"], alert: (v) => v < 92 },
  { codes: ["9279-1"], alert: (v) => v < 8 || v > 25 },
  { codes: ["8310-5"], digits: 1, alert: (v) => v < 35.5 || v > 38.0 },
  { codes: ["8480-6", "8462-4"], alert: (s, d) => s > 160 || s < 90 || d > 100 },
  { codes: ["2339-0"], alert: (v) => v < 70 || v > 250 },
];

function cell(vitals, column) {
  const td = document.createElement("td");
  const found = column.codes.map((c) => vitals.find((v) => v.code === c));
  if (found.some((v) => !v)) {
    td.textContent = "—";
    return td;
  }
  const a = document.createElement("a");
  a.href = `/api/v1/readings/${found[0].entry_index}`;
  a.title = `reading ${found[0].entry_index} — ${new Date(found[0].time_ms).toLocaleTimeString()}`;
  a.textContent = found.map((v) => (column.digits ? v.value.toFixed(column.digits) : v.value)).join("/");
  td.appendChild(a);
  if (column.alert(...found.map((v) => v.value))) td.classList.add("alert");
  return td;
}

function row(patient, now) {
  const tr = document.createElement("tr");
  tr.dataset.patient = patient.patient_id;
  const name = document.createElement("td");
  name.textContent = patient.patient_id;
  tr.appendChild(name);
  for (const column of COLUMNS) tr.appendChild(cell(patient.vitals, column));
  const newest = Math.max(...patient.vitals.map((v) => v.time_ms));
  const age = document.createElement("td");
  const seconds = Math.max(0, Math.round((now - newest) / 1000));
  age.textContent = `${seconds} s ago`;
  if (seconds > 30) age.classList.add("stale");
  tr.appendChild(age);
  return tr;
}

// Not signed in (no session, no token): the sign-in page, which brings the user back here.
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

// Who is signed in, and the CSRF token the sign-out form posts (a session's, not a token's).
async function showSession() {
  const r = await fetch("/auth/session", { credentials: "same-origin" });
  if (!r.ok) return;
  const session = await r.json();
  const form = document.getElementById("sign-out");
  form.querySelector("input[name=csrf_token]").value = session.csrf_token;
  document.getElementById("who").textContent = `${session.user} (${session.roles.join(", ")})`;
  form.hidden = false;
}

async function refresh() {
  try {
    const [patients, ledger] = await Promise.all([
      json("/api/v1/patients"),
      json("/api/v1/ledger"),
    ]);
    const now = Date.now();
    const body = document.getElementById("patients");
    if (patients.length) body.replaceChildren(...patients.map((p) => row(p, now)));
    document.getElementById("ledger").textContent =
      `ledger: ${ledger.tree_size} entries · ${ledger.sealed_size} sealed · ${ledger.blocks} blocks`;
  } catch (err) {
    document.getElementById("ledger").textContent = `ledger: unreachable (${err})`;
  }
}

showSession();
refresh();
setInterval(refresh, 2000);
