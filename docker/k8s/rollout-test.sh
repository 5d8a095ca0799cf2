#!/usr/bin/env bash
# Zero-downtime check on a real cluster: failed requests during
#   1. kubectl rollout restart (new pods, old pods terminated: the Kubernetes way), and
#   2. kubectl exec … -- /sbin/handoff-init ctl reload in every pod (in-pod handoff, same pods).
# The load runs inside the cluster (a pod of the test image running /app/load.sh against the
# Service), so it goes through the Service and kube-proxy the way real clients do.
#
# Needs: a cluster kubectl reaches, and the images handoff-init-test:example and :local loaded into
# it (docker/build.sh builds them; load them with your cluster tool). Without a reachable cluster it
# prints SKIP and exits 0 (HANDOFF_REQUIRE_K8S=1 makes that a failure).
#
# Environment: NAMESPACE (default handoff-rollout-test, created and deleted), LOAD_SECONDS (60),
# CLIENTS (4), KEEP_NAMESPACE=1.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ns=${NAMESPACE:-handoff-rollout-test}
seconds=${LOAD_SECONDS:-60}
clients=${CLIENTS:-4}
failed=0

say() { printf 'rollout-test.sh: %s\n' "$*"; }

if ! command -v kubectl >/dev/null || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
    if [[ ${HANDOFF_REQUIRE_K8S:-0} == 1 ]]; then
        say "FAIL: no reachable cluster and HANDOFF_REQUIRE_K8S=1"
        exit 1
    fi
    say "SKIP: kubectl does not reach a cluster; nothing tested"
    exit 0
fi

k() { kubectl -n "$ns" "$@"; }
cleanup() {
    [[ ${KEEP_NAMESPACE:-0} == 1 ]] || kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1
}
trap cleanup EXIT

kubectl create namespace "$ns" >/dev/null 2>&1 || true
k apply -f "$here/deployment.yaml" -f "$here/service.yaml" >/dev/null || exit 1
k rollout status deployment/handoff-example --timeout=180s || { say "FAIL: deployment never ready"; exit 1; }

# start_load NAME: a pod that runs load.sh for $seconds against the Service.
start_load() {
    k delete pod "$1" --ignore-not-found --wait=true >/dev/null
    k run "$1" --image=handoff-init-test:local --image-pull-policy=IfNotPresent --restart=Never \
        --command -- /app/load.sh "http://handoff-example.$ns.svc/" "$seconds" "$clients" >/dev/null || return 1
    k wait --for=condition=Ready "pod/$1" --timeout=60s >/dev/null
}

# finish_load NAME WHAT: waits for the load pod to end and reports its result line.
finish_load() {
    local phase result
    k wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$1" --timeout=$((seconds + 120))s >/dev/null 2>&1
    phase=$(k get pod "$1" -o jsonpath='{.status.phase}')
    result=$(k logs "$1" | tail -1)
    say "$2: $result (load pod $phase)"
    if [[ $phase != Succeeded || $result != *"failed=0" ]]; then
        k logs "$1" | grep 'request failed' | head -5
        failed=$((failed + 1))
    fi
}

# 1. Rolling update.
start_load load-rollout || exit 1
k rollout restart deployment/handoff-example >/dev/null
k rollout status deployment/handoff-example --timeout=300s >/dev/null || say "rollout did not finish"
finish_load load-rollout "kubectl rollout restart"

# 2. In-pod handoff in every pod.
start_load load-reload || exit 1
for pod in $(k get pods -l app=handoff-example -o name); do
    k exec "$pod" -- /sbin/handoff-init ctl reload || { say "ctl reload failed in $pod"; failed=$((failed + 1)); }
done
for pod in $(k get pods -l app=handoff-example -o name); do
    k exec "$pod" -- /sbin/handoff-init ctl status
done
finish_load load-reload "ctl reload in every pod"

if ((failed == 0)); then
    say "PASS"
else
    say "FAIL ($failed)"
    exit 1
fi
