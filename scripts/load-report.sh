#!/usr/bin/env bash
# Load report for docs/PERFORMANCE.md (issue 16): the two baseline webhooks
# (examples/baseline.rs: `empty` never reads the body; `naive` parses it
# into serde_json::Value and answers allowed) and otel-admission, one after
# the other on loopback TLS, driven by examples/loadgen.rs with the same
# pods. Every figure of ours is then given as a ratio to the baselines'
# on the same shape, measured in this same run.
# Usage: scripts/load-report.sh [seconds-per-run]
#   prints one JSON line per run, then one JSON line of ratios.
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
# run NAME loadgen-args...: one run, its JSON line kept as $WORK/NAME.json.
run() {
  local name=$1; shift
  echo "# $name: $*" >&2
  $LOAD --ca "$WORK/certs/ca.crt" --json "$@" | tee "$WORK/$name.json"
}
field() { python3 -c "import json,sys;print(json.load(open('$WORK/$1.json'))['$2'])"; }

# 1. otel-admission first: its saturating rate sets the half-load rate.
$BIN serve --cluster off --config "$WORK/config.yaml" --policies policies \
  --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
  --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:8080 --log-format json 2>/dev/null &
SRV=$!
wait_port 8443
URL=https://localhost:8443
run ours_typical --url $URL --endpoint mutate --mix typical --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
HALF=$(python3 -c "print(int($(field ours_typical throughput_rps)/2))")
run ours_half --url $URL --endpoint mutate --mix typical --concurrency 16 --rate "$HALF" --duration "${SECS}s" --server-pid $SRV
run ours_all --url $URL --endpoint mutate --mix all --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
run ours_env1000 --url $URL --endpoint mutate --mix env1000 --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
run ours_validate_1000 --url $URL --endpoint validate --mix typical --concurrency 16 --rate 1000 --duration "${SECS}s" --server-pid $SRV
run ours_validate --url $URL --endpoint validate --mix typical --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
run ours_both --url $URL --endpoint both --mix all --concurrency "$CONC" --duration "${SECS}s" --server-pid $SRV
# A rollout wave: 10,000 distinct pods back to back, twice; RSS after each.
run ours_wave1 --url $URL --endpoint mutate --mix distinct --concurrency "$CONC" --requests 10000 --duration 300s --server-pid $SRV
sleep 2
run ours_wave2 --url $URL --endpoint mutate --mix distinct --concurrency "$CONC" --requests 10000 --duration 300s --server-pid $SRV
kill $SRV; wait $SRV 2>/dev/null || true

# 2. The baselines on the same shapes (the naive one at our half-load rate too).
for mode in empty naive; do
  target/release/examples/baseline 127.0.0.1:9443 "$WORK/certs/tls.crt" "$WORK/certs/tls.key" $mode 2>/dev/null &
  BASE=$!
  wait_port 9443
  U=https://localhost:9443
  run ${mode}_typical --url $U --endpoint mutate --mix typical --concurrency "$CONC" --duration "${SECS}s" --server-pid $BASE
  if [ $mode = naive ]; then
    run naive_half --url $U --endpoint mutate --mix typical --concurrency 16 --rate "$HALF" --duration "${SECS}s" --server-pid $BASE
    run naive_all --url $U --endpoint mutate --mix all --concurrency "$CONC" --duration "${SECS}s" --server-pid $BASE
    run naive_env1000 --url $U --endpoint mutate --mix env1000 --concurrency "$CONC" --duration "${SECS}s" --server-pid $BASE
  fi
  kill $BASE; wait $BASE 2>/dev/null || true
done

python3 - "$WORK" <<'PY'
import json, os, sys
w = sys.argv[1]
r = {n[:-5]: json.load(open(os.path.join(w, n))) for n in os.listdir(w) if n.endswith(".json")}
t = lambda n: r[n]["throughput_rps"]
ratio = lambda a, b: round(a / b, 3) if b else None
print(json.dumps({
    "mutate_typical_vs_empty": ratio(t("ours_typical"), t("empty_typical")),
    "mutate_typical_vs_naive": ratio(t("ours_typical"), t("naive_typical")),
    "mutate_all_vs_naive": ratio(t("ours_all"), t("naive_all")),
    "mutate_env1000_vs_naive": ratio(t("ours_env1000"), t("naive_env1000")),
    "validate_vs_naive": ratio(t("ours_validate"), t("naive_typical")),
    "p99_half_load_vs_naive_same_rate": ratio(r["ours_half"]["p99_ms"], r["naive_half"]["p99_ms"]),
    "validate_p99_ms_at_1000rps": r["ours_validate_1000"]["p99_ms"],
    "peak_rss_mib_all_shapes": round(max(r[n]["server_vmhwm_kib"] or 0 for n in r if n.startswith("ours")) / 1024, 1),
    "rss_mib_after_wave": round((r["ours_wave2"]["server_rss_after_kib"] or 0) / 1024, 1),
    "rss_mib_before_waves": round((r["ours_wave1"]["server_rss_before_kib"] or 0) / 1024, 1),
}))
PY
