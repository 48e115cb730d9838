#!/usr/bin/env bash
# The costslo lab: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) with kwok-managed fake GPU nodes, kube-state-metrics, Prometheus and the GPU/model-server
# simulator, all as host processes on loopback.
#
#   hack/lab/lab.sh up       start everything (idempotent: a healthy lab is reused)
#   hack/lab/lab.sh down     stop everything this script started, by pid file
#   hack/lab/lab.sh status   show what runs, where, and whether it answers
#
# Connection details are written to $LAB_DIR/lab.env (shell) and $LAB_DIR/lab.json, which tests and the
# demo read.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$repo/hack/tools/versions.env"

BIN=${COSTSLO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/costslo/bin}
LAB_DIR=${COSTSLO_LAB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/costslo/lab}
CLUSTER=costslo-lab
PYTHON=${COSTSLO_PYTHON:-$repo/.venv/bin/python}

# Below the kernel's ephemeral range (32768-60999 by default): a port in it can be taken at any moment
# as the source port of some outgoing connection, and then our listener cannot bind.
LAB_APISERVER_PORT=${LAB_APISERVER_PORT:-26443}
LAB_ETCD_PORT=${LAB_ETCD_PORT:-22379}
LAB_ETCD_PEER_PORT=${LAB_ETCD_PEER_PORT:-22380}
LAB_KCM_PORT=${LAB_KCM_PORT:-20257}
LAB_SCHEDULER_PORT=${LAB_SCHEDULER_PORT:-20259}
LAB_KWOK_PORT=${LAB_KWOK_PORT:-20247}
LAB_KSM_PORT=${LAB_KSM_PORT:-28080}
LAB_KSM_TELEMETRY_PORT=${LAB_KSM_TELEMETRY_PORT:-28081}
LAB_PROMETHEUS_PORT=${LAB_PROMETHEUS_PORT:-29090}
LAB_SIMULATOR_PORT=${LAB_SIMULATOR_PORT:-28000}
LAB_ARGO_HEALTHZ_PORT=${LAB_ARGO_HEALTHZ_PORT:-28090}
LAB_ARGO_METRICS_PORT=${LAB_ARGO_METRICS_PORT:-28091}
LAB_SCRAPE_INTERVAL=${LAB_SCRAPE_INTERVAL:-5s}
LAB_POD_READY_DELAY_MS=${LAB_POD_READY_DELAY_MS:-2000}

KWOK_WORKDIR=$LAB_DIR/kwok
CLUSTER_DIR=$KWOK_WORKDIR/clusters/$CLUSTER
KUBECONFIG_PATH=$LAB_DIR/kubeconfig
PIDS=$LAB_DIR/pids
LOGS=$LAB_DIR/logs
export KWOK_WORKDIR

# Processes we start ourselves (kwokctl tracks the control plane's own pid files).
OWN_PROCESSES=(simulator kube-state-metrics argo-rollouts prometheus)

say() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

