# Shared by bench/ingest.sh and bench/otlp.sh (sourced, not run).

# Starts a release server on a fresh PostgreSQL database `$1` (a name) and sets `port`, `url`
# and `server`; the EXIT trap stops it and drops the database (unless BENCH_KEEP_DB is set, to look
# at plans on it afterwards). Needs `admin` (a PostgreSQL URL
# of a user that may create databases) and `work` (a folder for the server's log).
# AGENTPROF_BIN names another server binary (default target/release/agentprof), to run the same
# script against an earlier build side by side.
start_server_on_fresh_db() {
  local db=$1
  url=${admin%/*}/$db
  psql "$admin" -qc "CREATE DATABASE $db"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  DATABASE_URL=$url AGENTPROF_BIND=127.0.0.1:$port RUST_LOG=warn "${AGENTPROF_BIN:-target/release/agentprof}" serve > "$work/server.log" 2>&1 &
  server=$!
  bench_db=$db
  trap 'bench_cleanup' EXIT
  local ready=""
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { ready=1; break; }; sleep 0.1; done
  [ -n "$ready" ] || { echo "$0: the server did not become ready; its log:" >&2; cat "$work/server.log" >&2; exit 1; }
}

bench_cleanup() {
  [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null || true
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  if [ -n "${BENCH_KEEP_DB:-}" ]; then
    echo "$0: kept the database $bench_db (BENCH_KEEP_DB)" >&2
  else
    psql "$admin" -qc "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)"
  fi
}

# The floor: loads NDJSON file `$1` with a plain COPY as jsonb rows into a bare table (no
# indexes, no constraints) of the database at `url`; prints the best of three times in seconds.
# CSV format with control characters as quote and delimiter, so that no byte of the JSON needs
# escaping.
copy_floor_seconds() {
  local file=$1 best="" start end t
  psql "$url" -qc "CREATE TABLE IF NOT EXISTS copy_floor (step jsonb)"
  for _ in 1 2 3; do
    psql "$url" -qc "TRUNCATE copy_floor"
    start=$(date +%s.%N)
    psql "$url" -qc "\\copy copy_floor (step) FROM '$file' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    end=$(date +%s.%N)
    t=$(python3 -c "print($end - $start)")
    best=$(python3 -c "print(min(float('${best:-inf}'), $t))")
  done
  echo "$best"
}
