#!/usr/bin/env bash
# Regenerates tests/fixtures/otlp_genai/: real OTLP captures of GenAI-instrumented agent programs.
# Offline: everything talks to 127.0.0.1 (fake OpenAI server + OTLP capture sink). Idempotent: each
# fixture folder is removed and written anew; the venvs are (re)built only when a lock file changed.
#
#   bash scripts/genai_capture/run_all.sh            # everything
#   bash scripts/genai_capture/run_all.sh openllmetry pydantic_ai_v5   # some libraries only
#
# Env: GENAI_VENV (default /tmp/genai-venv), FAKE_OPENAI_PORT (18080), CAPTURE_HTTP_PORT (14318),
#      CAPTURE_GRPC_PORT (14317).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="$REPO/tests/fixtures/otlp_genai"
VENV="${GENAI_VENV:-/tmp/genai-venv}"
export FAKE_OPENAI_PORT="${FAKE_OPENAI_PORT:-18080}"
export CAPTURE_HTTP_PORT="${CAPTURE_HTTP_PORT:-14318}"
export CAPTURE_GRPC_PORT="${CAPTURE_GRPC_PORT:-14317}"
export FAKE_OPENAI_BASE_URL="http://127.0.0.1:$FAKE_OPENAI_PORT/v1"
export CAPTURE_HTTP_ENDPOINT="http://127.0.0.1:$CAPTURE_HTTP_PORT/v1/traces"
export CAPTURE_GRPC_ENDPOINT="127.0.0.1:$CAPTURE_GRPC_PORT"
export FAKE_OPENAI_LOG="${FAKE_OPENAI_LOG:-/tmp/genai-capture-fake-openai.jsonl}"
# keep the exporters' own env out of the way; every program sets its endpoint explicitly
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_COMPRESSION \
      OTEL_EXPORTER_OTLP_TRACES_COMPRESSION OTEL_EXPORTER_OTLP_HEADERS OTEL_RESOURCE_ATTRIBUTES OTEL_SERVICE_NAME || true
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# --- venvs: main (pydantic-ai 2.x, OpenLLMetry, the servers), openai_v2 (openai 2.x + util-genai 1.1b0),
#     pydantic_ai_1x (pydantic-ai 1.x, the last with the events-based format version 1) ---
make_venv() { # name lockfile
  local dir="$VENV/$1" lock="$HERE/$2" stamp
  stamp="$(sha256sum "$lock" | cut -c1-16)"
  if [[ -x "$dir/bin/python" && "$(cat "$dir/.lockstamp" 2>/dev/null)" == "$stamp" ]]; then return; fi
  echo "== building venv $dir from $2" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --no-deps -r "$lock"
  echo "$stamp" > "$dir/.lockstamp"
}
make_venv main requirements.lock.txt
make_venv openai_v2 requirements-openai_v2.lock.txt
make_venv pydantic_ai_1x requirements-pydantic_ai_1x.lock.txt
PY_MAIN="$VENV/main/bin/python"
PY_OAV2="$VENV/openai_v2/bin/python"
PY_PAI1="$VENV/pydantic_ai_1x/bin/python"

# --- servers ---
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
: > "$FAKE_OPENAI_LOG"
"$PY_MAIN" "$HERE/fake_openai.py" --port "$FAKE_OPENAI_PORT" 2>/tmp/genai-capture-fake-openai.err &
PIDS+=($!)
"$PY_MAIN" "$HERE/capture_server.py" 2>/tmp/genai-capture-server.err &
PIDS+=($!)
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$FAKE_OPENAI_PORT/health" >/dev/null && curl -sf "http://127.0.0.1:$CAPTURE_HTTP_PORT/_capture/status" >/dev/null; then break; fi
  sleep 0.1
done
curl -sf "http://127.0.0.1:$CAPTURE_HTTP_PORT/_capture/status" >/dev/null || { echo "servers did not start" >&2; exit 1; }

# capture LIBRARY SUBDIR KEEP_COMPRESSED PYTHON PROGRAM TRANSPORT [extra args...]
capture() {
  local lib="$1" sub="$2" keep="$3" py="$4" prog="$5" transport="$6"; shift 6
  local dir="$OUT/$lib/$sub"
  rm -rf "$dir"; mkdir -p "$dir"
  curl -sf -XPOST "http://127.0.0.1:$CAPTURE_HTTP_PORT/_capture/start" -d "{\"dir\": \"$dir\", \"keep_compressed\": $keep}" >/dev/null
  echo "== $lib/$sub" >&2
  "$py" "$HERE/$prog" --transport "$transport" --out "$dir" "$@"
  local got; got="$(curl -sf -XPOST "http://127.0.0.1:$CAPTURE_HTTP_PORT/_capture/stop")"
  echo "   captured: $got" >&2
}

