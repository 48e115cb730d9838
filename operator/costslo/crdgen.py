"""api.py -> crds/costslo.dev_costslos.yaml: the CRD is generated, never edited by hand."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from costslo import api

CRD_PATH = Path("crds") / f"{api.GROUP}_{api.PLURAL}.yaml"
DESCRIPTION = "An SLO on the cost per delivered request of an inference workload."
HEADER = "# Generated from operator/costslo/api.py by `make generate`; do not edit.\n"

# Columns read status.display: figures as text a person reads at a glance; status.current keeps the exact
# values for machines.
PRINTER_COLUMNS = [
    {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
    {"name": "Cost/Req", "type": "string", "jsonPath": ".status.display.costPerRequest"},
    {"name": "Budget", "type": "string", "jsonPath": ".status.display.budget"},
    {"name": "Latency", "type": "string", "jsonPath": ".status.display.latency"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Projected",
        "type": "string",
        "jsonPath": ".status.display.projectedCostPerRequest",
        "priority": 1,
    },
    {"name": "Req/s", "type": "string", "jsonPath": ".status.display.requestsPerSecond", "priority": 1},
    {"name": "GPUs", "type": "string", "jsonPath": ".status.display.gpus", "priority": 1},
    {"name": "Util", "type": "string", "jsonPath": ".status.display.gpuUtilisation", "priority": 1},
    {"name": "Cost/h", "type": "string", "jsonPath": ".status.display.hourlyCost", "priority": 1},
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and turn JSON Schema 2020 into the OpenAPI v3 subset a structural CRD schema accepts."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        target = _structural(defs[name], defs)
        rules = api.VALIDATIONS.get(name)
        if rules:
            target["x-kubernetes-validations"] = copy.deepcopy(rules)
        target.update({k: _structural(v, defs) for k, v in node.items()})
        return target
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unsupported union in schema: {any_of}")
        merged = _structural(options[0], defs)
        merged.update({k: _structural(v, defs) for k, v in node.items()})
        node = merged
    node.pop("title", None)
    node.pop("additionalProperties", None) if node.get("additionalProperties") is False else None
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if node.get("default") is None:
        node.pop("default", None)
    return {k: (_structural(v, defs) if k not in ("default", "enum") else v) for k, v in node.items()}


def schema_of(model: type[Any], mode: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs)
    rules = api.VALIDATIONS.get(model.__name__)
    if rules:
        schema["x-kubernetes-validations"] = copy.deepcopy(rules)
    return dict(schema)


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    status = schema_of(api.CostSLOStatus, "serialization")
    # kopf keeps its own progress under status.kopf; an unlisted field would be pruned silently.
    status["properties"]["kopf"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    spec = schema_of(api.CostSLOSpec, "validation")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["all", "costslo"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": DESCRIPTION,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=110)


def main(argv: list[str]) -> int:
    """Write the CRD (or, with --check, fail when the committed file differs)."""
    path = Path(argv[1]) if len(argv) > 1 and not argv[1].startswith("--") else CRD_PATH
    text = render()
    if "--check" in argv:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run `make generate`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
