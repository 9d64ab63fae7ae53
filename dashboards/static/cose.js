// The patient's signature, made in the browser: the canonical COSE_Sign1 of devices/cose.py
// (RFC 9052, alg EdDSA), its kid the RFC 9679 thumbprint of the key (devices/keys.py key_id):
//
//   tag 18 [ bstr({1: -8, 4: kid}), {}, bstr(payload), bstr(Ed25519 signature) ]
//
// signed over ["Signature1", protected, h'', payload]. The private key is a WebCrypto Ed25519
// key that never leaves the browser (made non-extractable); the server only verifies.

import { concat, encode } from "./cbor.js";

const ALG_EDDSA = -8;
const COSE_SIGN1_TAG = Uint8Array.of(0xd2); // tag 18, in its one-byte head

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
