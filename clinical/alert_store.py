"""The open alerts and every change to any alert, kept across restarts.

``clinical.alerts`` decides; this remembers. Two tables in one SQLite file: ``alert`` holds the
open alerts (one per key: the engine reopens where it stopped), ``alert_event`` the history
(raised, escalated, acknowledged by whom, snoozed until when, resolved), append-only: the
database refuses updates and deletes. :meth:`AlertStore.save` writes both in one transaction,
durable on return, so the current alerts always match the end of the history.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path

from clinical.alerts import Alert, AlertKey, Event, EventKind, Kind, State
from clinical.news2 import Tier
from ledger.database import connect_sqlite

MAX_HISTORY = 500  # events a page of history holds at most

_ALERT_COLUMNS = (
    "id, patient_id, kind, parameter, severity, state, message, raised_ms, updated_ms,"
    " acknowledged_by, acknowledged_ms, snoozed_by, snoozed_until_ms, resolved_ms"
)
_ALERT_FIELDS = """
    patient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    parameter TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    acknowledged_by TEXT,
    acknowledged_ms INTEGER,
    snoozed_by TEXT,
    snoozed_until_ms INTEGER,
    resolved_ms INTEGER"""  # an alert as it is now (alert) or as an event left it (alert_event)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS alert (
    id TEXT PRIMARY KEY,{_ALERT_FIELDS},
    UNIQUE (patient_id, kind, parameter)
);
CREATE TABLE IF NOT EXISTS alert_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    by TEXT,
    id TEXT NOT NULL,{_ALERT_FIELDS}
);
CREATE INDEX IF NOT EXISTS alert_event_by_patient ON alert_event (patient_id, seq);
CREATE INDEX IF NOT EXISTS alert_event_by_id ON alert_event (id, seq);
CREATE TRIGGER IF NOT EXISTS alert_event_no_update BEFORE UPDATE ON alert_event
BEGIN SELECT RAISE(ABORT, 'the alert history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS alert_event_no_delete BEFORE DELETE ON alert_event
BEGIN SELECT RAISE(ABORT, 'the alert history is append-only'); END;
"""

_Row = tuple[
    str, str, str, str, str, str, str, int, int, str | None, int | None, str | None,
    int | None, int | None,
]  # fmt: skip


def _row(a: Alert) -> _Row:
    k = a.key
    return (
        a.id, k.patient_id, k.kind.value, k.parameter, a.severity.value, a.state.value, a.message,
        a.raised_ms, a.updated_ms, a.acknowledged_by, a.acknowledged_ms, a.snoozed_by,
        a.snoozed_until_ms, a.resolved_ms,
    )  # fmt: skip


def _alert(row: _Row) -> Alert:
    (id_, patient, kind, parameter, severity, state, message, raised, updated, ack_by, ack_ms,
     snooze_by, snooze_until, resolved) = row  # fmt: skip
    return Alert(
        id_, AlertKey(patient, Kind(kind), parameter), Tier(severity), State(state), message,
        raised, updated, ack_by, ack_ms, snooze_by, snooze_until, resolved,
    )  # fmt: skip


class AlertStore:
    """One connection: open one store per thread."""

    def __init__(self, path: Path) -> None:
        self._db = connect_sqlite(path)  # WAL, full fsync; threads may open it at once
        self._db.executescript(_SCHEMA)

    def save(self, events: Iterable[Event]) -> None:
        """Append the events and make each event's alert the current one of its key (a
        resolved alert leaves the current alerts); all or nothing, durable on return."""
        with self._db:
            for event in events:
                a = event.alert
                k = a.key
                self._db.execute(
                    "DELETE FROM alert WHERE patient_id = ? AND kind = ? AND parameter = ?",
                    (k.patient_id, k.kind.value, k.parameter),
                )
                if a.state is not State.RESOLVED:
                    self._db.execute(
                        f"INSERT INTO alert ({_ALERT_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                        _row(a),
                    )
                self._db.execute(
                    f"INSERT INTO alert_event (event, time_ms, by, {_ALERT_COLUMNS})"
                    f" VALUES ({', '.join('?' * 17)})",
                    (event.kind.value, event.time_ms, event.by, *_row(a)),
                )

    def current(self, patient_id: str | None = None) -> dict[AlertKey, Alert]:
        """The open alerts (of one patient, or all), by key: what ``alerts.apply`` takes."""
        query = f"SELECT {_ALERT_COLUMNS} FROM alert"
        rows = (
            self._db.execute(query).fetchall()
            if patient_id is None
            else self._db.execute(query + " WHERE patient_id = ?", (patient_id,)).fetchall()
        )
        return {(a := _alert(row)).key: a for row in rows}

    def get(self, alert_id: str) -> Alert | None:
        """An open alert by its id."""
        row = self._db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alert WHERE id = ?", (alert_id,)
        ).fetchone()
        return None if row is None else _alert(row)

    def last_of(self, alert_id: str) -> Alert | None:
        """The alert as its last event left it (resolved ones too), or None if never raised."""
        row = self._db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alert_event WHERE id = ? ORDER BY seq DESC LIMIT 1",
            (alert_id,),
        ).fetchone()
        return None if row is None else _alert(row)

    def history(self, patient_id: str, limit: int = MAX_HISTORY) -> list[Event]:
        """The patient's alert events, newest first."""
        rows = self._db.execute(
            f"SELECT event, time_ms, by, {_ALERT_COLUMNS} FROM alert_event"
            " WHERE patient_id = ? ORDER BY seq DESC LIMIT ?",
            (patient_id, max(0, min(limit, MAX_HISTORY))),
        ).fetchall()
        return [Event(EventKind(r[0]), _alert(r[3:]), r[1], r[2]) for r in rows]

    def last_seq(self) -> int:
        """The sequence number of the newest event (0: none yet): where a live feed starts."""
        row = self._db.execute("SELECT max(seq) FROM alert_event").fetchone()
        return int(row[0] or 0)

    def events_after(
        self, seq: int, patients: Collection[str], limit: int = MAX_HISTORY
    ) -> list[tuple[int, Event]]:
        """The events of ``patients`` after ``seq``, oldest first, with their sequence numbers:
        what a feed that stopped at ``seq`` missed."""
        if not patients:
            return []
        rows = self._db.execute(
            f"SELECT seq, event, time_ms, by, {_ALERT_COLUMNS} FROM alert_event"
            " WHERE seq > ? AND patient_id IN (SELECT value FROM json_each(?))"
            " ORDER BY seq LIMIT ?",
            (seq, json.dumps(sorted(patients)), max(0, min(limit, MAX_HISTORY))),
        ).fetchall()
        return [(r[0], Event(EventKind(r[1]), _alert(r[4:]), r[2], r[3])) for r in rows]

    def close(self) -> None:
        self._db.close()
