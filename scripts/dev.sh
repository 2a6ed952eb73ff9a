#!/usr/bin/env bash
# Starts the whole system locally for development, in the foreground:
# installs the system packages, builds, and runs chat-gateway on port 3000.
# Extra arguments go to chat-gateway (e.g. --app engine-echo, --workers 1).
# Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target chat-gateway
exec build/bin/chat-gateway --listen "${CHAT_LISTEN:-127.0.0.1:3000}" --cors-origin "${CHAT_CORS_ORIGIN:-*}" "$@"
