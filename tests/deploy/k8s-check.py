#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/k8s as kubectl would apply them:
each kustomization (deploy/k8s, and every overlay beside base/ such as
redis-cluster/) is rendered with `kubectl kustomize` and the objects it gives
must have what production needs (issue 14): resources, startup, readiness and
liveness probes on every container, a drain that fits the grace period, a
PodDisruptionBudget and an autoscaler for the gateways, headless governing
Services, NetworkPolicies that let only the ingress controller reach
gateways and storage and only those two reach Redis and PostgreSQL, TLS on
the Ingress, every image set by the kustomization's images:, no secret in
the manifests; a Redis Cluster overlay must run a 6-node cluster, form it and
point both programs at it.

  k8s-check.py [--self-test] PATH-TO-chat-gateway PATH-TO-chat-storage [REPO-ROOT]

The programs' --help lists the CHAT_ settings each knows; REPO-ROOT defaults
to this checkout. Exit 1 with one line per problem. --self-test breaks a
scratch copy of deploy/ in each way k8s-mutations.yaml lists and requires the
check to fail on each, naming the problem: every rule still bites.
"""
import glob
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

# must be equal wherever both programs are configured
SHARED = ["CHAT_INGEST_SHARDS", "CHAT_JWT_SECRET", "CHAT_ROOM_SECRET", "CHAT_AUTH", "CHAT_REDIS_URL"]
# the ingress controller's pods, as networkpolicy.yaml names them
INGRESS_NS = "ingress-nginx"
# seconds the gateway needs after the drain delay to close its sessions
CLOSE_MARGIN_S = 5
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# the CHAT_ settings each program knows (its --help)
KNOWN = {}
bad = []


def render(path, where):
    out = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        bad.append(f"kubectl kustomize {where} fails: {out.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def name(d):
    return d.get("metadata", {}).get("name", "?")


def pod_spec(d):
    return d.get("spec", {}).get("template", {}).get("spec", {})


def pod_labels(d):
    return d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}


def containers(d):
    spec = pod_spec(d)
    return spec.get("containers", []) + spec.get("initContainers", [])


def selects(selector, labels):
    """A label selector (matchLabels only, or a Service's map) matches labels."""
    if selector is None:
        return False
    if "matchExpressions" in selector:
        bad.append(f"matchExpressions not understood by this check: {selector}")
        return False
    want = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
    return all(labels.get(k) == v for k, v in want.items())


def env_map(c):
    return {e["name"]: e for e in c.get("env", []) if "name" in e}


def env_value(c, var):
    e = env_map(c).get(var)
    return None if e is None else e.get("value")


def program(c):
    """gateway or storage for a container of the chat image, else None."""
    image = str(c.get("image", ""))
    repo = re.split(r"[:@]", image.rsplit("/", 1)[-1])[0]
    if repo != "chat":
        return None
    return "storage" if any("chat-storage" in str(x) for x in c.get("command", [])) else "gateway"


def cpu_cores(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def prestop_seconds(c):
    hook = c.get("lifecycle", {}).get("preStop")
    if not hook:
        return None
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    cmd = hook.get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0] in ("sleep", "/bin/sleep"):
        return int(cmd[1])
    return 0  # a hook that is not a plain sleep: counted as nothing


def check_env(where, docs):
    """CHAT_ settings known to the program; shared ones equal; secrets by reference."""
    seen, progs = {}, set()
    for d in docs:
        for c in containers(d):
            what = f"{where}: {d['kind']} {name(d)}/{c['name']}"
            env = env_map(c)
            for k, e in env.items():
                if re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL", k):
                    if "secretKeyRef" not in (e.get("valueFrom") or {}):
                        bad.append(f"{what}: {k} must come from a Secret (valueFrom.secretKeyRef)")
                if "@" in str(e.get("value", "")) and "://" in str(e.get("value", "")):
                    bad.append(f"{what}: {k} holds a URL with credentials; take it from a Secret")
            prog = program(c)
            if prog is None:
                if any(k.startswith("CHAT_") for k in env):
                    bad.append(f"{what} sets CHAT_ variables but does not run the chat image")
                continue
            progs.add(prog)
            for k in env:
                if k.startswith("CHAT_") and k not in KNOWN[prog]:
                    bad.append(f"{what} ({prog}) sets {k}, which chat-{prog} does not know")
            for k in SHARED:
                if k in env and k in KNOWN[prog]:
                    v = repr(env[k].get("value", env[k].get("valueFrom")))
                    seen.setdefault(k, {}).setdefault(v, []).append(f"{name(d)}/{c['name']}")
    if progs != {"gateway", "storage"}:
        bad.append(f"{where}: runs {sorted(progs)}, expected both gateway and storage")
    for k, values in seen.items():
        if len(values) > 1:
            bad.append(f"{where}: {k} differs between containers: {values}")
    for d in docs:
        if d["kind"] == "Secret" and (d.get("data") or d.get("stringData")):
            bad.append(f"{where}: Secret {name(d)} has literal data; create it outside the "
                       "manifests and refer to it by name")


def check_containers(where, docs):
    for d in docs:
        if d["kind"] not in WORKLOADS:
            continue
        for c in containers(d):
            what = f"{where}: {d['kind']} {name(d)}/{c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        bad.append(f"{what}: no resources.{part}.{r}")
            if d["kind"] == "Job":
                continue  # runs to completion: nothing to probe
            for p in ("startupProbe", "readinessProbe", "livenessProbe"):
                if p not in c:
                    bad.append(f"{what}: no {p}")
            ready = c.get("readinessProbe", {})
            if ready.get("failureThreshold", 3) < 2:
                bad.append(f"{what}: readinessProbe.failureThreshold "
                           f"{ready.get('failureThreshold')} < 2: one missed probe takes the pod out")


def find(docs, kind, nm):
    for d in docs:
        if d["kind"] == kind and name(d) == nm:
            return d
    bad.append(f"no {kind} {nm}")
    return None


def check_gateway(where, docs):
    gw = find(docs, "Deployment", "chat-gateway")
    st = find(docs, "Deployment", "chat-storage")
    if gw is None or st is None:
        return
    labels = pod_labels(gw)
    c = next((c for c in containers(gw) if program(c) == "gateway"), None)
    if c is None:
        bad.append(f"{where}: chat-gateway runs no gateway container")
        return
    drain_ms = int(env_value(c, "CHAT_DRAIN_DELAY") or 0)
    if drain_ms <= 0:
        bad.append(f"{where}: chat-gateway sets no CHAT_DRAIN_DELAY: SIGTERM closes sessions at once")
    pre = prestop_seconds(c)
    if not pre:
        bad.append(f"{where}: chat-gateway has no preStop sleep: it may refuse sessions the "
                   "ingress still sends it")
    grace = pod_spec(gw).get("terminationGracePeriodSeconds", 30)
    need = (pre or 0) + math.ceil(drain_ms / 1000) + CLOSE_MARGIN_S
    if grace < need:
        bad.append(f"{where}: chat-gateway terminationGracePeriodSeconds {grace} < preStop "
                   f"{pre} + drain {drain_ms} ms + {CLOSE_MARGIN_S} s to close sessions")
    workers = env_value(c, "CHAT_WORKERS")
    limit = (c.get("resources", {}).get("limits") or {}).get("cpu")
    if limit is not None and (workers is None or int(workers) != math.ceil(cpu_cores(limit))):
        bad.append(f"{where}: chat-gateway CHAT_WORKERS {workers} != its CPU limit {limit} "
                   "(the default counts the node's cores)")

    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"
            and selects(d["spec"].get("selector"), labels)]
    if not pdbs:
        bad.append(f"{where}: no PodDisruptionBudget selects the gateway pods {labels}")
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"
            and d["spec"].get("scaleTargetRef", {}).get("kind") == "Deployment"
            and d["spec"].get("scaleTargetRef", {}).get("name") == "chat-gateway"]
    if not hpas:
        bad.append(f"{where}: no HorizontalPodAutoscaler scales Deployment chat-gateway")
    for h in hpas:
        lo = h["spec"].get("minReplicas", 1)
        if lo < 2:
            bad.append(f"{where}: HPA {name(h)} minReplicas {lo} < 2")
        for p in pdbs:
            s = p["spec"]
            if "minAvailable" in s and int(s["minAvailable"]) >= lo:
                bad.append(f"{where}: PDB {name(p)} minAvailable {s['minAvailable']} blocks "
                           f"every eviction at the HPA's minimum {lo}")
        if "replicas" in gw["spec"]:
            bad.append(f"{where}: chat-gateway sets replicas although HPA {name(h)} scales it "
                       "(every apply would reset the count)")
    if st["spec"].get("replicas", 1) < 2:
        bad.append(f"{where}: chat-storage runs {st['spec'].get('replicas', 1)} replica(s); "
                   "at least 2 share the ingest shards")


