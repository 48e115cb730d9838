"""PromQL queries and evaluation time per cycle: one batched loop against the per-object baseline.

Runs the operator's evaluator (the real code) over N CostSLOs, each with its own Deployment of 3 GPU pods
in its own namespace, against a Prometheus stand-in that answers every query instantly with per-pod series
for the namespaces it names. What is measured is what the operator controls: how many queries a cycle sends
and how much CPU the cycle itself takes. Both modes run side by side in one process.

    .venv/bin/python bench/bench_queries.py [--sizes 1,10,100,300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import time

from costslo import api
from costslo.evaluator import Evaluator, EvaluatorConfig, SloObject
from costslo.inventory import Inventory
from costslo.metrics.prometheus import Sample

PODS_PER_TARGET = 3
BUCKETS = ("0.5", "1", "2.5", "5", "10", "+Inf")


class StandIn:
    """Answers each query with one series per pod of the namespaces it selects."""

    def __init__(self, pods: dict[str, list[str]]) -> None:
        self.pods = pods
        self.queries = 0

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.queries += 1
        names: set[str] = set()
        for m in re.finditer(r'namespace(=~|=)"([^"]*)"', promql):
            names.update(m.group(2).split("|") if m.group(1) == "=~" else [m.group(2)])
        out = []
        for ns in sorted(names & self.pods.keys()):
            for pod in self.pods[ns]:
                labels = {"namespace": ns, "pod": pod}
                if "_bucket" in promql:
                    out += [Sample({**labels, "le": le}, float(i + 1)) for i, le in enumerate(BUCKETS)]
                else:
                    out.append(Sample(labels, 100.0))
        return out


def fleet(n: int) -> tuple[list[SloObject], Inventory, dict[str, list[str]]]:
    inventory = Inventory()
    pods: dict[str, list[str]] = {}
    slos = []
    for i in range(n):
        ns, name = f"team-{i}", f"model-{i}"
        inventory.deployment({"metadata": {"namespace": ns, "name": name}})
        inventory.replicaset(
            {
                "metadata": {
                    "namespace": ns,
                    "name": f"{name}-abc",
                    "ownerReferences": [{"kind": "Deployment", "name": name, "controller": True}],
                }
            }
        )
        pods[ns] = [f"{name}-abc-{k}" for k in range(PODS_PER_TARGET)]
        for pod in pods[ns]:
            inventory.pod(
                {
                    "metadata": {
                        "namespace": ns,
                        "name": pod,
                        "ownerReferences": [
                            {"kind": "ReplicaSet", "name": f"{name}-abc", "controller": True}
                        ],
                    },
                    "spec": {
                        "nodeName": "gpu-a",
                        "containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                    },
                }
            )
        spec = api.CostSLOSpec.model_validate(
            {
                "targetRef": {"name": name},
                "objective": {"maxCostPerRequest": "0.0002"},
                "pricing": {"gpuHourly": "3"},
            }
        )
        slos.append(SloObject(ns, name, 1, spec, None, api.CostSLOStatus()))
    return slos, inventory, pods


def measure(n: int, per_object: bool, repeat: int) -> tuple[int, float]:
    slos, inventory, pods = fleet(n)
    client = StandIn(pods)
    evaluator = Evaluator(client, inventory, EvaluatorConfig(per_object=per_object))
    best = float("inf")
    for _ in range(repeat):
        before = client.queries
        started = time.process_time()
        results = evaluator.cycle(slos, time.time())
        best = min(best, time.process_time() - started)
        queries = client.queries - before
        assert len(results) == n and all(r.phase != "InvalidSpec" for r in results)
    return queries, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,300")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        "| CostSLOs | queries/cycle batched | queries/cycle per-object | CPU s/cycle batched | "
        "CPU s/cycle per-object | CPU ratio per-object/batched |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        qb, tb = measure(n, per_object=False, repeat=args.repeat)
        qp, tp = measure(n, per_object=True, repeat=args.repeat)
        print(f"| {n} | {qb} | {qp} | {tb:.3f} | {tp:.3f} | {tp / tb:.1f} |")


if __name__ == "__main__":
    main()
