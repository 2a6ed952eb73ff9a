#!/usr/bin/env bash
# Checks the deployment files without a container engine or a cluster: the
# compose file validates, the HAProxy configuration it mounts is valid and is
# what scripts/gen-haproxy.sh generates today, the Dockerfile installs its
# packages with the one install script, and the Kubernetes manifests parse
# and only set settings chat-gateway knows.
#   tests/deploy/check.sh PATH-TO-chat-gateway
set -euo pipefail
gateway=$(realpath "${1:?usage: $0 PATH-TO-chat-gateway}")
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

# Every CHAT_* variable the manifests and the compose file set must be a
# setting of chat-gateway (a typo would be silently ignored by the pod).
known=$("$gateway" --help | grep -o 'env CHAT_[A-Z_]*' | cut -d' ' -f2 | sort -u)
/usr/bin/python3 - "$known" <<'PY' || fail=1
import sys, glob, yaml
known = set(sys.argv[1].split())
bad = []
for path in sorted(glob.glob("deploy/k8s/*.yaml")) + ["docker-compose.yml"]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and k.startswith("CHAT_") and k not in known:
                    bad.append(f"{path}: {k}")
                if k == "name" and isinstance(v, str) and v.startswith("CHAT_") and v not in known:
                    bad.append(f"{path}: {v}")
                walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)
    for d in docs:
        walk(d)
    if path.startswith("deploy/k8s/") and not path.endswith("kustomization.yaml"):
        for d in docs:
            if "apiVersion" not in d or "kind" not in d:
                bad.append(f"{path}: a document without apiVersion/kind")
if bad:
    print("unknown settings or malformed manifests:\n  " + "\n  ".join(bad))
    sys.exit(1)
PY

if [ "$fail" -eq 0 ]; then echo "deploy files OK"; fi
exit "$fail"
