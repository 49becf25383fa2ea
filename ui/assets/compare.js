// /ui/compare?baseline=&candidate=: two runs side by side, per metric, from POST /v1/compare.
import { api, el, figure, markReady, num, seg, showError, table, widthOf } from "/ui/assets/common.js";

const params = new URLSearchParams(location.search);
const baseline = params.get("baseline") || "";
const candidate = params.get("candidate") || "";

async function main() {
  if (!baseline || !candidate) {
    document.getElementById("runs-compared").textContent = "Pick two runs on the runs page to compare them.";
    document.getElementById("metrics").replaceChildren(el("p", {}, el("a", { href: "/ui" }, "Go to the runs")));
    document.getElementById("scores").replaceChildren();
    markReady("all");
    return;
  }
  const [a, b, cmp] = await Promise.all([
    api(`/v1/runs/${encodeURIComponent(baseline)}`),
    api(`/v1/runs/${encodeURIComponent(candidate)}`),
    api("/v1/compare", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ baseline, candidate }),
    }),
  ]);
  document.title = `${a.name || a.id} vs ${b.name || b.id} · agentprof`;
  document.getElementById("runs-compared").replaceChildren(
    "Baseline ",
    el("a", { href: `/ui/runs/${a.id}` }, a.name || a.id),
    " (",
    num(a.request_count, "baseline:/request_count"),
    " requests) against candidate ",
    el("a", { href: `/ui/runs/${b.id}` }, b.name || b.id),
    " (",
    num(b.request_count, "candidate:/request_count"),
    " requests); ",
    cmp.paired ? `paired by ${cmp.pairing}.` : "unpaired (the runs do not hold the same requests).",
  );
  const metrics = Object.entries(cmp.metrics);
  const plain = metrics.filter(([k]) => !k.startsWith("score:"));
  const scores = metrics.filter(([k]) => k.startsWith("score:"));
  document.getElementById("metrics").replaceChildren(...metricsView(plain, "Metrics", "metrics-figure"));
  document
    .getElementById("scores")
    .replaceChildren(...(scores.length ? metricsView(scores, "Evaluator scores", "scores-figure") : [el("p", {}, "No evaluator scored both runs.")]));
  markReady("all");
}

/** A chart of each metric's difference with its interval, and the full table. */
function metricsView(metrics, title, id) {
  const src = (k, f) => `compare:/metrics/${seg(k)}/${f}`;
  const rows = metrics.map(([k, m]) => [
    k,
    m.unit,
    num(m.baseline.mean, src(k, "baseline/mean")),
    num(m.candidate.mean, src(k, "candidate/mean")),
    num(m.difference_of_means, src(k, "difference_of_means")),
    m.ci95 ? el("span", {}, num(m.ci95[0], src(k, "ci95/0")), " – ", num(m.ci95[1], src(k, "ci95/1"))) : "–",
    num(m.p_value, src(k, "p_value")),
    m.ci_holm ? el("span", {}, num(m.ci_holm[0], src(k, "ci_holm/0")), " – ", num(m.ci_holm[1], src(k, "ci_holm/1"))) : "–",
    num(m.p_value_holm, src(k, "p_value_holm")),
    el("span", { class: m.significant ? "sig-yes" : "sig-no" }, m.significant ? "yes" : "no"),
  ]);
  const t = table(
    `${title}: candidate minus baseline`,
    [
      { label: "Metric", rowHeader: true },
      { label: "Unit" },
      { label: "Baseline mean", num: true },
      { label: "Candidate mean", num: true },
      { label: "Difference", num: true },
      { label: "95% interval, alone", num: true },
      { label: "p, alone", num: true },
      { label: "Interval, Holm", num: true },
      { label: "p, Holm", num: true },
      { label: "Significant" },
    ],
    rows,
  );
  t.id = `${id}-table`;
  // Differences in their own units are not comparable across metrics; the chart shows each
  // relative to the baseline mean, where that is defined.
  const rel = metrics
    .filter(([, m]) => m.difference_of_means !== null && m.baseline.mean)
    .map(([k, m]) => ({
      metric: k,
      diff: (100 * m.difference_of_means) / Math.abs(m.baseline.mean),
      lo: m.ci_holm ? (100 * m.ci_holm[0]) / Math.abs(m.baseline.mean) : null,
      hi: m.ci_holm ? (100 * m.ci_holm[1]) / Math.abs(m.baseline.mean) : null,
      significant: m.significant ? "significant" : "not significant",
    }));
  const chart = rel.length
    ? Plot.plot({
        width: widthOf(document.querySelector("main"), 900),
        height: 50 + 32 * rel.length,
        marginLeft: 160,
        x: { label: "difference, % of the baseline mean →", grid: true },
        y: { label: null },
        color: { legend: true, domain: ["significant", "not significant"], range: ["#b42318", "#57606a"] },
        marks: [
          Plot.ruleX([0]),
          Plot.link(rel.filter((d) => d.lo !== null), { x1: "lo", x2: "hi", y1: "metric", y2: "metric", stroke: "significant", strokeWidth: 2 }),
          Plot.dot(rel, { x: "diff", y: "metric", fill: "significant", r: 4 }),
        ],
      })
    : null;
  return [chart ? figure(id, `${title}: each difference with its interval at Holm's level (the one that decides significance), relative to the baseline mean.`, chart, null) : el("span"), t];
}

main().catch((e) => {
  if (e.status !== 401) showError(`Could not compare the runs: ${e.message}`);
});
