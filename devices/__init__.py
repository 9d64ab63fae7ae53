"""The device side: identity and keys, the signed-reading format, the device SDK.

Also the server-side device registry. Nothing here knows about the ingestor or the ledger.

Errors::

    ReadingError                 any signed message that cannot be accepted as a reading
    ├── CoseError                not the canonical encoding of a COSE_Sign1 / EdDSA message
    ├── PayloadError             the payload is not a well-formed reading
    └── SignatureError           the signature does not verify under the given key
"""

from devices.cose import SignedMessage, parse_sign1, sign1
from devices.errors import CoseError, PayloadError, ReadingError, SignatureError
from devices.keys import DeviceKey, DeviceSigner, key_id
from devices.reading import Reading, Sample, decode_reading, encode_reading

__all__ = [
    "CoseError",
    "DeviceKey",
    "DeviceSigner",
    "PayloadError",
    "Reading",
    "ReadingError",
    "Sample",
    "SignatureError",
    "SignedMessage",
    "decode_reading",
    "encode_reading",
    "key_id",
    "parse_sign1",
    "sign1",
]
