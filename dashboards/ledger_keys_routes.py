"""The keys a browser checks proof bundles against: the ledger's and its witnesses'.

``GET /api/v1/ledger/keys`` answers the ledger's note verifier key (its ``.pub`` file, read
on each request so a key created after the API started is served), the configured witnesses'
keys and the quorum the API's proof bundles carry: what ``vitaltrail verify`` is given as
``--ledger-key``, ``--witness-key`` and ``--quorum``. Public: keys are no patient data. The
patient page pins the first answer in the browser (trust on first use); docs/operations.md
says how an operator checks the fingerprint a browser pinned.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from dashboards.refusals import error
from dashboards.route_rules import Public, access

router = APIRouter(tags=["telemedicine"])


class LedgerKeys(BaseModel):
    ledger_key: str = Field(description="the ledger's note verifier key, <name>+<hash>+<key>")
    witness_keys: list[str] = Field(description="the witnesses' cosignature verifier keys")
    quorum: int = Field(description="how many of them cosign every proof bundle served")


def _read_key(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    text = path.read_text().strip()
    return text or None


@router.get("/api/v1/ledger/keys", responses={404: error("the ledger has no signing key yet")})
@access(Public())
async def ledger_keys(request: Request) -> LedgerKeys:
    """The keys ``vitaltrail verify`` checks a proof bundle against."""
    key = await asyncio.to_thread(_read_key, request.app.state.ledger_key_file)
    if key is None:
        raise HTTPException(404, "the ledger has no signing key yet")
    return LedgerKeys(
        ledger_key=key,
        witness_keys=list(request.app.state.witness_keys),
        quorum=request.app.state.proof_cosignatures,
    )
