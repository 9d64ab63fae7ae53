"""Clinical reasoning: what the numbers mean for the patient, apart from where they are stored.

Why a package of its own: scoring NEWS2, deciding what is too old to count, alerts and their
states are neither storage (ingest, ledger) nor who may read (access) nor presentation
(dashboards). They are what the ward page and the alert engine share, and what a clinical
safety reviewer reads on its own. The rules are pure functions over values the caller fetched,
so every rule is testable from a table; the two stores (``documented``, ``alert_store``) are
the package's only I/O.

Flow: devices -> ingest -> ledger/store -> clinical -> access -> dashboards. Modules:
``news2`` (the Royal College of Physicians' NEWS2 score and its clinical response),
``documented`` (what staff document for it), ``alerts`` (which alerts the data calls for and
how their states move) and ``alert_store`` (the open alerts and their history).
"""

from clinical.news2 import (
    DEFAULT_MAX_AGE_MS,
    Acvpu,
    AirOrOxygen,
    Documented,
    Measured,
    News2,
    Observations,
    Parameter,
    Response,
    SpO2Scale,
    StaleValue,
    SubScore,
    Tier,
    score,
)

__all__ = [
    "DEFAULT_MAX_AGE_MS",
    "Acvpu",
    "AirOrOxygen",
    "Documented",
    "Measured",
    "News2",
    "Observations",
    "Parameter",
    "Response",
    "SpO2Scale",
    "StaleValue",
    "SubScore",
    "Tier",
    "score",
]
