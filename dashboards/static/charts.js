// Charts for the ward and patient pages, drawn by uPlot (vendored from npm into
// static/vendor/uplot/ at build time: no CDN). Two shapes:
//
//   sparkline(element, points, {low, high})  - a tile's small line of the last hours, with the
//                                              normal range shaded and the newest value marked;
//   trendChart(element, series, {unit, bands}) - a patient's vital over a window: the mean line,
//                                              the bucket's low-high band, a local time axis,
//                                              the unit, and NEWS2 score bands shaded behind.
//
// Points are raw readings [{time_ms, value}] or the series API's buckets [{start_ms, mean, low,
// high}]. A stretch without data is a gap in the line, never a line across it: a missing hour
// drawn as a straight line looks like an hour of steady values.
//
// The CSP (dashboards/security_headers.py) allows no inline style: uPlot sets its sizes through
// the CSSOM (element.style.x = ...), which style-src does not govern, and its stylesheet is a
// file of this origin, linked here once, so pages only import this module.

import uPlot from "./vendor/uplot/uPlot.esm.js";

const STYLESHEETS = ["./vendor/uplot/uPlot.min.css", "./charts.css"];
const LINE = "#0b3d5c";
const BAND = "rgba(11, 61, 92, 0.16)";
const NORMAL_RANGE = "rgba(46, 125, 50, 0.10)";
// NEWS2 shading by score, pale so the line stays the first thing one sees (RCP chart colours).
const SCORE_FILL = { 1: "rgba(255, 213, 79, 0.22)", 2: "rgba(255, 152, 0, 0.20)",
                     3: "rgba(229, 57, 53, 0.16)" };
const GRID = "#e6e9ed";
const AXIS_FONT = "12px system-ui, sans-serif";

function linkStylesheets() {
  for (const path of STYLESHEETS) {
    const href = new URL(path, import.meta.url).href;
    if (![...document.querySelectorAll("link[rel=stylesheet]")].some((l) => l.href === href)) {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      document.head.append(link);
    }
  }
}

/** Rows {t (ms), mean, low, high} from raw points or API buckets, oldest first. */
export function rows(points) {
  return points
    .map((p) => {
      const mean = p.mean ?? p.value ?? null;
      return { t: p.start_ms ?? p.time_ms, mean, low: p.low ?? mean, high: p.high ?? mean };
    })
    .filter((r) => Number.isFinite(r.t))
    .sort((a, b) => a.t - b.t);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
}

/** The usual step between rows: a bucket's width, or the readings' median interval. */
function usualStep(rs) {
  const steps = rs.slice(1).map((r, i) => r.t - rs[i].t).filter((d) => d > 0);
  return median(steps);
}

/** uPlot's columns [xs (s), mean, low, high], with a null row wherever the time to the next row
 * is more than `gapMs`: uPlot breaks the line at a null (spanGaps is off). */
export function columns(rs, gapMs) {
  const xs = [], mean = [], low = [], high = [];
  const push = (t, r) => {
    xs.push(t / 1000);
    mean.push(r ? r.mean : null);
    low.push(r ? r.low : null);
    high.push(r ? r.high : null);
  };
  rs.forEach((r, i) => {
    if (i > 0 && gapMs > 0 && r.t - rs[i - 1].t > gapMs) push((rs[i - 1].t + r.t) / 2, null);
    push(r.t, r);
  });
  return [xs, mean, low, high];
}

/** Points to mark: the newest value, and any value with no neighbour to draw a line to. */
function loneAndNewest(u, seriesIdx) {
  const ys = u.data[seriesIdx];
  const present = (i) => i >= 0 && i < ys.length && ys[i] != null;
  const marked = [];
  ys.forEach((_, i) => {
    if (present(i) && !present(i - 1) && !present(i + 1)) marked.push(i);
  });
  for (let i = ys.length - 1; i >= 0; i--) {
    if (present(i)) {
      if (!marked.includes(i)) marked.push(i);
      break;
    }
  }
  return marked;
}

function fillBetween(u, from, to, colour) {
  const { left, top, width, height } = u.bbox;
  const y1 = from == null ? top + height : u.valToPos(from, "y", true);
  const y2 = to == null ? top : u.valToPos(to, "y", true);
  const a = Math.max(top, Math.min(y1, y2)), b = Math.min(top + height, Math.max(y1, y2));
  if (b > a) {
    u.ctx.fillStyle = colour;
    u.ctx.fillRect(left, a, width, b - a);
  }
}

function valueRange(rs, extra) {
  const values = rs.flatMap((r) => [r.low, r.high]).concat(extra).filter(Number.isFinite);
  if (!values.length) return [0, 1];
  const lo = Math.min(...values), hi = Math.max(...values);
  // a steady value is not stretched into a dramatic one: at least 5 % of the value either side
  const pad = Math.max((hi - lo) * 0.08, Math.abs(hi) * 0.05, 0.5);
  return [lo - pad, hi + pad];
}

const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit",
                                                   hourCycle: "h23" });
const DAY = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const WHEN = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit",
                                                   minute: "2-digit", hourCycle: "h23" });

