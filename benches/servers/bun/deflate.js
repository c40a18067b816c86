// throng-bench deflate's Bun server: Bun.serve (uWebSockets inside) with
// perMessageDeflate: true, echoing every text and binary message. Started as
// `bun deflate.js --addr HOST:PORT`; prints "listening HOST:PORT" once bound.

const i = process.argv.indexOf("--addr");
const addr = i >= 0 ? process.argv[i + 1] : "127.0.0.1:0";
const colon = addr.lastIndexOf(":");
const server = Bun.serve({
  hostname: addr.slice(0, colon),
  port: Number(addr.slice(colon + 1)),
  fetch(req, server) {
    if (server.upgrade(req)) return undefined;
    return new Response("not found\n", { status: 404 });
  },
  websocket: {
    maxPayloadLength: 16 * 1024 * 1024,
    perMessageDeflate: true,
    message(ws, message) {
      // Bun compresses a message only when asked (send's second argument).
      ws.send(message, true);
    },
  },
});
console.log(`listening ${server.hostname}:${server.port}`);
