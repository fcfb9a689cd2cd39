#!/usr/bin/env bash
# The breaker-gateway with the official OpenAI and Anthropic Python SDKs (tests/api/gateway_sdks.py):
# starts the fake provider (tests/bin/fake_provider.rs) and `helix up` with a gateway configuration
# whose deployments point at it, runs the SDK checks, stops both, and checks that no key (the
# upstream's or the gateway's) appears in helix's output. Loopback only; every step is bounded in
# time; everything lives in a scratch directory that is removed at the end.
#
# usage: tests/api/gateway_sdks.sh HELIX_BINARY FAKE_PROVIDER_BINARY VENV_DIR
set -euo pipefail
helix_bin=$1
fake_bin=$2
venv=$3
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d)
cleanup() {
  for pid in "${helix_pid:-}" "${fake_pid:-}"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for, random_hex, start_fake
source "$here/lib.sh"

# Fresh random keys each run, so finding one in a log can only mean it leaked. The fake accepts
# only the upstream key, so a success also proves the gateway sent the deployment's key.
export HELIX_SDK_UPSTREAM_KEY="sk-upstream-$(random_hex)"
export HELIX_SDK_GATEWAY_KEY="sk-helix-sdk-$(random_hex)"
export HELIX_SDK_BUDGET_KEY="sk-helix-budget-$(random_hex)"

start_fake "$fake_bin" "$HELIX_SDK_UPSTREAM_KEY"

# Each scenario of gateway_sdks.py has its own deployments and upstream model names, so the fake
# can be scripted per model and one scenario's failures never count against another's breaker.
# Breakers only open where a deployment says so (oa-trip); retries are quick.
cat >"$work/helix.toml" <<EOF
[breaker_gateway]
max_retries = 1
retry_base_backoff_ms = 10
retry_max_backoff_ms = 100
connect_timeout_ms = 2000
first_byte_timeout_ms = 10000
idle_timeout_ms = 10000
total_timeout_ms = 30000

[breaker_gateway.breaker]
window_size = 1000
minimum_calls = 1000

[[breaker_gateway.deployments]]
id = "oa-main"
provider = "openai"
base_url = "$fake_url"
model = "gpt-main"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "an-main"
provider = "anthropic"
base_url = "$fake_url"
model = "claude-main"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "an-flaky"
provider = "anthropic"
base_url = "$fake_url"
model = "claude-flaky"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "oa-backup"
provider = "openai"
base_url = "$fake_url"
model = "gpt-backup"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "oa-flaky"
provider = "openai"
base_url = "$fake_url"
model = "gpt-flaky"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "an-backup"
provider = "anthropic"
base_url = "$fake_url"
model = "claude-backup"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "oa-trip"
provider = "openai"
base_url = "$fake_url"
model = "gpt-trip"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"
breaker = { window_size = 2, minimum_calls = 2, failure_rate_threshold = 50.0, open_secs = 300, max_open_secs = 300 }

[[breaker_gateway.deployments]]
id = "an-trip"
provider = "anthropic"
base_url = "$fake_url"
model = "claude-trip"
api_key_env = "HELIX_SDK_UPSTREAM_KEY"

[[breaker_gateway.models]]
name = "gpt"
chain = ["oa-main"]

[[breaker_gateway.models]]
name = "claude"
chain = ["an-main"]

[[breaker_gateway.models]]
name = "claude-fallback"
chain = ["an-flaky", "oa-backup"]

[[breaker_gateway.models]]
name = "gpt-fallback"
chain = ["oa-flaky", "an-backup"]

[[breaker_gateway.models]]
name = "gpt-trip"
chain = ["oa-trip"]

[[breaker_gateway.models]]
name = "claude-trip"
chain = ["an-trip", "oa-trip"]

[[breaker_gateway.keys]]
key_env = "HELIX_SDK_GATEWAY_KEY"
project = "sdk"

[[breaker_gateway.keys]]
key_env = "HELIX_SDK_BUDGET_KEY"
project = "sdk-budget"
daily_budget_usd = 0.000001

[[breaker_gateway.prices]]
model = "gpt-main"
input = 2.0
output = 8.0

[[breaker_gateway.prices]]
model = "claude-main"
input = 3.0
output = 15.0

[[breaker_gateway.prices]]
model = "gpt-backup"
input = 1.0
output = 4.0

[[breaker_gateway.prices]]
model = "claude-backup"
input = 0.8
output = 4.0
EOF

# debug logs: the key check below is only worth something if helix says a lot
(cd "$work" && exec "$helix_bin" up --config "$work/helix.toml" --host 127.0.0.1 --orchestrator-port 0 \
  --trace-collector-port 0 --breaker-gateway-port 0 --healer-port 0 --data-dir "$work/data" \
  --log-level debug >"$work/up.out" 2>"$work/up.err") &
helix_pid=$!
wait_for "$work/up.out" "press Ctrl-C" "$helix_pid" \
  || { cat "$work/up.err" >&2; echo "helix up did not start" >&2; exit 1; }
gateway=$(grep -E '^  breaker-gateway +http://' "$work/up.out" | awk '{print $2}')
[[ "$gateway" == http://127.0.0.1:* ]] || { cat "$work/up.out" >&2; echo "no breaker-gateway URL" >&2; exit 1; }

failed=0
timeout 300 "$venv/bin/python" "$here/gateway_sdks.py" "$gateway" "$fake_url" | tee "$work/sdks.out" || failed=1

kill -TERM "$helix_pid"
if ! timeout 60 tail --pid="$helix_pid" -f /dev/null; then
  echo "helix up did not stop within 60 s of SIGTERM" >&2
  failed=1
fi
wait "$helix_pid" || { echo "helix up did not stop cleanly on SIGTERM" >&2; tail -n 20 "$work/up.err" >&2; failed=1; }
kill -TERM "$fake_pid"
wait "$fake_pid" 2>/dev/null || true

leaks=0
for var in HELIX_SDK_UPSTREAM_KEY HELIX_SDK_GATEWAY_KEY HELIX_SDK_BUDGET_KEY; do
  if grep -qF -- "${!var}" "$work/up.out" "$work/up.err"; then
    echo "the key in $var appears in helix's output:" >&2
    grep -nF -- "${!var}" "$work/up.out" "$work/up.err" | cut -c1-300 | head -5 >&2
    leaks=$((leaks + 1))
  fi
done
log_lines=$(cat "$work/up.out" "$work/up.err" | wc -l)
echo "key leak check: $log_lines lines of helix output (debug), $leaks keys found"
[[ $leaks -eq 0 ]] || failed=1

sdk_passed=$(sed -n 's/^gateway sdks: \([0-9]*\) passed.*/\1/p' "$work/sdks.out" | tail -n 1)
[[ -n "$sdk_passed" ]] || { echo "gateway_sdks.py printed no summary" >&2; sdk_passed=0; failed=1; }
# the leak check counts as one more check
if [[ $failed -eq 0 ]]; then
  echo "gateway sdk tests: $((sdk_passed + 1)) passed, 0 failed"
else
  echo "gateway sdk tests: failed" >&2
fi
[[ $failed -eq 0 ]]
