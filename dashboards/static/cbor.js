// Deterministic CBOR (RFC 8949 section 4.2.1), the subset the consent statements, COSE and the
// ledger's entries use: unsigned and negative integers, floats, text and byte strings, arrays,
// and maps. A JS object is a map with text keys; a Map may have integer keys too (a COSE header
// or key). Every head is the shortest, every length definite, and map keys are sorted by the
// bytes of their encoding, so one value has one encoding: the same bytes the Python side
// (cbor2, canonical) writes. A number that is a safe integer is written as an integer, any
// other finite number as the shortest float that holds it exactly (devices/reading.py
// `_cbor_number`); a BigInt is a 64-bit integer.
//
// `decode` reads what these formats hold and nothing else (no tags, no indefinite lengths, a
// bounded nesting): a verifier decodes, checks, encodes again and compares bytes, as the
// Python decoders do, so an encoding that is not the deterministic one is refused by the
// comparison, not by the reader.

const TEXT = new TextEncoder();
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const MAX_UINT64 = (1n << 64n) - 1n;

export class CborError extends Error {
  name = "CborError";
}

function head(major, value) {
  if (typeof value === "bigint") {
    if (value < 0n || value > MAX_UINT64) throw new RangeError("CBOR: an argument is 64 bits");
    if (value <= BigInt(Number.MAX_SAFE_INTEGER)) return head(major, Number(value));
    const out = new Uint8Array(9);
    out[0] = (major << 5) | 27;
    new DataView(out.buffer).setBigUint64(1, value);
    return out;
  }
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

export function equalBytes(a, b) {
  return compareBytes(a, b) === 0;
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

/** The 16 bits of binary16 holding `value` exactly, or null when none does. */
function halfBits(value) {
  const sign = value < 0 ? 0x8000 : 0;
  const a = Math.abs(value);
  if (a >= 65520) return null;
  if (a < 2 ** -14) {
    const m = a * 2 ** 24; // subnormal: a multiple of 2^-24
    return Number.isInteger(m) ? sign | m : null;
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  else if (2 ** (e + 1) <= a) e += 1;
  const m = a / 2 ** (e - 10); // 1024 <= m < 2048: 10 bits after the leading one
  return Number.isInteger(m) && e <= 15 ? sign | ((e + 15) << 10) | (m - 1024) : null;
}

function encodeFloat(value) {
  if (!Number.isFinite(value)) throw new TypeError("CBOR: only finite numbers");
  const half = halfBits(value);
  if (half !== null) return Uint8Array.of(0xf9, half >> 8, half & 0xff);
  if (Math.fround(value) === value) {
    const out = new Uint8Array(5);
    out[0] = 0xfa;
    new DataView(out.buffer).setFloat32(1, value);
    return out;
  }
  const out = new Uint8Array(9);
  out[0] = 0xfb;
  new DataView(out.buffer).setFloat64(1, value);
  return out;
}

/** The deterministic CBOR of `value` as a Uint8Array; TypeError for what the subset lacks. */
export function encode(value) {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) return encodeFloat(value);
    return value >= 0 ? head(0, value) : head(1, -1 - value);
  }
  if (typeof value === "bigint") return value >= 0n ? head(0, value) : head(1, -1n - value);
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

function fromHalf(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  take(n) {
    if (n > this.bytes.length - this.pos) throw new CborError("CBOR: truncated");
    const at = this.pos;
    this.pos += n;
    return at;
  }

  /** The head's argument: a Number when it is a safe integer, else a BigInt. */
  argument(info) {
    if (info < 24) return info;
    if (info === 24) return this.bytes[this.take(1)];
    if (info === 25) return this.view.getUint16(this.take(2));
    if (info === 26) return this.view.getUint32(this.take(4));
    if (info === 27) {
      const value = this.view.getBigUint64(this.take(8));
      return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
    }
    throw new CborError("CBOR: indefinite lengths and reserved heads are not deterministic");
  }

  length(info) {
    const n = this.argument(info);
    if (typeof n === "bigint" || n > this.bytes.length - this.pos) {
      throw new CborError("CBOR: a length beyond the data");
    }
    return n;
  }

  item(depth) {
    const initial = this.bytes[this.take(1)];
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (major === 7) return this.simple(info);
    if (major === 0) return this.argument(info);
    if (major === 1) {
      const n = this.argument(info);
      return typeof n === "bigint" || n === Number.MAX_SAFE_INTEGER ? -1n - BigInt(n) : -1 - n;
    }
    if (major === 2 || major === 3) {
      const n = this.length(info);
      const bytes = this.bytes.slice(this.pos, this.pos + n);
      this.pos += n;
      if (major === 2) return bytes;
      try {
        return UTF8.decode(bytes);
      } catch {
        throw new CborError("CBOR: a text string that is not UTF-8");
      }
    }
    if (major === 6) throw new CborError("CBOR: tags are not part of these formats");
    if (depth <= 0) throw new CborError("CBOR: nested too deep");
    const n = this.length(info);
    if (major === 4) return Array.from({ length: n }, () => this.item(depth - 1));
    const map = new Map();
    for (let i = 0; i < n; i++) {
      const key = this.item(depth - 1);
      map.set(key, this.item(depth - 1));
    }
    return map;
  }

  simple(info) {
    if (info === 20) return false;
    if (info === 21) return true;
    if (info === 22) return null;
    if (info === 23) return undefined;
    if (info === 25) return fromHalf(this.view.getUint16(this.take(2)));
    if (info === 26) return this.view.getFloat32(this.take(4));
    if (info === 27) return this.view.getFloat64(this.take(8));
    throw new CborError("CBOR: a simple value these formats do not use");
  }
}

/** The value of one CBOR item filling `bytes`: integers as Numbers (BigInts past 2^53 - 1),
 * floats as Numbers, byte strings as Uint8Arrays, maps as Maps. CborError otherwise. */
export function decode(bytes, maxDepth = 8) {
  const reader = new Reader(bytes);
  const value = reader.item(maxDepth);
  if (reader.pos !== bytes.length) {
    throw new CborError(`CBOR: ${bytes.length - reader.pos} bytes after the item`);
  }
  return value;
}
