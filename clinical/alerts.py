"""Which alerts a patient's latest data calls for, and how each alert's state moves.

Two pure steps, so every rule is testable from a table and the engine can run on a timer
with only the clock advancing (an alarm that fires only when data arrives misses exactly the
dangerous case, a device gone quiet):

- :func:`evaluate` turns one patient's state at ``now_ms`` into the :class:`Condition` s that
  hold: a NEWS2 tier of low-medium or above (one alert whose severity is the tier), a single
  parameter scoring 3 (named by parameter), a vital with no reading for its stale limit, and,
  apart from these clinical ones, technical conditions of a device (silent, battery low,
  repeated signature failures), each named by the device.
- :func:`apply` moves the current alerts by the conditions: raise, escalate, resolve, and the
  rules clinicians taught (Nightscout, OpenICE): a snooze holds until it expires even while the
  condition stays true, then a still-true condition raises once; an acknowledged alert whose
  severity rises is raised again; a resolved alert that recurs is a new alert with a new id.
  :func:`acknowledge` and :func:`snooze` are the staff's actions. Each change is an
  :class:`Event` for the history (``clinical.alert_store``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from clinical.documented import USER_ID
from clinical.news2 import (
    DEFAULT_MAX_AGE_MS,
    MEASURED_LOINC,
    MINUTE_MS,
    RESPONSES,
    Observations,
    Parameter,
    Tier,
    score,
)


class Category(StrEnum):
    """Patient alarms apart from equipment alarms (OpenICE): a nurse triages them differently."""

    CLINICAL = "clinical"
    TECHNICAL = "technical"


class Kind(StrEnum):
    NEWS2 = "news2"  # the aggregate score's tier
    EXTREME = "extreme"  # one parameter scores 3
    STALE = "stale"  # no reading of a vital for its limit
    DEVICE_SILENT = "device-silent"  # no message from a device for its limit
    SIGNATURE_FAILURES = "signature-failures"  # a device's messages failed verification
    BATTERY_LOW = "battery-low"  # a device reported a low battery


CATEGORY: Mapping[Kind, Category] = MappingProxyType(
    {
        Kind.NEWS2: Category.CLINICAL,
        Kind.EXTREME: Category.CLINICAL,
        Kind.STALE: Category.CLINICAL,
        Kind.DEVICE_SILENT: Category.TECHNICAL,
        Kind.SIGNATURE_FAILURES: Category.TECHNICAL,
        Kind.BATTERY_LOW: Category.TECHNICAL,
    }
)


class State(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


ALLOWED: Mapping[State | None, frozenset[State]] = MappingProxyType(
    {
        None: frozenset({State.RAISED}),
        State.RAISED: frozenset({State.RAISED, State.ACKNOWLEDGED, State.SNOOZED, State.RESOLVED}),
        State.ACKNOWLEDGED: frozenset(
            {State.RAISED, State.ACKNOWLEDGED, State.SNOOZED, State.RESOLVED}
        ),
        State.SNOOZED: frozenset({State.RAISED, State.ACKNOWLEDGED, State.SNOOZED, State.RESOLVED}),
        State.RESOLVED: frozenset(),  # final: a recurrence is a new alert
    }
)
"""The state an alert may move to from each state (None: no alert yet)."""


class EventKind(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"  # severity rose; an acknowledged or snoozed alert is raised again
    DEESCALATED = "de-escalated"  # severity fell, the condition still holds
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    SNOOZE_EXPIRED = "snooze-expired"  # the condition still holds: raised again, once
    RESOLVED = "resolved"


def rank(severity: Tier) -> int:
    """0 (routine) .. 4 (high), as NEWS2's clinical response ranks its tiers."""
    return RESPONSES[severity].rank


@dataclass(frozen=True, order=True)
class AlertKey:
    """What an alert is about; one open alert per key. ``parameter`` is the NEWS2 parameter
    (extreme, stale), the device id (technical), or empty (the NEWS2 tier)."""

    patient_id: str
    kind: Kind
    parameter: str = ""

    @property
    def category(self) -> Category:
        return CATEGORY[self.kind]


@dataclass(frozen=True)
class Condition:
    """A fact at evaluation time that calls for an alert."""

    key: AlertKey
    severity: Tier
    message: str


@dataclass(frozen=True)
class Alert:
    id: str
    key: AlertKey
    severity: Tier
    state: State
    message: str
    raised_ms: int  # when this alert (this id) was first raised
    updated_ms: int
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    snoozed_by: str | None = None
    snoozed_until_ms: int | None = None
    resolved_ms: int | None = None

    @property
    def category(self) -> Category:
        return self.key.category


