#!/usr/bin/env bash
# The OTLP receiver's throughput into PostgreSQL against the hardware floor, in one script on one
# machine (server, database and sender share its cores):
#   1. agentprof (release build) on a fresh PostgreSQL database; `loadtest otlp` posts EXPORTS
#      OTLP/protobuf exports of SPANS OpenInference spans each from CLIENTS concurrent clients
#      (a sender faster than the database gets 503 + Retry-After and resends, as exporters do);
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
db=agentprof_bench_otlp_$(date +%s)
url=${admin%/*}/$db
work=target/bench/otlp; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example loadtest
psql "$admin" -qc "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL=$url AGENTPROF_BIND=127.0.0.1:$port RUST_LOG=warn target/release/agentprof serve > "$work/server.log" 2>&1 &
server=$!
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
ready=""
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { ready=1; break; }; sleep 0.1; done
[ -n "$ready" ] || { echo "bench/otlp.sh: the server did not become ready; its log:" >&2; cat "$work/server.log" >&2; exit 1; }

( peak=0; while kill -0 "$server" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && { peak=$rss; echo "$peak" > "$work/peak_rss_kb"; }
    sleep 0.05; done ) &
sampler=$!

target/release/examples/loadtest --base "http://127.0.0.1:$port" otlp --exports "$exports" --spans "$spans" \
  --clients "$clients" --ndjson "$work/steps.ndjson" > "$work/otlp.json"

psql "$url" -qc "CREATE TABLE copy_floor (step jsonb)"
best=""
for _ in 1 2 3; do
  psql "$url" -qc "TRUNCATE copy_floor"
  start=$(date +%s.%N)
  psql "$url" -qc "\\copy copy_floor (step) FROM '$work/steps.ndjson' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
  end=$(date +%s.%N)
  t=$(python3 -c "print($end - $start)")
  best=$(python3 -c "print(min(float('${best:-inf}'), $t))")
done
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
