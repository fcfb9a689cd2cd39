# Shared by the scripts that run the fake provider and helix side by side (gateway_sdks.sh,
# agents.sh): sourced, not run. Expects `work` (a scratch directory) to be set.

# waits up to 30 s for a line matching $2 in file $1 while process $3 lives
wait_for() {
  for _ in $(seq 1 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "$2" "$1" 2>/dev/null
}

# 24 random hex digits, for keys that can only be found in a log if they leaked
random_hex() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# starts the fake provider binary $1 accepting only the upstream key $2 (both protocols); sets
# fake_pid and fake_url
start_fake() {
  "$1" --port 0 --openai-key "$2" --anthropic-key "$2" >"$work/fake.out" 2>"$work/fake.err" &
  fake_pid=$!
  wait_for "$work/fake.out" "^listening on http://127.0.0.1:" "$fake_pid" \
    || { cat "$work/fake.err" >&2; echo "the fake provider did not start" >&2; exit 1; }
  fake_url=$(sed -n 's/^listening on //p' "$work/fake.out" | head -n 1)
}
