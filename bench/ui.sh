#!/usr/bin/env bash
# The dashboard's run page for a big run, in headless Chromium: how long until it is usable (the
# summary and the timeline drawn) and until every section is, with the server's caches cold (a
# fresh copy of the run per visit) and warm. Appends a report to target/bench/ui.md.
#
# Usage: bench/ui.sh [REQUESTS] [VISITS]       (default: 1000 requests, 5 visits)
# Needs Chromium (apt-get install chromium) and Playwright for Python (the venv scripts/test
# makes at ~/.cache/agentprof/uitest).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}; visits=${2:-5}
venv=${XDG_CACHE_HOME:-$HOME/.cache}/agentprof/uitest
[ -x "$venv/bin/python" ] || { echo "bench/ui.sh: run scripts/test once to make $venv" >&2; exit 1; }
cargo build --release --quiet --bin agentprof --example synth
work=target/bench/ui; rm -rf "$work"; mkdir -p "$work"
target/release/examples/synth "$requests" 7 | gzip -c > "$work/run.json.gz"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AGENTPROF_DATA_DIR=$work AGENTPROF_BIND=127.0.0.1:$port RUST_LOG=warn target/release/agentprof serve > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
ids=()
for i in $(seq "$visits"); do
  ids+=("$(curl -sf -X POST "http://127.0.0.1:$port/v1/runs" -H 'Content-Type: application/json' \
            -H 'Content-Encoding: gzip' --data-binary @"$work/run.json.gz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done
steps=$(curl -sf "http://127.0.0.1:$port/v1/runs/${ids[0]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step_count"])')
report=target/bench/ui.md
{
  echo "## bench/ui.sh, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(chromium --version 2>/dev/null | head -n 1)"
  echo
  echo "Run page of a $requests-request run ($steps steps, SQLite), $visits visits each:"
  echo
  "$venv/bin/python" bench/ui_timing.py "http://127.0.0.1:$port" "${ids[@]}"
  echo
} | tee -a "$report"
