#!/usr/bin/env bash
# Load report for docs/PERFORMANCE.md (issue 16): otel-admission against the
# two baseline webhooks (examples/baseline.rs: `empty` never reads the body;
# `naive` parses it into serde_json::Value and answers allowed), on loopback
# TLS, driven by examples/loadgen.rs with the same pods.
#
# Every server runs at once, and each shape is measured in short slices that
# alternate between them (ours, naive, ours, naive, ...), so that a ratio
# compares the same minutes of a shared machine, not two different ones.
# Throughput is a server's requests over its slices' seconds; percentiles
# come from every latency of its slices; CPU per request is the server's
# own user+system time (from /proc) over its requests, the figure least
# moved by the load generator sharing the two cores.
#
# Usage: scripts/load-report.sh [seconds-per-slice] [rounds]
#   prints one JSON line per figure, then one JSON line of ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
SLICE=${1:-3}
ROUNDS=${2:-3}
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
serve() { # serve PORT ADMIN LEVEL: ours, logging JSON at LEVEL to /dev/null
  $BIN serve --cluster off --config "$WORK/config.yaml" --policies policies \
    --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
    --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$2" --log-format json --log-level "$3" 2>/dev/null &
}
serve 8443 8080 info; OURS=$!
serve 8444 8081 warn; QUIET=$!
target/release/examples/baseline 127.0.0.1:9443 "$WORK/certs/tls.crt" "$WORK/certs/tls.key" naive 2>/dev/null &
NAIVE=$!
target/release/examples/baseline 127.0.0.1:9444 "$WORK/certs/tls.crt" "$WORK/certs/tls.key" empty 2>/dev/null &
EMPTY=$!
for p in 8443 8444 9443 9444; do wait_port $p; done
declare -A PORT=([ours]=8443 [quiet]=8444 [naive]=9443 [empty]=9444)
declare -A PID=([ours]=$OURS [quiet]=$QUIET [naive]=$NAIVE [empty]=$EMPTY)

# slice NAME SERVER loadgen-args...: one slice, appended to NAME's slices.
slice() {
  local name=$1 server=$2; shift 2
  local n; n=$(ls "$WORK" | grep -c "^$name\.[0-9]*\.json$" || true)
  $LOAD --ca "$WORK/certs/ca.crt" --json --url "https://localhost:${PORT[$server]}" \
    --server-pid "${PID[$server]}" --latencies "$WORK/$name.$n.lat" "$@" > "$WORK/$name.$n.json"
}
# interleaved "NAME:SERVER ..." -- loadgen-args: ROUNDS rounds of one slice each.
interleaved() {
  local pairs=()
  while [ "$1" != "--" ]; do pairs+=("$1"); shift; done; shift
  for _ in $(seq "$ROUNDS"); do
    for p in "${pairs[@]}"; do slice "${p%%:*}" "${p##*:}" "$@" --duration "${SLICE}s"; done
  done
  for p in "${pairs[@]}"; do summary "${p%%:*}"; done
}
summary() { # one JSON line for NAME, merged over its slices
  python3 - "$WORK" "$1" <<'PY'
import glob, json, os, sys
w, name = sys.argv[1], sys.argv[2]
runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(w, name + ".*.json")))]
lat = sorted(int(l) for f in glob.glob(os.path.join(w, name + ".*.lat")) for l in open(f))
n, secs = sum(r["requests"] for r in runs), sum(r["seconds"] for r in runs)
pct = lambda p: round(lat[min(len(lat) - 1, max(0, int(len(lat) * p + 0.999999) - 1))] / 1000, 3) if lat else None
cpu = lambda k: round(sum((r[k] or 0) * r["requests"] for r in runs) / n, 1) if n else None
out = {"name": name, "slices": len(runs), "requests": n, "errors": sum(r["errors"] for r in runs),
       "throughput_rps": round(n / secs) if secs else 0, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
       "p999_ms": pct(0.999), "server_cpu_us_per_request": cpu("server_cpu_us_per_request"),
       "client_cpu_us_per_request": cpu("client_cpu_us_per_request"),
       "server_vmhwm_kib": max((r["server_vmhwm_kib"] or 0) for r in runs),
       "server_rss_before_kib": runs[0]["server_rss_before_kib"], "server_rss_after_kib": runs[-1]["server_rss_after_kib"]}
