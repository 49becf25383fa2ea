// /ui/runs/{id}: one run. Each section renders as soon as its data arrives; every chart is
// Observable Plot over the API's JSON, with the same data as a table for keyboards and readers.
import { api, countAxis, el, figure, formatNumber, markReady, num, plural, seconds, seg, showError, table, widthOf } from "/ui/assets/common.js";

const runId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const base = `/v1/runs/${encodeURIComponent(runId)}`;
const WINDOW = 20;
const KIND_COLOURS = { LLM: "#1f77b4", TOOL: "#2ca02c", FUNCTION: "#ff7f0e" };

/** Timeline state: which requests' calls are drawn, and the zoomed time range. */
const view = { offset: 0, domain: null, timeline: null, spikes: [], run: null };

async function main() {
  const run = await api(base);
  renderHeader(run);
  renderFiles(run);
  chooseRange(run);
  const refresh = document.getElementById("auto-refresh");
  refresh.checked = isLive(run);
  setInterval(() => {
    if (refresh.checked && document.visibilityState === "visible" && !range.busy) reload().catch(fail("the run"));
  }, REFRESH_MS);
  document.getElementById("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    readForm();
    reload().catch(fail("the run"));
  });
  await renderAll(run);
}

// ---- The time range ------------------------------------------------------------------------

/** A run whose last step is this recent is still receiving traffic. */
const LIVE_SECONDS = 600;
/** A run with more steps than this opens on its last hour: the whole of it takes long to analyse. */
const BIG_STEPS = 200_000;
/** How often a live page reloads its data. */
const REFRESH_MS = 30_000;
/** Requests above which a per-request chart draws their distribution instead of one bar each. */
const MAX_BARS = 200;
/** Rows a data table shows at most; the JSON behind it has every one. */
const MAX_ROWS = 500;

/** `kind`: "all", "custom" or the seconds of a range ending now (or at the run's last step). */
const range = { kind: "all", from: null, to: null, narrowed: null, busy: false };

function isLive(run) {
  const last = run.summary.last_event_at;
  return last !== null && last !== undefined && Date.now() / 1000 - last < LIVE_SECONDS;
}

/** The range the page opens on: the one in its address, else the last hour of a run that is
 * live or too big to take in whole, else the whole run. */
function chooseRange(run) {
  const q = new URLSearchParams(location.search);
  const from = Number.parseFloat(q.get("from"));
  const to = Number.parseFloat(q.get("to"));
  if (q.has("from") || q.has("to")) {
    Object.assign(range, { kind: "custom", from: Number.isFinite(from) ? from : null, to: Number.isFinite(to) ? to : null });
  } else if (q.get("range")) {
    range.kind = q.get("range");
  } else {
    range.kind = isLive(run) || run.step_count > BIG_STEPS ? "3600" : "all";
  }
}

/** Sets `from`/`to` of a relative range: it ends now for a live run, at its last step otherwise. */
function resolveRange(run) {
  if (range.kind === "all") {
    range.from = range.to = null;
  } else if (range.kind !== "custom") {
    const end = isLive(run) ? Date.now() / 1000 : (run.summary.last_event_at ?? Date.now() / 1000) + 1;
    range.from = Math.floor(end - Number(range.kind));
    range.to = null;
  }
}

/** The window's query parameters. */
function windowQuery() {
  const q = [];
  if (range.from !== null) q.push(`from=${range.from}`);
  if (range.to !== null) q.push(`to=${range.to}`);
  return q.join("&");
}

function windowed(path) {
  const w = windowQuery();
  return w ? `${path}${path.includes("?") ? "&" : "?"}${w}` : path;
}

