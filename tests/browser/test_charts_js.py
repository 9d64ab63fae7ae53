"""The ward's sparklines and the patient page's trend charts (dashboards/static/charts.js) in
Debian's chromium, on a page of the app under its own CSP: uPlot comes from the app itself
(vendored from npm, no request leaves the origin), both charts draw, a stretch without data is a
break in the line, and the series API's answer is what a trend chart draws."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dashboards.app import create_app
from dashboards.security_headers import CONTENT_SECURITY_POLICY
from devices.vitals import HEART_RATE
from tests.api_access import ward_headers
from tests.browser.test_dashboard_page import CHROMIUM_ARGS
from tests.browser.test_patient_page import watch
from tests.populated import populate
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser

HOUR_MS = 3_600_000
END_MS = 1_767_268_800_000  # 2026-01-01 12:00 UTC


@dataclass
class Served:
    url: str
    settings: Settings
    browser: Browser


@dataclass
class Stage:
    """A page of the app (sign-in: no scripts of its own), every URL it requested, and its
    console errors and page errors (a CSP violation is one)."""

    page: Page
    requests: list[str]
    problems: list[str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = populate(tmp_path_factory.mktemp("charts") / "data", patients=1, readings=6)
    port = free_port()
    server = http_server(create_app(data_sources(settings)), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield Served(f"http://127.0.0.1:{port}", settings, browser)
        browser.close()
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def stage(served: Served) -> Iterator[Stage]:
    context = served.browser.new_context(viewport={"width": 1920, "height": 1000})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    problems = watch(page)
    response = page.goto(f"{served.url}/sign-in")
    assert response is not None
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page.evaluate(CLEAR)
    yield Stage(page, requests, problems)
    origins = {f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in requests}
    assert origins == {served.url}
    assert any(u.endswith("/static/vendor/uplot/uPlot.esm.js") for u in requests)
    assert any(u.endswith("/static/vendor/uplot/uPlot.min.css") for u in requests)
    assert problems == []
    context.close()


CLEAR = """() => {
  document.body.replaceChildren();
  document.body.className = '';
  const main = document.createElement('main');
  main.id = 'stage';
  document.body.append(main);
}"""

# Line pixels: the chart's line colour (#0b3d5c), opaque; bands and shading are translucent.
DRAW = """async ({kind, points, options, width}) => {
  const charts = await import('/static/charts.js');
  const box = document.createElement('div');
  box.className = 'chart-box';
  box.style.width = width + 'px';
  document.getElementById('stage').append(box);
  const chart = charts[kind](box, points, options);
  await new Promise((resolve) => requestAnimationFrame(resolve));  // uPlot draws in a microtask
  const canvas = box.querySelector('canvas');
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const lineAt = (x, y) => {
    const i = 4 * (y * canvas.width + x);
    return pixels[i + 3] > 200 && pixels[i] < 60 && pixels[i + 1] < 110 && pixels[i + 2] < 140;
  };
  let line = 0;
  for (let y = 0; y < canvas.height; y++)
    for (let x = 0; x < canvas.width; x++) line += lineAt(x, y);
  const columnHasLine = (t) => {
    const x = Math.round(chart.valToPos(t / 1000, 'x', true));
    for (let y = 0; y < canvas.height; y++) if (lineAt(x, y)) return true;
    return false;
  };
  return {
    data: chart.data,
    line,
    gapColumnHasLine: options.gap_at_ms ? columnHasLine(options.gap_at_ms) : null,
    lineColumnHasLine: options.line_at_ms ? columnHasLine(options.line_at_ms) : null,
  };
}"""


def readings(start_ms: int, count: int, step_ms: int, skip: range) -> list[dict[str, Any]]:
    """A heart rate every ``step_ms``, none at the steps in ``skip``."""
    return [
        {"time_ms": start_ms + i * step_ms, "value": 78 + 14 * ((i % 12) / 12) + (i % 3)}
        for i in range(count)
        if i not in skip
    ]


def buckets(start_ms: int, hours: int, skip: range) -> dict[str, Any]:
    """A day of hourly buckets of a heart rate climbing into NEWS2 territory, some hours empty
    (the series API leaves an empty bucket out)."""
    points = []
    for h in range(hours):
        if h in skip:
            continue
        mean = 82 + 1.6 * h + 4 * ((h * 7) % 5) / 5
        points.append(
            {"start_ms": start_ms + h * HOUR_MS, "mean": mean, "low": mean - 9 - h % 4,
             "high": mean + 11 + h % 5, "count": 60}
        )  # fmt: skip
    return {"bucket_ms": HOUR_MS, "points": points}


# NEWS2 pulse bands (RCP 2017): <=40: 3, 41-50: 1, 51-90: 0, 91-110: 1, 111-130: 2, >=131: 3.
PULSE_BANDS = [
    {"low": None, "high": 40, "score": 3},
    {"low": 40, "high": 50, "score": 1},
    {"low": 50, "high": 90, "score": 0},
    {"low": 90, "high": 110, "score": 1},
    {"low": 110, "high": 130, "score": 2},
    {"low": 130, "high": None, "score": 3},
]


def draw(stage: Stage, kind: str, points: Any, options: dict[str, Any], width: int) -> Any:
    return stage.page.evaluate(
        DRAW, {"kind": kind, "points": points, "options": options, "width": width}
    )


def test_the_vendored_library_is_served_by_the_app_with_its_licence(stage: Stage) -> None:
    licence = stage.page.evaluate(
        "async () => (await fetch('/static/vendor/uplot/LICENSE')).text()"
    )
    assert "MIT License" in licence
    drawn = draw(stage, "sparkline", readings(END_MS - HOUR_MS, 10, 60_000, range(0)), {}, 200)
    assert None not in drawn["data"][1]
    destroyed = stage.page.evaluate(
        """async () => {
          const { sparkline } = await import('/static/charts.js');
          const box = document.createElement('div');
          document.getElementById('stage').append(box);
          const chart = sparkline(box, [{time_ms: 0, value: 1}, {time_ms: 1000, value: 2}]);
          chart.destroy();
          return box.querySelector('canvas') === null;
        }"""
    )
    assert destroyed


def test_a_sparkline_draws_and_breaks_its_line_where_readings_stop(stage: Stage) -> None:
    start = END_MS - 4 * HOUR_MS
    points = readings(start, 48, 5 * 60_000, skip=range(20, 30))  # 50 minutes without data
    gap_at = start + 25 * 5 * 60_000
    drawn = draw(
        stage, "sparkline", points,
        {"low": 51, "high": 90, "gap_at_ms": gap_at, "line_at_ms": start + 10 * 5 * 60_000},
        220,
    )  # fmt: skip
    xs, values = drawn["data"]
    assert values.count(None) == 1  # one break, not a line across the fifty minutes
    gap = values.index(None)
    assert xs[gap - 1] * 1000 == start + 19 * 5 * 60_000
    assert xs[gap + 1] * 1000 == start + 30 * 5 * 60_000
    assert drawn["line"] > 100
    assert drawn["lineColumnHasLine"] is True
    assert drawn["gapColumnHasLine"] is False


def test_a_trend_chart_draws_the_series_apis_answer(stage: Stage, served: Served) -> None:
    headers = ward_headers(served.settings, ["patient-0"])
    series = stage.page.evaluate(
        """async ([code, headers]) => {
          const r = await fetch(`/api/v1/patients/patient-0/vitals/${code}?bucket_s=1`, {headers});
          return r.json();
        }""",
        [HEART_RATE.code, headers],
    )
    assert len(series["points"]) >= 5
    drawn = draw(stage, "trendChart", series, {"unit": HEART_RATE.unit}, 800)
    xs, mean, low, high = drawn["data"]
    assert [x * 1000 for x in xs] == [p["start_ms"] for p in series["points"]]
    assert mean == [p["mean"] for p in series["points"]]
    assert low == [p["low"] for p in series["points"]]
    assert high == [p["high"] for p in series["points"]]
    assert drawn["line"] > 100


def test_a_trend_chart_breaks_at_empty_buckets(stage: Stage) -> None:
    start = END_MS - 24 * HOUR_MS
    series = buckets(start, 24, skip=range(9, 12))
    drawn = draw(
        stage, "trendChart", series,
        {"unit": "/min", "bands": PULSE_BANDS, "start_ms": start, "end_ms": END_MS,
         "gap_at_ms": start + 10 * HOUR_MS + HOUR_MS // 2, "line_at_ms": start + 3 * HOUR_MS},
        900,
    )  # fmt: skip
    _, mean, low, high = drawn["data"]
    assert mean.count(None) == low.count(None) == high.count(None) == 1
    assert drawn["gapColumnHasLine"] is False
    assert drawn["lineColumnHasLine"] is True


SAMPLE_PAGE = """() => {
  const stage = document.getElementById('stage');
  stage.className = 'chart-sample';
  const title = document.createElement('h2');
  title.textContent = 'Heart rate';
  stage.append(title);
}"""


@pytest.mark.parametrize("width", [1920, 400])
def test_screenshots_of_a_sparkline_and_a_trend_chart(
    stage: Stage, width: int, tmp_path: Path
) -> None:
    stage.page.set_viewport_size({"width": width, "height": 700})
    stage.page.evaluate(SAMPLE_PAGE)
    start = END_MS - 24 * HOUR_MS
    usable = min(width - 48, 1200)
    draw(
        stage, "sparkline", readings(END_MS - 4 * HOUR_MS, 48, 5 * 60_000, range(20, 30)),
        {"low": 51, "high": 90}, min(usable, 240),
    )  # fmt: skip
    drawn = draw(
        stage, "trendChart", buckets(start, 24, range(9, 12)),
        {"unit": "beats/min", "bands": PULSE_BANDS, "label": "heart rate",
         "start_ms": start, "end_ms": END_MS},
        usable,
    )  # fmt: skip
    assert drawn["line"] > 100
    overflow = stage.page.evaluate(
        "() => [...document.querySelectorAll('body *')]"
        ".filter((e) => e.getBoundingClientRect().right > window.innerWidth).length"
    )
    assert overflow == 0
    shot = tmp_path / f"charts-{width}.png"
    stage.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000
