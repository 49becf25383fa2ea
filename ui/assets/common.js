// Shared by the dashboard's pages: API access (with the key form on a 401), number formatting,
// and the building blocks of an accessible figure (a chart plus a table of its data).
//
// Every number the pages show from the API is rendered by `num`, which records where it came
// from in `data-src` ("<source>:<JSON pointer>"); the browser test reads those attributes back
// and compares each shown number with the API's.

/** Fetches JSON from the API with the dashboard's cookie; a 401 shows the key form. */
export async function api(path, options = {}) {
  const resp = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: { Accept: "application/json", ...(options.headers || {}) },
  });
  if (resp.status === 401) {
    showLogin();
    throw new ApiError("This server needs an API key.", 401);
  }
  if (!resp.ok) {
    let detail = `${resp.status} ${resp.statusText}`;
    let problem = null;
    try {
      problem = await resp.json();
      detail = problem.detail || problem.title || detail;
    } catch (_) {
      /* not a problem document */
    }
    throw new ApiError(detail, resp.status, problem);
  }
  return resp.json();
}

export class ApiError extends Error {
  /** `problem`: the problem+json body, when there was one (a 413's `memory.fits`, say). */
  constructor(message, status, problem = null) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

/** Reveals the page's key form, set to come back here. */
export function showLogin() {
  const login = document.getElementById("login");
  if (!login) return;
  login.hidden = false;
  const next = login.querySelector("input[name=next]");
  if (next) next.value = location.pathname + location.search;
  login.querySelector("input[name=key]")?.focus();
}

/** Shows an error in the page's alert region. */
export function showError(message) {
  const box = document.getElementById("errors");
  if (!box) return;
  box.hidden = false;
  box.append(el("p", {}, message));
}

/** `document.createElement` with attributes and children (strings become text, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** The text a number is shown as: integers in full, others to four significant digits. */
export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 1000) return v.toFixed(1);
  if (abs >= 1) return v.toFixed(3);
  if (abs >= 0.001) return v.toFixed(4);
  return v.toExponential(3);
}

/**
 * A number from the API as an element: `<data value>` holding the exact value, `data-src` naming
 * its source and JSON pointer, and a unit after it.
 */
export function num(value, src, unit = "") {
  const node = el("data", { value: value ?? "", "data-src": src }, formatNumber(value));
  return unit && value !== null && value !== undefined ? el("span", {}, node, ` ${unit}`) : node;
}

/** "1 call", "2 calls": a count and its noun. */
export function plural(n, one, many = `${one}s`) {
  return `${formatNumber(n)} ${n === 1 ? one : many}`;
}

/**
 * A count axis: integer ticks only (a count of 0.2 calls means nothing), at most about six of
 * them up to `max`.
 */
export function countAxis(label, max) {
  const step = Math.max(1, Math.ceil((Number.isFinite(max) ? max : 1) / 6));
  const ticks = [];
  for (let t = 0; t <= Math.max(max, 1); t += step) ticks.push(t);
  return { label, grid: true, ticks, tickFormat: (d) => (Number.isInteger(d) ? String(d) : "") };
}

/** A JSON pointer segment, escaped (RFC 6901). */
export function seg(s) {
  return String(s).replaceAll("~", "~0").replaceAll("/", "~1");
}

/** A table: `columns` are `{label, num?}`; rows hold cells (nodes or strings). */
export function table(caption, columns, rows) {
  return el(
    "table",
    {},
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    el(
      "tbody",
      {},
      rows.map((cells) =>
        el("tr", {}, cells.map((cell, i) => el(i === 0 && columns[0].rowHeader ? "th" : "td", {
          class: columns[i]?.num ? "num" : null,
          scope: i === 0 && columns[0].rowHeader ? "row" : null,
        }, cell))),
      ),
    ),
  );
}

/**
 * An accessible figure: a caption, the chart (an SVG from Plot, labelled by the caption), and
 * the same data as a table behind a disclosure, which is also the chart's text alternative.
 */
export function figure(id, caption, chart, dataTable, { interactive = false } = {}) {
  const capId = `${id}-caption`;
  // Plot wraps a chart that has a legend in a <figure> of its own: keep its parts, not the
  // nested figure.
  const body = chart && chart.tagName.toLowerCase() === "figure" ? el("div", { class: "plot" }, ...chart.childNodes) : chart;
  const svg = body && (body.tagName.toLowerCase() === "svg" ? body : [...body.children].filter((c) => c.tagName.toLowerCase() === "svg").pop());
  if (svg) {
    // An image's parts are hidden from assistive technology; a chart whose parts can be
    // focused is a group instead.
    svg.setAttribute("role", interactive ? "group" : "img");
    svg.setAttribute("aria-labelledby", capId);
  }
  return el(
    "figure",
    { id },
    el("figcaption", { id: capId }, caption),
    body,
    dataTable ? el("details", { class: "data" }, el("summary", {}, "The data as a table"), el("div", { class: "scroll" }, dataTable)) : null,
  );
}

/** Seconds as shown in the dashboard's prose. */
export function seconds(v) {
  return v === null || v === undefined ? "–" : `${formatNumber(v)} s`;
}

/** Marks a stage of the page as rendered (the browser test and its timings wait for these). */
export function markReady(stage) {
  performance.mark(`agentprof:${stage}`);
  const done = (document.body.dataset.ready || "").split(" ").filter(Boolean);
  if (done.includes(stage)) return;
  done.push(stage);
  document.body.dataset.ready = done.join(" ");
}

/** The chart width that fits the element. */
export function widthOf(node, fallback = 900) {
  const w = node.getBoundingClientRect().width;
  return Math.max(320, Math.floor(w || fallback));
}
