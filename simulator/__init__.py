"""Virtual patients and wearables: physiology, clinical events, device faults, fleets, scenarios.

Deterministic under a seed: the same seed, start time and scenarios give the same readings.
"""

from simulator.physiology import PatientProfile, VirtualPatient
from simulator.scenarios import Applied, Scenario, apply_scenarios
from simulator.ward import SimDevice, Ward, build_ward

__all__ = [
    "Applied",
    "PatientProfile",
    "Scenario",
    "SimDevice",
    "VirtualPatient",
    "Ward",
    "apply_scenarios",
    "build_ward",
]
