// Issue 14, a real browser over wss://: Chromium (told to accept the self-signed
// certificate made here with openssl) opens wss://127.0.0.1:PORT/ on examples/echo
// --tls-cert/--tls-key, echoes text and binary (small and past 64 KiB), closes with a code
// and reason and sees the code come back in its close event. Then the chat page over
// https:// and wss://: the server closes with its own code and reason (1003 "text only" for
// a binary message) and the page's close event shows both.
// Usage: node tls.mjs [--backend uring|epoll]

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { check, chromium, onExit, run, startExample, until } from "./lib.mjs";

/** A self-signed P-256 certificate for 127.0.0.1 and localhost, as the README makes one. */
function selfSigned() {
  const dir = mkdtempSync(join(tmpdir(), "throng-tls-"));
  onExit(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout", key, "-out", cert], { stdio: "ignore" });
  return ["--tls-cert", cert, "--tls-key", key];
}

// Run in the page: echo round trips over wss://, then a client-initiated close.
async function echoOverWss(url) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = () => fail(new Error(`could not open ${url}`));
  });
  const next = () => new Promise((ok) => (ws.onmessage = (e) => ok(e.data)));
  const out = { protocol: new URL(ws.url).protocol };
  const text = "héllo over TLS ✓ " + "€".repeat(100);
  ws.send(text);
  const t = await next();
  out.text = { sent: text.length, back: typeof t === "string" ? t.length : typeof t, identical: t === text };
  for (const size of [1, 125, 70_000]) {
    const bytes = new Uint8Array(size).map((_, i) => (i * 31 + size) & 0xff);
    ws.send(bytes);
    const b = new Uint8Array(await next());
    out[`binary${size}`] = { back: b.length, identical: b.length === size && b.every((v, i) => v === bytes[i]) };
  }
  const closed = new Promise((ok) => (ws.onclose = (e) => ok({ code: e.code, reason: e.reason, wasClean: e.wasClean })));
  ws.close(4001, "bye from chromium");
  out.close = await closed;
  return out;
}

await run("tls", 90, async () => {
  const tls = selfSigned();
  const echo = await startExample("echo", tls);
  const chat = await startExample("chat", tls);
  const browser = await chromium(["--ignore-certificate-errors"]);
  const page = await browser.newPage();
  // An https:// page, so nothing about mixed content can interfere.
  await page.goto(`https://${chat.addr}/`);
  const r = await page.evaluate(echoOverWss, `wss://${echo.addr}/`);
  check("Chromium opened wss:// on examples/echo", r.protocol === "wss:", r.protocol);
  check("text echoed intact over wss://", r.text.identical, r.text);
  for (const size of [1, 125, 70_000]) {
    check(`${size} B binary echoed intact over wss://`, r[`binary${size}`].identical, r[`binary${size}`]);
  }
  // The echo server answers a close with the code it got (RFC 6455 5.5.1) and no reason.
  check("close(4001, reason): the close event has code 4001 and is clean",
    r.close.code === 4001 && r.close.wasClean, r.close);

  // The chat page itself over https:// and wss://; a binary message is refused with a
  // close that has a reason.
  await page.goto(`https://${chat.addr}/?name=tls&room=secure`);
  const status = await until(async () => ((await page.textContent("#status")) === "connected" ? true : null));
  check("the chat page over https:// connected its wss:// socket", status === true, await page.textContent("#status"));
  await page.evaluate("ws.send(new Uint8Array([1, 2, 3]))");
  const shown = await until(async () => {
    const s = await page.textContent("#status");
    return s.startsWith("closed") ? s : null;
  });
  check("server's close with code 1003 and reason \"text only\" seen by the page", shown === "closed (1003: text only)",
    shown ?? (await page.textContent("#status")));
});
