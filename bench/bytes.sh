#!/usr/bin/env bash
# Database bytes per stored step on PostgreSQL, and where they go.
#   1. generated runs: `loadtest ingest` posts BATCHES batches of 100 requests (about 20 steps
#      each) into one run;
#   2. a real nat eval: the realnat_concurrent_16 conformance input posted COPIES times, one run
#      each.
# After each phase: VACUUM ANALYZE and a checkpoint, then the database's growth divided by the
# steps stored. Then the split: the steps table's heap, its TOAST, each index, the rollups and
# requests tables, and the average stored width of the step columns.
#
# Usage: bench/bytes.sh [BATCHES COPIES]   (default 100 200)
# AGENTPROF_BIN names another server binary, to measure an earlier schema side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-100}; copies=${2:-200}
admin=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=target/bench/bytes; mkdir -p "$work"
cargo build --release --quiet --bin agentprof --example loadtest
. bench/lib.sh
start_server_on_fresh_db "agentprof_bytes_$(date +%s)"

settle() { psql "$url" -qc "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null; }
db_bytes() { psql "$url" -Atc "SELECT pg_database_size(current_database())"; }
steps_stored() { psql "$url" -Atc "SELECT count(*) FROM steps"; }

settle; b0=$(db_bytes); s0=$(steps_stored)
target/release/examples/loadtest --base "http://127.0.0.1:$port" ingest --batches "$batches" --requests 100 \
  --clients 2 > "$work/ingest.json"
settle; b1=$(db_bytes); s1=$(steps_stored)
gunzip -c tests/fixtures/cases/realnat_concurrent_16/input.json.gz 2>/dev/null > "$work/nat.json" \
  || cp tests/fixtures/cases/realnat_concurrent_16/input.json "$work/nat.json"
for _ in $(seq 1 "$copies"); do
  curl -fsS -o /dev/null -H 'content-type: application/json' --data-binary "@$work/nat.json" \
    "http://127.0.0.1:$port/v1/runs"
done
settle; b2=$(db_bytes); s2=$(steps_stored)

python3 - "$b0" "$s0" "$b1" "$s1" "$b2" "$s2" <<'PY'
import sys
b0, s0, b1, s1, b2, s2 = map(int, sys.argv[1:])
print(f"generated runs: {s1 - s0} steps, database grew {(b1 - b0) / 1e6:.1f} MB: {(b1 - b0) / (s1 - s0):.0f} bytes/step")
print(f"real nat eval (realnat_concurrent_16 x copies): {s2 - s1} steps, database grew {(b2 - b1) / 1e6:.1f} MB: "
      f"{(b2 - b1) / (s2 - s1):.0f} bytes/step")
PY
echo "where the bytes go (whole database, $s2 steps):"
psql "$url" -At -F '|' <<'SQL' | awk -F '|' -v steps="$s2" '{ printf "  %-28s %10.1f MB %7.0f bytes/step\n", $1, $2 / 1e6, $2 / steps }'
SELECT 'steps heap', pg_relation_size('steps')
UNION ALL SELECT 'steps TOAST', COALESCE(pg_total_relation_size(reltoastrelid), 0) FROM pg_class WHERE relname = 'steps'
UNION ALL SELECT 'index ' || indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index WHERE indrelid = 'steps'::regclass
UNION ALL SELECT 'requests (with indexes)', pg_total_relation_size('requests')
UNION ALL SELECT 'rollups (with indexes)', pg_total_relation_size('rollups')
UNION ALL SELECT 'everything else', pg_database_size(current_database()) - pg_total_relation_size('steps')
  - pg_total_relation_size('requests') - pg_total_relation_size('rollups');
SQL
echo "average stored width per step column (bytes, pg_column_size):"
cols=$(psql "$url" -Atc "SELECT string_agg(format('avg(pg_column_size(%I))::numeric(10,1) AS %I', attname, attname), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'steps'::regclass AND attnum > 0 AND NOT attisdropped")
psql "$url" -x -c "SELECT $cols FROM steps" | sed -n '2,$p' | sed 's/^/  /'
