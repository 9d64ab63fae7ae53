"""Note-signing keys on disk: generated at first run, never in the repository."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ledger.note import NoteSigner

log = logging.getLogger("vitaltrail.ledger")


def load_or_create_signer(path: Path, name: str) -> NoteSigner:
    """Load the signer at ``path``, or create it (mode 0600) with its ``.pub`` beside it."""
    if path.exists():
        signer = NoteSigner.parse(path.read_text())
        if signer.name != name:
            raise ValueError(f"{path} holds a key named {signer.name!r}, not {name!r}")
        return signer
    signer = NoteSigner.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{signer}\n")
    path.with_suffix(".pub").write_text(f"{signer.verifier}\n")
    log.info("created signing key %s (public key in %s)", path, path.with_suffix(".pub"))
    return signer
