#!/usr/bin/env bash
# Listing runs and reading one run as the database grows: a release server on a fresh PostgreSQL
# database holds one real run (RUN_REQUESTS synthetic requests, posted over HTTP); then
# EXTRA_RUNS runs are added in SQL, each a copy of the first STEPS_PER_RUN steps of that run.
# Before and after, it times GET /v1/runs?limit=50 and the streamed GET /v1/runs/{id}/requests
# (a read of the run's steps from the database on every call), each after three warm-up calls,
# and prints the plans of the queries behind them (EXPLAIN ANALYZE). Appends a report to target/bench/plans.md.
#
# Usage: bench/plans.sh [EXTRA_RUNS STEPS_PER_RUN RUN_REQUESTS]   (default 10000 200 100)
# Needs PostgreSQL at $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres,
# a user that may create databases) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-10000}; per_run=${2:-200}; run_requests=${3:-100}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/plans; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example synth
target/release/examples/synth "$run_requests" 11 > "$work/run.json"
. bench/lib.sh
start_server_on_fresh_db "agentprof_plans_$(date +%s)"
base="http://127.0.0.1:$port"
probe=$(curl -sf -X POST "$base/v1/runs" -H 'Content-Type: application/json' --data-binary @"$work/run.json" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

timings() { # label
  python3 - "$base" "$probe" "$1" <<'PY'
import statistics, sys, time, urllib.request
base, probe, label = sys.argv[1:4]
def median_ms(path, n):
    for _ in range(3):  # warm-up: the database's and the OS's caches
        urllib.request.urlopen(base + path).read()
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(base + path) as r:
            r.read()
        xs.append((time.perf_counter() - t) * 1000)
    return statistics.median(xs)
print(f"| {label} | {median_ms('/v1/runs?limit=50', 30):.1f} ms | {median_ms('/v1/runs?limit=50&name=zzz-none', 10):.1f} ms | {median_ms(f'/v1/runs/{probe}/requests', 10):.1f} ms |")
PY
}
explain() {
  psql "$url" -qAt -c "ANALYZE" >/dev/null
  echo '```'
  echo "-- GET /v1/runs?limit=50"
  psql "$url" -qAt -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT 51"
  echo "-- loading one run's steps (the frame behind every output; sorts off, as in the server's reads)"
  psql "$url" -qAt -c "SET enable_sort = off" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) SELECT request_number, seq, packed FROM steps WHERE run_id = '$probe' ORDER BY request_number"
  echo '```'
}

report=target/bench/plans.md
{
  echo "## bench/plans.sh $extra $per_run $run_requests, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
  echo
  echo "| database | list 50 runs (median) | list with a name search that matches nothing | stream one run's $(psql "$url" -qAt -c "SELECT step_count FROM runs WHERE id = '$probe'") steps |"
  echo "|---|---|---|---|"
  timings "1 run"
} | tee -a "$report"
before_plans=$(explain)

# The extra runs, in SQL: every column of steps copied from the probe run but the run id.
cols=$(psql "$url" -qAt -c "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'steps' AND column_name <> 'run_id'")
scols=$(psql "$url" -qAt -c "SELECT string_agg('s.' || column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'steps' AND column_name <> 'run_id'")
started=$(date +%s)
psql "$url" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO runs (id, name, created_at, updated_at, version, request_count, step_count, profiler_config, metadata, toolkit)
  SELECT gen_random_uuid(), convert_to('bulk ' || g, 'UTF8'), now() - g * interval '1 second', now(), 1, 1, $per_run, '{}', '{}', 'aiq-1.1'
  FROM generate_series(1, $extra) g;
INSERT INTO requests (run_id, request_number)
  SELECT r.id, q.request_number FROM runs r CROSS JOIN (SELECT DISTINCT request_number FROM (SELECT request_number FROM steps WHERE run_id = '$probe' ORDER BY request_number, seq LIMIT $per_run) x) q
  WHERE r.id <> '$probe';
INSERT INTO steps (run_id, $cols)
  SELECT r.id, $scols FROM runs r CROSS JOIN (SELECT * FROM steps WHERE run_id = '$probe' ORDER BY request_number, seq LIMIT $per_run) s
  WHERE r.id <> '$probe';
SQL
psql "$url" -q -c "VACUUM ANALYZE" -c "CHECKPOINT"   # settle the bulk insert before timing
steps_total=$(psql "$url" -qAt -c "SELECT count(*) FROM steps")
size=$(psql "$url" -qAt -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
{
  timings "$((extra + 1)) runs, $steps_total steps, $size (added in $(( $(date +%s) - started )) s)"
  echo
  echo "Plans with 1 run:"
  echo
  echo "$before_plans"
  echo
  echo "Plans with $((extra + 1)) runs:"
  echo
  explain
  echo
} | tee -a "$report"
