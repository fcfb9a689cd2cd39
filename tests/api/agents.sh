#!/usr/bin/env bash
# Real coding-agent CLIs through the breaker-gateway: Claude Code and Codex, installed from npm at
# pinned versions into target/agents, each completes a tool-call -> tool-result -> text loop with
# the gateway in front of the fake provider (tests/bin/fake_provider.rs) in its `agent` mode: the
# fake calls the CLI's shell tool with a command that writes a file, the CLI runs it, and the fake
# answers the tool result with "done: <result>".
#
# Scenarios, each in its own workspace and HOME:
#   1. claude-anthropic: Claude Code (Anthropic Messages) -> `claude-*` chain -> anthropic deployment
#   2. claude-openai:    Claude Code -> `claude-via-openai` chain -> openai deployment (translated)
#   3. codex-responses:  Codex exec (OpenAI Responses API, /v1/responses) -> `gpt-helix` chain ->
#                        openai deployment (translated)
# A scenario passes when the CLI exits 0, the file holds the scenario's marker, and the CLI's final
# text (stream-json `result`, codex --json's last agent_message) has the fake's "done:" answer with
# the marker. Then no key (the upstream's, the CLIs' gateway keys) may appear in helix's output.
#
# Loopback only: installing the CLIs is the one step that uses the network (the npm registry);
# the rest runs in a fresh network namespace (`unshare -n`, only `lo`) when the machine allows one,
# and the CLIs are told not to phone home anyway (telemetry, update checks, plugin syncs off).
# Every step is bounded in time; everything but the installed CLIs lives in a scratch directory
# that is removed at the end.
#
# usage: tests/api/agents.sh HELIX_BINARY FAKE_PROVIDER_BINARY
#   AGENTS_SCENARIOS="claude-anthropic codex-responses" runs only those;
#   AGENTS_KEEP=1 keeps the scratch directory (its path is printed);
#   AGENTS_CODEX_CONFIG='web_search = "disabled"' adds top-level lines to Codex's config.toml (by
#   default Codex runs as it comes, declaring its hosted web_search and namespace tools).
set -euo pipefail
helix_bin=$(realpath "$1")
fake_bin=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
agents="$repo/target/agents"
claude_version=2.1.332
codex_version=0.171.0
claude_bin="$agents/node_modules/.bin/claude"
codex_bin="$agents/node_modules/.bin/codex"

installed() {
  [[ -x "$claude_bin" && -x "$codex_bin" ]] || return 1
  [[ "$(timeout 60 "$claude_bin" --version 2>/dev/null)" == "$claude_version (Claude Code)" ]] || return 1
  [[ "$(timeout 60 "$codex_bin" --version 2>/dev/null)" == "codex-cli $codex_version" ]] || return 1
}

if [[ -z "${HELIX_AGENTS_IN_NETNS:-}" ]]; then
  if ! installed; then
    echo "installing @anthropic-ai/claude-code@$claude_version and @openai/codex@$codex_version into target/agents"
    mkdir -p "$agents"
    timeout 900 npm install --prefix "$agents" --no-audit --no-fund --save-exact --loglevel=error \
      "@anthropic-ai/claude-code@$claude_version" "@openai/codex@$codex_version" >&2
    installed || { echo "the agent CLIs did not install (or report other versions)" >&2; exit 1; }
  fi
  # the rest in a network namespace of our own: nothing can reach past loopback
  if [[ -z "${HELIX_AGENTS_NO_NETNS:-}" ]] && command -v unshare >/dev/null && command -v ip >/dev/null; then
    for flags in -n -rn; do
      if unshare "$flags" sh -c 'ip link set lo up' 2>/dev/null; then
        exec env HELIX_AGENTS_IN_NETNS=1 unshare "$flags" \
          bash -c 'ip link set lo up && exec bash "$0" "$@"' "$here/agents.sh" "$helix_bin" "$fake_bin"
      fi
    done
  fi
  echo "note: no network namespace here; the CLIs are configured to stay on loopback" >&2
