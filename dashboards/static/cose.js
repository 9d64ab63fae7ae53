// The patient's signature, made in the browser: the canonical COSE_Sign1 of devices/cose.py
// (RFC 9052, alg EdDSA), its kid the RFC 9679 thumbprint of the key (devices/keys.py key_id):
//
//   tag 18 [ bstr({1: -8, 4: kid}), {}, bstr(payload), bstr(Ed25519 signature) ]
//
// signed over ["Signature1", protected, h'', payload]. The private key is a WebCrypto Ed25519
// key that never leaves the browser (made non-extractable); the server only verifies.
//
// parseSign1 reads a message exactly as devices/cose.py parse_sign1 does: only that one byte
// layout, with the shortest heads and nothing before or after, is a message (another encoding
// of the same signature would be a second ledger entry for one reading).

import { concat, encode } from "./cbor.js";

const ALG_EDDSA = -8;
const COSE_SIGN1_TAG = Uint8Array.of(0xd2); // tag 18, in its one-byte head
const MAX_KID_SIZE = 64;
const MAX_MESSAGE_SIZE = 64 * 1024;
const SIGNATURE_SIZE = 64;
const MESSAGE_HEAD = [0xd2, 0x84]; // tag 18, array(4)
const PROTECTED_HEAD = [0xa2, 0x01, 0x27, 0x04]; // map(2), 1: -8, 4: (the kid follows)
const EMPTY_MAP = 0xa0;
const SIGNATURE_HEAD = [0x58, SIGNATURE_SIZE];

export class CoseError extends Error {
  name = "CoseError";
}

/** The key's COSE kid: SHA-256 over the deterministic CBOR of {1: 1, -1: 6, -2: x}. */
export async function keyId(publicRaw) {
  const coseKey = encode(new Map([[1, 1], [-1, 6], [-2, publicRaw]]));
  return new Uint8Array(await crypto.subtle.digest("SHA-256", coseKey));
}

export function protectedHeader(kid) {
  return encode(new Map([[1, ALG_EDDSA], [4, kid]]));
}

export function toBeSigned(protectedBytes, payload) {
  return encode(["Signature1", protectedBytes, new Uint8Array(0), payload]);
}

export function sign1Message(protectedBytes, payload, signature) {
  return concat(COSE_SIGN1_TAG, encode([protectedBytes, new Map(), payload, signature]));
}

/** Sign `payload` with a WebCrypto Ed25519 private key whose public key's kid is `kid`. */
export async function sign1(privateKey, kid, payload) {
  const protectedBytes = protectedHeader(kid);
  const signature = new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, privateKey, toBeSigned(protectedBytes, payload)),
  );
  return sign1Message(protectedBytes, payload, signature);
}

export function base64url(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function startsWith(data, pos, prefix) {
  return prefix.every((b, i) => data[pos + i] === b);
}

/** [the definite-length byte string at `pos` with the shortest head, where it ends], or null. */
function readBstr(data, pos) {
  if (pos >= data.length || data[pos] >> 5 !== 2) return null;
  const info = data[pos] & 0x1f;
  let length;
  let start;
  if (info < 24) {
    [length, start] = [info, pos + 1];
  } else if (info <= 27) {
    start = pos + 1 + (1 << (info - 24));
    if (start > data.length) return null;
    length = 0;
    for (let i = pos + 1; i < start; i++) length = length * 256 + data[i];
    const shortest = [24, 0x100, 0x10000, 0x100000000][info - 24];
    if (length < shortest) return null; // a shorter head would hold it
  } else {
    return null; // indefinite length or reserved
  }
  if (start + length > data.length) return null;
  return [data.subarray(start, start + length), start + length];
}

/** The parts of a message laid out canonically from the start of `data`, and where it ends. */
function readLayout(data) {
  if (!startsWith(data, 0, MESSAGE_HEAD)) return null;
  const prot = readBstr(data, MESSAGE_HEAD.length);
  if (prot === null || !startsWith(prot[0], 0, PROTECTED_HEAD)) return null;
  const kid = readBstr(prot[0], PROTECTED_HEAD.length);
  if (kid === null || kid[1] !== prot[0].length) return null;
  if (kid[0].length < 1 || kid[0].length > MAX_KID_SIZE) return null;
  if (data[prot[1]] !== EMPTY_MAP) return null;
  const payload = readBstr(data, prot[1] + 1);
  if (payload === null || !startsWith(data, payload[1], SIGNATURE_HEAD)) return null;
  const signature = readBstr(data, payload[1]);
  if (signature === null) return null;
  const message = { protected: prot[0], kid: kid[0], payload: payload[0], signature: signature[0] };
  return [message, signature[1]];
}

/** A canonically encoded COSE_Sign1 message as {protected, kid, payload, signature}, not yet
 * verified; CoseError naming what is wrong with anything else. */
export function parseSign1(data) {
  if (data.length > MAX_MESSAGE_SIZE) {
    throw new CoseError(`a COSE_Sign1 message is at most ${MAX_MESSAGE_SIZE} bytes`);
  }
  const read = readLayout(data);
  if (read !== null && read[1] === data.length) return read[0];
  if (read !== null) {
    throw new CoseError(`${data.length - read[1]} bytes after the COSE_Sign1 message`);
  }
  if (startsWith(data, 0, [0xd9, 0xd9, 0xf7])) {
    throw new CoseError("tag 55799 in front of the message: only tag 18 is allowed");
  }
  if (data[0] !== COSE_SIGN1_TAG[0]) {
    throw new CoseError("not a tagged COSE_Sign1 message (CBOR tag 18)");
  }
  throw new CoseError(
    "not the canonical COSE_Sign1 encoding: tag 18, the protected header {1: -8, 4: kid}," +
      " an empty unprotected map, the payload and a 64-byte signature, shortest heads",
  );
}
