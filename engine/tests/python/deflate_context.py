"""Python `websockets` against throng's dedicated deflate mode (engine/tests/deflate_context.rs).

Usage: deflate_context.py URL MODE BITS. MODE: `takeover` (websockets' default offer,
`client_max_window_bits`: context both ways), `unlimited` (context offered, no limit
accepted on the client's window), `no_takeover` (both no_context_takeover). BITS: the
server preset's window. Checks the negotiated parameters, then echoes messages that
repeat each other: with context kept, a later message's compressed frame is a fraction
of the first's, both ways (the server inflating the client's ones proves it kept their
window; the sizes of its own frames prove it kept its own). Prints "ok MODE N".
"""

import sys

from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.sync.client import connect

URL, MODE, BITS = sys.argv[1], sys.argv[2], int(sys.argv[3])
TIMEOUT = 10

received = []  # compressed payload sizes of the server's frames
sent = []  # and of ours

decode, encode = PerMessageDeflate.decode, PerMessageDeflate.encode


def traced_decode(self, frame, *, max_size=None):
    if frame.rsv1:
        received.append(len(frame.data))
    return decode(self, frame, max_size=max_size)


def traced_encode(self, frame):
    out = encode(self, frame)
    if out.rsv1:
        sent.append(len(out.data))
    return out


PerMessageDeflate.decode = traced_decode
PerMessageDeflate.encode = traced_encode

factory = {
    "takeover": None,
    "unlimited": ClientPerMessageDeflateFactory(client_max_window_bits=None),
    "no_takeover": ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True
    ),
}[MODE]
kwargs = {} if factory is None else {"extensions": [factory], "compression": None}


# 200 bytes of words that hardly repeat within a message (so a message alone compresses
# little) but repeat whole from one message to the next: within reach of a 9-bit window
# (zlib reaches back 250 bytes with it: the window less its lookahead).
WORDS = " ".join(
    "".join(chr(97 + (k * 7 + j * 13 + k * j) % 26) for j in range(3 + k % 5)) for k in range(80)
)[:200]


def message(i):
    return f'{{"seq":{i},"text":"{WORDS}"}}'


with connect(URL, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None,
             max_size=None, **kwargs) as ws:
    (ext,) = ws.protocol.extensions
    assert isinstance(ext, PerMessageDeflate), ext
    p = vars(ext)
    keeps_server = MODE != "no_takeover"
    keeps_client = MODE == "takeover" or (MODE == "unlimited" and BITS == 15)
    assert ext.remote_no_context_takeover == (not keeps_server), p
    assert ext.local_no_context_takeover == (not keeps_client), p
    assert ext.remote_max_window_bits in (None, 15), p
    if MODE == "takeover" and BITS < 15:
        assert ext.local_max_window_bits == BITS, p
    else:
        assert ext.local_max_window_bits in (None, 15), p
    n = 0
    for i in range(40):
        text = message(i)
        ws.send(text if i % 2 else text.encode())
        got = ws.recv(timeout=TIMEOUT)
        want = text if i % 2 else text.encode()
        assert got == want, f"echo of message {i}"
        n += 1
    assert len(received) == 40 and len(sent) == 40, (received, sent)
    for what, sizes, kept in [("server", received, keeps_server), ("client", sent, keeps_client)]:
        later = sorted(sizes[1:])[len(sizes) // 2]
        if kept:
            assert later * 2 < sizes[0], (what, sizes)
        else:
            assert later * 10 > sizes[0] * 9, (what, sizes)
    ws.close(1000, "done")
print("ok", MODE, n, "server", received[0], sorted(received)[20], "client", sent[0], sorted(sent)[20])