@dataclass(frozen=True)
class Event:
    """One change of an alert, for the append-only history: the alert as it became."""

    kind: EventKind
    alert: Alert
    time_ms: int
    by: str | None = None  # the user of an acknowledgement or snooze; None: the engine


class AlertError(ValueError):
    """An action that is not allowed; ``reason`` is a code, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# ---- rules -------------------------------------------------------------------------------

DEFAULT_STALE_AFTER_MS: Mapping[Parameter, int] = MappingProxyType(
    {
        Parameter.PULSE: 5 * MINUTE_MS,
        Parameter.SPO2: 5 * MINUTE_MS,
        Parameter.RESPIRATION_RATE: 10 * MINUTE_MS,
        Parameter.SYSTOLIC_BP: 60 * MINUTE_MS,
        Parameter.TEMPERATURE: 30 * MINUTE_MS,
    }
)
"""No reading of a vital for longer than this raises a stale alert (a continuous wearable
reports pulse and SpO2 every few seconds, blood pressure by cuff far less often)."""

MAX_SNOOZE_MS = 4 * 60 * MINUTE_MS  # a snooze longer than a few hours is forgetting a patient


@dataclass(frozen=True)
class DeviceState:
    """What the ingestor knows of one of the patient's devices."""

    last_message_ms: int  # the last message that verified (never: when it was registered)
    signature_failures: int = 0  # messages that failed verification in the limits' window
    battery_pct: int | None = None  # the latest charge it reported; None: never reported
    usual_interval_ms: int | None = None  # how often it reports; None: not known yet


@dataclass(frozen=True)
class DeviceLimits:
    """When a device's state is a technical alert."""

    silent_ms: int = 2 * MINUTE_MS  # no verified message for longer than this, at the least
    battery_low_pct: int = 20  # a reported charge at or below this
    signature_failures: int = 3  # this many failed signatures within the window
    signature_window_ms: int = 10 * MINUTE_MS
    silent_reports: int = 3  # silent: nor for this many of its usual intervals (a cuff's 15 min)
    silent_unknown_ms: int = 30 * MINUTE_MS  # the limit while its interval is not known yet

    def __post_init__(self) -> None:
        if min(self.silent_ms, self.silent_unknown_ms, self.signature_window_ms) < 0:
            raise ValueError("a silent limit or a failure window is negative")
        if not 0 <= self.battery_low_pct <= 100 or self.signature_failures < 1:
            raise ValueError("a battery limit is a percent, a failure limit at least 1")
        if self.silent_reports < 1:
            raise ValueError("a device is silent after one missed report at the soonest")

    def silent_after_ms(self, device: DeviceState) -> int:
        """How long a device may be quiet: a wristband reporting every second for ``silent_ms``,
        a cuff measuring every 15 minutes for ``silent_reports`` of them - an alarm for every
        cuff between two measurements would teach a ward to ignore the alarm. A device not
        heard from twice yet has no known interval: ``silent_unknown_ms``."""
        if device.usual_interval_ms is None:
            return max(self.silent_ms, self.silent_unknown_ms)
        return max(self.silent_ms, self.silent_reports * device.usual_interval_ms)


@dataclass(frozen=True)
class PatientState:
    patient_id: str
    observations: Observations  # latest vitals (LOINC -> value and time) and documented values
    devices: Mapping[str, DeviceState] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertConfig:
    # A vital left out of ``stale_after_ms`` raises no stale alert.
    stale_after_ms: Mapping[Parameter, int] = field(default_factory=lambda: DEFAULT_STALE_AFTER_MS)
    devices: DeviceLimits = field(default_factory=DeviceLimits)
    news2_max_age_ms: Mapping[Parameter, int] = field(default_factory=lambda: DEFAULT_MAX_AGE_MS)

    def __post_init__(self) -> None:
        for parameter in self.stale_after_ms:
            if parameter not in MEASURED_LOINC:
                raise ValueError(f"{parameter}: only a measured vital has a stale limit")
        if min(self.stale_after_ms.values(), default=0) < 0:
            raise ValueError("a stale limit is negative")


SPOKEN: Mapping[Parameter, str] = MappingProxyType(
    {
        Parameter.RESPIRATION_RATE: "respiration rate",
        Parameter.SPO2: "SpO₂",
        Parameter.AIR_OR_OXYGEN: "air or oxygen",
        Parameter.SYSTOLIC_BP: "systolic BP",
        Parameter.PULSE: "pulse",
        Parameter.CONSCIOUSNESS: "consciousness",
        Parameter.TEMPERATURE: "temperature",
    }
)
"""The parameters as a message names them: what a nurse reads on any page or device."""


