#!/usr/bin/env bash
# Breaker-gateway load, side by side in one run: the same small non-streaming
# POST /v1/chat/completions sent straight to the fake provider (tests/bin/fake_provider.rs) and
# through the gateway in front of it, first by `helix up` (all four services in one process, as
# users run it), then by `helix serve breaker-gateway` (the gateway alone). The machine running it is
# shared by load generator, fake and gateway, so read the ratios and the differences, not absolutes.
#
# (a) latency at a paced rate below saturation: with `oha` (if installed) a true constant rate
#     (`oha -q RATE -c CONC -z DURATION`); otherwise wrk with a Lua `delay()` per connection, which
#     paces each connection to RATE/CONC req/s but is closed-loop: a slow answer delays the next
#     request (coordinated omission), so its p99 is optimistic when answers stall. oha asks for
#     compressed answers (`Accept-Encoding`), as the official SDKs do; wrk does not.
# (b) throughput at saturation: wrk, CONC connections, DURATION.
# (c) resident memory of the helix process: VmRSS idle after start-up, VmRSS after the paced phase
#     (just before saturation), peak VmRSS sampled under load, VmHWM.
# (d) with `redis-server` and `redis-cli` installed (REDIS=0 skips it): the gateway alone with
#     `redis_url` set, on a private Redis started for the run: saturation as in (b), and the Redis
#     round trips per proxied request (EVALSHA/EVAL calls from INFO commandstats, before/after).
# With LITELLM_VENV set (a venv with `litellm[proxy]`, e.g. the one ../shared/peers/litellm/run_peer.sh
# makes), LiteLLM's proxy is put in front of the same fake and measured the same way.
# (a)-(d) and LiteLLM are PHASES "wrk". The phases below use benches/examples/gateway_client.rs
# (per-request latency, open-loop pacing, time to first token; see its doc) against a second pair
# of helix processes started side by side, `helix up` and `helix serve breaker-gateway`, so the
# fake, serve and up can be measured in interleaved rounds and compared per round:
# (e) PHASES "c1", added latency at concurrency 1: C1_ROUNDS rounds, each C1_REQUESTS sequential
#     non-streaming requests on one kept-alive connection to the fake, then to a TCP relay in front
#     of it that does no work (benches/examples/tcp_relay.rs: the floor any second hop costs on
#     this machine), then serve, then up; the figures are the medians over the rounds of
#     (gateway p50/p99 - the fake's in the same round), and the relay's the same way.
# (f) PHASES "stream", streaming translation at RATE req/s (open loop): ROUNDS rounds of
#     STREAM_SECS per target: the fake's own Chat and Anthropic streams, and through serve
#     `/v1/responses` (Responses -> Chat) and `/v1/messages` (Anthropic -> Chat), both served by the
#     OpenAI deployment; whole-stream p99 and time to first token (first content event, TTFT)
#     against the fake's direct stream (Chat for Responses; Anthropic and Chat for Messages). Every
#     gateway stream must end with its `: helix {...}` comment (counted).
# (g) PHASES "up", `helix up` at RATE req/s: ROUNDS rounds of UP_SECS of non-streaming chat to the
#     fake, serve and up (open loop, added p50/p99 per round as in (e)); then up alone at RATE until
#     its gateway has answered UP_CALLS calls in all (its /metrics, earlier phases included), with
#     VmRSS now / peak sampled / VmHWM of the up process after every SOAK_SECS.
#
# Loopback only; bounded: every wrk phase lasts DURATION (plus a 2 s warm-up), the client's phases
# are bounded in requests or seconds and by `timeout`; everything started is stopped by pid; the
# scratch directory is removed at the end.
#
# usage: benches/gateway_load.sh   (env: DURATION=10s CONC=32 RATE=2000 THREADS=1 REDIS=1 LITELLM_VENV=
#        HELIX_BIN= FAKE_BIN= CLIENT_BIN= RELAY_BIN=: prebuilt binaries to measure instead of building, e.g. to
#        compare two versions of the gateway in turn; PHASES="wrk c1 stream up" C1_ROUNDS=7
#        C1_REQUESTS=3000 ROUNDS=5 STREAM_SECS=3 UP_SECS=4 UP_CALLS=200000 SOAK_SECS=10;
#        RESULTS=file keeps the raw result lines)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
DURATION=${DURATION:-10s}
CONC=${CONC:-32}
RATE=${RATE:-2000}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2s}
REDIS=${REDIS:-1}
PHASES=${PHASES:-wrk c1 stream up}
C1_ROUNDS=${C1_ROUNDS:-7}
C1_REQUESTS=${C1_REQUESTS:-3000}
ROUNDS=${ROUNDS:-5}
STREAM_SECS=${STREAM_SECS:-3}
UP_SECS=${UP_SECS:-4}
UP_CALLS=${UP_CALLS:-200000}
SOAK_SECS=${SOAK_SECS:-10}
wants() { [[ " $PHASES " == *" $1 "* ]]; }

