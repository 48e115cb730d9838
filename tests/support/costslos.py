"""CostSLO manifests for tests: one valid, and invalid ones with the field the rejection must name."""

from __future__ import annotations

import copy
from typing import Any


def valid_spec() -> dict[str, Any]:
    return {
        "targetRef": {"name": "summariser"},
        "serving": {"runtime": "vllm"},
        "objective": {"maxCostPerRequest": "0.00015", "latency": {"quantile": 0.95, "thresholdSeconds": 2.5}},
        "pricing": {"gpuHourly": "3.00"},
        "evaluation": {"windows": {"long": "1h", "short": "5m"}, "minRequests": 100},
        "enforcement": {"mode": "Enforce", "rollout": {"action": "Pause", "bakeTime": "10m"}},
    }


def quick_spec(target: str = "chat", min_requests: int = 10, **sections: Any) -> dict[str, Any]:
    """A generous CostSLO for lab tests that need a verdict soon: 1m/30s windows, $0.01 per request."""
    spec: dict[str, Any] = {
        "targetRef": {"name": target},
        "objective": {"maxCostPerRequest": "0.01"},
        "pricing": {"gpuHourly": "3.00"},
        "evaluation": {"windows": {"long": "1m", "short": "30s"}, "minRequests": min_requests},
    }
    spec.update(sections)
    return spec


def costslo(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "costslo.dev/v1alpha1", "kind": "CostSLO", "metadata": {"name": name}, "spec": spec}


def _with(path: str, value: Any) -> dict[str, Any]:
    """The valid spec with the value at a dotted path replaced (value DELETE removes it)."""
    spec = valid_spec()
    *parents, leaf = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = copy.deepcopy(value)
    return spec


DELETE = object()

