"""``GET /api/v1/alerts/stream``: alert changes pushed to the ward page as server-sent events.

The patients a stream carries are decided by the ward listing's gate at connect (recorded in
the access trail) and decided again every ``redecide_s`` (recorded again): a clinician taken
off a care team stops receiving that patient, a patient's first readings bring them in, and a
caller whose token or session no longer holds (a disabled user, an expired token) has the
stream ended. Each batch of changes is decided once more and recorded (route
:data:`TRAIL_ROUTE`, the batch's sequence numbers as the request id) before it is written, as
FHIR subscription notifications are.

A message is ``id: <alert_event seq>``, ``event: alert``, ``data: {"seq", "event", "time_ms",
"by", "alert"}``; ``Last-Event-ID`` (EventSource sends it on reconnecting) or ``?after=<seq>``
replays the changes after that seq first. ``retry: 2000`` opens the stream, ``: keep-alive``
every 15 s, ``event: ward`` (``{"time_ms"}``) when new readings arrived, at most once a second.

Bounds: streams per user and in all (429 ``too-many-streams-of-user``, 503
``too-many-streams``); nothing is queued per stream (changes are read from the store when the
hub says there are some), and a client that takes no bytes for ``send_timeout_s`` is dropped.
The stream ends when the server stops (the hub's ``close``; uvicorn waits for open responses
before the app's lifespan ends, so the server calls :data:`~dashboards.alert_hub.SERVER_EXITING`
first).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from access.errors import AccessRecordError, TokenError, UserDisabled
from access.policy import (
    AccessRequest,
    DataClass,
    Decision,
    decide_and_record,
    disabled_user_access,
    safe_id,
)
from access.tokens import Principal
from clinical.alerts import Event
from dashboards.access_deps import (
    PURPOSE_HEADER,
    AccessServices,
    Caller,
    VisiblePatients,
)
from dashboards.alert_hub import AlertHub, hub_of
from dashboards.alert_routes import shown
from dashboards.alert_schemas import AlertOut
from dashboards.reads import Readers, read_pool
from dashboards.refusals import RefusalOut, Refused, RefusingRoute
from dashboards.route_rules import PatientData, access
from dashboards.session import cookie_names

log = logging.getLogger("vitaltrail.api.alerts.stream")

router = APIRouter(route_class=RefusingRoute, tags=["clinical"])
STREAM = "/api/v1/alerts/stream"
TRAIL_ROUTE = "NOTIFY sse /api/v1/alerts/stream"
MAX_SEQ = 2**62
EVENT_STREAM = "text/event-stream"
DATA_CLASS: DataClass = "vital-signs"

Write = Callable[[bytes], Awaitable[None]]


def alert_message(seq: int, event: Event) -> bytes:
    """One ``event: alert`` message."""
    data = {
        "seq": seq,
        "event": event.kind.value,
        "time_ms": event.time_ms,
        "by": event.by,
        "alert": AlertOut.of(event.alert).model_dump(mode="json"),
    }
    return f"id: {seq}\nevent: alert\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def ward_message(time_ms: int) -> bytes:
    return f'event: ward\ndata: {{"time_ms":{time_ms}}}\n\n'.encode()


KEEP_ALIVE = b": keep-alive\n\n"


def _start(last_event_id: str | None, after: int | None) -> int | None:
    """Where a replay starts: ``Last-Event-ID`` (the browser's reconnect) over ``after``."""
    if last_event_id is None:
        return after
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_SEQ):
        raise Refused(400, "bad-last-event-id", f"Last-Event-ID is an alert seq, 0 to {MAX_SEQ}")
    return int(text)


class EventStreamResponse(Response):
    """A response that writes what ``produce`` writes until it returns, the client goes, or a
    write waits longer than ``send_timeout_s`` (a client that stopped reading)."""

    media_type = EVENT_STREAM

    def __init__(
        self,
        produce: Callable[[Write, asyncio.Event], Awaitable[None]],
        send_timeout_s: float,
        on_close: Callable[[], None],
    ) -> None:
        self.status_code = 200
        self.background = None
        self._produce, self._send_timeout_s, self._on_close = produce, send_timeout_s, on_close
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def write(chunk: bytes) -> None:
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            await asyncio.wait_for(send(message), self._send_timeout_s)

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            with suppress(TimeoutError, OSError):
                await self._produce(write, gone)
            with suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self._on_close()


