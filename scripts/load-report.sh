#!/usr/bin/env bash
# Load report for docs/PERFORMANCE.md: the do-nothing baseline webhook and
# otel-admission on loopback TLS, driven by examples/loadgen.rs.
# Usage: scripts/load-report.sh [seconds-per-run]   (prints one JSON line a run)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONC=${CONC:-32}
cargo build --release --quiet --bin otel-admission --example loadgen --example baseline
BIN=target/release/otel-admission
LOAD=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
$BIN certs --out "$WORK/certs" --dns localhost --dns 127.0.0.1 >/dev/null 2>&1
# Python for every pod that asks for it; the shipped pack on /validate.
cat > "$WORK/config.yaml" <<YAML
defaults:
  exporter: { endpoint: http://otel-collector.monitoring:4318 }
YAML

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
run() { echo "# $*" >&2; $LOAD --ca "$WORK/certs/ca.crt" --json "$@"; }

# 1. The ceiling: the same rustls + hyper + axum stack doing nothing.
target/release/examples/baseline 127.0.0.1:9443 "$WORK/certs/tls.crt" "$WORK/certs/tls.key" 2>/dev/null &
BASE=$!
wait_port 9443
run --url https://localhost:9443 --endpoint mutate --mix typical --concurrency "$CONC" --duration "${SECS}s" --server-pid $BASE | tee "$WORK/base.json"
kill $BASE

# 2. otel-admission.
$BIN serve --cluster off --config "$WORK/config.yaml" --policies policies \
  --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
  --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:8080 --log-format json 2>/dev/null &
SRV=$!
wait_port 8443
URL=https://localhost:8443
run --url $URL --endpoint mutate --mix typical --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV | tee "$WORK/sat.json"
SAT=$(python3 -c "import json;print(json.load(open('$WORK/sat.json'))['throughput_rps'])")
HALF=$(python3 -c "print(int($SAT/2))")
run --url $URL --endpoint mutate --mix typical --concurrency 16 --rate "$HALF" --duration "${SECS}s" --server-pid $SRV
run --url $URL --endpoint mutate --mix all --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
run --url $URL --endpoint mutate --mix env1000 --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
run --url $URL --endpoint validate --mix typical --concurrency 16 --rate 1000 --duration "${SECS}s" --server-pid $SRV
run --url $URL --endpoint both --mix all --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
# 3. A rollout wave: 10,000 distinct pods back to back, then RSS once more.
run --url $URL --endpoint mutate --mix distinct --concurrency "$CONC" --requests 10000 --duration 300s --server-pid $SRV
sleep 2
run --url $URL --endpoint mutate --mix distinct --concurrency "$CONC" --requests 10000 --duration 300s --server-pid $SRV
python3 - "$WORK/base.json" "$WORK/sat.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(json.dumps({"ratio_mutate_typical_to_baseline": round(s["throughput_rps"] / b["throughput_rps"], 3)}))
PY
