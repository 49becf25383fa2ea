#!/usr/bin/env bash
# Regenerates the generated conformance cases in tests/fixtures/cases/ with the REAL references:
#   expected/      aiqtoolkit 1.1.0 (module aiq)
#   expected_nat/  nvidia-nat 1.9.0 (module nat) on the same input with the same profiler settings; prediction_trie
#                  on (run_oracle.py's default for nat), dynamo_metrics off (it needs a Prometheus server)
# The oracle (gen_traces.py, run_oracle.py) and how to build its two venvs are described in the shared conformance
# README ("Making more cases").
#
# Environment (required; nothing machine-specific is built in):
#   AGENTPROF_ORACLE_DIR  the conformance oracle/ folder, holding gen_traces.py and run_oracle.py
#   AIQ_PYTHON            python of a venv made from oracle/requirements-aiq.lock.txt (aiqtoolkit 1.1.0);
#                         not needed with --nat-only
#   NAT_PYTHON            python of a venv made from oracle/requirements-nat.lock.txt (nvidia-nat 1.9.0)
# Optional:
#   AGENTPROF_CASES_DIR   where the cases are written (default: tests/fixtures/cases of this repository)
#
# Usage (from anywhere; commands run from the repository root):
#   scripts/make_conformance_cases.sh [case_name ...]             remake input, expected/ and expected_nat/
#                                                                 (default: every case listed at the bottom)
#   scripts/make_conformance_cases.sh --nat-only [case_name ...]  keep input and expected/ as they are; only
#                                                                 (re)write expected_nat/ and its block at the end
#                                                                 of commands.txt
#
# Post-processing, the same for expected/ and expected_nat/: text files over 262144 bytes are gzipped by
# run_oracle.py (gzip -9, mtime 0, no name); gantt_chart.png and fitted_model.pkl are removed; oracle_log.txt is
# removed too unless the forecast model was not written (then it says why). expected_nat/ keeps oracle_meta.json,
# prediction_trie.json and profiler_results.json.
#
# Only the cases listed at the bottom are made here. small_5, medium_50, single_1, eval_all_12, nat_chat_8 and
# nat_eval_all_10 were copied from the shared conformance cases; the realnat_* cases are real `nat eval` runs made with
# the shared realnat/run.sh. Their commands.txt says how each was made.
set -euo pipefail

NAT_ONLY=0
if [ "${1:-}" = "--nat-only" ]; then NAT_ONLY=1; shift; fi
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac

