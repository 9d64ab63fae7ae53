// Ed25519 signature checks (RFC 8032) with WebCrypto, which Chromium ships: the device's
// signature on a reading, the ledger's on a checkpoint, a witness's cosignature.

const PUBLIC_KEY_SIZE = 32;
const SIGNATURE_SIZE = 64;

/** Whether `signature` is the Ed25519 signature of `message` by the raw 32-byte `publicKey`. */
export async function verifyEd25519(publicKey, signature, message) {
  if (publicKey.length !== PUBLIC_KEY_SIZE || signature.length !== SIGNATURE_SIZE) return false;
  let key;
  try {
    key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    if (error.name === "DataError") return false; // not a key: nothing it could have signed
    throw error; // no Ed25519 in this browser: not a verdict on the signature
  }
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}
