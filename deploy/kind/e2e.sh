#!/usr/bin/env bash
# Perp-EX end to end on kind: cluster -> image -> chain, PostgreSQL, Kafka -> contracts ->
# `helm install` -> two PerpMarkets (ETH/USDT, BTC/USDT) -> Ready, then pause, schema
# rejection, peering and deletion checks.
#
# Needs: docker (a running engine), kind, kubectl, helm 3.8+, and the repository bootstrapped
# (scripts/bootstrap.sh: .venv with `perpex`, node_modules with forge/cast) because the
# contracts are deployed from this machine through a port-forward. It pulls public images
# (kindest/node, python, node, ghcr.io/foundry-rs/foundry, postgres, apache/kafka).
# It uses its own kubeconfig (never your current context) and deletes the cluster at the end.
#
#   deploy/kind/e2e.sh                 # full run, cluster deleted afterwards
#   deploy/kind/e2e.sh --keep          # keep the cluster (prints how to use it)
#   deploy/kind/e2e.sh --reuse         # reuse an existing cluster of the same name
#   deploy/kind/e2e.sh --skip-build    # reuse the perpex:e2e image already in docker
#
# Environment: PERPEX_KIND_CLUSTER (default perpex-e2e), PERPEX_E2E_TIMEOUT (seconds for each
# wait, default 300), PERPEX_E2E_RPC_PORT (local port for the anvil port-forward, 18545).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/kind"
CLUSTER="${PERPEX_KIND_CLUSTER:-perpex-e2e}"
TIMEOUT="${PERPEX_E2E_TIMEOUT:-300}"
RPC_PORT="${PERPEX_E2E_RPC_PORT:-18545}"
IMAGE="perpex:e2e"
NS="perpex"
INFRA_NS="perpex-infra"
RELEASE="perpex"
# anvil's default development mnemonic: its accounts are public test accounts, prefunded on
# the local chain only. Keys are derived at run time; none is written into this repository.
ANVIL_MNEMONIC="test test test test test test test test test test test junk"

KEEP=0
REUSE=0
SKIP_BUILD=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --reuse) REUSE=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d -t perpex-e2e.XXXXXX)"
chmod 700 "$WORK"
export KUBECONFIG="$WORK/kubeconfig"
PF_PID=""

log() { printf '\n[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[e2e] FAILED: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required (see the header of this script)"
}

diagnostics() {
  log "diagnostics"
  kubectl get nodes -o wide || true
  kubectl -n "$NS" get perpmarkets -o wide || true
  kubectl -n "$NS" describe perpmarkets || true
  kubectl -n "$NS" get deploy,pods,cm,sa,rolebinding -o wide || true
  kubectl -n "$INFRA_NS" get pods -o wide || true
  kubectl -n "$NS" logs -l app.kubernetes.io/component=operator --tail=200 --prefix || true
  kubectl -n "$NS" get events --sort-by=.lastTimestamp | tail -50 || true
}

cleanup() {
  local status=$?
  if [ -n "$PF_PID" ]; then kill "$PF_PID" 2>/dev/null || true; fi
  if [ "$status" -ne 0 ]; then
    diagnostics
  fi
  if [ "$KEEP" -eq 1 ]; then
    log "cluster kept: export KUBECONFIG=$KUBECONFIG   (delete: kind delete cluster --name $CLUSTER)"
  else
    log "deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT

# wait_for DESCRIPTION COMMAND...: retry COMMAND every 2 s until it succeeds or TIMEOUT passes.
wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 2
  done
}

# ---------------------------------------------------------------- preflight
for tool in docker kind kubectl helm curl; do need "$tool"; done
docker info >/dev/null 2>&1 || die "no running Docker engine (docker info failed)"
PERPEX="$ROOT/.venv/bin/perpex"
CAST="$ROOT/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
if [ ! -x "$PERPEX" ] || [ ! -x "$CAST" ]; then
  die "run scripts/bootstrap.sh first (needs .venv/bin/perpex and cast)"
fi

key_of() { "$CAST" wallet private-key "$ANVIL_MNEMONIC" "$1"; }
secret_from_value() {  # NAME KEY VALUE: create a Secret without the value on any command line
  local file="$WORK/secret-value"
  (umask 077 && printf '%s' "$3" > "$file")
  kubectl -n "$NS" create secret generic "$1" --from-file="$2=$file" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  rm -f "$file"
}

