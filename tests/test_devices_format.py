"""The signed-reading format: deterministic CBOR, COSE_Sign1, and interop with pycose."""

from __future__ import annotations

import math

import cbor2
import pytest
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

from devices import (
    CoseError,
    DeviceSigner,
    PayloadError,
    Reading,
    Sample,
    SignatureError,
    decode_reading,
    encode_reading,
    key_id,
    parse_sign1,
    sign1,
)
from devices.keys import DeviceKey, public_key_from_pem, public_key_to_pem

HR = Sample("8867-4", "/min", 72, 1_763_700_000_000)
TEMP = Sample("8310-5", "Cel", 36.6, 1_763_700_000_000)


def _reading(seq: int = 7) -> Reading:
    return Reading("band-1", seq, (HR, TEMP))


def test_a_reading_round_trips_through_deterministic_cbor() -> None:
    payload = encode_reading(_reading())
    assert decode_reading(payload) == _reading()
    assert payload == cbor2.dumps(cbor2.loads(payload), canonical=True)


def test_a_battery_level_is_optional_and_signed_with_the_reading() -> None:
    charged = Reading("band-1", 7, (HR,), battery_pct=87)
    payload = encode_reading(charged)
    assert cbor2.loads(payload)["battery"] == 87
    assert decode_reading(payload) == charged
    assert "battery" not in cbor2.loads(encode_reading(_reading()))  # omitted when None
    assert (
        decode_reading(encode_reading(Reading("band-1", 7, (HR,), battery_pct=0))).battery_pct == 0
    )
    with pytest.raises(PayloadError, match="battery"):
        encode_reading(Reading("band-1", 7, (HR,), battery_pct=101))


def test_a_non_deterministic_encoding_of_the_same_reading_is_refused() -> None:
    obj = cbor2.loads(encode_reading(_reading()))
    reordered = cbor2.dumps(dict(reversed(list(obj.items()))))  # unsorted keys
    with pytest.raises(PayloadError, match="deterministic"):
        decode_reading(reordered)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"device": "../../etc/passwd"}, "device"),
        ({"device": "x" * 65}, "device"),
        ({"device": "a b"}, "device"),
        ({"seq": -1}, "seq"),
        ({"seq": "7"}, "seq"),
        ({"seq": True}, "seq"),
        ({"samples": []}, "1 to 64"),
        ({"samples": [{"code": "8867-4"}]}, "keys"),
        ({"samples": [{"code": "8867-4", "unit": "/min", "value": math.nan, "time": 1}]}, "finite"),
        ({"samples": [{"code": "8867-4", "unit": "/min", "value": math.inf, "time": 1}]}, "finite"),
        ({"samples": [{"code": "8867-4", "unit": "/min", "value": "72", "time": 1}]}, "number"),
        ({"samples": [{"code": "heart", "unit": "/min", "value": 72, "time": 1}]}, "LOINC"),
        ({"samples": [{"code": "8867-4", "unit": "per min", "value": 72, "time": 1}]}, "UCUM"),
        ({"samples": [{"code": "8867-4", "unit": "/min", "value": 72, "time": -5}]}, "time"),
        ({"extra": 1}, "keys"),
        ({"battery": 101}, "battery"),
        ({"battery": -1}, "battery"),
        ({"battery": 50.5}, "battery"),
        ({"battery": True}, "battery"),
        ({"battery": "87"}, "battery"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(
    change: dict[str, object], message: str
) -> None:
    obj = cbor2.loads(encode_reading(_reading()))
    obj.update(change)
    with pytest.raises(PayloadError, match=message):
        decode_reading(cbor2.dumps(obj, canonical=True))


@pytest.mark.parametrize("garbage", [b"", b"\xff", b"\x9f" * 50000, cbor2.dumps([1, 2, 3])])
def test_garbage_is_a_payload_error_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_reading(garbage)


def test_sign_parse_verify() -> None:
    signer = DeviceSigner.generate()
    message = parse_sign1(sign1(signer, encode_reading(_reading())))
    assert message.kid == signer.key.kid == key_id(signer.key.public_bytes)
    message.verify(signer.key)
    assert decode_reading(message.payload) == _reading()
    with pytest.raises(SignatureError):
        message.verify(DeviceSigner.generate().key)


def test_a_flipped_bit_anywhere_breaks_the_message() -> None:
    signer = DeviceSigner.generate()
    data = sign1(signer, encode_reading(_reading()))
    for pos in range(0, len(data), 3):
        mutated = bytearray(data)
        mutated[pos] ^= 0x01
        try:
            parse_sign1(bytes(mutated)).verify(signer.key)
        except (CoseError, SignatureError):
            continue
        pytest.fail(f"a flipped bit at byte {pos} still verified")


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"not cbor at all",
        cbor2.dumps([b"", {}, b"", b"\x00" * 64]),  # untagged
        cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"p", b"\x00" * 64])),  # no alg, no kid
        cbor2.dumps(
            cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {4: b"k"}, b"p", b"\x00" * 64])
        ),  # ES256
        cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -8}), {}, b"p", b"\x00" * 64])),  # no kid
        cbor2.dumps(
            cbor2.CBORTag(18, [cbor2.dumps({1: -8, 4: b"k"}), {}, None, b"\x00" * 64])
        ),  # detached
        cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -8, 4: b"k"}), {}, b"p", b"\x00" * 10])),
        cbor2.dumps(cbor2.CBORTag(98, [])),
    ],
)
def test_malformed_cose_is_refused(bad: bytes) -> None:
    with pytest.raises(CoseError):
        parse_sign1(bad)


