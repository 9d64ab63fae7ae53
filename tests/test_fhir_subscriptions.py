"""The Backport IG's R4 shapes: Subscriptions read and written, notification Bundles, the store.

Every resource the server writes is validated with tests/fhir_validation.py (fhir.resources'
R4B models; the Observations also against the vital-signs invariants).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from access.policy import Policy
from access.scopes import ScopeSet
from access.tokens import Principal
from access.trail import AccessEvent, AccessTrail
from fhirserver.capability import capability_statement
from fhirserver.delivery_access import REST_HOOK_ROUTE, DeliveryAccess
from fhirserver.notifications import (
    NOTIFICATION_PROFILE,
    binding_token_parameters,
    notification_bundle,
    status_bundle,
)
from fhirserver.subscription_store import (
    Match,
    StoredSubscription,
    SubscriptionStore,
    owner_key,
)
from fhirserver.subscription_topics import NEW_VITAL_SIGNS
from fhirserver.subscriptions import (
    HEARTBEAT_PERIOD,
    TOPIC_CANONICAL,
    SubscriptionError,
    SubscriptionLimits,
    SubscriptionSpec,
    capability_entry,
    parse_subscription,
    subscription_resource,
)
from tests.access_helpers import journal
from tests.access_hostile import node_paths, replaced
from tests.fhir_validation import check_vital_signs, validate
from tests.stack import now_ms
from tests.subscription_docs import BASE, HOOK, new_observations, subscription_doc

LIMITS = SubscriptionLimits()


def parse(doc: object, limits: SubscriptionLimits = LIMITS) -> SubscriptionSpec:
    return parse_subscription(doc, BASE, now_ms(), limits)


def principal(subject: str = "telemed-1", kind: str = "app") -> Principal:
    return Principal(
        subject=subject,
        client_id=subject if kind == "app" else "vitaltrail:web",
        kind=kind,  # type: ignore[arg-type]
        roles=frozenset() if kind == "app" else frozenset({"clinician"}),
        scopes=ScopeSet.parse("system/Observation.rs system/Subscription.crds"),
        token_id="jti-1",
        issuer="https://issuer.example",
        expires_at=2_000_000_000,
        claims={"purpose_of_use": "TREAT", "other": "dropped"},
    )


def test_a_rest_hook_subscription_is_read_as_the_ig_shapes_it_and_written_back_valid() -> None:
    doc = subscription_doc(
        "p-17", content="full-resource", heartbeat_s=60, timeout_s=5, max_count=3,
        headers=["Authorization: Bearer receiver-secret"],
    )  # fmt: skip
    spec = parse(doc)
    assert (spec.topic, spec.patient, spec.channel, spec.endpoint) == (
        NEW_VITAL_SIGNS, "p-17", "rest-hook", HOOK,
    )  # fmt: skip
    assert (spec.content, spec.heartbeat_s, spec.timeout_s, spec.max_count) == (
        "full-resource", 60, 5, 3,
    )  # fmt: skip
    assert spec.headers == ("Authorization: Bearer receiver-secret",)
    written = subscription_resource("s1", spec, "requested", None, BASE)
    validate(written)
    assert written["criteria"] == f"{BASE}/fhir/SubscriptionTopic/new-vital-signs"
    assert written["_criteria"]["extension"][0]["valueString"] == "Observation?patient=Patient/p-17"
    assert written["channel"]["header"] == ["Authorization: [not shown]"]
    assert "receiver-secret" not in str(written)
    assert {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 60} in written["channel"]["extension"]
    # what it writes, it reads back the same
    again = parse({**written, "channel": {**written["channel"], "header": list(spec.headers)}})
    assert again == spec


def test_a_websocket_subscription_takes_the_defaults() -> None:
    spec = parse(subscription_doc("p-1", channel="websocket", content=None, endpoint=None))
    assert (spec.channel, spec.endpoint, spec.content) == ("websocket", None, "id-only")
    assert (spec.timeout_s, spec.max_count, spec.heartbeat_s) == (10, 20, None)
    assert spec.end_ms <= now_ms() + LIMITS.max_lifetime_s * 1000
    validate(subscription_resource("s2", spec, "active", None, BASE))


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"resourceType": "Patient"}, "not-a-subscription"),
        ([], "not-a-subscription"),
        (subscription_doc(status="off"), "bad-status"),
        (subscription_doc(criteria="Observation?code=8867-4"), "unknown-topic"),
        (
            subscription_doc(
                criteria="https://elsewhere.example/fhir/SubscriptionTopic/new-vital-signs"
            ),
            "unknown-topic",
        ),
        (subscription_doc(_criteria=None), "filter-required"),
        (subscription_doc(_criteria={"extension": "x"}), "bad-extension"),
        (subscription_doc("Patient/../p"), "bad-filter"),
        (subscription_doc("p-1&patient=p-2"), "bad-filter"),
        (subscription_doc("p-1&code=8867-4"), "unsupported-filter"),
        (subscription_doc(_criteria={"extension": [{"url": "x"}]}), "filter-required"),
        (subscription_doc(channel="email"), "unsupported-channel"),
        (subscription_doc(endpoint=None), "bad-endpoint"),
        (subscription_doc(endpoint="https://user:pw@receiver.example/"), "bad-endpoint"),
        (subscription_doc(endpoint="https://receiver.example/a b"), "bad-endpoint"),
        (subscription_doc(endpoint="https://receiver.example:99999/"), "bad-endpoint"),
        (subscription_doc(endpoint="http://receiver.example/hook"), "insecure-endpoint"),
        (subscription_doc(endpoint="http://127.0.0.1:9/hook"), "insecure-endpoint"),
        (subscription_doc(endpoint="ftp://receiver.example/"), "insecure-endpoint"),
        (subscription_doc(content="everything"), "bad-content"),
        (subscription_doc(headers=["Host: intranet"]), "bad-header"),
        (subscription_doc(headers=["X-A: b\r\nX-Injected: 1"]), "bad-header"),
        (subscription_doc(headers=["no colon"]), "bad-header"),
        (subscription_doc(headers=[f"X-{i}: v" for i in range(9)]), "bad-header"),
        (subscription_doc(channel="websocket", headers=["X-A: b"]), "bad-header"),
        (subscription_doc(heartbeat_s=0), "out-of-bounds"),
        (subscription_doc(timeout_s=3600), "out-of-bounds"),
        (subscription_doc(max_count=1000), "out-of-bounds"),
        (subscription_doc(end="2020-01-01T00:00:00Z"), "bad-end"),
        (subscription_doc(end="tomorrow"), "bad-end"),
        (subscription_doc(end="2999-01-01T00:00:00"), "bad-end"),
        (subscription_doc(reason="\x00"), "bad-reason"),
    ],
)
def test_what_the_server_will_not_do_is_refused_with_a_reason(doc: object, reason: str) -> None:
    with pytest.raises(SubscriptionError) as refused:
        parse(doc)
    assert refused.value.reason == reason


def test_a_payload_other_than_fhir_json_is_not_supported() -> None:
    doc = subscription_doc()
    doc["channel"]["payload"] = "application/fhir+xml"
    with pytest.raises(SubscriptionError) as refused:
        parse(doc)
    assert (refused.value.reason, refused.value.issue) == ("unsupported-payload", "not-supported")
    doc["channel"]["payload"] = "application/fhir+json; fhirVersion=4.0"
    assert parse(doc).payload == "application/fhir+json"


def test_plain_http_to_the_loopback_only_where_the_operator_allows_it() -> None:
    relay = SubscriptionLimits(allow_http_loopback=True)
    for endpoint in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/h"):
        assert parse(subscription_doc(endpoint=endpoint), relay).endpoint == endpoint
    with pytest.raises(SubscriptionError):
        parse(subscription_doc(endpoint="http://10.0.0.1/hook"), relay)


def test_an_end_further_than_the_lifetime_is_brought_in() -> None:
    spec = parse(subscription_doc(end="2999-01-01T00:00:00Z"))
    assert spec.end_ms <= now_ms() + LIMITS.max_lifetime_s * 1000


def stored(
    content: str = "id-only", *, status: str = "active", events: int = 0, error: str | None = None
) -> StoredSubscription:
    spec = parse(subscription_doc("p-17", content=content))
    return StoredSubscription("s1", principal(), spec, status, error, now_ms(), 0, events, 0)  # type: ignore[arg-type]


def parameters_of(bundle: dict[str, Any]) -> dict[str, list[Any]]:
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters"
    found: dict[str, list[Any]] = {}
    for p in first["parameter"]:
        found.setdefault(p["name"], []).append(p)
    return found


def test_handshake_and_heartbeat_are_history_bundles_whose_status_names_no_patient() -> None:
    sub = stored(events=3)
    for kind, status in (("handshake", "requested"), ("heartbeat", None)):
        bundle = notification_bundle(sub, kind, BASE, now_ms(), status=status)  # type: ignore[arg-type]
        validate(bundle)
        assert (bundle["type"], bundle["meta"]["profile"]) == ("history", [NOTIFICATION_PROFILE])
        assert len(bundle["entry"]) == 1
        entry = bundle["entry"][0]
        assert entry["request"] == {"method": "GET", "url": f"{BASE}/fhir/Subscription/s1/$status"}
        params = parameters_of(bundle)
        assert params["type"][0]["valueCode"] == kind
        assert params["status"][0]["valueCode"] == (status or "active")
        assert params["events-since-subscription-start"][0]["valueString"] == "3"
        assert (
            params["subscription"][0]["valueReference"]["reference"]
            == f"{BASE}/fhir/Subscription/s1"
        )
        assert "p-17" not in str(bundle)


@pytest.mark.parametrize("content", ["empty", "id-only", "full-resource"])
def test_an_event_notification_carries_what_its_content_says(content: str) -> None:
    from fhirserver.subscription_store import Event

    observations = new_observations("p-17", 41)
    events = [Event(n, now_ms(), 41, o.resource) for n, o in enumerate(observations, start=5)]
    bundle = notification_bundle(
        stored(content, events=6), "event-notification", BASE, now_ms(), events
    )
    validate(bundle)
    params = parameters_of(bundle)
    notified = params["notification-event"]
    assert [p["part"][0]["valueString"] for p in notified] == ["5", "6"]
    focus = [[q for q in p["part"] if q["name"] == "focus"] for p in notified]
    if content == "empty":
        assert focus == [[], []]
        assert "topic" not in params
        assert len(bundle["entry"]) == 1
        return
    assert [f[0]["valueReference"]["reference"] for f in focus] == [
        f"Observation/{o.resource['id']}" for o in observations
    ]
    assert params["topic"][0]["valueCanonical"] == NEW_VITAL_SIGNS.url(BASE)
    entries = bundle["entry"][1:]
    assert [e["fullUrl"] for e in entries] == [
        f"{BASE}/fhir/Observation/{o.resource['id']}" for o in observations
    ]
    assert all(e["request"] == {"method": "POST", "url": "Observation"} for e in entries)
    if content == "id-only":
        assert all("resource" not in e for e in entries)
    else:
        assert [e["resource"] for e in entries] == [o.resource for o in observations]
        assert all(check_vital_signs(e["resource"]) == [] for e in entries)


def test_status_error_and_operations_answers_validate() -> None:
    sub = stored(status="error", error="access-refused: no-consent")
    answer = status_bundle([sub, stored()], BASE)
    validate(answer)
    assert answer["type"] == "searchset"
    assert answer["total"] == 2
    (error,) = parameters_of({"entry": answer["entry"][:1]})["error"]
    assert error["valueCodeableConcept"]["coding"][0]["code"] == "access-refused"
    assert error["valueCodeableConcept"]["text"] == "no-consent"
    token = binding_token_parameters("t0k", now_ms() + 60_000, ["s1"], "wss://v.example/fhir/ws")
    validate(token)
    assert [p["name"] for p in token["parameter"]] == [
        "token", "expiration", "subscription", "websocket-url",
    ]  # fmt: skip


def test_the_store_bounds_each_owner_and_the_server(tmp_path: Path) -> None:
    store = SubscriptionStore(tmp_path / "subs.db")
    spec = parse(subscription_doc("p-1"))
    store.create(principal("a"), spec, now_ms(), 0, per_owner=2, total=3)
    store.create(principal("a"), spec, now_ms(), 0, per_owner=2, total=3)
    with pytest.raises(SubscriptionError) as mine:
        store.create(principal("a"), spec, now_ms(), 0, per_owner=2, total=3)
    assert mine.value.reason == "too-many-subscriptions"
    store.create(principal("b"), spec, now_ms(), 0, per_owner=2, total=3)
    with pytest.raises(SubscriptionError) as everyone:
        store.create(principal("c"), spec, now_ms(), 0, per_owner=2, total=3)
    assert everyone.value.reason == "server-full"
    assert [s.status for s in store.of_owner(principal("a"))] == ["requested", "requested"]
    assert store.of_owner(principal("c")) == []
    store.close()


def test_the_store_keeps_the_last_events_and_its_cursor_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "subs.db"
    store = SubscriptionStore(path, keep_events=3)
    owner = principal("dr-ada", kind="user")
    sub = store.create(owner, parse(subscription_doc("p-1")), now_ms(), 7, per_owner=5, total=5)
    assert store.position() is None
    for i in range(5):
        (first, _) = new_observations("p-1", 10 + i)
        assert store.record([Match(sub.id, 10 + i, first.resource)], 11 + i, now_ms()) == {
            sub.id: i + 1
        }
    store.close()
    store = SubscriptionStore(path, keep_events=3)
    assert store.position() == 15
    again = store.get(sub.id)
    assert again is not None
    assert again.events == 5
    assert again.start_position == 7
    assert again.owner == owner
    assert owner_key(again.owner) == owner_key(owner)
    assert again.owner.claims == {"purpose_of_use": "TREAT"}
    assert [e.number for e in store.events(sub.id, 0, 10)] == [3, 4, 5]
    assert [e.number for e in store.events(sub.id, 3, 1)] == [4]
    assert [e.entry_index for e in store.events(sub.id, 0, 10, until=4)] == [12, 13]
    store.set_status(sub.id, "error", "access-refused: no-consent")
    assert store.record([Match(sub.id, 20, first.resource)], 21, now_ms()) == {}
    assert store.live() == []
    assert store.delete(sub.id)
    assert store.get(sub.id) is None
    assert store.events(sub.id, 0, 9) == []
    store.close()


def test_the_capability_statement_names_the_topics_and_operations() -> None:
    statement = capability_statement(f"{BASE}/fhir", None, "1", [capability_entry(BASE)])
    validate(statement)
    (entry,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert entry["extension"] == [
        {"url": TOPIC_CANONICAL, "valueCanonical": f"{BASE}/fhir/SubscriptionTopic/new-vital-signs"}
    ]
    assert [o["name"] for o in entry["operation"]] == ["status", "events", "get-ws-binding-token"]


# --- hostile Subscriptions: a spec or a SubscriptionError, nothing else ---------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = (
    scalars
    | st.lists(scalars, max_size=4)
    | st.dictionaries(st.text(max_size=12), scalars | st.lists(scalars, max_size=3), max_size=4)
)
VALID_DOC = subscription_doc(
    "p-1",
    heartbeat_s=60,
    timeout_s=5,
    max_count=3,
    headers=["X-Token: t"],
    end="2999-01-01T00:00:00Z",
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(node_paths(VALID_DOC))), json_values)
def test_a_hostile_subscription_is_refused_with_a_reason_or_taken_whole(
    path: tuple[Any, ...], value: Any
) -> None:
    doc = replaced(VALID_DOC, path, value)
    outcome: SubscriptionSpec | SubscriptionError
    try:
        outcome = parse(doc)
    except SubscriptionError as refused:
        outcome = refused
    if isinstance(outcome, SubscriptionError):
        assert outcome.reason
        assert str(outcome)
        return
    spec = outcome
    assert spec.patient == "p-1" or path[:2] == ("_criteria", "extension")
    validate(subscription_resource("s1", spec, "requested", None, BASE))


@pytest.mark.parametrize(("kind", "reason"), [("app", "app-disabled"), ("user", "user-disabled")])
def test_a_notification_to_an_owner_disabled_since_is_refused_and_recorded(
    tmp_path: Path, kind: str, reason: str
) -> None:
    """Disabled means now for subscriptions too: the next notification is refused, on record."""
    into = journal(tmp_path)
    trail = AccessTrail(into)
    owner = principal("telemed-1" if kind == "app" else "dr-ada", kind)
    refuse_all = Policy(lambda _: frozenset(), lambda *_: None)
    judge = DeliveryAccess(refuse_all, trail, disabled=lambda p: p is owner)
    decision = judge(owner, "p-1", "vital-signs", ("8867-4",), REST_HOOK_ROUTE, "bundle-7")
    assert (decision.permit, decision.reason) == (False, reason)
    (row,) = into.after(0)
    recorded = AccessEvent.decode(row.body).access
    assert (recorded.outcome, recorded.reason, recorded.agent.kind) == ("deny", reason, kind)
    assert (recorded.patients, recorded.route, recorded.request_id) == (
        ("p-1",),
        REST_HOOK_ROUTE,
        "bundle-7",
    )
    into.close()