def _span(ms: int) -> str:
    """Whole minutes; whole seconds under a minute (a limit set that short reads "0 min")."""
    return f"{ms // 1000} s" if ms < MINUTE_MS else f"{ms // MINUTE_MS} min"


def _shown(value: float | str) -> str:
    return f"{value:g}" if isinstance(value, float | int) else value


def evaluate(state: PatientState, now_ms: int, config: AlertConfig) -> list[Condition]:
    """The conditions that hold for the patient at ``now_ms``. A vital exactly at its stale
    limit (or a device exactly at its silent limit) is still current, as in NEWS2. A vital
    never recorded raises no stale alert (NEWS2 lists it as missing)."""
    patient = state.patient_id
    news = score(state.observations, now_ms=now_ms, max_age_ms=config.news2_max_age_ms)
    out: list[Condition] = []
    tier = news.response.tier
    if rank(tier) >= rank(Tier.LOW_MEDIUM):
        unscored = ", ".join(SPOKEN[p] for p in news.unscored)
        partial = f" (partial: {unscored} not scored)" if news.partial else ""
        out.append(
            Condition(
                AlertKey(patient, Kind.NEWS2),
                tier,
                f"NEWS2 {news.total}, {news.response.response.lower()}{partial}",
            )
        )
    for sub in news.sub_scores:
        if sub.points == 3:
            out.append(
                Condition(
                    AlertKey(patient, Kind.EXTREME, sub.parameter),
                    Tier.LOW_MEDIUM,
                    f"{SPOKEN[sub.parameter]} {_shown(sub.value)} scores 3",
                )
            )
    for parameter, limit in config.stale_after_ms.items():
        latest = state.observations.vitals.get(MEASURED_LOINC[parameter])
        if latest is not None and now_ms - latest.time_ms > limit:
            out.append(
                Condition(
                    AlertKey(patient, Kind.STALE, parameter),
                    Tier.LOW,
                    f"no {SPOKEN[parameter]} reading for {_span(now_ms - latest.time_ms)}"
                    f" (limit {_span(limit)})",
                )
            )
    for device_id, device in sorted(state.devices.items()):
        out.extend(_technical(patient, device_id, device, now_ms, config.devices))
    return out


def _technical(
    patient: str, device_id: str, device: DeviceState, now_ms: int, limits: DeviceLimits
) -> Iterator[Condition]:
    silent = now_ms - device.last_message_ms
    if silent > limits.silent_after_ms(device):
        usual = device.usual_interval_ms
        yield Condition(
            AlertKey(patient, Kind.DEVICE_SILENT, device_id),
            Tier.LOW,
            f"device {device_id} silent for {_span(silent)}"
            + (f" (it reports every {_span(usual)})" if usual and usual >= 1000 else ""),
        )
    if device.battery_pct is not None and device.battery_pct <= limits.battery_low_pct:
        yield Condition(
            AlertKey(patient, Kind.BATTERY_LOW, device_id),
            Tier.LOW,
            f"device {device_id} battery at {device.battery_pct} %",
        )
    if device.signature_failures >= limits.signature_failures:
        yield Condition(
            AlertKey(patient, Kind.SIGNATURE_FAILURES, device_id),
            Tier.LOW,
            f"{device.signature_failures} message(s) claiming device {device_id} failed"
            f" signature verification in {limits.signature_window_ms // MINUTE_MS} min",
        )


# ---- states ------------------------------------------------------------------------------


def _new_id() -> str:
    return uuid.uuid4().hex


def _raise_again(alert: Alert, condition: Condition, now_ms: int) -> Alert:
    return replace(
        alert,
        severity=condition.severity,
        state=State.RAISED,
        message=condition.message,
        updated_ms=now_ms,
        acknowledged_by=None,
        acknowledged_ms=None,
        snoozed_by=None,
        snoozed_until_ms=None,
    )


