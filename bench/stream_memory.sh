#!/usr/bin/env bash
# Resident memory of the server while it streams GET /v1/runs/{id}/requests of a large run.
# Loads a run (default 1,000 requests, about 20,000 steps), restarts the server so that nothing
# of the ingest stays in its heap, then streams the file and reports the peak RSS growth.
#
# Usage: bench/stream_memory.sh [REQUESTS]    Needs PostgreSQL (BENCH_DATABASE_URL) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=agentprof_stream_$(date +%s)
url=${admin%/*}/$db
work=target/bench/stream; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example loadtest
psql "$admin" -qc "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_server() {
  DATABASE_URL=$url AGENTPROF_BIND=127.0.0.1:$port RUST_LOG=warn target/release/agentprof serve > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "bench/stream_memory.sh: the server did not become ready; its log:" >&2; cat "$work/server.log" >&2; exit 1
}
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; }
trap cleanup EXIT
start_server
batches=$(( (requests + 99) / 100 ))
run=$(target/release/examples/loadtest --base "http://127.0.0.1:$port" ingest --batches "$batches" --requests 100 --clients 2 \
      | python3 -c "import json,sys; print(json.load(sys.stdin)['run_id'])")
kill $server; wait $server 2>/dev/null || true
start_server
curl -fs "http://127.0.0.1:$port/v1/runs/$run" > /dev/null      # warm the pool and the code paths
base=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
start=$(date +%s.%N)
bytes=$(curl -fs "http://127.0.0.1:$port/v1/runs/$run/requests" | wc -c)
end=$(date +%s.%N)
peak=$(awk '/VmHWM/ {print $2}' /proc/$server/status)
python3 -c "
b, p, n, s = $base, $peak, $bytes, $end - $start
print(f'streamed {n/1e6:.1f} MB in {s:.2f} s; server RSS before {b/1024:.1f} MB, peak {p/1024:.1f} MB, growth {(p-b)/1024:.1f} MB')"
