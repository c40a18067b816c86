#!/bin/bash
# One A/B sample of server CPU per echoed message, for interleaved rounds (see
# benches/results/uring-16k-ab-1207.md):
#   benches/scripts/ab-echo.sh BACKEND CONNS SIZE LABEL
# SERVER=throng|floor|fastws|tungstenite|bun picks the server (default throng); any other
# environment (THRONG_BENCH_OFF=...) reaches it. The server runs on CPU 0 and
# `throng-load echo` on CPU 1 for 6 s; the server's CPU is summed from
# /proc/PID/task/*/schedstat over 4 s in the middle, with the server's voluntary context
# switches (its sleeps) and the load generator's CPU per message over the same 4 s (when
# the server is not busy all the time, the load generator bounds the rate). Build first:
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
cpu() { awk '{s+=$1} END {printf "%.0f", s}' /proc/"$1"/task/*/schedstat; }
sleeps() { awk '/^voluntary_ctxt_switches/ {s+=$2} END {print s}' /proc/"$pid"/task/*/status; }
out=$(mktemp)
taskset -c 1 target/release/throng-load echo --url "ws://127.0.0.1:$port/" --connections "$conns" \
    --size "$size" --duration 6 --warmup 1 --json >"$out" 2>/dev/null &
load=$!
sleep 2.5
a=$(cpu $pid) la=$(cpu $load) za=$(sleeps)
sleep 4
b=$(cpu $pid) lb=$(cpu $load) zb=$(sleeps)
wait $load
python3 - "$label" "$((b - a))" "$out" "$((lb - la))" "$((zb - za))" <<'PY'
import json, sys
label, ns, path, load_ns, sleeps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
j = json.loads(open(path).read().strip().splitlines()[-1])
per_s = ns / 4.0
rate = j['msgs_per_s']
print(f"{label:>12} msgs/s {rate:>9.0f} server_cpu {per_s / 1e7:5.1f}% "
      f"ns/msg {per_s / rate:8.0f} errors {j['errors']} "
      f"server_sleeps/s {sleeps / 4.0:7.0f} load_ns/msg {load_ns / 4.0 / rate:6.0f}")
PY
rm -f "$out"
