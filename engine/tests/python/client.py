"""Python `websockets` client for throng's interoperability tests (engine/tests/python.rs).

Usage: client.py URL MODE. Exits 0 and prints "ok ..." when every check passes; fails
with a traceback otherwise. Every blocking call has a timeout so a bug fails fast.
"""

import functools
import logging
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

URL = sys.argv[1]
MODE = sys.argv[2]
SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]
TIMEOUT = 10


def open_ws(**kwargs):
    # No client keepalive pings: the tests control pings.
    return connect(
        URL,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        ping_interval=None,
        max_size=None,
        **kwargs,
    )


def text_of(size):
    unit = "aé€😀Zж"  # 13 bytes of 1- to 4-byte characters
    n = len(unit.encode())
    return unit * (size // n) + "x" * (size % n)


def bytes_of(size, seed):
    block = bytes((i * 131 + seed * 7) & 0xFF for i in range(251))
    return (block * (size // 251 + 1))[:size]


def echo():
    with open_ws() as ws:
        for seed, size in enumerate(SIZES):
            text = text_of(size)
            ws.send(text)
            got = ws.recv(timeout=TIMEOUT)
            assert isinstance(got, str) and got == text, f"text echo of {size} bytes"
            data = bytes_of(size, seed)
            ws.send(data)
            got = ws.recv(timeout=TIMEOUT)
            assert isinstance(got, bytes) and got == data, f"binary echo of {size} bytes"
        ws.close(1000, "done")
        assert ws.close_code == 1000, ws.close_code
    print("ok echo", len(SIZES) * 2)


def fragments():
    with open_ws() as ws:
        # An iterable is sent as one message in fragments, one per item.
        ws.send(["Hel", "lo, ", "wö", "rld", ""])
        assert ws.recv(timeout=TIMEOUT) == "Hello, wörld"
        parts = [bytes_of(1000, i) for i in range(50)]
        ws.send(parts)
        got = ws.recv(timeout=TIMEOUT)
        assert got == b"".join(parts), "binary fragments reassembled"
        ws.send([b"", b""])
        assert ws.recv(timeout=TIMEOUT) == b""
        ws.close()
    print("ok fragments")


def ping():
    with open_ws() as ws:
        # The pong must carry the ping's payload for websockets to match it.
        for payload in [b"", b"x", bytes(range(125)), "text ping"]:
            pong = ws.ping(payload)
            assert pong.wait(TIMEOUT), f"no pong for {payload!r}"
        latency = ws.ping(b"ack").wait(TIMEOUT)
        assert latency
        ws.send("after pings")
        assert ws.recv(timeout=TIMEOUT) == "after pings"
        ws.close()
    print("ok ping")


def close_client():
    ws = open_ws()
    ws.send("hi")
    assert ws.recv(timeout=TIMEOUT) == "hi"
    ws.close(4000, "bye")
    # The server echoes our code.
    assert ws.close_code == 4000, ws.close_code
    print("ok close_client")


def close_server():
    ws = open_ws()
    ws.send("!close 4001 done")
    try:
        ws.recv(timeout=TIMEOUT)
        raise AssertionError("expected the server to close")
    except ConnectionClosed as e:
        assert e.rcvd is not None, "no close frame received"
        assert (e.rcvd.code, e.rcvd.reason) == (4001, "done"), e.rcvd
        # websockets answered with the same code.
        assert e.sent is not None and e.sent.code == 4001, e.sent
    print("ok close_server")


def auto_ping():
    pings = []

    class Count(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("< PING"):
                pings.append(msg)

    logger = logging.getLogger("throng.test.client")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Count())
    with open_ws(logger=logger) as ws:
        # Stay silent for 1.5 s: the server pings (interval 200 ms, pong deadline 300 ms);
        # websockets answers each ping on its own.
        try:
            got = ws.recv(timeout=1.5)
            raise AssertionError(f"unexpected message {got!r}")
        except TimeoutError:
            pass
        ws.send("alive")
        assert ws.recv(timeout=TIMEOUT) == "alive"
        assert len(pings) >= 2, f"server pings seen: {pings}"
        ws.close()
    print("ok auto_ping", len(pings))


@functools.lru_cache(maxsize=None)
def json_of(size):
    items, n, total = [], 0, 0
    while total < size:
        item = '{"id":%d,"name":"user-%05d","tags":["a","b"],"note":"caf\u00e9 %d"}' % (n, n * 7919 % 100000, n)
        items.append(item)
        total += len(item) + 1
        n += 1
    return ("[" + ",".join(items) + "]")[:size]


def deflate_echo(factory, label):
    """Echo over permessage-deflate: the extension is negotiated as the shared mode answers
    it (no context takeover either way), and text and binary of many sizes come back."""
    from websockets.extensions.permessage_deflate import PerMessageDeflate
    kwargs = {} if factory is None else {"extensions": [factory], "compression": None}
    with open_ws(**kwargs) as ws:
        exts = ws.protocol.extensions
        assert len(exts) == 1 and isinstance(exts[0], PerMessageDeflate), exts
        ext = exts[0]
        # The server answered server_no_context_takeover and client_no_context_takeover.
        assert ext.remote_no_context_takeover and ext.local_no_context_takeover, vars(ext)
        n = 0
        for size in [0, 1, 100, 255, 256, 1000, 4096, 65536, 1 << 20]:
            for _ in range(3):  # repeats: a server keeping context would break these
                text = json_of(size)
                ws.send(text)
                assert ws.recv(timeout=TIMEOUT) == text, f"text echo of {size} bytes"
                data = text.encode()
                ws.send(data)
                assert ws.recv(timeout=TIMEOUT) == data, f"binary echo of {size} bytes"
                n += 2
        # A fragmented compressed message.
        ws.send([json_of(3000), json_of(3000), json_of(10)])
        assert ws.recv(timeout=TIMEOUT) == json_of(3000) * 2 + json_of(10)
        n += 1
        ws.close(1000, "done")
    print("ok", label, n)


def deflate_default():
    # websockets' default: compression on, offering `permessage-deflate;
    # client_max_window_bits` (context takeover both ways offered).
    deflate_echo(None, "deflate_default")


def deflate_no_takeover():
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    deflate_echo(ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True,
        client_max_window_bits=True), "deflate_no_takeover")


def deflate_small_window():
    # server_max_window_bits=10: the server answers it and sends uncompressed.
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    deflate_echo(ClientPerMessageDeflateFactory(server_max_window_bits=10), "deflate_small_window")


{
    "deflate_default": deflate_default,
    "deflate_no_takeover": deflate_no_takeover,
    "deflate_small_window": deflate_small_window,
    "echo": echo,
    "fragments": fragments,
    "ping": ping,
    "close_client": close_client,
    "close_server": close_server,
    "auto_ping": auto_ping,
}[MODE]()
