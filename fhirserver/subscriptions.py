"""The Subscription resource of the R5 Backport IG on R4: read from a client, written back.

A topic-based subscription on R4 (hl7.org/fhir/uv/subscriptions-backport, profile
``backport-subscription``) is an R4 ``Subscription`` whose ``criteria`` is the topic's canonical
URL, with the IG's extensions: ``backport-filter-criteria`` on ``criteria`` (the filter, in
search syntax), ``backport-payload-content`` on ``channel.payload`` (``empty``, ``id-only`` or
``full-resource``), and ``backport-heartbeat-period``, ``backport-timeout`` and
``backport-max-count`` on ``channel``. R4's own channel types include ``rest-hook`` and
``websocket``, so no ``backport-channel-type`` is needed; others are refused.

:func:`parse_subscription` takes the JSON a client POSTs and returns a
:class:`SubscriptionSpec`, or raises :class:`SubscriptionError` with a reason code: every
element is checked and bounded (:class:`SubscriptionLimits`) before anything is stored.
:func:`subscription_resource` writes a stored one back; the values of ``channel.header`` are
not shown again (they are usually the receiver's secret, and the IG warns a Subscription is
no place to keep one readable).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from access.fields import is_text
from fhirserver.media import FHIR_JSON
from fhirserver.subscription_topics import TOPICS, FilterError, Topic, topic_of

IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
SUBSCRIPTION_PROFILE = IG + "backport-subscription"
FILTER_CRITERIA = IG + "backport-filter-criteria"
PAYLOAD_CONTENT = IG + "backport-payload-content"
HEARTBEAT_PERIOD = IG + "backport-heartbeat-period"
TIMEOUT = IG + "backport-timeout"
MAX_COUNT = IG + "backport-max-count"
CHANNEL_TYPE = IG + "backport-channel-type"
TOPIC_CANONICAL = IG + "capabilitystatement-subscriptiontopic-canonical"
OPERATIONS = {  # the IG's OperationDefinitions this server implements
    "status": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
    "events": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
    "get-ws-binding-token": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token",
}

Channel = Literal["rest-hook", "websocket"]
Content = Literal["empty", "id-only", "full-resource"]
CHANNELS: tuple[Channel, ...] = ("rest-hook", "websocket")
CONTENTS: tuple[Content, ...] = ("empty", "id-only", "full-resource")
Status = Literal["requested", "active", "error", "off"]
REDACTED = "[not shown]"

# Headers a subscriber may not set: they describe the POST itself, not the receiver's needs.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "upgrade"}
    | {"te", "trailer", "keep-alive", "expect", "proxy-authorization", "proxy-connection"}
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # an RFC 9110 field name
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")
LOOPBACK_NAMES = frozenset({"localhost"})


class SubscriptionError(ValueError):
    """A Subscription this server will not accept: ``reason`` is a code, the message says why,
    ``issue`` is the FHIR issue type of the OperationOutcome that reports it."""

    def __init__(self, reason: str, message: str, issue: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason
        self.issue = issue


@dataclass(frozen=True)
class SubscriptionLimits:
    """The bounds of what a subscription may ask for (``Settings.fhir_subscription_*``)."""

    max_headers: int = 8
    max_header_chars: int = 1024
    max_endpoint_chars: int = 2048
    min_heartbeat_s: int = 1
    max_heartbeat_s: int = 86_400
    default_timeout_s: int = 10
    max_timeout_s: int = 30
    default_max_count: int = 20
    max_max_count: int = 100
    max_lifetime_s: int = 30 * 86_400  # an `end` further away is brought in to this
    allow_http_loopback: bool = False  # rest-hook endpoints on http://127.0.0.1 etc.


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a client asked for, checked."""

    topic: Topic
    patient: str
    channel: Channel
    endpoint: str | None  # rest-hook only
    headers: tuple[str, ...]  # "Name: value", rest-hook only
    content: Content
    heartbeat_s: int | None
    timeout_s: int
    max_count: int
    end_ms: int
    reason: str

    @property
    def payload(self) -> str:
        return FHIR_JSON