# (case id, spec, the field path the API server's message must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-target", _with("targetRef", DELETE), "spec.targetRef"),
    ("empty-target-name", _with("targetRef.name", ""), "spec.targetRef.name"),
    ("target-kind-statefulset", _with("targetRef.kind", "StatefulSet"), "spec.targetRef.kind"),
    ("rollout-without-argo-version", _with("targetRef.kind", "Rollout"), "spec.targetRef.apiVersion"),
    (
        "deployment-with-argo-version",
        _with("targetRef.apiVersion", "argoproj.io/v1alpha1"),
        "spec.targetRef.apiVersion",
    ),
    ("unknown-runtime", _with("serving.runtime", "ollama"), "spec.serving.runtime"),
    ("custom-without-queries", _with("serving.runtime", "custom"), "spec.serving.queries"),
    (
        "queries-without-custom",
        _with(
            "serving.queries",
            {"finished": "increase(x{$__pods}[$__window])", "delivered": "increase(y{$__pods}[$__window])"},
        ),
        "spec.serving.queries",
    ),
    ("models-for-tgi", _with("serving", {"runtime": "tgi", "models": ["chat"]}), "spec.serving.models"),
    ("empty-model-name", _with("serving.models", [""]), "spec.serving.models[0]"),
    ("no-objective", _with("objective", DELETE), "spec.objective"),
    ("empty-objective", _with("objective", {}), "spec.objective"),
    (
        "two-budgets",
        _with(
            "objective",
            {"maxCostPerRequest": "0.001", "revenuePerRequest": "0.01", "targetGrossMargin": "0.9"},
        ),
        "spec.objective",
    ),
    ("revenue-without-margin", _with("objective", {"revenuePerRequest": "0.01"}), "spec.objective"),
    (
        "margin-without-revenue",
        _with("objective", {"targetGrossMargin": "0.9"}),
        "spec.objective.revenuePerRequest",
    ),
    ("negative-budget", _with("objective.maxCostPerRequest", "-0.001"), "spec.objective.maxCostPerRequest"),
    (
        "budget-not-a-number",
        _with("objective.maxCostPerRequest", "cheap"),
        "spec.objective.maxCostPerRequest",
    ),
    ("budget-as-float", _with("objective.maxCostPerRequest", 0.00015), "spec.objective.maxCostPerRequest"),
    (
        "margin-above-one",
        _with("objective", {"revenuePerRequest": "0.01", "targetGrossMargin": "1.2"}),
        "spec.objective.targetGrossMargin",
    ),
    (
        "margin-of-one",
        _with("objective", {"revenuePerRequest": "0.01", "targetGrossMargin": "1"}),
        "spec.objective.targetGrossMargin",
    ),
    (
        "quantile-above-one",
        _with("objective.latency", {"quantile": 1.5, "thresholdSeconds": 2}),
        "spec.objective.latency.quantile",
    ),
    (
        "quantile-zero",
        _with("objective.latency", {"quantile": 0, "thresholdSeconds": 2}),
        "spec.objective.latency.quantile",
    ),
    (
        "threshold-zero",
        _with("objective.latency", {"thresholdSeconds": 0}),
        "spec.objective.latency.thresholdSeconds",
    ),
    (
        "latency-metric-unknown",
        _with("objective.latency", {"thresholdSeconds": 2, "metric": "p99"}),
        "spec.objective.latency.metric",
    ),
    ("gpu-price-words", _with("pricing.gpuHourly", "three dollars"), "spec.pricing.gpuHourly"),
    (
        "api-and-gpu-pricing",
        _with("pricing.api", {"inputPerMillionTokens": "0.15", "outputPerMillionTokens": "0.6"}),
        "spec.pricing.api",
    ),
    (
        "short-window-not-shorter",
        _with("evaluation.windows", {"long": "5m", "short": "1h"}),
        "spec.evaluation.windows.short",
    ),
    (
        "window-not-a-duration",
        _with("evaluation.windows", {"long": "forever", "short": "5m"}),
        "spec.evaluation.windows.long",
    ),
    # A zero or sub-second window once failed the whole evaluation cycle, every tenant's CostSLO with it.
    (
        "window-zero",
        _with("evaluation.windows", {"long": "1h", "short": "0s"}),
        "spec.evaluation.windows.short",
    ),
    (
        "window-fraction-of-a-second",
        _with("evaluation.windows", {"long": "1h", "short": "0.0001s"}),
        "spec.evaluation.windows.short",
    ),
    (
        "window-under-30s",
        _with("evaluation.windows", {"long": "1h", "short": "10s"}),
        "spec.evaluation.windows.short",
    ),
    (
        "window-over-a-day",
        _with("evaluation.windows", {"long": "25h", "short": "5m"}),
        "spec.evaluation.windows.long",
    ),
    ("negative-min-requests", _with("evaluation.minRequests", -1), "spec.evaluation.minRequests"),
    (
        "missing-metrics-policy",
        _with("evaluation.onMissingMetrics", "Ignore"),
        "spec.evaluation.onMissingMetrics",
    ),
    ("hysteresis-too-large", _with("evaluation.hysteresis", 0.9), "spec.evaluation.hysteresis"),
    ("enforcement-mode", _with("enforcement.mode", "Yolo"), "spec.enforcement.mode"),
    ("rollout-action", _with("enforcement.rollout.action", "Delete"), "spec.enforcement.rollout.action"),
    (
        "bake-time-words",
        _with("enforcement.rollout.bakeTime", "10 minutes"),
        "spec.enforcement.rollout.bakeTime",
    ),
    (
        "replicas-inverted",
        _with("enforcement.scaling", {"minReplicas": 5, "maxReplicas": 2}),
        "spec.enforcement.scaling.minReplicas",
    ),
    (
        "target-utilisation-above-one",
        _with("enforcement.scaling", {"targetUtilisation": 1.5}),
        "spec.enforcement.scaling.targetUtilisation",
    ),
    ("unknown-field", _with("objective.maxCost", "0.1"), "spec.objective.maxCost"),
]
