#!/usr/bin/env bash
# Property-based API testing with schemathesis against a live server built from this tree:
# every operation in /openapi.json is exercised with generated valid and invalid requests, and
# every response is checked (no 5xx, status codes, content types, headers and bodies as
# documented, invalid input rejected, valid input accepted, authentication enforced).
#
# Per-operation settings are in scripts/schemathesis.toml, hooks in scripts/schemathesis_hooks.py;
# the server's log is left in target/schemathesis-server.log.
#
# Usage: scripts/schemathesis.sh [SECONDS]      (time budget, default 60; env ST_MAX_TIME too;
#                                               ST_SEED picks another fixed seed;
#                                               ST_DATABASE_URL a database instead of SQLite)
# Needs python3 with venv; installs schemathesis from PyPI into ~/.cache/agentprof on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-${ST_MAX_TIME:-60}}
version=4.32.5
venv=${XDG_CACHE_HOME:-$HOME/.cache}/agentprof/schemathesis-$version
if [ ! -x "$venv/bin/st" ]; then
  echo "schemathesis.sh: installing schemathesis $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

cargo build --quiet --bin agentprof
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="schemathesis-$(date +%s)-write"
env ${ST_DATABASE_URL:+DATABASE_URL=$ST_DATABASE_URL} AGENTPROF_DATA_DIR=$data AGENTPROF_BIND=127.0.0.1:$port AGENTPROF_API_KEYS="write:$key" RUST_LOG=warn \
  target/debug/agentprof serve > "$data/server.log" 2>&1 &
server=$!
# errexit applies inside the trap too: a server that already exited must not skip the cleanup.
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; cp "$data/server.log" target/schemathesis-server.log 2>/dev/null || true; rm -rf "$data"' EXIT
ready=""
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "schemathesis.sh: the server did not become ready in 10 s; its log:" >&2
  cat "$data/server.log" >&2
  exit 1
fi

run_st() { # workers
  set +e
  PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks "$venv/bin/st" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
    --max-time "$budget" --workers "$1" --seed "${ST_SEED:-20261128}" \
    -H "Authorization: Bearer $key" --no-color 2>&1 | tee target/schemathesis-report.txt
  status=${PIPESTATUS[0]}
  set -e
}
run_st 2
# schemathesis's own generator can crash, which it reports as a "Runtime Error" with no failed
# check: a Python `SystemError` while it builds cases (seen once in 4.32.5), and a KeyError in
# hypothesis's cache of lambda sources, which its two worker threads race on (seen in 3 of 4 runs
# once the price schema gained float minimums). That says nothing about the API, so such a run is
# repeated with the same seed on one worker, which has no race; any failed check (❌) stands.
if [ "$status" -ne 0 ] && grep -q "Runtime Error" target/schemathesis-report.txt \
   && ! grep -q "❌" target/schemathesis-report.txt; then
  echo "schemathesis.sh: schemathesis itself crashed (no check failed); running it once more on one worker" >&2
  run_st 1
fi
echo "---- schemathesis summary ----"
grep -E "^ *(Selected|Tested):|generated|failures? in|Failures:|❌|✅" target/schemathesis-report.txt || true
# A 500, a panic or a stream that broke mid-response is a failure even where schemathesis did
# not notice it (503s under load are documented and not counted).
if grep -E "request failed|handler panicked|streaming requests failed|Status code: 500" "$data/server.log"; then
  echo "schemathesis.sh: the server logged internal errors (above)" >&2
  status=1
fi
exit "$status"
