"""What the open alert streams wait on: news that alerts changed or readings arrived, the
bound on how many streams are open, and the server's going away.

The alert rounds and the staff's actions run in this process and say so here; a stream woken
reads the changes themselves from the alert store (nothing is queued per stream, so a slow
client holds no growing backlog), and looks anyway every keep-alive in case another process
changed them. Everything here is called on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

from fastapi import FastAPI

FOLLOW_S = 0.25  # how often the engine looks for new readings (dashboards.alert_routes)
HUB = "alert_hub"  # app.state attribute
SERVER_EXITING = "server_exiting"  # app.state: callables the HTTP server calls as it stops


@dataclass(frozen=True)
class StreamLimits:
    per_user: int = 4  # a clinician's tabs and devices
    total: int = 200  # streams open in this process
    keep_alive_s: float = 15.0
    retry_ms: int = 2000  # how long EventSource waits before reconnecting
    redecide_s: float = 30.0  # how often the visible patients are decided again
    ward_every_s: float = 1.0  # at most one ``ward`` nudge this often
    send_timeout_s: float = 30.0  # a client that takes no bytes for this long is dropped
    batch: int = 100  # changes read (and recorded in the trail) at once


class AlertHub:
    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self.alerts_version = 0
        self.readings_ms = 0  # when new readings were last seen
        self.closing = False
        self._wake = asyncio.Event()
        self._open: Counter[str] = Counter()

    def alerts_changed(self) -> None:
        self.alerts_version += 1
        self._kick()

    def readings_arrived(self, now_ms: int) -> None:
        self.readings_ms = now_ms
        self._kick()

    def close(self) -> None:
        """End every open stream (shutdown)."""
        self.closing = True
        self._kick()

    def _kick(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Until something changes, or ``timeout_s``."""
        wake = self._wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(0.0, timeout_s))

    def admit(self, user: str) -> str | None:
        """Count a new stream of ``user`` in; the reason code if it is refused."""
        if self.closing:
            return "shutting-down"
        if sum(self._open.values()) >= self.limits.total:
            return "too-many-streams"
        if self._open[user] >= self.limits.per_user:
            return "too-many-streams-of-user"
        self._open[user] += 1
        return None

    def leave(self, user: str) -> None:
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())


def hub_of(app: FastAPI) -> AlertHub | None:
    hub: AlertHub | None = getattr(app.state, HUB, None)
    return hub
