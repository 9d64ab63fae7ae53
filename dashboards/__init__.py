"""The web app: the clinician dashboard and the telemedicine/verification API (FastAPI).

Reads the ledger, the time-series store and the device registry; writes nothing.
"""

from dashboards.app import DataSources, create_app

__all__ = ["DataSources", "create_app"]
