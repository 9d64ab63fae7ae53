// The transparency log's formats, read in the browser exactly as the Python side reads them:
// C2SP signed notes and verifier keys (ledger/note.py), witness cosignatures
// (ledger/cosignature.py), checkpoints (ledger/checkpoint.py), tlog-proofs
// (ledger/tlog_proof.py) and RFC 9162 inclusion proofs (ledger/merkle.py). Each reader
// accepts what its Python twin accepts and throws its twin's error type for the rest, so a
// bundle is judged the same on both sides. Sizes and indices are BigInts (64-bit).

import { concat, equalBytes } from "./cbor.js";
import { hex } from "./cose.js";
import { verifyEd25519 } from "./ed25519.js";

const TEXT = new TextEncoder();
const HASH_SIZE = 32;
const MAX_UINT64 = (1n << 64n) - 1n;
const ALG_ED25519 = 0x01;
const ALG_COSIGNATURE_V1 = 0x04;
const SIGNATURE_PREFIX = "\u2014 ";
const MAX_NOTE_SIZE = 1 << 20;
const MAX_SIGNATURES = 100;
const PROOF_HEADER = "c2sp.org/tlog-proof@v1";
const MAX_PROOF_HASHES = 64;
const DECIMAL_U64 = /^(0|[1-9][0-9]{0,19})$/;
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// What Python's str.isspace() calls space (key names may not hold any).
const SPACE =
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" +
  "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

export class VerificationError extends Error {
  name = "VerificationError";
}
export class NoteError extends Error {
  name = "NoteError";
}
export class CheckpointError extends Error {
  name = "CheckpointError";
}
export class ProofFormatError extends Error {
  name = "ProofFormatError";
}

/** Base64 as Python 3.11's `base64.b64decode(text, validate=True)` reads it (binascii's
 * strict mode): the standard alphabet only, padding only at the end, none in front, and a
 * whole last group; bits beyond the last byte are ignored. `Failure` otherwise. */
export function decodeBase64(text, what, Failure = Error) {
  const fail = () => new Failure(`${what} is not valid base64`);
  if (text.startsWith("=")) throw fail();
  const out = [];
  let quad = 0;
  let left = 0;
  let pads = 0;
  let padding = false;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "=") {
      padding = true;
      if (quad >= 2 && quad + ++pads >= 4) {
        if (i + 1 < text.length) throw fail(); // data after the padding
        return Uint8Array.from(out);
      }
      continue;
    }
    const v = BASE64.indexOf(text[i]);
    if (v < 0 || padding) throw fail();
    if (quad === 1) out.push(((left << 2) | (v >> 4)) & 0xff);
    else if (quad === 2) out.push(((left << 4) | (v >> 2)) & 0xff);
    else if (quad === 3) out.push(((left << 6) | v) & 0xff);
    left = quad === 0 ? v : quad === 1 ? v & 0x0f : v & 0x03;
    quad = (quad + 1) % 4;
  }
  if (quad !== 0) throw fail();
  return Uint8Array.from(out);
}

