#!/usr/bin/env bash
# The hostile-load check (examples/hostile.rs) against a release build with default limits on
# the embedded SQLite store: connection flood, gzip bomb, nested calls, 16 concurrent 48 MB
# batches, idle memory afterwards. Exits non-zero when a bound is broken; CI runs it.
#
# Usage: bench/hostile.sh      (report in target/bench/hostile/report.json; about two minutes)
#        ALLOCATOR=system bench/hostile.sh   (the binary without mimalloc, for comparison; the
#                                              report goes to target/bench/hostile-system/)
set -euo pipefail
cd "$(dirname "$0")/.."
features=(); work=target/bench/hostile
if [ "${ALLOCATOR:-mimalloc}" = system ]; then
  features=(--no-default-features --features openapi); work=target/bench/hostile-system
fi
rm -rf "$work"; mkdir -p "$work/data"
cargo build --release --quiet --example hostile
cargo build --release --quiet --bin agentprof "${features[@]}"
cp target/release/agentprof "$work/agentprof"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AGENTPROF_DATA_DIR=$work/data AGENTPROF_BIND=127.0.0.1:$port RUST_LOG=warn \
  "$work/agentprof" serve > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { ready=1; break; }; sleep 0.1; done
[ -n "$ready" ] || { echo "bench/hostile.sh: the server did not become ready; its log:" >&2; cat "$work/server.log" >&2; exit 1; }
status=0
target/release/examples/hostile --base "http://127.0.0.1:$port" --server-pid "$server" \
  --report "$work/report.json" --data-dir "$work/data" > /dev/null || status=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "bench/hostile.sh: the server died; its log:" >&2; tail -n 50 "$work/server.log" >&2; exit 1
fi
if grep -E "panicked|request failed" "$work/server.log"; then
  echo "bench/hostile.sh: the server logged internal errors (above)" >&2; status=1
fi
exit "$status"