SEMCONV_OAV2='opentelemetry-instrumentation-openai-v2 2.4b0 documents "Semantic Conventions v1.30.0" by default and the latest experimental GenAI conventions with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental; with util-genai 1.1b0 `is_experimental_mode()` always returns True, so the latest-experimental path is taken regardless and spans come from util-genai TelemetryHandler, whose tracer declares schema_url https://opentelemetry.io/schemas/1.37.0 (scope `opentelemetry.util.genai.handler`). The tracer openai-v2 creates itself with schema 1.30.0 is only used on the legacy path, so no span carries 1.30.0. Content capture: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only (the legacy value `true` is not a valid mode any more and means no content). The invoke_agent / execute_tool spans are hand-made by the program with the same TelemetryHandler.'
SEMCONV_PAI='pydantic-ai declares no schema_url on its scope (`pydantic-ai`, version = package version) and names no semconv release. Its InstrumentationSettings(version=N) is its own data-format version (unrelated to the package version): 2 = "newer OpenTelemetry GenAI spec" (gen_ai.input.messages / gen_ai.output.messages / gen_ai.system_instructions on chat spans, pydantic_ai.all_messages on the agent span), 3 adds thinking parts, 4 adds multimodal uri/blob parts, 5 (default in 2.78) stops marking deferrals as errors, 6 (opt-in) gives tool results role "tool" instead of "user". Versions 2-4 are deprecated; the events-based version 1 no longer exists in 2.x.'
SEMCONV_PAI1='pydantic-ai 1.107.10 (the last 1.x) declares no schema_url on its scope (`pydantic-ai`). Its InstrumentationSettings(version=N): 1 = "the legacy event-based OpenTelemetry GenAI spec" (deprecated; with event_mode="attributes", used here, the gen_ai.*.message / gen_ai.choice events are put into one span attribute `events` as a JSON string instead of OTel span events or log records), 2 = default in 1.x (gen_ai.input.messages / gen_ai.output.messages / gen_ai.system_instructions), use_aggregated_usage_attribute_names defaults to False in 1.x (so the agent span carries gen_ai.usage.*).'
SEMCONV_OLLM='OpenLLMetry opentelemetry-instrumentation-openai 0.62.4 declares no schema_url on its scope (`opentelemetry.instrumentation.openai.v1`). It takes gen_ai.* names from opentelemetry-semantic-conventions 0.66b2 (incubating) plus its own opentelemetry-semantic-conventions-ai 0.5.1 (e.g. gen_ai.usage.reasoning_tokens, gen_ai.is_streaming, gen_ai.openai.api_base). Default use_attributes=True puts prompts/completions into gen_ai.input.messages / gen_ai.output.messages (TRACELOOP_TRACE_CONTENT=true, the default). The invoke_agent / execute_tool spans are hand-made by the program with the plain OTel API (scope agentprof.genai_capture.handmade, schema 1.37.0).'

SELECTED=("$@")
selected() { [[ ${#SELECTED[@]} -eq 0 ]] && return 0; local x; for x in "${SELECTED[@]}"; do [[ "$x" == "$1" ]] && return 0; done; return 1; }

if selected openai_v2; then
  capture openai_v2 http false "$PY_OAV2" agent_openai_v2.py http
  capture openai_v2 grpc false "$PY_OAV2" agent_openai_v2.py grpc
  export OTEL_EXPORTER_OTLP_COMPRESSION=gzip   # the exporter gzips; the sink keeps the bodies as sent (.pb.gz)
  capture openai_v2 http_gzip true "$PY_OAV2" agent_openai_v2.py http
  unset OTEL_EXPORTER_OTLP_COMPRESSION
  "$PY_MAIN" "$HERE/summarize.py" "$OUT/openai_v2" --semconv-note "$SEMCONV_OAV2"
fi
for fmt in 2 5 6; do
  if selected "pydantic_ai_v$fmt"; then
    capture "pydantic_ai_v$fmt" http false "$PY_MAIN" agent_pydantic_ai.py http --format "$fmt"
    capture "pydantic_ai_v$fmt" grpc false "$PY_MAIN" agent_pydantic_ai.py grpc --format "$fmt"
    "$PY_MAIN" "$HERE/summarize.py" "$OUT/pydantic_ai_v$fmt" --semconv-note "$SEMCONV_PAI"
  fi
done
for fmt in 1 2; do
  if selected "pydantic_ai_1x_v$fmt"; then
    capture "pydantic_ai_1x_v$fmt" http false "$PY_PAI1" agent_pydantic_ai.py http --format "$fmt"
    capture "pydantic_ai_1x_v$fmt" grpc false "$PY_PAI1" agent_pydantic_ai.py grpc --format "$fmt"
    "$PY_MAIN" "$HERE/summarize.py" "$OUT/pydantic_ai_1x_v$fmt" --semconv-note "$SEMCONV_PAI1"
  fi
done
if selected openllmetry; then
  capture openllmetry http false "$PY_MAIN" agent_openllmetry.py http
  capture openllmetry grpc false "$PY_MAIN" agent_openllmetry.py grpc
  "$PY_MAIN" "$HERE/summarize.py" "$OUT/openllmetry" --semconv-note "$SEMCONV_OLLM"
fi
du -sh "$OUT"/* >&2
echo "done: $OUT" >&2
