#!/usr/bin/env bash
# The README's example pipeline (examples/python-heal) through a real `helix up`, with curl: its
# test phase fails on a missing module, the healer's fix (PyYAML added to requirements.txt) is
# applied, and the second attempt passes. It installs PyYAML from PyPI, so it needs the network.
# Every wait is bounded; everything lives in a scratch directory that is removed at the end.
#
# usage: tests/api/example_pipeline.sh HELIX_BINARY
set -euo pipefail
helix_bin=$1
here=$(cd "$(dirname "$0")" && pwd)
pipeline="$here/../../examples/python-heal/pipeline.toml"
pipeline=$(cd "$(dirname "$pipeline")" && pwd)/$(basename "$pipeline")

work=$(mktemp -d)
cleanup() {
  if [[ -n "${helix_pid:-}" ]] && kill -0 "$helix_pid" 2>/dev/null; then
    kill -TERM "$helix_pid" 2>/dev/null || true
    timeout 20 tail --pid="$helix_pid" -f /dev/null || kill -KILL "$helix_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "example pipeline: $*" >&2
  if [[ -s "$work/run.json" ]]; then head -c 20000 "$work/run.json" >&2; echo >&2; fi
  tail -n 30 "$work/up.err" >&2 2>/dev/null || true
  exit 1
}

# a helix.toml of the developer's must not change the services under test; the orchestrator
# serves the repository's examples (as it does when `helix up` runs in the repository)
(cd "$work" && exec env -u HELIX_CONFIG HELIX_ORCHESTRATOR__ROOTS="$here/../.." "$helix_bin" up --host 127.0.0.1 --orchestrator-port 0 \
  --trace-collector-port 0 --breaker-gateway-port 0 --healer-port 0 --data-dir "$work/data" \
  >"$work/up.out" 2>"$work/up.err") &
helix_pid=$!
for _ in $(seq 1 300); do
  grep -q "press Ctrl-C" "$work/up.out" 2>/dev/null && break
  kill -0 "$helix_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "press Ctrl-C" "$work/up.out" 2>/dev/null || fail "helix up did not start"
orchestrator=$(grep -E '^  orchestrator +http://' "$work/up.out" | awk '{print $2}')
[[ "$orchestrator" == http://127.0.0.1:* ]] || fail "no orchestrator URL in: $(cat "$work/up.out")"

body=$(python3 -c 'import json, sys; print(json.dumps({"pipeline_path": sys.argv[1], "project": "example"}))' "$pipeline")
status=$(curl -sS -o "$work/run.json" -w '%{http_code}' -H 'content-type: application/json' \
  -d "$body" "$orchestrator/v1/runs") || fail "POST /v1/runs failed"
[[ "$status" == 201 ]] || fail "POST /v1/runs answered $status"
id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$work/run.json")
echo "example pipeline: run $id started"

# poll until the run is final, at most 5 minutes (pip installs PyYAML twice)
deadline=$((SECONDS + 300))
state=running
while (( SECONDS < deadline )); do
  curl -sS -o "$work/run.json" "$orchestrator/v1/runs/$id" || fail "GET /v1/runs/$id failed"
  state=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' "$work/run.json")
  case "$state" in
    succeeded | needs_human | escalated | cancelled) break ;;
  esac
  sleep 1
done

python3 - "$work/run.json" <<'EOF' || fail "the run is not what the example promises (status $state)"
import json
import sys

run = json.load(open(sys.argv[1]))
problems = []
if run["status"] != "succeeded":
    problems.append(f"status {run['status']}: {run.get('reason')}")
phases = {p["name"]: p for p in run.get("phases", [])}
if sorted(phases) != ["compile", "report", "test"]:
    problems.append(f"phases {sorted(phases)}")
test = phases.get("test")
if test:
    attempts = test["attempts"]
    # preflight: the healer's static check predicts the missing PyYAML from app.py and
    # requirements.txt, and its fix is applied before the first attempt runs
    if len(attempts) != 1:
        problems.append(f"the test phase took {len(attempts)} attempts, not 1")
    elif not any("PyYAML" in p for p in attempts[0].get("patches", [])):
        problems.append(f"the first attempt did not get the predicted fix: {attempts[0].get('patches')}")
    if attempts and attempts[-1]["status"] != "passed":
        problems.append(f"the last attempt is {attempts[-1]['status']}")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

workspace=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["workspace"])' "$work/run.json")
grep -qx 'PyYAML' "$workspace/requirements.txt" || fail "requirements.txt of the final workspace lacks PyYAML"
[[ -s "$workspace/report.json" ]] || fail "the report phase wrote no report.json"

curl -sS "$orchestrator/v1/runs/$id/events" -o "$work/events.txt" --max-time 5 || true
grep -q 'preflight_finding' "$work/events.txt" || fail "no preflight_finding event for the predicted failure"

echo "example pipeline: first run fixed before it failed"

# Learning (issue 12): the second run of the same pipeline applies the fix that solved its test
# phase before (preflight), so the test phase passes at its first attempt.
status=$(curl -sS -o "$work/run2.json" -w '%{http_code}' -H 'content-type: application/json' \
  -d "$body" "$orchestrator/v1/runs") || fail "POST /v1/runs (second run) failed"
[[ "$status" == 201 ]] || fail "POST /v1/runs (second run) answered $status"
id2=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$work/run2.json")
deadline=$((SECONDS + 300))
while (( SECONDS < deadline )); do
  curl -sS -o "$work/run.json" "$orchestrator/v1/runs/$id2" || fail "GET /v1/runs/$id2 failed"
  state=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' "$work/run.json")
  case "$state" in
    succeeded | needs_human | escalated | cancelled) break ;;
  esac
  sleep 1
done
python3 - "$work/run.json" <<'EOF' || fail "the second run did not learn from the first (status $state)"
import json
import sys

run = json.load(open(sys.argv[1]))
problems = []
if run["status"] != "succeeded":
    problems.append(f"status {run['status']}: {run.get('reason')}")
test = {p["name"]: p for p in run.get("phases", [])}.get("test")
if not test:
    problems.append("no test phase")
else:
    attempts = test["attempts"]
    if len(attempts) != 1:
        problems.append(f"the test phase took {len(attempts)} attempts, not 1")
    elif not any("PyYAML" in p for p in attempts[0].get("patches", [])):
        problems.append(f"the first attempt did not get the learned fix: {attempts[0].get('patches')}")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

echo "example pipeline: passed"
