// The proof bundle, verified in the browser: the same checks, under the same names, with the
// same verdicts as `vitaltrail verify` (ledger/verifier.py verify_bundle), so a badge that
// says "verified" means this browser itself checked, with nothing but pinned keys:
//
//   checkpoint signature  - the checkpoint is signed by the pinned ledger key, names its
//                           origin, and every proof in the bundle is against it;
//   witness cosignatures  - at least `quorum` of the pinned witnesses cosigned it (only when
//                           witness keys are given);
//   device key            - the reading's key was registered in this log before the reading,
//                           and not revoked before it;
//   device signature      - the entry is a canonical COSE_Sign1 reading that key signed;
//   inclusion proof       - the reading, the registration (and revocation) are in the tree.
//
// The status: "verified" when every check passes; "pending" while the reading is not yet
// sealed (the API has no bundle for it yet: verifyBundle(null, ...)) or not yet witnessed
// to quorum (every other check passes and every pinned witness's cosignature that is there
// verifies, but fewer than `quorum` are there); "failed" otherwise, naming the first check
// that failed for any other reason. See docs/formats.md, "Verifying in the browser".

import { decode, encode, equalBytes } from "./cbor.js";
import { CoseError, keyId, parseSign1, toBeSigned } from "./cose.js";
import { verifyEd25519 } from "./ed25519.js";
import {
  CheckpointError,
  NoteError,
  ProofFormatError,
  VerificationError,
  codePoints,
  cosignedAt,
  decodeBase64,
  hashLeaf,
  openNote,
  parseCheckpoint,
  parseNote,
  parseTlogProof,
  parseVerifierKey,
  parseWitnessKey,
  verifyInclusion,
} from "./tlog.js";

export const FORMAT = "vitaltrail/proof-bundle@v2";
const MAX_BUNDLE_SIZE = 1 << 20;
const MAX_CONTAINERS = 16;
const MAX_INT_DIGITS = 4300; // Python's int() limit, which its JSON reader meets first
const PUBLIC_KEY_SIZE = 32;
const MAX_SEQ = (1n << 63n) - 1n;
const MAX_TIME_MS = 2n ** 53n;
const MAX_SAMPLES = 64;
const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const LOINC = /^[0-9]{1,7}-[0-9]$/;
const UNIT = /^[!-~]{1,24}$/;
const READING = 1;
const DEVICE_REGISTERED = 2;
const DEVICE_REVOKED = 3;
const KINDS = [
  "",
  "reading",
  "device_registered",
  "device_revoked",
  "patient_key_registered",
  "patient_key_revoked",
  "consent_signed",
  "consent_recorded",
  "access",
  "directory_change",
];
const UTF8 = new TextDecoder("utf-8", { fatal: true });

class BundleFormatError extends Error {
  name = "BundleFormatError";
}
class EntryError extends Error {
  name = "EntryError";
}
class ReadingError extends Error {
  name = "ReadingError";
}
class CheckFailed extends Error {
  name = "CheckFailed";
}
class QuorumShort extends Error {
  name = "QuorumShort"; // witnesses yet to cosign: pending, not failed
}

// Refusals, each a verdict on the bundle; anything else thrown in a check is a bug.
const VERDICTS = [
  BundleFormatError,
  EntryError,
  ReadingError,
  CoseError,
  CheckFailed,
  QuorumShort,
  NoteError,
  CheckpointError,
  ProofFormatError,
  VerificationError,
];

// ---- the document (ledger/bundle.py) ----

/** Where the text's JSON strings are not: Python's bundle reader counts brackets and reads
 * numbers only there. */
function outsideStrings(text) {
  const parts = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    if (text[i] !== '"') {
      i++;
      continue;
    }
    parts.push(text.slice(start, i));
    for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
    start = ++i;
  }
  if (start < text.length) parts.push(text.slice(start));
  return parts;
}