fi

work=$(mktemp -d)
cleanup() {
  for pid in "${helix_pid:-}" "${fake_pid:-}"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  if [[ -n "${AGENTS_KEEP:-}" ]]; then echo "scratch directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# wait_for, random_hex, start_fake
source "$here/lib.sh"


# Fresh random keys each run, so finding one in a log can only mean it leaked. The fake accepts
# only the upstream key, so a success also proves the gateway sent the deployment's key.
export HELIX_AGENTS_UPSTREAM_KEY="sk-upstream-$(random_hex)"
export HELIX_AGENTS_CLAUDE_KEY="sk-helix-claude-$(random_hex)"
export HELIX_AGENTS_CODEX_KEY="sk-helix-codex-$(random_hex)"

start_fake "$fake_bin" "$HELIX_AGENTS_UPSTREAM_KEY"

# Claude Code asks for whatever --model says: claude-sonnet-4-5 goes to the glob chain (an
# Anthropic deployment, passed through), claude-via-openai to its exact chain (an OpenAI
# deployment: the gateway translates Messages <-> Chat Completions). Codex asks for gpt-helix over
# the Responses API. Breakers stay closed; retries are quick; agents' requests are ~100 KB.
cat >"$work/helix.toml" <<EOF
[breaker_gateway]
max_retries = 1
retry_base_backoff_ms = 10
retry_max_backoff_ms = 100
connect_timeout_ms = 2000
first_byte_timeout_ms = 20000
idle_timeout_ms = 20000
total_timeout_ms = 60000

[breaker_gateway.breaker]
window_size = 1000
minimum_calls = 1000

[[breaker_gateway.deployments]]
id = "an-agent"
provider = "anthropic"
base_url = "$fake_url"
model = "claude-agent-upstream"
api_key_env = "HELIX_AGENTS_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "oa-claude"
provider = "openai"
base_url = "$fake_url"
model = "gpt-for-claude"
api_key_env = "HELIX_AGENTS_UPSTREAM_KEY"

[[breaker_gateway.deployments]]
id = "oa-codex"
provider = "openai"
base_url = "$fake_url"
model = "gpt-for-codex"
api_key_env = "HELIX_AGENTS_UPSTREAM_KEY"

[[breaker_gateway.models]]
name = "claude-*"
chain = ["an-agent"]

[[breaker_gateway.models]]
name = "claude-via-openai"
chain = ["oa-claude"]

[[breaker_gateway.models]]
name = "gpt-helix"
chain = ["oa-codex"]

[[breaker_gateway.keys]]
key_env = "HELIX_AGENTS_CLAUDE_KEY"
project = "agents"

[[breaker_gateway.keys]]
key_env = "HELIX_AGENTS_CODEX_KEY"
project = "agents"
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

# fake_ctl METHOD PATH [JSON]: the fake's control API (/_fake/...), bounded
fake_ctl() {
  python3 - "$fake_url" "$@" <<'PY'
import sys, urllib.request
url, method, path = sys.argv[1:4]
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(url + path, data=data, method=method, headers={"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as res:
    sys.stdout.write(res.read().decode())
PY
}

# agent_mode TOOL ARGUMENTS_JSON: the fake's default mode for the next scenario
agent_mode() {
  fake_ctl POST /_fake/reset >/dev/null
  fake_ctl PUT /_fake/default "{\"mode\": \"agent\", \"tool\": \"$1\", \"arguments\": $2}" >/dev/null
}

# what the fake saw during a scenario, one line per upstream request
upstream_summary() {
  fake_ctl GET /_fake/requests | python3 -c '
import json, sys
requests = json.load(sys.stdin)
if not requests:
    print("    upstream: no request reached the fake provider")
for r in requests:
    body = r["body"] if isinstance(r["body"], dict) else {}
    msgs = body.get("messages") or []
    roles = ",".join(m.get("role", "?") for m in msgs)
    mode = (r.get("mode") or {}).get("mode", "rejected")
    print("    upstream %s %s model=%s stream=%s mode=%s messages=[%s]" % (
        r["method"], r["path"], body.get("model"), body.get("stream"), mode, roles))
'
}

# final_text KIND FILE: the CLI's final text; "ERROR: ..." lines for what went wrong
final_text() {
  python3 - "$1" "$2" <<'PY'
import json, sys
kind, path = sys.argv[1:3]
final, errors = None, []
try:
    lines = open(path, errors="replace").readlines()
except OSError as e:
    lines, errors = [], ["no output: %s" % e]
for line in lines:
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if kind == "claude" and event.get("type") == "result":
        final = event.get("result")
        if event.get("is_error") or event.get("subtype") != "success":
            errors.append("result %s: %s" % (event.get("subtype"), event.get("result")))
    elif kind == "codex":
        item = event.get("item") or {}
        if event.get("type") == "item.completed" and item.get("type") == "agent_message":
            final = item.get("text")
        elif event.get("type") in ("error", "turn.failed"):
            errors.append(event.get("message") or json.dumps(event.get("error")))
        elif event.get("type") == "item.completed" and item.get("type") == "error" \
                and "metadata" not in (item.get("message") or ""):
            errors.append(item.get("message"))
print(final if final is not None else "")
for e in errors[-3:]:
    print("ERROR: " + str(e)[:1500])
PY
}

passed=0
failed=0
# check NAME DIR MARKER RC claude|codex: the verdict on one scenario from its directory
check() {
  local name=$1 dir=$2 marker=$3 rc=$4 kind=$5 problems=()
  local text
  text=$(final_text "$kind" "$dir/out.jsonl" || true)
  [[ "$rc" == 0 ]] || problems+=("exit code $rc")
  if [[ ! -f "$dir/ws/agent_out.txt" ]]; then
    problems+=("no agent_out.txt: the tool did not run")
  elif [[ "$(cat "$dir/ws/agent_out.txt")" != "$marker" ]]; then
    problems+=("agent_out.txt holds $(head -c 200 "$dir/ws/agent_out.txt")")
  fi
  local answer
  answer=$(grep -v '^ERROR: ' <<<"$text" || true)
  if [[ "$answer" != *"done:"* || "$answer" != *"$marker"* ]]; then
    problems+=("final text is not the fake's done answer: $(head -c 300 <<<"$answer" | tr '\n' ' ')")
  fi
  if (( ${#problems[@]} == 0 )); then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $(IFS=';'; echo "${problems[*]}")"
    grep '^ERROR: ' <<<"$text" | sed 's/^/    /' | head -n 10 || true
    upstream_summary | head -n 20 || true
    grep -vE 'WARNING: proceeding|Reading additional input' "$dir/err.txt" | tail -n 5 | sed 's/^/    stderr: /' || true
    failed=$((failed + 1))
  fi
}

wanted() { [[ -z "${AGENTS_SCENARIOS:-}" || " $AGENTS_SCENARIOS " == *" $1 "* ]]; }

# run_claude NAME MODEL: Claude Code in print mode, only the Bash tool allowed without a prompt
run_claude() {
  local name=$1 model=$2 dir="$work/$1"
  local marker="helix-agent-ok-$name-$(random_hex)"
  mkdir -p "$dir/ws" "$dir/home"
  agent_mode Bash "{\"command\": \"echo $marker > agent_out.txt && cat agent_out.txt\"}"
  local rc=0
  (cd "$dir/ws" && exec env -i PATH="$PATH" HOME="$dir/home" CLAUDE_CONFIG_DIR="$dir/home/.claude" \
    TERM=dumb LANG=C.UTF-8 ANTHROPIC_BASE_URL="$gateway" ANTHROPIC_API_KEY="$HELIX_AGENTS_CLAUDE_KEY" \
    DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    timeout 180 "$claude_bin" -p "Write agent_out.txt with the shell, then report." \
    --output-format stream-json --verbose --model "$model" --allowedTools Bash --no-session-persistence \
    </dev/null >"$dir/out.jsonl" 2>"$dir/err.txt") || rc=$?
  check "$name: Claude Code $claude_version, --model $model" "$dir" "$marker" "$rc" claude
}

# run_codex NAME MODEL: codex exec with a provider of its own pointing at the gateway's Responses API
run_codex() {
  local name=$1 model=$2 dir="$work/$1"
  local marker="helix-agent-ok-$name-$(random_hex)"
  mkdir -p "$dir/ws" "$dir/home/codex"
  cat >"$dir/home/codex/config.toml" <<EOF
model = "$model"
model_provider = "helix"
check_for_update_on_startup = false
${AGENTS_CODEX_CONFIG:-}

[analytics]
enabled = false

[features]
plugins = false

[model_providers.helix]
name = "helix"
base_url = "$gateway/v1"
env_key = "HELIX_AGENTS_CODEX_KEY"
wire_api = "responses"
EOF
  agent_mode exec_command "{\"cmd\": \"echo $marker > agent_out.txt && cat agent_out.txt\"}"
  local rc=0
  # Codex's own sandbox is off: it runs commands through helper binaries it refuses to create
  # when CODEX_HOME is under the temporary directory (as here, and as a fresh clone in /tmp is);
  # the run is contained by its scratch workspace and, where possible, a network namespace
  (cd "$dir/ws" && exec env -i PATH="$PATH" HOME="$dir/home" CODEX_HOME="$dir/home/codex" TERM=dumb \
    LANG=C.UTF-8 HELIX_AGENTS_CODEX_KEY="$HELIX_AGENTS_CODEX_KEY" \
    timeout 180 "$codex_bin" exec --json --skip-git-repo-check --ephemeral --dangerously-bypass-approvals-and-sandbox \
    "Write agent_out.txt with the shell, then report." \
    </dev/null >"$dir/out.jsonl" 2>"$dir/err.txt") || rc=$?
  check "$name: Codex $codex_version exec, Responses API, model $model" "$dir" "$marker" "$rc" codex
}

if wanted claude-anthropic; then run_claude claude-anthropic claude-sonnet-4-5; fi
if wanted claude-openai; then run_claude claude-openai claude-via-openai; fi
if wanted codex-responses; then run_codex codex-responses gpt-helix; fi

kill -TERM "$helix_pid"
if ! timeout 60 tail --pid="$helix_pid" -f /dev/null; then
  echo "FAIL helix up did not stop within 60 s of SIGTERM"
  failed=$((failed + 1))
fi
wait "$helix_pid" || { echo "helix up did not stop cleanly on SIGTERM" >&2; tail -n 20 "$work/up.err" >&2; }
kill -TERM "$fake_pid"
wait "$fake_pid" 2>/dev/null || true

leaks=0
for var in HELIX_AGENTS_UPSTREAM_KEY HELIX_AGENTS_CLAUDE_KEY HELIX_AGENTS_CODEX_KEY; do
  if grep -qF -- "${!var}" "$work/up.out" "$work/up.err"; then
    echo "the key in $var appears in helix's output:" >&2
    grep -nF -- "${!var}" "$work/up.out" "$work/up.err" | cut -c1-300 | head -5 >&2
    leaks=$((leaks + 1))
  fi
done
log_lines=$(cat "$work/up.out" "$work/up.err" | wc -l)
if [[ $leaks -eq 0 ]]; then
  echo "PASS no key in helix's output ($log_lines lines, debug)"
  passed=$((passed + 1))
else
  echo "FAIL $leaks keys in helix's output"
  failed=$((failed + 1))
fi

echo "agent tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