cd "$root"
if [[ -n "${HELIX_BIN:-}" && -n "${FAKE_BIN:-}" ]]; then
  helix_bin=$HELIX_BIN
  fake_bin=$FAKE_BIN
else
  cargo build --release -p helix -p helix-tests --bin helix --bin fake-provider >&2
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  helix_bin=${HELIX_BIN:-$target_dir/release/helix}
  fake_bin=${FAKE_BIN:-$target_dir/release/fake-provider}
fi
client_bin=${CLIENT_BIN:-}
if [[ -z "$client_bin" ]] && { wants c1 || wants stream || wants up; }; then
  cargo build --release -p helix-benches --example gateway_client --example tcp_relay >&2
  client_bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/gateway_client
fi

if wants wrk && ! command -v wrk >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is missing: install it (apt-get install wrk) and run again" >&2
    exit 1
  fi
fi
have_oha=0
command -v oha >/dev/null 2>&1 && have_oha=1

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# waits up to 60 s for a line matching $2 in file $1 while process $3 lives
wait_for() {
  for _ in $(seq 1 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "$2" "$1" 2>/dev/null
}

stop() { # pid
  kill -TERM "$1" 2>/dev/null || true
  timeout 30 tail --pid="$1" -f /dev/null 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

"$fake_bin" --port 0 >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
pids+=("$fake_pid")
wait_for "$work/fake.out" "^listening on http://127.0.0.1:" "$fake_pid" \
  || { cat "$work/fake.err" >&2; echo "the fake provider did not start" >&2; exit 1; }
fake_url=$(sed -n 's/^listening on //p' "$work/fake.out" | head -n 1)
# the fake records every request; forgetting them between phases keeps its memory bounded
reset_fake() { curl -sf -X POST "$fake_url/_fake/reset" -o /dev/null || true; }

cat >"$work/helix.toml" <<EOF
log_level = "warn"

[[breaker_gateway.deployments]]
id = "oa-main"
provider = "openai"
base_url = "$fake_url"
model = "gpt-4o-mini"

[[breaker_gateway.models]]
name = "gpt"
chain = ["oa-main"]
EOF

# LiteLLM refuses to start without a master key; the gateway (no keys configured) ignores it
load_key="sk-load-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
body_direct='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
body_gateway='{"model":"gpt","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'

# $1 file, $2 body, $3 per-connection delay in ms (0: none). done() prints exact figures.
write_lua() {
  cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $load_key"
wrk.body = '$2'
local pause = $3
if pause > 0 then
  -- spread the connections' first requests so the pacing does not come in bursts
  local first = true
  delay = function()
    if first then first = false; return math.random(0, pause) end
    return pause
  end
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d n=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.requests, errors))
end
EOF
}
pause_ms=$(awk -v c="$CONC" -v r="$RATE" 'BEGIN { printf "%d", 1000 * c / r }')
write_lua "$work/direct_sat.lua" "$body_direct" 0
write_lua "$work/gateway_sat.lua" "$body_gateway" 0
write_lua "$work/direct_paced.lua" "$body_direct" "$pause_ms"
write_lua "$work/gateway_paced.lua" "$body_gateway" "$pause_ms"
printf '%s' "$body_direct" >"$work/direct.json"
printf '%s' "$body_gateway" >"$work/gateway.json"