def check_statefulsets(where, docs):
    services = {name(d): d for d in docs if d["kind"] == "Service"}
    for d in docs:
        if d["kind"] != "StatefulSet":
            continue
        svc = services.get(d["spec"].get("serviceName"))
        if svc is None:
            bad.append(f"{where}: StatefulSet {name(d)}: serviceName "
                       f"{d['spec'].get('serviceName')!r} names no Service")
        elif svc["spec"].get("clusterIP") != "None":
            bad.append(f"{where}: StatefulSet {name(d)}: Service {name(svc)} is not headless "
                       "(clusterIP: None)")
        elif not selects(svc["spec"].get("selector"), pod_labels(d)):
            bad.append(f"{where}: StatefulSet {name(d)}: Service {name(svc)} does not select its pods")


def check_ingress(where, docs):
    for d in docs:
        if d["kind"] != "Ingress":
            continue
        tls = d["spec"].get("tls") or []
        if not tls:
            bad.append(f"{where}: Ingress {name(d)} has no tls")
        covered = set()
        for t in tls:
            if not t.get("secretName"):
                bad.append(f"{where}: Ingress {name(d)}: a tls entry without secretName")
            covered |= set(t.get("hosts", []))
        for r in d["spec"].get("rules", []):
            if r.get("host") and r["host"] not in covered:
                bad.append(f"{where}: Ingress {name(d)}: host {r['host']} has no tls entry")


