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
# the marker.
#
# Then the same CLIs as the orchestrator runs them, as `kind = "agent"` phases of pipelines started
# with `helix run` (each with the key the gateway mints for its attempt, never one of ours):
#   4. pipeline-claude: a Claude Code phase writes a file and passes its gates; its tool call is an
#                       `execute_tool Bash` span of the run's trace, its cost is on the phase
#   5. pipeline-codex:  the same with Codex over the Responses API
#   6. pipeline-retry:  a check fails once; the next attempt's prompt (as the provider received it)
#                       carries the check's error output
#   7. pipeline-budget: a phase whose max_cost_usd the first model call spends: the gateway refuses
#                       the next one, the phase ends needs_human with failure class budget_exceeded
#   8. example-agent:   the README's examples/agent-pipeline with its mini agent (no CLI needed)
#   9. claude-telemetry: scenario 1 with Claude Code's own OpenTelemetry export on
#                       (CLAUDE_CODE_ENABLE_TELEMETRY=1, logs and metrics over OTLP/HTTP protobuf)
#                       pointed at the collector: its api_request events are LLM calls whose cost
#                       in the project's cost table is the cost Claude Code reports itself, its Bash
#                       tool_result is a tool call, all in one trace per session
# Then no key (the upstream's, the CLIs' gateway keys, the minted ones) may appear in helix's
# output.
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
  for pid in "${helix_pid:-}" "${fake_pid:-}" "${ex_helix_pid:-}" "${ex_fake_pid:-}"; do
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

[[breaker_gateway.prices]]
model = "claude-agent-upstream"
input = 3.0
output = 15.0

[[breaker_gateway.prices]]
model = "gpt-for-codex"
input = 2.5
output = 10.0

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
orchestrator=$(grep -E '^  orchestrator +http://' "$work/up.out" | awk '{print $2}')
collector=$(grep -E '^  trace-collector +http://' "$work/up.out" | awk '{print $2}')
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

# extra environment of the next run_claude (scenario 9 turns telemetry on with it)
claude_extra_env=()

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
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 "${claude_extra_env[@]}" \
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

