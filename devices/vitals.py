"""The vital signs vitaltrail knows: LOINC code, UCUM unit, and the physiologically possible range.

The range is what a human body (or a working sensor) can produce at all, not a clinical
alarm band: a value outside it is a device fault or a forgery and is refused at ingest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vital:
    name: str
    code: str  # LOINC
    unit: str  # UCUM
    low: float
    high: float


HEART_RATE = Vital("heart_rate", "8867-4", "/min", 20, 300)
SPO2 = Vital("spo2", "59408-5", "%", 40, 100)
RESPIRATORY_RATE = Vital("respiratory_rate", "9279-1", "/min", 2, 80)
BODY_TEMPERATURE = Vital("body_temperature", "8310-5", "Cel", 25, 45)
SYSTOLIC_BP = Vital("systolic_bp", "8480-6", "mm[Hg]", 40, 300)
DIASTOLIC_BP = Vital("diastolic_bp", "8462-4", "mm[Hg]", 20, 200)
GLUCOSE = Vital("glucose", "2339-0", "mg/dL", 10, 1000)

ALL_VITALS = (
    HEART_RATE,
    SPO2,
    RESPIRATORY_RATE,
    BODY_TEMPERATURE,
    SYSTOLIC_BP,
    DIASTOLIC_BP,
    GLUCOSE,
)
BY_CODE = {vital.code: vital for vital in ALL_VITALS}
