// Line and bar charts over time with uPlot (vendor/uplot, MIT, pinned: see vendor/README.md).
import { h } from "./dom.js";
import { getLocale } from "./format.js";
import uPlot from "./vendor/uplot/uPlot.esm.js";

// Unix seconds of a day's UTC midnight as a short date in the page's locale ("4 Mar", "4. März").
function dayLabel(ts) {
  if (!Number.isFinite(ts)) return ""; // uPlot asks for ticks between points too while it sizes the axis
  return new Intl.DateTimeFormat(getLocale(), { day: "numeric", month: "short", timeZone: "UTC" }).format(ts * 1000);
}

// An hour as the server labels it ("2026-03-04T13:00:00+01:00": its start in the organisation's zone) as
// that wall-clock hour in the page's locale ("13:00", "1:00 PM"): the organisation's day, not the browser's.
export function hourLabel(label) {
  return new Intl.DateTimeFormat(getLocale(), { timeStyle: "short", timeZone: "UTC" })
    .format(Date.parse(`${label.slice(0, 19)}Z`));
}

const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#5c940d"];

// A /series label as Unix seconds: "2026-03-04" (a local day: its UTC midnight, which the day axis
// labels as that day) or an hour as the server labels it, its local start with the offset
// ("2026-03-04T13:00:00+01:00"; DST-proof).
export function timeOf(label) {
  return label.length === 10 ? Date.parse(`${label}T00:00:00Z`) / 1000 : Date.parse(label) / 1000;
}

// The least room between two x ticks: the widest label in the axis's font and a gap, so that drawn labels
// never run into each other ("12:00 AM1:00 AM" under a wide hourly chart, where uPlot's default 50 px fit).
function labelSpace(u, text) {
  const ctx = u.ctx;
  ctx.save();
  ctx.font = u.axes[0].font[0];
  let widest = 0;
  for (const x of u.data[0]) widest = Math.max(widest, ctx.measureText(text(x)).width);
  ctx.restore();
  return widest / (window.devicePixelRatio || 1) + 12;
}

// Draws (or redraws) a chart in `container`: xs (Unix seconds), series [{label, values}], `format` of a y value.
// `labels`: the server's hour labels of xs (hours: an ordinal axis labelled with the organisation's hours).
export function drawChart(container, { xs, series, format, bars = false, days = true, xLabel = "", labels = null }) {
  const width = Math.max(container.clientWidth, 280);
  const data = [xs, ...series.map((s) => s.values)];
  const shape = series.map((s) => s.label).join("|") + (bars ? "|bars" : "");
  const held = container._chart;
  const hours = !days && labels ? new Map(xs.map((x, i) => [x, hourLabel(labels[i])])) : null;
  const xText = (v) => (days ? dayLabel(v) : hours ? hours.get(v) || "" : new Date(v * 1000).toLocaleString(getLocale()));
  if (held && held.shape === shape && held.days === days && !hours === !held.hours) {
    held.hours = hours;
    held.text = xText; // the axis and legend read it: labels follow the new points
    held.plot.setData(data);
    if (held.plot.width !== width) held.plot.setSize({ width, height: 220 });
    return;
  }
  if (held) { held.resize.disconnect(); held.plot.destroy(); }
  container.replaceChildren();
  const opts = {
    width, height: 220,
    // Days and hours sit on their own ticks (an ordinal axis), labelled as dates or as the
    // organisation's hours in the page's locale.
    // Amounts and counts start at zero, so a bar's height is its value.
    scales: { x: days || hours ? { time: false, distr: 2, range: bars ? (u, min, max) => [min - 0.5, max + 0.5] : undefined } : { time: true }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] } },
    axes: [days || hours ? { values: (u, vals) => vals.map((v) => (Number.isFinite(v) ? (container._chart?.text || xText)(v) : "")),
      space: (u) => labelSpace(u, container._chart?.text || xText) } : {},
      { values: (u, vals) => vals.map(format), size: 80 }],
    series: [{ label: xLabel, value: (u, v) => (v === null || v === undefined ? "–" : (container._chart?.text || xText)(v)) }, ...series.map((s, i) => ({
      label: s.label, points: { show: xs.length < 40 }, stroke: COLORS[i % COLORS.length], width: 2,
      fill: bars ? `${COLORS[i % COLORS.length]}55` : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
      value: (u, v) => (v === null || v === undefined ? "–" : format(v)),
    }))],
  };
  const plot = new uPlot(opts, data, container);
  // Follow the container's width (a window resized, a phone turned): a canvas does not reflow.
  const resize = new ResizeObserver(() => {
    const w = Math.max(container.clientWidth, 280);
    if (plot.width !== w) plot.setSize({ width: w, height: 220 });
  });
  resize.observe(container);
  container._chart = { plot, shape, days, resize, hours, text: xText };
}

// One span (a one-day period): a line of one point draws nothing, so each series is a bar of its value
// (rows [{key, label, value, text}]), replacing any chart held in `container`.
export function drawBarList(container, rows, name) {
  const held = container._chart;
  if (held) { held.resize.disconnect(); held.plot.destroy(); container._chart = null; }
  const top = Math.max(1, ...rows.map((r) => r.value));
  container.replaceChildren(h("ol", { class: "funnel", "data-chart": name }, rows.map((r) => {
    const bar = h("span", { class: "bar" });
    bar.style.width = `${(100 * Math.max(0, r.value)) / top}%`;
    return h("li", { "data-count": r.key }, h("span", { class: "label", text: r.label }), h("span", { class: "track" }, bar),
      h("span", { class: "num", text: r.text }));
  })));
}
