#!/usr/bin/env bash
# Builds the lab's tools from Go modules into a cache outside the repository.
#
#   hack/tools/build.sh               build whatever is missing or out of date
#   hack/tools/build.sh glua helm     build only the named tools (same cache, same stamps)
#   hack/tools/build.sh --list        print the pinned versions and where each binary lives
#
# The cache is ${COSTSLO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/costslo/bin}. Each binary gets a
# stamp (its pin plus a hash of the wrapper module's go.sum); a binary whose stamp matches is kept, so a
# warm cache finishes in well under a second. Nothing is downloaded except Go modules.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/tools/versions.env
source "$here/versions.env"

BIN=${COSTSLO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/costslo/bin}
STAMPS="$BIN/.stamps"
mkdir -p "$BIN" "$STAMPS"

# A go.mod `toolchain` line in a dependency must never trigger a toolchain download.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"
export CGO_ENABLED=0

k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${KUBERNETES_VERSION}
 -X k8s.io/component-base/version.gitMajor=${KUBERNETES_VERSION%%.*}
 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
 -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/client-go/pkg/version.gitVersion=v${KUBERNETES_VERSION}"
k8s_ldflags=$(echo "$k8s_ldflags" | tr '\n' ' ')

# name | stamp | build command (run from the repository's hack/tools)
# Prometheus builds with -tags remove_all_sd: the lab scrapes static targets only, and leaving out the
# cloud service-discovery plugins (AWS, Azure, GCE, ...) halves its cold build (278 s -> 141 s here).
tool_rows() {
  local k8s_sum etcd_sum ksm_sum argo_sum
  k8s_sum=$(sha256sum "$here/kubernetes/go.sum" | cut -c1-12)
  etcd_sum=$(sha256sum "$here/etcd/go.sum" | cut -c1-12)
  ksm_sum=$(sha256sum "$here/kube-state-metrics/go.sum" | cut -c1-12)
  argo_sum=$(sha256sum "$here/argo-rollouts/go.sum" | cut -c1-12)
  cat <<EOF
etcd|etcd-${ETCD_VERSION}-${etcd_sum}|go build -C etcd -ldflags '-s -w' -o "$BIN/etcd" go.etcd.io/etcd/server/v3
kube-apiserver|k8s-${KUBERNETES_VERSION}-${k8s_sum}|go build -C kubernetes -ldflags '$k8s_ldflags' -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
kube-controller-manager|k8s-${KUBERNETES_VERSION}-${k8s_sum}|go build -C kubernetes -ldflags '$k8s_ldflags' -o "$BIN/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
kube-scheduler|k8s-${KUBERNETES_VERSION}-${k8s_sum}|go build -C kubernetes -ldflags '$k8s_ldflags' -o "$BIN/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler
kubectl|k8s-${KUBERNETES_VERSION}-${k8s_sum}|go build -C kubernetes -ldflags '$k8s_ldflags' -o "$BIN/kubectl" k8s.io/kubernetes/cmd/kubectl
kwok|kwok-${KWOK_VERSION}|GOBIN="$BIN" go install -ldflags '-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}' sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}
kwokctl|kwok-${KWOK_VERSION}|GOBIN="$BIN" go install -ldflags '-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}' sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}
kube-state-metrics|ksm-${KUBE_STATE_METRICS_VERSION}-${ksm_sum}|go build -C kube-state-metrics -ldflags '-s -w -X github.com/prometheus/common/version.Version=${KUBE_STATE_METRICS_VERSION#v}' -o "$BIN/kube-state-metrics" k8s.io/kube-state-metrics/v2
prometheus|prometheus-${PROMETHEUS_MODULE_VERSION}-static-sd|GOBIN="$BIN" go install -tags remove_all_sd -ldflags '-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}' github.com/prometheus/prometheus/cmd/prometheus@${PROMETHEUS_MODULE_VERSION}
promtool|prometheus-${PROMETHEUS_MODULE_VERSION}-static-sd|GOBIN="$BIN" go install -tags remove_all_sd -ldflags '-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}' github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_MODULE_VERSION}
helm|helm-${HELM_VERSION}|GOBIN="$BIN" go install -ldflags '-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}' helm.sh/helm/v3/cmd/helm@${HELM_VERSION}
kubeconform|kubeconform-${KUBECONFORM_VERSION}|GOBIN="$BIN" go install -ldflags '-s -w' github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}
rollouts-controller|argo-rollouts-${ARGO_ROLLOUTS_VERSION}-${argo_sum}|go build -C argo-rollouts -ldflags '-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${ARGO_ROLLOUTS_VERSION#v}' -o "$BIN/rollouts-controller" github.com/argoproj/argo-rollouts/cmd/rollouts-controller && mkdir -p "$BIN/argo-rollouts-crds" && install -m 0644 "\$(go list -C argo-rollouts -m -f '{{.Dir}}' github.com/argoproj/argo-rollouts)"/manifests/crds/*-crd.yaml "$BIN/argo-rollouts-crds/"
glua|gopher-lua-${GOPHER_LUA_VERSION}|GOBIN="$BIN" go install -ldflags '-s -w' github.com/yuin/gopher-lua/cmd/glua@${GOPHER_LUA_VERSION}
EOF
}

if [[ ${1:-} == --list ]]; then
  tool_rows | while IFS='|' read -r name stamp _; do
    state=missing
    [[ -x $BIN/$name && "$(cat "$STAMPS/$name" 2>/dev/null)" == "$stamp" ]] && state=ok
    printf '%-24s %-40s %s\n' "$name" "$stamp" "$state"
  done
  echo "cache: $BIN"
  exit 0
fi

# Tool names on the command line narrow the build to those tools; an unknown name is an error, not a no-op.
known=$(tool_rows | cut -d'|' -f1)
wanted=("$@")
for name in "${wanted[@]}"; do
  grep -qx -- "$name" <<<"$known" || {
    echo "error: unknown tool '$name'; known: $(echo $known)" >&2
    exit 2
  }
done
selected() {
  ((${#wanted[@]} == 0)) && return 0
  local w
  for w in "${wanted[@]}"; do [[ $w == "$1" ]] && return 0; done
  return 1
}

command -v go >/dev/null || { echo "error: Go is required to build the lab tools (go ${GO_MIN_VERSION}+)." >&2; exit 1; }

# The heartbeat below runs beside each compile. Stopping it must never decide the script's exit status:
# by the time an EXIT trap runs the ticker is usually gone, and a failing `kill` there would turn a
# successful build into exit 1 under `set -e`.
ticker=
stop_ticker() {
  if [[ -n $ticker ]]; then
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    ticker=
  fi
  return 0
}
trap stop_ticker EXIT

start=$(date +%s)
built=()
cd "$here"
while IFS='|' read -r name stamp cmd; do
  selected "$name" || continue
  if [[ -x $BIN/$name && "$(cat "$STAMPS/$name" 2>/dev/null)" == "$stamp" ]]; then
    continue
  fi
  t0=$(date +%s)
  echo "==> building $name ($stamp) ..."
  # A heartbeat, so that a multi-minute compile does not look like a hang. Its `sleep` is killed with it:
  # an orphaned sleep would hold stdout open, and whoever reads it through a pipe would wait for it.
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 30 &
      nap=$!
      wait "$nap"
      echo "    ... still building $name ($(($(date +%s) - t0))s)"
    done
  ) &
  ticker=$!
  if ! (eval "$cmd") >"$STAMPS/$name.log" 2>&1; then
    stop_ticker
    echo "error: building $name failed; last lines of $STAMPS/$name.log:" >&2
    tail -20 "$STAMPS/$name.log" >&2
    exit 1
  fi
  stop_ticker
  echo "$stamp" >"$STAMPS/$name"
  built+=("$name")
  echo "    $name done in $(($(date +%s) - t0))s (total $(($(date +%s) - start))s)"
done < <(tool_rows)

if ((${#built[@]})); then
  echo "built ${#built[@]} tool(s) into $BIN in $(($(date +%s) - start))s: ${built[*]}"
else
  echo "tools up to date in $BIN"
fi
exit 0
