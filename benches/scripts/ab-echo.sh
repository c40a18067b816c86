#!/bin/bash
# One A/B sample of server CPU per echoed message, for interleaved rounds (see
# benches/results/uring-16k-ab-1207.md):
#   benches/scripts/ab-echo.sh BACKEND CONNS SIZE LABEL
# SERVER=throng|floor|fastws|tungstenite|bun picks the server (default throng); any other
# environment (THRONG_BENCH_OFF=...) reaches it. The server runs on CPU 0 and
# `throng-load echo` on CPU 1 for 6 s; the server's CPU is summed from
# /proc/PID/task/*/schedstat over 4 s in the middle. Build first:
#   cargo build --release -p throng-load -p throng-bench
set -eu
cd "$(dirname "$0")/../.."
backend=$1 conns=$2 size=$3 label=$4
port=$((40000 + RANDOM % 20000))
taskset -c 0 target/release/throng-bench serve --server "${SERVER:-throng}" --backend "$backend" \
    --threads 1 --addr "127.0.0.1:$port" --cpus 0 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.5
cpu() { awk '{s+=$1} END {printf "%.0f", s}' /proc/"$pid"/task/*/schedstat; }
out=$(mktemp)
taskset -c 1 target/release/throng-load echo --url "ws://127.0.0.1:$port/" --connections "$conns" \
    --size "$size" --duration 6 --warmup 1 --json >"$out" 2>/dev/null &
load=$!
sleep 2.5
a=$(cpu)
sleep 4
b=$(cpu)
wait $load
python3 - "$label" "$((b - a))" "$out" <<'PY'
import json, sys
label, ns, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
j = json.loads(open(path).read().strip().splitlines()[-1])
per_s = ns / 4.0
print(f"{label:>12} msgs/s {j['msgs_per_s']:>9.0f} server_cpu {per_s / 1e7:5.1f}% "
      f"ns/msg {per_s / j['msgs_per_s']:8.0f} errors {j['errors']}")
PY
rm -f "$out"
