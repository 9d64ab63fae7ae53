"""Long-running pieces the commands compose: the HTTP server, signal handling, free ports."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the command that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: FastAPI, host: str, port: int) -> EmbeddedServer:
    return EmbeddedServer(uvicorn.Config(app, host=host, port=port, log_level="warning"))


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so every command shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
