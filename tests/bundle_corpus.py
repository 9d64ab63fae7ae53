"""Proof bundles to judge a verifier by, each with the policy it is checked against.

Genuine bundles of a populated ledger and every tampering the Python verifier's own tests use
(tests/test_verify.py, tests/test_hostile_bundle.py); witnessed, unwitnessed and forged
cosignatures; non-canonical COSE envelopes (tests/noncanonical.py), ledger entries, key
registrations and readings that are *logged*, so that their inclusion proof holds and only
their encoding is wrong; and seeded random mutations. The browser's verifier
(dashboards/static/verify.js) must give each the verdict ``verify_bundle`` gives.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cbor2

from dashboards.bundles import proof_bundle_for
from devices.cose import sign1
from ledger.appends import EntryKey, NewEntry
from ledger.bundle import ProofBundle, ProvenEntry
from ledger.cosignature import Cosigner
from ledger.entries import EntryKind, LedgerEntry
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteSigner, NoteVerifier, sign_note
from ledger.tlog_proof import TlogProof
from ledger.verifier import Policy
from tests.noncanonical import copies, resigned
from tests.test_hostile_bundle import HOSTILE
from tests.test_verify import _ledger_in_order
from vitaltrail.bench.fuzz_corpus import DEVICE, NOW_MS, corpus
from vitaltrail.settings import Settings


@dataclass(frozen=True)
class Case:
    name: str
    document: bytes
    policy: Policy
    as_bytes: bool = False  # hand the verifiers the bytes, not the text

    def keys(self) -> dict[str, object]:
        """The policy as verify.js takes it."""
        return {
            "ledgerKey": str(self.policy.ledger_key),
            "witnessKeys": [str(w) for w in self.policy.witnesses],
            "quorum": self.policy.quorum,
        }


def cases(settings: Settings, work: Path) -> list[Case]:
    """Every case, in a fixed order (the random ones are seeded)."""
    key = NoteVerifier.parse(settings.ledger_key_path.with_suffix(".pub").read_text())
    reader = LedgerReader(settings.ledger_path)
    try:
        blocks = reader.blocks.all()
        genuine = [proof_bundle_for(reader, i) for i in range(3, blocks[-1].tree_size)]
        earlier = blocks[0]
        stale_registration = ProvenEntry(
            genuine[0].key_registration.entry, reader.tlog_proof(0, earlier)
        )
    finally:
        reader.close()
    made = [Case(f"genuine #{i}", _doc(b), Policy(key)) for i, b in enumerate(genuine)]
    made += _tampered(genuine[0], genuine[1], stale_registration, key)
    made += _witnessed(genuine[0], key)
    made += _in_order(work / "in-order")
    made += _fuzz_corpus()
    made += _documents(corpus().bundles[-1])
    made += _checkpoints(corpus().bundles[-1])
    made += _logged(work / "crafted.db")
    made += _random(corpus().bundles[-1], _fuzz_policy(), random.Random(11))
    return made


def _doc(bundle: ProofBundle) -> bytes:
    return bundle.to_json().encode()


def _with_reading(
    bundle: ProofBundle,
    entry: bytes | None = None,
    *,
    proof: TlogProof | None = None,
) -> bytes:
    reading = ProvenEntry(
        bundle.reading.entry if entry is None else entry, proof or bundle.reading.proof
    )
    return _doc(dataclasses.replace(bundle, reading=reading))


def _flip(data: bytes, at: int, bit: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[at] ^= bit
    return bytes(changed)


def _notes(bundle: ProofBundle, change: Callable[[str], str]) -> bytes:
    """The bundle with every proof's checkpoint note passed through ``change``."""

    def changed(p: ProvenEntry) -> ProvenEntry:
        note = change(p.proof.checkpoint_note)
        return ProvenEntry(p.entry, dataclasses.replace(p.proof, checkpoint_note=note))

    return _doc(ProofBundle(*(changed(p) for _, p in bundle.proven)))


def _text_of(note: str) -> str:
    return note[: note.index("\n\n") + 1]


def _flip_signature(note: str, line: int = 0, at: int = 10) -> str:
    """The note with one bit of its ``line``-th signature's bytes flipped."""
    text, block = note[: note.index("\n\n") + 2], note[note.index("\n\n") + 2 :]
    lines = block.splitlines(keepends=True)
    head, encoded = lines[line].rsplit(" ", 1)
    raw = _flip(base64.b64decode(encoded), at)
    lines[line] = f"{head} {base64.b64encode(raw).decode()}\n"
    return text + "".join(lines)


