#!/usr/bin/env bash
# Checks the deployment files without a container engine: the compose file
# validates, the HAProxy configuration it mounts is valid and is what
# scripts/gen-haproxy.sh generates today, and the Dockerfile installs its
# packages with the one install script.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0

if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f docker-compose.yml config -q || { echo "docker-compose.yml does not validate"; fail=1; }
else
  echo "docker-compose not installed (scripts/install-deps.sh installs it)"; fail=1
fi

expected=$(scripts/gen-haproxy.sh 0.0.0.0:3000 gateway1:3000 gateway2:3000 | tail -n +2)
actual=$(tail -n +2 deploy/haproxy/compose.cfg)
if [ "$expected" != "$actual" ]; then
  echo "deploy/haproxy/compose.cfg is stale: regenerate it with scripts/gen-haproxy.sh (see its first line)"
  fail=1
fi
haproxy -c -q -f deploy/haproxy/compose.cfg || { echo "deploy/haproxy/compose.cfg is invalid"; fail=1; }

grep -q 'install-deps.sh --build' Dockerfile && grep -q 'install-deps.sh --runtime' Dockerfile \
  || { echo "Dockerfile must install packages with scripts/install-deps.sh"; fail=1; }

if [ "$fail" -eq 0 ]; then echo "deploy files OK"; fi
exit "$fail"