def _step(
    alert: Alert | None, condition: Condition | None, now_ms: int, new_id: Callable[[], str]
) -> tuple[Alert | None, Event | None]:
    """One key's move: the alert it becomes (None: none open) and the event, if any."""
    if alert is None:
        if condition is None:
            return None, None
        raised = Alert(
            new_id(), condition.key, condition.severity, State.RAISED, condition.message,
            now_ms, now_ms,
        )  # fmt: skip
        return raised, Event(EventKind.RAISED, raised, now_ms)
    expired = (
        alert.state is State.SNOOZED
        and alert.snoozed_until_ms is not None
        and now_ms >= alert.snoozed_until_ms
    )
    if condition is None:
        if alert.state is State.SNOOZED and not expired:  # a snooze holds until it expires
            return alert, None
        resolved = replace(alert, state=State.RESOLVED, updated_ms=now_ms, resolved_ms=now_ms)
        return None, Event(EventKind.RESOLVED, resolved, now_ms)
    if rank(condition.severity) > rank(alert.severity):
        # Escalation breaks through an acknowledgement or a snooze: it is a new fact.
        escalated = _raise_again(alert, condition, now_ms)
        return escalated, Event(EventKind.ESCALATED, escalated, now_ms)
    if expired:
        again = _raise_again(alert, condition, now_ms)
        return again, Event(EventKind.SNOOZE_EXPIRED, again, now_ms)
    if rank(condition.severity) < rank(alert.severity):
        lower = replace(
            alert, severity=condition.severity, message=condition.message, updated_ms=now_ms
        )
        return lower, Event(EventKind.DEESCALATED, lower, now_ms)
    return alert, None  # still true, same severity: no re-firing on every reading


def apply(
    current: Mapping[AlertKey, Alert],
    conditions: Iterable[Condition],
    now_ms: int,
    *,
    patients: Iterable[str] | None = None,
    new_id: Callable[[], str] = _new_id,
) -> tuple[dict[AlertKey, Alert], list[Event]]:
    """The open alerts after the conditions that hold at ``now_ms``, and the events on the way.

    ``current`` holds the open alerts by key. An open alert whose key has no condition resolves
    (unless snoozed and unexpired). ``patients`` limits that to
    the patients evaluated (None: every patient in ``current``), so an engine may evaluate a
    ward in parts. Conditions are pure data; the only impurity is ``new_id``."""
    by_key: dict[AlertKey, Condition] = {}
    for condition in conditions:
        if condition.key in by_key:
            raise ValueError(f"two conditions for {condition.key}")
        by_key[condition.key] = condition
    evaluated = None if patients is None else frozenset(patients)
    keys = set(by_key)
    keys |= {k for k in current if evaluated is None or k.patient_id in evaluated}
    after = dict(current)
    events: list[Event] = []
    for key in sorted(keys):
        alert, event = _step(current.get(key), by_key.get(key), now_ms, new_id)
        if alert is None:
            after.pop(key, None)
        else:
            after[key] = alert
        if event is not None:
            events.append(event)
    return after, events


def _check_action(alert: Alert, by: str) -> None:
    if not (isinstance(by, str) and USER_ID.fullmatch(by)):
        raise AlertError("bad-author", "who acts on an alert is an ASCII user id")
    if alert.state is State.RESOLVED:
        raise AlertError("alert-resolved", "a resolved alert cannot be acknowledged or snoozed")


def acknowledge(alert: Alert, by: str, now_ms: int) -> tuple[Alert, Event]:
    """Someone has seen the alert and is acting: it stays open, no longer calling, until it
    resolves or its severity rises. A snoozed alert may be acknowledged (ending the snooze)."""
    _check_action(alert, by)
    if alert.state is State.ACKNOWLEDGED:
        raise AlertError("already-acknowledged", f"acknowledged by {alert.acknowledged_by}")
    done = replace(
        alert,
        state=State.ACKNOWLEDGED,
        updated_ms=now_ms,
        acknowledged_by=by,
        acknowledged_ms=now_ms,
        snoozed_by=None,
        snoozed_until_ms=None,
    )
    return done, Event(EventKind.ACKNOWLEDGED, done, now_ms, by)


def snooze(
    alert: Alert, by: str, until_ms: int, now_ms: int, max_snooze_ms: int = MAX_SNOOZE_MS
) -> tuple[Alert, Event]:
    """Silence the alert until ``until_ms``; it holds even while the condition stays true, and
    a condition still true at expiry raises the alert once more."""
    _check_action(alert, by)
    if not now_ms < until_ms <= now_ms + max_snooze_ms:
        raise AlertError(
            "bad-snooze",
            f"a snooze ends after now and at most {max_snooze_ms // MINUTE_MS} min from now",
        )
    done = replace(
        alert, state=State.SNOOZED, updated_ms=now_ms, snoozed_by=by, snoozed_until_ms=until_ms
    )
    return done, Event(EventKind.SNOOZED, done, now_ms, by)
