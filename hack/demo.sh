#!/usr/bin/env bash
# The lab demo: a vLLM Deployment on fake H100s under load and its CostSLO; a model swap that breaks the
# budget is paused and blocked, one that fits is promoted, and when traffic drops idle replicas are trimmed.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_DIR=${COSTSLO_LAB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/costslo/lab}
# shellcheck disable=SC1091
source "$LAB_DIR/lab.env"
PY=$repo/.venv/bin/python

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
promql() { # query -> prints "labels value" lines
  "$PY" - "$1" <<'PYEOF'
import json, os, sys, urllib.parse, urllib.request
url = os.environ["PROMETHEUS_URL"] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[1]})
for s in json.load(urllib.request.urlopen(url))["data"]["result"]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items()))
    print(f"    {labels or '(total)':<60} {float(s['value'][1]):.4g}")
PYEOF
}

show_numbers() { # suffix title-of-the-CostSLO-step
  step "GPU busy fraction per GPU$1 (DCGM_FI_PROF_GR_ENGINE_ACTIVE; the pod arrives as exported_pod)"
  promql 'avg by (exported_pod) (avg_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{exported_namespace="ml"}[1m]))'
  step "p95 end-to-end latency (s)$1"
  promql 'histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{namespace="ml"}[1m])))'
  step "GPUs requested$1 (kube-state-metrics)"
  promql 'sum(kube_pod_container_resource_requests{namespace="ml",resource="nvidia_com_gpu"})'
  step "$2"
  kubectl -n ml get cslo -o wide
  kubectl -n ml get cslo summariser -o jsonpath='    {.status.message}{"\n"}'
}

cslo() { kubectl -n ml get cslo summariser -o jsonpath="$1"; }
wait_for() { # description seconds status-field command...: polls every 5 s, showing that status field
  local what=$1 limit=$2 field=$3 start=$SECONDS; shift 3
  until "$@"; do
    (( SECONDS - start >= limit )) && { echo "    gave up after ${limit}s waiting for $what" >&2; return 1; }
    printf '    waiting for %s (%ss): %s\n' "$what" "$((SECONDS - start))" "$(cslo "{.status.$field}")"
    sleep 5
  done
}
judged() { local phase; phase=$(cslo '{.status.phase}'); [[ -n $phase && $phase != MetricsUnavailable ]]; }
rollout_is() { [[ $(cslo '{.status.rollout.state}') == "$1" ]]; }
replicas_are() { [[ $(kubectl -n ml get deploy summariser -o jsonpath='{.spec.replicas}') == "$1" ]]; }
show_rollout() {
  kubectl -n ml get deploy summariser -o custom-columns='DEPLOYMENT:.metadata.name,PAUSED:.spec.paused,REPLICAS:.spec.replicas,READY:.status.readyReplicas'
  kubectl -n ml get rs -l app=summariser -o custom-columns='REPLICASET:.metadata.name,REVISION:.metadata.annotations.deployment\.kubernetes\.io/revision,DESIRED:.spec.replicas,READY:.status.readyReplicas'
  echo "    rollout: $(cslo '{.status.rollout.state}'): $(cslo '{.status.rollout.reason}')"
}
swap_model() { # profile gpus image-tag [profile-overrides JSON]: one template change, one new revision
  local overrides=${4:-'{}'} patch
  patch=$("$PY" - "$1" "$2" "$3" "$overrides" <<'PYEOF'
import json, sys
profile, gpus, tag, overrides = sys.argv[1:5]
annotations = {"simulator.costslo.dev/profile": profile, "simulator.costslo.dev/load-time": "20s",
               "simulator.costslo.dev/profile-overrides": overrides}
resources = {"requests": {"nvidia.com/gpu": gpus}, "limits": {"nvidia.com/gpu": gpus}}
container = {"name": "vllm", "image": f"vllm/vllm-openai:{tag}", "resources": resources}
print(json.dumps({"spec": {"template": {"metadata": {"annotations": annotations},
                                        "spec": {"containers": [container]}}}}))
PYEOF
)
  kubectl -n ml patch deployment summariser --type strategic -p "$patch"
}

# A repeatable demo: start from an empty namespace.
kubectl delete namespace ml --ignore-not-found --wait=true >/dev/null
step "Deploying examples/vllm-deployment.yaml (3 x vLLM, Llama 3.1 8B, 1 H100 each, 20 req/s offered)"
kubectl apply -f "$repo/examples/vllm-deployment.yaml"
kubectl -n ml rollout status deployment/summariser --timeout=120s
kubectl -n ml get pods -o wide
pod_uids() { kubectl -n ml get pods -o jsonpath='{.items[*].metadata.uid}'; }
DEMO_POD_UIDS=$(pod_uids)

step "Installing the CostSLO CRD and examples/costslo-summariser.yaml (budget \$0.0002 per request, p95 <= 12s)"
kubectl apply -f "$repo/crds/"
kubectl wait --for condition=established crd/costslos.costslo.dev --timeout=30s
kubectl apply -f "$repo/examples/costslo-summariser.yaml"
echo "    For the demo's pace: windows 3m/1m instead of 1h/5m, bake 45s instead of 10m, scaling on with a 30s cooldown"
kubectl -n ml patch cslo summariser --type merge -p '{"spec":{"evaluation":{"windows":{"long":"3m","short":"1m"}},
  "enforcement":{"rollout":{"bakeTime":"45s"},"scaling":{"enabled":true,"cooldown":"30s"}}}}'
