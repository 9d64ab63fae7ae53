"""The subscription engine against fakes of what it is given: the ledger's new Observations, the
access decision, the rest-hook endpoint and the websocket. (tests/test_fhir_subscriptions_live.py
runs the real ones.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from access.errors import JournalError
from access.policy import Decision
from access.scopes import ScopeSet
from access.tokens import Principal
from fhirserver.rest_hook import RestHook
from fhirserver.subscription_engine import (
    EngineConfig,
    NewObservation,
    ObservationBatch,
    SubscriptionEngine,
)
from fhirserver.subscription_store import StoredSubscription, SubscriptionStore, owner_key
from fhirserver.subscriptions import SubscriptionLimits, parse_subscription
from fhirserver.ws_binding import BindingTokens
from tests.stack import wait_until
from tests.subscription_docs import (
    BASE,
    event_numbers,
    new_observations,
    notification_type,
    subscription_doc,
)

OWNER = Principal(
    subject="telemed-1",
    client_id="telemed-1",
    kind="app",
    roles=frozenset(),
    scopes=ScopeSet.parse("system/Observation.rs system/Subscription.crds"),
    token_id="jti-1",
    issuer="https://issuer.example",
    expires_at=2_000_000_000,
)
CONFIG = EngineConfig(
    poll_s=0.05, retry_delays_s=(0.0, 0.0), websocket_send_timeout_s=0.3, max_bad_messages=2
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Ledger:
    """The engine's ``NewObservations``: one list of Observations per entry."""

    def __init__(self) -> None:
        self.entries: list[list[NewObservation]] = []
        self.closed = False

    def append(self, observations: list[NewObservation]) -> None:
        assert all(o.entry_index == len(self.entries) for o in observations)
        self.entries.append(observations)

    def reading(self, patient: str, hr: float = 72, *, glucose: bool = False) -> None:
        self.append(new_observations(patient, len(self.entries), hr, glucose=glucose))

    def head(self) -> int:
        return len(self.entries)

    def since(self, position: int, limit: int, patients: frozenset[str]) -> ObservationBatch:
        end = min(len(self.entries), position + limit)
        found = [o for i in range(position, end) for o in self.entries[i]]
        return ObservationBatch([o for o in found if o.patient_id in patients], end)

    def close(self) -> None:
        self.closed = True


@dataclass
class Judge:
    """The access decision: permits until ``refuse`` names a reason; records each call."""

    refuse: str | None = None
    unrecorded: bool = False
    calls: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)

    def __call__(
        self,
        owner: Principal,
        patient: str,
        data: str,
        codes: tuple[str, ...],
        route: str,
        nid: str,
    ) -> Decision:
        assert owner == OWNER
        assert data == "vital-signs"
        if self.unrecorded:
            raise JournalError("the journal is gone")
        self.calls.append((patient, codes, route))
        permit = self.refuse is None
        reason = self.refuse or "consent"
        return Decision(permit, reason, "app", "read", (patient,), (data,), ("TREAT",))


