#!/usr/bin/env bash
# Regenerates the conformance cases in tests/fixtures/cases/ with the REAL reference (aiqtoolkit 1.1.0).
# Needs the oracle venv /tmp/aiq (see /work/shared/conformance/README.md). Usage:
#   scripts/make_conformance_cases.sh [case_name ...]    (default: all)
set -euo pipefail
ORACLE=/work/shared/conformance/oracle
PY=/tmp/aiq/bin/python
REL=../../../main/tests/fixtures/cases          # cases dir, relative to $ORACLE
GZ=262144
cd "$ORACLE"

make_case() {  # name "gen args" "oracle args" [config-json]
  local name=$1 gen=$2 orc=$3 cfg=${4:-}
  local C=$REL/$name
  rm -rf "$C"; mkdir -p "$C"
  local cmds=$C/commands.txt
  echo "# run from $ORACLE (paths are relative to it)" > "$cmds"
  if [ -n "$cfg" ]; then
    printf '%s\n' "$cfg" > "$C/config.json"
    orc=${orc//@CFG@/$C/config.json}
    echo "# config.json written by scripts/make_conformance_cases.sh" >> "$cmds"
  fi
  local g="$PY gen_traces.py $gen --out $C/input.json"
  echo "$g" >> "$cmds"; eval "$g"
  local input=$C/input.json
  if [ "$(stat -c %s "$input")" -gt $GZ ]; then
    echo "gzip -n -9 $input" >> "$cmds"; gzip -n -9 "$input"; input=$input.gz
  fi
  local o="$PY run_oracle.py $input --out-dir $C/expected --gzip-over $GZ $orc"
  echo "$o" >> "$cmds"
  local t0 t1; t0=$(date +%s.%N)
  /usr/bin/time -f '%e s wall, %M KiB maxrss' -o "$C/.time" bash -c "$o"
  t1=$(date +%s.%N)
  local fitted; fitted=$($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['fitted_model_written'])" "$C/expected/oracle_meta.json")
  local rmlist="$C/expected/gantt_chart.png $C/expected/fitted_model.pkl"
  if [ "$fitted" = "True" ]; then rmlist="$rmlist $C/expected/oracle_log.txt"; fi
  echo "rm -f $rmlist" >> "$cmds"; rm -f $rmlist
  echo "# oracle wall time (run_oracle.py, /usr/bin/time): $(cat "$C/.time")" >> "$cmds"
  [ "$fitted" = "True" ] || echo "# fitted_model_written=false (oracle_log.txt kept: it says why)" >> "$cmds"
  rm -f "$C/.time"
  echo "== $name done: $(cat "$cmds" | tail -1)"
}

CFG6='{"prompt_caching_prefixes": {"enable": true, "min_frequency": 0.2}, "concurrency_spike_analysis": {"enable": true, "spike_threshold": 2}, "csv_exclude_io_text": true}'

ALL=("$@")
sel() { local n=$1; [ ${#ALL[@]} -eq 0 ] && return 0; for x in "${ALL[@]}"; do [ "$x" = "$n" ] && return 0; done; return 1; }

sel edge_8            && make_case edge_8            "--requests 8 --seed 11 --edge" ""
sel chat_6            && make_case chat_6            "--requests 6 --seed 12 --chat-inputs" ""
sel eval_default_10   && make_case eval_default_10   "--requests 10 --seed 13 --format eval" ""
sel single_plain_1    && make_case single_plain_1    "--requests 1 --seed 14" ""
sel large_500         && make_case large_500         "--requests 500 --seed 15 --lean" ""
sel config_variants_12 && make_case config_variants_12 "--requests 12 --seed 16 --concurrency 3" "--config @CFG@ --prefix-min-support 0.5" "$CFG6"
sel sequential_20     && make_case sequential_20     "--requests 20 --seed 17 --concurrency 1" ""
sel busy_40           && make_case busy_40           "--requests 40 --seed 18 --concurrency 32" ""
sel edge_eval_all_9   && make_case edge_eval_all_9   "--requests 9 --seed 19 --edge --format eval --eval-steps all" ""

if sel config_variants_12 && [ -d $REL/config_variants_12 ]; then
  $PY - "$REL/config_variants_12" <<'PYEOF'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
cfg = json.loads((d / "config.json").read_text())
cfg["prefix_span_analysis"] = {"min_support": 0.5}
(d / "agentprof_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
PYEOF
fi