proc_alive() { # pid: running, not a zombie awaiting its reaper
  [[ -n $1 ]] && kill -0 "$1" 2>/dev/null || return 1
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

start_time() { # pid: the kernel's start time of the process, which a reused pid does not share
  awk '{print $22}' "/proc/$1/stat" 2>/dev/null
}

pid_alive() { # pidfile written by start_process: "PID START-TIME"
  [[ -f $1 ]] || return 1
  local pid start
  read -r pid start <"$1" || true
  proc_alive "$pid" && [[ -z $start || $(start_time "$pid") == "$start" ]]
}

lab_binary() { # pid: is this process one of the lab's binaries (not a stranger that reused the pid)?
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [[ $exe == "$BIN"/* || $exe == "$CLUSTER_DIR"/* ]]
}

wait_http() { # url seconds what
  local url=$1 deadline=$(($(date +%s) + $2))
  until curl -sfk -o /dev/null "$url"; do
    (($(date +%s) < deadline)) || die "$3 did not answer at $url within $2s (log: $LOGS)"
    sleep 0.5
  done
}

port_busy() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_process() { # name port command...
  local name=$1 port=$2; shift 2
  if pid_alive "$PIDS/$name.pid"; then
    say "$name already running (pid $(cut -d' ' -f1 "$PIDS/$name.pid"))"
    return
  fi
  if port_busy "$port"; then
    die "port $port, which $name needs, is taken by another process (see: ss -ltnp | grep :$port); free it or move $name with the LAB_*_PORT variables"
  fi
  # setsid: the lab outlives the shell that started it and a Ctrl-C in that shell.
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  sleep 0.1
  # The start time makes the pid file safe against pid reuse after a reboot or a crash.
  echo "$pid $(start_time "$pid")" >"$PIDS/$name.pid"
  say "$name started (pid $pid, log $LOGS/$name.log)"
}

stop_pid() { # pid name: SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1 name=$2
  proc_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_exit "$pid" "$name"
}

wait_exit() { # pid name: wait for a process that was asked to stop; SIGKILL it after 10 s
  local pid=$1 name=$2
  for _ in $(seq 1 50); do proc_alive "$pid" || break; sleep 0.2; done
  if proc_alive "$pid"; then
    say "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do proc_alive "$pid" || break; sleep 0.2; done
  fi
  say "stopped $name (pid $pid)"
}

stop_pidfile() { # pidfile name: stops the process only if it is still the one we started
  [[ -f $1 ]] || return 0
  if pid_alive "$1"; then
    stop_pid "$(cut -d' ' -f1 "$1")" "$2"
  fi
  rm -f "$1"
}

stop_cluster() {
  [[ -d $CLUSTER_DIR ]] || return 0
  # kwokctl signals its components and returns at once, removing their pid files; read them first
  # and wait until every one of those processes is gone.
  local entries=() f pid entry
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    lab_binary "$pid" && entries+=("$(basename "$f" .pid)=$pid")
  done
  "$BIN/kwokctl" --name "$CLUSTER" delete cluster >"$LOGS/kwokctl-delete.log" 2>&1 || true
  for entry in "${entries[@]}"; do
    wait_exit "${entry#*=}" "${entry%%=*}"
  done
  rm -rf "$CLUSTER_DIR"
  say "control plane stopped"
}

render() { # template -> stdout, substituting ${VAR} from the environment
  local t
  t=$(cat "$1")
  BIN=$BIN KUBERNETES_VERSION=$KUBERNETES_VERSION KWOK_VERSION=$KWOK_VERSION ETCD_VERSION=$ETCD_VERSION \
  LAB_APISERVER_PORT=$LAB_APISERVER_PORT LAB_ETCD_PORT=$LAB_ETCD_PORT LAB_ETCD_PEER_PORT=$LAB_ETCD_PEER_PORT \
  LAB_KCM_PORT=$LAB_KCM_PORT LAB_SCHEDULER_PORT=$LAB_SCHEDULER_PORT LAB_KWOK_PORT=$LAB_KWOK_PORT \
  LAB_POD_READY_DELAY_MS=$LAB_POD_READY_DELAY_MS LAB_KSM_PORT=$LAB_KSM_PORT \
  LAB_SIMULATOR_PORT=$LAB_SIMULATOR_PORT LAB_SCRAPE_INTERVAL=$LAB_SCRAPE_INTERVAL \
    "$PYTHON" -c 'import os,sys; sys.stdout.write(os.path.expandvars(sys.stdin.read()))' <<<"$t"
}

write_connection_files() {
  local prom="http://127.0.0.1:$LAB_PROMETHEUS_PORT" sim="http://127.0.0.1:$LAB_SIMULATOR_PORT"
  local ksm="http://127.0.0.1:$LAB_KSM_PORT"
  cat >"$LAB_DIR/lab.env" <<EOF
# Written by hack/lab/lab.sh up; source it to talk to the lab.
export KUBECONFIG=$KUBECONFIG_PATH
export PROMETHEUS_URL=$prom
export COSTSLO_SIMULATOR_URL=$sim
export COSTSLO_KSM_URL=$ksm
export COSTSLO_TOOLS_DIR=$BIN
export PATH=$BIN:$repo/.venv/bin:\$PATH
EOF
  cat >"$LAB_DIR/lab.json" <<EOF
{"kubeconfig": "$KUBECONFIG_PATH", "prometheusUrl": "$prom", "simulatorUrl": "$sim",
 "kubeStateMetricsUrl": "$ksm", "argoRolloutsUrl": "http://127.0.0.1:$LAB_ARGO_HEALTHZ_PORT",
 "toolsDir": "$BIN", "clusterDir": "$CLUSTER_DIR",
 "pidsDir": "$PIDS", "logsDir": "$LOGS",
 "ports": [$LAB_APISERVER_PORT, $LAB_ETCD_PORT, $LAB_ETCD_PEER_PORT, $LAB_KCM_PORT, $LAB_SCHEDULER_PORT,
           $LAB_KWOK_PORT, $LAB_KSM_PORT, $LAB_KSM_TELEMETRY_PORT, $LAB_PROMETHEUS_PORT, $LAB_SIMULATOR_PORT,
           $LAB_ARGO_HEALTHZ_PORT, $LAB_ARGO_METRICS_PORT]}
EOF
}

cluster_up() {
  if [[ -f $CLUSTER_DIR/kubeconfig.yaml ]] && kubectl get --raw /readyz >/dev/null 2>&1; then
    say "control plane already running"
    return
  fi
  if [[ -d $CLUSTER_DIR ]]; then
    say "removing a stale cluster"
    stop_cluster
  fi
  render "$repo/hack/lab/kwok.yaml" >"$LAB_DIR/kwok.yaml"
  say "starting control plane (etcd $ETCD_VERSION, Kubernetes $KUBERNETES_VERSION, kwok $KWOK_VERSION)"
  local t0=$SECONDS
  # kwokctl looks for companion binaries on PATH; ours come first so nothing is downloaded.
  PATH="$BIN:$PATH" "$BIN/kwokctl" --name "$CLUSTER" create cluster \
    --config "$LAB_DIR/kwok.yaml" --kubeconfig "$KUBECONFIG_PATH" --wait 120s \
    >"$LOGS/kwokctl.log" 2>&1 || { tail -30 "$LOGS/kwokctl.log" >&2; die "kwokctl could not create the cluster"; }
  say "control plane ready in $((SECONDS - t0))s"
}

nodes_up() {
  kubectl apply -f "$repo/hack/lab/nodes.yaml" >/dev/null
  local deadline=$((SECONDS + 60))
  until [[ $(kubectl get nodes -l type=kwok --no-headers 2>/dev/null | grep -c ' Ready ') -ge 4 ]]; do
    ((SECONDS < deadline)) || die "fake GPU nodes did not become Ready (see $CLUSTER_DIR/logs/kwok-controller.log)"
    sleep 0.5
  done
  say "$(kubectl get nodes -l type=kwok --no-headers | wc -l) fake GPU nodes Ready"
}

start_prometheus() {
  render "$repo/hack/lab/prometheus.yml" >"$LAB_DIR/prometheus/prometheus.yml"
  start_process prometheus "$LAB_PROMETHEUS_PORT" "$BIN/prometheus" --config.file "$LAB_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path "$LAB_DIR/prometheus/data" --storage.tsdb.retention.time 1d \
    --web.listen-address "127.0.0.1:$LAB_PROMETHEUS_PORT" --web.enable-lifecycle
}

# `stop prometheus` / `start prometheus`: an outage of the metrics backend, with its data kept, so
# tests and people can watch the operator go MetricsUnavailable and come back.
stop_one() {
  [[ ${1:-} == prometheus ]] || die "usage: $0 stop prometheus"
  stop_pidfile "$PIDS/prometheus.pid" prometheus
}

start_one() {
  [[ ${1:-} == prometheus ]] || die "usage: $0 start prometheus"
  [[ -f $LAB_DIR/lab.env ]] || die "the lab is not up; run '$0 up'"
  pid_alive "$PIDS/prometheus.pid" && { say "prometheus is already running"; return; }
  start_prometheus
  wait_http "http://127.0.0.1:$LAB_PROMETHEUS_PORT/-/ready" 60 Prometheus
}

up() {
  [[ -x $BIN/kwokctl && -x $BIN/prometheus && -x $BIN/kube-state-metrics && -x $BIN/rollouts-controller ]] ||
    die "lab tools are missing in $BIN; run 'make tools' first"
  [[ -x $PYTHON ]] || die "no Python environment at $PYTHON; run 'make venv' first"
  mkdir -p "$LAB_DIR" "$PIDS" "$LOGS" "$LAB_DIR/prometheus"
  write_connection_files
  cluster_up
  nodes_up

  start_process kube-state-metrics "$LAB_KSM_PORT" "$BIN/kube-state-metrics" --kubeconfig "$KUBECONFIG_PATH" \
    --host 127.0.0.1 --port "$LAB_KSM_PORT" \
    --telemetry-host 127.0.0.1 --telemetry-port "$LAB_KSM_TELEMETRY_PORT"
  # Argo Rollouts, so Rollouts get real canaries whose analysis asks the operator's /verdict.
  kubectl apply --server-side -f "$BIN/argo-rollouts-crds/" >/dev/null
  start_process argo-rollouts "$LAB_ARGO_HEALTHZ_PORT" "$BIN/rollouts-controller" --kubeconfig "$KUBECONFIG_PATH" \
    --leader-elect=false --healthzPort "$LAB_ARGO_HEALTHZ_PORT" --metricsport "$LAB_ARGO_METRICS_PORT"
  start_process simulator "$LAB_SIMULATOR_PORT" "$PYTHON" -m costslo simulate --kubeconfig "$KUBECONFIG_PATH" \
    --host 127.0.0.1 --port "$LAB_SIMULATOR_PORT"
  start_prometheus
  wait_http "http://127.0.0.1:$LAB_KSM_PORT/healthz" 60 kube-state-metrics
  wait_http "http://127.0.0.1:$LAB_SIMULATOR_PORT/healthz" 60 simulator
  wait_http "http://127.0.0.1:$LAB_ARGO_HEALTHZ_PORT/healthz" 60 "Argo Rollouts"
  wait_http "http://127.0.0.1:$LAB_PROMETHEUS_PORT/-/ready" 60 Prometheus
  say "lab is up"
  echo "  KUBECONFIG=$KUBECONFIG_PATH"
  echo "  PROMETHEUS_URL=http://127.0.0.1:$LAB_PROMETHEUS_PORT"
  echo "  simulator:  http://127.0.0.1:$LAB_SIMULATOR_PORT (/metrics, /dcgm/metrics, /truth)"
  echo "  source $LAB_DIR/lab.env to use them"
}

down() {
  local i
  for ((i = ${#OWN_PROCESSES[@]} - 1; i >= 0; i--)); do
    stop_pidfile "$PIDS/${OWN_PROCESSES[$i]}.pid" "${OWN_PROCESSES[$i]}"
  done
  stop_cluster
  # Each lab starts with an empty TSDB: series of an earlier cluster would otherwise linger for
  # Prometheus' 5-minute lookback and be counted with the new cluster's.
  rm -rf "$LAB_DIR/prometheus" "$LAB_DIR/lab.env" "$LAB_DIR/lab.json"
  say "lab is down"
}

status() {
  local rc=0 name
  if [[ -f $CLUSTER_DIR/kubeconfig.yaml ]] && kubectl get --raw /readyz >/dev/null 2>&1; then
    echo "control plane   up     https://127.0.0.1:$LAB_APISERVER_PORT"
    for f in "$CLUSTER_DIR"/pids/*.pid; do
      [[ -f $f ]] || continue
      name=$(basename "$f" .pid)
      if pid_alive "$f"; then printf '  %-24s pid %s\n' "$name" "$(cat "$f")"; else printf '  %-24s DEAD\n' "$name"; rc=1; fi
    done
    echo "nodes:"
    kubectl get nodes -L nvidia.com/gpu.product,node.kubernetes.io/instance-type --no-headers | sed 's/^/  /'
  else
    echo "control plane   down"; rc=1
  fi
  for name in "${OWN_PROCESSES[@]}"; do
    if pid_alive "$PIDS/$name.pid"; then
      printf '%-15s up     pid %s\n' "$name" "$(cut -d' ' -f1 "$PIDS/$name.pid")"
    else
      printf '%-15s down\n' "$name"; rc=1
    fi
  done
  if curl -sf "http://127.0.0.1:$LAB_PROMETHEUS_PORT/api/v1/targets" -o "$LAB_DIR/targets.json" 2>/dev/null; then
    echo "prometheus targets:"
    "$PYTHON" - "$LAB_DIR/targets.json" <<'EOF'
import json, sys
for t in json.load(open(sys.argv[1]))["data"]["activeTargets"]:
    job, health, url, err = t["labels"]["job"], t["health"], t["scrapeUrl"], t.get("lastError") or ""
    print(f"  {job:<24} {health:<8} {url} {err}")
EOF
  fi
  [[ -f $LAB_DIR/lab.env ]] && echo "connection file: $LAB_DIR/lab.env"
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  stop) stop_one "${2:-}" ;;
  start) start_one "${2:-}" ;;
  *) echo "usage: $0 up|down|status|stop prometheus|start prometheus" >&2; exit 2 ;;
esac
