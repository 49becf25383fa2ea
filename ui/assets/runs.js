// /ui: the runs, newest first, a page at a time, searchable by name; pick two to compare.
import { api, el, num, showError, markReady, table } from "/ui/assets/common.js";

const PAGE_SIZE = 25;
const params = new URLSearchParams(location.search);
const name = params.get("name") || "";
const cursor = params.get("cursor") || "";

document.getElementById("name").value = name;

async function main() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (name) query.set("name", name);
  if (cursor) query.set("cursor", cursor);
  const list = await api(`/v1/runs?${query}`);
  render(list);
  markReady("runs");
}

function render(list) {
  const holder = document.getElementById("runs");
  holder.replaceChildren();
  if (list.items.length === 0) {
    holder.append(el("p", {}, name ? `No run's name contains “${name}”.` : "No runs yet. POST steps to /v1/runs to create one."));
  } else {
    const columns = [
      { label: "Compare" },
      { label: "Name" },
      { label: "Created" },
      { label: "Toolkit" },
      { label: "Requests", num: true },
      { label: "Steps", num: true },
      { label: "Wall time (s)", num: true },
      { label: "LLM calls", num: true },
      { label: "Tokens", num: true },
    ];
    const rows = list.items.map((run, i) => {
      const src = (field) => `runs:/items/${i}/${field}`;
      const label = run.name || run.id;
      return [
        el("input", { type: "checkbox", class: "pick", value: run.id, "data-created": run.created_at, "aria-label": `Select ${label} for comparison` }),
        el("a", { href: `/ui/runs/${run.id}` }, label),
        el("time", { datetime: run.created_at }, run.created_at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC")),
        run.toolkit,
        num(run.request_count, src("request_count")),
        num(run.step_count, src("step_count")),
        num(run.summary.wall_time_seconds, src("summary/wall_time_seconds")),
        num(run.summary.llm_calls, src("summary/llm_calls")),
        num(run.summary.llm_tokens, src("summary/llm_tokens")),
      ];
    });
    const t = table(null, columns, rows);
    t.id = "runs-table";
    t.prepend(el("caption", {}, name ? `Runs whose name contains “${name}”, newest first` : "Runs, newest first"));
    holder.append(t);
  }
  const pages = document.getElementById("pages");
  pages.replaceChildren();
  if (cursor) {
    const first = new URLSearchParams(name ? { name } : {});
    pages.append(el("a", { href: `/ui${first.size ? `?${first}` : ""}` }, "First page"));
  }
  if (list.next_cursor) {
    const next = new URLSearchParams({ cursor: list.next_cursor });
    if (name) next.set("name", name);
    pages.append(el("a", { href: `/ui?${next}`, rel: "next" }, "Next page"));
  }
  wireCompare();
}

/** Two checked runs enable the compare button; the older one becomes the baseline. */
function wireCompare() {
  const form = document.getElementById("compare");
  const button = document.getElementById("compare-button");
  const hint = document.getElementById("compare-hint");
  const picked = () => [...document.querySelectorAll("input.pick:checked")];
  const update = () => {
    const n = picked().length;
    button.disabled = n !== 2;
    hint.textContent = n === 2 ? "Ready to compare." : `Select two runs to compare them (${n} selected); the older one is the baseline.`;
  };
  document.querySelectorAll("input.pick").forEach((box) => box.addEventListener("change", update));
  form.addEventListener("submit", (event) => {
    const two = picked();
    if (two.length !== 2) {
      event.preventDefault();
      return;
    }
    two.sort((a, b) => a.dataset.created.localeCompare(b.dataset.created));
    form.elements.baseline.value = two[0].value;
    form.elements.candidate.value = two[1].value;
  });
  update();
}

main().catch((e) => {
  document.getElementById("runs").replaceChildren();
  if (e.status !== 401) showError(`Could not load the runs: ${e.message}`);
});