# $1 label, $2 url, $3 direct|gateway; prints "label paced|sat rps p50_us p99_us n errors"
paced() {
  reset_fake
  if [[ $have_oha -eq 1 ]]; then
    oha --no-tui -q "$RATE" -c "$CONC" -z "$DURATION" -m POST -H "Content-Type: application/json" \
      -H "Authorization: Bearer $load_key" -D "$work/$3.json" --output-format json "$2" >"$work/oha_$1.json"
    python3 - "$work/oha_$1.json" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["summary"]; p = d["latencyPercentiles"]
n = sum(d.get("statusCodeDistribution", {}).values())
ok = d.get("statusCodeDistribution", {}).get("200", 0)
print(f"{sys.argv[2]} paced {s['requestsPerSec']:.1f} {p['p50']*1e6:.0f} {p['p99']*1e6:.0f} {n} {n - ok}")
PY
  else
    wrk -t"$THREADS" -c"$CONC" -d"$WARMUP" --timeout 10s -s "$work/$3_paced.lua" "$2" >/dev/null 2>&1 || true
    wrk -t"$THREADS" -c"$CONC" -d"$DURATION" --timeout 10s -s "$work/$3_paced.lua" "$2" >"$work/wrk_$1_paced.txt"
    sed -n "s/^RESULT rps=\([^ ]*\) p50_us=\([^ ]*\) p99_us=\([^ ]*\) n=\([^ ]*\) errors=\([^ ]*\)/$1 paced \1 \2 \3 \4 \5/p" \
      "$work/wrk_$1_paced.txt"
  fi
}
saturated() { # SKIP_WARMUP=1: the caller did it
  reset_fake
  if [[ "${SKIP_WARMUP:-0}" != 1 ]]; then
    wrk -t"$THREADS" -c"$CONC" -d"$WARMUP" --timeout 10s -s "$work/$3_sat.lua" "$2" >/dev/null 2>&1 || true
  fi
  wrk -t"$THREADS" -c"$CONC" -d"$DURATION" --timeout 10s -s "$work/$3_sat.lua" "$2" >"$work/wrk_$1_sat.txt"
  sed -n "s/^RESULT rps=\([^ ]*\) p50_us=\([^ ]*\) p99_us=\([^ ]*\) n=\([^ ]*\) errors=\([^ ]*\)/$1 sat \1 \2 \3 \4 \5/p" \
    "$work/wrk_$1_sat.txt"
}
# saturation while sampling the process's VmRSS every 0.2 s; appends
# "label mem idle-after-start before-saturation peak hwm" (kB)
saturated_with_memory() { # label url kind pid
  local before peak=0 rss
  before=$(kb "$4" VmRSS)
  saturated "$1" "$2" "$3" &
  local bench=$!
  while kill -0 "$bench" 2>/dev/null; do
    rss=$(kb "$4" VmRSS 2>/dev/null || echo 0)
    [[ ${rss:-0} -gt $peak ]] && peak=$rss
    sleep 0.2
  done
  wait "$bench"
  echo "$1 mem $gw_idle $before $peak $(kb "$4" VmHWM)"
}

