#!/usr/bin/env bash
# Offline check of docker/k8s/*.yaml: needs no cluster.
#
# 1. When kubectl reaches a cluster: kubectl apply --dry-run=client --validate=false (kubectl needs the
#    API server's discovery even for a client dry-run, so without a cluster this step is skipped).
# 2. Always: parse the manifests with Python's yaml (Debian python3-yaml, or pip install pyyaml) and
#    check what kubectl does not: required fields, selectors that match the pod labels, ports that
#    exist, an HTTP (not TCP) readiness probe, and the time budget
#    preStop (if any) + handoff-init's grace < terminationGracePeriodSeconds, with --stop-delay
#    shorter than the grace it is counted in (handoff-init refuses to start otherwise).
#    The checker then runs on broken copies of the manifests and must reject each one, so it is
#    known to be able to fail.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifests=("$here/deployment.yaml" "$here/service.yaml")

if command -v kubectl >/dev/null && kubectl version --request-timeout=5s >/dev/null 2>&1; then
    args=()
    for f in "${manifests[@]}"; do args+=(-f "$f"); done
    kubectl apply --dry-run=client --validate=false "${args[@]}"
    echo "check.sh: kubectl client dry-run ok"
else
    echo "check.sh: no reachable cluster; kubectl dry-run skipped, static checks only"
fi

python3 - "${manifests[@]}" <<'PY'
import copy
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("check.sh: python yaml missing (apt-get install python3-yaml, or pip install pyyaml)")

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(text):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(text).strip())
    if not match:
        raise ValueError("bad duration %r" % text)
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def check(docs):
    """Returns a list of problems (empty = fine)."""
    errors = []
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    services = [d for d in docs if d.get("kind") == "Service"]
    for doc in docs:
        for field in ("apiVersion", "kind"):
            if not doc.get(field):
                errors.append("a document has no %s" % field)
        if not (doc.get("metadata") or {}).get("name"):
            errors.append("%s without metadata.name" % doc.get("kind"))
    if len(deployments) != 1 or len(services) != 1:
        return errors + ["want one Deployment and one Service, got %d and %d"
                         % (len(deployments), len(services))]
    dep, svc = deployments[0], services[0]
    if dep.get("apiVersion") != "apps/v1":
        errors.append("Deployment apiVersion is %r, want apps/v1" % dep.get("apiVersion"))
    spec = dep.get("spec") or {}
    pod = (spec.get("template") or {})
    labels = (pod.get("metadata") or {}).get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        errors.append("Deployment selector %r does not match the pod labels %r" % (selector, labels))
    pod_spec = pod.get("spec") or {}
    containers = pod_spec.get("containers") or []
    if not containers:
        return errors + ["Deployment has no containers"]
    ports = {}
    for c in containers:
        for field in ("name", "image"):
            if not c.get(field):
                errors.append("container without %s" % field)
        for p in c.get("ports") or []:
            ports[p.get("containerPort")] = c
            if p.get("name"):
                ports[p["name"]] = c
    app = containers[0]

    probe = app.get("readinessProbe")
    if not probe:
        errors.append("container %s has no readinessProbe" % app.get("name"))
    elif "tcpSocket" in probe:
        errors.append("readinessProbe is a TCP connect: init holds the socket, the kernel accepts "
                      "with no generation serving; probe over HTTP")
    elif "httpGet" in probe:
        http = probe["httpGet"]
        if not str(http.get("path", "")).startswith("/"):
            errors.append("readinessProbe.httpGet.path %r is not a path" % http.get("path"))
        if http.get("port") not in ports:
            errors.append("readinessProbe port %r is not a container port" % http.get("port"))
    elif "exec" not in probe and "grpc" not in probe:
        errors.append("readinessProbe has no handler")

    target = next((p.get("targetPort") for p in (svc.get("spec") or {}).get("ports") or []), None)
    if target not in ports:
        errors.append("Service targetPort %r is not a container port" % target)
    svc_selector = (svc.get("spec") or {}).get("selector") or {}
    if not svc_selector or any(labels.get(k) != v for k, v in svc_selector.items()):
        errors.append("Service selector %r does not match the pod labels %r" % (svc_selector, labels))

    # The budget: the kubelet runs preStop, then sends SIGTERM; it SIGKILLs when
    # terminationGracePeriodSeconds (counted from the start of preStop) runs out.
    tgps = pod_spec.get("terminationGracePeriodSeconds")
    env = {e.get("name"): e.get("value") for e in app.get("env") or []}
    if not isinstance(tgps, int):
        errors.append("terminationGracePeriodSeconds must be set (an integer)")
    elif "HANDOFF_GRACE" not in env:
        errors.append("set HANDOFF_GRACE explicitly so the budget is visible and checked")
    else:
        try:
            grace = seconds(env["HANDOFF_GRACE"])
        except ValueError as exc:
            errors.append("HANDOFF_GRACE: %s" % exc)
            grace = None
        pre = ((app.get("lifecycle") or {}).get("preStop") or {})
        pre_s = 0.0
        if "sleep" in pre:
            pre_s = float(pre["sleep"].get("seconds", 0))
        elif "exec" in pre:
            cmd = pre["exec"].get("command") or []
            if len(cmd) == 2 and cmd[0].endswith("sleep"):
                pre_s = seconds(cmd[1])
            else:
                errors.append("cannot tell how long preStop %r takes" % cmd)
        if grace is not None and not pre_s + grace < tgps:
            errors.append("preStop %gs + HANDOFF_GRACE %gs must be < terminationGracePeriodSeconds %ds"
                          % (pre_s, grace, tgps))
        if "HANDOFF_STOP_DELAY" not in env and not pre_s:
            errors.append("nothing keeps the pod serving while its endpoint removal spreads: set "
                          "HANDOFF_STOP_DELAY (or a preStop sleep, where the image has one)")
        if "HANDOFF_STOP_DELAY" in env and grace is not None:
            try:
                delay = seconds(env["HANDOFF_STOP_DELAY"])
                if not delay < grace:
                    errors.append("HANDOFF_STOP_DELAY %gs must be shorter than HANDOFF_GRACE %gs "
                                  "(it is counted within it)" % (delay, grace))
            except ValueError as exc:
                errors.append("HANDOFF_STOP_DELAY: %s" % exc)
    return errors