/** JSON as Python's json.loads reads it, which JSON.parse does not quite: NaN and
 * (-)Infinity are values (a number stands in: neither is a string, object or null), and an
 * integer of more than 4300 digits is an error. */
function parseJson(text) {
  const outside = outsideStrings(text);
  const containers = outside.reduce((n, part) => n + (part.match(/[[{]/g) || []).length, 0);
  if (containers > MAX_CONTAINERS) {
    throw new BundleFormatError(`a bundle holds at most ${MAX_CONTAINERS} objects and arrays`);
  }
  for (const part of outside) {
    for (const number of part.matchAll(/-?(\d+)(\.\d+)?([eE][-+]?\d+)?/g)) {
      if (!number[2] && !number[3] && number[1].length > MAX_INT_DIGITS) {
        throw new BundleFormatError(
          `bundle is not JSON: an integer of over ${MAX_INT_DIGITS} digits`,
        );
      }
    }
  }
  let json = text;
  if (outside.some((part) => /NaN|Infinity/.test(part))) {
    const value = (token) => (token.startsWith('"') ? token : " 0 ");
    json = text.replace(/"(?:[^"\\]|\\.)*"?|-?Infinity|NaN/gs, value);
  }
  try {
    return JSON.parse(json);
  } catch (error) {
    throw new BundleFormatError(`bundle is not JSON: ${error.message}`);
  }
}

function field(doc, name) {
  return doc !== null && typeof doc === "object" && Object.hasOwn(doc, name)
    ? doc[name]
    : undefined;
}

function isObject(doc) {
  return doc !== null && typeof doc === "object" && !Array.isArray(doc);
}

function provenEntry(doc, what) {
  const proofText = field(doc, "proof");
  if (!isObject(doc) || typeof proofText !== "string") {
    throw new BundleFormatError(`bundle ${what} must hold an entry and a tlog-proof`);
  }
  let proof;
  try {
    proof = parseTlogProof(proofText);
  } catch (error) {
    if (!(error instanceof ProofFormatError)) throw error;
    throw new BundleFormatError(`bundle ${what} proof: ${error.message}`);
  }
  const entry = field(doc, "entry");
  if (typeof entry !== "string") {
    throw new BundleFormatError(`bundle ${what} entry must be a base64 string`);
  }
  return { entry: decodeBase64(entry, `bundle ${what} entry`, BundleFormatError), proof };
}

/** A bundle document (text, or UTF-8 bytes) as its proven entries; BundleFormatError else. */
function parseBundle(document) {
  let text = document;
  if (document instanceof Uint8Array) {
    if (document.length > MAX_BUNDLE_SIZE) throw new BundleFormatError("bundle is too large");
    try {
      text = UTF8.decode(document);
    } catch {
      throw new BundleFormatError("bundle is not JSON: not UTF-8");
    }
  } else if (typeof document !== "string") {
    throw new BundleFormatError("a bundle is JSON text");
  }
  if (text.length > MAX_BUNDLE_SIZE && codePoints(text) > MAX_BUNDLE_SIZE) {
    throw new BundleFormatError("bundle is too large");
  }
  const doc = parseJson(text);
  if (!isObject(doc) || field(doc, "format") !== FORMAT) {
    const found = isObject(doc) ? field(doc, "format") : undefined;
    throw new BundleFormatError(
      `bundle format must be '${FORMAT}', not ${JSON.stringify(found ?? null)}`,
    );
  }
  const revocation = field(doc, "key_revocation");
  const proven = [
    ["reading", provenEntry(field(doc, "reading"), "reading")],
    ["key registration", provenEntry(field(doc, "key_registration"), "key_registration")],
  ];
  if (revocation !== undefined && revocation !== null) {
    proven.push(["key revocation", provenEntry(revocation, "key_revocation")]);
  }
  return { reading: proven[0][1], registration: proven[1][1], revocation: proven[2]?.[1], proven };
}

// ---- ledger entries, device keys, readings (ledger/entries.py, device_keys.py, devices/) ----

function isUint64(value) {
  return typeof value === "bigint"
    ? value >= 0n && value < 1n << 64n
    : Number.isSafeInteger(value) && value >= 0;
}

function isInt(value) {
  return typeof value === "bigint" || Number.isSafeInteger(value);
}

function decoded(bytes, Failure, what) {
  try {
    return decode(bytes);
  } catch (error) {
    throw new Failure(`${what} is not valid CBOR (${error.message})`);
  }
}

function hasKeys(map, keys) {
  return map instanceof Map && map.size === keys.length && keys.every((k) => map.has(k));
}

/** Leaf data [kind, logged_at_ms, body], deterministically encoded, of a known kind. */
function decodeEntry(data) {
  const entry = decoded(data, EntryError, "entry");
  if (!Array.isArray(entry) || entry.length !== 3) {
    throw new EntryError("an entry is [kind, logged_at_ms, body]");
  }
  const [kind, loggedAt, body] = entry;
  if (!isUint64(kind) || !(kind >= 1 && kind < KINDS.length)) {
    throw new EntryError(`the entry kind is not one of 1 to ${KINDS.length - 1}`);
  }
  if (!isUint64(loggedAt)) {
    throw new EntryError("logged_at_ms must be an integer from 0 to 2**64 - 1");
  }
  if (!(body instanceof Uint8Array)) throw new EntryError("an entry body is a byte string");
  if (!equalBytes(encode([kind, loggedAt, body]), data)) {
    throw new EntryError("entry is not deterministically encoded");
  }
  return { kind: Number(kind), body };
}

/** A registration {device, key, patient} or revocation {device, key} of a device key. */
function deviceKeyStatement(entry) {
  if (entry.kind !== DEVICE_REGISTERED && entry.kind !== DEVICE_REVOKED) {
    throw new EntryError(`entry is a ${KINDS[entry.kind]}, not a device key statement`);
  }
  const doc = decoded(entry.body, EntryError, "device key statement");
  const registration = entry.kind === DEVICE_REGISTERED;
  const fields = registration ? ["device", "key", "patient"] : ["device", "key"];
  if (!hasKeys(doc, fields)) throw new EntryError(`a device key statement is a map of ${fields}`);
  const [device, key, patient] = fields.map((f) => doc.get(f));
  if (typeof device !== "string" || !DEVICE_ID.test(device)) {
    throw new EntryError("device key statement names no valid device");
  }
  if (!(key instanceof Uint8Array) || key.length !== PUBLIC_KEY_SIZE) {
    throw new EntryError(`device key must be ${PUBLIC_KEY_SIZE} bytes`);
  }
  if (registration && (typeof patient !== "string" || !DEVICE_ID.test(patient))) {
    throw new EntryError("a registration names the patient the device is bound to");
  }
  if (!equalBytes(encode(registration ? { device, key, patient } : { device, key }), entry.body)) {
    throw new EntryError("device key statement is not deterministically encoded");
  }
  return { kind: entry.kind, device, key, patient };
}

function sample(raw) {
  if (!hasKeys(raw, ["code", "unit", "value", "time"])) {
    throw new ReadingError("each sample must be a map with keys code, time, unit, value");
  }
  const [code, unit, value, time] = ["code", "unit", "value", "time"].map((k) => raw.get(k));
  if (typeof value === "bigint") {
    throw new ReadingError("a whole sample value from 2**53 up is written as a float");
  }
  if (typeof value !== "number") throw new ReadingError("sample value must be a number");
  if (typeof code !== "string" || typeof unit !== "string") {
    throw new ReadingError("sample code and unit must be text");
  }
  if (!isInt(time)) throw new ReadingError("time must be an integer");
  if (!LOINC.test(code)) throw new ReadingError("sample code must be a LOINC code like 8867-4");
  if (!UNIT.test(unit)) {
    throw new ReadingError("sample unit must be a UCUM unit of printable ASCII");
  }
  if (!Number.isFinite(value)) {
    throw new ReadingError("sample value must be finite (no NaN or infinity)");
  }
  if (!(BigInt(time) >= 0n && BigInt(time) <= MAX_TIME_MS)) {
    throw new ReadingError("sample time must be milliseconds since the Unix epoch");
  }
  return { code, unit, value, time };
}

/** The signed reading {device, seq, samples} and an optional battery, a whole percent 0..100
 * (devices/reading.py decode_reading). */
function decodeReading(payload) {
  const doc = decoded(payload, ReadingError, "payload");
  const fields = doc instanceof Map && doc.has("battery")
    ? ["battery", "device", "seq", "samples"]
    : ["device", "seq", "samples"];
  if (!hasKeys(doc, fields)) {
    throw new ReadingError(
      "payload must be a map with keys device, samples, seq and optionally battery",
    );
  }
  const [device, seq, samples] = ["device", "seq", "samples"].map((k) => doc.get(k));
  if (typeof device !== "string" || !DEVICE_ID.test(device)) {
    throw new ReadingError("device must be 1-64 characters of [A-Za-z0-9._-]");
  }
  if (!Array.isArray(samples) || samples.length < 1 || samples.length > MAX_SAMPLES) {
    throw new ReadingError(`samples must be an array of 1 to ${MAX_SAMPLES} samples`);
  }
  const battery = doc.get("battery");
  if (battery !== undefined && !isInt(battery)) {
    throw new ReadingError("battery must be an integer");
  }
  if (!isInt(seq)) throw new ReadingError("seq must be an integer");
  const reading = { device, seq, samples: samples.map(sample) };
  if (!(BigInt(seq) >= 0n && BigInt(seq) <= MAX_SEQ)) {
    throw new ReadingError(`seq must be in [0, ${MAX_SEQ}]`);
  }
  if (battery !== undefined) {
    if (!(BigInt(battery) >= 0n && BigInt(battery) <= 100n)) {
      throw new ReadingError("battery must be a whole percent in [0, 100]");
    }
    reading.battery = Number(battery);
  }
  if (!equalBytes(encode(reading), payload)) {
    throw new ReadingError("payload is not deterministically encoded CBOR (RFC 8949 4.2)");
  }
  return reading;
}

function signedReading(bundle) {
  const entry = decodeEntry(bundle.reading.entry);
  if (entry.kind !== READING) {
    throw new EntryError(`entry is a ${KINDS[entry.kind]}, not a reading`);
  }
  return parseSign1(entry.body);
}

function registrationOf(bundle) {
  const statement = deviceKeyStatement(decodeEntry(bundle.registration.entry));
  if (statement.kind !== DEVICE_REGISTERED) {
    throw new EntryError("the key registration entry is a revocation");
  }
  return statement;
}

// ---- the checks (ledger/verifier.py) ----

async function checkCheckpoint(bundle, policy, report) {
  const [note] = await openNote(bundle.reading.proof.checkpointNote, [policy.ledgerKey]);
  const checkpoint = parseCheckpoint(note.text);
  if (checkpoint.origin !== policy.ledgerKey.name) {
    throw new CheckpointError(
      `checkpoint origin ${JSON.stringify(checkpoint.origin)} is not the pinned log`,
    );
  }
  for (const [name, proven] of bundle.proven.slice(1)) {
    if (parseNote(proven.proof.checkpointNote).text !== note.text) {
      throw new CheckpointError(`the ${name} is proven against another checkpoint`);
    }
  }
  report.checkpoint = {
    origin: checkpoint.origin,
    size: number(checkpoint.size),
    root: checkpoint.rootBase64,
  };
  return `${checkpoint.origin} at tree size ${checkpoint.size}, signed by the pinned key`;
}

async function checkCosignatures(bundle, policy) {
  const note = bundle.reading.proof.checkpointNote;
  const cosigned = [];
  for (const witness of policy.witnesses) {
    if ((await cosignedAt(witness, note)) !== null) cosigned.push(witness.name);
  }
  if (cosigned.length < policy.quorum) {
    throw new QuorumShort(
      `${cosigned.length} of the pinned witnesses cosigned (${cosigned.join(", ") || "none"});` +
        ` the policy needs ${policy.quorum}`,
    );
  }
  return `cosigned by ${cosigned.length} of ${policy.witnesses.length}: ${cosigned.join(", ")}`;
}

async function checkDeviceKey(bundle) {
  const message = signedReading(bundle);
  const registration = registrationOf(bundle);
  if (!equalBytes(await keyId(registration.key), message.kid)) {
    throw new CheckFailed("the registered key is not the key the reading names");
  }
  const index = bundle.reading.proof.index;
  const registeredAt = bundle.registration.proof.index;
  if (registeredAt >= index) {
    throw new CheckFailed(`the key was registered at entry ${registeredAt}, after the reading`);
  }
  if (bundle.revocation !== undefined) {
    const revocation = deviceKeyStatement(decodeEntry(bundle.revocation.entry));
    if (revocation.kind !== DEVICE_REVOKED || !equalBytes(revocation.key, registration.key)) {
      throw new EntryError("the key revocation entry does not revoke this key");
    }
    const revokedAt = bundle.revocation.proof.index;
    if (revokedAt < index) {
      throw new CheckFailed(`the key was revoked at entry ${revokedAt}, before the reading`);
    }
  }
  const owner = `${registration.device} (patient ${registration.patient})`;
  return `the key of ${owner}, registered at entry ${registeredAt}`;
}

async function checkDeviceSignature(bundle, report) {
  const message = signedReading(bundle);
  const registration = registrationOf(bundle);
  if (!equalBytes(await keyId(registration.key), message.kid)) {
    throw new ReadingError("the message kid does not name this device key");
  }
  const signed = toBeSigned(message.protected, message.payload);
  if (!(await verifyEd25519(registration.key, message.signature, signed))) {
    throw new ReadingError("the Ed25519 signature does not verify");
  }
  const reading = decodeReading(message.payload);
  if (reading.device !== registration.device) {
    throw new CheckFailed(
      `the reading names device ${reading.device}, the key ${registration.device}`,
    );
  }
  report.reading = {
    device: reading.device,
    seq: number(reading.seq),
    samples: reading.samples.map((s) => ({ ...s, time: number(s.time) })),
    ...(reading.battery === undefined ? {} : { battery: reading.battery }),
  };
  return `reading ${reading.device}#${reading.seq} signed by the registered key`;
}

async function checkInclusion(bundle) {
  for (const [name, proven] of bundle.proven) {
    const checkpoint = parseCheckpoint(parseNote(proven.proof.checkpointNote).text);
    try {
      const { index, hashes } = proven.proof;
      await verifyInclusion(
        await hashLeaf(proven.entry),
        index,
        checkpoint.size,
        hashes,
        checkpoint.root,
      );
    } catch (error) {
      if (error instanceof VerificationError) {
        throw new VerificationError(`${name}: ${error.message}`);
      }
      throw error;
    }
  }
  const checkpoint = parseCheckpoint(parseNote(bundle.reading.proof.checkpointNote).text);
  return `entry ${bundle.reading.proof.index} is in the tree of size ${checkpoint.size}`;
}

/** A BigInt as a Number when that is exact. */
function number(value) {
  return typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value;
}

/** A failed check: the refusal's reason, or "internal error" for a bug (fail safe, and say so
 * on the console). */
function failure(name, error) {
  if (VERDICTS.some((type) => error instanceof type)) {
    return { name, ok: false, detail: error.message };
  }
  console.error(`unexpected error in the ${name} check`, error);
  return { name, ok: false, detail: `internal error (${error?.name})` };
}

async function run(report, name, check) {
  try {
    report.checks.push({ name, ok: true, detail: await check() });
  } catch (error) {
    report.checks.push(failure(name, error));
    if (error instanceof QuorumShort) report.awaiting = name;
  }
}

/** The pinned keys as the checks use them; a TypeError or RangeError for keys that are not
 * keys or a quorum out of range (a mistake in the page, not a verdict on a bundle). */
async function policyOf({ ledgerKey, witnessKeys = [], quorum = witnessKeys.length }) {
  if (typeof ledgerKey !== "string") {
    throw new TypeError("ledgerKey: the ledger's verifier key, as text");
  }
  const witnesses = [];
  try {
    for (const key of witnessKeys) witnesses.push(await parseWitnessKey(key));
    return {
      ledgerKey: await parseVerifierKey(ledgerKey),
      witnesses,
      quorum: checkQuorum(quorum, witnesses),
    };
  } catch (error) {
    if (error instanceof NoteError) throw new TypeError(`a pinned key: ${error.message}`);
    throw error;
  }
}

function checkQuorum(quorum, witnesses) {
  if (!Number.isInteger(quorum) || quorum < 0 || quorum > witnesses.length) {
    throw new RangeError(`a quorum of ${quorum} of ${witnesses.length} witnesses`);
  }
  return quorum;
}

/** The report with its status: verified, pending (only witnesses missing), or failed,
 * naming the first check that failed for another reason. */
function conclude(report) {
  const failed = report.checks.filter((c) => !c.ok);
  const awaiting = failed.find((c) => c.name === report.awaiting);
  const broken = failed.find((c) => c !== awaiting);
  delete report.awaiting;
  if (broken) {
    return {
      ...report,
      status: "failed",
      failed: broken.name,
      reason: `${broken.name}: ${broken.detail}`,
    };
  }
  if (awaiting) {
    return {
      ...report,
      status: "pending",
      failed: null,
      reason: `not yet witnessed: ${awaiting.detail}`,
    };
  }
  return {
    ...report,
    status: "verified",
    failed: null,
    reason: `all ${report.checks.length} checks pass`,
  };
}

/**
 * Check a proof bundle (the JSON text GET /api/v1/readings/{id}/proof answers, or its UTF-8
 * bytes) against pinned keys, as `vitaltrail verify` does; never throws on a bad bundle.
 *
 * bundle: the document, or null while the reading has none (the API answers 409: not sealed
 *   in a block with enough witness cosignatures yet).
 * keys: {ledgerKey: "<name>+<hash>+<base64>" (ledger.pub), witnessKeys: [witness.pub, ...],
 *   quorum: how many of them must have cosigned (default: all)}.
 *
 * Resolves to {status: "verified" | "pending" | "failed", reason, failed: the failing
 * check's name or null, checks: [{name, ok, detail}] in verify_bundle's order, index,
 * checkpoint: {origin, size, root}, reading: {device, seq, samples: [{code, unit, value,
 * time}]} as the device signed it (once its signature holds)}.
 */
export async function verifyBundle(bundle, keys) {
  const policy = await policyOf(keys);
  const report = { checks: [], reading: null, index: null, checkpoint: null };
  if (bundle === null || bundle === undefined) {
    return { ...report, status: "pending", failed: null, reason: "not sealed in a block yet" };
  }
  let parsed;
  try {
    parsed = parseBundle(bundle);
  } catch (error) {
    report.checks.push(failure("bundle format", error));
    return conclude(report);
  }
  report.index = number(parsed.reading.proof.index);
  await run(report, "checkpoint signature", () => checkCheckpoint(parsed, policy, report));
  if (policy.witnesses.length) {
    await run(report, "witness cosignatures", () => checkCosignatures(parsed, policy));
  }
  await run(report, "device key", () => checkDeviceKey(parsed));
  await run(report, "device signature", () => checkDeviceSignature(parsed, report));
  await run(report, "inclusion proof", () => checkInclusion(parsed));
  return conclude(report);
}
