#!/usr/bin/env bash
# Installs Node's `ws` for throng-bench deflate into benches/servers/node-ws/node_modules,
# at the version package-lock.json pins (a no-op when it is there). node_modules is not in
# git; throng-bench deflate runs this before it starts the server.
set -euo pipefail
cd "$(dirname "$0")"
want=$(node -p 'require("./package-lock.json").packages["node_modules/ws"].version')
if [[ -f node_modules/ws/package.json && "$(node -p 'require("./node_modules/ws/package.json").version')" == "$want" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
