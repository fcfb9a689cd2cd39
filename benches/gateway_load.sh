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
#
# Loopback only; bounded: every load phase lasts DURATION (plus a 2 s warm-up); everything started
# is stopped by pid; the scratch directory is removed at the end.
#
# usage: benches/gateway_load.sh   (env: DURATION=10s CONC=32 RATE=2000 THREADS=1 REDIS=1 LITELLM_VENV=
#        HELIX_BIN= FAKE_BIN=: prebuilt binaries to measure instead of building, e.g. to compare two
#        versions of the gateway in turn)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
DURATION=${DURATION:-10s}
CONC=${CONC:-32}
RATE=${RATE:-2000}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2s}
REDIS=${REDIS:-1}

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

if ! command -v wrk >/dev/null 2>&1; then
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