class Endpoint(RestHook):
    """Rest-hook endpoints: each answers with ``failures[endpoint]`` (None: taken), or hangs."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []
        self.failures: dict[str, str | None] = {}
        self.hang: set[str] = set()

    async def post(
        self, endpoint: str, headers: tuple[str, ...], body: bytes, timeout_s: float
    ) -> str | None:
        if endpoint in self.hang:
            await asyncio.Event().wait()
        self.posts.append((endpoint, headers, json.loads(body)))
        return self.failures.get(endpoint)

    async def close(self) -> None:
        pass

    def kinds(self, endpoint: str) -> list[str]:
        return [notification_type(b) for e, _, b in self.posts if e == endpoint]


@dataclass
class Rig:
    engine: SubscriptionEngine
    store: SubscriptionStore
    ledger: Ledger
    judge: Judge
    endpoint: Endpoint
    clock: Clock

    def subscribe(self, patient: str = "p-1", **doc: Any) -> StoredSubscription:
        spec = parse_subscription(
            subscription_doc(patient, **doc), BASE, int(self.clock() * 1000),
            SubscriptionLimits(allow_http_loopback=True),
        )  # fmt: skip
        return self.store.create(
            OWNER, spec, int(self.clock() * 1000), self.ledger.head(), per_owner=9, total=9
        )

    def status(self, sub: StoredSubscription) -> tuple[str, str | None]:
        now = self.store.get(sub.id)
        assert now is not None
        return now.status, now.error

    async def settle(self) -> None:
        """One tick, and the deliveries it started."""
        await self.engine.tick()
        started = list(self.engine._inflight.values())
        if started:  # those that hang (on purpose) are left running
            await asyncio.wait(started, timeout=0.2)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = SubscriptionStore(tmp_path / "subs.db", keep_events=50)
    ledger, judge, endpoint, clock = Ledger(), Judge(), Endpoint(), Clock()
    ledger.reading("p-1")  # before any subscription: never an event
    engine = SubscriptionEngine(
        store, lambda: ledger, judge, BASE, tokens=BindingTokens(60, clock=clock),
        config=CONFIG, rest_hook=endpoint, clock=clock,
    )  # fmt: skip
    yield Rig(engine, store, ledger, judge, endpoint, clock)
    await engine.close()
    assert ledger.closed
    store.close()


A, B = "https://a.example/hook", "https://b.example/hook"


async def test_readings_of_the_filtered_patient_become_events_from_the_subscription_on(
    rig: Rig,
) -> None:
    await rig.engine.tick()  # the engine starts at the ledger's head
    sub = rig.subscribe("p-1", endpoint=A)
    rig.ledger.reading("p-2")  # another patient
    rig.ledger.reading("p-1", glucose=True)  # heart rate, SpO2 (vital signs) and glucose (not)
    rig.ledger.append([])  # an entry that is no reading
    await rig.engine.tick()
    kept = rig.store.events(sub.id, 0, 10)
    assert [e.entry_index for e in kept] == [2, 2]
    assert [e.resource["code"]["coding"][0]["code"] for e in kept] == ["8867-4", "2708-6"]
    assert rig.store.position() == 4
    assert rig.engine.stats.events == 2


async def test_a_rest_hook_shakes_hands_then_gets_its_events_in_batches(rig: Rig) -> None:
    sub = rig.subscribe(endpoint=A, max_count=3, headers=["Authorization: Bearer r"])
    await rig.settle()
    assert rig.status(sub) == ("active", None)
    assert rig.endpoint.kinds(A) == ["handshake"]
    assert rig.endpoint.posts[0][1] == ("Authorization: Bearer r",)
    for hr in (70, 71):
        rig.ledger.reading("p-1", hr)
    await rig.settle()  # events 1..3
    await rig.settle()  # event 4
    assert rig.endpoint.kinds(A) == ["handshake", "event-notification", "event-notification"]
    assert [event_numbers(b) for _, _, b in rig.endpoint.posts[1:]] == [[1, 2, 3], [4]]
    assert rig.judge.calls[0] == (
        "p-1",
        ("2708-6", "59408-5", "8867-4"),
        "NOTIFY rest-hook /fhir/Subscription/{id}",
    )
    assert rig.store.get(sub.id).delivered == 4  # type: ignore[union-attr]
    await rig.settle()
    assert len(rig.endpoint.posts) == 3  # nothing more to send


async def test_a_failed_handshake_puts_the_subscription_in_error(rig: Rig) -> None:
    rig.endpoint.failures[A] = "http-500"
    sub = rig.subscribe(endpoint=A)
    await rig.settle()
    assert rig.status(sub) == ("error", "handshake-failed: http-500")
    rig.ledger.reading("p-1")
    await rig.settle()
    assert rig.endpoint.kinds(A) == ["handshake"]


async def test_a_failing_endpoint_is_retried_then_stopped_without_holding_back_others(
    rig: Rig,
) -> None:
    failing, slow, fine = (
        rig.subscribe(endpoint=A),
        rig.subscribe(endpoint=B),
        rig.subscribe(endpoint="https://c.example/"),
    )
    await rig.settle()
    rig.endpoint.failures[A] = "timeout"
    rig.endpoint.hang.add(B)  # never answers (the real client times out; this one does not)
    rig.ledger.reading("p-1")
    for _ in range(4):
        await rig.settle()
    assert rig.status(failing) == ("error", "delivery-failed: timeout")
    assert rig.endpoint.kinds(A) == ["handshake"] + ["event-notification"] * 3  # 1 + 2 retries
    assert rig.status(fine)[0] == "active"
    assert rig.endpoint.kinds("https://c.example/") == ["handshake", "event-notification"]
    assert rig.status(slow)[0] == "active"
    assert slow.id in rig.engine._inflight


async def test_a_refused_delivery_stops_the_subscription_and_sends_nothing(rig: Rig) -> None:
    sub = rig.subscribe(endpoint=A)
    await rig.settle()
    rig.judge.refuse = "no-consent"
    rig.ledger.reading("p-1")
    await rig.settle()
    assert rig.status(sub) == ("error", "access-refused: no-consent")
    assert rig.endpoint.kinds(A) == ["handshake"]
    assert rig.engine.stats.refused == 1
    rig.ledger.reading("p-1")
    await rig.settle()
    assert rig.store.get(sub.id).events == 2  # type: ignore[union-attr]  # stopped: no new events


async def test_without_a_record_of_the_decision_nothing_is_sent_until_there_is(rig: Rig) -> None:
    sub = rig.subscribe(endpoint=A)
    await rig.settle()
    rig.judge.unrecorded = True
    rig.ledger.reading("p-1")
    await rig.settle()
    assert rig.endpoint.kinds(A) == ["handshake"]
    assert rig.status(sub) == ("active", None)
    rig.judge.unrecorded = False
    rig.clock.now += 2
    await rig.settle()
    assert rig.endpoint.kinds(A) == ["handshake", "event-notification"]


async def test_heartbeats_when_nothing_was_sent_for_a_period_and_off_at_the_end(rig: Rig) -> None:
    sub = rig.subscribe(endpoint=A, heartbeat_s=30, end="2027-02-01T00:00:00Z")
    await rig.settle()
    rig.clock.now += 29
    await rig.settle()
    assert rig.endpoint.kinds(A) == ["handshake"]
    rig.clock.now += 2
    await rig.settle()
    assert rig.endpoint.kinds(A) == ["handshake", "heartbeat"]
    rig.clock.now = 1_800_000_000 + 86_400 * 365
    await rig.settle()
    assert rig.status(sub) == ("off", None)


class Socket:
    """A websocket whose client says what ``incoming`` holds (None: it goes away)."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None
        self.stalled = False

    async def receive_text(self) -> str:
        text = await self.incoming.get()
        if text is None:
            raise ConnectionResetError("the client went away")
        return text

    async def send_text(self, data: str) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def kinds(self) -> list[str]:
        return [
            notification_type(m) if m["resourceType"] == "Bundle" else m["resourceType"]
            for m in self.sent
        ]


