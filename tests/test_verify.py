"""The offline verifier and `vitaltrail verify`: each tampering caught by the check it breaks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dashboards.bundles import first_reading, proof_bundle_for
from devices.keys import DeviceSigner
from ledger.appends import NewEntry
from ledger.bundle import ProofBundle, ProvenEntry
from ledger.cosignature import Cosigner
from ledger.device_keys import DeviceKeyStatement
from ledger.entries import EntryKind, LedgerEntry, reading_key
from ledger.ledger import Ledger, LedgerReader
from ledger.note import NoteSigner, NoteVerifier, sign_note
from ledger.verifier import Policy, verify_bundle
from tests.populated import populate
from tests.stack import now_ms, signed
from vitaltrail.cli import main

ALL_CHECKS = ["checkpoint signature", "device key", "device signature", "inclusion proof"]


@pytest.fixture
def bundle_and_key(tmp_path: Path) -> tuple[ProofBundle, NoteVerifier, Path]:
    settings = populate(tmp_path / "data")
    reader = LedgerReader(settings.ledger_path)
    index = first_reading(reader)
    assert index == 3  # three devices' keys are registered first
    bundle = proof_bundle_for(reader, index)
    reader.close()
    key_path = settings.ledger_key_path.with_suffix(".pub")
    return bundle, NoteVerifier.parse(key_path.read_text()), key_path


def _failed(bundle: ProofBundle | str, key: NoteVerifier) -> list[str]:
    text = bundle if isinstance(bundle, str) else bundle.to_json()
    return [c.name for c in verify_bundle(text, key).failed()]


def test_a_genuine_bundle_verifies(bundle_and_key: tuple[ProofBundle, NoteVerifier, Path]) -> None:
    bundle, key, _ = bundle_and_key
    report = verify_bundle(bundle.to_json(), key)
    assert report.ok, report.failed()
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert report.reading is not None
    assert report.reading.device_id == "patient-0-band"
    assert bundle.key_revocation is None


def test_a_changed_reading_fails_the_device_signature_and_the_inclusion_proof(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    entry = bytearray(bundle.reading.entry)
    entry[-70] ^= 0x01  # inside the signed payload
    tampered = dataclasses.replace(bundle, reading=ProvenEntry(bytes(entry), bundle.reading.proof))
    assert _failed(tampered, key) == ["device signature", "inclusion proof"]


def test_another_devices_registration_fails_the_device_key(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path], tmp_path: Path
) -> None:
    bundle, key, _ = bundle_and_key
    reader = LedgerReader(tmp_path / "data" / "ledger.db")
    other = proof_bundle_for(reader, 4)  # patient-1-band's first reading
    reader.close()
    forged = dataclasses.replace(bundle, key_registration=other.key_registration)
    assert _failed(forged, key) == ["device key", "device signature"]


def test_a_checkpoint_signed_by_another_key_fails(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    note = bundle.reading.proof.checkpoint_note
    impostor = sign_note(note[: note.index("\n\n") + 1], NoteSigner.generate(key.name))
    forged = ProofBundle(
        *(
            ProvenEntry(p.entry, dataclasses.replace(p.proof, checkpoint_note=impostor))
            for _, p in bundle.proven
        )
    )
    assert _failed(forged, key) == ["checkpoint signature"]


def test_a_wrong_index_or_proof_hash_fails_the_inclusion_proof(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    proof = bundle.reading.proof
    for forged_proof in [
        dataclasses.replace(proof, index=proof.index + 1),
        dataclasses.replace(proof, hashes=(bytes(32), *proof.hashes[1:])),
        dataclasses.replace(proof, hashes=proof.hashes[:-1]),
    ]:
        forged = dataclasses.replace(
            bundle, reading=ProvenEntry(bundle.reading.entry, forged_proof)
        )
        assert _failed(forged, key) == ["inclusion proof"]


def _ledger_in_order(tmp_path: Path, order: list[str]) -> tuple[LedgerReader, NoteVerifier]:
    """A log whose entries come in ``order``: what the pipeline never writes, a forger might."""
    signer = NoteSigner.generate("test.example/log")
    device = DeviceSigner.generate()
    made = {
        "registration": DeviceKeyStatement(
            EntryKind.DEVICE_REGISTERED, "band-1", device.key, "patient-1"
        ).entry(now_ms()),
        "revocation": DeviceKeyStatement(
            EntryKind.DEVICE_REVOKED, "band-1", device.key, None
        ).entry(now_ms()),
        "reading": NewEntry(
            reading_key("band-1", 0),
            LedgerEntry(EntryKind.READING, now_ms(), signed("band-1", device, 0)).encode(),
        ),
    }
    ledger = Ledger(tmp_path / "forged.db", signer)
    ledger.append([made[name] for name in order])
    ledger.seal(now_ms())
    ledger.close()
    return LedgerReader(tmp_path / "forged.db"), signer.verifier


def test_a_reading_logged_before_its_keys_registration_is_rejected(tmp_path: Path) -> None:
    reader, key = _ledger_in_order(tmp_path, ["reading", "registration"])
    report = verify_bundle(proof_bundle_for(reader, 0).to_json(), key)
    assert [c.name for c in report.failed()] == ["device key"]
    assert "registered at entry 1, after the reading" in report.failed()[0].detail


def test_a_reading_logged_after_its_keys_revocation_is_rejected(tmp_path: Path) -> None:
    reader, key = _ledger_in_order(tmp_path, ["registration", "revocation", "reading"])
    bundle = proof_bundle_for(reader, 2)
    assert bundle.key_revocation is not None
    report = verify_bundle(bundle.to_json(), key)
    assert [c.name for c in report.failed()] == ["device key"]
    assert "revoked at entry 1, before the reading" in report.failed()[0].detail


def test_a_revocation_after_the_reading_leaves_it_valid(tmp_path: Path) -> None:
    reader, key = _ledger_in_order(tmp_path, ["registration", "reading", "revocation"])
    bundle = proof_bundle_for(reader, 1)
    assert bundle.key_revocation is not None
    assert verify_bundle(bundle.to_json(), key).ok


@pytest.mark.parametrize(
    "garbage", ["", "{}", "[]", "not json", json.dumps({"format": "vitaltrail/proof-bundle@v1"})]
)
def test_garbage_is_reported_not_raised(
    garbage: str, bundle_and_key: tuple[ProofBundle, NoteVerifier, Path]
) -> None:
    _, key, _ = bundle_and_key
    assert _failed(garbage, key) == ["bundle format"]


def test_the_cli_says_which_check_failed(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle, _, key_path = bundle_and_key
    good = tmp_path / "good.json"
    good.write_text(bundle.to_json())
    assert main(["verify", str(good), "--ledger-key", str(key_path)]) == 0
    assert "VERIFIED" in capsys.readouterr().out

    doc = json.loads(bundle.to_json())
    doc["key_registration"] = doc["reading"]  # the reading posing as its own key's record
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["verify", str(bad), "--ledger-key", key_path.read_text().strip()]) == 1
    out = capsys.readouterr().out
    assert "FAIL  device key" in out
    assert "NOT VERIFIED: device key, device signature failed" in out

    assert main(["verify", str(good), "--ledger-key", "not-a-key"]) == 2
    assert main(["verify", str(tmp_path / "missing.json"), "--ledger-key", str(key_path)]) == 2


def _cosigned(bundle: ProofBundle, lines: str) -> ProofBundle:
    def with_lines(p: ProvenEntry) -> ProvenEntry:
        note = p.proof.checkpoint_note + lines
        return ProvenEntry(p.entry, dataclasses.replace(p.proof, checkpoint_note=note))

    return ProofBundle(*(with_lines(p) for _, p in bundle.proven))


def test_the_policy_demands_k_of_n_witness_cosignatures(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    w1, w2, w3 = (Cosigner.generate(f"witness.test/w{i}") for i in (1, 2, 3))
    note = bundle.reading.proof.checkpoint_note
    text = note[: note.index("\n\n") + 1]
    cosigned = _cosigned(bundle, w1.cosign(text) + w2.cosign(text)).to_json()
    witnesses = (w1.verifier, w2.verifier, w3.verifier)
    report = verify_bundle(cosigned, Policy(key, witnesses, 2))
    assert report.ok, report.failed()
    assert "cosigned by 2 of 3: witness.test/w1, witness.test/w2" in report.checks[1].detail
    assert [c.name for c in verify_bundle(cosigned, Policy(key, witnesses, 3)).failed()] == [
        "witness cosignatures"
    ]
    assert [
        c.name for c in verify_bundle(bundle.to_json(), Policy(key, witnesses, 1)).failed()
    ] == ["witness cosignatures"]
    forged = _cosigned(bundle, w3.cosign("another.example/log\n1\n" + "A" * 43 + "=\n")).to_json()
    report = verify_bundle(forged, Policy(key, witnesses, 1))
    assert [c.name for c in report.failed()] == ["witness cosignatures"]
    assert "does not verify" in report.failed()[0].detail
    with pytest.raises(ValueError, match="quorum"):
        Policy(key, witnesses, 4)
