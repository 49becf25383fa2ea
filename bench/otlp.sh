#!/usr/bin/env bash
# The OTLP receiver's throughput into PostgreSQL against the hardware floor, in one script on one
# machine (server, database and sender share its cores):
#   1. agentprof (release build) on a fresh PostgreSQL database; `loadtest otlp` posts EXPORTS
#      OTLP/protobuf exports of SPANS OpenInference spans each from CLIENTS concurrent clients
#      (a sender faster than the database gets 503 + Retry-After and resends, as exporters do);
#      then the same exports over OTLP/gRPC, then both again (HTTP, gRPC, HTTP, gRPC: side by
#      side in one run, each into a run of its own);
#   2. the floor: the steps those spans become, one JSON document per line, loaded with a plain
#      `COPY ... FROM STDIN` as jsonb rows into a bare table (no indexes, no constraints),
#      expressed in spans per second (two steps per span).
# Also samples the server's peak RSS while it receives.
#
# Usage: bench/otlp.sh [EXPORTS SPANS CLIENTS]   (default 100 512 2)
# Needs PostgreSQL at $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres,
# a user that may create databases) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
exports=${1:-100}; spans=${2:-512}; clients=${3:-2}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/otlp; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example loadtest
. bench/lib.sh
grpc_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AGENTPROF_OTLP_GRPC_BIND=127.0.0.1:$grpc_port
start_server_on_fresh_db "agentprof_bench_otlp_$(date +%s)"

( peak=0; while kill -0 "$server" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && { peak=$rss; echo "$peak" > "$work/peak_rss_kb"; }
    sleep 0.05; done ) &
sampler=$!

target/release/examples/loadtest --base "http://127.0.0.1:$port" otlp --exports "$exports" --spans "$spans" \
  --clients "$clients" --ndjson "$work/steps.ndjson" > "$work/otlp.json"
target/release/examples/loadtest --base "http://127.0.0.1:$port" otlp --exports "$exports" --spans "$spans" \
  --clients "$clients" --grpc "127.0.0.1:$grpc_port" > "$work/otlp_grpc.json"
target/release/examples/loadtest --base "http://127.0.0.1:$port" otlp --exports "$exports" --spans "$spans" \
  --clients "$clients" > "$work/otlp_2.json"
target/release/examples/loadtest --base "http://127.0.0.1:$port" otlp --exports "$exports" --spans "$spans" \
  --clients "$clients" --grpc "127.0.0.1:$grpc_port" > "$work/otlp_grpc_2.json"

best=$(copy_floor_seconds "$work/steps.ndjson")
steps=$(wc -l < "$work/steps.ndjson")
python3 - "$work/otlp.json" "$steps" "$best" "$(cat "$work/peak_rss_kb" 2>/dev/null || echo 0)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); steps, best, peak_kb = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
floor_spans = steps / 2 / best
l = r['export_latency']
print(f"OTLP: {r['exports']} exports x {r['spans_per_export']} spans, {r['clients']} clients: {r['spans']} spans "
      f"({r['steps_stored']} steps stored) in {r['seconds']:.2f} s = {r['spans_per_second']:.0f} spans/s "
      f"({r['megabytes_per_second']:.1f} MB/s protobuf), export p50 {l['p50_ms']:.0f} ms, p99 {l['p99_ms']:.0f} ms, "
      f"{r['busy_retries']} busy retries")
print(f"COPY floor: {steps} steps as jsonb in {best:.2f} s = {floor_spans:.0f} spans/s")
print(f"ratio (OTLP / COPY floor): {r['spans_per_second'] / floor_spans:.2f}")
print(f"server peak RSS while receiving: {peak_kb / 1024:.0f} MB")
PY
python3 - "$work" "$steps" "$best" <<'PY'
import json, sys
work, steps, best = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
floor_spans = steps / 2 / best
print("side by side, in the order run:")
for name in ("otlp", "otlp_grpc", "otlp_2", "otlp_grpc_2"):
    r = json.load(open(f"{work}/{name}.json")); l = r['export_latency']
    print(f"  {r['transport']:>4}: {r['spans_per_second']:.0f} spans/s ({r['spans_per_second'] / floor_spans:.2f} of the floor), "
          f"{r['steps_stored']} steps stored, export p50 {l['p50_ms']:.0f} ms, p99 {l['p99_ms']:.0f} ms, {r['busy_retries']} busy retries")
PY
