"""The offline verifier and `vitaltrail verify`: each tampering caught by the check it breaks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from devices.keys import DeviceSigner
from ledger.bundle import ProofBundle
from ledger.ledger import LedgerReader
from ledger.note import NoteSigner, NoteVerifier, sign_note
from ledger.verifier import verify_bundle
from tests.populated import populate
from vitaltrail.cli import main


@pytest.fixture
def bundle_and_key(tmp_path: Path) -> tuple[ProofBundle, NoteVerifier, Path]:
    settings = populate(tmp_path / "data")
    reader = LedgerReader(settings.ledger_path)
    from devices.registry import DeviceRegistry

    registry = DeviceRegistry(settings.registry_path)
    device = registry.get("patient-1-band")
    assert device is not None
    index = next(i for i in range(15) if b"patient-1-band" in (reader.log.entry(i) or b""))
    data = reader.log.entry(index)
    assert data is not None
    bundle = ProofBundle(data, device.device_id, device.key.public_bytes, reader.tlog_proof(index))
    reader.close()
    registry.close()
    key_path = settings.ledger_key_path.with_suffix(".pub")
    return bundle, NoteVerifier.parse(key_path.read_text()), key_path


def _failed(bundle: ProofBundle | str, key: NoteVerifier) -> list[str]:
    text = bundle if isinstance(bundle, str) else bundle.to_json()
    return [c.name for c in verify_bundle(text, key).failed()]


def test_a_genuine_bundle_verifies(bundle_and_key: tuple[ProofBundle, NoteVerifier, Path]) -> None:
    bundle, key, _ = bundle_and_key
    report = verify_bundle(bundle.to_json(), key)
    assert report.ok
    assert [c.name for c in report.checks] == [
        "device signature",
        "checkpoint signature",
        "inclusion proof",
    ]
    assert report.reading is not None
    assert report.reading.device_id == "patient-1-band"


def test_a_changed_reading_fails_the_device_signature_and_the_inclusion_proof(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    entry = bytearray(bundle.entry)
    entry[-70] ^= 0x01  # inside the signed payload
    tampered = ProofBundle(bytes(entry), bundle.device_id, bundle.device_public_key, bundle.proof)
    assert _failed(tampered, key) == ["device signature", "inclusion proof"]


def test_another_device_key_fails_the_device_signature(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    forged = ProofBundle(
        bundle.entry, bundle.device_id, DeviceSigner.generate().key.public_bytes, bundle.proof
    )
    assert _failed(forged, key) == ["device signature"]


def test_a_checkpoint_signed_by_another_key_fails(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    text = bundle.proof.checkpoint_note[: bundle.proof.checkpoint_note.index("\n\n") + 1]
    impostor = NoteSigner.generate(key.name)
    forged_proof = type(bundle.proof)(
        bundle.proof.index, bundle.proof.hashes, sign_note(text, impostor)
    )
    forged = ProofBundle(bundle.entry, bundle.device_id, bundle.device_public_key, forged_proof)
    assert _failed(forged, key) == ["checkpoint signature"]


def test_a_wrong_index_or_proof_hash_fails_the_inclusion_proof(
    bundle_and_key: tuple[ProofBundle, NoteVerifier, Path],
) -> None:
    bundle, key, _ = bundle_and_key
    proof = bundle.proof
    for forged_proof in [
        type(proof)(proof.index ^ 1, proof.hashes, proof.checkpoint_note),
        type(proof)(proof.index, (bytes(32), *proof.hashes[1:]), proof.checkpoint_note),
        type(proof)(proof.index, proof.hashes[:-1], proof.checkpoint_note),
    ]:
        forged = ProofBundle(bundle.entry, bundle.device_id, bundle.device_public_key, forged_proof)
        assert _failed(forged, key) == ["inclusion proof"]


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
    doc["device"]["public_key"] = base64.b64encode(
        DeviceSigner.generate().key.public_bytes
    ).decode()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["verify", str(bad), "--ledger-key", key_path.read_text().strip()]) == 1
    out = capsys.readouterr().out
    assert "FAIL  device signature" in out
    assert "NOT VERIFIED: device signature failed" in out

    assert main(["verify", str(good), "--ledger-key", "not-a-key"]) == 2
    assert main(["verify", str(tmp_path / "missing.json"), "--ledger-key", str(key_path)]) == 2
