#!/usr/bin/env bash
# Regenerates the README's screenshots of the web app (docs/img/*.png):
# starts a throwaway cluster (Redis, PostgreSQL, chat-storage, two gateways,
# HAProxy) the way the browser tests do, has alice (desktop 1280x800), bob
# (phone 390x844) and carol chat in chromium, and saves what they see.
#   scripts/screenshots.sh [OUT_DIR]      default docs/img
# Needs what scripts/test.sh installs (scripts/install-deps.sh, npm ci in
# tests/ and web/client); builds the web app and the binaries when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d tests/node_modules ] || (cd tests && npm ci --no-audit --no-fund --loglevel=error)
[ -d web/client/node_modules ] || (cd web/client && npm ci --no-audit --no-fund --loglevel=error)
scripts/build-web.sh
if [ ! -x build/bin/chat-gateway ] || [ ! -x build/bin/chat-storage ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)"
fi
exec node tests/browser/screenshots.mjs "$@"