/** Local 24-hour tick labels, with the date under the first tick of each day. */
function timeTicks(u, splits, axisIdx, space, incr) {
  let lastDay = null;
  return splits.map((s) => {
    const date = new Date(s * 1000);
    const day = DAY.format(date);
    if (incr >= 86400) return day;
    const label = day !== lastDay ? `${TIME.format(date)}\n${day}` : TIME.format(date);
    lastDay = day;
    return label;
  });
}

/** The legend shows the newest values until the cursor points at others. */
function legendAtNewest(u) {
  const idx = loneAndNewest(u, 1).at(-1);
  if (idx != null) u.setLegend({ idx });
}

function widthOf(element, fallback) {
  return Math.max(80, Math.floor(element.clientWidth || fallback));
}

function followWidth(element, chart) {
  const observer = new ResizeObserver(() => {
    const width = widthOf(element, chart.width);
    if (width !== chart.width) chart.setSize({ width, height: chart.height });
  });
  observer.observe(element);
  chart.hooks.destroy = [...(chart.hooks.destroy ?? []), () => observer.disconnect()];
}

/** A tile's small line: no axes, the normal range `low`-`high` shaded, the newest value and any
 * lone value marked, gaps as gaps. Returns the uPlot instance. */
export function sparkline(element, points, { low = null, high = null, gap_ms = null,
                                            height = 36 } = {}) {
  linkStylesheets();
  const rs = rows(points);
  const gap = gap_ms ?? 3 * usualStep(rs);
  const [xs, mean] = columns(rs, gap);
  const [ymin, ymax] = valueRange(rs, []);  // the normal range is shaded where it is in view
  element.classList.add("vt-sparkline");
  const chart = new uPlot({
    width: widthOf(element, 160),
    height,
    class: "vt-chart",
    padding: [4, 6, 4, 2],
    legend: { show: false },
    cursor: { show: false },
    select: { show: false },
    scales: { x: { time: true }, y: { range: () => [ymin, ymax] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, {
      stroke: LINE, width: 1.5,
      points: { show: false, size: 5, fill: LINE, stroke: LINE, filter: loneAndNewest },
    }],
    hooks: {
      drawClear: [(u) => (low != null || high != null) && fillBetween(u, low, high, NORMAL_RANGE)],
    },
  }, [xs, mean], element);
  followWidth(element, chart);
  return chart;
}

function formatted(value, unit) {
  if (value == null) return "–";
  const digits = Math.abs(value) >= 100 ? 0 : 1;
  return `${value.toFixed(digits)}${unit ? " " + unit : ""}`;
}

/** A patient's vital over a window: the bucket means as a line, each bucket's low-high as a band,
 * local times, the unit on the axis, NEWS2 `bands` ([{low, high, score}], either end open as
 * null) shaded behind. `series` is the API's answer ({bucket_ms, points}) or its points; `start_ms`
 * and `end_ms` pin the window so an empty stretch at either end shows as empty. */
export function trendChart(element, series, { unit = "", bands = [], label = "mean",
                                             start_ms = null, end_ms = null,
                                             height = 240 } = {}) {
  linkStylesheets();
  const points = Array.isArray(series) ? series : series.points;
  const rs = rows(points);
  const step = (Array.isArray(series) ? null : series.bucket_ms) ?? usualStep(rs);
  const data = columns(rs, 1.5 * step);
  const scored = bands.filter((b) => SCORE_FILL[b.score]);
  const normal = bands.filter((b) => b.score === 0).flatMap((b) => [b.low, b.high]);
  const [ymin, ymax] = valueRange(rs, normal.filter((v) => v != null));
  const xmin = start_ms != null ? start_ms / 1000 : data[0][0];
  const xmax = end_ms != null ? end_ms / 1000 : data[0][data[0].length - 1];
  const quiet = { stroke: "transparent", width: 0, points: { show: false } };
  element.classList.add("vt-trend");
  const chart = new uPlot({
    width: widthOf(element, 600),
    height,
    class: "vt-chart",
    cursor: { drag: { x: false, y: false }, points: { size: 7, fill: LINE } },
    select: { show: false },
    scales: {
      x: { time: true, range: () => [xmin ?? 0, xmax ?? 1] },
      y: { range: () => [ymin, ymax] },
    },
    axes: [
      { font: AXIS_FONT, stroke: "#444", grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID },
        values: timeTicks, space: 60 },
      { font: AXIS_FONT, stroke: "#444", label: unit, labelFont: AXIS_FONT, labelSize: 18,
        size: 48, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID } },
    ],
    series: [
      { value: (u, v) => (v == null ? "–" : WHEN.format(new Date(v * 1000))) },
      { label, stroke: LINE, width: 2, value: (u, v) => formatted(v, unit),
        points: { show: false, size: 5, fill: LINE, stroke: LINE, filter: loneAndNewest } },
      { label: "low", ...quiet, value: (u, v) => formatted(v, unit) },
      { label: "high", ...quiet, value: (u, v) => formatted(v, unit) },
    ],
    bands: [{ series: [3, 2], fill: BAND }],
    hooks: {
      ready: [legendAtNewest],
      drawClear: [(u) => scored.forEach((b) => fillBetween(u, b.low, b.high, SCORE_FILL[b.score]))],
    },
  }, data, element);
  followWidth(element, chart);
  return chart;
}
