// Issue 17, two browsers on two nodes: redis-server, three examples/cluster nodes and
// HAProxy in front of them with examples/cluster/haproxy.cfg (ports replaced), as run.sh
// starts them. Two Chromium pages open the chat through HAProxy; each page says which node
// it landed on (the first line the node sends); they must be on different nodes, and a
// line typed in either appears in the other, which only Redis can carry.
// Usage: node cluster.mjs [--backend uring|epoll]

import { readFileSync, rmSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { ROOT, backend, check, chromium, example, freePort, onExit, run, start, until } from "./lib.mjs";

/** The lines in the page's log. */
const lines = (page) => page.$$eval("#log div", (divs) => divs.map((d) => d.textContent));

/** Joins (or rejoins) `room` as `name`; returns the node that the page reports. */
async function joinRoom(page, name, room) {
  await page.fill("#name", name);
  await page.fill("#room", room);
  const before = (await lines(page)).length;
  await page.click("#connect");
  const line = await until(async () =>
    (await lines(page)).slice(before).find((l) => l.startsWith(`* you are ${name} in ${room} on `)));
  return line ? line.split(" on ").pop() : null;
}

async function sees(page, line) {
  return until(async () => (await lines(page)).includes(line));
}

await run("cluster", 120, async () => {
  const dir = mkdtempSync(join(tmpdir(), "throng-cluster-"));
  onExit(() => rmSync(dir, { recursive: true, force: true }));

  const redisPort = await freePort();
  await start("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--dir", dir, "--loglevel", "notice"], /Ready to accept connections/, { label: "redis" });
  const redis = `redis://127.0.0.1:${redisPort}`;
  console.log(`  started redis-server on ${redis}`);

  const nodes = [];
  for (const i of [1, 2, 3]) {
    const { match } = await start(example("cluster"), ["--port", "0", "--name", `node${i}`, "--redis", redis,
      "--backend", backend(), "--threads", "1"], /chat on http:\/\/([0-9.]+:\d+)\/ backend=(\w+)/, { label: `node${i}` });
    nodes.push({ name: `node${i}`, addr: match[1], backend: match[2] });
    console.log(`  started node${i} on ${match[1]} backend=${match[2]}, joined ${redis}`);
  }
  if (backend() !== "auto") {
    check(`every node runs on ${backend()}`, nodes.every((n) => n.backend === backend()), nodes.map((n) => n.backend));
  }

  // The shipped HAProxy configuration, with this run's ports.
  const front = await freePort();
  let cfg = readFileSync(join(ROOT, "examples/cluster/haproxy.cfg"), "utf8");
  cfg = cfg.replace(/bind 127\.0\.0\.1:\d+/, `bind 127.0.0.1:${front}`);
  for (const n of nodes) cfg = cfg.replace(new RegExp(`server ${n.name} 127\\.0\\.0\\.1:\\d+`), `server ${n.name} ${n.addr}`);
  check("haproxy.cfg has the three nodes and the frontend replaced",
    nodes.every((n) => cfg.includes(`server ${n.name} ${n.addr}`)) && cfg.includes(`bind 127.0.0.1:${front}`));
  const cfgPath = join(dir, "haproxy.cfg");
  writeFileSync(cfgPath, cfg);
  // haproxy -db stays in the foreground and prints nothing when it starts well: the check
  // below, through it, is what tells that it is ready.
  await start("haproxy", ["-f", cfgPath, "-db"], null, { label: "haproxy" });
  const url = `http://127.0.0.1:${front}`;
  const up = await until(async () => {
    try {
      const r = await fetch(`${url}/healthz`);
      return r.status === 200 ? (await r.text()).trim() : null;
    } catch {
      return null;
    }
  }, 15);
  check("HAProxy answers /healthz from a node", Boolean(up), up ?? "no answer");

  const browser = await chromium();
  const room = `r${process.pid}`;
  const ann = await browser.newPage();
  const ben = await browser.newPage();
  await ann.goto(`${url}/`);
  await ben.goto(`${url}/`);
  const annNode = await joinRoom(ann, "ann", room);
  // leastconn sends ben's socket to a node without one; if HAProxy still picks ann's node,
  // rejoin (a new WebSocket, so a new pick), a few times at most.
  let benNode = null;
  for (let attempt = 0; attempt < 5 && (benNode === null || benNode === annNode); attempt++) {
    benNode = await joinRoom(ben, "ben", room);
  }
  check("ann's page reports the node it landed on", nodes.some((n) => n.name === annNode), annNode);
  check("ben's page landed on a different node", nodes.some((n) => n.name === benNode) && benNode !== annNode,
    `ann on ${annNode}, ben on ${benNode}`);

  const hi = `hi ben, ann here on ${annNode} (${Date.now()})`;
  await ann.fill("#text", hi);
  await ann.click("#send");
  check(`a line from ann (${annNode}) appears in ben's page (${benNode})`, await sees(ben, `ann: ${hi}`),
    (await lines(ben)).slice(-2));
  const back = `hello ann, from ben on ${benNode}`;
  await ben.fill("#text", back);
  await ben.click("#send");
  check(`a line from ben (${benNode}) appears in ann's page (${annNode})`, await sees(ann, `ben: ${back}`),
    (await lines(ann)).slice(-2));
  check(`ann saw ben join from ${benNode}`, (await lines(ann)).includes(`* ben joined (on ${benNode})`),
    (await lines(ann)).filter((l) => l.startsWith("* ben")));
});
