#!/usr/bin/env bash
# A 10,000-request run (about 200k steps) on a release server over PostgreSQL: ingest in
# batches of 1,000 requests, each output cold and /metrics cached, the server's peak memory against its cache budget,
# and ingest latency into another run while the big run is deleted. Appends a report to
# target/bench/large_run.md.
#
# Usage: bench/large_run.sh [REQUESTS]     (default 10000)
# Needs PostgreSQL at $BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres,
# a user that may create databases) and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-10000}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/large_run; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example synth
# In batches of 1,000 requests: one POST of the whole run would exceed the default batch memory.
rm -f "$work"/batch-*.json.gz
for first in $(seq 0 1000 $((requests - 1))); do
  count=$(( requests - first < 1000 ? requests - first : 1000 ))
  target/release/examples/synth "$count" $((42 + first)) "$first" | gzip -1 -c > "$work/batch-$(printf %06d "$first").json.gz"
done
. bench/lib.sh
start_server_on_fresh_db "agentprof_large_$(date +%s)"
report=target/bench/large_run.md
{
  echo "## bench/large_run.sh $requests, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, cache budget 256 MiB (default)"
  echo
  python3 bench/large_run.py "http://127.0.0.1:$port" "$server" "$work"/batch-*.json.gz
  echo
} | tee -a "$report"