def load(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    return docs


def env_of(docs):
    dep = next(d for d in docs if d["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]


def set_env(docs, name, value):
    for e in env_of(docs)["env"]:
        if e["name"] == name:
            e["value"] = value


def mutate(docs, how):
    docs = copy.deepcopy(docs)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    svc = next(d for d in docs if d["kind"] == "Service")
    if how == "grace too long":
        set_env(docs, "HANDOFF_GRACE", "30s")
    elif how == "preStop too long":
        env_of(docs)["lifecycle"] = {"preStop": {"sleep": {"seconds": 12}}}
    elif how == "stop delay too long":
        set_env(docs, "HANDOFF_STOP_DELAY", "20s")
    elif how == "no stop delay":
        env_of(docs)["env"] = [e for e in env_of(docs)["env"] if e["name"] != "HANDOFF_STOP_DELAY"]
    elif how == "stop delay malformed":
        set_env(docs, "HANDOFF_STOP_DELAY", "soon")
    elif how == "tcp probe":
        env_of(docs)["readinessProbe"] = {"tcpSocket": {"port": "http"}}
    elif how == "service selector":
        svc["spec"]["selector"] = {"app": "other"}
    elif how == "target port":
        svc["spec"]["ports"][0]["targetPort"] = "nope"
    elif how == "no image":
        del env_of(docs)["image"]
    elif how == "deployment selector":
        dep["spec"]["selector"]["matchLabels"] = {"app": "other"}
    return docs


docs = load(sys.argv[1:])
problems = check(docs)
for p in problems:
    print("check.sh: FAIL: %s" % p)
if problems:
    sys.exit(1)
BROKEN = ("grace too long", "preStop too long", "stop delay too long", "no stop delay",
          "stop delay malformed",
          "tcp probe", "service selector", "target port", "no image", "deployment selector")
for how in BROKEN:
    if not check(mutate(docs, how)):
        sys.exit("check.sh: FAIL: the checker accepted a broken manifest (%s)" % how)
print("check.sh: static checks ok (%d documents; %d broken variants rejected)"
      % (len(docs), len(BROKEN)))
PY

# 3. rollout-test.sh without a cluster: fake kubectl, kind, minikube, k3s and docker on PATH record
#    their calls and answer as a cluster of each kind would, so its choices (how images are loaded,
#    DNS name or ClusterIP, SKIP, exit codes) are checked here.
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
mkdir "$fake/bin"
cat >"$fake/bin/kubectl" <<'SH'
#!/usr/bin/env bash
echo "kubectl $*" >>"$FAKE_DIR/calls"
[[ ${1:-} == -n ]] && shift 2
case "$*" in
version*) [[ ${FAKE_CLUSTER:-1} == 1 ]]; exit ;;
"config current-context") echo "${FAKE_CONTEXT:-default}" ;;
*minikube*) echo "${FAKE_MINIKUBE:-}" ;;
*kubeletVersion*) echo "${FAKE_KUBELET:-v1.31.0}" ;;
"get service kube-dns -o name") [[ ${FAKE_DNS:-1} == 1 ]] && echo service/kube-dns; exit ;;
*clusterIP*) echo 10.96.7.7 ;;
"get pods -l app=handoff-example -o name") printf 'pod/handoff-example-a\npod/handoff-example-b\n' ;;
*status.phase*) echo Succeeded ;;
logs*) echo "requests=100 failed=${FAKE_FAILED:-0}" ;;
apply*) cat >"$FAKE_DIR/applied.yaml" ;;
esac
exit 0
SH
for tool in kind minikube k3s ctr docker; do
    printf '#!/usr/bin/env bash\necho "%s $*" >>"$FAKE_DIR/calls"\n[[ $1 != save ]] || echo tar\ncat >/dev/null <&0 2>/dev/null || true\n' "$tool" >"$fake/bin/$tool"
