#!/usr/bin/env bash
# Live runs at scale, on PostgreSQL with release builds (one machine: server, database, senders
# and browser share its cores):
#   1. a run of REQUESTS synthetic requests (about 20 steps each; 100000 is about 2 million
#      steps) made by examples/windows.rs, then its whole /series?step=60 five times (the first
#      cold), PostgreSQL's plan for it, and the dashboard's run page in headless Chromium
#      (bench/live_ui.py: time until every section is drawn, failed panels);
#   2. a live service: OTLP exports at 1,000 steps a second with span times of now for
#      LIVE_SECONDS (examples/loadtest.rs `live`); at two thirds of it the run's retention is
#      set to 10 minutes, so the sweep (every 10 s here) deletes its oldest traffic while the
#      exports go on. Export latency per minute and around the sweep, and the server's peak RSS.
#
# Usage: bench/live.sh [REQUESTS LIVE_SECONDS]   (default 100000 1800; 0 skips a part)
# Reports in target/bench/live/. Needs PostgreSQL at $BENCH_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres, a user that may create databases), psql, Chromium
# and the Playwright venv scripts/test makes (~/.cache/agentprof/uitest).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}; live_seconds=${2:-1800}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/live; mkdir -p "$work"
venv=${XDG_CACHE_HOME:-$HOME/.cache}/agentprof/uitest
cargo build --release --quiet --bin agentprof --example windows --example loadtest
. bench/lib.sh
export AGENTPROF_MAX_ANALYSIS_MEMORY=${AGENTPROF_MAX_ANALYSIS_MEMORY:-512MiB}
export AGENTPROF_MAX_BODY_BYTES=$((256 * 1024 * 1024))
export AGENTPROF_RETENTION_SWEEP_SECS=${AGENTPROF_RETENTION_SWEEP_SECS:-10}
start_server_on_fresh_db "agentprof_live_$(date +%s)"
base="http://127.0.0.1:$port"
echo "bench/live.sh: $(nproc) cores, analysis budget $AGENTPROF_MAX_ANALYSIS_MEMORY, sweep every ${AGENTPROF_RETENTION_SWEEP_SECS} s"

if [ "$requests" -gt 0 ]; then
  target/release/examples/windows --base "$base" --server-pid "$server" --requests "$requests" \
    --report "$work/run.json" --ingest-only
  run=$(python3 -c "import json; print(json.load(open('$work/run.json'))['run_id'])")
  {
    echo "## /series?step=60 over the whole run"
    curl -sf "$base/v1/runs/$run" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("run: %s requests, %s steps, %s LLM calls" % (r["request_count"], r["step_count"], r["summary"]["llm_calls"]))'
    for i in 1 2 3 4 5; do
      curl -sf -o "$work/series.json" -w "request $i: %{time_total} s, %{size_download} bytes\n" "$base/v1/runs/$run/series?step=60"
    done
    python3 -c "
import json; s = json.load(open('$work/series.json'))
print(f'{len(s[\"buckets\"])} buckets; totals: requests {sum(b[\"requests\"] for b in s[\"buckets\"])}, LLM calls {sum(b[\"llm_calls\"] for b in s[\"buckets\"])}')"
    echo
    echo "PostgreSQL's plan for the rollup rows of the whole run:"
    psql "$url" -At -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT minute, kind, name, count, prompt_tokens, completion_tokens, cached_tokens, latency FROM rollups WHERE run_id = '$run' AND minute >= 0 AND minute < 100000000 ORDER BY minute"
    echo
    echo "## The dashboard's run page (headless Chromium)"
    "$venv/bin/python" bench/live_ui.py "$base" "$run" 3
    echo
    echo "server RSS after: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$server/status), peak $(awk '/VmHWM/ {print $2 / 1024 " MB"}' /proc/$server/status)"
  } | tee "$work/big_run.md"
fi

if [ "$live_seconds" -gt 0 ]; then
  target/release/examples/loadtest --base "$base" live --seconds "$live_seconds" \
    --sweep-at $((live_seconds * 2 / 3)) --retention 600 --server-pid "$server" > "$work/live.json"
  python3 - "$work/live.json" <<'PY' | tee "$work/live.md"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"## A live service: {r['spans_per_second'] * 2} steps/s over OTLP for {r['seconds']:.0f} s")
print(f"exports skipped because 16 were in flight: {r['exports_skipped_behind']}; busy retries: {r['busy_retries']}")
print(f"retention of {r['retention_seconds']} s set at {r['retention_set_at']:.0f} s; server peak RSS {r['server_peak_rss_mb']:.0f} MB")
for k in ("latency_before_sweep_ms", "latency_after_sweep_ms", "latency_overall_ms"):
    print(f"{k}: {r[k]}")
print("| minute | exports | p50 ms | p99 ms |")
print("|---|---|---|---|")
for m in r["per_minute"]:
    l = m["latency_ms"]
    print(f"| {m['minute']} | {m['exports']} | {l.get('p50_ms')} | {l.get('p99_ms')} |")
print(f"run after: {r['run_after']}")
PY
fi
