#!/bin/bash
# Same load generator (before's throng-load) against each version's throng server (1 worker, CPU 0):
# server CPU (utime+stime) per echoed message, 100 conns 64 B closed loop.
LOAD=/work/before/target/release/throng-load
backend=${BACKEND:-uring}; conns=${CONNS:-100}; size=${SIZE:-64}
for round in 1 2 3; do
 for v in before mid main; do
  port=$((20000 + RANDOM % 20000))
  /work/$v/target/release/throng-bench serve --server throng --backend $backend --threads 1 --addr 127.0.0.1:$port --cpus 0 >/tmp/ab/srv-$v.log 2>&1 &
  pid=$!
  sleep 0.5
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$(taskset -c 1 $LOAD echo --url ws://127.0.0.1:$port/ --connections $conns --size $size --duration 4 --warmup 0 --json 2>/dev/null | tail -1)
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  kill -KILL $pid; wait $pid 2>/dev/null
  python3 -c "
import json,sys
d=json.loads('''$out''')
msgs=d.get('messages') or d.get('echoes') or d.get('count')
t=($t1-$t0)*10e-3
print('$v', 'round $round', 'msgs/s', d['msgs_per_s'], 'server ns/msg', round(t*1e9/d['messages']), 'errors', d['errors'])
"
 done
done