/** `datetime-local`'s value for Unix seconds, in the browser's time zone. */
function localInput(t) {
  if (t === null) return "";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function syncForm() {
  const form = document.getElementById("range-form");
  for (const radio of form.querySelectorAll("input[name=range]")) radio.checked = radio.value === range.kind;
  form.elements.from.value = localInput(range.from);
  form.elements.to.value = localInput(range.to);
  const when = (t) => (t === null ? null : new Date(t * 1000).toISOString().replace(".000Z", "Z"));
  const label = document.getElementById("range-label");
  const parts = range.from === null && range.to === null
    ? ["Showing the whole run."]
    : ["Showing the requests that started ", range.from !== null ? ["from ", el("time", { datetime: when(range.from) }, when(range.from))] : "", range.to !== null ? [" before ", el("time", { datetime: when(range.to) }, when(range.to))] : " on", "."];
  if (range.narrowed) parts.push(` The range asked for would take ${range.narrowed} of memory to analyse, more than the server allows: this is the most recent part of it that fits.`);
  label.replaceChildren(...parts.flat());
  const q = range.kind === "custom" ? windowQuery() : range.kind === "all" && !isDefaultAll() ? "range=all" : range.kind !== "all" ? `range=${range.kind}` : "";
  history.replaceState(null, "", q ? `${location.pathname}?${q}` : location.pathname);
}

/** Whether "the whole run" is what this run opens on anyway (its address need not say so). */
function isDefaultAll() {
  return !(view.run && (isLive(view.run) || view.run.step_count > BIG_STEPS));
}

function readForm() {
  const form = document.getElementById("range-form");
  const kind = form.querySelector("input[name=range]:checked")?.value ?? "all";
  range.kind = kind;
  range.narrowed = null;
  if (kind === "custom") {
    const at = (v) => (v ? Math.floor(new Date(v).getTime() / 1000) : null);
    range.from = at(form.elements.from.value);
    range.to = at(form.elements.to.value);
  }
}

async function reload() {
  const run = await api(base);
  renderHeader(run);
  await renderAll(run);
}

/**
 * Draws every section for the current range. The profiling metrics go first: when the range
 * would take more memory than the server gives an analysis, the 413 names the most recent part
 * of it that fits, and the page narrows to that before anything else asks.
 */
async function renderAll(run) {
  range.busy = true;
  view.run = run;
  resolveRange(run);
  syncForm();
  // The profiling metrics are the most memory an analysis of the page takes: the window that
  // fits them fits every other section too.
  let profiling;
  try {
    profiling = await api(windowed(`${base}/profiling`));
  } catch (e) {
    const fits = e.status === 413 && e.problem?.memory?.fits;
    if (!fits) {
      profiling = Promise.reject(e);
    } else {
      Object.assign(range, { kind: "custom", from: fits.from, to: fits.to, narrowed: bytes(e.problem.memory.estimated_bytes) });
      syncForm();
      profiling = api(windowed(`${base}/profiling`));
    }
  }
  profiling = Promise.resolve(profiling);
  const stats = api(windowed(`${base}/stats`));
  const timeline = loadTimeline(0);
  const series = api(windowed(`${base}/series`));
  const sections = [
    Promise.all([stats, timeline]).then(([s, tl]) => renderCards(run, s, tl)).catch(fail("the statistics", "cards")),
    timeline.catch(fail("the timeline", "gantt")),
    series.then(renderTrends).catch(fail("the trends", "trends")),
    api(windowed(`${base}/forecast`)).then(renderForecast).catch(fail("the forecast", "forecast")),
    Promise.all([timeline, stats]).then(([tl, s]) => renderLatency(tl, s)).catch(fail("the latencies", "latency")),
    stats.then(renderPrefixCache).catch(fail("the statistics", "prefix-cache")),
    Promise.all([timeline, profiling]).then(([tl, prof]) => renderConcurrency(tl, prof)).catch(fail("the concurrency", "concurrency")),
    timeline.then(renderTokens).catch(fail("the tokens", "tokens")),
    profiling.then(renderBottlenecks).catch(fail("the bottlenecks", "bottlenecks")),
    profiling.then(renderPatterns).catch(fail("the patterns", "patterns")),
  ];
  await Promise.allSettled(sections.slice(0, 2));
  markReady("summary");
  await Promise.allSettled(sections);
  range.busy = false;
  // How many times the page has drawn a range: what a test of a range change waits for.
  document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
  markReady("all");
}

function bytes(n) {
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(n / 2 ** 20)} MiB`;
}

// ---- Trends (from the rollups: cheap at any size) -----------------------------------------

function renderTrends(series) {
  const holder = document.getElementById("trends");
  const buckets = series.buckets;
  if (!buckets.length) {
    holder.replaceChildren(el("p", {}, "No steps in this range."));
    return;
  }
  const at = (b) => new Date(b.start * 1000);
  const width = Math.max(320, Math.floor(widthOf(holder) / (widthOf(holder) > 1100 ? 2 : 1)) - 16);
  const per = `per ${series.step >= 3600 ? `${series.step / 3600} h` : `${series.step / 60} min`}`;
  const long = (fields) => buckets.flatMap((b) => fields.map(([key, label]) => ({ at: at(b), what: label, value: key(b) })));
  const lines = (data, y, domain, colours) =>
    Plot.plot({
      width,
      height: 200,
      marginLeft: 56,
      x: { label: null, type: "utc" },
      y: { label: y, grid: true },
      color: { legend: true, domain, range: colours },
      marks: [Plot.lineY(data, { x: "at", y: "value", z: "what", stroke: "what", curve: "step-after" }), Plot.ruleY([0])],
    });
  const counts = lines(
    long([[(b) => b.requests, "requests"], [(b) => b.llm_calls, "LLM calls"], [(b) => b.tool_calls, "tool calls"]]),
    `↑ ${per}`,
    ["requests", "LLM calls", "tool calls"],
    ["#6f42c1", "#1f77b4", "#2ca02c"],
  );
  const tokens = lines(
    long([[(b) => b.prompt_tokens, "prompt"], [(b) => b.completion_tokens, "completion"]]),
    `↑ tokens ${per}`,
    ["prompt", "completion"],
    ["#1f77b4", "#ff7f0e"],
  );
  const latency = lines(
    long([[(b) => b.llm_latency?.p50 ?? NaN, "p50"], [(b) => b.llm_latency?.p90 ?? NaN, "p90"], [(b) => b.llm_latency?.p99 ?? NaN, "p99"]]),
    "↑ LLM latency (s)",
    ["p50", "p90", "p99"],
    ["#1f77b4", "#ff7f0e", "#d62728"],
  );
  const src = (i, f) => `series:/buckets/${i}/${f}`;
  const shown = buckets.slice(0, MAX_ROWS);
  const caption = buckets.length > MAX_ROWS ? `The first ${MAX_ROWS} of ${buckets.length} buckets` : null;
  const from = (b) => new Date(b.start * 1000).toISOString().replace(".000Z", "Z");
  const tableOf = (columns, cells) =>
    table(caption, [{ label: "From (UTC)", rowHeader: true }, ...columns.map((label) => ({ label, num: true }))], shown.map((b, i) => [from(b), ...cells(b, i)]));
  const counted = tableOf(["Requests", "LLM calls", "Tool calls"], (b, i) => [num(b.requests, src(i, "requests")), num(b.llm_calls, src(i, "llm_calls")), num(b.tool_calls, src(i, "tool_calls"))]);
  const tokenTable = tableOf(["Prompt tokens", "Completion tokens", "Cached tokens"], (b, i) => [num(b.prompt_tokens, src(i, "prompt_tokens")), num(b.completion_tokens, src(i, "completion_tokens")), num(b.cached_tokens, src(i, "cached_tokens"))]);
  const q = (b, i, p) => (b.llm_latency ? num(b.llm_latency[p], src(i, `llm_latency/${p}`)) : "–");
  const latencyTable = tableOf(["LLM p50 (s)", "LLM p90 (s)", "LLM p99 (s)"], (b, i) => [q(b, i, "p50"), q(b, i, "p90"), q(b, i, "p99")]);
  holder.replaceChildren(
    el(
      "div",
      { class: "trends" },
      figure("trend-counts", `Requests (by their first step) and calls (by their end), ${per}.`, counts, counted),
      figure("trend-tokens", `Prompt and completion tokens of LLM calls, ${per}.`, tokens, tokenTable),
      figure("trend-latency", `LLM latency percentiles ${per} (within 1% of exact).`, latency, latencyTable),
    ),
  );
}

function renderHeader(run) {
  document.title = `${run.name || run.id} · agentprof`;
  document.getElementById("run-name").textContent = run.name || "Unnamed run";
  document.getElementById("run-meta").replaceChildren(
    el("code", {}, run.id),
    ` · ${run.toolkit} (${run.toolkit_source}) · created `,
    el("time", { datetime: run.created_at }, run.created_at),
    ` · version ${run.version}`,
  );
  document.getElementById("run-warnings")?.remove();
  if (run.warnings.length) {
    const list = el("ul", {}, run.warnings.map((w) => el("li", {}, w)));
    document.getElementById("run-meta").after(el("div", { id: "run-warnings", class: "status", role: "note" }, el("strong", {}, "Warnings"), list));
  }
}

function card(term, ...value) {
  return [el("div", { class: "card" }, el("dt", {}, term), el("dd", {}, ...value))];
}

/** The run's cost under its prices, beside its tokens; models without a price are named. */
function costCard(cost) {
  const unpriced = Object.keys(cost.unpriced_models);
  const per = cost.per_request;
  const lines = [];
  if (per.n > 0) {
    lines.push(el("small", { style: "display:block" }, "mean per request ", num(per.mean, "stats:/cost/per_request/mean", cost.currency)));
    if (per.mean_ci95.t) lines.push(interval(per.mean_ci95.t, "stats:/cost/per_request/mean_ci95/t"));
  }
  if (unpriced.length) {
    lines.push(el("small", { style: "display:block" }, `No price for ${unpriced.join(", ")}: `, plural(unpriced.reduce((n, m) => n + cost.unpriced_models[m].calls, 0), "call"), " not counted"));
  }
  // Priced calls give a total; a run without LLM calls costs nothing; without any priced model
  // there is no figure to give.
  const calls = Object.keys(cost.by_model).length + unpriced.length;
  const total = Object.keys(cost.by_model).length || !calls
    ? num(cost.total, "stats:/cost/total", cost.currency)
    : el("span", {}, "no prices");
  return card(cost.complete ? "Cost" : "Cost of the priced calls", total, ...lines);
}

function interval(ci, src) {
  return ci
    ? el("small", {}, "95% interval ", num(ci[0], `${src}/0`), " – ", num(ci[1], `${src}/1`))
    : el("small", {}, "too few calls for a 95% interval");
}

function renderCards(run, stats, tl) {
  const cards = document.getElementById("cards");
  const lat = stats.llm_latency.overall;
  const whole = range.from === null && range.to === null;
  const items = [
    ...(whole
      ? [...card("Requests", num(run.request_count, "run:/request_count")), ...card("Wall time", num(run.summary.wall_time_seconds, "run:/summary/wall_time_seconds", "s"))]
      : [...card("Requests in this range", num(tl.requests, "timeline:/requests")), ...card("Requests in the whole run", num(run.request_count, "run:/request_count"))]),
    ...card("LLM calls paired by UUID", num(lat.n, "stats:/llm_latency/overall/n")),
  ];
  for (const p of ["p50", "p90", "p99"]) {
    items.push(
      ...card(
        `LLM latency ${p}`,
        num(lat[p], `stats:/llm_latency/overall/${p}`, "s"),
        interval(lat.percentile_ci95[p], `stats:/llm_latency/overall/percentile_ci95/${p}`),
      ),
    );
  }
  const tp = stats.throughput;
  items.push(
    ...card(
      "Throughput",
      num(tp.requests_per_second, "stats:/throughput/requests_per_second", "req/s"),
      tp.ci95
        ? el("small", {}, "95% interval ", num(tp.ci95[0], "stats:/throughput/ci95/0"), " – ", num(tp.ci95[1], "stats:/throughput/ci95/1"))
        : el("small", {}, "no interval"),
    ),
  );
  const models = Object.entries(stats.tokens);
  items.push(
    ...card(
      "Tokens by model (mean per call)",
      models.length
        ? el(
            "small",
            {},
            models.map(([m, t]) => el("span", { style: "display:block" }, `${m}: `, num(t.total.mean, `stats:/tokens/${seg(m)}/total/mean`), " over ", num(t.total.n, `stats:/tokens/${seg(m)}/total/n`), t.total.n === 1 ? " call" : " calls")),
          )
        : el("small", {}, "no LLM calls"),
    ),
  );
  items.push(...costCard(stats.cost));
  cards.replaceChildren(...items);
}

// ---- The nested-call timeline -------------------------------------------------------------

async function loadTimeline(offset) {
  const tl = await api(windowed(`${base}/timeline?offset=${offset}&limit=${WINDOW}`));
  view.offset = offset;
  view.timeline = tl;
  drawGantt();
  markReady("gantt");
  return tl;
}

function drawGantt() {
  const tl = view.timeline;
  const holder = document.getElementById("gantt");
  const first = tl.requests === 0 ? 0 : view.offset + 1;
  const last = Math.min(view.offset + WINDOW, tl.requests);
  document.getElementById("window-label").textContent = `Requests ${first}–${last} of ${tl.requests}`;
  document.getElementById("prev-requests").disabled = view.offset === 0;
  document.getElementById("next-requests").disabled = view.offset + WINDOW >= tl.requests;
  if (tl.calls.length === 0) {
    holder.replaceChildren(el("p", {}, "No calls in these requests."));
    return;
  }
  // A call that never ended is drawn to the window's last moment, faded.
  const windowEnd = Math.max(...tl.calls.map((c) => c.end ?? c.start));
  const calls = tl.calls.map((c, i) => ({ ...c, i, stop: c.end ?? windowEnd, lane: `Request ${c.request}` }));
  const lanes = [...new Set(calls.map((c) => c.lane))];
  const maxDepth = Math.max(...calls.map((c) => c.depth));
  const laneHeight = Math.max(22, Math.min(40, 8 + 4 * (maxDepth + 1)));
  const marks = [];
  for (let d = 0; d <= maxDepth; d++) {
    const level = calls.filter((c) => c.depth === d);
    if (!level.length) continue;
    marks.push(
      Plot.barX(level, {
        x1: "start",
        x2: "stop",
        y: "lane",
        fill: (c) => KIND_COLOURS[c.kind] || "#888",
        fillOpacity: (c) => (c.end === null ? 0.4 : 1),
        insetTop: Math.min(d * 3, laneHeight / 2 - 3),
        insetBottom: 1,
        stroke: "white",
        strokeWidth: 0.5,
        render: focusableBars(level),
      }),
    );
  }
  const chart = Plot.plot({
    width: widthOf(holder),
    height: 40 + lanes.length * laneHeight,
    marginLeft: 100,
    x: { label: "seconds since the run's first call →", domain: view.domain ?? undefined, clamp: true, grid: true },
    y: { label: null, domain: lanes },
    color: { legend: false },
    style: { fontSize: "12px" },
    marks: [Plot.frame({ stroke: "#d0d7de" }), ...marks],
  });
  chart.setAttribute("aria-description", "Each bar is a call; nested calls are drawn inside their parent. Blue: LLM, green: tool, orange: function; faded: never ended.");
  enableDragZoom(chart);
  rovingFocus(chart, calls);
  const rows = calls.map((c) => [
    String(c.request),
    c.kind,
    c.name,
    num(c.start, `timeline:/calls/${c.i}/start`),
    num(c.end, `timeline:/calls/${c.i}/end`),
    c.tokens ? num(c.tokens.total, `timeline:/calls/${c.i}/tokens/total`) : "–",
  ]);
  const data = table(null, [{ label: "Request" }, { label: "Kind" }, { label: "Name" }, { label: "Start (s)", num: true }, { label: "End (s)", num: true }, { label: "Tokens", num: true }], rows);
  const legend = el(
    "p",
    { class: "legend-note" },
    Object.entries(KIND_COLOURS).map(([k, c]) => el("span", { style: `margin-right:1rem` }, el("span", { style: `display:inline-block;width:0.8em;height:0.8em;background:${c};margin-right:0.3em`, "aria-hidden": "true" }), k)),
  );
  holder.replaceChildren(figure("gantt-figure", `The calls of requests ${first}–${last}`, chart, data, { interactive: true }), legend);
}

/** Plot's render hook: each bar becomes focusable, labelled, and shows its call's details. */
function focusableBars(level) {
  return (index, scales, values, dimensions, context, next) => {
    const g = next(index, scales, values, dimensions, context);
    const rects = g.querySelectorAll("rect");
    index.forEach((k, j) => {
      const rect = rects[j];
      if (!rect) return;
      const call = level[k];
      rect.setAttribute("tabindex", "-1");
      rect.setAttribute("role", "graphics-symbol");
      rect.setAttribute("aria-label", `${call.kind} ${call.name}, request ${call.request}, ${call.end === null ? "never ended" : seconds(call.end - call.start)}`);
      rect.dataset.call = String(call.i);
      rect.addEventListener("mouseenter", () => showCall(call));
      rect.addEventListener("focus", () => showCall(call));
    });
    return g;
  };
}

function showCall(call) {
  const box = document.getElementById("call-details");
  const rows = [
    ["Name", call.name],
    ["Kind", call.kind],
    ["Request", String(call.request)],
    ["Duration", call.end === null ? "never ended" : seconds(call.end - call.start)],
    ["Start", el("span", {}, num(call.start, `timeline:/calls/${call.i}/start`), " s")],
  ];
  if (call.tokens) {
    rows.push(["Tokens", el("span", {}, num(call.tokens.prompt, `timeline:/calls/${call.i}/tokens/prompt`), " prompt + ", num(call.tokens.completion, `timeline:/calls/${call.i}/tokens/completion`), " completion")]);
  }
  if (call.input) rows.push(["Input", el("pre", {}, call.input)]);
  if (call.output) rows.push(["Output", el("pre", {}, call.output)]);
  box.replaceChildren(
    el("h3", { id: "call-details-title" }, "Call details"),
    el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
}

/**
 * The chart is one stop in the Tab order (its first call); the arrow keys move between calls in
 * request order, Home and End to the first and last, so the rest of the page stays a few Tab
 * presses away however many calls there are.
 */
function rovingFocus(chart, calls) {
  // Only the calls inside the zoomed range: the others are clamped to its edges, out of sight.
  const [from, to] = view.domain ?? [-Infinity, Infinity];
  const visible = (bar) => {
    const c = calls[Number(bar.dataset.call)];
    return c.stop >= from && c.start <= to;
  };
  const bars = [...chart.querySelectorAll("rect[data-call]")].filter(visible).sort((a, b) => a.dataset.call - b.dataset.call);
  if (!bars.length) return;
  bars[0].setAttribute("tabindex", "0");
  chart.addEventListener("keydown", (event) => {
    const at = bars.indexOf(document.activeElement);
    if (at < 0) return;
    const next = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: bars.length - 1 }[event.key];
    if (next === undefined || next < 0 || next >= bars.length) return;
    event.preventDefault();
    bars[at].setAttribute("tabindex", "-1");
    bars[next].setAttribute("tabindex", "0");
    bars[next].focus();
  });
}

/** Dragging across the chart zooms to the dragged time range. */
function enableDragZoom(chart) {
  const x = chart.scale("x");
  let from = null;
  const local = (event) => event.clientX - chart.getBoundingClientRect().left;
  chart.addEventListener("pointerdown", (event) => {
    if (event.target.closest("rect[data-call]") && event.pointerType !== "mouse") return;
    from = local(event);
  });
  chart.addEventListener("pointerup", (event) => {
    if (from === null) return;
    const to = local(event);
    const [a, b] = [Math.min(from, to), Math.max(from, to)];
    from = null;
    if (b - a < 6) return;
    view.domain = [x.invert(a), x.invert(b)];
    drawGantt();
  });
}

function zoom(factor) {
  const tl = view.timeline;
  if (!tl || !tl.calls.length) return;
  const full = [Math.min(...tl.calls.map((c) => c.start)), Math.max(...tl.calls.map((c) => c.end ?? c.start))];
  if (!(full[1] > full[0])) return; // every call at one instant: nothing to zoom into
  const [a, b] = view.domain ?? full;
  const mid = (a + b) / 2;
  const half = ((b - a) / 2) * factor;
  view.domain = factor >= 1 && half * 2 >= full[1] - full[0] ? null : [mid - half, mid + half];
  drawGantt();
}

document.getElementById("zoom-in").addEventListener("click", () => zoom(0.5));
document.getElementById("zoom-out").addEventListener("click", () => zoom(2));
document.getElementById("zoom-reset").addEventListener("click", () => {
  view.domain = null;
  drawGantt();
});
document.getElementById("prev-requests").addEventListener("click", () => {
  view.domain = null;
  loadTimeline(Math.max(0, view.offset - WINDOW)).catch(fail("the timeline"));
});
document.getElementById("next-requests").addEventListener("click", () => {
  view.domain = null;
  loadTimeline(view.offset + WINDOW).catch(fail("the timeline"));
});

// ---- Run-wide charts ----------------------------------------------------------------------

function renderConcurrency(tl, prof) {
  const holder = document.getElementById("concurrency");
  const spikes = prof.concurrency_spike_analysis;
  if (!tl.concurrency.length) {
    holder.replaceChildren(el("p", {}, "No LLM or tool call lasted any time."));
    return;
  }
  const origin = tl.origin ?? 0;
  const intervals = spikes ? spikes.spike_intervals.map((s) => ({ start: s.start_time - origin, end: s.end_time - origin, concurrency: s.concurrency })) : [];
  const marks = [
    Plot.rectX(intervals, { x1: "start", x2: "end", y1: 0, y2: (d) => d.concurrency, fill: "#d62728", fillOpacity: 0.35 }),
    Plot.areaY(tl.concurrency, { x: "start", y: "peak", curve: "step-after", fill: "#1f77b4", fillOpacity: 0.25 }),
    Plot.lineY(tl.concurrency, { x: "start", y: "peak", curve: "step-after", stroke: "#1f77b4" }),
  ];
  if (spikes) marks.push(Plot.ruleY([spikes.spike_threshold], { stroke: "#d62728", strokeDasharray: "4,3" }));
  const chart = Plot.plot({
    width: widthOf(holder),
    height: 220,
    x: { label: "seconds since the run's first call →" },
    y: countAxis("↑ calls in flight (peak)", Math.max(...tl.concurrency.map((b) => b.peak), spikes ? spikes.spike_threshold : 0)),
    marks,
  });
  const spikeText = spikes
    ? el("p", {}, `Spike threshold `, num(spikes.spike_threshold, "profiling:/concurrency_spike_analysis/spike_threshold"), spikes.spike_threshold === 1 ? " call" : " calls", ` (dashed); `, plural(spikes.spike_intervals.length, "spike interval"), ` (red). p50 `, num(spikes.p50_concurrency, "profiling:/concurrency_spike_analysis/p50_concurrency"), `, p90 `, num(spikes.p90_concurrency, "profiling:/concurrency_spike_analysis/p90_concurrency"), `, p99 `, num(spikes.p99_concurrency, "profiling:/concurrency_spike_analysis/p99_concurrency"), ` calls.`)
    : el("p", { class: "muted" }, "Concurrency-spike analysis is off in this run's profiler config.");
  const data = table(null, [{ label: "From (s)", num: true }, { label: "To (s)", num: true }, { label: "Peak calls in flight", num: true }], tl.concurrency.map((b, i) => [num(b.start, `timeline:/concurrency/${i}/start`), num(b.end, `timeline:/concurrency/${i}/end`), num(b.peak, `timeline:/concurrency/${i}/peak`)]));
  holder.replaceChildren(figure("concurrency-figure", "The most calls in flight at any moment, over the whole run, with the toolkit's concurrency spikes in red.", chart, data), spikeText);
}

function renderLatency(tl, stats) {
  const holder = document.getElementById("latency");
  const rows = Object.entries(tl.llm_latency).flatMap(([model, xs]) => xs.map((latency) => ({ model, latency })));
  if (!rows.length) {
    holder.replaceChildren(el("p", {}, "No paired LLM calls."));
    return;
  }
  const models = Object.keys(tl.llm_latency);
  const chart = Plot.plot({
    width: widthOf(holder),
    height: 60 + 140 * models.length,
    marginRight: 140,
    x: { label: "latency (s) →" },
    // At most every call of a model in one bin: integer ticks up to that.
    y: countAxis("↑ calls", Math.max(...Object.values(tl.llm_latency).map((xs) => xs.length))),
    fy: { label: null },
    marks: [Plot.rectY(rows, Plot.binX({ y: "count" }, { x: "latency", fy: "model", fill: "#1f77b4", thresholds: 30 })), Plot.ruleY([0])],
  });
  const data = table(
    null,
    [{ label: "Model", rowHeader: true }, { label: "Calls", num: true }, { label: "Mean (s)", num: true }, { label: "p50 (s)", num: true }, { label: "p90 (s)", num: true }, { label: "p99 (s)", num: true }, { label: "Max (s)", num: true }],
    Object.entries(stats.llm_latency.by_model).map(([m, s]) => {
      const src = (f) => `stats:/llm_latency/by_model/${seg(m)}/${f}`;
      return [m, num(s.n, src("n")), num(s.mean, src("mean")), num(s.p50, src("p50")), num(s.p90, src("p90")), num(s.p99, src("p99")), num(s.max, src("max"))];
    }),
  );
  holder.replaceChildren(figure("latency-figure", "How long LLM calls took, per model (calls paired START → END by UUID).", chart, data));
}

function renderTokens(tl) {
  const holder = document.getElementById("tokens");
  const per = tl.tokens_per_request;
  if (!per.length) {
    holder.replaceChildren(el("p", {}, "No requests."));
    return;
  }
  const chart = per.length > MAX_BARS ? tokenDistribution(holder, per) : tokenBars(holder, per);
  const shown = per.slice(0, MAX_ROWS);
  const data = table(
    per.length > MAX_ROWS ? `The first ${MAX_ROWS} of ${per.length} requests (the timeline JSON has every one)` : null,
    [{ label: "Request", rowHeader: true }, { label: "Prompt", num: true }, { label: "Completion", num: true }, { label: "Total", num: true }],
    shown.map((r, i) => [String(r.request), num(r.prompt, `timeline:/tokens_per_request/${i}/prompt`), num(r.completion, `timeline:/tokens_per_request/${i}/completion`), num(r.total, `timeline:/tokens_per_request/${i}/total`)]),
  );
  const caption = per.length > MAX_BARS
    ? `How many of the ${per.length} requests used how many tokens (prompt + completion): too many requests for a bar each.`
    : "Prompt and completion tokens of each request's LLM calls.";
  holder.replaceChildren(figure("tokens-figure", caption, chart, data));
}

/** One bar per request, prompt and completion stacked. */
function tokenBars(holder, per) {
  const long = per.flatMap((r) => [
    { request: r.request, part: "prompt", tokens: r.prompt },
    { request: r.request, part: "completion", tokens: r.completion },
  ]);
  return Plot.plot({
    width: widthOf(holder),
    height: 240,
    x: { label: "request →", tickFormat: (d) => (Number.isInteger(d) ? String(d) : "") },
    y: { label: "↑ tokens", grid: true },
    color: { legend: true, domain: ["prompt", "completion"], range: ["#1f77b4", "#ff7f0e"] },
    marks: [Plot.rectY(long, { x1: (d) => d.request, x2: (d) => d.request + 1, y: "tokens", fill: "part", insetRight: 1 }), Plot.ruleY([0])],
  });
}

/** A histogram of requests by their total tokens: legible at any number of requests. */
function tokenDistribution(holder, per) {
  return Plot.plot({
    width: widthOf(holder),
    height: 240,
    x: { label: "tokens per request →" },
    y: { label: "↑ requests", grid: true },
    marks: [Plot.rectY(per, Plot.binX({ y: "count" }, { x: "total", fill: "#1f77b4", thresholds: 40 })), Plot.ruleY([0])],
  });
}

// ---- Tables -------------------------------------------------------------------------------

function renderBottlenecks(prof) {
  const holder = document.getElementById("bottlenecks");
  const nested = prof.nested_stack_analysis;
  if (!nested) {
    holder.replaceChildren(el("p", { class: "muted" }, "The nested-stack analysis is off in this run's profiler config."));
    return;
  }
  const src = (i, f) => `profiling:/nested_stack_analysis/top_bottlenecks/${i}/${f}`;
  holder.replaceChildren(
    table(
      "Top calls by the nested-stack bottleneck score",
      [{ label: "Kind" }, { label: "Name" }, { label: "Duration (s)", num: true }, { label: "Self time (s)", num: true }, { label: "Concurrency at midpoint", num: true }, { label: "Score", num: true }],
      nested.top_bottlenecks.map((b, i) => [b.operation_type, b.operation_name, num(b.duration, src(i, "duration")), num(b.self_time, src(i, "self_time")), num(b.concurrency_midpoint, src(i, "concurrency_midpoint")), num(b.bottleneck_score, src(i, "bottleneck_score"))]),
    ),
  );
}

function renderPrefixCache(stats) {
  const holder = document.getElementById("prefix-cache");
  const models = Object.entries(stats.prefix_cache);
  if (!models.length) {
    holder.replaceChildren(el("p", {}, "No prompts."));
    return;
  }
  const src = (m, f) => `stats:/prefix_cache/${seg(m)}/${f}`;
  holder.replaceChildren(
    table(
      "Prompt tokens a prefix cache could have served (whitespace tokens)",
      [{ label: "Model", rowHeader: true }, { label: "Prompts", num: true }, { label: "Prompt tokens", num: true }, { label: "Cacheable tokens", num: true }, { label: "Cacheable share", num: true }],
      models.map(([m, p]) => [m, num(p.prompts, src(m, "prompts")), num(p.prompt_tokens, src(m, "prompt_tokens")), num(p.cacheable_tokens, src(m, "cacheable_tokens")), num(p.cacheable_share, src(m, "cacheable_share"))]),
    ),
  );
}

function renderPatterns(prof) {
  const holder = document.getElementById("patterns");
  const ps = prof.prefix_span_analysis;
  if (!ps) {
    holder.replaceChildren(el("p", { class: "muted" }, "The PrefixSpan analysis is off in this run's profiler config."));
    return;
  }
  if (!ps.patterns.length) {
    holder.replaceChildren(el("p", {}, "No frequent patterns."));
    return;
  }
  const src = (i, f) => `profiling:/prefix_span_analysis/patterns/${i}/${f}`;
  holder.replaceChildren(
    table(
      "Call sequences that recur across requests",
      [{ label: "Pattern" }, { label: "Frequency", num: true }, { label: "Coverage", num: true }, { label: "Mean duration (s)", num: true }],
      ps.patterns.map((p, i) => [p.pattern.join(" → "), num(p.frequency, src(i, "frequency")), num(p.coverage, src(i, "coverage")), num(p.average_duration, src(i, "average_duration"))]),
    ),
  );
}

function renderForecast(f) {
  const holder = document.getElementById("forecast");
  if (f.status !== "fitted") {
    holder.replaceChildren(el("p", {}, `Not fitted: ${f.reason}`));
    return;
  }
  holder.replaceChildren(
    el(
      "p",
      {},
      `A ${f.model.type} of ${plural(f.model.n_estimators, "tree")} predicts each request's next `,
      num(f.matrix_length, "forecast:/matrix_length"),
      f.matrix_length === 1 ? " call" : " calls",
      " (seconds between calls, prompt and completion tokens) from ",
      num(f.training_samples, "forecast:/training_samples"),
      f.training_samples === 1 ? " training window" : " training windows",
      "; its mean absolute error on them is ",
      num(f.in_sample_mae, "forecast:/in_sample_mae"),
      ".",
    ),
    el("p", {}, el("a", { href: `${base}/forecast` }, "Every request's predicted next calls (JSON)")),
  );
}

