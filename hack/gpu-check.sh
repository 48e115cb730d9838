#!/usr/bin/env bash
# Checks the NVML side of costslo on a machine with a real GPU and records what it measured.
#
#   hack/gpu-check.sh prepare   on a machine with PyPI: download the runtime wheels into .gpu-wheels/
#   hack/gpu-check.sh           on the GPU machine (no network needed): run the checks, write the report
#
# The checks: `costslo gpu-exporter --once` (real NVML readings in dcgm-exporter's format), then
# `costslo profile` with NVML sampling against hack/gpu-model-server.py, a random-weight PyTorch decoder
# that does real GPU work and needs no model download. The report goes to docs/gpu-validation.md (and to
# $OUT when set, for machines whose files come back from there).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
WHEELS=$repo/.gpu-wheels
PYTHON=${PYTHON:-python3}
PORT=${GPU_CHECK_PORT:-28500}
say() { printf '[gpu-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [[ ${1:-} == prepare ]]; then
  mkdir -p "$WHEELS"
  # The package's runtime dependencies for this Python (matplotlib is left out: the plot is optional).
  "$PYTHON" - >"$WHEELS/requirements.txt" <<'EOF'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith(("kopf", "kubernetes"))))
EOF
  # The wheels must fit the GPU machine's Python: GPU_PYTHON_VERSION=3.12 fetches them for another one.
  target=()
  if [[ -n ${GPU_PYTHON_VERSION:-} ]]; then
    target=(--python-version "$GPU_PYTHON_VERSION" --only-binary=:all: --implementation cp
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
  fi
  "$PYTHON" -m pip download --quiet --dest "$WHEELS" ${target[@]+"${target[@]}"} -r "$WHEELS/requirements.txt"
  say "wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1)); carry .gpu-wheels to the GPU machine"
  exit 0
fi

command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: this check needs a machine with an NVIDIA GPU" >&2; exit 1; }
"$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null ||
  { echo "error: $PYTHON has no PyTorch with CUDA (needed by hack/gpu-model-server.py)" >&2; exit 1; }

work=$(mktemp -d)
stop() {
  for pid in ${loader:-} ${server:-}; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop EXIT
# A venv that sees the machine's PyTorch; costslo's own dependencies come from the carried wheels.
"$PYTHON" -m venv --system-site-packages "$work/venv"
if [[ -d $WHEELS ]]; then
  "$work/venv/bin/pip" install --quiet --no-index --find-links "$WHEELS" -r "$WHEELS/requirements.txt"
fi
py() { PYTHONPATH=$repo/operator "$work/venv/bin/python" "$@"; }
py -c "import pynvml, aiohttp, rich, typer, pydantic" ||
  { echo "error: costslo's dependencies are missing; run 'hack/gpu-check.sh prepare' where PyPI is reachable and carry .gpu-wheels" >&2; exit 1; }

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
say "GPU: $gpu"

say "exporter: one scrape, idle"
py -m costslo gpu-exporter --once --log-format json >"$work/exporter-idle.txt"

say "starting the synthetic model server on :$PORT"
# Started directly (not through the py function) so that $! is the server itself, which the trap stops.
PYTHONPATH=$repo/operator "$work/venv/bin/python" hack/gpu-model-server.py --port "$PORT" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 1
done

say "profile with NVML sampling"
py -m costslo profile --url "http://127.0.0.1:$PORT" --model synthetic-decoder --gpu-hourly 3.00 \
  --mix 512:128 --latency-budget 10 --concurrency 1 --concurrency 8 --concurrency 32 --concurrency 128 \
  -o json >"$work/profile.json"
PYTHONPATH=$repo/operator "$work/venv/bin/python" -m costslo profile --url "http://127.0.0.1:$PORT" \
  --model synthetic-decoder --gpu-hourly 3.00 --mix 512:128 --concurrency 16 --requests-per-step 400 \
  --no-nvml -o json >/dev/null &
loader=$!
sleep 8
say "exporter: one scrape under load (the server's process mapped to no pod: no cluster here)"
py -m costslo gpu-exporter --once --log-format json >"$work/exporter-busy.txt"
wait "$loader" || true
loader=

report=docs/gpu-validation.md
py - "$work" "$gpu" >"$report" <<'EOF'
import json, sys, datetime, pathlib
work, gpu = pathlib.Path(sys.argv[1]), sys.argv[2]
profile = json.loads((work / "profile.json").read_text())
def series(name):
    return [l for l in (work / name).read_text().splitlines() if l.startswith("DCGM_") or l.startswith("costslo_")]
print("# GPU validation\n")
print(f"Run by `hack/gpu-check.sh` on {datetime.date.today().isoformat()}; GPU: {gpu}.\n")
print("## `costslo gpu-exporter --once`\n\nIdle:\n\n```")
print("\n".join(series("exporter-idle.txt")))
print("```\n\nUnder the profiler's load:\n\n```")
print("\n".join(series("exporter-busy.txt")))
print("```\n\n## `costslo profile` (synthetic decoder, 512 tokens in, 128 out, $3.00/GPU-hour)\n")
print("| concurrency | req/s | p95 latency s | p95 TTFT s | GPU util % | power W | $/request |")
print("|---|---|---|---|---|---|---|")
for r in profile["steps"]:
    g = r.get("gpu") or {}
    fmt = lambda v: "-" if v is None else f"{float(v):.3g}"
    print(f"| {r['concurrency']} | {fmt(r['requestsPerSecond'])} | {fmt(r['latencySeconds']['p95'])} | "
          f"{fmt(r['ttftSeconds']['p95'])} | {fmt(g.get('utilisationPercent'))} | {fmt(g.get('powerWatts'))} | "
          f"{fmt(r['costPerRequest'])} |")
print(f"\nCapacity {profile['capacityRequestsPerSecond']:.3g} requests/s; suggestion: {json.dumps(profile['suggestion'])}")
EOF
[[ -n ${OUT:-} ]] && cp "$report" "$work"/*.txt "$work/profile.json" "$OUT/"
say "wrote $report"