def _larger_size(note: str) -> str:
    origin, size, rest = note.split("\n", 2)
    return f"{origin}\n{size}0\n{rest}"


def _tampered(
    bundle: ProofBundle, other: ProofBundle, stale: ProvenEntry, key: NoteVerifier
) -> list[Case]:
    entry, proof = bundle.reading.entry, bundle.reading.proof
    note = proof.checkpoint_note
    impostor = NoteSigner.generate(key.name)
    doc = json.loads(bundle.to_json())
    as_own_registration = json.dumps({**doc, "key_registration": doc["reading"]}).encode()
    as_revocation = json.dumps({**doc, "key_revocation": doc["key_registration"]}).encode()
    root_line = note.split("\n")[2]

    def proven_by(changed: TlogProof) -> bytes:
        return _with_reading(bundle, proof=changed)

    other_root = base64.b64encode(_flip(base64.b64decode(root_line), 5)).decode()
    documents = {
        "a changed reading payload": _with_reading(bundle, _flip(entry, len(entry) - 70)),
        "a flipped device signature": _with_reading(bundle, _flip(entry, len(entry) - 1, 0x80)),
        "another device's registration": _doc(
            dataclasses.replace(bundle, key_registration=other.key_registration)
        ),
        "the reading as its own registration": as_own_registration,
        "the registration as a revocation": as_revocation,
        "a registration proven against an earlier checkpoint": _doc(
            dataclasses.replace(bundle, key_registration=stale)
        ),
        "a checkpoint signed by an impostor": _notes(
            bundle, lambda n: sign_note(_text_of(n), impostor)
        ),
        "a flipped checkpoint signature": _notes(bundle, _flip_signature),
        "a flipped checkpoint signature, reading's proof only": proven_by(
            replace(proof, checkpoint_note=_flip_signature(note))
        ),
        "a flipped root": _notes(bundle, lambda n: n.replace(root_line, other_root)),
        "a larger tree size": _notes(bundle, _larger_size),
        "the index plus one": proven_by(replace(proof, index=proof.index + 1)),
        "a flipped proof hash": proven_by(
            replace(proof, hashes=(_flip(proof.hashes[0], 3), *proof.hashes[1:]))
        ),
        "a zero proof hash": proven_by(replace(proof, hashes=(bytes(32), *proof.hashes[1:]))),
        "a proof hash short": proven_by(replace(proof, hashes=proof.hashes[:-1])),
        "a proof hash too many": proven_by(replace(proof, hashes=(*proof.hashes, bytes(32)))),
        "an index beyond the tree": proven_by(replace(proof, index=10**6)),
        "an empty document": b"",
        "an empty object": b"{}",
        "an array": b"[]",
        "not JSON": b"not json",
        "the old format": json.dumps({"format": "vitaltrail/proof-bundle@v1"}).encode(),
    }
    made = [Case(name, d, Policy(key)) for name, d in documents.items()]
    wrong = NoteSigner.generate(key.name).verifier
    made.append(Case("a wrong ledger key", _doc(bundle), Policy(wrong)))
    made.append(Case("another log's key", _doc(bundle), Policy(corpus().ledger_key.verifier)))
    return made


def _cosigned(bundle: ProofBundle, lines: str) -> ProofBundle:
    def with_lines(p: ProvenEntry) -> ProvenEntry:
        note = p.proof.checkpoint_note + lines
        return ProvenEntry(p.entry, dataclasses.replace(p.proof, checkpoint_note=note))

    return ProofBundle(*(with_lines(p) for _, p in bundle.proven))