# $1 label, $2 helix subcommand words; sets gw_pid, gw_url and gw_idle (VmRSS after start-up, kB);
# HELIX_CONFIG overrides the configuration file
start_helix() {
  local label=$1
  shift
  (cd "$work" && exec "$helix_bin" "$@" --config "${HELIX_CONFIG:-$work/helix.toml}" --host 127.0.0.1 \
    --data-dir "$work/data-$label" >"$work/$label.out" 2>"$work/$label.err") &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_for "$work/$label.out" "press Ctrl-C" "$gw_pid" \
    || { cat "$work/$label.err" >&2; echo "helix $* did not start" >&2; exit 1; }
  gw_url=$(grep -E '^  breaker-gateway +http://' "$work/$label.out" | awk '{print $2}')
  [[ "$gw_url" == http://127.0.0.1:* ]] || { cat "$work/$label.out" >&2; echo "no gateway URL" >&2; exit 1; }
  curl -sf -H "Content-Type: application/json" -d "$body_gateway" "$gw_url/v1/chat/completions" \
    | grep -q '"choices"' || { echo "the gateway ($label) did not answer a completion" >&2; exit 1; }
  sleep 2 # let start-up work settle before the idle reading
  gw_idle=$(kb "$gw_pid" VmRSS)
}

results=$work/results.txt
: >"$results"
load_before=$(cut -d" " -f1-3 /proc/loadavg)
if wants wrk; then
  paced fake "$fake_url/v1/chat/completions" direct | tee -a "$results" >&2
  saturated fake "$fake_url/v1/chat/completions" direct | tee -a "$results" >&2

  start_helix up up --orchestrator-port 0 --trace-collector-port 0 --breaker-gateway-port 0 --healer-port 0
  paced up "$gw_url/v1/chat/completions" gateway | tee -a "$results" >&2
  saturated_with_memory up "$gw_url/v1/chat/completions" gateway "$gw_pid" | tee -a "$results" >&2
  stop "$gw_pid"

  if "$helix_bin" --help | grep -qE '^  serve '; then
    start_helix serve serve breaker-gateway --breaker-gateway-port 0
    paced serve "$gw_url/v1/chat/completions" gateway | tee -a "$results" >&2
    saturated_with_memory serve "$gw_url/v1/chat/completions" gateway "$gw_pid" | tee -a "$results" >&2
    stop "$gw_pid"
  fi

  # the breaker calls (EVALSHA, EVAL when the script was not loaded yet) a Redis has served so far
  redis_calls() { # port
    redis-cli -p "$1" info commandstats | tr -d '\r' \
      | awk -F'[:=,]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" {n += $3} END {print n + 0}'
  }

  if [[ "$REDIS" != 0 ]] && command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 \
    && "$helix_bin" --help | grep -qE '^  serve '; then
    redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 1 100); do
      redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
    { echo "breaker_gateway.redis_url = \"redis://127.0.0.1:$redis_port\""; cat "$work/helix.toml"; } \
      >"$work/helix-redis.toml"
    HELIX_CONFIG=$work/helix-redis.toml start_helix redis serve breaker-gateway --breaker-gateway-port 0
    for _ in $(seq 1 50); do
      curl -sf "$gw_url/v1/circuits" | grep -q '"connected":true' && break
      sleep 0.1
    done
    wrk -t"$THREADS" -c"$CONC" -d"$WARMUP" --timeout 10s -s "$work/gateway_sat.lua" "$gw_url/v1/chat/completions" \
      >/dev/null 2>&1 || true
    # only the measured phase is counted (its requests are wrk's count)
    before=$(redis_calls "$redis_port")
    SKIP_WARMUP=1 saturated_with_memory redis "$gw_url/v1/chat/completions" gateway "$gw_pid" \
      | tee -a "$results" >&2
    after=$(redis_calls "$redis_port")
    served=$(awk '$1 == "redis" && $2 == "sat" {print $6}' "$results")
    echo "redis trips $((after - before)) ${served:-0}" | tee -a "$results" >&2
    stop "$gw_pid"
    stop "$redis_pid"
  fi

  if [[ -n "${LITELLM_VENV:-}" ]]; then
    export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY_DISABLED=true LITELLM_LOG=WARNING
    export LITELLM_DONT_SHOW_FEEDBACK_BOX=true NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
    cat >"$work/litellm.yaml" <<EOF
model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: $fake_url/v1
      api_key: sk-none
litellm_settings:
  num_retries: 0
  request_timeout: 30
general_settings:
  master_key: $load_key
EOF
    ll_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$LITELLM_VENV/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$ll_port" \
      --num_workers 1 >"$work/litellm.log" 2>&1 &
    ll_pid=$!
    pids+=("$ll_pid")
    for _ in $(seq 1 1200); do
      curl -sf -o /dev/null "http://127.0.0.1:$ll_port/health/liveliness" && break
      kill -0 "$ll_pid" 2>/dev/null || break
      sleep 0.1
    done
    curl -sf -H "Content-Type: application/json" -H "Authorization: Bearer $load_key" -d "$body_gateway" \
      "http://127.0.0.1:$ll_port/v1/chat/completions" | grep -q '"choices"' \
      || { tail -n 30 "$work/litellm.log" >&2; echo "litellm did not answer a completion" >&2; exit 1; }
    sleep 2
    gw_idle=$(kb "$ll_pid" VmRSS)
    saturated_with_memory litellm "http://127.0.0.1:$ll_port/v1/chat/completions" gateway "$ll_pid" \
      | tee -a "$results" >&2
    stop "$ll_pid"
  fi
fi

# (e)-(g): helix up and helix serve breaker-gateway side by side, measured by gateway_client
gateway_requests() { # url: calls the gateway has answered (its /metrics)
  curl -sf "$1/metrics" | awk '$1 ~ /^helix_gateway_requests_total/ {n += $2} END {printf "%d\n", n}'
}
if wants c1 || wants stream || wants up; then
  start_helix side-up up --orchestrator-port 0 --trace-collector-port 0 --breaker-gateway-port 0 --healer-port 0
  up_pid=$gw_pid up_url=$gw_url
  echo "side up idle $gw_idle" >>"$results"
  start_helix side-serve serve breaker-gateway --breaker-gateway-port 0
  serve_pid=$gw_pid serve_url=$gw_url
  echo "side serve idle $gw_idle" >>"$results"
  reset="--after-round-post $fake_url/_fake/reset"
  chat_targets=("fake,chat,gpt-4o-mini,$fake_url/v1/chat/completions" "serve,chat,gpt,$serve_url/v1/chat/completions"
    "up,chat,gpt,$up_url/v1/chat/completions")
  # the floor: a relay doing no work (benches/examples/tcp_relay.rs), what any second hop costs here
  relay_bin=${RELAY_BIN:-$(dirname "$client_bin")/tcp_relay}
  relay_targets=() relay_stream=()
  if [[ -x "$relay_bin" ]]; then
    "$relay_bin" "${fake_url#http://}" >"$work/relay.out" 2>"$work/relay.err" &
    relay_pid=$!
    pids+=("$relay_pid")
    if wait_for "$work/relay.out" "^listening on http://127.0.0.1:" "$relay_pid"; then
      relay_url=$(sed -n 's/^listening on //p' "$work/relay.out" | head -n 1)
      relay_targets=("relay,chat,gpt-4o-mini,$relay_url/v1/chat/completions")
      relay_stream=("relay-chat,chat-stream,gpt-4o-mini,$relay_url/v1/chat/completions")
    fi
  fi
  if wants c1; then
    echo "(e) concurrency 1: $C1_ROUNDS rounds of $C1_REQUESTS requests per target" >&2
    # shellcheck disable=SC2086
    timeout 1200 "$client_bin" seq --rounds "$C1_ROUNDS" --requests "$C1_REQUESTS" --warmup 500 $reset \
      "${chat_targets[0]}" "${relay_targets[@]}" "${chat_targets[@]:1}" | sed 's/^ROUND /c1 /; s/^ERRORS /c1-errors /' | tee -a "$results" >&2
  fi
  if wants stream; then
    echo "(f) streams at $RATE req/s: $ROUNDS rounds of ${STREAM_SECS}s per target" >&2
    # shellcheck disable=SC2086
    timeout 1200 "$client_bin" paced --rounds "$ROUNDS" --secs "$STREAM_SECS" --rate "$RATE" $reset \
      "fake-chat,chat-stream,gpt-4o-mini,$fake_url/v1/chat/completions" \
      "fake-messages,messages-stream,claude-haiku-4-5,$fake_url/v1/messages" "${relay_stream[@]}" \
      "serve-responses,responses-stream,gpt,$serve_url/v1/responses" \
      "serve-messages,messages-stream,gpt,$serve_url/v1/messages" | sed 's/^ROUND /stream /; s/^ERRORS /stream-errors /' \
      | tee -a "$results" >&2
  fi
  if wants up; then
    echo "(g) non-streaming at $RATE req/s: $ROUNDS rounds of ${UP_SECS}s per target" >&2
    # shellcheck disable=SC2086
    timeout 1200 "$client_bin" paced --rounds "$ROUNDS" --secs "$UP_SECS" --rate "$RATE" $reset \
      --pid "up=$up_pid" "${chat_targets[@]}" | sed 's/^ROUND /rate /; s/^ERRORS /rate-errors /; s/^MEM /ratemem /' | tee -a "$results" >&2
    served=$(gateway_requests "$up_url")
    soak_rounds=$(awk -v want="$UP_CALLS" -v have="${served:-0}" -v r="$RATE" -v s="$SOAK_SECS" \
      'BEGIN { n = (want - have) / (r * s); printf "%d", (n > int(n)) ? int(n) + 1 : (n > 0 ? n : 0) }')
    echo "(g) soak: up has answered $served calls; $soak_rounds rounds of ${SOAK_SECS}s at $RATE req/s" >&2
    echo "side up before-soak $served" >>"$results"
    if [[ $soak_rounds -gt 0 ]]; then
      # shellcheck disable=SC2086
      timeout $((soak_rounds * (SOAK_SECS + 5) + 60)) "$client_bin" paced --rounds "$soak_rounds" \
        --secs "$SOAK_SECS" --warmup-secs 0 --rate "$RATE" $reset --pid "up=$up_pid" \
        "up,chat,gpt,$up_url/v1/chat/completions" | sed 's/^ROUND /soak /; s/^ERRORS /soak-errors /; s/^MEM /soakmem /' \
        | tee -a "$results" >&2
    fi
    echo "side up served $(gateway_requests "$up_url") $(kb "$up_pid" VmRSS) $(kb "$up_pid" VmHWM)" >>"$results"
  fi
  echo "side serve served $(gateway_requests "$serve_url") $(kb "$serve_pid" VmRSS) $(kb "$serve_pid" VmHWM)" \
    >>"$results"
  stop "$serve_pid"
  stop "$up_pid"
fi

[[ -n "${RESULTS:-}" ]] && cp "$results" "$RESULTS"
if wants wrk; then
  mode="wrk, $CONC connections each paced to $RATE/$CONC req/s by a Lua delay() of ${pause_ms} ms (closed loop, not wrk2)"
  [[ $have_oha -eq 1 ]] && mode="oha -q $RATE -c $CONC (constant rate)"
  echo
  echo "gateway load, $(nproc) cores shared by load generator, fake and servers; $DURATION per phase"
  echo "(a) paced: $mode; (b) saturation: wrk -t$THREADS -c$CONC"
  python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 2:
        rows[(f[0], f[1])] = f[2:]
def lat(label):
    r = rows.get((label, "paced"))
    return (float(r[0]), int(r[1]) / 1000, int(r[2]) / 1000, int(r[4])) if r else None
def sat(label):
    r = rows.get((label, "sat"))
    return (float(r[0]), int(r[1]) / 1000, int(r[2]) / 1000, int(r[4])) if r else None
def mem(label):
    r = rows.get((label, "mem"))
    return tuple(int(x) / 1024 for x in r) if r else None
def trips(label):
    r = rows.get((label, "trips"))
    return (int(r[0]), int(r[1])) if r and int(r[1]) > 0 else None
base_l, base_s = lat("fake"), sat("fake")
names = {"fake": "fake direct", "up": "gateway (helix up)", "serve": "gateway (serve)",
         "redis": "serve + redis", "litellm": "LiteLLM proxy"}
print(f"{'':20} {'paced rps':>9} {'p50 ms':>7} {'p99 ms':>7} {'+p50':>7} {'+p99':>7} {'err':>4} | "
      f"{'sat rps':>8} {'p50 ms':>7} {'p99 ms':>8} {'ratio':>6} {'err':>4} | "
      f"{'RSS idle':>8} {'paced':>6} {'load':>6} {'HWM':>6}")
for label in ("fake", "up", "serve", "redis", "litellm"):
    l, s, m = lat(label), sat(label), mem(label)
    if not (l or s):
        continue
    a = (f"{l[0]:9.0f} {l[1]:7.3f} {l[2]:7.3f} {l[1] - base_l[1]:+7.3f} {l[2] - base_l[2]:+7.3f} {l[3]:4d}"
         if l else f"{'-':>9} {'-':>7} {'-':>7} {'-':>7} {'-':>7} {'-':>4}")
    b = (f"{s[0]:8.0f} {s[1]:7.3f} {s[2]:8.3f} {s[0] / base_s[0]:6.2f} {s[3]:4d}" if s else f"{'-':>8}")
    c = f"{m[0]:6.1f}MB {m[1]:4.1f}MB {m[2]:4.1f}MB {m[3]:4.1f}MB" if m else ""
    print(f"{names[label]:20} {a} | {b} | {c}")
t = trips("redis")
if t:
    print(f"Redis round trips per proxied request (gateway alone, redis_url set): {t[0] / t[1]:.3f} "
          f"({t[0]} breaker calls for {t[1]} requests; without Redis: none)")
PY
fi
if wants c1 || wants stream || wants up; then
  echo
  echo "gateway_client phases, $(nproc) cores shared by client, fake and servers; load average before: $load_before," \
    "after: $(cut -d" " -f1-3 /proc/loadavg)"
  python3 - "$results" "$RATE" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
rate = sys.argv[2]
def rounds(tag):
    d = {}
    for f in rows:
        if len(f) == 14 and f[0] == tag:
            p50, p90, p99, mx, t50, t99, lag = map(float, f[6:13])
            d.setdefault(f[1], {})[int(f[2])] = dict(n=int(f[3]), err=int(f[4]), skipped=int(f[5]), p50=p50,
                p99=p99, max=mx, t50=t50, t99=t99, lag=lag, helix=int(f[13]))
    return d
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def stat(d, label, key):
    return med([r[key] for r in d[label].values()])
def added(d, label, base, key):
    common = sorted(set(d.get(label, {})) & set(d.get(base, {})))
    diffs = [d[label][r][key] - d[base][r][key] for r in common]
    return med(diffs), diffs
def line(d, label, base, key, target, what):
    v, diffs = added(d, label, base, key)
    spread = f"rounds {min(diffs):+.0f}..{max(diffs):+.0f}" if diffs else "no rounds"
    verdict = "" if target is None else ("met" if v <= target else "NOT MET")
    goal = "" if target is None else f"target <= {target} us"
    print(f"  {what:44} {v:+8.1f} us  ({spread}; {goal}) {verdict}")
def errors(tag):
    for f in rows:
        if f and f[0] == tag + "-errors":
            print(f"  errors of {f[1]} in round {f[2]}: {' '.join(f[3:])}")
def table(d, stream=False):
    print(f"  {'':18} {'rounds':>6} {'n':>7} {'err':>4} {'skip':>4} {'p50 us':>8} {'p99 us':>8} {'max us':>9}"
          + (f" {'ttft50':>8} {'ttft99':>8} {'helix':>6}" if stream else "") + f" {'lag99':>7}")
    for label, rs in d.items():
        n = sum(r["n"] for r in rs.values())
        print(f"  {label:18} {len(rs):6d} {n:7d} {sum(r['err'] for r in rs.values()):4d} "
              f"{sum(r['skipped'] for r in rs.values()):4d} {stat(d, label, 'p50'):8.1f} {stat(d, label, 'p99'):8.1f} "
              f"{stat(d, label, 'max'):9.1f}"
              + (f" {stat(d, label, 't50'):8.1f} {stat(d, label, 't99'):8.1f} "
                 f"{sum(r['helix'] for r in rs.values()) / max(n, 1):6.0%}" if stream else "")
              + f" {stat(d, label, 'lag'):7.1f}")
c1 = rounds("c1")
if c1:
    print("(e) concurrency 1, sequential non-streaming chat (medians over rounds):")
    table(c1)
    errors("c1")
    if "relay" in c1:
        # a byte relay doing no work: what the second hop alone costs on this machine
        line(c1, "relay", "fake", "p50", None, "added p50, relay (the floor)")
        line(c1, "relay", "fake", "p99", None, "added p99, relay (the floor)")
    for gw in ("serve", "up"):
        line(c1, gw, "fake", "p50", 60, f"added p50, {gw}")
        line(c1, gw, "fake", "p99", 150, f"added p99, {gw}")
        if "relay" in c1:
            line(c1, gw, "relay", "p50", None, f"added p50, {gw} over the relay")
st = rounds("stream")
if st:
    print(f"(f) streams at {rate} req/s, open loop (medians over rounds; helix: share ending with ': helix'):")
    table(st, stream=True)
    errors("stream")
    if "relay-chat" in st:
        line(st, "relay-chat", "fake-chat", "p99", None, "added p99, relay (the floor)")
        line(st, "relay-chat", "fake-chat", "t99", None, "added TTFT p99, relay (the floor)")
    line(st, "serve-responses", "fake-chat", "p99", 1000, "added p99, Responses -> Chat (vs Chat direct)")
    line(st, "serve-messages", "fake-messages", "p99", 1000, "added p99, Messages -> Chat (vs Anthropic)")
    line(st, "serve-messages", "fake-chat", "p99", 1000, "added p99, Messages -> Chat (vs Chat direct)")
    line(st, "serve-responses", "fake-chat", "t99", 500, "added TTFT p99, Responses -> Chat")
    line(st, "serve-messages", "fake-messages", "t99", 500, "added TTFT p99, Messages (vs Anthropic)")
    line(st, "serve-messages", "fake-chat", "t99", 500, "added TTFT p99, Messages (vs Chat direct)")
    line(st, "serve-responses", "fake-chat", "t50", None, "added TTFT p50, Responses -> Chat")
    line(st, "serve-messages", "fake-messages", "t50", None, "added TTFT p50, Messages (vs Anthropic)")
ra = rounds("rate")
if ra:
    print(f"(g) non-streaming chat at {rate} req/s, open loop (medians over rounds):")
    table(ra)
    errors("rate")
    for gw in ("serve", "up"):
        line(ra, gw, "fake", "p50", None, f"added p50, {gw}")
        line(ra, gw, "fake", "p99", 1000, f"added p99, {gw}")
so = rounds("soak")
if so:
    r = so["up"]
    ks = sorted(r)
    print(f"  up alone, soak: {len(ks)} rounds, p99 first/median/last round "
          f"{r[ks[0]]['p99']:.0f} / {stat(so, 'up', 'p99'):.0f} / {r[ks[-1]]['p99']:.0f} us, "
          f"errors {sum(x['err'] for x in r.values())}, skipped {sum(x['skipped'] for x in r.values())}")
    errors("soak")
mem = [f for f in rows if f and f[0] in ("ratemem", "soakmem")]
side = {(f[1], f[2]): f[3:] for f in rows if f and f[0] == "side"}
# the client counts the calls it sent in one run; rebase them on what up had answered before the soak
before = int(side.get(("up", "before-soak"), ["0"])[0])
rate_sent = max([int(f[3]) for f in mem if f[0] == "ratemem"], default=0)
for f in mem:
    f[3] = str(int(f[3]) + (before if f[0] == "soakmem" else before - rate_sent))
if mem or side:
    print("memory of the side-by-side processes (MB):")
    for who in ("up", "serve"):
        idle = side.get((who, "idle"))
        served = side.get((who, "served"))
        if idle and served:
            print(f"  {who:5}: after start-up {int(idle[0]) / 1024:6.1f}; at the end, after {int(served[0]):,} calls "
                  f"answered: VmRSS {int(served[1]) / 1024:6.1f}, VmHWM {int(served[2]) / 1024:6.1f}")
    if mem:
        print("  up under load: calls answered so far (all phases) -> VmRSS now / peak sampled / VmHWM")
        step = max(1, len(mem) // 12)
        for f in mem[::step] + ([mem[-1]] if (len(mem) - 1) % step else []):
            print(f"    {f[0]:8} round {f[2]:>3}: {int(f[3]):>8,} calls -> {int(f[4]) / 1024:6.1f} / "
                  f"{int(f[5]) / 1024:6.1f} / {int(f[6]) / 1024:6.1f}")
        peak = max(int(f[5]) for f in mem) / 1024
        hwm = max(int(f[6]) for f in mem) / 1024
        print(f"  up: peak VmRSS sampled under load {peak:.1f} MB, VmHWM {hwm:.1f} MB (target <= 100 MB): "
              + ("met" if max(peak, hwm) <= 100 else "NOT MET"))
PY
fi