kubectl -n ml patch cslo summariser-margin --type merge -p '{"spec":{"evaluation":{"windows":{"long":"3m","short":"1m"}}}}'

step "Starting the operator: costslo run (log: $LAB_DIR/logs/operator.log)"
"$repo/.venv/bin/costslo" run --interval 10s --liveness "http://127.0.0.1:${LAB_OPERATOR_PORT:-28099}/healthz" \
  --http "127.0.0.1:${LAB_OPERATOR_HTTP_PORT:-28082}" \
  --log-format json >"$LAB_DIR/logs/operator.log" 2>&1 &
operator_pid=$!
trap 'kill "$operator_pid" 2>/dev/null || true' EXIT

step "Waiting for the first verdict: the operator judges a window once Prometheus holds half of it (3m: 1m30s)"
sleep 60
wait_for "the first verdict" 120 message judged
step "Delivered requests/s per pod (vLLM, finished_reason stop|length)"
promql 'sum by (pod) (rate(vllm:request_success_total{namespace="ml",finished_reason=~"stop|length"}[1m]))'
show_numbers "" "The CostSLOs, as the operator keeps them (kubectl -n ml get cslo -o wide)"

step "Model swap: Llama 3.1 70B on 4 H100s per replica replaces Llama 3.1 8B on one"
swap_model llama-3.1-70b-h100 4 v0.11.0-70b
sleep 3
echo "    The operator saw the new ReplicaSet and paused the Deployment: one canary pod, the old pods keep serving."
show_rollout
wait_for "the 70B canary to bake for 45s on its own traffic" 240 rollout.reason rollout_is Blocked
DEMO_POD_UIDS="$DEMO_POD_UIDS $(pod_uids)"
step "Rollout blocked: the 70B revision's projected cost per request breaks the budget"
show_rollout
kubectl -n ml get cslo -o wide
echo "    $(cslo '{.status.message}')"
step "What Argo Rollouts or Flagger would be told: GET /verdict/ml/summariser"
curl -s "http://127.0.0.1:${LAB_OPERATOR_HTTP_PORT:-28082}/verdict/ml/summariser"; echo
step "What a CI step or an ArgoCD PostSync Job would be told: costslo gate (exit code 1: breached)"
set +e
"$repo/.venv/bin/costslo" gate -n ml --name summariser --timeout 30s --poll 5s
echo "    exit code $?"
set -e

step "Second try: Llama 3.1 8B in an FP8 build (faster decode) on one H100; the blocked 70B is superseded"
swap_model llama-3.1-8b-h100 1 v0.11.0-fp8 '{"decodeTokensPerSecond": 5200}'
wait_for "the FP8 canary to bake and be judged" 300 rollout.reason rollout_is Promoted
step "Promoted: the Deployment is resumed and rolls out"
kubectl -n ml rollout status deployment/summariser --timeout=180s
show_rollout
DEMO_POD_UIDS="$DEMO_POD_UIDS $(pod_uids)"

step "Traffic drops from 20 to 4 req/s: idle GPUs now make each request too dear"
kubectl -n ml annotate deployment summariser --overwrite simulator.costslo.dev/offered-rps=4
wait_for "replicas trimmed" 300 scaling.reason replicas_are 2
echo "    $(cslo '{.status.scaling.lastAction}'): $(cslo '{.status.scaling.reason}')"
wait_for "the 30s cooldown and a second step" 240 scaling.reason replicas_are 1
echo "    $(cslo '{.status.scaling.lastAction}'): $(cslo '{.status.scaling.reason}')"
kubectl -n ml get cslo -o wide
export DEMO_POD_UIDS

step "Events"
kubectl -n ml get events --field-selector involvedObject.kind=CostSLO --sort-by=.lastTimestamp \
  -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message

step "Ground truth from the simulator: $COSTSLO_SIMULATOR_URL/truth"
"$PY" - <<'PYEOF'
import json, os, urllib.request
truth = json.load(urllib.request.urlopen(os.environ["COSTSLO_SIMULATOR_URL"] + "/truth"))
# Pods of an earlier run in a namespace of the same name are still in the truth; keep this run's.
uids = set(os.environ["DEMO_POD_UIDS"].split())
print(f"    {'pod':<30}{'model':<36}{'GPUs':>5}{'delivered':>10}{'GPU-s busy/req':>15}{'GPU-s held/req':>15}  state")
for p in truth["pods"]:
    if p["namespace"] != "ml" or p["uid"] not in uids:
        continue
    n = p["requests"]["delivered"] or 1
    state = "deleted" if p["deleted"] else "serving"
    print(f"    {p['pod']:<30}{p['model']:<36}{p['gpus']:>5}{p['requests']['delivered']:>10}"
          f"{p['busyGpuSeconds'] / n:>15.3f}{p['provisionedGpuSeconds'] / n:>15.3f}  {state}")
PYEOF
echo
echo "Also try: costslo report --prometheus-url \$PROMETHEUS_URL --gpu-hourly 3 (after: source $LAB_DIR/lab.env)"
echo "The lab keeps running (the operator stops with this script): 'make lab-status' shows it, 'make lab-down' stops it."
