"""The API's interactive docs (Swagger UI) served from the package: /docs works offline.

FastAPI's own /docs page loads Swagger UI from a CDN; a hospital network often has no way
out, and a page that pulls code from a third party has no place next to patient data. The
assets are vendored from npm at build time (scripts/vendor-assets.sh) into static/vendor/.
FastAPI's page also starts Swagger UI with an inline script, which the app's Content Security
Policy (``script-src 'self'``) refuses; here the start-up is ``static/docs.js``, which reads
the OpenAPI URL from the page, so /docs runs under the same policy as every other page.
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

SWAGGER_UI = "/static/vendor/swagger-ui"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{ui}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ui}/favicon-32x32.png">
<title>{title}</title>
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{ui}/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


def docs_html(title: str, openapi_url: str) -> str:
    return PAGE.format(ui=SWAGGER_UI, title=escape(title), openapi=escape(openapi_url))


def add_offline_docs(app: FastAPI) -> None:
    """Serve /docs with the vendored Swagger UI (create the app with ``docs_url=None``)."""
    page = docs_html(f"{app.title} - API", app.openapi_url or "/openapi.json")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)
