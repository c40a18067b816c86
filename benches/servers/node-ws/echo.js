// throng-bench deflate's Node server: the `ws` package with perMessageDeflate, the way its
// users turn compression on. Every text and binary message is echoed back unchanged (and
// compressed again on the way out when the client negotiated the extension).
//
// Started by `throng-bench deflate` as `node echo.js --addr HOST:PORT`, pinned to the server
// CPU; it prints "listening HOST:PORT" once the port is bound. Same limits as the other
// servers: messages up to 16 MiB. Level 1 (zlib's fastest, as throng's default) and a
// 256-byte threshold (throng's default; ws's own is 1 KiB).

const { WebSocketServer } = require("ws");

const i = process.argv.indexOf("--addr");
const addr = i >= 0 ? process.argv[i + 1] : "127.0.0.1:0";
const colon = addr.lastIndexOf(":");
const host = addr.slice(0, colon);
const port = Number(addr.slice(colon + 1));

const wss = new WebSocketServer({
  host,
  port,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: {
    zlibDeflateOptions: { level: 1 },
    threshold: 256,
  },
});
wss.on("listening", () => {
  const a = wss.address();
  console.log(`listening ${a.address}:${a.port}`);
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
