#!/usr/bin/env bash
# Zero-downtime check on a real cluster: failed requests during
#   1. kubectl rollout restart (new pods, old pods terminated: the Kubernetes way), and
#   2. kubectl exec … -- /sbin/handoff-init ctl reload in every pod (in-pod handoff, same pods).
# The load runs inside the cluster (a pod of the test image running /app/load.sh against the
# Service), so it goes through the Service and kube-proxy the way real clients do.
#
#   docker/k8s/rollout-test.sh            the cluster of kubectl's current context
#   ROLLOUT_MODE=kind docker/k8s/rollout-test.sh
#
# How the images handoff-init-test:example and :local (docker/build.sh builds them, and is run
# when they are missing) reach the cluster, by ROLLOUT_MODE:
#   kind       kind load docker-image IMAGE --name $KIND_CLUSTER (default: the context's name
#              without "kind-")
#   minikube   minikube image load IMAGE -p $MINIKUBE_PROFILE (default: the node's minikube name)
#   k3s        docker save IMAGE | k3s ctr images import - (run it on the k3s node, as root)
#   none       not at all: the nodes have them, or EXAMPLE_IMAGE / LOAD_IMAGE name images they can pull
#   auto       (default) kind for a kind-* context, minikube for a node labelled by minikube, k3s
#              for a kubelet version with +k3s, else none
# The load goes to the Service's DNS name; without cluster DNS (no kube-dns Service in
# kube-system), or with CLUSTER_DNS=0, to its ClusterIP.
#
# Without a reachable cluster it prints SKIP and exits 0 (HANDOFF_REQUIRE_K8S=1 makes that a
# failure). Exit status: 0 pass (or SKIP), 1 a failed request or step, 2 a usage error.
#
# Environment: NAMESPACE (default handoff-rollout-test, created and deleted), LOAD_SECONDS (60),
# CLIENTS (4), KEEP_NAMESPACE=1, EXAMPLE_IMAGE, LOAD_IMAGE (defaults: the two test images).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ns=${NAMESPACE:-handoff-rollout-test}
seconds=${LOAD_SECONDS:-60}
clients=${CLIENTS:-4}
mode=${ROLLOUT_MODE:-auto}
example_image=${EXAMPLE_IMAGE:-handoff-init-test:example}
load_image=${LOAD_IMAGE:-handoff-init-test:local}
failed=0

say() { printf 'rollout-test.sh: %s\n' "$*"; }
die() { say "FAIL: $*"; exit 1; }

case $mode in
auto | kind | minikube | k3s | none) ;;
*) say "unknown ROLLOUT_MODE '$mode' (auto, kind, minikube, k3s, none)"; exit 2 ;;
esac

if ! command -v kubectl >/dev/null || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
    [[ ${HANDOFF_REQUIRE_K8S:-0} != 1 ]] || die "no reachable cluster and HANDOFF_REQUIRE_K8S=1"
    say "SKIP: kubectl does not reach a cluster; nothing tested"
    exit 0
fi

# detect_mode: how images reach this cluster, from the context's name and the first node.
detect_mode() {
    local context minikube kubelet
    context=$(kubectl config current-context 2>/dev/null)
    if [[ $context == kind-* ]]; then
        echo kind
        return
    fi
    minikube=$(kubectl get nodes -o 'jsonpath={.items[0].metadata.labels.minikube\.k8s\.io/name}' 2>/dev/null)
    kubelet=$(kubectl get nodes -o 'jsonpath={.items[0].status.nodeInfo.kubeletVersion}' 2>/dev/null)
    if [[ -n $minikube ]]; then
        echo minikube
    elif [[ $kubelet == *+k3s* ]]; then
        echo k3s
    else
        echo none
    fi
}

# load_images: puts the two images where the cluster's nodes find them.
load_images() {
    local image
    if [[ $mode != none ]]; then
        for image in "$example_image" "$load_image"; do
            docker image inspect "$image" >/dev/null 2>&1 && continue
            say "$image missing: docker/build.sh"
            "$here/../build.sh" || die "docker/build.sh"
            break
        done
    fi
    case $mode in
    kind)
        local cluster=${KIND_CLUSTER:-$(kubectl config current-context)}
        cluster=${cluster#kind-}
        for image in "$example_image" "$load_image"; do
            kind load docker-image "$image" --name "$cluster" || die "kind load docker-image $image"
        done
        ;;
    minikube)
        local profile=${MINIKUBE_PROFILE:-$(kubectl get nodes -o 'jsonpath={.items[0].metadata.labels.minikube\.k8s\.io/name}')}
        for image in "$example_image" "$load_image"; do
            minikube image load "$image" -p "${profile:-minikube}" || die "minikube image load $image"
        done
        ;;
    k3s)
        local import=(k3s ctr images import -)
        command -v k3s >/dev/null || import=(ctr -n k8s.io images import -)
        for image in "$example_image" "$load_image"; do
            docker save "$image" | "${import[@]}" || die "docker save $image | ${import[*]} (run this on the k3s node, as root)"
        done
        ;;
    none) say "ROLLOUT_MODE=none: the nodes must have (or pull) $example_image and $load_image" ;;
    esac
}

[[ $mode != auto ]] || mode=$(detect_mode)
say "cluster: $(kubectl config current-context 2>/dev/null); images: ROLLOUT_MODE=$mode"
load_images

k() { kubectl -n "$ns" "$@"; }
cleanup() {
    [[ ${KEEP_NAMESPACE:-0} == 1 ]] || kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1
}
trap cleanup EXIT
trap "exit 130" INT
trap "exit 143" TERM

kubectl create namespace "$ns" >/dev/null 2>&1 || true
sed "s|image: handoff-init-test:example|image: $example_image|" "$here/deployment.yaml" |
    k apply -f - -f "$here/service.yaml" >/dev/null || die "kubectl apply"
k rollout status deployment/handoff-example --timeout=180s || die "deployment never ready"

# Where the load goes: the Service's name through cluster DNS, else its ClusterIP.
if [[ ${CLUSTER_DNS:-1} != 0 ]] && kubectl -n kube-system get service kube-dns -o name >/dev/null 2>&1; then
    url="http://handoff-example.$ns.svc/"
else
    ip=$(k get service handoff-example -o 'jsonpath={.spec.clusterIP}')
    [[ -n $ip ]] || die "the Service has no ClusterIP"
    url="http://$ip/"
    say "no cluster DNS (kube-dns) or CLUSTER_DNS=0: load goes to the ClusterIP"
fi
say "load: $clients clients for ${seconds}s against $url"

# start_load NAME: a pod that runs load.sh for $seconds against the Service.
start_load() {
    k delete pod "$1" --ignore-not-found --wait=true >/dev/null
    k run "$1" --image="$load_image" --image-pull-policy=IfNotPresent --restart=Never \
        --command -- /app/load.sh "$url" "$seconds" "$clients" >/dev/null || return 1
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
mapfile -t old_pods < <(k get pods -l app=handoff-example -o name)
start_load load-rollout || die "load pod did not start"
k rollout restart deployment/handoff-example >/dev/null || die "kubectl rollout restart"
k rollout status deployment/handoff-example --timeout=300s >/dev/null || say "rollout did not finish"
# The old pods terminate after the rollout counts them out: wait, so step 2 sees only new pods.
((${#old_pods[@]} == 0)) || k wait --for=delete "${old_pods[@]}" --timeout=120s >/dev/null ||
    say "old pods still there after 120 s"
finish_load load-rollout "kubectl rollout restart"

# 2. In-pod handoff in every pod.
start_load load-reload || die "load pod did not start"
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