def _witnessed(bundle: ProofBundle, key: NoteVerifier) -> list[Case]:
    w1, w2, w3 = (Cosigner.generate(f"witness.test/w{i}") for i in (1, 2, 3))
    pinned = (w1.verifier, w2.verifier, w3.verifier)
    text = _text_of(bundle.reading.proof.checkpoint_note)
    two = _cosigned(bundle, w1.cosign(text, 1_763_700_000) + w2.cosign(text, 1_763_700_001))
    forged = _cosigned(bundle, w3.cosign("another.example/log\n1\n" + "A" * 43 + "=\n"))
    flipped = _cosigned(bundle, _flip_signature("x\n\n" + w1.cosign(text), at=30)[3:])
    short = _cosigned(
        bundle, f"— {w1.name} {base64.b64encode(w1.verifier.key_hash + bytes(64)).decode()}\n"
    )
    tampered = _with_reading(bundle, _flip(bundle.reading.entry, len(bundle.reading.entry) - 1))
    return [
        Case("cosigned by 2 of 3, quorum 2", _doc(two), Policy(key, pinned, 2)),
        Case("cosigned by 2 of 3, quorum 3", _doc(two), Policy(key, pinned, 3)),
        Case("not cosigned, quorum 1", _doc(bundle), Policy(key, pinned, 1)),
        Case("not cosigned, quorum 0", _doc(bundle), Policy(key, pinned, 0)),
        Case("not cosigned, a tampered reading", tampered, Policy(key, pinned, 1)),
        Case("a cosignature of another checkpoint", _doc(forged), Policy(key, pinned, 1)),
        Case("a flipped cosignature", _doc(flipped), Policy(key, pinned, 1)),
        Case("a cosignature without its timestamp", _doc(short), Policy(key, pinned, 0)),
        Case("cosigned by unpinned witnesses", _doc(two), Policy(key, (w3.verifier,), 1)),
    ]


def _in_order(work: Path) -> list[Case]:
    """Registrations and revocations logged around the reading (test_verify's forged logs)."""
    made = []
    orders = [
        (["reading", "registration"], 0),
        (["registration", "revocation", "reading"], 2),
        (["registration", "reading", "revocation"], 1),
    ]
    for k, (order, index) in enumerate(orders):
        (work / str(k)).mkdir(parents=True)
        reader, key = _ledger_in_order(work / str(k), order)
        made.append(Case(" then ".join(order), _doc(proof_bundle_for(reader, index)), Policy(key)))
        reader.close()
    return made


def _fuzz_policy() -> Policy:
    c = corpus()
    return Policy(c.ledger_key.verifier, (c.witness.verifier,), 1)


def _fuzz_corpus() -> list[Case]:
    made = [Case(f"fuzz corpus #{i}", b, _fuzz_policy()) for i, b in enumerate(corpus().bundles)]
    made += [Case(f"hostile: {name}", d, _fuzz_policy()) for name, d in sorted(HOSTILE.items())]
    return made


def _documents(genuine: bytes) -> list[Case]:
    """JSON as Python reads it and JSON.parse does not quite, and tlog-proof lines."""
    text = genuine.decode()
    policy = _fuzz_policy()

    def field(value: str) -> bytes:
        return text.replace('"format"', f'"x": {value}, "format"', 1).encode()

    proof = json.loads(text)["reading"]["proof"]

    def proof_with(old: str, new: str) -> bytes:
        doc = json.loads(text)
        doc["reading"]["proof"] = proof.replace(old, new, 1)
        return json.dumps(doc).encode()

    index_line = proof.split("\n")[1]
    documents = {
        "NaN in a field of its own": field("NaN"),
        "-Infinity in a field of its own": field("[-Infinity, Infinity]"),
        "NaN for the revocation": text.replace(
            '"key_revocation": {', '"key_revocation": NaN, "y": {'
        ).encode(),
        "NaN as text": field('"NaN Infinity"'),
        "an integer of 4300 digits": field("9" * 4300),
        "an integer of 4301 digits": field("-" + "9" * 4301),
        "a float of 5000 digits": field("0." + "9" * 5000),
        "an exponent of 400": field("1e400"),
        "a key twice, the genuine last": text.replace(
            '"reading": {', '"reading": 1, "reading": {'
        ).encode(),
        "a key twice, the genuine first": text.replace('"format"', '"x": 1, "format"')
        .replace("\n}", ', "reading": 2\n}')
        .encode(),
        "a BOM in front of the text": "\ufeff".encode() + genuine,
        "over a MiB": genuine[:-2] + b" " * (1 << 20) + b"}\n",
        "a MiB of astral characters in a field": field('"' + "\U0001f600" * 300_000 + '"'),
        "extra data in the proof": proof_with("\nindex", "\nextra QUJD\nindex"),
        "extra data that is not base64": proof_with("\nindex", "\nextra QUJD=\u00e9\nindex"),
        "the largest index": proof_with(index_line, "index 18446744073709551615"),
        "an index past 64 bits": proof_with(index_line, "index 18446744073709551616"),
        "an index with a leading zero": proof_with(index_line, "index 07"),
        "65 proof hashes": proof_with(index_line, index_line + ("\n" + "A" * 43 + "=") * 65),
        "a proof hash of 31 bytes": proof_with(index_line, index_line + "\n" + "A" * 40 + "=="),
    }
    made = [Case(f"document: {name}", d, policy) for name, d in documents.items()]
    made.append(
        Case("document: a BOM in front of the bytes", "\ufeff".encode() + genuine, policy, True)
    )
    return made


