#!/usr/bin/env bash
# The NeMo Agent Toolkit plugin against the real toolkit, offline: installs nvidia-nat 1.9 with its
# LangChain and eval plugins, agentprof-client and a scripted chat model (scripts/natcheck) in a
# virtualenv, starts agentprof on SQLite, runs `nat eval` of the toolkit's ReAct agent with the
# `agentprof` exporter, then checks that the run holds every step the eval recorded, that its
# outputs equal what the eval's own profiler wrote, and that the evaluator scores arrived. Then the
# plugin's gate: the same eval again with `compare_with` naming that run passes, and one whose LLM
# answers 0.5 s slower makes `nat eval` exit 1, with the report beside its outputs.
#
# Usage: scripts/nat-plugin-check.sh        (NATCHECK_VENV=path reuses a venv; the first install
#                                             takes a few minutes)
# Not part of scripts/test: it downloads the toolkit. The README says when it last ran.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
venv=${NATCHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/agentprof/venv-natcheck}
if [ ! -x "$venv/bin/nat" ]; then
  echo "nat-plugin-check: installing nvidia-nat 1.9 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "nvidia-nat==1.9.0" "nvidia-nat-langchain==1.9.0" "nvidia-nat-eval==1.9.0" \
    "nvidia-nat-profiler==1.9.0"
fi
work=$(mktemp -d)
# Installed from copies so that no build files land in the repository.
cp -r clients/python "$work/client"; cp -r scripts/natcheck "$work/natcheck"
"$venv/bin/pip" install -q --no-deps "$work/client" "$work/natcheck"

cargo build --quiet --bin agentprof
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The scripted model priced, so that the runs have a cost and the gate compares it.
printf 'models:\n  scripted-react-1: {input: 2.5, output: 10.0, cached_input: 1.25}\n' > "$work/prices.yaml"
AGENTPROF_PRICES="$work/prices.yaml" AGENTPROF_DATA_DIR="$work/data" AGENTPROF_BIND=127.0.0.1:$port RUST_LOG=warn target/debug/agentprof serve \
  > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

cat > "$work/dataset.json" <<'JSON'
[{"id": "france", "question": "What is the capital of France?", "answer": "Paris"},
 {"id": "japan", "question": "What is the capital of Japan?", "answer": "Tokyo"},
 {"id": "peru", "question": "Tell me the capital of Peru.", "answer": "Lima"},
 {"id": "hello", "question": "Say hello.", "answer": "Hello."},
 {"id": "kenya", "question": "What is the capital of Kenya?", "answer": "Nairobi"},
 {"id": "mars", "question": "What is the capital of Mars?", "answer": "none"}]
JSON
cat > "$work/eval_config.yml" <<YAML
general:
  telemetry:
    logging:
      console: {_type: console, level: WARN}
    tracing:
      agentprof:
        _type: agentprof
        endpoint: http://127.0.0.1:$port
        run_name: nat-plugin-check
functions:
  capital_of: {_type: capital_of, delay_ms: 40}
llms:
  scripted: {_type: agentprof_scripted_llm, delay_ms: 80}
workflow:
  _type: react_agent
  tool_names: [capital_of]
  llm_name: scripted
  parse_agent_response_max_retries: 1
eval:
  general:
    max_concurrency: 2
    output: {dir: $work/eval_out, cleanup: true}
    dataset: {_type: json, file_path: $work/dataset.json}
    profiler:
      base_metrics: true
      token_uniqueness_forecast: true
      workflow_runtime_forecast: true
      compute_llm_metrics: true
      csv_exclude_io_text: false
      prompt_caching_prefixes: {enable: true, min_frequency: 0.1}
      bottleneck_analysis: {enable_simple_stack: true, enable_nested_stack: true}
      concurrency_spike_analysis: {enable: true, spike_threshold: 2}
      prediction_trie: {enable: true}
  evaluators:
    avg_llm_latency: {_type: avg_llm_latency}
    avg_num_llm_calls: {_type: avg_num_llm_calls}
    avg_tokens_per_llm_end: {_type: avg_tokens_per_llm_end}
