// throng-bench's Bun server: Bun.serve, whose WebSocket server is uWebSockets, with the
// paths of benches/src/servers/mod.rs:
//
//   /          echo every text and binary message unchanged (as do all other paths)
//   /bcast     echo, and receive every broadcast (topic "all")
//   /sub       echo, and receive every message published to topic "pubsub"
//   /pub       every message is published to "pubsub", then echoed as an ack
//   /control   text "BROADCAST <n>" publishes one n-byte binary message to "all"
//   /health    plain HTTP: 200 "ok" (any other plain request: 404)
//
// Started by `throng-bench serve --server bun --addr HOST:PORT`, which pins the process to
// the server CPUs and then becomes `bun echo.js --addr HOST:PORT`; the harness waits for
// the line "listening HOST:PORT". Bun runs JavaScript on one thread per process (its
// other threads are the garbage collector's and the JIT's, on the same pinned CPU).
//
// Topics are uWebSockets' own (ws.subscribe, server.publish): the way Bun users write it.
// Limits as the others: messages up to 16 MiB, pings answered, no compression; a silent
// connection is pinged and then closed by uWebSockets' idle timer (idleTimeout 40 s, the
// others' 30 s + 10 s).

const MAX_MESSAGE = 16 * 1024 * 1024;

function listenAddress(argv) {
  const i = argv.indexOf("--addr");
  const addr = i >= 0 && i + 1 < argv.length ? argv[i + 1] : "127.0.0.1:0";
  const colon = addr.lastIndexOf(":");
  if (colon <= 0) throw new Error(`--addr ${addr}: expected HOST:PORT`);
  const port = Number(addr.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--addr ${addr}: bad port`);
  }
  return { hostname: addr.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port };
}

// The size asked for by "BROADCAST <n>", or null.
function broadcastSize(message) {
  if (typeof message !== "string" || !message.startsWith("BROADCAST ")) return null;
  const digits = message.slice("BROADCAST ".length).trim();
  if (!/^[0-9]{1,9}$/.test(digits)) return null;
  const n = Number(digits);
  return n <= MAX_MESSAGE ? n : null;
}

const ROLES = { "/bcast": "member", "/sub": "subscriber", "/pub": "publisher", "/control": "control" };

// Broadcast payloads are cut from this, grown on demand.
let filler = new Uint8Array(0);

const { hostname, port } = listenAddress(process.argv);
const server = Bun.serve({
  hostname,
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if ((req.headers.get("upgrade") || "").toLowerCase() === "websocket") {
      if (server.upgrade(req, { data: ROLES[path] || "echo" })) return undefined;
      return new Response("bad upgrade request\n", { status: 400 });
    }
    if (path === "/health") return new Response("ok\n");
    return new Response("not found\n", { status: 404 });
  },
  websocket: {
    maxPayloadLength: MAX_MESSAGE,
    perMessageDeflate: false,
    idleTimeout: 40,
    sendPings: true,
    open(ws) {
      if (ws.data === "member") ws.subscribe("all");
      else if (ws.data === "subscriber") ws.subscribe("pubsub");
    },
    message(ws, message) {
      if (ws.data === "control") {
        const n = broadcastSize(message);
        if (n !== null) {
          if (filler.length < n) filler = new Uint8Array(n).fill(0x78);
          server.publish("all", filler.subarray(0, n));
          return;
        }
      } else if (ws.data === "publisher") {
        server.publish("pubsub", message);
      }
      ws.send(message);
    },
  },
});
console.log(`listening ${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}`);