# telemetry_check NAME DIR PROJECT: Claude Code's telemetry in the collector (see scenario 9)
telemetry_check() {
  local name=$1 dir=$2 project=$3 out
  out=$(python3 - "$collector" "$project" "$dir/out.jsonl" <<'PY'
import json, sys, time, urllib.request
collector, project, transcript = sys.argv[1:4]
def get(path):
    with urllib.request.urlopen(collector + path, timeout=10) as res:
        return json.load(res)
def flatten(nodes, out):
    for n in nodes or []:
        out.append(n["span"])
        flatten(n.get("children"), out)
    return out
reported = None
for line in open(transcript, errors="replace"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("type") == "result":
        reported = event.get("total_cost_usd")
problems, row, spans, traces = [], None, [], []
deadline = time.time() + 30
while time.time() < deadline:
    rows = get("/v1/costs?group_by=project")["rows"]
    row = next((r for r in rows if r["key"] == project), None)
    traces = get("/v1/traces?project=" + project)["traces"]
    if row and row["llm_calls"] >= 2 and row["tool_calls"] >= 1 and traces:
        break
    time.sleep(0.5)
if not row:
    problems.append("no cost row for project %s" % project)
else:
    if row["llm_calls"] < 2 or row["tool_calls"] < 1:
        problems.append("expected >= 2 LLM calls and >= 1 tool call: %s" % row)
    if reported is None:
        problems.append("Claude Code reported no total_cost_usd")
    elif abs(row["cost_usd"] - reported) > 1e-6:
        problems.append("cost table says %s, Claude Code says %s" % (row["cost_usd"], reported))
sessions = [t for t in traces if t["name"].startswith("claude-code session ")]
if len(sessions) != 1:
    problems.append("expected one claude-code session trace: %s" % [t["name"] for t in traces])
else:
    spans = flatten(get("/v1/traces/" + sessions[0]["trace_id"])["spans"], [])
    kinds = {(s["kind"], s["name"]) for s in spans}
    if ("tool_call", "execute_tool Bash") not in kinds:
        problems.append("no execute_tool Bash tool call in %s" % sorted(kinds)[:20])
    if not any(k == "llm_call" and n.startswith("chat ") for k, n in kinds):
        problems.append("no chat LLM call in %s" % sorted(kinds)[:20])
print("\n".join(problems))
PY
) || out="the check itself failed: $out"
  if [[ -z "$out" ]]; then
    echo "PASS $name: Claude Code's OTLP logs and metrics in the collector, cost as it reports it"
    passed=$((passed + 1))
  else
    echo "FAIL $name: Claude Code's telemetry"
    sed 's/^/    /' <<<"$out" | head -n 20
    failed=$((failed + 1))
  fi
}

if wanted claude-telemetry; then
  claude_extra_env=(CLAUDE_CODE_ENABLE_TELEMETRY=1 OTEL_LOGS_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf "OTEL_EXPORTER_OTLP_ENDPOINT=$collector"
    OTEL_LOGS_EXPORT_INTERVAL=500 OTEL_METRIC_EXPORT_INTERVAL=1000
    OTEL_RESOURCE_ATTRIBUTES=helix.project=cc-telemetry)
  run_claude claude-telemetry claude-sonnet-4-5
  claude_extra_env=()
  telemetry_check claude-telemetry "$work/claude-telemetry" cc-telemetry
fi

# run_pipeline NAME PROFILE MODEL TOOL ARGS_JSON EXTRA_TOML: a one-phase pipeline with an agent
# phase, run by the orchestrator of `helix up` (`helix run --json`); its final run is $dir/run.json
run_pipeline() {
  local name=$1 profile=$2 model=$3 tool=$4 args=$5 extra=$6 dir="$work/$1"
  local program=$claude_bin
  [[ "$profile" == codex ]] && program=$codex_bin
  mkdir -p "$dir/ws"
  cat >"$dir/ws/pipeline.toml" <<EOF
name = "$name"

[[phase]]
name = "develop"
kind = "agent"
agent = "$profile"
program = "$program"
model = "$model"
prompt = "Write agent_out.txt with the shell, then report."
timeout = "180s"
$extra
EOF
  agent_mode "$tool" "$args"
  local rc=0
  timeout 400 "$helix_bin" run --json --url "$orchestrator" --project "$name" "$dir/ws/pipeline.toml" \
    >"$dir/run.jsonl" 2>"$dir/run.err" || rc=$?
  tail -n 1 "$dir/run.jsonl" >"$dir/run.json"
  echo "$rc" >"$dir/rc"
}

# pipeline_check NAME DESCRIPTION PYTHON: the verdict on a pipeline scenario; PYTHON sees `run`
# (the final run), `attempts` (of its phase), `spans` (its trace's), `requests` (what the fake
# received) and `marker`, and appends to `problems`
pipeline_check() {
  local name=$1 what=$2 code=$3 dir="$work/$1"
  local out
  out=$(python3 - "$dir/run.json" "$collector" "$fake_url" "${marker:-}" "$code" <<'PY'
import json, sys, time, urllib.request
path, collector, fake, marker, code = sys.argv[1:6]
problems = []
try:
    run = json.load(open(path))
    run = run.get("run", run)
except (OSError, ValueError) as e:
    run = {}
    problems.append("no final run from helix run: %s" % e)
def get(url):
    with urllib.request.urlopen(url, timeout=10) as res:
        return json.load(res)
def flatten(nodes, out):
    for n in nodes or []:
        out.append(n["span"])
        flatten(n.get("children"), out)
spans = []
trace = run.get("trace_id")
deadline = time.time() + 20
while trace and time.time() < deadline:
    try:
        spans = []
        flatten(get("%s/v1/traces/%s" % (collector, trace)).get("spans"), spans)
    except Exception:
        pass
    if any(s.get("kind") == "run" for s in spans) and any(s.get("kind") == "llm_call" for s in spans):
        break
    time.sleep(0.2)
requests = get(fake + "/_fake/requests")
phases = (run.get("phases") or []) + ([run["failed"]] if run.get("failed") else [])
attempts = [a for p in phases for a in p.get("attempts", [])]
exec(code)
print("\n".join(problems))
PY
) || out="the check itself failed: $out"
  if [[ -z "$out" ]]; then
    echo "PASS $name: $what"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $what"
    sed 's/^/    /' <<<"$out" | head -n 20
    tail -n 5 "$dir/run.err" | sed 's/^/    helix run: /'
    upstream_summary | head -n 10 || true
    failed=$((failed + 1))
  fi
}

# what every passing agent pipeline shows: the tool's file, the tool call in the run's trace, the
# cost metered on the attempt's key, the gateway's calls in the run's project
passed_pipeline_checks='
if run.get("status") != "succeeded":
    problems.append("run %s: %s" % (run.get("status"), run.get("reason")))
ws = run.get("workspace") or ""
try:
    if open(ws + "/agent_out.txt").read().strip() != marker:
        problems.append("agent_out.txt does not hold the marker")
except OSError as e:
    problems.append("no agent_out.txt in the final workspace: %s" % e)
agent = (attempts[-1] if attempts else {}).get("agent") or {}
if agent.get("tool_calls", 0) < 1 or agent.get("turns", 0) < 1:
    problems.append("the agent report has no tool call or too few turns: %s" % json.dumps(agent)[:400])
if not agent.get("cost_usd", 0) > 0:
    problems.append("no cost metered on the attempt key: %s" % json.dumps(agent)[:400])
tools = [s for s in spans if s.get("kind") == "tool_call" and s.get("name", "").startswith("execute_tool ")]
if not any(marker in json.dumps(s.get("attributes")) for s in tools):
    problems.append("no execute_tool span with the command: %s" % [s.get("name") for s in spans])
calls = [s for s in spans if s.get("kind") == "llm_call"]
if not calls or any(s.get("project") != run.get("project") for s in calls):
    problems.append("the gateway spans are not in the run project: %s" % [(s.get("name"), s.get("project")) for s in calls])
'

if wanted pipeline-claude; then
  marker="helix-pipeline-ok-claude-$(random_hex)"
  run_pipeline pipeline-claude claude-code claude-sonnet-4-5 Bash \
    "{\"command\": \"echo $marker > agent_out.txt && cat agent_out.txt\"}" \
    $'allowed_tools = ["Bash"]\nmax_cost_usd = 5\n\n[[phase.gate]]\nkind = "files_exist"\npaths = ["agent_out.txt"]'
  pipeline_check pipeline-claude "Claude Code $claude_version as an agent phase" "$passed_pipeline_checks"
fi
if wanted pipeline-codex; then
  marker="helix-pipeline-ok-codex-$(random_hex)"
  run_pipeline pipeline-codex codex gpt-helix exec_command \
    "{\"cmd\": \"echo $marker > agent_out.txt && cat agent_out.txt\"}" \
    $'max_cost_usd = 5\n\n[[phase.gate]]\nkind = "files_exist"\npaths = ["agent_out.txt"]'
  pipeline_check pipeline-codex "Codex $codex_version as an agent phase" "$passed_pipeline_checks"
fi
if wanted pipeline-retry; then
  marker="helix-pipeline-ok-retry-$(random_hex)"
  count="$work/pipeline-retry.count"
  gate_script="n=\$(cat $count 2>/dev/null || echo 0); echo \$((n + 1)) > $count; [ \$n -ge 1 ] || { echo 'error: the marker check ZQX-4711 failed in tests/test_app.py' >&2; exit 1; }"
  run_pipeline pipeline-retry claude-code claude-sonnet-4-5 Bash \
    "{\"command\": \"echo $marker > agent_out.txt && cat agent_out.txt\"}" \
    "allowed_tools = [\"Bash\"]
retries = 2

[[phase.gate]]
name = \"once\"
kind = \"command\"
shell = true
run = '''$gate_script'''"
  pipeline_check pipeline-retry "a failed check's output is in the next attempt's prompt" '
if run.get("status") != "succeeded" or len(attempts) != 2:
    problems.append("want success on the second attempt: %s after %d" % (run.get("status"), len(attempts)))
else:
    second = attempts[1].get("prompt") or ""
    if "What failed last time" not in second or "ZQX-4711" not in second:
        problems.append("the second prompt lacks the check output: %s" % second[:600])
    if "ZQX-4711" in (attempts[0].get("prompt") or ""):
        problems.append("the first prompt already had it")
    if not any("ZQX-4711" in json.dumps(r.get("body")) for r in requests):
        problems.append("Claude Code did not send the context to the provider")
'
fi
if wanted pipeline-budget; then
  marker=""
  run_pipeline pipeline-budget claude-code claude-sonnet-4-5 Bash '{"command": "echo working"}' \
    $'allowed_tools = ["Bash"]\nmax_cost_usd = 0.000001\nretries = 2'
  pipeline_check pipeline-budget "an agent phase over its max_cost_usd is stopped by the gateway" '
heal = (attempts[-1] if attempts else {}).get("heal") or {}
agent = (attempts[-1] if attempts else {}).get("agent") or {}
if run.get("status") != "needs_human":
    problems.append("run %s, want needs_human" % run.get("status"))
if len(attempts) != 1:
    problems.append("%d attempts: a spent budget is not retried" % len(attempts))
if heal.get("failure_class") != "budget_exceeded" or not agent.get("budget_exceeded"):
    problems.append("not reported as budget_exceeded: heal %s, agent %s" % (json.dumps(heal)[:300], json.dumps(agent)[:300]))
generate = [r for r in requests if r.get("path") == "/v1/messages"]
if len(generate) != 1:
    problems.append("%d model calls reached the provider, want 1 (the cap stops the second)" % len(generate))
'
fi

kill -TERM "$helix_pid"
if ! timeout 60 tail --pid="$helix_pid" -f /dev/null; then
  echo "FAIL helix up did not stop within 60 s of SIGTERM"
  failed=$((failed + 1))
fi
wait "$helix_pid" || { echo "helix up did not stop cleanly on SIGTERM" >&2; tail -n 20 "$work/up.err" >&2; }
kill -TERM "$fake_pid"
wait "$fake_pid" 2>/dev/null || true

# 8. example-agent: the README's "Agent pipeline: try it", as written, but with its own ports (the
#    fake's URL put into a copy of the example's helix.toml, services on port 0)
if wanted example-agent; then
  ex="$work/example"
  mkdir -p "$ex"
  "$fake_bin" --port 0 >"$ex/fake.out" 2>"$ex/fake.err" &
  ex_fake_pid=$!
  wait_for "$ex/fake.out" "^listening on http://127.0.0.1:" "$ex_fake_pid" || { echo "the example's fake did not start" >&2; exit 1; }
  ex_fake_url=$(sed -n 's/^listening on //p' "$ex/fake.out" | head -n 1)
  sed "s#http://127.0.0.1:18080#$ex_fake_url#" "$repo/examples/agent-pipeline/helix.toml" >"$ex/helix.toml"
  curl -sf -X PUT "$ex_fake_url/_fake/default" -H 'content-type: application/json' \
    -d @"$repo/examples/agent-pipeline/fake-agent.json" >/dev/null
  (cd "$ex" && exec env -u HELIX_CONFIG HELIX_ORCHESTRATOR__ROOTS="$repo" "$helix_bin" up --config "$ex/helix.toml" \
    --host 127.0.0.1 --orchestrator-port 0 --trace-collector-port 0 --breaker-gateway-port 0 --healer-port 0 \
    --data-dir "$ex/data" >"$ex/up.out" 2>"$ex/up.err") &
  ex_helix_pid=$!
  wait_for "$ex/up.out" "press Ctrl-C" "$ex_helix_pid" || { cat "$ex/up.err" >&2; echo "the example's helix up did not start" >&2; exit 1; }
  ex_orch=$(grep -E '^  orchestrator +http://' "$ex/up.out" | awk '{print $2}')
  ex_rc=0
  timeout 300 "$helix_bin" run --url "$ex_orch" --project demo "$repo/examples/agent-pipeline/pipeline.toml" \
    >"$ex/run.out" 2>"$ex/run.err" || ex_rc=$?
  # `helix trace RUN_ID`: the run's trace, found through the orchestrator
  run_id=$(sed -n 's/^run \([0-9a-f-]\{36\}\) .*/\1/p' "$ex/run.out" | head -n 1)
  ex_collector=$(grep -E '^  trace-collector +http://' "$ex/up.out" | awk '{print $2}')
  # the run's own span comes last: wait for it (the spans of the agent's steps came while it ran)
  for _ in $(seq 1 100); do
    timeout 60 "$helix_bin" trace --url "$ex_collector" --orchestrator "$ex_orch" "$run_id" >"$ex/trace.out" 2>&1 || true
    grep -q 'run agent-fix' "$ex/trace.out" && break
    sleep 0.2
  done
  if [[ $ex_rc == 0 ]] && grep -q '^succeeded' "$ex/run.out" && grep -q 'tool Bash' "$ex/trace.out" \
      && grep -q 'invoke_agent generic' "$ex/trace.out" && grep -q 'llm claude-sonnet-4-5' "$ex/trace.out"; then
    echo "PASS example-agent: the README's agent pipeline with the fake provider"
    passed=$((passed + 1))
  else
    echo "FAIL example-agent: the README's agent pipeline (helix run exit $ex_rc)"
    tail -n 15 "$ex/run.out" "$ex/trace.out" | sed 's/^/    /'
    tail -n 5 "$ex/up.err" | sed 's/^/    up: /'
    failed=$((failed + 1))
  fi
  kill -TERM "$ex_helix_pid" 2>/dev/null || true
  timeout 60 tail --pid="$ex_helix_pid" -f /dev/null || kill -KILL "$ex_helix_pid" 2>/dev/null || true
  kill -TERM "$ex_fake_pid" 2>/dev/null || true
  wait "$ex_fake_pid" 2>/dev/null || true
fi

leaks=0
for var in HELIX_AGENTS_UPSTREAM_KEY HELIX_AGENTS_CLAUDE_KEY HELIX_AGENTS_CODEX_KEY; do
  if grep -qF -- "${!var}" "$work/up.out" "$work/up.err"; then
    echo "the key in $var appears in helix's output:" >&2
    grep -nF -- "${!var}" "$work/up.out" "$work/up.err" | cut -c1-300 | head -5 >&2
    leaks=$((leaks + 1))
  fi
done
if grep -qE 'hxt_[0-9a-f]{16}' "$work/up.out" "$work/up.err"; then
  echo "a minted key (hxt_...) appears in helix's output:" >&2
  grep -nE 'hxt_[0-9a-f]{16}' "$work/up.out" "$work/up.err" | cut -c1-300 | head -5 >&2
  leaks=$((leaks + 1))
fi
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