def image_refs(kustomization):
    refs = set()
    for i in kustomization.get("images", []):
        repo = i.get("newName", i["name"])
        if "digest" in i:
            refs.add(f"{repo}@{i['digest']}")
        elif "newTag" in i:
            refs.add(f"{repo}:{i['newTag']}")
    return refs


def check_images(where, docs, kustomizations):
    refs = set()
    for k in kustomizations:
        with open(k) as f:
            refs |= image_refs(yaml.safe_load(f) or {})
    if not any(r.split("@")[0].split(":")[0].rsplit("/", 1)[-1] == "chat" for r in refs):
        bad.append(f"{where}: no kustomize images: entry for the chat image")
    for d in docs:
        for c in containers(d):
            if c.get("image") not in refs:
                bad.append(f"{where}: {d['kind']} {name(d)}/{c['name']} image {c.get('image')!r} "
                           "is not set by an images: entry of the kustomization")


# --- NetworkPolicies: who may reach whom, resolved to the rendered workloads

def peers(rule_peers, pods):
    """The sources or destinations a rule's from/to allows: workload names,
    'ingress-controller', 'dns' or 'ANY'."""
    if not rule_peers:
        return {"ANY"}
    out = set()
    for p in rule_peers:
        if "ipBlock" in p:
            out.add("ANY")
            continue
        ns = p.get("namespaceSelector")
        if ns is not None:
            nsname = (ns.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
            pod = (p.get("podSelector") or {}).get("matchLabels") or {}
            if nsname == INGRESS_NS:
                out.add("ingress-controller")
            elif nsname == "kube-system" and pod.get("k8s-app") == "kube-dns":
                out.add("dns")
            else:
                out.add("ANY")
            continue
        sel = p.get("podSelector")
        out |= {w for w, labels in pods.items() if selects(sel or {}, labels)}
    return out


def ports_of(rule):
    if not rule.get("ports"):
        return None  # every port
    return {(p.get("protocol", "TCP"), p.get("port")) for p in rule["ports"]}


def allowed(docs, pods, direction):
    """{workload: {peer: ports or None}} per direction (Ingress/Egress); a
    workload no policy of that direction selects is open: {'ANY': None}."""
    key = "from" if direction == "Ingress" else "to"
    out = {}
    for w, labels in pods.items():
        got, selected = {}, False
        for d in docs:
            if d["kind"] != "NetworkPolicy":
                continue
            spec = d["spec"]
            types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
            if direction not in types or not selects(spec.get("podSelector") or {}, labels):
                continue
            selected = True
            for rule in spec.get(direction.lower()) or []:
                for p in peers(rule.get(key), pods):
                    ports = ports_of(rule)
                    if ports is None or (p in got and got[p] is None):
                        got[p] = None
                    else:
                        got[p] = got.get(p, set()) | ports
        out[w] = got if selected else {"ANY": None}
    return out


def container_ports(d):
    return {(p.get("protocol", "TCP"), v) for c in containers(d) for p in c.get("ports", [])
            for v in (p["containerPort"], p.get("name"))}


def reaches(rules, peer, port_set):
    """peer may use one of port_set under rules (a {peer: ports} map)."""
    if peer not in rules:
        return False
    ports = rules[peer]
    return ports is None or bool(ports & port_set)


def check_netpols(where, docs):
    work = {name(d): d for d in docs if d["kind"] in WORKLOADS}
    pods = {w: pod_labels(d) for w, d in work.items()}
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not any(d["spec"].get("podSelector") in ({}, None)
               and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not d["spec"].get("ingress") and not d["spec"].get("egress") for d in pols):
        bad.append(f"{where}: no default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)")
    ingress = allowed(docs, pods, "Ingress")
    egress = allowed(docs, pods, "Egress")
    dns = {("UDP", 53), ("TCP", 53)}
    redis = {w for w, labels in pods.items() if labels.get("role") == "redis"}
    if not redis:
        bad.append(f"{where}: no Redis workload (pods labelled role: redis)")
    for w in pods:
        if not reaches(egress[w], "dns", {("UDP", 53)}) and not reaches(egress[w], "ANY", dns):
            bad.append(f"{where}: {w} may not resolve names (no DNS egress on UDP 53)")
        if "ANY" in ingress[w]:
            bad.append(f"{where}: anything may reach {w}")
    for w in ("chat-gateway", "chat-storage"):
        if w not in pods:
            continue
        src = set(ingress[w])
        if src != {"ingress-controller"}:
            bad.append(f"{where}: {w} is reachable from {sorted(src)}, expected the ingress "
                       f"controller only")
        elif not reaches(ingress[w], "ingress-controller", container_ports(work[w])):
            bad.append(f"{where}: the ingress controller may not use {w}'s port")
        for r in redis:
            if not reaches(egress[w], r, container_ports(work[r])):
                bad.append(f"{where}: {w} may not reach Redis ({r})")
    if "chat-storage" in pods and "postgres" in pods:
        if not reaches(egress["chat-storage"], "postgres", container_ports(work["postgres"])):
            bad.append(f"{where}: chat-storage may not reach postgres")
    for db in redis | ({"postgres"} & set(pods)):
        src = set(ingress[db])
        # a cluster's nodes talk to each other, and its Job forms it
        extra = src - {"chat-gateway", "chat-storage", db, db + "-create"}
        if extra:
            bad.append(f"{where}: {db} is reachable from {sorted(extra)}: only gateways and "
                       "storage may reach it")
        users = {"chat-storage"} if db == "postgres" else {"chat-gateway", "chat-storage"}
        for u in users & set(pods):
            if not reaches(ingress[db], u, container_ports(work[db])):
                bad.append(f"{where}: {db} does not let {u} in on its port")
        if db == "postgres" and "chat-gateway" in src:
            bad.append(f"{where}: gateways may reach postgres; only storage uses it")
    for w in pods:
        dst = set(egress[w]) - {"dns"}
        # others talk to their own kind (cluster peers) or, a Job X-create, to X
        wanted = {"chat-gateway": redis, "chat-storage": redis | {"postgres"}}.get(
            w, {w, w.removesuffix("-create")})
        if dst - wanted:
            bad.append(f"{where}: {w} may send to {sorted(dst - wanted)}")


def check_redis(where, docs, cluster):
    urls = {}
    for d in docs:
        for c in containers(d):
            e = env_map(c).get("CHAT_REDIS_URL", {})
            # from a Secret (a password in it): its shape is not visible here
            if program(c) and "valueFrom" not in e:
                urls[f"{name(d)}/{c['name']}"] = e.get("value")
    services = {name(d) for d in docs if d["kind"] == "Service"}
    sts = {name(d): d for d in docs if d["kind"] == "StatefulSet"}
    for who, url in urls.items():
        if url is None:
            bad.append(f"{where}: {who} sets no CHAT_REDIS_URL")
            continue
        if not cluster:
            m = re.fullmatch(r"redis://([^:/@]+)(:\d+)?(/\d+)?", url)
            if not m or m.group(1) not in services:
                bad.append(f"{where}: {who} CHAT_REDIS_URL {url} names no Service of the deployment")
            continue
        if not url.startswith("redis-cluster://"):
            bad.append(f"{where}: {who} CHAT_REDIS_URL {url} is not redis-cluster://")
            continue
        for seed in url[len("redis-cluster://"):].split(","):
            m = re.fullmatch(r"([a-z0-9-]+)-(\d+)\.([a-z0-9-]+):6379", seed)
            s = m and sts.get(m.group(1))
            if not s or s["spec"].get("serviceName") != m.group(3) \
                    or int(m.group(2)) >= s["spec"].get("replicas", 1):
                bad.append(f"{where}: {who} seed {seed} is not a pod of a StatefulSet "
                           "(NAME-N.SERVICE:6379)")
    if not cluster:
        return
    nodes = [d for d in sts.values()
             if any("--cluster-enabled yes" in " ".join(map(str, c.get("command", []) + c.get("args", [])))
                    for c in containers(d))]
    if len(nodes) != 1 or nodes[0]["spec"].get("replicas") != 6:
        bad.append(f"{where}: expected one StatefulSet of 6 redis-server --cluster-enabled yes pods")
    jobs = [d for d in docs if d["kind"] == "Job" and any(
        re.search(r"redis-cli --cluster create .*--cluster-replicas 1",
                  " ".join(map(str, c.get("command", []) + c.get("args", []))))
        for c in containers(d))]
    if not jobs:
        bad.append(f"{where}: no Job runs redis-cli --cluster create ... --cluster-replicas 1")


def kustomization_chain(path):
    """The kustomization files a build reads (this one and its bases)."""
    k = os.path.join(path, "kustomization.yaml")
    out = [k]
    with open(k) as f:
        for r in (yaml.safe_load(f) or {}).get("resources", []):
            sub = os.path.normpath(os.path.join(path, r))
            if os.path.isdir(sub):
                out += kustomization_chain(sub)
    return out


def check_base_files(k8s):
    """Every manifest file of base/ is listed in its kustomization."""
    base = os.path.join(k8s, "base")
    with open(os.path.join(base, "kustomization.yaml")) as f:
        listed = set(yaml.safe_load(f).get("resources", []))
    present = {os.path.basename(p) for p in glob.glob(os.path.join(base, "*.yaml"))} - {"kustomization.yaml"}
    if listed != present:
        bad.append(f"deploy/k8s/base/kustomization.yaml: resources {sorted(listed)} != files {sorted(present)}")


def run(root):
    """Checks the kustomizations of root/deploy/k8s: (problems, what was built)."""
    bad.clear()
    k8s = os.path.join(root, "deploy", "k8s")
    check_base_files(k8s)
    builds = [k8s] + sorted(os.path.dirname(k) for k in glob.glob(os.path.join(k8s, "*", "kustomization.yaml"))
                            if os.path.basename(os.path.dirname(k)) != "base")
    if len(builds) < 2:
        bad.append("deploy/k8s: no overlay beside base/ (the Redis Cluster option)")
    for b in builds:
        where = os.path.relpath(b, root)
        docs = render(b, where)
        if not docs:
            continue
        check_env(where, docs)
        check_containers(where, docs)
        check_gateway(where, docs)
        check_statefulsets(where, docs)
        check_ingress(where, docs)
        check_images(where, docs, kustomization_chain(b))
        check_netpols(where, docs)
        check_redis(where, docs, cluster=os.path.basename(b) == "redis-cluster")
        for want in [("Service", "chat-gateway"), ("Service", "chat-storage"),
                     ("StatefulSet", "postgres"), ("Service", "postgres"), ("Ingress", "chat")]:
            if not any(d["kind"] == want[0] and name(d) == want[1] for d in docs):
                bad.append(f"{where}: no {want[0]} {want[1]}")
    return list(dict.fromkeys(bad)), [os.path.relpath(b, root) for b in builds]




def self_test(root, mutations):
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in mutations:
            what, path, old, new, expect = m["what"], m["file"], m["old"], m["new"], m["expect"]
            shutil.rmtree(os.path.join(tmp, "deploy"), ignore_errors=True)
            shutil.copytree(os.path.join(root, "deploy"), os.path.join(tmp, "deploy"))
            f = os.path.join(tmp, "deploy", "k8s", path)
            with open(f) as fh:
                text = fh.read()
            if old not in text:
                failures.append(f"{what}: {path} no longer holds {old!r}: update the mutation")
                continue
            with open(f, "w") as fh:
                fh.write(text.replace(old, new))
            problems, _ = run(tmp)
            if not any(expect in p for p in problems):
                failures.append(f"{what}: not reported (expected {expect!r}; got {problems})")
    return failures


def main():
    args = sys.argv[1:]
    selftest = args[:1] == ["--self-test"]
    args = args[1:] if selftest else args
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    for prog, path in zip(("gateway", "storage"), args):
        out = subprocess.run([path, "--help"], capture_output=True, text=True).stdout
        KNOWN[prog] = set(re.findall(r"env (CHAT_[A-Z_]+)", out))
        if not KNOWN[prog]:
            sys.exit(f"{path} --help lists no CHAT_ variables")
    root = args[2] if len(args) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    problems, builds = run(root)
    if problems:
        print("kubernetes manifests:\n  " + "\n  ".join(problems))
        sys.exit(1)
    if not selftest:
        print(f"kubernetes manifests OK ({', '.join(builds)})")
        return
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s-mutations.yaml")) as f:
        mutations = yaml.safe_load(f)
    failures = self_test(root, mutations)
    if failures:
        print("k8s-check self-test: a broken manifest passed:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"k8s-check self-test: all {len(mutations)} broken copies fail")


main()
