"""`vitaltrail witness`: a witness as its own process, speaking C2SP tlog-witness over HTTP.

Its key is generated at first run into ``<data dir>/witness/witness.key`` (the public
verifier key beside it, ``witness.pub``, is what logs and verifiers pin); its state - the
latest checkpoint cosigned per log - is ``<data dir>/witness/state.db``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from ledger.cosignature import Cosigner
from ledger.keyfile import load_or_create_key
from ledger.note import NoteVerifier
from ledger.witness import MAX_REQUEST_BYTES, Witness
from vitaltrail.services import http_server, stop_on_signals
from vitaltrail.settings import Settings


def witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(
        title="vitaltrail witness",
        summary="Cosigns a log's checkpoints that extend the last one it saw (C2SP tlog-witness).",
    )

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return Response("request is too large\n", status_code=413)
        answer = await run_in_threadpool(witness.add_checkpoint, body)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    return app


def load_or_create_cosigner(path: Path, name: str) -> Cosigner:
    return load_or_create_key(path, name, Cosigner)


async def run_witness(settings: Settings, logs: list[NoteVerifier]) -> int:
    cosigner = load_or_create_cosigner(settings.witness_dir / "witness.key", settings.witness_name)
    witness = Witness(settings.witness_dir / "state.db", cosigner, logs)
    stop = stop_on_signals()
    server = http_server(witness_app(witness), settings.witness_host, settings.witness_port)
    print(f"witness {cosigner.name} for {', '.join(k.name for k in logs)}")
    print(f"witness key: {cosigner.verifier}  ({settings.witness_dir / 'witness.pub'})")
    print(f"add-checkpoint: http://{settings.witness_host}:{settings.witness_port}/add-checkpoint")
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
    witness.close()
    return 0
