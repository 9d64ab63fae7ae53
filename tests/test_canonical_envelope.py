"""The signed message is canonical, byte for byte: one rule in ingest, `verify` and `audit`.

Every variant below carries a signature that verifies (read the lenient way, as the old
parser did), so only canonicality refuses it: at the ingest checks (malformed_cose), in a
proof bundle (`verify_bundle` and `vitaltrail verify`), and as an old record in a ledger
(`vitaltrail audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest

from dashboards.bundles import NoSuchReading, recorded_reading
from devices.cose import parse_sign1
from devices.errors import CoseError
from devices.keys import DeviceSigner
from devices.registry import DeviceRecord
from ingest.checks import Admitted, Limits, Rejected, check_message
from ingest.reasons import Reason
from ingest.reindex import reindex
from ingest.sqlite_store import SqliteStore
from ledger.appends import NewEntry
from ledger.audit import audit
from ledger.bundle import ProofBundle, ProvenEntry
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.keyfile import load_or_create_signer
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteVerifier
from ledger.verifier import verify_bundle
from tests.noncanonical import copies, resigned, signature_holds
from tests.stack import now_ms, signed
from vitaltrail.cli import main

DEVICE = "band-1"
SIGNER = DeviceSigner.generate()
RECORDS = {SIGNER.key.kid: DeviceRecord(DEVICE, "patient-1", SIGNER.key, 0, None)}


def _variants(seq: int) -> tuple[bytes, dict[str, bytes]]:
    genuine = signed(DEVICE, SIGNER, seq)
    return genuine, copies(genuine) | resigned(genuine, SIGNER)


GENUINE, VARIANTS = _variants(1)
NAMES = sorted(VARIANTS)


def test_every_variant_carries_a_valid_signature_and_differs_from_the_genuine_bytes() -> None:
    assert signature_holds(GENUINE, SIGNER.key)
    for name, variant in VARIANTS.items():
        assert variant != GENUINE, name
        assert signature_holds(variant, SIGNER.key), name


def test_the_canonical_encoding_is_cbor2s_deterministic_encoding_of_the_message() -> None:
    m = parse_sign1(GENUINE)
    assert m.protected == cbor2.dumps({1: -8, 4: SIGNER.key.kid}, canonical=True)
    parts = [m.protected, {}, m.payload, m.signature]
    assert cbor2.dumps(cbor2.CBORTag(18, parts), canonical=True) == GENUINE


def test_the_genuine_message_is_admitted() -> None:
    verdict = check_message(DEVICE, GENUINE, RECORDS.get, now_ms(), Limits())
    assert isinstance(verdict, Admitted)


@pytest.mark.parametrize("name", NAMES)
def test_the_checks_quarantine_a_non_canonical_envelope_as_malformed_cose(name: str) -> None:
    verdict = check_message(DEVICE, VARIANTS[name], RECORDS.get, now_ms(), Limits())
    assert isinstance(verdict, Rejected)
    assert verdict.reason is Reason.MALFORMED_COSE, verdict.detail


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("trailing bytes", "1 bytes after the COSE_Sign1 message"),
        ("tag 55799 in front", "tag 55799"),
        ("indefinite-length array", "not the deterministic CBOR encoding"),
        ("non-shortest payload length", "not the deterministic CBOR encoding"),
        ("duplicate protected label", "not the deterministic CBOR of {1: -8, 4: kid}"),
        ("duplicate unprotected label", "the unprotected map is empty"),
        ("unknown crit label", "crit (label 2) is not allowed"),
        ("kilobytes of unprotected text", "the unprotected map is empty"),
        ("kid only unprotected", "the unprotected map is empty"),
    ],
)
def test_the_refusal_says_what_is_not_canonical(name: str, detail: str) -> None:
    with pytest.raises(CoseError) as refused:
        parse_sign1(VARIANTS[name])
    assert detail in str(refused.value)


@dataclass(frozen=True)
class Recorded:
    """A ledger holding a key registration (entry 0), the genuine reading (entry 1), and one
    record of each variant, as an ingestor before this rule could have logged them."""

    data_dir: Path
    key: NoteVerifier
    index: dict[str, int]
    data: dict[str, bytes]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    data_dir = tmp_path_factory.mktemp("data")
    signer = load_or_create_signer(data_dir / "keys" / "ledger.key", "vitaltrail.local/ledger")
    ledger = Ledger(data_dir / "ledger.db", signer)
    now = now_ms()
    registration = DeviceKeyStatement(EntryKind.DEVICE_REGISTERED, DEVICE, SIGNER.key, "p-1")
    ledger.append([registration.entry(now)])
    records = [("genuine", 1, GENUINE)]
    for seq, name in enumerate(NAMES, start=100):  # each variant of its own reading
        records.append((name, seq, _variants(seq)[1][name]))
    ledger.append(
        [
            NewEntry(reading_key(DEVICE, seq), LedgerEntry(EntryKind.READING, now, data).encode())
            for _, seq, data in records
        ]
    )
    ledger.seal(now)
    ledger.close()
    index = {name: i for i, (name, _, _) in enumerate(records, start=1)}
    return Recorded(data_dir, signer.verifier, index, {name: d for name, _, d in records})


def _bundle(recorded: Recorded, index: int) -> str:
    reader = LedgerReader(recorded.data_dir / "ledger.db")
    try:

        def proven(i: int) -> ProvenEntry:
            return ProvenEntry(reader.log.entry(i) or b"", reader.tlog_proof(i))

        return ProofBundle(proven(index), proven(0)).to_json()
    finally:
        reader.close()


def test_the_genuine_reading_verifies(recorded: Recorded) -> None:
    report = verify_bundle(_bundle(recorded, recorded.index["genuine"]), recorded.key)
    assert report.ok, report.failed()


@pytest.mark.parametrize("name", NAMES)
def test_verify_bundle_refuses_a_bundle_carrying_a_non_canonical_reading(
    recorded: Recorded, name: str
) -> None:
    report = verify_bundle(_bundle(recorded, recorded.index[name]), recorded.key)
    assert not report.ok
    # The proofs and the checkpoint hold: it is in the log. What it is, is not a reading.
    assert [c.name for c in report.failed()] == ["device key", "device signature"]
    with pytest.raises(CoseError) as refused:
        parse_sign1(recorded.data[name])
    assert {c.detail for c in report.failed()} == {str(refused.value)}


def test_vitaltrail_verify_refuses_it(
    recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(_bundle(recorded, recorded.index["trailing bytes"]))
    assert main(["verify", str(path), "--ledger-key", str(recorded.key)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  device signature: 1 bytes after the COSE_Sign1 message" in out
    assert "NOT VERIFIED" in out


def test_audit_reports_every_non_canonical_record(recorded: Recorded) -> None:
    reader = LedgerReader(recorded.data_dir / "ledger.db")
    try:
        report = audit(reader, recorded.key)
    finally:
        reader.close()
    flagged = {f.where for f in report.findings if f.check == "entry"}
    assert flagged == {f"entry {recorded.index[name]}" for name in NAMES}
    assert {f.check for f in report.findings} == {"entry"}  # the rest of the log is sound


def test_vitaltrail_audit_fails_on_it(
    recorded: Recorded, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(recorded.data_dir), "audit"]) == 1
    first = recorded.index[NAMES[0]]
    assert f"FIRST INCONSISTENCY: entry {first} (entry):" in capsys.readouterr().out


def test_reindex_skips_non_canonical_records_and_the_api_refuses_them(
    recorded: Recorded, tmp_path: Path
) -> None:
    reader = LedgerReader(recorded.data_dir / "ledger.db")
    store = SqliteStore(tmp_path / "store.db")
    try:
        stats = reindex(reader, store)
        assert (stats.readings, stats.skipped) == (1, len(NAMES))
        assert store.count() == 2  # the genuine reading's two samples
        assert recorded_reading(reader, recorded.index["genuine"]).reading.seq == 1
        with pytest.raises(NoSuchReading, match="not a valid reading"):
            recorded_reading(reader, recorded.index["trailing bytes"])
    finally:
        store.close()
        reader.close()
