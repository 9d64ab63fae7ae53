"""Signing keys on disk: generated at first run, never in the repository."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypeVar

from ledger.note import NoteSigner, SigningKey, format_vkey

log = logging.getLogger("vitaltrail.ledger")

K = TypeVar("K", bound=SigningKey)


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a secret readable by its owner only (mode 0600); ``exclusive``: never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def load_or_create_key(path: Path, name: str, kind: type[K]) -> K:
    """Load the key at ``path``, or create it (mode 0600) with its verifier key in ``.pub``."""
    if path.exists():
        return kind.parse(path.read_text())
    key = kind.generate(name)
    write_private(path, f"{key}\n".encode(), exclusive=True)
    path.with_suffix(".pub").write_text(f"{format_vkey(key.name, key.public_key, key.ALG)}\n")
    return key


def load_or_create_signer(path: Path, name: str) -> NoteSigner:
    """The log's note-signing key; an existing file must hold a key of that name."""
    created = not path.exists()
    signer = load_or_create_key(path, name, NoteSigner)
    if created:
        log.info("created signing key %s (public key in %s)", path, path.with_suffix(".pub"))
    if signer.name != name:
        raise ValueError(f"{path} holds a key named {signer.name!r}, not {name!r}")
    return signer
