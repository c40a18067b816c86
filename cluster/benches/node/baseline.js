// The pattern users write today for several WebSocket nodes: Node `ws` plus the `redis`
// client, one process per node. A message a client sends on /pub goes to Redis; every
// message from Redis is sent to each local /sub client in a loop.
//
//   node baseline.js PORT REDIS_URL      (prints "ready" once listening and subscribed)
'use strict';
const { WebSocketServer } = require('ws');
const { createClient } = require('redis');

const [port, redisUrl] = process.argv.slice(2);

(async () => {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await pub.connect();
  await sub.connect();
  const subscribers = new Set();
  // Buffer mode: payloads stay bytes, as the clients sent them.
  await sub.subscribe('bench', (message) => {
    for (const ws of subscribers) ws.send(message, { binary: true });
  }, true);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(port), perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    if (req.url === '/sub') {
      subscribers.add(ws);
      ws.on('close', () => subscribers.delete(ws));
    } else if (req.url === '/pub') {
      ws.on('message', (data) => { pub.publish('bench', data); });
    }
  });
  wss.on('listening', () => console.log('ready'));
})().catch((e) => { console.error(e); process.exit(1); });
