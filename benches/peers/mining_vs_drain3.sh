#!/usr/bin/env bash
# Template mining side by side in one run: Drain3 (PyPI drain3, default configuration) and the
# healer's miner on the same Loghub-2k samples (tests/fixtures/loghub): grouping accuracy per
# system and throughput, and the throughput ratio. Local only: no network but the package index.
# usage: benches/peers/mining_vs_drain3.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${DRAIN3_VENV:-target/peer-drain3-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import drain3" 2>/dev/null || "$venv/bin/pip" install -q drain3==0.9.11

echo "== Drain3 (defaults)"
drain=$("$venv/bin/python" benches/peers/drain3_ga.py tests/fixtures/loghub | tee /dev/stderr)

echo "== helix miner: grouping accuracy"
cargo test -q --release -p helix-healer --test loghub -- --nocapture loghub_grouping 2>&1 | grep -E "^[A-Za-z]+ +[0-9.]+|^mean|^system"

echo "== helix miner: throughput (criterion)"
bench=$(cargo bench -q -p helix-benches --bench mining -- --noplot 2>&1 | grep -E "thrpt:" | head -1)
echo "$bench"

# Drain3 throughput over all 16,000 messages: total messages / total time, from its per-system rates
drain_rate=$(echo "$drain" | awk '/msg\/s/ {n += 2000; t += 2000 / $4} END {if (t > 0) printf "%.0f", n / t}')
ours=$(echo "$bench" | sed -E 's/.*\[[^ ]+ [^ ]+ ([0-9.]+) (Kelem|Melem|elem)\/s.*/\1 \2/')
ours_rate=$(echo "$ours" | awk '{m = ($2 == "Melem") ? 1e6 : (($2 == "Kelem") ? 1e3 : 1); printf "%.0f", $1 * m}')
echo "== throughput: helix ${ours_rate} msg/s, Drain3 ${drain_rate} msg/s, ratio $(awk -v a="$ours_rate" -v b="$drain_rate" 'BEGIN {printf "%.1fx", a / b}')"
