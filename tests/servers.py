"""Real servers for tests: Mosquitto (the project's launcher), uvicorn on a thread, and a
cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from vitaltrail.mosquitto import Mosquitto, free_port, wait_for_port
from vitaltrail.services import EmbeddedServer

__all__ = ["Mosquitto", "TcpProxy", "free_port", "serving", "wait_for_port"]


@contextlib.contextmanager
def serving(server: EmbeddedServer) -> Iterator[int]:
    """The web app's uvicorn server (vitaltrail/services.py) running on a thread; its port."""
    port = server.config.port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


class TcpProxy:
    """A loopback TCP proxy whose link can be cut and restored: a network outage on demand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.update({writer, up_writer})
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._links.discard(w)
            w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
