"""The API's interactive docs (Swagger UI) served from the package: /docs works offline.

FastAPI's own /docs page loads Swagger UI from a CDN; a hospital network often has no way
out, and a page that pulls code from a third party has no place next to patient data. The
assets are vendored from npm at build time (scripts/vendor-assets.sh) into static/vendor/.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI = "/static/vendor/swagger-ui"


def add_offline_docs(app: FastAPI) -> None:
    """Serve /docs with the vendored Swagger UI (create the app with ``docs_url=None``)."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        )
