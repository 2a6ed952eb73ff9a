#!/usr/bin/env bash
# Installs the web app's npm packages from web/package-lock.json and builds it
# into web/dist (React + Vite), only when needed: node_modules missing or older
# than the lock, dist missing or older than a source. scripts/dev.sh and
# scripts/test.sh call it; the Dockerfile runs the same two npm commands.
# Nothing is fetched at run time: the gateway serves web/dist (--web-root).
set -euo pipefail
cd "$(dirname "$0")/../web"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi
stale=0
if [ ! -f dist/index.html ]; then
  stale=1
elif [ -n "$(find index.html vite.config.js package.json package-lock.json src public -newer dist/index.html -print -quit)" ]; then
  stale=1
fi
if [ "$stale" = 1 ]; then
  npm run --silent build -- --logLevel warn
fi
