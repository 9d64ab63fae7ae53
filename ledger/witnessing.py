"""The log's side of witnessing: send each new checkpoint to the witnesses, keep their cosignatures.

For each configured witness the log submits ``add-checkpoint`` with a consistency proof from
the largest tree that witness cosigned for it (known from the stored cosignatures; a 409
answer tells the witness's own view, and the request is made once more from there). A
returned cosignature is checked against the witness's pinned key before it is stored. A
witness that is down delays nothing: ingest and sealing go on, and the next checkpoint is
submitted with a proof from the last size that witness saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx2

from ledger.cosignature import CosignatureVerifier
from ledger.note import NoteError
from ledger.witness import SIZE_CONTENT_TYPE, submission_body

log = logging.getLogger("vitaltrail.witnessing")


@dataclass(frozen=True)
class WitnessEndpoint:
    url: str  # the witness's submission prefix, e.g. http://witness.example:7380
    key: CosignatureVerifier


@dataclass(frozen=True)
class Checkpointed:
    """What the log hands the witness client: a sealed block's checkpoint."""

    height: int
    tree_size: int
    note: str  # signed by the log


@dataclass(frozen=True)
class LedgerAccess:
    """The calls witnessing makes into the ledger (run on the ledger's writer thread)."""

    witnessed_size: Callable[[str], Awaitable[int]]
    consistency_proof: Callable[[int, int], Awaitable[list[bytes]]]
    store_cosignature: Callable[[int, str, str], Awaitable[None]]


class WitnessClient:
    def __init__(self, endpoints: Sequence[WitnessEndpoint], timeout_s: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        self._http = httpx2.AsyncClient(timeout=timeout_s)
        self.failures: dict[str, int] = {e.key.name: 0 for e in endpoints}

    async def close(self) -> None:
        await self._http.aclose()

    async def cosign(self, checkpoint: Checkpointed, ledger: LedgerAccess) -> list[str]:
        """Ask every witness at once; return the names of those that cosigned (the others
        are logged and counted in ``failures``)."""
        outcomes = await asyncio.gather(
            *(self._ask(e, checkpoint, ledger) for e in self.endpoints), return_exceptions=True
        )
        cosigned: list[str] = []
        for endpoint, outcome in zip(self.endpoints, outcomes, strict=True):
            if outcome is True:
                cosigned.append(endpoint.key.name)
            else:
                self.failures[endpoint.key.name] += 1
                if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                    raise outcome
                log.warning(
                    "witness %s did not cosign tree size %d: %s",
                    endpoint.key.name,
                    checkpoint.tree_size,
                    outcome,
                )
        return cosigned

    async def _ask(
        self, endpoint: WitnessEndpoint, checkpoint: Checkpointed, ledger: LedgerAccess
    ) -> bool | str:
        old = await ledger.witnessed_size(endpoint.key.name)
        for _ in range(2):  # once more from the witness's own size after a 409
            if old > checkpoint.tree_size:
                return f"the witness has seen size {old}, larger than this checkpoint"
            proof = (
                await ledger.consistency_proof(old, checkpoint.tree_size)
                if 0 < old < checkpoint.tree_size
                else []
            )
            response = await self._http.post(
                endpoint.url.rstrip("/") + "/add-checkpoint",
                content=submission_body(old, proof, checkpoint.note),
            )
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                SIZE_CONTENT_TYPE
            ):
                old = int(response.text.strip())
                continue
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text.strip()[:200]}"
            return await self._keep(endpoint, checkpoint, response.text, ledger)
        return "the witness's size kept changing"

    async def _keep(
        self, endpoint: WitnessEndpoint, checkpoint: Checkpointed, body: str, ledger: LedgerAccess
    ) -> bool | str:
        for line in body.splitlines(keepends=True):
            try:
                stamp = endpoint.key.timestamp(checkpoint.note + line)
            except NoteError as exc:
                return f"a bad cosignature: {exc}"
            if stamp is not None:
                await ledger.store_cosignature(checkpoint.height, endpoint.key.name, line)
                return True
        return "no cosignature from the pinned witness key in the answer"