def _checkpoints(genuine: bytes) -> list[Case]:
    """Checkpoints the pinned key really signed, with what a checkpoint must not hold."""
    c = corpus()
    signer = c.ledger_key
    bundle = ProofBundle.from_json(genuine)
    text = _text_of(bundle.reading.proof.checkpoint_note)
    origin, size, root, _ = text.split("\n")
    line = signer.signature_line

    def stranger(name: str) -> str:
        """A signature line of a key nobody pinned (so never checked), named ``name``."""
        return f"— {name} {base64.b64encode(bytes(range(68))).decode()}\n"

    def flipped(note: str) -> str:
        return _flip_signature(note)

    notes = {
        "an extension line": sign_note(text + "extension line\n", signer),
        "a size with a leading zero": sign_note(f"{origin}\n0{size}\n{root}\n", signer),
        "a root of 31 bytes": sign_note(f"{origin}\n{size}\n{'A' * 40}==\n", signer),
        "an empty line": text + "\n" + line(text).replace("\n", "\n\n"),
        "another origin": sign_note(f"other.example/log\n{size}\n{root}\n", signer),
        "an unknown second signer": sign_note(text, signer) + stranger("witness.example/x"),
        "a second signature of the pinned key, invalid": sign_note(text, signer)
        + flipped(sign_note(text, signer)).split("\n\n")[1],
        "101 signatures": sign_note(text, signer) + stranger("witness.example/x") * 100,
        "a tab in the text": text.replace("\n", "\t\n", 1)
        + "\n"
        + line(text.replace("\n", "\t\n", 1)),
        "a key name with a space": sign_note(text, signer) + stranger("x").replace(" ", " a ", 1),
        "a key name with a no-break space": sign_note(text, signer) + stranger("a\u00a0b"),
        "a key name with a file separator": sign_note(text, signer) + stranger("a\x1cb"),
        "a key name with a next line": sign_note(text, signer) + stranger("a\x85b"),
        "a key name with a zero-width no-break space": sign_note(text, signer)
        + stranger("a\ufeffb"),
        "a key name with a plus": sign_note(text, signer) + stranger("a").replace("— a", "— a+b"),
        "a signature of four bytes": sign_note(text, signer) + "— x QUJDRA==\n",
        "no newline at the end": sign_note(text, signer)[:-1],
    }
    policy = Policy(signer.verifier)

    def with_note(note: str) -> bytes:
        def proven(p: ProvenEntry) -> ProvenEntry:
            return ProvenEntry(p.entry, dataclasses.replace(p.proof, checkpoint_note=note))

        return _doc(ProofBundle(*(proven(p) for _, p in bundle.proven)))

    return [Case(f"checkpoint: {name}", with_note(note), policy) for name, note in notes.items()]


# ---- logged entries: the inclusion proof holds, only the encoding is wrong ----


