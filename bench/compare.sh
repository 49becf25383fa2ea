#!/usr/bin/env bash
# Side by side: the reference profiler (aiqtoolkit 1.1.0's ProfilerRunner, through the
# conformance oracle) and `agentprof analyze`, on the same generated inputs, whole process each.
# Prints wall time and peak memory of both and the ratios; appends a report to
# target/bench/compare.md.
#
# Usage: bench/compare.sh [REQUESTS...]        (default: 100 1000)
# Needs the conformance oracle (AGENTPROF_ORACLE_DIR, the folder with gen_traces.py and
# run_oracle.py, as for scripts/make_conformance_cases.sh) and its venv (AIQ_VENV, default
# /tmp/aiq; created from the oracle's lock file when missing), hyperfine and GNU time
# (/usr/bin/time; Debian packages hyperfine and time).
set -euo pipefail
cd "$(dirname "$0")/.."
ORACLE_DIR=${AGENTPROF_ORACLE_DIR:?set AGENTPROF_ORACLE_DIR to the conformance oracle folder (gen_traces.py, run_oracle.py)}
AIQ_VENV=${AIQ_VENV:-/tmp/aiq}
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(100 1000)
[ -f "$ORACLE_DIR/run_oracle.py" ] || { echo "no oracle at $ORACLE_DIR (set AGENTPROF_ORACLE_DIR)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "compare.sh needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "compare.sh needs GNU time (apt-get install time)" >&2; exit 1; }
if [ ! -x "$AIQ_VENV/bin/python" ]; then
  echo "compare.sh: creating the reference venv in $AIQ_VENV (a few minutes)" >&2
  python3 -m venv "$AIQ_VENV" && "$AIQ_VENV/bin/pip" install -q -r "$ORACLE_DIR/requirements-aiq.lock.txt"
fi
cargo build --release --quiet --bin agentprof
bin=$PWD/target/release/agentprof
work=target/bench/compare; mkdir -p "$work"
report=target/bench/compare.md
{
  echo "## bench/compare.sh, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m)"
  echo
  echo "| requests | steps | reference wall | reference peak RSS | agentprof wall (mean ± sd) | agentprof peak RSS | speed-up | memory ratio |"
  echo "|---|---|---|---|---|---|---|---|"
} >> "$report"

peak() { # command... -> "seconds kilobytes"; a failing command stops the script
  if ! /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > "$work/peak.log" 2>&1; then
    echo "compare.sh: failed: $* (output in $work/peak.log)" >&2
    exit 1
  fi
  cat "$work/time.txt"
}

for n in "${sizes[@]}"; do
  input=$PWD/$work/r$n.json
  [ -f "$input" ] || "$AIQ_VENV/bin/python" "$ORACLE_DIR/gen_traces.py" --requests "$n" --seed 4242 --out "$input" > /dev/null
  steps=$(python3 -c "import json,sys; print(sum(len(r['intermediate_steps']) for r in json.load(open(sys.argv[1]))))" "$input")
  echo "== $n requests, $steps steps" >&2
  read -r ref_s ref_kb < <(peak "$AIQ_VENV/bin/python" "$ORACLE_DIR/run_oracle.py" "$input" --out-dir "$PWD/$work/ref$n")
  read -r _ ours_kb < <(peak "$bin" analyze "$input" --out "$PWD/$work/ours$n")
  hyperfine --warmup 1 --runs 10 --export-json "$work/hf$n.json" "$bin analyze $input --out $PWD/$work/ours$n" > /dev/null 2>&1
  read -r mean sd < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(r['mean'], r['stddev'])" "$work/hf$n.json")
  # Same numbers, or the comparison means nothing.
  python3 "$ORACLE_DIR/compare_json.py" "$work/ref$n/inference_optimization.json" "$work/ours$n/inference_optimization.json" > /dev/null
  line=$(python3 -c "
import sys
n, steps, rs, rkb, m, sd, okb = sys.argv[1:]
rs, rkb, m, sd, okb = float(rs), int(rkb), float(m), float(sd), int(okb)
print(f'| {n} | {steps} | {rs:.2f} s | {rkb/1024:.0f} MB | {m*1000:.1f} ± {sd*1000:.1f} ms | {okb/1024:.0f} MB | {rs/m:.0f}x | {rkb/okb:.1f}x |')
" "$n" "$steps" "$ref_s" "$ref_kb" "$mean" "$sd" "$ours_kb")
  echo "$line" | tee -a "$report"
done
echo >> "$report"
echo "report appended to $report" >&2
