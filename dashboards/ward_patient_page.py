"""The clinician's page of one patient, ``GET /ward/patients/{patient_id}``.

A static file (rule Public): the HTML holds no patient data, only the page's frame; its
scripts read everything through the API's gates, each read recorded in the access trail. The
id is still checked, so a URL that could name no patient is a 422, not a page that fails later.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from dashboards.access_deps import PatientId
from dashboards.route_rules import Public, access


def add_ward_patient_page(app: FastAPI, static: Path) -> None:
    page = str(static / "ward-patient.html")

    @app.get("/ward/patients/{patient_id}", include_in_schema=False)
    @access(Public())
    async def ward_patient(patient_id: PatientId) -> FileResponse:
        return FileResponse(page)