/** Points the server-rendered list of output files (one item per output the server has) at
 * this run, leaving out the outputs its toolkit does not have. */
function renderFiles(run) {
  for (const li of document.querySelectorAll("#files li")) {
    if (li.dataset.natOnly === "true" && run.toolkit !== "nat-1.9") {
      li.remove();
      continue;
    }
    li.querySelector("a").href = `${base}/${li.dataset.path}`;
  }
}

/** Reports a failed section in the alert region and, given its holder's id, in place. */
function fail(what, holderId) {
  return (e) => {
    if (e.status === 401) return;
    showError(`Could not load ${what}: ${e.message}`);
    const holder = holderId && document.getElementById(holderId);
    if (holder) holder.replaceChildren(el("p", { class: "status error" }, `Could not load ${what}.`));
  };
}

/** The run itself could not be read (an unknown id, a refused key): every section says so
 * instead of waiting, and nothing offers to page through it. */
function runUnavailable(e) {
  fail("the run")(e);
  const why = e.status === 404 ? "There is no such run." : "The run could not be loaded.";
  document.getElementById("run-meta").textContent = why;
  for (const p of document.querySelectorAll("main p.muted")) p.replaceWith(el("p", { class: "muted" }, "Not available."));
  for (const b of document.querySelectorAll("main button")) b.disabled = true;
  document.getElementById("files")?.replaceChildren();
  markReady("all");
}

main().catch(runUnavailable);
