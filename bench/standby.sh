#!/usr/bin/env bash
# Reads from a streaming standby under sustained ingest, on this machine:
#   - a throwaway primary and hot standby (initdb, pg_basebackup -R) on free ports;
#   - server A (release build) with --read-database-url at the standby, server B on the primary
#     alone, both on the same database;
#   - `loadtest ingest` posts BATCHES batches of 100 requests through A while a reader asks both
#     servers, in turn, for the run list and for a small run's /stats after a fresh write to it
#     (so neither is served from a cache), and a sampler reads the standby's replay lag from the
#     primary's pg_stat_replication every 0.5 s.
# Prints ingest steps/s, the lag's p50/p99/max (bytes and seconds), the read latencies of A and B
# side by side, and how A's reads were routed (agentprof_reads_total).
#
# Usage: bench/standby.sh [BATCHES]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-200}
work=$(mktemp -d); out=target/bench/standby; mkdir -p "$out"
cargo build --release --quiet --bin agentprof --example loadtest
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg=(); if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as_pg=(runuser -u postgres --); fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pp=$(free_port); sp=$(free_port); pa=$(free_port); pb=$(free_port)
cleanup() {
  kill "${sampler:-}" "${reader:-}" "${srv_a:-}" "${srv_b:-}" 2>/dev/null || true
  for n in standby primary; do "${as_pg[@]}" "$bin/pg_ctl" -D "$work/$n" -m fast stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$bin/initdb" -D "$work/primary" -U postgres -A trust --no-sync >/dev/null
cat >> "$work/primary/postgresql.conf" <<EOF
port = $pp
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
wal_level = replica
max_wal_senders = 4
shared_buffers = 512MB
max_wal_size = 4GB
EOF
echo "host replication all 127.0.0.1/32 trust" >> "$work/primary/pg_hba.conf"
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
"${as_pg[@]}" "$bin/pg_basebackup" -h 127.0.0.1 -p "$pp" -U postgres -D "$work/standby" -R -X stream
echo "port = $sp" >> "$work/standby/postgresql.conf"
echo "hot_standby_feedback = on" >> "$work/standby/postgresql.conf"
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/standby" -l "$work/standby.log" -w start >/dev/null
primary=postgres://postgres@127.0.0.1:$pp/postgres
standby=postgres://postgres@127.0.0.1:$sp/postgres

DATABASE_URL=$primary AGENTPROF_READ_DATABASE_URL=$standby AGENTPROF_BIND=127.0.0.1:$pa RUST_LOG=warn \
  target/release/agentprof serve > "$out/a.log" 2>&1 & srv_a=$!
DATABASE_URL=$primary AGENTPROF_BIND=127.0.0.1:$pb RUST_LOG=warn target/release/agentprof serve > "$out/b.log" 2>&1 & srv_b=$!
for p in $pa $pb; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

python3 - "$primary" "$out/lag.txt" <<'PY' & sampler=$!
import subprocess, sys, time
url, path = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    while True:
        r = subprocess.run(["psql", url, "-Atc",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) FROM pg_stat_replication"],
            capture_output=True, text=True)
        if r.stdout.strip():
            f.write(r.stdout.strip().replace("|", " ") + "\n"); f.flush()
        time.sleep(0.5)
PY

python3 - "$pa" "$pb" "$out/reads.json" <<'PY' & reader=$!
import json, signal, sys, time, urllib.request
pa, pb, path = sys.argv[1:]
def req(port, method, p, body=None):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{p}", data=body, method=method,
                               headers={"content-type": "application/json"})
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.read()
run = json.loads(req(pa, "POST", "/v1/runs", b'{"name":"probe"}'))["id"]
lat = {"A (standby)": {"list": [], "stats": []}, "B (primary)": {"list": [], "stats": []}}
def stop(*_):
    json.dump(lat, open(path, "w")); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
i = 0
while True:
    for label, port in (("A (standby)", pa), ("B (primary)", pb)):
        i += 1
        step = lambda et, ts: {"payload": {"event_type": et, "event_timestamp": ts, "UUID": f"u{i}", "name": "m"}}
        req(port, "POST", f"/v1/runs/{run}/steps",
            json.dumps([{"request_number": i, "intermediate_steps": [step("LLM_START", i), step("LLM_END", i + 0.5)]}]).encode())
        for kind, p in (("list", "/v1/runs?limit=50"), ("stats", f"/v1/runs/{run}/stats")):
            t = time.perf_counter(); req(port, "GET", p); lat[label][kind].append((time.perf_counter() - t) * 1000)
PY

target/release/examples/loadtest --base "http://127.0.0.1:$pa" ingest --batches "$batches" --requests 100 --clients 2 > "$out/ingest.json"
kill -TERM "$reader"; wait "$reader" || true
kill "$sampler" 2>/dev/null || true
curl -fs "http://127.0.0.1:$pa/metrics" | grep '^agentprof_reads_total' > "$out/routing.txt" || true
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
r = json.load(open(f"{out}/ingest.json"))
print(f"ingest through A: {r['steps_stored']} steps in {r['seconds']:.1f} s = {r['steps_per_second']:.0f} steps/s")
lag = [tuple(map(float, l.split())) for l in open(f"{out}/lag.txt") if l.strip()]
b = [x[0] for x in lag]; s = [x[1] for x in lag]
print(f"standby replay lag over {len(lag)} samples: bytes p50 {pct(b, .5)/1e3:.0f} kB, p99 {pct(b, .99)/1e6:.2f} MB, "
      f"max {max(b)/1e6:.2f} MB; seconds p50 {pct(s, .5)*1e3:.0f} ms, p99 {pct(s, .99)*1e3:.0f} ms, max {max(s)*1e3:.0f} ms")
lat = json.load(open(f"{out}/reads.json"))
for label, kinds in lat.items():
    print(f"{label}: " + "; ".join(f"{k} p50 {pct(v, .5):.1f} ms p99 {pct(v, .99):.1f} ms (n={len(v)})" for k, v in kinds.items()))
print("A's reads: " + ", ".join(l.strip() for l in open(f"{out}/routing.txt")))
PY
