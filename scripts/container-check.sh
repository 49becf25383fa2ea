#!/usr/bin/env bash
# Release check of the container files: builds the Dockerfile, runs the image standalone on the
# embedded store, posts a conformance input and compares its metrics with the toolkit's, runs the
# image's HEALTHCHECK, then (unless --no-compose) brings docker-compose.yml up on PostgreSQL and
# does the same there.
#
# Usage: scripts/container-check.sh [--no-compose]
# Needs podman (or docker: CONTAINER=docker) and, for compose, podman-compose or docker compose;
# the base images (rust:*-slim-bookworm, gcr.io/distroless/cc-debian12, postgres:16-bookworm) must
# be pullable or present locally. podman builds in OCI format by default, which drops HEALTHCHECK:
# this script builds with --format docker.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${CONTAINER:-podman}
compose=1; [ "${1:-}" = "--no-compose" ] && compose=0
case_dir=tests/fixtures/cases/chat_6
key="write:check-$(date +%s)-$RANDOM"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
name=agentprof-check-$$
cleanup() {
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  if [ "$compose" = 1 ] && [ -n "${compose_cmd:-}" ]; then
    $compose_cmd -p "$name" down -v >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

build_args=()
[ "$engine" = podman ] && build_args+=(--format docker)
echo "== build"
"$engine" build "${build_args[@]}" -t agentprof:check .
echo "image: user=$("$engine" image inspect agentprof:check --format '{{.Config.User}}')" \
     "size=$("$engine" image inspect agentprof:check --format '{{.Size}}') bytes"

# Waits for /readyz, posts the case's input, saves its metrics as $2, checks them.
check_service() {
  local label=$1 out=$2
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.3
  done
  curl -fsS "http://127.0.0.1:$port/readyz"; echo
  local id
  id=$(curl -fsS -X POST "http://127.0.0.1:$port/v1/runs" -H "Authorization: Bearer ${key#write:}" \
         -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
         --data-binary @<(gzip -c < <(zcat -f "$case_dir"/input.json*)) | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -fsS "http://127.0.0.1:$port/v1/runs/$id/metrics" -H "Authorization: Bearer ${key#write:}" > "$out"
  python3 - "$out" "$case_dir/expected/inference_optimization.json" <<'PY'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
if ours != theirs:
    sys.exit(f"metrics differ from the toolkit's: {sys.argv[1]}")
PY
  echo "$label: metrics equal the toolkit's"
}

echo "== standalone, embedded SQLite"
"$engine" run -d --name "$name" -e AGENTPROF_API_KEYS="$key" -p "127.0.0.1:$port:8080" agentprof:check >/dev/null
check_service standalone "$work/metrics-standalone.json"
if [ "$engine" = podman ]; then
  "$engine" healthcheck run "$name" && echo "standalone: HEALTHCHECK passes"
else
  "$engine" exec "$name" /usr/local/bin/agentprof probe && echo "standalone: probe passes"
fi
"$engine" rm -f "$name" >/dev/null

if [ "$compose" = 1 ]; then
  echo "== compose, PostgreSQL"
  if command -v podman-compose >/dev/null && [ "$engine" = podman ]; then compose_cmd=podman-compose
  else compose_cmd="docker compose"; fi
  export AGENTPROF_API_KEYS="$key" POSTGRES_PASSWORD="check-$RANDOM$RANDOM" AGENTPROF_PORT=$port
  $compose_cmd -p "$name" up -d --build
  check_service compose "$work/metrics-compose.json"
  $compose_cmd -p "$name" down -v
fi
echo "container check passed"
