"""Long-running pieces the commands compose: the HTTP server, signal handling, free ports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the command that runs it.

    With ``gc_freeze``, once started (the app's stores opened, its routes and models built) it
    moves every object then alive out of the garbage collector's reach (``gc.freeze``): they
    live as long as the process, and a full collection no longer walks them all, which with
    the app's hundreds of thousands of objects took tens of milliseconds in the middle of a
    request (docs/decisions.md, "The FHIR API under load")."""

    def __init__(self, config: uvicorn.Config, *, gc_freeze: bool = False) -> None:
        super().__init__(config)
        self.gc_freeze = gc_freeze

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Tell the app first (``app.state.server_exiting``: its open event streams end), for
        uvicorn waits for every open response before the app's lifespan shutdown."""
        for notify in getattr(getattr(self.config.app, "state", None), "server_exiting", ()):
            notify()
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.gc_freeze:
            gc.collect()
            gc.freeze()


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate (PEM, its chain after it if any) and private key (PEM)."""

    cert: Path
    key: Path

    @classmethod
    def of(cls, cert: Path | None, key: Path | None) -> TlsFiles | None:
        """Both files, or neither (plain HTTP); one without the other is a ValueError."""
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise ValueError("HTTPS needs both a certificate and a key file (or neither)")
        for path in (cert, key):
            if not path.is_file():
                raise ValueError(f"no such file: {path}")
        return cls(cert, key)


def http_server(
    app: FastAPI,
    host: str,
    port: int,
    *,
    trusted_proxies: str = "127.0.0.1",
    tls: TlsFiles | None = None,
    gc_freeze: bool = False,
) -> EmbeddedServer:
    """uvicorn serving ``app``, with no ``server`` banner (it tells an attacker which
    version to look up). ``X-Forwarded-Proto``/``-For`` are believed from ``trusted_proxies``
    only (given here, so uvicorn's FORWARDED_ALLOW_IPS environment variable cannot widen it):
    that is how a request that reached a TLS proxy counts as https (HSTS, Secure cookies) and
    how the sign-in limit sees the client's own address. With ``tls`` it speaks HTTPS only on
    ``port`` (a plain-HTTP request there fails its handshake: nothing is served in clear)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        date_header=True,  # RFC 9110 §6.6.1: an origin server with a clock sends Date
        proxy_headers=True,
        forwarded_allow_ips=trusted_proxies,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
    return EmbeddedServer(config, gc_freeze=gc_freeze)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so every command shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
