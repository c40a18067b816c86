#!/usr/bin/env bash
# Redis, three chat nodes and HAProxy in front of them, all on 127.0.0.1; Ctrl-C stops
# everything this script started. Needs `apt-get install -y redis-server haproxy`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --example cluster
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' EXIT INT TERM
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --loglevel warning &
pids+=($!)
for i in 1 2 3; do
    target/release/examples/cluster --port "910$i" --name "node$i" --redis redis://127.0.0.1:6390 &
    pids+=($!)
done
haproxy -f examples/cluster/haproxy.cfg -db &
pids+=($!)
echo "open http://127.0.0.1:9100/ in two browsers: each is told which node it is on"
wait
