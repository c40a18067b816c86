#!/usr/bin/env bash
# Installs Bun for throng-bench (the npm package `bun`, which ships the binary for this
# platform) into benches/servers/bun/node_modules, at the version package-lock.json pins.
# A no-op when that version is already there. throng-bench compare runs it when Bun is
# among the servers; node_modules is not in git.
set -euo pipefail
cd "$(dirname "$0")"
want=$(node -p 'require("./package-lock.json").packages["node_modules/bun"].version')
if [[ -x node_modules/.bin/bun && "$(node_modules/.bin/bun --version 2>/dev/null)" == "$want" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
have=$(node_modules/.bin/bun --version)
[[ "$have" == "$want" ]] || { echo "install.sh: installed Bun $have, expected $want" >&2; exit 1; }
echo "Bun $have installed in $(pwd)/node_modules"
