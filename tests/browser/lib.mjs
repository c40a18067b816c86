// What every test here shares: the backend to run on, starting an example server (and
// stopping it), launching Debian's Chromium with the flags it needs on a closed network,
// and checks that print what they saw and make the process fail when untrue.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const EXAMPLES = join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "release/examples");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** `--backend NAME` on the command line, else THRONG_BACKEND, else auto. */
export function backend() {
  const i = process.argv.indexOf("--backend");
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
  return process.env.THRONG_BACKEND || "auto";
}

/** Value of `--NAME VALUE` on this script's command line. */
export function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

let failures = 0;
let passes = 0;
const cleanups = [];

/** Records one check: prints it with what was seen, and counts it. */
export function check(what, ok, seen) {
  const shown = typeof seen === "string" ? seen : JSON.stringify(seen);
  console.log(`  ${ok ? "ok  " : "FAIL"} ${what}${seen === undefined ? "" : ` -- saw ${shown}`}`);
  if (ok) passes++;
  else failures++;
  return ok;
}

/** Runs `body` under a time limit, then everything registered with `onExit`; sets the exit code. */
export async function run(name, seconds, body) {
  console.log(`== ${name} (backend ${backend()})`);
  const t0 = Date.now();
  const abort = (why) => {
    check(why, false);
    // Cleanup that hangs (a browser that does not answer) must not hold the run.
    setTimeout(() => process.exit(1), 15_000).unref();
    finish().then(() => process.exit(1));
  };
  const timer = setTimeout(() => abort(`finished within ${seconds} s`), seconds * 1000);
  for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => abort(`not stopped by ${sig}`));
  try {
    await body();
  } catch (e) {
    check("ran without an exception", false, String(e?.stack ?? e));
  }
  clearTimeout(timer);
  await finish();
  if (passes === 0 && failures === 0) check("checked something", false);
  console.log(`  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  console.log(`${name}: ${passes} passed, ${failures} failed`);
  process.exit(failures === 0 ? 0 : 1);
}

async function finish() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    let timer;
    const late = new Promise((ok) => (timer = setTimeout(() => ok("took more than 10 s"), 10_000)));
    try {
      const r = await Promise.race([Promise.resolve().then(fn).then(() => null), late]);
      if (r) console.log(`  (cleanup ${r})`);
    } catch (e) {
      console.log(`  (cleanup: ${e})`);
    }
    clearTimeout(timer);
  }
}

// Whatever way this process ends, no server it started outlives it.
const children = new Set();
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** Runs `fn` when the test ends, last registered first. */
export function onExit(fn) {
  cleanups.push(fn);
}

/** A TCP port nobody listens on now on 127.0.0.1 (for programs that need one told). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Path of a built example (`cargo build --release --example NAME`). */
export function example(name) {
  return join(EXAMPLES, name);
}

/**
 * Starts `command` (a path, or a program on PATH) and waits until its output so far
 * matches `ready` (at once when `ready` is null); returns the match and the process. The
 * process gets SIGINT when the test ends (the examples shut down gracefully on it), SIGKILL
 * if it lingers. Its stderr after that is shown, prefixed by `label`.
 */
export function start(command, args, ready, { label = basename(command), seconds = 15 } = {}) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  onExit(() => stop(child));
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${label} not ready in ${seconds} s:\n${out}`)), seconds * 1000);
    const seen = (chunk) => {
      out += chunk ?? "";
      const m = ready === null ? [] : out.match(ready);
      if (m) {
        clearTimeout(timer);
        child.stdout.off("data", seen);
        child.stderr.off("data", seen);
        child.removeAllListeners("exit");
        child.once("exit", (code, sig) => console.log(`  (${label} exited: ${code ?? sig})`));
        // Keep draining so a chatty server never blocks on a full pipe.
        child.stdout.on("data", () => {});
        child.stderr.on("data", (d) => process.stderr.write(`  [${label}] ${d}`));
        ok({ match: m, child, output: out });
      }
    };
    child.stdout.setEncoding("utf8").on("data", seen);
    child.stderr.setEncoding("utf8").on("data", seen);
    child.once("error", (e) => fail(e));
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      fail(new Error(`${label} exited (${code ?? sig}) before it was ready:\n${out}`));
    });
    if (ready === null) seen("");
  });
}

function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  return new Promise((ok) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(kill);
      ok();
    });
    child.kill("SIGINT");
  });
}

/**
 * Starts examples/echo or examples/chat on a port the kernel picks and on this test's
 * backend; returns its address ("127.0.0.1:PORT") and the backend it reported.
 */
export async function startExample(name, extra = []) {
  const args = ["--addr", "127.0.0.1:0", "--backend", backend(), "--threads", "2", ...extra];
  const { match, output } = await start(example(name), args, /(?:wss?|https?):\/\/([0-9.]+:\d+)\/ backend=(\w+)/);
  console.log(`  started ${name} ${extra.join(" ")}: ${output.split("\n")[0]}`);
  if (backend() !== "auto") check(`${name} runs on ${backend()}`, match[2] === backend(), match[2]);
  return { addr: match[1], backend: match[2] };
}

/**
 * Headless Chromium with the flags it needs to start on a closed network, in a new empty
 * profile. Without them it waits on network services (sync, component updates, QUIC) that
 * never answer here.
 */
export async function chromium(extraArgs = []) {
  const { chromium: pw } = await import("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "throng-chromium-"));
  onExit(() => rmSync(profile, { recursive: true, force: true }));
  const context = await pw.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
  onExit(() => context.close());
  const version = context.browser()?.version() ?? (await chromiumVersion());
  console.log(`  chromium ${version}`);
  return context;
}

async function chromiumVersion() {
  const { execFileSync } = await import("node:child_process");
  try {
    return execFileSync(CHROMIUM, ["--version"], { encoding: "utf8" }).trim();
  } catch {
    return "(version unknown)";
  }
}

/** Waits until `predicate()` is true (polled), or `seconds` pass; returns its last value. */
export async function until(predicate, seconds = 10) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await predicate();
    if (v || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}