def _pycose_key(signer: DeviceSigner, private: bool) -> OKPKey:
    if private:
        return OKPKey(crv=Ed25519, x=signer.key.public_bytes, d=signer.seed)
    return OKPKey(crv=Ed25519, x=signer.key.public_bytes)


def test_what_vitaltrail_signs_verifies_with_pycose() -> None:
    signer = DeviceSigner.generate()
    payload = encode_reading(_reading())
    decoded = Sign1Message.decode(sign1(signer, payload))
    decoded.key = _pycose_key(signer, private=False)
    assert decoded.verify_signature()
    assert decoded.payload == payload
    assert decoded.phdr[KID] == signer.key.kid


def test_what_pycose_signs_verifies_with_vitaltrail() -> None:
    signer = DeviceSigner.generate()
    payload = encode_reading(_reading())
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: signer.key.kid}, payload=payload)
    msg.key = _pycose_key(signer, private=True)
    parsed = parse_sign1(msg.encode())
    parsed.verify(signer.key)
    assert decode_reading(parsed.payload) == _reading()


def test_kid_is_the_rfc9679_thumbprint() -> None:
    # RFC 9679 section 6 gives no Ed25519 example; this pins the construction instead.
    public = bytes(range(32))
    expected_input = (
        bytes.fromhex("a3")
        + bytes.fromhex("0101")
        + bytes.fromhex("2006")
        + bytes.fromhex("215820")
        + public
    )
    import hashlib

    assert key_id(public) == hashlib.sha256(expected_input).digest()


def test_keys_round_trip_through_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    signer = DeviceSigner.generate()
    signer.save(tmp_path / "device.key")
    assert (tmp_path / "device.key").stat().st_mode & 0o777 == 0o600
    assert DeviceSigner.load(tmp_path / "device.key").key == signer.key
    assert public_key_from_pem(public_key_to_pem(signer.key)) == signer.key
    with pytest.raises(ValueError, match="32 bytes"):
        DeviceKey(b"short")


@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32])
def test_hand_written_cbor_heads_match_cbor2(size: int) -> None:
    from devices.cbor_head import head, uint

    assert uint(size) == cbor2.dumps(size, canonical=True)
    if size < 70000:
        assert head(2, size) + bytes(size) == cbor2.dumps(bytes(size), canonical=True)


def test_sig_structure_matches_the_generic_encoding() -> None:
    from devices.cose import _sig_structure

    for payload in [b"", b"x" * 23, b"y" * 300, b"z" * 70000]:
        assert _sig_structure(b"\xa1\x01\x27", payload) == cbor2.dumps(
            ["Signature1", b"\xa1\x01\x27", b"", payload]
        )
