#!/usr/bin/env bash
# API tests against `helix up` on free ports, with tokens required: schemathesis against each
# service's served /openapi.json with every check (no 5xx, responses conform to the document,
# bad input rejected, unsupported methods answered 405 with Allow, operations that declare
# security refuse requests without the token), then the official OpenTelemetry Python SDK
# exporting to the trace-collector with the token. Bounded: a fixed number of
# examples per operation, and at most 5 minutes per service. The live SSE feed (/v1/stream) never
# ends by design and is tested in tests/integration/collector.rs instead. Loopback only; stops helix at the end.
#
# usage: tests/api/schemathesis.sh HELIX_BINARY VENV_DIR
set -euo pipefail
helix_bin=$1
venv=$2
examples=${SCHEMATHESIS_EXAMPLES:-50}

work=$(mktemp -d)
cleanup() {
  if [[ -n "${helix_pid:-}" ]] && kill -0 "$helix_pid" 2>/dev/null; then kill -KILL "$helix_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# an admin token for schemathesis; probes need it too, so that every secured operation refuses
# a request without it
token="hxt_schemathesis_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$work/helix.toml" <<TOML
[auth]
probes = "token"
[[auth.tokens]]
id = "schemathesis"
token_env = "HELIX_ST_TOKEN"
scopes = ["admin"]
TOML
(cd "$work" && HELIX_ST_TOKEN="$token" exec "$helix_bin" up --orchestrator-port 0 --trace-collector-port 0 \
  --breaker-gateway-port 0 --healer-port 0 --data-dir "$work/data" >"$work/up.out" 2>"$work/up.err") &
helix_pid=$!

for _ in $(seq 1 100); do
  grep -q "press Ctrl-C" "$work/up.out" 2>/dev/null && break
  kill -0 "$helix_pid" 2>/dev/null || { cat "$work/up.err" >&2; echo "helix up exited early" >&2; exit 1; }
  sleep 0.1
done
grep -q "press Ctrl-C" "$work/up.out" || { echo "helix up did not start" >&2; cat "$work/up.err" >&2; exit 1; }

# per-operation settings (schemathesis reads schemathesis.toml from its working directory)
cp "$(dirname "$0")/schemathesis.toml" "$work/schemathesis.toml"

failed=0
passed=0
while read -r name url _; do
  [[ "$url" == http://* ]] || continue
  echo "-- schemathesis: $name ($url)"
  # run from the scratch directory: schemathesis keeps a cache in the working directory
  if (cd "$work" && timeout 300 "$venv/bin/st" run "$url/openapi.json" --checks all --max-examples "$examples" \
      --header "Authorization: Bearer $token" \
      --seed 20261125 --request-timeout 10 --generation-database none --no-color \
      --exclude-path /v1/stream \
      --report junit --report-dir "$work/reports") >"$work/st-$name.log" 2>&1; then
    tail -n 3 "$work/st-$name.log"
    passed=$((passed + 1))
  else
    cat "$work/st-$name.log"
    failed=$((failed + 1))
  fi
done < <(grep -E '^  [a-z-]+ +http://' "$work/up.out")

# a real OpenTelemetry client: the official Python SDK's OTLP/HTTP exporter
collector=$(grep -E '^  trace-collector +http://' "$work/up.out" | awk '{print $2}')
if timeout 120 "$venv/bin/python" "$(dirname "$0")/otel_sdk.py" "$collector" "$token"; then
  passed_otel=4
else
  echo "the OpenTelemetry SDK check failed" >&2
  failed=$((failed + 1))
fi

kill -TERM "$helix_pid"
wait "$helix_pid" || { echo "helix up did not stop cleanly on SIGTERM" >&2; cat "$work/up.err" >&2; failed=$((failed + 1)); }
if grep -q '"status":5[0-9][0-9]\|status=5[0-9][0-9]' "$work/up.err"; then
  echo "a 5xx appears in the helix logs:" >&2
  grep '5[0-9][0-9]' "$work/up.err" >&2 | head -20
  failed=$((failed + 1))
fi
[[ $passed -eq 4 || $failed -gt 0 ]] || { echo "expected 4 services, tested $passed" >&2; failed=$((failed + 1)); }
echo "api tests: $((passed + ${passed_otel:-0})) passed, $failed failed"
[[ $failed -eq 0 ]]
