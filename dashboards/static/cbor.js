// Deterministic CBOR (RFC 8949 section 4.2.1), the subset the consent statements and COSE use:
// unsigned and negative integers, text and byte strings, arrays, and maps. A JS object is a
// map with text keys; a Map may have integer keys too (a COSE header or key). Every head is the
// shortest, every length definite, and map keys are sorted by the bytes of their encoding, so
// one value has one encoding: the same bytes access/fields.py (cbor2, canonical) writes.

const TEXT = new TextEncoder();

function head(major, value) {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError("CBOR: an argument is a safe non-negative integer");
  }
  const top = major << 5;
  if (value < 24) return Uint8Array.of(top | value);
  if (value < 0x100) return Uint8Array.of(top | 24, value);
  if (value < 0x10000) return Uint8Array.of(top | 25, value >> 8, value & 0xff);
  if (value < 0x100000000) {
    const out = new Uint8Array(5);
    out[0] = top | 26;
    new DataView(out.buffer).setUint32(1, value);
    return out;
  }
  const out = new Uint8Array(9);
  out[0] = top | 27;
  const view = new DataView(out.buffer);
  view.setUint32(1, Math.floor(value / 0x100000000));
  view.setUint32(5, value % 0x100000000);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

function encodeMap(entries) {
  const encoded = entries.map(([k, v]) => [encode(k), encode(v)]);
  encoded.sort((x, y) => compareBytes(x[0], y[0]));
  for (let i = 1; i < encoded.length; i++) {
    if (compareBytes(encoded[i - 1][0], encoded[i][0]) === 0) {
      throw new TypeError("CBOR: a map has a key twice");
    }
  }
  return concat(head(5, encoded.length), ...encoded.flat());
}

/** The deterministic CBOR of `value` as a Uint8Array; TypeError for what the subset lacks. */
export function encode(value) {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError("CBOR: only safe integers");
    return value >= 0 ? head(0, value) : head(1, -1 - value);
  }
  if (typeof value === "string") {
    const bytes = TEXT.encode(value);
    return concat(head(3, bytes.length), bytes);
  }
  if (value instanceof Uint8Array) return concat(head(2, value.length), value);
  if (Array.isArray(value)) return concat(head(4, value.length), ...value.map(encode));
  if (value instanceof Map) return encodeMap([...value.entries()]);
  if (value !== null && typeof value === "object") {
    // a field whose value is undefined is left out, as dump_map leaves out None
    return encodeMap(Object.entries(value).filter(([, v]) => v !== undefined));
  }
  throw new TypeError(`CBOR: cannot encode ${value === null ? "null" : typeof value}`);
}