# ---------------------------------------------------------------- cluster
if [ "$REUSE" -eq 1 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$HERE/cluster.yaml" \
    --kubeconfig "$KUBECONFIG" --wait "${TIMEOUT}s"
fi
kubectl cluster-info >/dev/null

# ---------------------------------------------------------------- image
if [ "$SKIP_BUILD" -eq 0 ]; then
  log "building $IMAGE (multi-stage: contracts, python deps, runtime)"
  docker build -t "$IMAGE" "$ROOT"
fi
log "loading $IMAGE into the nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER"
uid="$(docker run --rm --entrypoint id "$IMAGE" -u)"
[ "$uid" != "0" ] || die "the image runs as root"

# ---------------------------------------------------------------- chain, PostgreSQL, Kafka
log "starting anvil, PostgreSQL and Kafka in $INFRA_NS"
kubectl apply -f "$HERE/infra.yaml" >/dev/null
PG_PASSWORD="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
kubectl -n "$INFRA_NS" create secret generic postgres --from-literal=password="$PG_PASSWORD" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for infra in anvil postgres kafka; do
  kubectl -n "$INFRA_NS" rollout status "deploy/$infra" --timeout="${TIMEOUT}s"
done

# ---------------------------------------------------------------- contracts
log "deploying the contracts to anvil (through a port-forward)"
kubectl -n "$INFRA_NS" port-forward svc/anvil "$RPC_PORT:8545" >"$WORK/port-forward.log" 2>&1 &
PF_PID=$!
rpc_up() {
  curl -fsS -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "http://127.0.0.1:$RPC_PORT"
}
wait_for "anvil through the port-forward" rpc_up
PRIVATE_KEY="$(key_of 0)" "$PERPEX" deploy --rpc-url "http://127.0.0.1:$RPC_PORT" \
  --out "$WORK/deployment.json" >/dev/null
kill "$PF_PID" 2>/dev/null || true
PF_PID=""
[ -s "$WORK/deployment.json" ] || die "perpex deploy wrote no deployment file"

# ---------------------------------------------------------------- config and Secrets
log "creating namespace $NS, the deployment ConfigMap and the Secrets"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" create configmap perpex-deployment --from-file=deployment.json="$WORK/deployment.json" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
secret_from_value perpex-db dsn "postgresql://perpex:${PG_PASSWORD}@postgres.${INFRA_NS}.svc:5432/perpex"
secret_from_value perpex-rpc url "http://anvil.${INFRA_NS}.svc:8545"
secret_from_value perpex-eth-keeper-wallet private-key "$(key_of 1)"
secret_from_value perpex-eth-funding-wallet private-key "$(key_of 2)"
secret_from_value perpex-btc-keeper-wallet private-key "$(key_of 3)"
secret_from_value perpex-btc-funding-wallet private-key "$(key_of 4)"

# ---------------------------------------------------------------- chart
log "helm install $RELEASE"
helm upgrade --install "$RELEASE" "$ROOT/deploy/helm/perpex" --namespace "$NS" \
  -f "$HERE/values-e2e.yaml" --wait --timeout "${TIMEOUT}s"
kubectl get crd perpmarkets.perpex.io >/dev/null

log "checking that the API server enforces the CRD schema (no inline keys, valid pair)"
bad_market() {
  cat <<'YAML'
apiVersion: perpex.io/v1alpha1
kind: PerpMarket
metadata: {name: bad, namespace: perpex}
spec:
  pair: eth-usdt
  chainId: 31337
  rpc: {url: "http://anvil.perpex-infra.svc:8545"}
  contracts: {deploymentConfigMapRef: {name: perpex-deployment}}
  keeper: {replicas: 1}
YAML
}
if bad_market | kubectl apply --dry-run=server -f - >/dev/null 2>&1; then
  die "the API server accepted an invalid PerpMarket"
fi

# ---------------------------------------------------------------- markets
log "applying the ETH/USDT and BTC/USDT PerpMarkets"
kubectl apply -f "$HERE/markets.yaml"
kubectl -n "$NS" wait perpmarket/eth-usdt perpmarket/btc-usdt --for=condition=Ready --timeout="${TIMEOUT}s"
kubectl -n "$NS" get perpmarkets

for market in eth-usdt btc-usdt; do
  for component in keeper funding; do
    owner="$(kubectl -n "$NS" get deploy "perpex-$market-$component" \
      -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"
    [ "$owner" = "PerpMarket/$market" ] || die "perpex-$market-$component is owned by '$owner'"
  done
done

log "kopf peering: both operator replicas announce themselves"
peers() { kubectl get clusterkopfpeering perpex-operator -o jsonpath='{.status}'; }
two_peers() { [ "$(peers | grep -o '"priority"' | wc -l)" -ge 2 ]; }
wait_for "two operator peers" two_peers

log "pause scales to zero, resume brings the market back to Ready"
kubectl -n "$NS" patch perpmarket eth-usdt --type merge -p '{"spec":{"paused":true}}' >/dev/null
kubectl -n "$NS" wait deploy/perpex-eth-usdt-keeper --for=jsonpath='{.spec.replicas}'=0 --timeout="${TIMEOUT}s"
kubectl -n "$NS" wait deploy/perpex-eth-usdt-funding --for=jsonpath='{.spec.replicas}'=0 --timeout="${TIMEOUT}s"
kubectl -n "$NS" patch perpmarket eth-usdt --type merge -p '{"spec":{"paused":false}}' >/dev/null
kubectl -n "$NS" wait deploy/perpex-eth-usdt-keeper --for=jsonpath='{.spec.replicas}'=1 --timeout="${TIMEOUT}s"
kubectl -n "$NS" wait perpmarket/eth-usdt --for=condition=Ready --timeout="${TIMEOUT}s"

log "deleting BTC/USDT removes everything it owned"
kubectl -n "$NS" delete perpmarket btc-usdt --wait --timeout="${TIMEOUT}s"
gone() { ! kubectl -n "$NS" get deploy perpex-btc-usdt-keeper perpex-btc-usdt-funding >/dev/null 2>&1; }
wait_for "the BTC/USDT Deployments to go" gone
kubectl -n "$NS" get configmap perpex-btc-usdt >/dev/null 2>&1 && die "perpex-btc-usdt ConfigMap is left over"

log "PASSED: chart installed, ETH/USDT and BTC/USDT Ready, pause/resume, schema, peering, deletion"
