// Issue 15, Node's `ws` with perMessageDeflate against examples/echo --deflate on: the
// extension is negotiated; messages below and above the server's threshold (256 B), up to
// 1 MiB, come back intact, and the bytes on the socket show which ones each side
// compressed; fragmented messages (compressed and plain) come back whole.
// Usage: node node-ws.mjs [--backend uring|epoll]

import WebSocket from "ws";

import { check, run, startExample } from "./lib.mjs";

/** JSON of about `size` bytes, as compressible as real API payloads are. */
function json(size) {
  const rows = [];
  let text = "[]";
  while (text.length < size) {
    const i = rows.length;
    rows.push({ id: i, user: `user-${i % 97}`, ok: i % 3 === 0, score: (i * 7919) % 1000 });
    text = JSON.stringify(rows);
  }
  return text.slice(0, size);
}

/** Fast for 1 MiB: repeat a block of JSON rows instead of stringifying every prefix. */
function bigJson(size) {
  const block = json(4096);
  return block.repeat(Math.ceil(size / block.length)).slice(0, size);
}

/** Opens a client; `ws.answered` is the server's Sec-WebSocket-Extensions header. */
function open(url, options) {
  const ws = new WebSocket(url, options);
  ws.once("upgrade", (res) => (ws.answered = res.headers["sec-websocket-extensions"] ?? ""));
  return new Promise((ok, fail) => {
    ws.once("open", () => ok(ws));
    ws.once("error", fail);
  });
}

/** Sends with `send` (one or more frames) and returns the reply with the bytes it took each way. */
function roundTrip(ws, send) {
  const read0 = ws._socket.bytesRead;
  const written0 = ws._socket.bytesWritten;
  return new Promise((ok, fail) => {
    const closed = (code) => fail(new Error(`closed with ${code}`));
    ws.once("close", closed);
    ws.once("message", (data, isBinary) => {
      ws.off("close", closed);
      ok({ data, isBinary, read: ws._socket.bytesRead - read0, written: ws._socket.bytesWritten - written0 });
    });
    send();
  });
}

/** Wire length of an unmasked frame header from the server for `n` payload bytes. */
const header = (n) => (n < 126 ? 2 : n < 65536 ? 4 : 10);

await run("node-ws", 60, async () => {
  const echo = await startExample("echo", ["--deflate", "on"]);
  // threshold 0: the client compresses every message, so the server inflates every size.
  const ws = await open(`ws://${echo.addr}/`, { perMessageDeflate: { threshold: 0 } });
  check("permessage-deflate negotiated", ws.extensions === "permessage-deflate", `${ws.extensions}: ${ws.answered}`);
  check("server answered no context takeover both ways (shared mode)",
    /server_no_context_takeover/.test(ws.answered) && /client_no_context_takeover/.test(ws.answered), ws.answered);

  for (const size of [0, 1, 100, 255, 256, 1000, 16 * 1024, 70_000, 1 << 20]) {
    const text = size >= 1 << 16 ? bigJson(size) : json(size);
    const r = await roundTrip(ws, () => ws.send(text));
    const same = !r.isBinary && r.data.toString() === text;
    // Below the threshold the server sends the frame plain: exactly header + payload.
    const plain = r.read === header(size) + size;
    const how = size < 256 ? plain : r.read < size / 2;
    check(`${size} B text echoed intact, ${size < 256 ? "sent back plain (below threshold)" : "sent back compressed"}`,
      same && how, `${r.data.length} B back, ${r.read} B on the wire from the server, ${r.written} B from the client`);
  }
  const bin = Buffer.from(bigJson(200_000));
  const rb = await roundTrip(ws, () => ws.send(bin, { binary: true }));
  check("200,000 B binary echoed intact and compressed", rb.isBinary && bin.equals(rb.data) && rb.read < bin.length / 2,
    `${rb.data.length} B back, ${rb.read} B on the wire`);

  // Fragmented: ws decides compression on the first fragment and keeps it for the message.
  for (const compress of [true, false]) {
    const parts = [json(3000), json(50), bigJson(300_000)];
    const r = await roundTrip(ws, () => {
      ws.send(parts[0], { fin: false, compress });
      ws.send(parts[1], { fin: false, compress });
      ws.send(parts[2], { fin: true, compress });
    });
    const whole = parts.join("");
    const clientSent = compress ? r.written < whole.length / 2 : r.written > whole.length;
    check(`message in 3 fragments (${compress ? "compressed" : "plain"} by the client) echoed whole`,
      r.data.toString() === whole && clientSent,
      `${whole.length} B sent in ${r.written} B, ${r.data.length} B back in ${r.read} B`);
  }

  // A second client that asks for no context takeover itself, as some browsers' peers do.
  const ws2 = await open(`ws://${echo.addr}/`, {
    perMessageDeflate: { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true },
  });
  const t = json(5000);
  const r2 = await roundTrip(ws2, () => ws2.send(t));
  check("client offering both no_context_takeover: negotiated and echoed",
    ws2.extensions === "permessage-deflate" && r2.data.toString() === t, `${ws2.answered}; ${r2.read} B on the wire`);

  for (const c of [ws, ws2]) {
    const code = await new Promise((ok) => {
      c.once("close", (code) => ok(code));
      c.close(1000, "done");
    });
    check("closed with 1000", code === 1000, code);
  }
});
