#!/usr/bin/env bash
# HTTP ingest into PostgreSQL against the hardware floor, in one script on one machine:
#   1. agentprof (release build) on a fresh PostgreSQL database; `loadtest ingest` posts
#      BATCHES batches of REQUESTS requests from CLIENTS concurrent clients;
#   2. the floor: the same steps, one JSON document per line, loaded with a plain
#      `COPY ... FROM STDIN` as jsonb rows into a bare table (no indexes, no constraints).
# Prints both rates and their ratio, then runs the metrics scenario (cold and cached GET
# /metrics latency under concurrency, /requests streaming) on a 20,000-step run.
#
# Usage: bench/ingest.sh [BATCHES REQUESTS CLIENTS]   (default 10 100 2)
# Needs PostgreSQL at $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres,
# a user that may create databases) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-10}; requests=${2:-100}; clients=${3:-2}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/ingest; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example loadtest
. bench/lib.sh
start_server_on_fresh_db "agentprof_bench_$(date +%s)"

target/release/examples/loadtest --base "http://127.0.0.1:$port" ingest --batches "$batches" --requests "$requests" \
  --clients "$clients" --ndjson "$work/steps.ndjson" > "$work/ingest.json"
http_rate=$(python3 -c "import json; print(json.load(open('$work/ingest.json'))['steps_per_second'])")

# The floor.
best=$(copy_floor_seconds "$work/steps.ndjson")
steps=$(wc -l < "$work/steps.ndjson")
copy_rate=$(python3 -c "print($steps / $best)")
python3 - "$work/ingest.json" "$steps" "$best" "$copy_rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); steps, best, copy_rate = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"ingest: {r['batches']} batches x {r['requests_per_batch']} requests, {r['clients']} clients: "
      f"{r['steps_stored']} steps in {r['seconds']:.2f} s = {r['steps_per_second']:.0f} steps/s "
      f"({r['megabytes_per_second']:.1f} MB/s), batch p50 {r['batch_latency']['p50_ms']:.0f} ms, p99 {r['batch_latency']['p99_ms']:.0f} ms")
print(f"COPY floor: {steps} steps as jsonb in {best:.2f} s = {copy_rate:.0f} steps/s")
print(f"ratio (HTTP ingest / COPY floor): {r['steps_per_second'] / copy_rate:.2f}")
PY

target/release/examples/loadtest --base "http://127.0.0.1:$port" metrics --requests 1000 --clients 32 --seconds 10 > "$work/metrics.json"
python3 - "$work/metrics.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r['cached']
print(f"metrics: run of {r['steps']} steps; cold GET /metrics {r['cold_ms']:.0f} ms; cached under {r['clients']} clients: "
      f"p50 {c['p50_ms']:.2f} ms, p90 {c['p90_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms, max {c['max_ms']:.1f} ms, "
      f"{r['cached_requests_per_second']:.0f} req/s")
s = r['requests_stream']
print(f"/requests: {s['bytes']/1e6:.1f} MB streamed in {s['seconds']:.2f} s ({s['megabytes_per_second']:.0f} MB/s)")
PY