async def test_a_websocket_binds_with_a_token_and_resumes_where_it_left_off(rig: Rig) -> None:
    sub = rig.subscribe(channel="websocket", endpoint=None, heartbeat_s=10)
    assert rig.status(sub) == ("active", None)
    token, _ = rig.engine.tokens.issue(owner_key(OWNER), (sub.id,))
    first = Socket()
    serving = asyncio.create_task(rig.engine.serve_websocket(first))
    await first.incoming.put("bind-with-token not-the-token")
    await first.incoming.put(f"bind-with-token {token}")
    await wait_until(lambda: len(first.sent) == 2, 5, "the handshake")
    assert first.kinds() == ["OperationOutcome", "handshake"]
    assert first.sent[0]["issue"][0]["details"]["coding"][0]["code"] == "bad-binding-token"
    rig.ledger.reading("p-1")
    await rig.engine.tick()
    await wait_until(lambda: len(first.sent) == 3, 5, "the event")
    assert event_numbers(first.sent[2]) == [1, 2]
    assert rig.judge.calls[-1][2] == "NOTIFY websocket /fhir/ws"
    rig.clock.now += 11
    await rig.engine.tick()
    await wait_until(lambda: len(first.sent) == 4, 5, "a heartbeat")
    assert first.kinds()[-1] == "heartbeat"
    await first.incoming.put(None)  # the client goes
    await serving
    rig.ledger.reading("p-1")  # missed while away
    await rig.engine.tick()
    second = Socket()
    serving = asyncio.create_task(rig.engine.serve_websocket(second))
    await second.incoming.put(f"bind-with-token {token}")
    await wait_until(lambda: len(second.sent) == 2, 5, "the handshake and what was missed")
    assert second.kinds() == ["handshake", "event-notification"]
    params = {p["name"]: p for p in second.sent[0]["entry"][0]["resource"]["parameter"]}
    assert params["events-since-subscription-start"]["valueString"] == "4"
    assert event_numbers(second.sent[1]) == [3, 4]
    await second.incoming.put(None)
    await serving


async def test_a_websocket_stops_on_refusal_and_a_slow_or_rude_one_is_closed(rig: Rig) -> None:
    sub = rig.subscribe(channel="websocket", endpoint=None)
    token, _ = rig.engine.tokens.issue(owner_key(OWNER), (sub.id,))
    slow = Socket()
    serving = asyncio.create_task(rig.engine.serve_websocket(slow))
    await slow.incoming.put(f"bind-with-token {token}")
    await wait_until(lambda: len(slow.sent) == 1, 5, "the handshake")
    slow.stalled = True
    rig.ledger.reading("p-1")
    await rig.engine.tick()
    await asyncio.wait_for(serving, 5)
    assert slow.closed == (1013, "notifications not taken in time")
    assert rig.engine.stats.slow_sockets == 1

    rude = Socket()
    serving = asyncio.create_task(rig.engine.serve_websocket(rude))
    for text in ("hello", "subscribe me", "please"):
        await rude.incoming.put(text)
    await asyncio.wait_for(serving, 5)
    assert rude.kinds() == ["OperationOutcome", "OperationOutcome"]
    assert rude.closed == (1008, "too many refused messages")

    big = Socket()
    serving = asyncio.create_task(rig.engine.serve_websocket(big))
    await big.incoming.put("x" * 5000)
    await asyncio.wait_for(serving, 5)
    assert big.closed == (1009, "message too long")

    rig.judge.refuse = "no-consent"
    refused = Socket()
    serving = asyncio.create_task(rig.engine.serve_websocket(refused))
    await refused.incoming.put(f"bind-with-token {token}")  # what the slow one missed follows
    await wait_until(lambda: rig.status(sub)[0] == "error", 5, "the refusal")
    assert rig.status(sub) == ("error", "access-refused: no-consent")
    assert refused.kinds() == ["handshake"]
    await refused.incoming.put(f"bind-with-token {token}")  # no longer bindable
    await wait_until(lambda: len(refused.sent) == 2, 5, "the refusal to bind")
    assert refused.sent[1]["issue"][0]["details"]["coding"][0]["code"] == "no-such-subscription"
    await refused.incoming.put(None)
    await serving
