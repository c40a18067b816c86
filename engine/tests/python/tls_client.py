"""Python `websockets` over TLS for throng's wss test (engine/tests/tls.rs).

Usage: tls_client.py URL CAFILE. Trusts only CAFILE (the test's self-signed
certificate), echoes text and binary of several sizes, then closes with 1000. Prints
"ok ..." and exits 0 when every check passes.
"""

import ssl
import sys

from websockets.sync.client import connect

URL, CAFILE = sys.argv[1], sys.argv[2]
TIMEOUT = 10

ctx = ssl.create_default_context(cafile=CAFILE)
ctx.set_alpn_protocols(["http/1.1"])
sizes = [0, 1, 125, 126, 16384, 65536, 1 << 20]
with connect(URL, ssl=ctx, open_timeout=TIMEOUT, close_timeout=TIMEOUT,
             ping_interval=None, max_size=None) as ws:
    for seed, size in enumerate(sizes):
        text = ("aé€😀" * size)[:size]
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text, f"text echo of {size} characters"
        data = bytes((i * 7 + seed) & 0xFF for i in range(size))
        ws.send(data)
        assert ws.recv(timeout=TIMEOUT) == data, f"binary echo of {size} bytes"
    ws.close(1000, "done")
    assert ws.close_code == 1000, ws.close_code
print("ok wss echo", len(sizes) * 2, "tls", ws.socket.version() if hasattr(ws.socket, "version") else "")