class AlertFeed:
    """One open stream: its caller, the patients it may carry, where it has got to."""

    def __init__(
        self, request: Request, principal: Principal, hub: AlertHub, listing: Decision, seq: int
    ) -> None:
        self.request, self.principal, self.hub, self.seq = request, principal, hub, seq
        self.decision = listing
        self.purpose = request.headers.get(PURPOSE_HEADER)
        self.services: AccessServices = request.app.state.access

    def visible(self) -> set[str]:
        return set(self.decision.patients) if self.decision.permit else set()

    def _decide(self, r: Readers, candidates: tuple[str, ...], request_id: str | None) -> Decision:
        asked = AccessRequest(DATA_CLASS, None, candidates, (), self.purpose)
        return decide_and_record(
            self.services.policy, self.services.trail, self.principal, asked, TRAIL_ROUTE,
            request_id,
        )  # fmt: skip

    def _still_signed_in(self, r: Readers) -> bool:
        """Whether the caller's token (or session) would still be let in: a disabled user's
        refusal is recorded, as a request's is."""
        header = self.request.headers.get("authorization")
        if header is None:
            sessions = getattr(self.request.app.state, "sessions", None)
            secret = self.request.cookies.get(cookie_names(self.request).session)
            return sessions is None or (secret is not None and sessions.open(secret) is not None)
        try:
            self.services.verifier.verify_authorization(header)
        except UserDisabled as refused:
            now = int(time.time() * 1000)
            self.services.trail.record(
                disabled_user_access(refused, now, TRAIL_ROUTE, (), (DATA_CLASS,))
            )
            return False
        except TokenError:
            return False
        return True

    def redecide(self, r: Readers) -> bool:
        """Decide again which patients the stream carries (recorded); False: end it."""
        if not self._still_signed_in(r):
            return False
        self.decision = self._decide(r, tuple(r.store.patients()), None)
        return True

    def changes(self, r: Readers) -> list[bytes]:
        """The next batch of changes after ``seq`` for the visible patients, decided and
        recorded before they are handed out."""
        found = r.alerts.events_after(self.seq, self.visible(), self.hub.limits.batch)
        if not found:
            return []
        first, last = found[0][0], found[-1][0]
        self.seq = last
        patients = tuple(sorted({e.alert.key.patient_id for _, e in found}))
        decision = self._decide(r, patients, f"alert-seq-{first}-{last}")
        allowed = set(decision.patients) if decision.permit else set()
        return [
            alert_message(seq, e)
            for seq, e in found
            if e.alert.key.patient_id in allowed and shown(decision, e.alert)
        ]

    async def run(self, write: Write, gone: asyncio.Event) -> None:
        limits, hub, reads = self.hub.limits, self.hub, read_pool(self.request)
        await write(f"retry: {limits.retry_ms}\n\n".encode())
        now = time.monotonic
        next_decision = now() + limits.redecide_s
        last_write = last_ward = now()
        seen_version, seen_readings = -1, hub.readings_ms
        while not (gone.is_set() or hub.closing):
            if now() >= next_decision:
                if not await reads.run(self.redecide):
                    return
                next_decision = now() + limits.redecide_s
            if hub.alerts_version != seen_version or now() - last_write >= limits.keep_alive_s:
                seen_version = hub.alerts_version
                messages = await reads.run(self.changes)
                for message in messages:
                    await write(message)
                if messages:
                    last_write = now()
                    continue  # there may be more: read on before waiting
            if hub.readings_ms != seen_readings and now() - last_ward >= limits.ward_every_s:
                seen_readings = hub.readings_ms
                await write(ward_message(hub.readings_ms))
                last_write = last_ward = now()
            if now() - last_write >= limits.keep_alive_s:
                await write(KEEP_ALIVE)
                last_write = now()
            await self._wait(gone, last_write, last_ward, next_decision, seen_readings)

    async def _wait(
        self, gone: asyncio.Event, last_write: float, last_ward: float, next_decision: float,
        seen_readings: int,
    ) -> None:  # fmt: skip
        """Until the hub has news, the client goes, or the next thing falls due."""
        limits = self.hub.limits
        due = min(last_write + limits.keep_alive_s, next_decision)
        if self.hub.readings_ms != seen_readings:  # a ward nudge held back by the rate
            due = min(due, last_ward + limits.ward_every_s)
        timeout = max(0.0, due - time.monotonic())
        gone_wait = asyncio.ensure_future(gone.wait())
        hub_wait = asyncio.ensure_future(self.hub.wait(timeout))
        try:
            await asyncio.wait({gone_wait, hub_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone_wait.cancel()
            hub_wait.cancel()


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events: alert changes, ward nudges, keep-alives",
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
    },
    400: {"model": RefusalOut, "description": "a Last-Event-ID that is no seq"},
    429: {"model": RefusalOut, "description": "too-many-streams-of-user"},
    503: {"model": RefusalOut, "description": "too-many-streams, or shutting-down"},
}


@router.get(STREAM, status_code=200, response_class=EventStreamResponse, responses=STREAM_RESPONSES)
@access(PatientData(DATA_CLASS))
async def alert_stream(
    request: Request,
    principal: Caller,
    listing: VisiblePatients,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="replay the changes after this seq")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=32, description="as after (EventSource)"),
    ] = None,
) -> Response:
    """Alert changes of the patients the caller may see, as they happen (server-sent
    events); with ``Last-Event-ID`` or ``after``, the ones missed first."""
    start = _start(last_event_id, after)
    hub = hub_of(request.app)
    if hub is None:
        raise Refused(503, "shutting-down", "alerts are not being pushed", {"Retry-After": "5"})
    user = safe_id(principal.subject)
    refused = hub.admit(user)
    if refused is not None:
        status = 429 if refused == "too-many-streams-of-user" else 503
        raise Refused(status, refused, "no room for another alert stream", {"Retry-After": "5"})
    try:
        seq = start if start is not None else await read_pool(request).run(_last_seq)
    except BaseException:
        hub.leave(user)
        raise
    feed = AlertFeed(request, principal, hub, listing.decision, seq)

    async def produce(write: Write, gone: asyncio.Event) -> None:
        try:
            await feed.run(write, gone)
        except AccessRecordError as exc:  # nothing is sent without a record
            log.error("the access trail did not record a push: %s", type(exc).__name__)
        except HTTPException:
            log.debug("the read pool is busy: the stream ends, the client reconnects")

    return EventStreamResponse(produce, hub.limits.send_timeout_s, lambda: hub.leave(user))


def _last_seq(r: Readers) -> int:
    return r.alerts.last_seq()