function toBase64(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** How many code points `text` has (Python's len of a str). */
export function codePoints(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** The UTF-8 bytes of `text`; NoteError for a lone surrogate (a JSON "\ud800" escape). */
export function utf8(text) {
  if (!text.isWellFormed()) throw new NoteError("the note is not valid Unicode text");
  return TEXT.encode(text);
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// ---- RFC 9162 Merkle trees (ledger/merkle.py) ----

export function hashLeaf(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

function hashChildren(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** RFC 9162 2.1.3.2: resolves when `proof` takes the leaf at `index` of a tree of `size` to
 * `root`; VerificationError otherwise. */
export async function verifyInclusion(leafHash, index, size, proof, root) {
  const [i, n] = [BigInt(index), BigInt(size)];
  if (!(0n <= i && i < n)) throw new VerificationError(`index ${i} is beyond tree size ${n}`);
  if ([leafHash, root, ...proof].some((h) => h.length !== HASH_SIZE)) {
    throw new VerificationError(`every hash must be ${HASH_SIZE} bytes`);
  }
  let [fn, sn, r] = [i, n - 1n, leafHash];
  for (const p of proof) {
    if (sn === 0n) throw new VerificationError("inclusion proof is longer than the tree is deep");
    if (fn & 1n || fn === sn) {
      r = await hashChildren(p, r);
      while (!(fn & 1n) && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await hashChildren(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerificationError("inclusion proof is shorter than the tree is deep");
  if (!equalBytes(r, root)) {
    throw new VerificationError("inclusion proof does not lead to the checkpoint's root");
  }
}

// ---- C2SP signed notes and verifier keys (ledger/note.py, ledger/cosignature.py) ----

function checkName(name) {
  if (!name || [...name].some((c) => c === "+" || SPACE.includes(c))) {
    throw new NoteError(
      `key name ${JSON.stringify(name)} must be non-empty, without spaces or '+'`,
    );
  }
}

function checkText(text) {
  if (!text.endsWith("\n")) throw new NoteError("note text must end with a newline");
  if (text.includes("\n\n") || [...text].some((c) => c < " " && c !== "\n")) {
    throw new NoteError("note text must not hold blank lines or control characters");
  }
}

function stripSpace(text) {
  const chars = [...text];
  const space = (c) => SPACE.includes(c);
  while (chars.length && space(chars[0])) chars.shift();
  while (chars.length && space(chars[chars.length - 1])) chars.pop();
  return chars.join("");
}

/** The 4-byte key ID: SHA-256(name || 0x0A || alg || public key)[:4]. */
async function keyHash(name, publicKey, alg) {
  return (await sha256(concat(TEXT.encode(`${name}\n`), Uint8Array.of(alg), publicKey))).slice(
    0,
    4,
  );
}

/** A pinned key `<name>+<hex key ID>+<base64(alg || key)>` as {name, publicKey, keyHash}:
 * alg 0x01 for a log's key, 0x04 for a witness's. NoteError if it is not one. */
export async function parseVerifierKey(text, alg = ALG_ED25519) {
  const parts = stripSpace(text).split("+");
  if (parts.length < 3) throw new NoteError("a verifier key is <name>+<hash>+<base64 key>");
  const [name, hashHex, encoded] = [parts[0], parts[1], parts.slice(2).join("+")];
  checkName(name);
  const raw = decodeBase64(encoded, "verifier key", NoteError);
  if (raw.length !== 33 || raw[0] !== alg) {
    throw new NoteError(`only Ed25519 verifier keys (type 0x0${alg}, 32 bytes) are supported`);
  }
  const publicKey = raw.slice(1);
  const hash = await keyHash(name, publicKey, alg);
  if (hex(hash) !== hashHex.toLowerCase()) {
    throw new NoteError("the verifier key's hash does not match its name and key");
  }
  return { name, publicKey, keyHash: hash };
}

export function parseWitnessKey(text) {
  return parseVerifierKey(text, ALG_COSIGNATURE_V1);
}

/** A signed note split into {text, signatures: [{name, keyHash, signature}]}, unverified. */
export function parseNote(note) {
  if (note.length > MAX_NOTE_SIZE && codePoints(note) > MAX_NOTE_SIZE) {
    throw new NoteError("note is too large");
  }
  if (utf8(note).length > MAX_NOTE_SIZE) throw new NoteError("note is too large");
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) {
    throw new NoteError("a signed note is text, a blank line, and signature lines");
  }
  const text = note.slice(0, split + 1);
  checkText(text);
  const signatures = [];
  for (const line of note.slice(split + 2, -1).split("\n")) {
    if (!line.startsWith(SIGNATURE_PREFIX)) {
      throw new NoteError("every line after the blank line must be a signature line");
    }
    const parts = line.slice(SIGNATURE_PREFIX.length).split(" ");
    if (parts.length !== 2) throw new NoteError("a signature line is '— <name> <base64>'");
    const [name, encoded] = parts;
    checkName(name);
    const raw = decodeBase64(encoded, "signature", NoteError);
    if (raw.length < 5) {
      throw new NoteError("a signature is a 4-byte key hash and the signature bytes");
    }
    signatures.push({ name, keyHash: raw.slice(0, 4), signature: raw.slice(4) });
  }
  if (signatures.length > MAX_SIGNATURES) throw new NoteError("too many signatures");
  return { text, signatures };
}

/** The note and the pinned keys that signed it; NoteError when a pinned key's signature is
 * invalid or none signed. */
export async function openNote(note, verifiers) {
  const parsed = parseNote(note);
  const message = utf8(parsed.text);
  const signedBy = [];
  for (const sig of parsed.signatures) {
    for (const verifier of verifiers) {
      if (verifier.name !== sig.name || !equalBytes(verifier.keyHash, sig.keyHash)) continue;
      if (!(await verifyEd25519(verifier.publicKey, sig.signature, message))) {
        throw new NoteError(`the signature of ${sig.name} does not verify`);
      }
      if (!signedBy.includes(verifier)) signedBy.push(verifier);
    }
  }
  if (!signedBy.length) throw new NoteError("no signature from a pinned key");
  return [parsed, signedBy];
}

/** When `witness` cosigned `note` (C2SP tlog-cosignature/v1), or null if it did not; NoteError
 * for a cosignature of its key that does not verify. */
export async function cosignedAt(witness, note) {
  const parsed = parseNote(note);
  for (const sig of parsed.signatures) {
    if (sig.name !== witness.name || !equalBytes(sig.keyHash, witness.keyHash)) continue;
    if (sig.signature.length !== 8 + 64) {
      throw new NoteError(`the cosignature of ${witness.name} is not timestamp || signature`);
    }
    const stamp = new DataView(sig.signature.buffer, sig.signature.byteOffset).getBigUint64(0);
    const message = concat(TEXT.encode(`cosignature/v1\ntime ${stamp}\n`), utf8(parsed.text));
    if (!(await verifyEd25519(witness.publicKey, sig.signature.slice(8), message))) {
      throw new NoteError(`the cosignature of ${witness.name} does not verify`);
    }
    return stamp;
  }
  return null;
}

// ---- checkpoints and tlog-proofs (ledger/checkpoint.py, ledger/tlog_proof.py) ----

/** Checkpoint note text as {origin, size, root}; extension lines are allowed and ignored. */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new CheckpointError("checkpoint text must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((line) => line === "")) {
    throw new CheckpointError("a checkpoint is origin, tree size and root hash, one per line");
  }
  const [origin, size, root] = lines;
  if (!DECIMAL_U64.test(size) || BigInt(size) > MAX_UINT64) {
    throw new CheckpointError("the tree size is not a 64-bit decimal without leading zeroes");
  }
  const rootHash = decodeBase64(root, "root hash", CheckpointError);
  if (rootHash.length !== HASH_SIZE) {
    throw new CheckpointError(`root hash must be ${HASH_SIZE} bytes`);
  }
  return { origin, size: BigInt(size), root: rootHash, rootBase64: toBase64(rootHash) };
}

/** A C2SP tlog-proof as {index, hashes, checkpointNote}. */
export function parseTlogProof(text) {
  const split = text.indexOf("\n\n");
  if (split < 0) {
    throw new ProofFormatError("a tlog-proof is header lines, a blank line, then the checkpoint");
  }
  const lines = text.slice(0, split).split("\n");
  if (lines[0] !== PROOF_HEADER) {
    throw new ProofFormatError(`a tlog-proof starts with '${PROOF_HEADER}'`);
  }
  let pos = 1;
  if (lines.length > 1 && lines[1].startsWith("extra ")) {
    decodeBase64(lines[1].slice("extra ".length), "extra data", ProofFormatError);
    pos = 2;
  }
  const index = lines.length > pos && /^index (0|[1-9][0-9]{0,19})$/.exec(lines[pos]);
  if (!index) throw new ProofFormatError("expected a line 'index <n>'");
  if (BigInt(index[1]) > MAX_UINT64) {
    throw new ProofFormatError("the index is a 64-bit unsigned integer");
  }
  if (lines.length - pos - 1 > MAX_PROOF_HASHES) {
    throw new ProofFormatError(`an inclusion proof has at most ${MAX_PROOF_HASHES} hashes`);
  }
  const hashes = lines
    .slice(pos + 1)
    .map((line) => decodeBase64(line, "proof hash", ProofFormatError));
  if (hashes.some((h) => h.length !== HASH_SIZE)) {
    throw new ProofFormatError(`each proof hash is ${HASH_SIZE} bytes`);
  }
  return { index: BigInt(index[1]), hashes, checkpointNote: text.slice(split + 2) };
}