def _payloads() -> dict[str, bytes]:
    """Readings signed by the corpus device: deterministic ones, and every way to miss it."""

    def sample(value: object = 72, **more: object) -> dict[str, object]:
        return {"code": "8867-4", "unit": "/min", "value": value, "time": NOW_MS, **more}

    def reading(samples: object = None, **fields: object) -> dict[str, object]:
        return {
            "device": DEVICE,
            "seq": 7,
            "samples": [sample()] if samples is None else samples,
            **fields,
        }

    def valued(value: object, **more: object) -> dict[str, object]:
        return reading([sample(value, **more)])

    documents = {
        "a half-precision value": valued(72.5),
        "a double value": valued(36.6),
        "a tiny value": valued(1e-7),
        "a single-precision value": valued(1.5 + 2**-20),
        "a float from 2**53 up": valued(2.0**60),
        "a negative value": valued(-3),
        "the largest exact integer": valued(2**53 - 1),
        "the largest seq": reading(seq=2**63 - 1),
        "the last time": valued(1, time=2**53),
        "64 samples": reading([sample()] * 64),
        "a float 72.0": valued(72.0),
        "an integer from 2**53": valued(2**53),
        "a negative integer from 2**53": valued(-(2**53)),
        "NaN": valued(float("nan")),
        "infinity": valued(float("inf")),
        "a boolean value": valued(True),
        "no value": valued(None),
        "a text value": valued("72"),
        "a negative seq": reading(seq=-1),
        "a seq past 63 bits": reading(seq=2**63),
        "a float seq": reading(seq=7.0),
        "a time past 2**53": valued(1, time=2**53 + 1),
        "a negative time": valued(1, time=-1),
        "a float time": valued(1, time=float(NOW_MS)),
        "a bad code": reading([{**sample(), "code": "8867"}]),
        "a unit with a space": reading([{**sample(), "unit": "a b"}]),
        "an empty unit": reading([{**sample(), "unit": ""}]),
        "another device": reading(device="another-band"),
        "a bad device id": reading(device="bad id"),
        "no samples": reading([]),
        "65 samples": reading([sample()] * 65),
        "a battery level": reading(battery=87),
        "an empty battery": reading(battery=0),
        "a full battery": reading(battery=100),
        "a battery past 100": reading(battery=101),
        "a negative battery": reading(battery=-1),
        "a float battery": reading(battery=87.5),
        "a whole float battery": reading(battery=87.0),
        "a text battery": reading(battery="87"),
        "a boolean battery": reading(battery=True),
        "a bignum battery": reading(battery=2**64),
        "an extra field": reading(note="x"),
        "an extra sample field": valued(1, note="x"),
        "samples not an array": reading({"a": 1}),
        "a sample not a map": reading([[1, 2]]),
    }
    payloads = {name: bytes(cbor2.dumps(doc, canonical=True)) for name, doc in documents.items()}
    seven, half = payloads["a negative value"], payloads["a half-precision value"]
    payloads |= {
        "unsorted keys": bytes(cbor2.dumps(valued(1))),
        "a double where a half holds it": half.replace(
            cbor2.dumps(72.5, canonical=True), b"\xfb" + struct.pack(">d", 72.5)
        ),
        "a long seq head": seven.replace(b"\x63seq\x07", b"\x63seq\x1b" + (7).to_bytes(8, "big")),
        "a bignum seq": seven.replace(b"\x63seq\x07", b"\x63seq\xc2\x41\x07"),
        "an indefinite array": seven.replace(b"\x67samples\x81", b"\x67samples\x9f") + b"\xff",
        "a trailing byte": seven + b"\x00",
        "not CBOR": b"\xff\xfe",
        "a duplicate key": b"\xa4" + seven[1:] + b"\x63seq\x07",
    }
    return payloads


def _leaf(body: bytes, kind: EntryKind = EntryKind.READING) -> bytes:
    return LedgerEntry(kind, NOW_MS, body).encode()


def _entries() -> dict[str, bytes]:
    """Leaves around the genuine message that are not well-formed reading entries."""
    message = corpus().messages[0]
    leaf = _leaf(message)
    return {
        "a long kind head": b"\x83\x18\x01" + leaf[2:],
        "a float kind": b"\x83\xf9\x3c\x00" + leaf[2:],
        "a text body": b"\x83\x01" + leaf[2:11] + b"\x78" + leaf[12:],
        "four items": b"\x84" + leaf[1:] + b"\x00",
        "an unknown kind": b"\x83\x0a" + leaf[2:],
        "a registration's kind": _leaf(message, EntryKind.DEVICE_REGISTERED),
        "a trailing byte": leaf + b"\x00",
        "an indefinite array": b"\x9f" + leaf[1:] + b"\xff",
    }


