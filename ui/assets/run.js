// /ui/runs/{id}: one run. Each section renders as soon as its data arrives; every chart is
// Observable Plot over the API's JSON, with the same data as a table for keyboards and readers.
import { api, countAxis, el, figure, formatNumber, markReady, num, plural, seconds, seg, showError, table, widthOf } from "/ui/assets/common.js";

const runId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const base = `/v1/runs/${encodeURIComponent(runId)}`;
const WINDOW = 20;
const KIND_COLOURS = { LLM: "#1f77b4", TOOL: "#2ca02c", FUNCTION: "#ff7f0e" };

/** Timeline state: which requests' calls are drawn, and the zoomed time range. */
const view = { offset: 0, domain: null, timeline: null, spikes: [] };

async function main() {
  const run = await api(base);
  renderHeader(run);
  renderFiles(run);
  // Everything is requested at once; each section renders when its data is in, and a section
  // whose data fails says so without taking the others down.
  const stats = api(`${base}/stats`);
  const timeline = loadTimeline(0);
  const profiling = api(`${base}/profiling`);
  const sections = [
    stats.then((s) => renderCards(run, s)).catch(fail("the statistics")),
    timeline.catch(fail("the timeline")),
    api(`${base}/forecast`).then(renderForecast).catch(fail("the forecast", "forecast")),
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
  markReady("all");
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
  if (run.warnings.length) {
    const list = el("ul", {}, run.warnings.map((w) => el("li", {}, w)));
    document.getElementById("run-meta").after(el("div", { class: "status", role: "note" }, el("strong", {}, "Warnings"), list));
  }
}

function card(term, ...value) {
  return [el("div", { class: "card" }, el("dt", {}, term), el("dd", {}, ...value))];
}

function interval(ci, src) {
  return ci
    ? el("small", {}, "95% interval ", num(ci[0], `${src}/0`), " – ", num(ci[1], `${src}/1`))
    : el("small", {}, "too few calls for a 95% interval");
}

function renderCards(run, stats) {
  const cards = document.getElementById("cards");
  const lat = stats.llm_latency.overall;
  const items = [
    ...card("Requests", num(run.request_count, "run:/request_count")),
    ...card("Wall time", num(run.summary.wall_time_seconds, "run:/summary/wall_time_seconds", "s")),
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
  cards.replaceChildren(...items);
}

// ---- The nested-call timeline -------------------------------------------------------------

async function loadTimeline(offset) {
  const tl = await api(`${base}/timeline?offset=${offset}&limit=${WINDOW}`);
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
  const long = per.flatMap((r) => [
    { request: r.request, part: "prompt", tokens: r.prompt },
    { request: r.request, part: "completion", tokens: r.completion },
  ]);
  const chart = Plot.plot({
    width: widthOf(holder),
    height: 240,
    x: { label: "request →", tickFormat: (d) => (Number.isInteger(d) ? String(d) : "") },
    y: { label: "↑ tokens", grid: true },
    color: { legend: true, domain: ["prompt", "completion"], range: ["#1f77b4", "#ff7f0e"] },
    marks: [Plot.rectY(long, { x1: (d) => d.request, x2: (d) => d.request + 1, y: "tokens", fill: "part", insetRight: per.length > 200 ? 0 : 1 }), Plot.ruleY([0])],
  });
  const data = table(
    null,
    [{ label: "Request", rowHeader: true }, { label: "Prompt", num: true }, { label: "Completion", num: true }, { label: "Total", num: true }],
    per.map((r, i) => [String(r.request), num(r.prompt, `timeline:/tokens_per_request/${i}/prompt`), num(r.completion, `timeline:/tokens_per_request/${i}/completion`), num(r.total, `timeline:/tokens_per_request/${i}/total`)]),
  );
  holder.replaceChildren(figure("tokens-figure", "Prompt and completion tokens of each request's LLM calls.", chart, data));
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
