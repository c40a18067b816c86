// Issue 15, a real browser with permessage-deflate: examples/chat --deflate on serves its
// page; two Chromium pages open it and join one room; each page's `ws.extensions` names
// permessage-deflate; a line typed in one appears in the other (both ways); then a page
// sends 1 MiB of JSON to examples/echo --deflate on and gets it back intact.
// Usage: node chat-deflate.mjs [--backend uring|epoll]

import { check, chromium, run, startExample, until } from "./lib.mjs";

/** Opens the chat page as `name` in `room` (the page joins at once) and waits for the socket. */
async function join(context, addr, name, room) {
  const page = await context.newPage();
  const response = await page.goto(`http://${addr}/?name=${name}&room=${room}`);
  check(`${name}: GET / served the chat page`, response.status() === 200 && (await page.title()) === "throng chat",
    `${response.status()} ${response.headers()["content-type"]} "${await page.title()}"`);
  const status = await until(async () => {
    const s = await page.textContent("#status");
    return s === "connected" ? s : null;
  });
  check(`${name}: the page's WebSocket opened`, status === "connected", await page.textContent("#status"));
  // `ws` is the page's own socket (a top-level `let` of its script).
  const extensions = await page.evaluate("ws.extensions");
  check(`${name}: ws.extensions reports permessage-deflate`, /^permessage-deflate\b/.test(extensions), extensions);
  return page;
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

/** The lines in the page's log. */
function lines(page) {
  return page.$$eval("#log div", (divs) => divs.map((d) => d.textContent));
}

async function seesLine(page, line) {
  return until(async () => (await lines(page)).includes(line));
}

// Sent in the page: a 1 MiB JSON document to the echo server, and what came back.
async function echoJson(url) {
  const ws = new WebSocket(url);
  await new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = () => fail(new Error("echo socket failed"));
  });
  // Rows until just under 1 MiB, then spaces (JSON allows them) to exactly 1 MiB.
  const rows = [];
  for (let len = 2; len < (1 << 20) - 200; ) {
    const i = rows.length;
    const row = { id: i, name: `user-${i}`, tags: ["a", "b", String(i % 7)], score: ((i * 7919) % 1000) / 10 };
    rows.push(row);
    len += JSON.stringify(row).length + 1;
  }
  let text = JSON.stringify(rows);
  text += " ".repeat((1 << 20) - text.length);
  const back = await new Promise((ok, fail) => {
    ws.onmessage = (e) => ok(e.data);
    ws.onclose = (e) => fail(new Error(`closed ${e.code} ${e.reason}`));
    ws.send(text);
  });
  const extensions = ws.extensions;
  ws.close(1000, "done");
  let parsed = -1;
  try {
    parsed = JSON.parse(back).length;
  } catch {}
  return { extensions, sent: text.length, received: back.length, identical: back === text, rows: parsed };
}

/** Sum over workers of a counter from the server's /metrics (Prometheus text). */
async function counter(addr, name) {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{`)) sum += Number(line.split(" ").pop());
  return sum;
}

await run("chat-deflate", 90, async () => {
  const chat = await startExample("chat", ["--deflate", "on"]);
  const echo = await startExample("echo", ["--deflate", "on"]);
  const browser = await chromium();
  const room = `r${process.pid}`;
  const alice = await join(browser, chat.addr, "alice", room);
  const bob = await join(browser, chat.addr, "bob", room);

  const hello = `hello from alice ${Date.now()}`;
  await say(alice, hello);
  check("a line sent by alice appears in bob's page", await seesLine(bob, `alice: ${hello}`), (await lines(bob)).slice(-2));
  const reply = `and bob answers ${"ok ".repeat(200)}`.trim();
  await say(bob, reply);
  check("a longer line sent by bob appears in alice's page", await seesLine(alice, `bob: ${reply}`),
    (await lines(alice)).slice(-1).map((l) => l.slice(0, 60) + (l.length > 60 ? `... (${l.length} chars)` : "")));

  const in0 = await counter(echo.addr, "throng_received_bytes_total");
  const out0 = await counter(echo.addr, "throng_sent_bytes_total");
  const inflated0 = await counter(echo.addr, "throng_deflate_inflations_total");
  const compressed0 = await counter(echo.addr, "throng_deflate_compressions_total");
  const r = await alice.evaluate(echoJson, `ws://${echo.addr}/`);
  // What crossed the wire, from the echo server's own counters (this test's socket is its
  // only traffic): far less than 1 MiB each way only if both ends compressed.
  const wireIn = (await counter(echo.addr, "throng_received_bytes_total")) - in0;
  const wireOut = (await counter(echo.addr, "throng_sent_bytes_total")) - out0;
  check("echo socket from the page negotiated permessage-deflate", /^permessage-deflate\b/.test(r.extensions), r.extensions);
  check("1 MiB of JSON came back intact", r.identical && r.sent === 1 << 20 && r.rows > 0,
    `sent ${r.sent} chars, got ${r.received}, identical=${r.identical}, ${r.rows} JSON rows`);
  check("Chromium compressed it (the server read < 512 KiB) and inflated the server's compressed echo (< 512 KiB sent)",
    wireIn > 0 && wireIn < 512 << 10 && wireOut > 0 && wireOut < 512 << 10,
    `server read ${wireIn} B, sent ${wireOut} B for 1 MiB each way`);
  const inflated = (await counter(echo.addr, "throng_deflate_inflations_total")) - inflated0;
  const compressed = (await counter(echo.addr, "throng_deflate_compressions_total")) - compressed0;
  check("the server's /metrics counted one inflation and one compression for the 1 MiB",
    inflated === 1 && compressed === 1, `inflations ${inflated}, compressions ${compressed}`);
});