done
chmod +x "$fake/bin"/*

# dry NAME WANT_STATUS ENV...: runs rollout-test.sh with the fakes; its output in $out, the calls in $calls.
dry() {
    local name=$1 want=$2 status=0
    shift 2
    rm -f "$fake/calls" "$fake/applied.yaml"
    out=$(env PATH="$fake/bin:$PATH" FAKE_DIR="$fake" LOAD_SECONDS=1 "$@" "$here/rollout-test.sh" </dev/null 2>&1) || status=$?
    calls=$(cat "$fake/calls" 2>/dev/null || true)
    if [[ $status != "$want" ]]; then
        printf 'check.sh: FAIL: rollout-test.sh (%s) exited %s, want %s:\n%s\n' "$name" "$status" "$want" "$out"
        exit 1
    fi
}
# has/lacks TEXT WHAT: in $calls (or $out with OUT=1).
has() { [[ ${OUT:-$calls} == *"$1"* ]] || { printf 'check.sh: FAIL: dry run %s: no "%s" in:\n%s\n' "$name" "$1" "${OUT:-$calls}"; exit 1; }; }
lacks() { [[ $calls != *"$1"* ]] || { printf 'check.sh: FAIL: dry run %s: unexpected "%s" in:\n%s\n' "$name" "$1" "$calls"; exit 1; }; }
svc_url=http://handoff-example.handoff-rollout-test.svc/

name="no cluster" && dry "$name" 0 FAKE_CLUSTER=0
OUT=$out has "SKIP"
lacks "apply"
name="no cluster, required" && dry "$name" 1 FAKE_CLUSTER=0 HANDOFF_REQUIRE_K8S=1
name="unknown mode" && dry "$name" 2 ROLLOUT_MODE=docker-desktop

name="kind" && dry "$name" 0 FAKE_CONTEXT=kind-dev
has "kind load docker-image handoff-init-test:example --name dev"
has "kind load docker-image handoff-init-test:local --name dev"
has "kubectl -n handoff-rollout-test run load-rollout --image=handoff-init-test:local"
has "/app/load.sh $svc_url 1 4"
has "kubectl -n handoff-rollout-test rollout restart deployment/handoff-example"
has "kubectl -n handoff-rollout-test wait --for=delete pod/handoff-example-a pod/handoff-example-b"
has "kubectl -n handoff-rollout-test exec pod/handoff-example-b -- /sbin/handoff-init ctl reload"
has "kubectl delete namespace handoff-rollout-test"
OUT=$out has "PASS"
lacks "minikube image"

name="kind, named cluster" && dry "$name" 0 ROLLOUT_MODE=kind KIND_CLUSTER=ci
has "kind load docker-image handoff-init-test:example --name ci"

name="minikube" && dry "$name" 0 FAKE_MINIKUBE=mk2
has "minikube image load handoff-init-test:example -p mk2"
has "minikube image load handoff-init-test:local -p mk2"
lacks "kind load"

name="k3s" && dry "$name" 0 FAKE_KUBELET=v1.30.4+k3s1
has "docker save handoff-init-test:example"
has "k3s ctr images import -"
lacks "minikube image"

name="plain kubeconfig, own images" && dry "$name" 0 EXAMPLE_IMAGE=registry.example/app:1 LOAD_IMAGE=registry.example/load:1
lacks "kind load"
lacks "minikube image"
lacks "docker "
has "--image=registry.example/load:1"
grep -q "image: registry.example/app:1" "$fake/applied.yaml" ||
    { echo "check.sh: FAIL: dry run $name: EXAMPLE_IMAGE not in the applied Deployment"; exit 1; }

name="no cluster DNS" && dry "$name" 0 FAKE_DNS=0
has "/app/load.sh http://10.96.7.7/ 1 4"
OUT=$out has "ClusterIP"
name="CLUSTER_DNS=0" && dry "$name" 0 CLUSTER_DNS=0
has "/app/load.sh http://10.96.7.7/"

name="failed requests" && dry "$name" 1 FAKE_FAILED=3
OUT=$out has "FAIL (2)"
echo "check.sh: rollout-test.sh dry runs ok (kind, minikube, k3s, plain kubeconfig, ClusterIP fallback, SKIP, failures)"
