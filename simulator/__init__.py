"""Virtual patients and wearables: physiology, clinical events, device faults, fleets.

Deterministic under a seed: the same seed and start time give the same readings.
"""

from simulator.physiology import PatientProfile, VirtualPatient
from simulator.ward import SimDevice, Ward, build_ward

__all__ = ["PatientProfile", "SimDevice", "VirtualPatient", "Ward", "build_ward"]
