"""/docs works with no way out of the machine: Swagger UI comes from the package, not a CDN;
and under the app's Content Security Policy (no inline script)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.test_dashboard_page import browser, served  # noqa: F401 (fixtures)
from tests.browser.test_sign_in_page import watch_csp
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser


def test_the_api_docs_render_offline(
    served: tuple[str, Settings],  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _ = served
    outside: list[str] = []
    refused: list[str] = []

    def only_this_server(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    for width, height in ((1920, 1080), (400, 900)):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.route("**/*", only_this_server)
        watch_csp(page, refused)
        response = page.goto(f"{url}/docs")
        assert response is not None
        assert "script-src 'self'" in response.headers["content-security-policy"]
        expect(page.get_by_text("/api/v1/patients", exact=True).first).to_be_visible()
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("vitaltrail")
        page.screenshot(path=str(tmp_path / f"docs-{width}.png"), full_page=False)
        page.close()
    assert outside == [], "the docs page asked for something outside this server"
    assert refused == [], refused