def _registrations() -> dict[str, bytes]:
    """Key registration leaves: the genuine one, and ones the verifiers must refuse."""
    key = corpus().signer.key.public_bytes

    def registered(doc: dict[str, object], kind: EntryKind = EntryKind.DEVICE_REGISTERED) -> bytes:
        return _leaf(bytes(cbor2.dumps(doc, canonical=True)), kind)

    fields: dict[str, object] = {"device": DEVICE, "key": key, "patient": "p-1"}
    unsorted = cbor2.dumps({"patient": "p-1", "device": DEVICE, "key": key})
    return {
        "the registration": registered(fields),
        "unsorted": _leaf(bytes(unsorted), EntryKind.DEVICE_REGISTERED),
        "an extra field": registered({**fields, "x": 1}),
        "a short key": registered({**fields, "key": key[:31]}),
        "no patient": registered({"device": DEVICE, "key": key}),
        "a bad device id": registered({**fields, "device": "a b"}),
        "a patient as bytes": registered({**fields, "patient": b"p-1"}),
        "a revocation": registered({"device": DEVICE, "key": key}, EntryKind.DEVICE_REVOKED),
        "not CBOR": _leaf(b"\xff", EntryKind.DEVICE_REGISTERED),
        "another device": registered({**fields, "device": "another-band"}),
    }


def _random_readings(rng: random.Random) -> dict[str, bytes]:
    """Seeded bit flips: in a signed payload (signed again), and in a whole leaf."""
    c = corpus()
    payload, leaf = c.payloads[1], _leaf(c.messages[1])
    made = {}
    for i in range(30):
        flipped = _flip(payload, rng.randrange(len(payload)), 1 << rng.randrange(8))
        made[f"payload flip {i}"] = _leaf(sign1(c.signer, flipped))
    for i in range(20):
        made[f"leaf flip {i}"] = _flip(leaf, rng.randrange(len(leaf)), 1 << rng.randrange(8))
    return made


def _random_registrations(rng: random.Random) -> dict[str, bytes]:
    """Seeded bit flips in a registration's body."""
    body = corpus().statements[0]
    return {
        f"flip {i}": _leaf(
            _flip(body, rng.randrange(len(body)), 1 << rng.randrange(8)),
            EntryKind.DEVICE_REGISTERED,
        )
        for i in range(25)
    }


def _logged(path: Path) -> list[Case]:
    """One ledger holding the registrations to try, then the readings to try, sealed: each
    reading is proven with the genuine registration, the genuine reading with each
    registration."""
    c = corpus()
    rng = random.Random(7)
    registrations = _registrations() | _random_registrations(rng)
    message = c.messages[0]
    readings = {"the genuine message": _leaf(message)}
    readings |= {f"envelope: {k}": _leaf(v) for k, v in copies(message).items()}
    readings |= {f"envelope: {k}": _leaf(v) for k, v in resigned(message, c.signer).items()}
    readings |= {f"payload: {k}": _leaf(sign1(c.signer, v)) for k, v in _payloads().items()}
    readings |= {f"entry: {k}": v for k, v in _entries().items()}
    readings |= _random_readings(rng)
    leaves = list(registrations.values()) + list(readings.values())
    ledger = Ledger(path, c.ledger_key)
    ledger.append([NewEntry(EntryKey(f"crafted/{i}", 0), leaf) for i, leaf in enumerate(leaves)])
    block = ledger.seal(NOW_MS)
    ledger.close()
    assert block is not None
    reader = LedgerReader(path)
    try:
        proven = [ProvenEntry(leaf, reader.tlog_proof(i, block)) for i, leaf in enumerate(leaves)]
    finally:
        reader.close()
    policy = Policy(c.ledger_key.verifier)
    registration, first = proven[0], len(registrations)
    made = [
        Case(f"logged {name}", _doc(ProofBundle(proven[first + i], registration)), policy)
        for i, name in enumerate(readings)
    ]
    made += [
        Case(f"logged registration: {name}", _doc(ProofBundle(proven[first], proven[i])), policy)
        for i, name in enumerate(registrations)
    ]
    return made


# ---- seeded random edits of the document's text ----

_CHARACTERS = 'A09=+/\n "{[\\\u00e9\u2014-'


def _random(document: bytes, policy: Policy, rng: random.Random, n: int = 60) -> Iterator[Case]:
    text = document.decode()
    for i in range(n):
        at = rng.randrange(len(text))
        edited = text[:at] + rng.choice(_CHARACTERS) + text[at + 1 :]
        yield Case(f"random edit {i} at {at}", edited.encode(), policy)
