"""Idle bytes per connection of a running echo server (issue 14's wss figure).

Usage: idle_rss.py PID URL N [CAFILE]. Opens N WebSocket connections to URL (wss:// with
CAFILE trusted), each echoing one message, lets them sit idle, and prints the server's
RSS before, with the N connections, and the delta per connection. Run by hand, e.g.:

  echo --addr 127.0.0.1:9443 --threads 1 --tls-cert cert.pem --tls-key key.pem &
  python3 idle_rss.py $! wss://localhost:9443/ 5000 cert.pem
"""

import asyncio
import ssl
import sys

import websockets


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def main():
    pid, url, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ctx = None
    if url.startswith("wss:"):
        ctx = ssl.create_default_context(cafile=sys.argv[4])
    # Warm up (worker arenas, pools, the first session cache entries) before the baseline.
    warm = [await websockets.connect(url, ssl=ctx, ping_interval=None) for _ in range(50)]
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1)
    before = rss(pid)
    conns = []
    for i in range(n):
        ws = await websockets.connect(url, ssl=ctx, ping_interval=None, max_size=None)
        await ws.send("x" * 64)
        assert await ws.recv() == "x" * 64
        conns.append(ws)
    await asyncio.sleep(2)
    held = rss(pid)
    print(f"connections {n} rss_before {before} rss_held {held} "
          f"bytes_per_connection {(held - before) / n:.0f}")
    await asyncio.gather(*(ws.close() for ws in conns))


asyncio.run(main())
