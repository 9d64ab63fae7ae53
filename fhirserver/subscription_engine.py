"""The delivery engine: new readings become events, events become notifications, on a timer.

One asyncio task (:meth:`SubscriptionEngine.run`, started by the web app's lifespan, never by
a request) ticks every ``poll_s``:

1. **match** - the Observations of the ledger entries since the stored cursor (at most
   ``scan_entries`` a tick; ``NewObservations``) are matched against the live subscriptions'
   topic and filter, recorded as events and the cursor moved, in one transaction
   (``fhirserver.subscription_store``): a restart neither misses nor repeats one;
2. **rest-hook** - each subscription with work gets at most one POST in flight (a
   ``requested`` one its handshake; an active one its next events, at most ``max_count``, or
   a heartbeat when ``heartbeatPeriod`` passed without a send), at most ``concurrent_posts``
   at once, each bounded by its timeout: a slow or failing endpoint holds only its own
   subscription back. A failure is retried after ``retry_delays_s``; when they are used up
   the subscription goes to ``error`` with the reason (the IG: the client re-creates it);
3. **websocket** - the bound sockets are woken to send what is new.

Events are read from the store at send time, from the last one delivered: that table is the
queue, bounded per subscription, so a slow client costs no memory; a websocket that does not
take a notification within ``websocket_send_timeout_s`` is closed (1013) and resumes when it
binds again - the handshake says ``events-since-subscription-start``, and the events it
missed follow (those still kept; ``$events`` reads them too).

Every event notification is judged first (``fhirserver.delivery_access``): decided for the
subscription's owner and recorded in the access trail before it is sent. A refusal (consent
withdrawn, care team left, user disabled) stops the subscription: status ``error``, its
``error`` naming the reason; nothing more is sent. Handshakes and heartbeats carry no
patient data (``fhirserver.notifications``) and are sent without a decision.

Blocking work (SQLite, the ledger, trail commits) runs on the engine's own threads: one that
follows the ledger (``NewObservations`` is opened and used there only) and a few for the
store and the decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from access.errors import AccessRecordError
from fhirserver.delivery_access import REST_HOOK_ROUTE, WEBSOCKET_ROUTE, Judge
from fhirserver.notifications import notification_bundle
from fhirserver.outcome import operation_outcome
from fhirserver.rest_hook import RestHook
from fhirserver.subscription_store import (
    Event,
    Match,
    StoredSubscription,
    SubscriptionStore,
    owner_key,
)
from fhirserver.ws_binding import BindingTokens

log = logging.getLogger("vitaltrail.fhir.subscriptions")

T = TypeVar("T")
LOINC = "http://loinc.org"
BIND = "bind-with-token"
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_LATER = 1000, 1008, 1009, 1013


@dataclass(frozen=True)
class NewObservation:
    entry_index: int
    patient_id: str
    resource: dict[str, Any]


@dataclass(frozen=True)
class ObservationBatch:
    observations: list[NewObservation]
    position: int  # where the next call starts: every entry before it has been looked at


class NewObservations(Protocol):
    """What the engine needs of the ledger: the Observations of the entries from a position."""

    def head(self) -> int:
        """The position a subscription made now starts at (the ledger's size)."""
        ...

    def since(self, position: int, limit: int, patients: frozenset[str]) -> ObservationBatch:
        """The Observations of ``patients`` in at most ``limit`` entries from ``position`` on,
        in log order."""
        ...

    def close(self) -> None: ...


class WebSocketLike(Protocol):
    """The part of Starlette's ``WebSocket`` the engine uses (so tests can use a fake)."""

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    poll_s: float = 0.5
    scan_entries: int = 10_000
    concurrent_posts: int = 8
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    max_notification_bytes: int = 1 << 20
    websocket_send_timeout_s: float = 10.0
    max_websockets: int = 100
    max_bindings_per_socket: int = 32
    max_message_chars: int = 4096
    max_bad_messages: int = 5


@dataclass
class EngineStats:
    """What the engine did, counted (``vitaltrail_fhir_*`` in a later metrics registry)."""

    events: int = 0
    sent: int = 0  # notifications accepted by an endpoint or written to a socket
    failed: int = 0  # rest-hook attempts that failed
    refused: int = 0  # notifications the access policy refused (the subscription stopped)
    slow_sockets: int = 0  # websockets closed for not taking a notification in time


def codes_of(events: Sequence[Event]) -> tuple[str, ...]:
    """The LOINC codes the events' Observations carry (what a consent must cover)."""
    return tuple(
        sorted(
            {
                c["code"]
                for e in events
                for c in e.resource.get("code", {}).get("coding", [])
                if c.get("system") == LOINC and isinstance(c.get("code"), str)
            }
        )
    )


@dataclass
class _Binding:
    cursor: int  # the last event number sent on this socket
    expires_ms: int
    last_sent: float


@dataclass(eq=False)  # each socket's own: compared and hashed by identity
class _Session:
    socket: WebSocketLike
    bindings: dict[str, _Binding] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    idle_since: float = 0.0
    bad_messages: int = 0


class SocketTooSlow(Exception):
    """A websocket did not take a notification within the send timeout."""


class SubscriptionEngine:
    def __init__(
        self,
        store: SubscriptionStore,
        source: Callable[[], NewObservations],
        judge: Judge,
        base_url: str,
        *,
        tokens: BindingTokens,
        config: EngineConfig = EngineConfig(),
        rest_hook: RestHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.base_url = base_url
        self.config = config
        self.stats = EngineStats()
        self._open_source = source
        self._source: NewObservations | None = None
        self._judge = judge
        self._rest_hook = rest_hook or RestHook()
        self._clock = clock
        self._follower = ThreadPoolExecutor(1, thread_name_prefix="vitaltrail-fhir-follow")
        self._workers = ThreadPoolExecutor(2, thread_name_prefix="vitaltrail-fhir-deliver")
        self._posts = asyncio.Semaphore(config.concurrent_posts)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._retry: dict[str, tuple[int, float]] = {}  # attempts so far, not before
        self._last_sent: dict[str, float] = {}
        self._sessions: set[_Session] = set()
        self._heartbeats: dict[str, int | None] = {}  # of the subscriptions bound to sockets

    # -- the timer --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a tick that fails is logged and the next one runs."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("a subscription engine tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_s)

    async def tick(self) -> None:
        await self._on(self._follower, self._match)
        subs = await self._on(self._workers, self.store.live)
        now = self._clock()
        for sub in subs:
            if now * 1000 >= sub.spec.end_ms:
                await self._on(self._workers, self.store.set_status, sub.id, "off", None)
            elif sub.spec.channel == "rest-hook":
                self._schedule(sub, now)
        for session in self._sessions:
            session.wake.set()

    async def head(self) -> int:
        """Where a subscription created now starts (on the follower's thread)."""
        return await self._on(self._follower, lambda: self._source_now().head())

    def _source_now(self) -> NewObservations:
        if self._source is None:
            self._source = self._open_source()
        return self._source

    def _match(self) -> None:
        source = self._source_now()
        live = self.store.live()
        stored = self.store.position()
        if stored is None:  # the first run: from now on, or where the first subscription starts
            position = min([source.head(), *(s.start_position for s in live)])
        else:
            position = stored
        patients = frozenset(s.spec.patient for s in live)
        batch = source.since(position, self.config.scan_entries, patients)
        by_patient: dict[str, list[StoredSubscription]] = {}
        for sub in live:
            by_patient.setdefault(sub.spec.patient, []).append(sub)
        matches = [
            Match(sub.id, new.entry_index, new.resource)
            for new in batch.observations
            for sub in by_patient.get(new.patient_id, ())
            if new.entry_index >= sub.start_position and sub.spec.topic.matches(new.resource)
        ]
        if matches or batch.position != stored:
            counts = self.store.record(matches, batch.position, int(self._clock() * 1000))
            self.stats.events += len(matches)
            if counts:
                log.debug("events for %d subscriptions", len(counts))

    async def _on(self, pool: ThreadPoolExecutor, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, call, *args)

    # -- rest-hook --------------------------------------------------------------------------

    def _schedule(self, sub: StoredSubscription, now: float) -> None:
        if sub.id in self._inflight:
            return
        _, not_before = self._retry.get(sub.id, (0, 0.0))
        if now < not_before:
            return
        job: Awaitable[None]
        if sub.status == "requested":
            job = self._handshake(sub)
        elif sub.events > sub.delivered:
            job = self._deliver(sub)
        elif self._heartbeat_due(sub, self._last_sent.get(sub.id), now):
            job = self._heartbeat(sub)
        else:
            return
        self._inflight[sub.id] = asyncio.create_task(self._guarded(sub.id, job))

    @staticmethod
    def _heartbeat_due(sub: StoredSubscription, last_sent: float | None, now: float) -> bool:
        if sub.spec.heartbeat_s is None:
            return False
        since = last_sent if last_sent is not None else sub.created_ms / 1000
        return now - since >= sub.spec.heartbeat_s

    async def _guarded(self, sub_id: str, job: Awaitable[None]) -> None:
        try:
            async with self._posts:
                await job
        except Exception:
            log.exception("a delivery of subscription %s failed", sub_id)
        finally:
            self._inflight.pop(sub_id, None)

    async def _post(self, sub: StoredSubscription, bundle: dict[str, Any]) -> str | None:
        body = json.dumps(bundle, separators=(",", ":")).encode()
        if len(body) > self.config.max_notification_bytes:
            return "notification-too-large"
        assert sub.spec.endpoint is not None
        return await self._rest_hook.post(
            sub.spec.endpoint, sub.spec.headers, body, sub.spec.timeout_s
        )

    async def _handshake(self, sub: StoredSubscription) -> None:
        now = self._clock()
        bundle = notification_bundle(
            sub, "handshake", self.base_url, int(now * 1000), status="requested"
        )
        failure = await self._post(sub, bundle)
        if failure is None:
            self._sent(sub.id)
            await self._on(self._workers, self.store.set_status, sub.id, "active", None)
        else:
            self.stats.failed += 1
            log.info("subscription %s: handshake failed (%s)", sub.id, failure)
            await self._on(
                self._workers,
                self.store.set_status,
                sub.id,
                "error",
                f"handshake-failed: {failure}",
            )

    async def _heartbeat(self, sub: StoredSubscription) -> None:
        bundle = notification_bundle(sub, "heartbeat", self.base_url, int(self._clock() * 1000))
        await self._outcome(sub, await self._post(sub, bundle))

    async def _deliver(self, sub: StoredSubscription) -> None:
        events = await self._on(
            self._workers, self.store.events, sub.id, sub.delivered, sub.spec.max_count
        )
        if not events:  # those waiting were dropped (more arrived than are kept)
            await self._on(self._workers, self.store.mark_delivered, sub.id, sub.events)
            return
        try:
            judged = await self._judged(sub, events, REST_HOOK_ROUTE)
        except _NotRecorded:
            self._retry[sub.id] = (self._retry.get(sub.id, (0, 0.0))[0], self._clock() + 1.0)
            return
        if judged is None:
            return
        shown, bundle = judged
        if shown:
            failure = await self._post(sub, bundle)
            if failure is not None:
                await self._outcome(sub, failure)
                return
            self.stats.sent += 1
        self._sent(sub.id)
        await self._on(self._workers, self.store.mark_delivered, sub.id, events[-1].number)

    async def _judged(
        self, sub: StoredSubscription, events: list[Event], route: str
    ) -> tuple[list[Event], dict[str, Any]] | None:
        """The events the owner may receive now and their notification, decided and recorded
        first; None when refused (the subscription is stopped); :class:`_NotRecorded` when the
        trail could not record the decision (nothing may be sent: later)."""
        notification_id = str(uuid.uuid4())
        try:
            decision = await self._on(
                self._workers, self._judge, sub.owner, sub.spec.patient,
                sub.spec.topic.data_class, codes_of(events), route, notification_id,
            )  # fmt: skip
        except AccessRecordError as exc:  # no record, no notification
            log.error("the access trail did not record a delivery: %s", type(exc).__name__)
            raise _NotRecorded from exc
        if not decision.permit:
            self.stats.refused += 1
            log.info("subscription %s stopped: access refused (%s)", sub.id, decision.reason)
            await self._on(
                self._workers, self.store.set_status, sub.id, "error",
                f"access-refused: {decision.reason}",
            )  # fmt: skip
            return None
        shown = [e for e in events if all(decision.shows(c) for c in codes_of([e]))]
        bundle = notification_bundle(
            sub, "event-notification", self.base_url, int(self._clock() * 1000), shown,
            bundle_id=notification_id,
        )  # fmt: skip
        return shown, bundle

    def _sent(self, sub_id: str) -> None:
        self._retry.pop(sub_id, None)
        self._last_sent[sub_id] = self._clock()

    async def _outcome(self, sub: StoredSubscription, failure: str | None) -> None:
        if failure is None:
            self.stats.sent += 1
            self._sent(sub.id)
            return
        self.stats.failed += 1
        attempts = self._retry.get(sub.id, (0, 0.0))[0] + 1
        delays = self.config.retry_delays_s
        if attempts > len(delays):
            self._retry.pop(sub.id, None)
            log.info("subscription %s: delivery failed %d times (%s)", sub.id, attempts, failure)
            await self._on(
                self._workers, self.store.set_status, sub.id, "error", f"delivery-failed: {failure}"
            )
            return
        self._retry[sub.id] = (attempts, self._clock() + delays[attempts - 1])

    # -- websocket --------------------------------------------------------------------------

    async def serve_websocket(self, socket: WebSocketLike) -> None:
        """Serve one accepted websocket until either side ends it."""
        if len(self._sessions) >= self.config.max_websockets:
            await socket.close(CLOSE_TRY_LATER, "too many websockets")
            return
        session = _Session(socket, idle_since=self._clock())
        self._sessions.add(session)
        receiving = asyncio.create_task(self._receive(session))
        sending = asyncio.create_task(self._send_loop(session))
        try:
            done, _ = await asyncio.wait({receiving, sending}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                closing = task.exception() if not task.cancelled() else None
                if isinstance(closing, _Close):
                    await _close_quietly(socket, closing.code, closing.reason)
        finally:
            self._sessions.discard(session)
            for task in (receiving, sending):
                task.cancel()
            await asyncio.gather(receiving, sending, return_exceptions=True)

    async def _receive(self, session: _Session) -> None:
        while True:
            text = await session.socket.receive_text()  # raises when the client goes
            if len(text) > self.config.max_message_chars:
                raise _Close(CLOSE_TOO_BIG, "message too long")
            command, _, token = text.strip().partition(" ")
            if command.rstrip(":") != BIND or not token.strip():
                await self._refuse(session, "not-supported", "unknown-message",
                                   f"the one message understood is '{BIND} <token>'")  # fmt: skip
                continue
            await self._bind(session, token.strip())

    async def _refuse(self, session: _Session, issue: str, reason: str, text: str) -> None:
        session.bad_messages += 1
        if session.bad_messages > self.config.max_bad_messages:
            raise _Close(CLOSE_POLICY, "too many refused messages")
        await self._send(
            session, json.dumps(operation_outcome("error", issue, text, reason=reason))
        )

    async def _bind(self, session: _Session, token: str) -> None:
        grant = self.tokens.redeem(token)
        if grant is None:
            await self._refuse(session, "security", "bad-binding-token",
                               "the binding token is unknown or expired")  # fmt: skip
            return
        for sub_id in grant.subscriptions:
            sub = await self._on(self._workers, self.store.get, sub_id)
            if (
                sub is None
                or owner_key(sub.owner) != grant.owner
                or sub.spec.channel != "websocket"
                or sub.status != "active"
            ):
                await self._refuse(session, "not-found", "no-such-subscription",
                                   f"Subscription/{sub_id} cannot be bound now")  # fmt: skip
                continue
            if (
                sub_id not in session.bindings
                and len(session.bindings) >= self.config.max_bindings_per_socket
            ):
                raise _Close(CLOSE_POLICY, "too many subscriptions on one socket")
            session.bindings[sub_id] = _Binding(sub.delivered, grant.expires_ms, self._clock())
            bundle = notification_bundle(sub, "handshake", self.base_url, self.now_ms())
            await self._send(session, json.dumps(bundle))
        session.wake.set()  # what it missed follows the handshake

    async def _send(self, session: _Session, text: str) -> None:
        async with session.send_lock:
            try:
                await asyncio.wait_for(
                    session.socket.send_text(text), self.config.websocket_send_timeout_s
                )
            except TimeoutError:
                self.stats.slow_sockets += 1
                raise _Close(CLOSE_TRY_LATER, "notifications not taken in time") from None

    async def _send_loop(self, session: _Session) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wake.wait(), self._next_due(session))
            session.wake.clear()
            for sub_id in list(session.bindings):
                await self._serve_binding(session, sub_id)
            now = self._clock()
            if session.bindings:
                session.idle_since = now
            elif now - session.idle_since >= self.tokens.ttl_s:
                raise _Close(CLOSE_NORMAL, "nothing bound")

    def _next_due(self, session: _Session) -> float:
        """Seconds until a heartbeat or a binding's end is due (at most a poll)."""
        now, due = self._clock(), self.config.poll_s
        for sub_id, binding in session.bindings.items():
            due = min(due, binding.expires_ms / 1000 - now)
            heartbeat = self._heartbeats.get(sub_id)
            if heartbeat is not None:
                due = min(due, binding.last_sent + heartbeat - now)
        return max(due, 0.01)

    async def _serve_binding(self, session: _Session, sub_id: str) -> None:
        binding = session.bindings[sub_id]
        if self.now_ms() >= binding.expires_ms:
            del session.bindings[sub_id]
            return
        sub = await self._on(self._workers, self.store.get, sub_id)
        if sub is None or sub.status != "active":
            del session.bindings[sub_id]
            self._heartbeats.pop(sub_id, None)
            return
        self._heartbeats[sub_id] = sub.spec.heartbeat_s
        events = await self._on(
            self._workers, self.store.events, sub_id, binding.cursor, sub.spec.max_count
        )
        if events:
            try:
                judged = await self._judged(sub, events, WEBSOCKET_ROUTE)
            except _NotRecorded:
                return  # the next wake tries again
            if judged is None:
                del session.bindings[sub_id]
                return
            shown, bundle = judged
            if shown:
                await self._send(session, json.dumps(bundle))
                self.stats.sent += 1
            binding.cursor = events[-1].number
            binding.last_sent = self._clock()
            await self._on(self._workers, self.store.mark_delivered, sub_id, binding.cursor)
        elif self._heartbeat_due(sub, binding.last_sent, self._clock()):
            bundle = notification_bundle(sub, "heartbeat", self.base_url, self.now_ms())
            await self._send(session, json.dumps(bundle))
            binding.last_sent = self._clock()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self._rest_hook.close()
        self._workers.shutdown(wait=True)
        self._follower.submit(self._close_source).result()
        self._follower.shutdown(wait=True)

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


class _NotRecorded(Exception):
    """The access trail could not record a delivery's decision."""


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _close_quietly(socket: WebSocketLike, code: int, reason: str) -> None:
    try:
        await socket.close(code, reason)
    except Exception as exc:  # already gone
        log.debug("closing a websocket: %r", exc)
