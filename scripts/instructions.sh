#!/usr/bin/env bash
# Instructions per request, from callgrind: exact and repeatable whatever
# else the machine is doing (docs/PERFORMANCE.md, issue 16). Runs the release
# server (or a baseline) under `valgrind --tool=callgrind`, sends 300
# warm-up requests, zeroes the counters, sends N more, and prints the total
# over N; the annotated profile (inclusive, by function) is kept.
#
# Usage: scripts/instructions.sh [ours|naive|empty] [mix] [endpoint] [extra serve args...]
#   e.g. scripts/instructions.sh ours typical mutate --log-level warn
# Env: N (requests, default 2000), OUT (where the profile goes, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
WHO=${1:-ours}; MIX=${2:-typical}; EP=${3:-mutate}; shift $(( $# < 3 ? $# : 3 ))
N=${N:-2000}
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
cargo build --release --quiet --bin otel-admission --example loadgen --example baseline
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
target/release/otel-admission certs --out "$OUT/certs" --dns localhost --dns 127.0.0.1 >/dev/null 2>&1
cat > "$OUT/config.yaml" <<YAML
defaults:
  exporter: { endpoint: http://otel-collector.monitoring:4318 }
YAML
PORT=18443
case $WHO in
  ours) CMD=(target/release/otel-admission serve --cluster off --config "$OUT/config.yaml" --policies policies
             --tls-cert "$OUT/certs/tls.crt" --tls-key "$OUT/certs/tls.key" --listen "127.0.0.1:$PORT"
             --admin-listen 127.0.0.1:18080 --log-format json "$@") ;;
  naive|empty) CMD=(target/release/examples/baseline "127.0.0.1:$PORT" "$OUT/certs/tls.crt" "$OUT/certs/tls.key" "$WHO") ;;
  *) echo "ours, naive or empty, not $WHO" >&2; exit 2 ;;
esac
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p" "${CMD[@]}" 2>"$OUT/valgrind.log" &
VG=$!
trap 'kill -KILL $VG 2>/dev/null || true' EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
load() {
  target/release/examples/loadgen --ca "$OUT/certs/ca.crt" --json --url "https://localhost:$PORT" \
    --endpoint "$EP" --mix "$MIX" --concurrency 4 --duration 600s --requests "$1"
}
load 300 >/dev/null
callgrind_control -z $VG >/dev/null 2>&1
load "$N" > "$OUT/load.json"
callgrind_control -d $VG >/dev/null 2>&1
sleep 1
PROFILE=$(ls -S "$OUT"/callgrind.*.* | head -1)
callgrind_annotate --inclusive=yes "$PROFILE" > "$OUT/profile.txt" 2>/dev/null
TOTAL=$(grep 'PROGRAM TOTALS' "$OUT/profile.txt" | awk '{gsub(",", "", $1); print $1}')
ERRORS=$(python3 -c "import json; print(json.load(open('$OUT/load.json'))['errors'])")
echo "{\"server\": \"$WHO\", \"mix\": \"$MIX\", \"endpoint\": \"$EP\", \"requests\": $N, \"errors\": $ERRORS, \"instructions_per_request\": $((TOTAL / N)), \"profile\": \"$OUT/profile.txt\"}"
