#!/usr/bin/env bash
# Database bytes per stored step on PostgreSQL, and where they go. Each phase runs on a fresh
# database with a server of its own, as its own deployment would:
#   1. generated runs: `loadtest ingest` first posts WARMUP batches of 100 requests (about 20 steps
#      each), and waits for the server to train its first step dictionary on them
#      (docs/storage.md); then BATCHES more batches into one run are measured.
#   2. a real nat eval: the deployment's earlier traffic first, the four other realnat_* cases (the
#      same ReAct agent, other questions) posted until the server has trained a dictionary on
#      them; then the held-out realnat_concurrent_16 input, posted COPIES times, one run each, is
#      measured. COPIES stays under the next dictionary's due count, so no dictionary is trained
#      on the measured eval itself.
# Measured: the database's growth over the measured part (after VACUUM ANALYZE and a checkpoint)
# divided by the steps it stored. Then the split of the whole database: the steps table's heap,
# its TOAST, each index, the requests and rollups tables, and the average stored width of the
# step columns.
#
# Usage: bench/bytes.sh [BATCHES COPIES]   (default 50 40)
# AGENTPROF_BIN names another server binary, to measure an earlier schema side by side (it trains
# no dictionary, and the waits are skipped after 90 s).
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-50}; copies=${2:-40}; warmup=5
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/bytes; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example loadtest
. bench/lib.sh
export AGENTPROF_DICTIONARY_AFTER_STEPS=5000

settle() { psql "$url" -qc "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null; }
db_bytes() { psql "$url" -Atc "SELECT pg_database_size(current_database())"; }
steps_stored() { psql "$url" -Atc "SELECT count(*) FROM steps"; }
post() { curl -fsS -o /dev/null -H 'content-type: application/json' --data-binary "@$1" "http://127.0.0.1:$port/v1/runs"; }
# Waits (up to 90 s: the server looks once a minute) for the server's first trained dictionary.
await_dictionary() {
  for _ in $(seq 1 90); do
    [ "$(psql "$url" -Atc "SELECT count(*) FROM step_dictionaries" 2>/dev/null || echo 0)" -gt 0 ] && {
      echo "  dictionary trained on $(psql "$url" -Atc "SELECT trained_on FROM step_dictionaries ORDER BY id LIMIT 1") steps"; return; }
    sleep 1
  done
  echo "  no dictionary trained"
}
report() {
  local label=$1 b0=$2 s0=$3 b1 s1
  settle; b1=$(db_bytes); s1=$(steps_stored)
  python3 -c "import sys; b0,s0,b1,s1=map(int,sys.argv[1:]); print(f'$label: {s1-s0} steps, database grew {(b1-b0)/1e6:.1f} MB: {(b1-b0)/(s1-s0):.0f} bytes/step')" "$b0" "$s0" "$b1" "$s1"
  echo "  where the bytes go (whole database, $s1 steps):"
  psql "$url" -At -F '|' <<'SQL' | awk -F '|' -v steps="$s1" '{ printf "    %-28s %10.1f MB %7.0f bytes/step\n", $1, $2 / 1e6, $2 / steps }'
SELECT 'steps heap', pg_relation_size('steps')
UNION ALL SELECT 'steps TOAST', COALESCE(pg_total_relation_size(reltoastrelid), 0) FROM pg_class WHERE relname = 'steps'
UNION ALL SELECT 'index ' || indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index WHERE indrelid = 'steps'::regclass
UNION ALL SELECT 'requests (with indexes)', pg_total_relation_size('requests')
UNION ALL SELECT 'rollups (with indexes)', pg_total_relation_size('rollups')
UNION ALL SELECT 'everything else', pg_database_size(current_database()) - pg_total_relation_size('steps')
  - pg_total_relation_size('requests') - pg_total_relation_size('rollups');
SQL
  echo "  average stored width of the step columns in use (bytes, pg_column_size):"
  cols=$(psql "$url" -Atc "SELECT string_agg(format('avg(pg_column_size(%I))::numeric(10,1) AS %I', attname, attname), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'steps'::regclass AND attnum > 0 AND NOT attisdropped")
  psql "$url" -x -c "SELECT $cols FROM steps" | sed -n '2,$p' | grep -v '| *$' | sed 's/^/    /'
}

(
  start_server_on_fresh_db "agentprof_bytes_gen_$(date +%s)"
  target/release/examples/loadtest --base "http://127.0.0.1:$port" ingest --batches "$warmup" --requests 100 \
    --clients 2 > "$work/warmup.json"
  await_dictionary
  settle; b0=$(db_bytes); s0=$(steps_stored)
  target/release/examples/loadtest --base "http://127.0.0.1:$port" ingest --batches "$batches" --requests 100 \
    --clients 2 > "$work/ingest.json"
  report "generated runs" "$b0" "$s0"
)

(
  start_server_on_fresh_db "agentprof_bytes_nat_$(date +%s)"
  for case in realnat_react_12 realnat_tools_10 realnat_direct_8 realnat_default_filter_10 realnat_concurrent_16; do
    gunzip -c "tests/fixtures/cases/$case/input.json.gz" 2>/dev/null > "$work/$case.json" \
      || cp "tests/fixtures/cases/$case/input.json" "$work/$case.json"
  done
  for _ in 1 2 3 4; do
    for case in realnat_react_12 realnat_tools_10 realnat_direct_8 realnat_default_filter_10; do post "$work/$case.json"; done
  done
  await_dictionary
  settle; b0=$(db_bytes); s0=$(steps_stored)
  for _ in $(seq 1 "$copies"); do post "$work/realnat_concurrent_16.json"; done
  report "real nat eval (realnat_concurrent_16 x $copies, held out)" "$b0" "$s0"
)