json.dump(out, open(os.path.join(w, name + ".sum"), "w"))
print(json.dumps(out))
PY
}
rps() { python3 -c "import json;print(json.load(open('$WORK/$1.sum'))['throughput_rps'])"; }

# Warm every server up (TLS sessions, allocator, caches), unmeasured.
for s in ours quiet naive empty; do slice warm_$s $s --endpoint mutate --mix all --concurrency "$CONC" --duration 1s; done

# 1. /mutate, typical pod: ours, the naive and empty webhooks, and ours at
#    --log-level warn (the default level's cost).
interleaved ours_typical:ours naive_typical:naive empty_typical:empty quiet_typical:quiet -- \
  --endpoint mutate --mix typical --concurrency "$CONC"
# 2. Half of our saturating rate, ours and naive at the same rate.
HALF=$(( $(rps ours_typical) / 2 ))
interleaved ours_half:ours naive_half:naive -- --endpoint mutate --mix typical --concurrency 16 --rate "$HALF"
# 3. Every shape, and the 1,000-env-var pod alone; ours' peak RSS per slice.
interleaved ours_all:ours naive_all:naive -- --endpoint mutate --mix all --concurrency "$CONC" --reset-peak
interleaved ours_env1000:ours naive_env1000:naive -- --endpoint mutate --mix env1000 --concurrency "$CONC"
# 4. /validate with the shipped pack: at 1,000/s, and saturating.
interleaved ours_validate_1000:ours -- --endpoint validate --mix typical --concurrency 16 --rate 1000
interleaved ours_validate:ours -- --endpoint validate --mix typical --concurrency "$CONC"
# 5. A rollout wave: 10,000 distinct pods back to back, twice; RSS after each.
for wave in wave1 wave2; do
  $LOAD --ca "$WORK/certs/ca.crt" --json --url https://localhost:8443 --server-pid $OURS --endpoint mutate \
    --mix distinct --concurrency "$CONC" --requests 10000 --duration 300s > "$WORK/$wave.json"
  sleep 2
done
cat "$WORK/wave1.json" "$WORK/wave2.json"

python3 - "$WORK" <<'PY'
import json, os, sys
w = sys.argv[1]
s = lambda n: json.load(open(os.path.join(w, n + ".sum")))
j = lambda n: json.load(open(os.path.join(w, n + ".json")))
t = lambda n: s(n)["throughput_rps"]
c = lambda n: s(n)["server_cpu_us_per_request"]
ratio = lambda a, b: round(a / b, 3) if a and b else None
print(json.dumps({
    "mutate_typical_vs_naive": ratio(t("ours_typical"), t("naive_typical")),
    "mutate_typical_vs_empty": ratio(t("ours_typical"), t("empty_typical")),
    "mutate_typical_server_cpu_naive_over_ours": ratio(c("naive_typical"), c("ours_typical")),
    "mutate_all_vs_naive": ratio(t("ours_all"), t("naive_all")),
    "mutate_env1000_vs_naive": ratio(t("ours_env1000"), t("naive_env1000")),
    "mutate_env1000_server_cpu_naive_over_ours": ratio(c("naive_env1000"), c("ours_env1000")),
    "p99_half_load_vs_naive_same_rate": ratio(s("ours_half")["p99_ms"], s("naive_half")["p99_ms"]),
    "validate_vs_naive": ratio(t("ours_validate"), t("naive_typical")),
    "validate_p99_ms_at_1000rps": s("ours_validate_1000")["p99_ms"],
    "log_info_cost": round(1 - t("ours_typical") / t("quiet_typical"), 3),
    "log_info_cost_server_cpu": round(1 - c("quiet_typical") / c("ours_typical"), 3),
    "peak_rss_mib_all_shapes": round(s("ours_all")["server_vmhwm_kib"] / 1024, 1),
    "rss_mib_before_waves": round((j("wave1")["server_rss_before_kib"] or 0) / 1024, 1),
    "rss_mib_after_waves": round((j("wave2")["server_rss_after_kib"] or 0) / 1024, 1),
    "errors": sum(s(n[:-4])["errors"] for n in os.listdir(w) if n.endswith(".sum")),
}))
PY