YAML
# Every step type in workflow_output.json, so that the check can count what the eval recorded.
python3 - "$work/eval_config.yml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read().replace("    output: {dir:", "    output: {workflow_output_step_filter: [LLM_START, LLM_END, LLM_NEW_TOKEN, TOOL_START, TOOL_END, WORKFLOW_START, WORKFLOW_END, TASK_START, TASK_END, TTC_START, TTC_END, FUNCTION_START, FUNCTION_END, CUSTOM_START, CUSTOM_END, SPAN_START, SPAN_CHUNK, SPAN_END], dir:")
open(p, "w").write(s)
PY
(cd "$work" && "$venv/bin/nat" eval --config_file eval_config.yml) > "$work/eval.log" 2>&1 \
  || { echo "nat-plugin-check: nat eval failed; its log:" >&2; tail -40 "$work/eval.log" >&2; exit 1; }

"$venv/bin/python" - "http://127.0.0.1:$port" "$work/eval_out" <<'PY'
import json, pathlib, sys
import httpx
base, out = sys.argv[1], pathlib.Path(sys.argv[2])
runs = httpx.get(f"{base}/v1/runs").json()["items"]
run = next(r for r in runs if r["name"] == "nat-plugin-check")
rid = run["id"]
eval_items = json.loads((out / "workflow_output.json").read_text())
recorded = sum(len(i["intermediate_steps"] or []) for i in eval_items)
failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)
check(run["step_count"] == recorded, f"steps: {recorded} recorded by the eval, {run['step_count']} stored, in {run['request_count']} requests")
check(run["toolkit"] == "nat-1.9", f"dialect: {run['toolkit']} ({run['toolkit_source']})")
ours = httpx.get(f"{base}/v1/runs/{rid}/metrics").json()
theirs = json.loads((out / "inference_optimization.json").read_text())
check(json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True), "inference_optimization.json equals the eval's own")
for name, path in [("standardized_data_all.csv", "standardized.csv"), ("workflow_profiling_report.txt", "report")]:
    check(httpx.get(f"{base}/v1/runs/{rid}/{path}").text == (out / name).read_text(), f"{name} byte-equal to the eval's own")
ours = httpx.get(f"{base}/v1/runs/{rid}/prediction_trie").json()
theirs = json.loads((out / "prediction_trie.json").read_text())
ours.pop("generated_at", None); theirs.pop("generated_at", None)
check(ours == theirs, "prediction_trie.json equals the eval's own (but generated_at)")
meta = run["metadata"].get("eval", {})
items = meta.get("items", [])
scored = [i for i in items if i.get("scores") and i.get("request")]
check(len(scored) == len(eval_items), f"scores: {len(scored)} of {len(eval_items)} items with evaluator scores and their request; averages {meta.get('metric_scores')}")
window = meta.get("window") or {}
windowed = httpx.get(f"{base}/v1/runs/{rid}/metrics", params={"from": window.get("from"), "to": window.get("to")})
check(windowed.status_code == 200 and windowed.json() == httpx.get(f"{base}/v1/runs/{rid}/metrics").json(),
      f"the eval's window {window} holds all its requests")
sys.exit(1 if failures else 0)
PY

# The gate. Two more evals name the first run as their baseline (compare_with) and ask to fail
# (compare_fail): the same agent, and the agent with an LLM 0.5 s slower per call. Thresholds keep
# the scheduling jitter between two honest runs from counting; the evaluators here are latencies
# and counts, better lower.
python3 - "$work" <<'PY'
import pathlib, sys
work = pathlib.Path(sys.argv[1])
base = (work / "eval_config.yml").read_text()
for name, delay in (("same", 80), ("slower", 580)):
    text = base.replace("delay_ms: 80}", f"delay_ms: {delay}}}").replace(f"{work}/eval_out", f"{work}/eval_{name}")
    text = text.replace("run_name: nat-plugin-check", "\n        ".join([
        f"run_name: gate-{name}",
        "compare_with: nat-plugin-check",
        "compare_fail: true",
        "compare_max_regression: {llm_latency: 25, workflow_run_time: 25, tool_latency: 100}",
        "compare_lower_is_better: [avg_llm_latency, avg_num_llm_calls, avg_tokens_per_llm_end]",
    ]))
    (work / f"gate_{name}.yml").write_text(text)
PY
set +e
(cd "$work" && "$venv/bin/nat" eval --config_file gate_same.yml) > "$work/gate_same.log" 2>&1; same=$?
(cd "$work" && "$venv/bin/nat" eval --config_file gate_slower.yml) > "$work/gate_slower.log" 2>&1; slower=$?
set -e
python3 - "$work" "$same" "$slower" <<'PY'
import pathlib, sys
work, same, slower = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
failures = 0
def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += not ok
def report(name):
    path = work / f"eval_{name}" / "agentprof_compare.md"
    return path.read_text() if path.exists() else ""
same_md, slower_md = report("same"), report("slower")
check(same == 0, f"the same agent against the baseline: nat eval exits {same}")
check("no metric is worse" in same_md, "its agentprof_compare.md says no metric is worse: " + (same_md.splitlines() or ["(none)"])[0])
check("paired by dataset item" in same_md, "the two evals' requests are paired by dataset item")
check("| `cost` |" in same_md, "the report compares the cost (the server prices the scripted model)")
check(slower == 1, f"an LLM 0.5 s slower per call: nat eval exits {slower}")
check("llm_latency" in slower_md and "**worse**" in slower_md, "its report names llm_latency worse: " + (slower_md.splitlines() or ["(none)"])[0])
check((work / "eval_slower" / "workflow_output.json").exists(), "the failed eval still wrote its own outputs")
log = (work / "gate_slower.log").read_text()
check("agentprof compare" in log and "llm_latency" in log, "the verdict is printed in the eval's output")
if failures:
    for name in ("same", "slower"):
        print(f"--- gate_{name}.log (tail)"); print("\n".join((work / f"gate_{name}.log").read_text().splitlines()[-25:]))
sys.exit(1 if failures else 0)
PY

