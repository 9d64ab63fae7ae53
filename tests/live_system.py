"""The system as `vitaltrail demo` runs it, for end-to-end tests: the ingestor (reading from a
real Mosquitto), the API and a simulated ward publishing through that broker, on an event loop
of their own in a thread beside the test."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from simulator.fleet import Fleet, FleetStats
from tests.stack import wait_for
from vitaltrail.mosquitto import wait_for_port
from vitaltrail.runtime import IngestRuntime, api_server, build_ingest
from vitaltrail.settings import Settings

RECORDED = "vitaltrail_readings_accepted_total"  # the ingestor's count of readings recorded


class LiveSystem:
    """The ingestor, the API and the simulated ward on one event loop. The ward publishes for
    ``publish_s`` seconds - first, with ``history_s``, the readings of that long before the
    start, as devices replaying their outboxes - then stays quiet, so what the pages show holds
    still. Closing it stops the ward too, if it is still publishing."""

    def __init__(
        self, settings: Settings, fleet: Fleet, publish_s: float, history_s: float = 0.0
    ) -> None:
        self.settings, self.fleet, self.publish_s = settings, fleet, publish_s
        self.history_s = history_s
        self.url = settings.base_url
        self.runtime: IngestRuntime | None = None
        self.published: FleetStats | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LiveSystem:
        self._thread.start()
        wait_for(lambda: self._stop is not None or self.error is not None, 10, "the loop")
        wait_for_port(self.settings.http_port)
        return self

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # handed to the test in close()
            self.error = exc
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = stop = asyncio.Event()
        runtime = self.runtime = build_ingest(self.settings)
        server = api_server(self.settings, runtime)
        ingest = asyncio.create_task(runtime.ingestor.run(stop))
        web = asyncio.create_task(server.serve())
        ward = asyncio.create_task(self._publish(runtime))
        try:
            await stop.wait()
        finally:
            stop.set()
            ward.cancel()
            server.should_exit = True
            await asyncio.gather(ingest, web)
            with contextlib.suppress(asyncio.CancelledError):
                await ward
            runtime.close()

    async def _publish(self, runtime: IngestRuntime) -> None:
        try:
            await asyncio.wait_for(runtime.ingestor.connected.wait(), 10)
            self.published = await self.fleet.run(self.publish_s, history_s=self.history_s)
        except Exception as exc:  # the test waiting for the ward sees it at once
            self.error = exc
            raise

    def ingested(self) -> float:
        """How many readings the ingestor has recorded."""
        assert self.runtime is not None
        return self.runtime.metrics.registry.get_sample_value(RECORDED) or 0.0

    def close(self) -> None:
        if self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the ingestor and the API did not stop"
        if self.error is not None:
            raise self.error