def parse_subscription(
    doc: object, base_url: str, now_ms: int, limits: SubscriptionLimits
) -> SubscriptionSpec:
    """The subscription ``doc`` (a decoded JSON body) asks for; :class:`SubscriptionError`
    for anything this server will not do."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "Subscription":
        raise SubscriptionError("not-a-subscription", "the body is not a Subscription resource")
    if doc.get("status") not in ("requested", "active"):
        raise SubscriptionError("bad-status", "a new Subscription's status is requested")
    criteria = doc.get("criteria")
    topic = topic_of(criteria, base_url) if isinstance(criteria, str) else None
    if topic is None:
        raise SubscriptionError(
            "unknown-topic", "criteria must be the canonical URL of a topic this server offers",
            "not-supported",
        )  # fmt: skip
    try:
        filters = topic.parse_filters(
            _extension_values(_element(doc, "_criteria"), FILTER_CRITERIA, "valueString")
        )
    except FilterError as exc:
        raise SubscriptionError(exc.reason, str(exc)) from None
    channel = doc.get("channel")
    if not isinstance(channel, dict):
        raise SubscriptionError("bad-channel", "a Subscription has a channel")
    kind = channel.get("type")
    if kind not in CHANNELS or _extension_values(_element(channel, "_type"), CHANNEL_TYPE, None):
        raise SubscriptionError(
            "unsupported-channel", "channel.type is rest-hook or websocket", "not-supported"
        )
    payload = channel.get("payload")
    if not isinstance(payload, str) or not _is_fhir_json(payload):
        raise SubscriptionError(
            "unsupported-payload", f"channel.payload is {FHIR_JSON}", "not-supported"
        )
    contents = _extension_values(_element(channel, "_payload"), PAYLOAD_CONTENT, "valueCode")
    if len(contents) > 1 or (contents and contents[0] not in CONTENTS):
        raise SubscriptionError(
            "bad-content", "the payload content is one of empty, id-only, full-resource"
        )
    endpoint: str | None = None
    headers: tuple[str, ...] = ()
    if kind == "rest-hook":
        endpoint = _endpoint(channel.get("endpoint"), limits)
        headers = _headers(channel.get("header", []), limits)
    elif channel.get("header"):
        raise SubscriptionError("bad-header", "a websocket channel takes no headers")
    return SubscriptionSpec(
        topic=topic,
        patient=filters["patient"],
        channel=kind,
        endpoint=endpoint,
        headers=headers,
        content=cast(Content, contents[0]) if contents else "id-only",
        heartbeat_s=_bounded(
            channel, HEARTBEAT_PERIOD, "valueUnsignedInt", limits.min_heartbeat_s,
            limits.max_heartbeat_s, None,
        ),
        timeout_s=cast(int, _bounded(
            channel, TIMEOUT, "valueUnsignedInt", 1, limits.max_timeout_s,
            limits.default_timeout_s,
        )),
        max_count=cast(int, _bounded(
            channel, MAX_COUNT, "valuePositiveInt", 1, limits.max_max_count,
            limits.default_max_count,
        )),
        end_ms=_end(doc.get("end"), now_ms, limits),
        reason=_reason(doc.get("reason"), topic),
    )  # fmt: skip


def _element(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name, {})
    if not isinstance(value, dict):
        raise SubscriptionError("bad-extension", f"{name} is an element (a JSON object)")
    return value


def _extension_values(element: dict[str, Any], url: str, value_key: str | None) -> list[Any]:
    """The values of the extensions of ``url`` on an element (``value_key`` None: the
    extensions themselves)."""
    extensions = element.get("extension", [])
    if not isinstance(extensions, list) or len(extensions) > 16:
        raise SubscriptionError("bad-extension", "extension is a list of at most 16")
    found = []
    for ext in extensions:
        if not isinstance(ext, dict) or not isinstance(ext.get("url"), str):
            raise SubscriptionError("bad-extension", "each extension has a url")
        if ext["url"] != url:
            continue
        if value_key is None:
            found.append(ext)
        elif value_key not in ext:
            raise SubscriptionError("bad-extension", f"the {url} extension has a {value_key}")
        else:
            found.append(ext[value_key])
    return found


def _bounded(
    channel: dict[str, Any], url: str, key: str, low: int, high: int, default: int | None
) -> int | None:
    values = _extension_values(channel, url, key)
    if not values:
        return default
    value = values[0]
    if len(values) > 1 or not isinstance(value, int) or isinstance(value, bool):
        raise SubscriptionError("bad-extension", f"{url.rsplit('/', 1)[-1]} is one integer")
    if not low <= value <= high:
        raise SubscriptionError(
            "out-of-bounds",
            f"{url.rsplit('/', 1)[-1]} is between {low} and {high} here",
            "business-rule",
        )
    return value


def _is_fhir_json(payload: str) -> bool:
    mime, _, parameters = payload.partition(";")
    if mime.strip() != FHIR_JSON:
        return False
    if not parameters.strip():
        return True
    name, _, value = parameters.strip().partition("=")
    return name.strip() == "fhirVersion" and value.strip() in ("4.0", "4.0.1")


def _endpoint(value: object, limits: SubscriptionLimits) -> str:
    """A rest-hook endpoint: an absolute https URL; http only to this machine's loopback, and
    only where the operator allows it (a local relay) - a subscriber chooses the URL and the
    headers, so this server must not be made to POST to services beside it."""
    if not isinstance(value, str) or not 0 < len(value) <= limits.max_endpoint_chars:
        raise SubscriptionError("bad-endpoint", "a rest-hook channel has an endpoint URL")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise SubscriptionError("bad-endpoint", "the endpoint is a URL without spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise SubscriptionError("bad-endpoint", "the endpoint is not a URL") from None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise SubscriptionError(
            "bad-endpoint", "the endpoint is a URL with a host, no user info and no fragment"
        )
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and is_loopback(host):
        if limits.allow_http_loopback:
            return value
        raise SubscriptionError(
            "insecure-endpoint", "this server posts notifications over https only", "security"
        )
    raise SubscriptionError("insecure-endpoint", "the endpoint must be an https URL", "security")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _headers(value: object, limits: SubscriptionLimits) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limits.max_headers:
        raise SubscriptionError(
            "bad-header", f"channel.header is a list of at most {limits.max_headers}"
        )
    headers = []
    for header in value:
        if not isinstance(header, str) or len(header) > limits.max_header_chars:
            raise SubscriptionError(
                "bad-header", f"a header is 'Name: value' of at most {limits.max_header_chars}"
            )
        name, colon, content = header.partition(":")
        if not colon or not _TOKEN.match(name) or not _HEADER_VALUE.match(content):
            raise SubscriptionError("bad-header", "a header is 'Name: value' in printable ASCII")
        if name.lower() in RESERVED_HEADERS:
            raise SubscriptionError("bad-header", f"the {name} header is this server's to set")
        headers.append(f"{name}: {content.strip()}")
    return tuple(headers)


def _end(value: object, now_ms: int, limits: SubscriptionLimits) -> int:
    latest = now_ms + limits.max_lifetime_s * 1000
    if value is None:
        return latest
    end = parse_instant(value)
    if end is None:
        raise SubscriptionError("bad-end", "end is an instant with a time zone")
    if end <= now_ms:
        raise SubscriptionError("bad-end", "end is in the past")
    return min(end, latest)


def parse_instant(value: object) -> int | None:
    """Milliseconds since the epoch of a FHIR instant, or None."""
    if not isinstance(value, str) or len(value) > 40 or "T" not in value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return int(when.timestamp() * 1000)


def instant_of(time_ms: int) -> str:
    """A FHIR instant in UTC, with milliseconds."""
    when = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reason(value: object, topic: Topic) -> str:
    if value is None:
        return f"Notifications: {topic.title}"
    if not is_text(value, 256):
        raise SubscriptionError("bad-reason", "reason is printable text of at most 256")
    return cast(str, value)


def _extension(url: str, key: str, value: object) -> dict[str, Any]:
    return {"url": url, key: value}


def subscription_resource(
    sub_id: str,
    spec: SubscriptionSpec,
    status: Status,
    error: str | None,
    base_url: str,
) -> dict[str, Any]:
    """The R4 Subscription (backport profile) as this server holds it."""
    channel: dict[str, Any] = {"type": spec.channel}
    extensions = [_extension(TIMEOUT, "valueUnsignedInt", spec.timeout_s)]
    if spec.heartbeat_s is not None:
        extensions.insert(0, _extension(HEARTBEAT_PERIOD, "valueUnsignedInt", spec.heartbeat_s))
    extensions.append(_extension(MAX_COUNT, "valuePositiveInt", spec.max_count))
    channel["extension"] = extensions
    if spec.endpoint is not None:
        channel["endpoint"] = spec.endpoint
    channel["payload"] = spec.payload
    channel["_payload"] = {"extension": [_extension(PAYLOAD_CONTENT, "valueCode", spec.content)]}
    if spec.headers:
        channel["header"] = [f"{h.partition(':')[0]}: {REDACTED}" for h in spec.headers]
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": sub_id,
        "meta": {"profile": [SUBSCRIPTION_PROFILE]},
        "status": status,
        "end": instant_of(spec.end_ms),
        "reason": spec.reason,
        "criteria": spec.topic.url(base_url),
        "_criteria": {
            "extension": [
                _extension(
                    FILTER_CRITERIA,
                    "valueString",
                    f"{spec.topic.resource}?patient=Patient/{spec.patient}",
                )
            ]
        },
        "channel": channel,
    }
    if error is not None:
        resource["error"] = error
    return resource


def capability_entry(base_url: str) -> dict[str, Any]:
    """Subscription in the CapabilityStatement: its interactions, the IG's operations, and the
    topics offered (the IG's ``capabilitystatement-subscriptiontopic-canonical``)."""
    return {
        "extension": [{"url": TOPIC_CANONICAL, "valueCanonical": t.url(base_url)} for t in TOPICS],
        "type": "Subscription",
        "supportedProfile": [SUBSCRIPTION_PROFILE],
        "interaction": [{"code": c} for c in ("create", "read", "delete", "search-type")],
        "versioning": "no-version",
        "readHistory": False,
        "operation": [{"name": name, "definition": url} for name, url in OPERATIONS.items()],
    }
