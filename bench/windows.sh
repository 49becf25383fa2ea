#!/usr/bin/env bash
# Windows of a long run on PostgreSQL (examples/windows.rs): REQUESTS synthetic requests of live-like
# traffic (about 80 a second), then the whole run's /profiling and /metrics under a 512 MiB analysis
# budget, the last five minutes' outputs cold, eight windows at once, the server's peak RSS, and
# PostgreSQL's plan for reading a window's steps.
#
# Usage: bench/windows.sh [REQUESTS]   (default 100000: about 2 million steps; report in
#                                       target/bench/windows/report.json)
# Needs PostgreSQL at $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres, a
# user that may create databases) and psql. AGENTPROF_BIN runs another server build.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/windows; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example windows
. bench/lib.sh
export AGENTPROF_MAX_ANALYSIS_MEMORY=${AGENTPROF_MAX_ANALYSIS_MEMORY:-512MiB}
export AGENTPROF_MAX_BODY_BYTES=$((256 * 1024 * 1024))
start_server_on_fresh_db "agentprof_windows_$(date +%s)"
echo "bench/windows.sh: $requests requests, analysis budget $AGENTPROF_MAX_ANALYSIS_MEMORY, $(nproc) cores"
target/release/examples/windows --base "http://127.0.0.1:$port" --server-pid "$server" \
  --requests "$requests" --report "$work/report.json"
run=$(python3 -c "import json; print(json.load(open('$work/report.json'))['run_id'])")
last=$(psql "$url" -Atc "SELECT max(started_at) FROM requests WHERE run_id = '$run'")
sql=$(python3 -c "import json; print(json.load(open('$work/report.json'))['window_sql'])")
echo "PostgreSQL's plan for the last five minutes' steps (the statement the server runs):"
psql "$url" -At <<SQL | tee "$work/plan.txt"
PREPARE w(uuid, float8, float8) AS $sql;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE w('$run', $last - 300, 'Infinity');
SQL