# ------------------------------------------------------------------------------------------------ environment
need=(AGENTPROF_ORACLE_DIR NAT_PYTHON)
[ "$NAT_ONLY" = 1 ] || need+=(AIQ_PYTHON)
missing=()
for v in "${need[@]}"; do [ -n "${!v:-}" ] || missing+=("$v"); done
if [ ${#missing[@]} -gt 0 ]; then
  {
    echo "error: ${missing[*]} not set."
    echo "  AGENTPROF_ORACLE_DIR = the conformance oracle/ folder (gen_traces.py, run_oracle.py)"
    echo "  AIQ_PYTHON           = python of a venv made from oracle/requirements-aiq.lock.txt (aiqtoolkit 1.1.0)"
    echo "  NAT_PYTHON           = python of a venv made from oracle/requirements-nat.lock.txt (nvidia-nat 1.9.0)"
    echo "e.g. AGENTPROF_ORACLE_DIR=.../conformance/oracle AIQ_PYTHON=.../aiq/bin/python NAT_PYTHON=.../nat/bin/python $0"
  } >&2
  exit 2
fi
for f in gen_traces.py run_oracle.py; do
  [ -f "$AGENTPROF_ORACLE_DIR/$f" ] || { echo "error: AGENTPROF_ORACLE_DIR=$AGENTPROF_ORACLE_DIR has no $f" >&2; exit 2; }
done
AGENTPROF_ORACLE_DIR="$(cd "$AGENTPROF_ORACLE_DIR" && pwd)"
abs_py() {  # a python given as a path is made absolute (without resolving the venv's symlink); a bare name stays
  case "$1" in */*) echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" ;; *) echo "$1" ;; esac
}
check_py() {  # var module
  local p=${!1}
  "$p" -c "import $2" 2>/dev/null || { echo "error: $1=$p cannot import $2" >&2; exit 2; }
}
NAT_PYTHON="$(abs_py "$NAT_PYTHON")"; check_py NAT_PYTHON nat.plugins.profiler.profile_runner
if [ "$NAT_ONLY" = 0 ]; then AIQ_PYTHON="$(abs_py "$AIQ_PYTHON")"; check_py AIQ_PYTHON aiq.profiler.profile_runner; fi
export AGENTPROF_ORACLE_DIR NAT_PYTHON
[ "$NAT_ONLY" = 1 ] || export AIQ_PYTHON

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CASES="${AGENTPROF_CASES_DIR:-tests/fixtures/cases}"
mkdir -p "$CASES"
case "$CASES" in /*) ;; *) [ -d "$REPO/$CASES" ] || { echo "error: no $CASES below $REPO" >&2; exit 2; } ;; esac
GZ=262144
# the commands below are written to commands.txt as they are run, with the variables unexpanded
O='"$AGENTPROF_ORACLE_DIR"'

postprocess() {  # case_dir out_subdir python -> appends to commands.txt
  local C=$1 sub=$2 py=$3
  local fitted; fitted=$("$py" -c "import json,sys;print(json.load(open(sys.argv[1]))['fitted_model_written'])" "$C/$sub/oracle_meta.json")
  local rmlist="$C/$sub/gantt_chart.png $C/$sub/fitted_model.pkl"
  if [ "$fitted" = "True" ]; then rmlist="$rmlist $C/$sub/oracle_log.txt"; fi
  echo "rm -f $rmlist" >> "$C/commands.txt"; rm -f $rmlist
  echo "# oracle wall time (run_oracle.py, /usr/bin/time): $(cat "$C/.time")" >> "$C/commands.txt"
  [ "$fitted" = "True" ] || echo "# fitted_model_written=false (oracle_log.txt kept: it says why)" >> "$C/commands.txt"
  rm -f "$C/.time"
}

NAT_MARK="# ---- nvidia-nat 1.9.0 profiler -> expected_nat/"

nat_run() {  # name "oracle args": writes $C/expected_nat and appends its block to commands.txt
  local name=$1 orc=$2
  local C=$CASES/$name cmds=$CASES/$name/commands.txt input
  if [ -f "$C/input.json" ]; then input=$C/input.json; elif [ -f "$C/input.json.gz" ]; then input=$C/input.json.gz
  else echo "error: $C has no input.json[.gz]" >&2; exit 1; fi
  if [ -f "$C/config.json" ]; then orc=${orc//@CFG@/$C/config.json}; fi
  rm -rf "$C/expected_nat"
  if [ -f "$cmds" ] && grep -qxF "$NAT_MARK" "$cmds"; then   # drop an earlier nat block
    sed -i "\\|^$NAT_MARK\$|,\$d" "$cmds"
  fi
  {
    echo "$NAT_MARK"
    echo "# run from the repository root; NAT_PYTHON = a venv made from oracle/requirements-nat.lock.txt, AGENTPROF_ORACLE_DIR"
    echo "# = the conformance oracle/ folder (scripts/make_conformance_cases.sh). Same input and profiler settings as"
    echo "# expected/; prediction_trie on (the oracle's default for nat), dynamo_metrics off."
  } >> "$cmds"
  local o="\"\$NAT_PYTHON\" $O/run_oracle.py $input --package nat --out-dir $C/expected_nat --gzip-over $GZ${orc:+ $orc}"
  echo "$o" >> "$cmds"
  /usr/bin/time -f '%e s wall, %M KiB maxrss' -o "$C/.time" bash -c "$o"
  postprocess "$C" expected_nat "$NAT_PYTHON"
}

make_case() {  # name "gen args" "oracle args" [config-json]
  local name=$1 gen=$2 orc=$3 cfg=${4:-}
  local C=$CASES/$name
  if [ "$NAT_ONLY" = 1 ]; then nat_run "$name" "$orc"; echo "== $name expected_nat done: $(tail -1 "$C/commands.txt")"; return; fi
  rm -rf "$C"; mkdir -p "$C"
  local cmds=$C/commands.txt
  echo "# run from the repository root; AIQ_PYTHON, NAT_PYTHON and AGENTPROF_ORACLE_DIR as in scripts/make_conformance_cases.sh" > "$cmds"
  if [ -n "$cfg" ]; then
    printf '%s\n' "$cfg" > "$C/config.json"
    echo "# config.json written by scripts/make_conformance_cases.sh" >> "$cmds"
  fi
  local g="\"\$AIQ_PYTHON\" $O/gen_traces.py $gen --out $C/input.json"
  echo "$g" >> "$cmds"; eval "$g"
  local input=$C/input.json
  if [ "$(stat -c %s "$input")" -gt $GZ ]; then
    echo "gzip -n -9 $input" >> "$cmds"; gzip -n -9 "$input"; input=$input.gz
  fi
  local orc_aiq=${orc//@CFG@/$C/config.json}
  local o="\"\$AIQ_PYTHON\" $O/run_oracle.py $input --package aiq --out-dir $C/expected --gzip-over $GZ${orc_aiq:+ $orc_aiq}"
  echo "$o" >> "$cmds"
  /usr/bin/time -f '%e s wall, %M KiB maxrss' -o "$C/.time" bash -c "$o"
  postprocess "$C" expected "$AIQ_PYTHON"
  nat_run "$name" "$orc"
  echo "== $name done: $(tail -1 "$cmds")"
}

CFG6='{"prompt_caching_prefixes": {"enable": true, "min_frequency": 0.2}, "concurrency_spike_analysis": {"enable": true, "spike_threshold": 2}, "csv_exclude_io_text": true}'

ALL=("$@")
sel() { local n=$1; [ ${#ALL[@]} -eq 0 ] && return 0; for x in "${ALL[@]}"; do [ "$x" = "$n" ] && return 0; done; return 1; }
KNOWN=(edge_8 chat_6 eval_default_10 single_plain_1 large_500 config_variants_12 sequential_20 busy_40 edge_eval_all_9)
for x in "${ALL[@]}"; do
  ok=0; for k in "${KNOWN[@]}"; do [ "$x" = "$k" ] && ok=1; done
  [ "$ok" = 1 ] || { echo "error: $x is not made by this script (it knows: ${KNOWN[*]})" >&2; exit 2; }
done

sel edge_8            && make_case edge_8            "--requests 8 --seed 11 --edge" ""
sel chat_6            && make_case chat_6            "--requests 6 --seed 12 --chat-inputs" ""
sel eval_default_10   && make_case eval_default_10   "--requests 10 --seed 13 --format eval" ""
sel single_plain_1    && make_case single_plain_1    "--requests 1 --seed 14" ""
sel large_500         && make_case large_500         "--requests 500 --seed 15 --lean" ""
sel config_variants_12 && make_case config_variants_12 "--requests 12 --seed 16 --concurrency 3" "--config @CFG@ --prefix-min-support 0.5" "$CFG6"
sel sequential_20     && make_case sequential_20     "--requests 20 --seed 17 --concurrency 1" ""
sel busy_40           && make_case busy_40           "--requests 40 --seed 18 --concurrency 32" ""
sel edge_eval_all_9   && make_case edge_eval_all_9   "--requests 9 --seed 19 --edge --format eval --eval-steps all" ""

if [ "$NAT_ONLY" = 0 ] && sel config_variants_12 && [ -d "$CASES/config_variants_12" ]; then
  "$AIQ_PYTHON" - "$CASES/config_variants_12" <<'PYEOF'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
cfg = json.loads((d / "config.json").read_text())
cfg["prefix_span_analysis"] = {"min_support": 0.5}
(d / "agentprof_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
PYEOF
fi
