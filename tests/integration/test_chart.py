"""The Helm chart in charts/costslo, checked statically: no lab, no cluster.

`helm lint --strict` and `helm template` for the default values and every ci/*-values.yaml scenario; the
rendered manifests through kubeconform against local JSON schemas; the CRDs the chart installs against
crds/; least-privilege RBAC; values.schema.json rejecting bad values; the flags the chart passes to
`costslo run` and `costslo gate`; the price catalog, alerts and dashboard against the operator's own code.

kubeconform cannot download its default schemas here (no network), so every schema is local:
- CostSLO, ClusterKopfPeering and KopfPeering: generated from the openAPIV3Schema of crds/, strict
  (additionalProperties: false wherever properties are listed, unless the CRD preserves unknown fields);
- built-in kinds (Deployment, ClusterRole, CustomResourceDefinition, ...): generated the same way from the
  Kubernetes OpenAPI v3 spec of the lab's pinned Kubernetes (hack/tools/versions.env), which `make tools`
  leaves in the Go module cache. Without that spec the built-in kinds are skipped (-ignore-missing-schemas)
  while the CostSLO and peering kinds are still validated strictly; a test asserts which kinds were skipped;
- ServiceMonitor and PrometheusRule have no local schema and are skipped by name; the rules themselves are
  checked with promtool.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from costslo import api
from costslo.cli import app as cli_app
from costslo.pricing import load_catalog
from costslo.telemetry import PHASES, Telemetry
from tests.support.lab import REPO

CHART = REPO / "charts" / "costslo"
CRDS = REPO / "crds"
RELEASE, NAMESPACE = "costslo", "costslo-system"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
# Kinds without any local schema: prometheus-operator's CRDs are not part of this repository.
UNSCHEMED_KINDS = ("ServiceMonitor", "PrometheusRule")
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# OpenAPI 3.0 schemas, as CRDs and the Kubernetes spec write them, follow draft 4 (exclusiveMinimum is a
# boolean there). A schema kubeconform cannot compile counts as missing, so the results are checked per kind.
OPENAPI_DRAFT = "http://json-schema.org/draft-04/schema#"
Manifest = dict[str, Any]


# --- tools ----------------------------------------------------------------------------------------


def tools_dir() -> Path:
    """The lab's tool cache, as hack/tools/build.sh lays it out."""
    if os.environ.get("COSTSLO_TOOLS_DIR"):
        return Path(os.environ["COSTSLO_TOOLS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "costslo" / "bin"


def tool(name: str) -> Path:
    path = tools_dir() / name
    if not path.is_file():
        pytest.fail(f"{name} is not in {tools_dir()} (run `make tools`)")
    return path


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm with its own empty config, cache and data folders, and no cluster to reach."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    for var in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    env["KUBECONFIG"] = str(home / "no-kubeconfig")
    return env


def helm(env: Mapping[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [str(tool("helm")), *args], capture_output=True, text=True, timeout=120, env=dict(env), check=False
    )
    if check and run.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{run.stderr}")
    return run


def render_text(env: Mapping[str, str], *args: str) -> str:
    return helm(env, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args).stdout


def render(env: Mapping[str, str], *args: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(render_text(env, *args)) if d]


def scenario(name: str) -> tuple[str, ...]:
    return () if name == "default" else ("--values", str(CHART / "ci" / name))


def find(docs: Sequence[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def operator_container(docs: Sequence[Manifest]) -> Manifest:
    deployment = one(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def flag_values(args: Sequence[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


# --- local JSON schemas for kubeconform -----------------------------------------------------------


def strict(node: Any) -> None:
    """additionalProperties: false on every object schema that lists its properties, as kubeconform's own
    strict schemas do; a schema that preserves unknown fields or already says otherwise is left alone."""
    if isinstance(node, list):
        for item in node:
            strict(item)
        return
    if not isinstance(node, dict):
        return
    if (
        isinstance(node.get("properties"), dict)
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for key in ("properties", "patternProperties", "definitions"):
        for sub in (node.get(key) or {}).values():
            strict(sub)
    for key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
        strict(node.get(key))


def schema_file(kind: str, api_version: str) -> str:
    """kubeconform's file name for a kind: {{ .ResourceKind }}{{ .KindSuffix }}.json."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def write_crd_schemas(crd_file: Path, out: Path) -> list[str]:
    written = []
    for crd in yaml.safe_load_all(crd_file.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # The API server accepts these on every object, whether the CRD's schema lists them or not.
            for field, kind_of in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
                schema.setdefault("properties", {}).setdefault(field, {"type": kind_of})
            strict(schema)
            schema["$schema"] = OPENAPI_DRAFT
            (out / schema_file(kind, f"{group}/{version['name']}")).write_text(json.dumps(schema))
            written.append(kind)
    return written


def kubernetes_openapi() -> Path | None:
    """The OpenAPI v3 spec of the lab's Kubernetes, from the Go module cache `make tools` filled."""
    pins = dict(
        line.split("=", 1)
        for line in (REPO / "hack" / "tools" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    caches = [os.environ.get("GOMODCACHE", "")]
    if shutil.which("go"):
        env = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30, check=False
        )
        caches.append(env.stdout.strip())
    caches.append(str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "pkg" / "mod"))
    for folder in filter(None, caches):
        spec = Path(folder) / "k8s.io" / f"kubernetes@v{pins['KUBERNETES_VERSION']}" / "api" / "openapi-spec"
        if (spec / "v3").is_dir():
            return spec / "v3"
    return None


@cache
def _openapi_document(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def write_builtin_schema(spec: Path, kind: str, api_version: str, out: Path) -> bool:
    """One standalone, strict schema for a built-in kind: its OpenAPI definition with every definition of
    its group-version document under `definitions`. False when the spec does not know the kind."""
    group, _, version = api_version.rpartition("/")
    path = spec / (f"apis__{group}__{version}_openapi.json" if group else f"api__{version}_openapi.json")
    if not path.is_file():
        return False
    definitions = _openapi_document(path)["components"]["schemas"]
    name = next(
        (
            key
            for key, value in definitions.items()
            if {"group": group, "version": version, "kind": kind}
            in value.get("x-kubernetes-group-version-kind", [])
        ),
        None,
    )
    if name is None:
        return False
    text = json.dumps(definitions).replace('"#/components/schemas/', '"#/definitions/')
    rewritten = json.loads(text)
    for definition in rewritten.values():
        strict(definition)
    schema = {
        "$schema": OPENAPI_DRAFT,
        "$ref": f"#/definitions/{name}",
        "definitions": rewritten,
    }
    (out / schema_file(kind, api_version)).write_text(json.dumps(schema))
    return True


class Schemas:
    """A folder of kubeconform schemas: the repository's CRDs, and built-in kinds on demand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.crd_kinds = write_crd_schemas(CRDS / "costslo.dev_costslos.yaml", folder)
        self.crd_kinds += write_crd_schemas(CRDS / "kopf.dev_peerings.yaml", folder)
        self.openapi = kubernetes_openapi()

    def prepare(self, docs: Sequence[Manifest]) -> None:
        for doc in docs:
            kind, api_version = doc["kind"], doc["apiVersion"]
            if kind in self.crd_kinds or kind in UNSCHEMED_KINDS or self.openapi is None:
                continue
            if (self.folder / schema_file(kind, api_version)).exists():
                continue
            assert write_builtin_schema(self.openapi, kind, api_version, self.folder), (
                f"Kubernetes {self.openapi} has no {api_version} {kind}"
            )

    def kubeconform(self, manifests: str, docs: Sequence[Manifest]) -> list[dict[str, Any]]:
        """Validates the manifests; returns kubeconform's per-resource results (valid and skipped)."""
        self.prepare(docs)
        args = [
            str(tool("kubeconform")),
            "-strict",
            "-verbose",
            "-output",
            "json",
            "-schema-location",
            str(self.folder / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
            "-skip",
            ",".join(UNSCHEMED_KINDS),
        ]
        if self.openapi is None:
            args.append("-ignore-missing-schemas")
        run = subprocess.run(args, input=manifests, capture_output=True, text=True, timeout=120, check=False)
        report = json.loads(run.stdout or "{}")
        results: list[dict[str, Any]] = report.get("resources", [])
        bad = [r for r in results if r["status"] not in ("statusValid", "statusSkipped")]
        assert run.returncode == 0 and not bad, f"kubeconform: {json.dumps(bad or report, indent=1)}"
        return results


@pytest.fixture(scope="session")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Schemas:
    return Schemas(tmp_path_factory.mktemp("kubeconform-schemas"))


# --- lint, render, validate -----------------------------------------------------------------------


def test_every_scenario_has_a_values_file() -> None:
    assert set(SCENARIOS) >= {
        "namespaced-values.yaml",
        "standby-values.yaml",
        "monitoring-values.yaml",
        "gate-values.yaml",
        "gpu-exporter-values.yaml",
    }


@pytest.mark.parametrize("case", ["default", *SCENARIOS])
def test_helm_lint_strict(helm_env: dict[str, str], case: str) -> None:
    run = helm(helm_env, "lint", "--strict", str(CHART), *scenario(case), check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 chart(s) failed" in run.stdout


# Most optional values at once, on top of the standby and monitoring scenarios.
EVERYTHING_SET = (
    *("--values", str(CHART / "ci" / "standby-values.yaml")),
    *("--values", str(CHART / "ci" / "monitoring-values.yaml")),
    *("--values", str(CHART / "ci" / "gate-values.yaml")),
    *("--set", "commonLabels.team=ml,podAnnotations.owner=platform,podLabels.tier=control"),
    *("--set", "extraArgs={--priority,100},serviceAccount.annotations.role=x,service.type=NodePort"),
    *("--set", "prometheus.bearerTokenFile=/var/run/secrets/kubernetes.io/serviceaccount/token"),
    *("--set", "priorityClassName=system-cluster-critical,nodeSelector.pool=system,logFormat=console"),
    *("--set-json", 'extraEnv=[{"name": "TZ", "value": "UTC"}]'),
    *("--set-json", 'extraVolumes=[{"name": "scratch", "emptyDir": {}}]'),
    *("--set-json", 'extraVolumeMounts=[{"name": "scratch", "mountPath": "/scratch"}]'),
    *("--set-json", 'tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]'),
    *("--set-json", 'imagePullSecrets=[{"name": "ghcr"}]'),
    *("--set-json", 'priceCatalog={"gpuProducts": {"NVIDIA-L4": "0.80"}}'),
)


KUBECONFORM_CASES = [
    *[(name, scenario(name)) for name in ["default", *SCENARIOS]],
    ("namespaced-standby", (*scenario("namespaced-values.yaml"), "--set", "standby.enabled=true")),
    (
        "peering-kind-served",
        (*scenario("standby-values.yaml"), "--api-versions", "kopf.dev/v1/ClusterKopfPeering"),
    ),
    ("everything-set", EVERYTHING_SET),
]


@pytest.mark.parametrize(("case", "args"), KUBECONFORM_CASES, ids=[c[0] for c in KUBECONFORM_CASES])
def test_rendered_manifests_pass_kubeconform(
    helm_env: dict[str, str], schemas: Schemas, case: str, args: tuple[str, ...]
) -> None:
    text = render_text(helm_env, *args)
    docs = [d for d in yaml.safe_load_all(text) if d]
    results = schemas.kubeconform(text, docs)
    assert len(results) == len(docs)
    status = {(r["kind"], r["name"]): r["status"] for r in results}
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        strictly = kind in schemas.crd_kinds or (schemas.openapi is not None and kind not in UNSCHEMED_KINDS)
        expected = "statusValid" if strictly else "statusSkipped"
        assert status[(kind, name)] == expected, f"{kind} {name}: {status[(kind, name)]}"


def test_the_costslo_schema_is_strict(schemas: Schemas) -> None:
    """The schema generated from the CRD accepts every CostSLO in examples/ and rejects a wrong one."""
    examples = [
        doc
        for path in sorted(REPO.glob("examples/**/*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "CostSLO"
    ]
    assert examples
    good = yaml.safe_dump_all(examples)
    assert all(r["status"] == "statusValid" for r in schemas.kubeconform(good, examples))
    for mutate in (
        lambda spec: spec.update(unknownField=True),
        lambda spec: spec["objective"].update(maxCostPerRequest=0.0002),
        lambda spec: spec["enforcement"].update(mode="Sometimes"),
    ):
        bad = copy.deepcopy(examples[0])
        mutate(bad["spec"])
        with pytest.raises(AssertionError, match="statusInvalid"):
            schemas.kubeconform(yaml.safe_dump(bad), [bad])


def test_builtin_schemas_are_strict(helm_env: dict[str, str], schemas: Schemas) -> None:
    if schemas.openapi is None:
        pytest.skip("no Kubernetes OpenAPI spec in the Go module cache: built-in kinds are not validated")
    docs = render(helm_env)
    deployment = one(docs, "Deployment")
    schemas.kubeconform(yaml.safe_dump(deployment), [deployment])
    for mutate in (
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}),
        lambda d: d["spec"].update(replicas="one"),
        lambda d: d["spec"]["strategy"].update(rollingUpdate={"maxSurge": 1.5}),
    ):
        bad = copy.deepcopy(deployment)
        mutate(bad)
        with pytest.raises(AssertionError, match="statusInvalid"):
            schemas.kubeconform(yaml.safe_dump(bad), [bad])


def test_without_the_kubernetes_spec_only_builtin_kinds_are_skipped(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    offline = Schemas(tmp_path)
    offline.openapi = None
    text = render_text(helm_env, *scenario("standby-values.yaml"))
    docs = [d for d in yaml.safe_load_all(text) if d]
    status = {r["kind"]: r["status"] for r in offline.kubeconform(text, docs)}
    assert status.pop("ClusterKopfPeering") == "statusValid"
    assert set(status.values()) == {"statusSkipped"}


def test_crd_copies_in_the_chart_equal_crds() -> None:
    copies = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    assert copies == sorted(p.name for p in CRDS.glob("*.yaml"))
    for name in copies:
        assert (CHART / "files" / "crds" / name).read_bytes() == (CRDS / name).read_bytes(), (
            f"charts/costslo/files/crds/{name} differs from crds/{name}; "
            "copy it again: cp crds/*.yaml charts/costslo/files/crds/"
        )


def test_rendered_crds_are_the_repository_crds(helm_env: dict[str, str]) -> None:
    expected = {
        crd["metadata"]["name"]: crd
        for path in sorted(CRDS.glob("*.yaml"))
        for crd in yaml.safe_load_all(path.read_text())
        if crd
    }
    rendered = {d["metadata"]["name"]: d for d in find(render(helm_env), "CustomResourceDefinition")}
    assert rendered.keys() == expected.keys()
    for name, crd in rendered.items():
        meta = crd["metadata"]
        assert meta["annotations"] == {
            "helm.sh/resource-policy": "keep",
            "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
        }, name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        stripped = copy.deepcopy(crd)
        del stripped["metadata"]["labels"], stripped["metadata"]["annotations"]
        assert stripped == expected[name], f"{name} as rendered differs from crds/"

    not_kept = find(render(helm_env, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert not_kept and all("annotations" not in crd["metadata"] for crd in not_kept)
    without = render(helm_env, "--set", "crds.install=false,crds.peering=false")
    assert not find(without, "CustomResourceDefinition")
    only_costslo = find(render(helm_env, "--set", "crds.peering=false"), "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in only_costslo] == ["costslos.costslo.dev"]


# --- values.schema.json ---------------------------------------------------------------------------


SCHEMA_REJECTIONS = [
    (("--set", "replicaCount=-1"), "/replicaCount"),
    (("--set", "replicaCount=2"), "/replicaCount"),
    (("--set", "replicaCount=one"), "/replicaCount"),
    (("--set", "surprise=true"), "additional properties 'surprise'"),
    (("--set", "image.flavour=slim"), "additional properties 'flavour'"),
    (("--set", "standby.replicas=1"), "/standby/replicas"),
    (("--set", "interval=30"), "/interval"),
    (("--set", "interval=half-a-minute"), "/interval"),
    (("--set", "logFormat=yaml"), "/logFormat"),
    (("--set", "prometheus.podLabels=pods"), "/prometheus/podLabels"),
    (("--set", "prometheus.url=prometheus:9090"), "/prometheus/url"),
    (("--set", "watchNamespaces[0]=Not_A_Namespace"), "/watchNamespaces/0"),
    (
        ("--set-json", 'priceCatalog={"gpuProducts": {"NVIDIA-L4": 0.8}}'),
        "/priceCatalog/gpuProducts/NVIDIA-L4",
    ),
    (("--set", "priceCatalog.gpuCosts.x=1"), "additional properties 'gpuCosts'"),
    (("--set", "service.port=70000"), "/service/port"),
    (("--set", "crds.install=yes"), "/crds/install"),
    (("--set", "gateJob.costslos[0].name=x"), "/gateJob/costslos/0"),
    (
        ("--set", "prometheusRule.alerts.budgetBurn.for=15 minutes"),
        "/prometheusRule/alerts/budgetBurn/for",
    ),
]


@pytest.mark.parametrize(
    ("args", "where"), SCHEMA_REJECTIONS, ids=[" ".join(args[1:]) for args, _ in SCHEMA_REJECTIONS]
)
def test_values_schema_rejects_wrong_values(
    helm_env: dict[str, str], args: tuple[str, ...], where: str
) -> None:
    run = helm(helm_env, "template", RELEASE, str(CHART), *args, check=False)
    assert run.returncode != 0, f"{args} was accepted"
    assert "values don't meet the specifications of the schema" in run.stderr, run.stderr
    assert where in run.stderr, run.stderr


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_values_schema_describes_every_value() -> None:
    """Every key of values.yaml has a schema entry, every schema entry a default, objects are closed."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False

    def walk(value: Any, node: Mapping[str, Any], path: str) -> None:
        node = _resolve(schema, node)
        if "properties" not in node:
            return  # a free-form map or list (labels, affinity, ...) with typed members
        assert node.get("additionalProperties") is False, f"{path or '/'} is not closed"
        assert isinstance(value, dict), path
        missing = set(value) - set(node["properties"])
        assert not missing, f"{path or '/'}: no schema for {sorted(missing)}"
        if not value:
            return  # an optional section, empty by default (priceCatalog)
        for key, sub in node["properties"].items():
            if key == "global" and not path:
                continue  # Helm's own, set by a parent chart
            assert key in value, f"{path}/{key} is in the schema but has no default in values.yaml"
            walk(value[key], sub, f"{path}/{key}")

    walk(values, schema, "")


# --- the operator Deployment ----------------------------------------------------------------------


def run_options() -> dict[str, set[str]]:
    """The option names of `costslo run` and `costslo gate`, from the CLI itself."""
    group = typer.main.get_command(cli_app)
    assert isinstance(group, typer.core.TyperGroup)
    return {
        name: {opt for param in group.commands[name].params for opt in (*param.opts, *param.secondary_opts)}
        for name in ("run", "gate", "gpu-exporter")
    }


def assert_flags_exist(args: Sequence[str], command: str) -> None:
    assert args[0] == command
    known = run_options()[command]
    for arg in args[1:]:
        if arg.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", arg):
            assert arg.split("=", 1)[0] in known, f"`costslo {command}` has no option {arg}"


def test_single_instance_by_default(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(docs)
    args = container["args"]
    assert container["command"] == ["costslo"]
    assert_flags_exist(args, "run")
    assert "--peering" not in args and "--namespace" not in args and "--price-catalog" not in args
    assert flag_values(args, "--prometheus-url") == ["http://prometheus-operated.monitoring.svc:9090"]
    assert flag_values(args, "--http") == ["0.0.0.0:8081"]
    assert flag_values(args, "--liveness") == ["http://0.0.0.0:8080/healthz"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"ghcr.io/costslo/costslo:{app_version}"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8081, "liveness": 8080}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert not find(docs, "ClusterKopfPeering") and not find(docs, "KopfPeering")
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8081, "targetPort": "http", "protocol": "TCP"}
    ]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert (
        one(docs, "ServiceAccount")["metadata"]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_image_values(helm_env: dict[str, str]) -> None:
    docs = render(
        helm_env, "--set", "image.repository=registry.local/costslo,image.tag=1.2.3,image.pullPolicy=Always"
    )
    container = operator_container(docs)
    assert container["image"] == "registry.local/costslo:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    digest = "sha256:" + "a" * 64
    assert operator_container(render(helm_env, "--set", f"image.digest={digest}"))["image"] == (
        f"ghcr.io/costslo/costslo@{digest}"
    )


def test_standby_runs_two_peering_instances(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("standby-values.yaml"))
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    args = operator_container(docs)["args"]
    assert flag_values(args, "--peering") == ["costslo"]
    peering = one(docs, "ClusterKopfPeering", "costslo")
    # Before the peering CRD is served, the object waits for post-install and is adopted on the next upgrade.
    annotations = peering["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["meta.helm.sh/release-name"] == RELEASE
    assert annotations["meta.helm.sh/release-namespace"] == NAMESPACE
    served = render(
        helm_env, *scenario("standby-values.yaml"), "--api-versions", "kopf.dev/v1/ClusterKopfPeering"
    )
    assert "annotations" not in one(served, "ClusterKopfPeering", "costslo")["metadata"]
    rules = rules_by_resource(one(docs, "ClusterRole"))
    assert rules[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "kopfpeerings") not in rules


def test_namespaced_standby_peers_through_a_kopfpeering_per_namespace(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("namespaced-values.yaml"), "--set", "standby.enabled=true")
    peerings = find(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["inference", "ml"]
    assert {p["metadata"]["name"] for p in peerings} == set(
        flag_values(operator_container(docs)["args"], "--peering")
    )
    assert not find(docs, "ClusterKopfPeering")
    for role in find(docs, "Role"):
        assert rules_by_resource(role)[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "clusterkopfpeerings") not in rules_by_resource(one(docs, "ClusterRole"))


@pytest.mark.parametrize("case", ["default", *SCENARIOS])
def test_every_container_is_restricted(helm_env: dict[str, str], case: str) -> None:
    docs = render(helm_env, *scenario(case))
    pods = [
        (d["kind"], d["metadata"]["name"], d["spec"]["template"]["spec"] if d["kind"] != "Pod" else d["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "DaemonSet", "Job", "Pod")
    ]
    assert pods
    for kind, name, spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True, f"{kind} {name}"
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, f"{kind} {name}"
        for container in spec["containers"]:
            context = container["securityContext"]
            assert {k: context.get(k) for k in RESTRICTED_CONTAINER} == RESTRICTED_CONTAINER, f"{kind} {name}"
            assert container["resources"].get("limits", {}).get("memory"), (
                f"{kind} {name} has no memory limit"
            )


def test_price_catalog_is_mounted_from_a_configmap(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("namespaced-values.yaml"))
    values = yaml.safe_load((CHART / "ci" / "namespaced-values.yaml").read_text())["priceCatalog"]
    configmap = one(docs, "ConfigMap", f"{RELEASE}-prices")
    catalog = load_catalog(configmap["data"]["prices.yaml"], "the chart's price catalog")
    assert catalog.model_dump(by_alias=True, mode="json") == {
        "gpuProducts": values["gpuProducts"],
        "instanceTypes": values["instanceTypes"],
        "migSlices": values["migSlices"],
    }
    container = operator_container(docs)
    assert flag_values(container["args"], "--price-catalog") == ["/etc/costslo/prices.yaml"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/costslo/prices.yaml")
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert flag_values(container["args"], "--header") == ["X-Scope-OrgID: tenant-a"]
    assert flag_values(container["args"], "--bearer-token-file") == ["/etc/costslo/prometheus-token/token"]
    assert volumes["prometheus-token"]["secret"]["secretName"] == "prometheus-reader"
    assert not find(render(helm_env), "ConfigMap")


# --- RBAC -----------------------------------------------------------------------------------------

NAMESPACED_RULES = {
    ("costslo.dev", "costslos"): {"get", "list", "watch"},
    ("costslo.dev", "costslos/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("apps", "deployments/scale"): {"patch"},
    ("apps", "replicasets"): {"get", "list", "watch"},
    ("", "pods"): {"get", "list", "watch"},
    ("argoproj.io", "rollouts"): {"get", "list", "watch", "patch"},
    ("argoproj.io", "rollouts/scale"): {"patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch"},
    ("keda.sh", "scaledobjects"): {"get", "list", "watch"},
    ("", "events"): {"create"},
}
FORBIDDEN_RESOURCES = ("secrets", "configmaps", "serviceaccounts", "roles", "clusterroles", "rolebindings")
FORBIDDEN_VERBS = {"delete", "deletecollection", "escalate", "bind", "impersonate"}
CLUSTER_READS = {
    ("", "nodes"): {"get", "list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}


def rules_by_resource(role: Manifest) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize("case", ["default", *SCENARIOS, "namespaced-standby"])
def test_rbac_is_least_privilege(helm_env: dict[str, str], case: str) -> None:
    if case == "namespaced-standby":
        docs = render(helm_env, *scenario("namespaced-values.yaml"), "--set", "standby.enabled=true")
    else:
        docs = render(helm_env, *scenario(case))
    roles = find(docs, "ClusterRole") + find(docs, "Role")
    assert roles
    for role in roles:
        where = f"{role['kind']} {role['metadata']['name']}"
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{where}: wildcard {field}"
        for (_group, resource), verbs in rules_by_resource(role).items():
            assert resource.split("/")[0] not in FORBIDDEN_RESOURCES, f"{where}: {resource}"
            assert not verbs & FORBIDDEN_VERBS, f"{where}: {resource} {sorted(verbs)}"
            assert "create" not in verbs or resource == "events", f"{where}: creates {resource}"
            assert "update" not in verbs or "/" in resource, f"{where}: updates {resource} (patch suffices)"
    bindings = find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding")
    role_names = {(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")) for r in roles}
    for binding in bindings:
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], ref["name"], namespace) in role_names, f"binding to a missing {ref}"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    rules = rules_by_resource(one(docs, "ClusterRole"))
    # kopf lists namespaces only when it serves a list of them, never cluster-wide.
    assert rules == NAMESPACED_RULES | CLUSTER_READS
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_namespaced_scenario_renders_roles_per_namespace(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("namespaced-values.yaml"))
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["inference", "ml"]
    for role in roles:
        assert rules_by_resource(role) == NAMESPACED_RULES
    assert sorted(b["metadata"]["namespace"] for b in find(docs, "RoleBinding")) == ["inference", "ml"]
    # The only ClusterRole covers cluster-scoped reads; nothing namespaced is granted cluster-wide.
    assert rules_by_resource(one(docs, "ClusterRole")) == CLUSTER_READS | {
        ("", "namespaces"): {"list", "watch"}
    }
    assert flag_values(operator_container(docs)["args"], "--namespace") == ["ml", "inference"]


# --- monitoring -----------------------------------------------------------------------------------


def exposed_series() -> set[str]:
    """The series names the operator's /metrics serves, with every metric set once."""
    telemetry = Telemetry()
    current = {
        "costPerRequest": "0.0001",
        "latencySeconds": 2.0,
        "costPerMillionInputTokens": "0.1",
        "costPerMillionOutputTokens": "0.4",
    }
    telemetry.observe("ml", "chat", {"phase": "Met", "budget": "0.0002", "current": current})
    telemetry.actions.labels("pause").inc()
    telemetry.duration.observe(0.2)
    telemetry.queries.inc()
    telemetry.writes.inc()
    text = telemetry.exposition().decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bcostslo_[a-z_]+\b", expr))


def test_alerts(helm_env: dict[str, str], tmp_path: Path) -> None:
    docs = render(helm_env, *scenario("monitoring-values.yaml"))
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"CostSLOBudgetBurn", "CostSLOMetricsUnavailable", "CostSLORolloutBlocked"}
    assert alerts["CostSLOBudgetBurn"]["for"] == "15m"
    assert alerts["CostSLOMetricsUnavailable"]["for"] == "10m"
    assert "for" not in alerts["CostSLORolloutBlocked"]
    assert alerts["CostSLORolloutBlocked"]["labels"]["severity"] == "critical"
    series = exposed_series()
    for name, alert in alerts.items():
        assert metric_names(alert["expr"]) <= series, name
        for phase in re.findall(r'phase="([^"]+)"', alert["expr"]):
            assert phase in PHASES
    assert not find(render(helm_env), "PrometheusRule")

    promtool = tool("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    series_in = [
        {"series": 'costslo_cost_per_request{namespace="ml", name="chat", pod="a"}', "values": "0.0003x40"},
        {"series": 'costslo_budget_per_request{namespace="ml", name="chat", pod="a"}', "values": "0.0002x40"},
        {"series": 'costslo_cost_per_request{namespace="ml", name="ok", pod="a"}', "values": "0.0001x40"},
        {"series": 'costslo_budget_per_request{namespace="ml", name="ok", pod="a"}', "values": "0.0002x40"},
        {
            "series": 'costslo_phase{namespace="ml", name="chat", phase="RolloutBlocked", pod="a"}',
            "values": "1x40",
        },
        {
            "series": 'costslo_phase{namespace="ml", name="ok", phase="MetricsUnavailable", pod="a"}',
            "values": "1x40",
        },
    ]

    def firing(alert: str, eval_time: str, names: Sequence[str], severity: str = "warning") -> dict[str, Any]:
        return {
            "expr": f'ALERTS{{alertname="{alert}", alertstate="firing"}}',
            "eval_time": eval_time,
            "exp_samples": [
                {
                    "labels": f'ALERTS{{alertname="{alert}", alertstate="firing", namespace="ml", '
                    f'name="{n}", severity="{severity}"}}',
                    "value": 1,
                }
                for n in names
            ],
        }

    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series_in,
                "promql_expr_test": [
                    firing("CostSLOBudgetBurn", "10m", []),
                    firing("CostSLOBudgetBurn", "20m", ["chat"]),
                    firing("CostSLOMetricsUnavailable", "5m", []),
                    firing("CostSLOMetricsUnavailable", "15m", ["ok"]),
                    firing("CostSLORolloutBlocked", "1m", ["chat"], severity="critical"),
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    for args in (["check", "rules", str(rules)], ["test", "rules", str(tmp_path / "test.yaml")]):
        run = subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stdout + run.stderr


def test_service_monitor(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("monitoring-values.yaml"))
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not find(render(helm_env), "ServiceMonitor")


def test_dashboard(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("monitoring-values.yaml"))
    configmap = one(docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["costslo.json"])
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels}
    used = set().union(*(metric_names(e) for e in exprs.values()))
    assert used <= exposed_series(), used - exposed_series()
    assert {
        "costslo_cost_per_request",
        "costslo_budget_per_request",
        "costslo_cost_per_million_tokens",
        "costslo_latency_seconds",
        "costslo_phase",
        "costslo_actions_total",
        "costslo_evaluation_duration_seconds_bucket",
        "costslo_prometheus_queries_total",
    } <= used
    assert "direction" in exprs["Cost per million tokens"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert not find(render(helm_env), "ConfigMap", f"{RELEASE}-dashboard")


# --- helm test and the gate Job -------------------------------------------------------------------


def test_helm_test_pod_calls_healthz(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    (pod,) = [d for d in find(docs, "Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    (container,) = pod["spec"]["containers"]
    image, _, tag = container["image"].rpartition(":")
    assert image == "curlimages/curl" and tag and tag != "latest"
    service = one(docs, "Service")
    url = (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/healthz"
    )
    assert container["args"][-1] == url and "--fail" in container["args"]
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_gate_job(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("gate-values.yaml"))
    job = one(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PostSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    operator_image = operator_container(docs)["image"]
    gates = []
    for container in spec["containers"]:
        assert container["image"] == operator_image and container["command"] == ["costslo"]
        assert_flags_exist(container["args"], "gate")
        gates.append((flag_values(container["args"], "-n")[0], flag_values(container["args"], "--name")[0]))
        assert flag_values(container["args"], "--timeout") == ["15m"]
    assert gates == [("ml", "summariser"), ("ml", "summariser-margin")]
    account = spec["serviceAccountName"]
    assert account != one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    (role,) = [r for r in find(docs, "Role") if r["metadata"]["name"] == account]
    assert role["metadata"]["namespace"] == "ml"
    assert rules_by_resource(role) == {
        ("costslo.dev", "costslos"): {"get", "list"},
        ("apps", "replicasets"): {"get", "list"},
    }
    (binding,) = [b for b in find(docs, "RoleBinding") if b["roleRef"]["name"] == account]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    assert not find(render(helm_env), "Job")
    run = helm(helm_env, "template", RELEASE, str(CHART), "--set", "gateJob.enabled=true", check=False)
    assert run.returncode != 0 and "gateJob.costslos" in run.stderr


def test_one_port_for_both_servers_is_refused(helm_env: dict[str, str]) -> None:
    run = helm(helm_env, "template", RELEASE, str(CHART), "--set", "ports.http=8080", check=False)
    assert run.returncode != 0 and "ports.http and ports.liveness must differ" in run.stderr


def test_the_standalone_gate_job_example_matches_the_charts(helm_env: dict[str, str]) -> None:
    """examples/argocd/gate-job.yaml is the chart's gate for an application's own Application: the same
    hook, the same least-privilege Role, real `costslo gate` flags, this release's image."""
    example = list(yaml.safe_load_all((REPO / "examples" / "argocd" / "gate-job.yaml").read_text()))
    chart = render(helm_env, *scenario("gate-values.yaml"))
    job = one(example, "Job")
    hook = {k: v for k, v in job["metadata"]["annotations"].items() if k.startswith("argocd.argoproj.io/")}
    charts_hook = one(chart, "Job")["metadata"]["annotations"]
    assert hook == {k: v for k, v in charts_hook.items() if k.startswith("argocd.argoproj.io/")}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["costslo"]
    assert_flags_exist(container["args"], "gate")
    timeout = api.parse_duration(flag_values(container["args"], "--timeout")[0]).total_seconds()
    assert job["spec"]["activeDeadlineSeconds"] > timeout
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"ghcr.io/costslo/costslo:{app_version}"
    account = job["spec"]["template"]["spec"]["serviceAccountName"]
    (charts_role,) = [r for r in find(chart, "Role") if r["metadata"]["name"].endswith("-gate")]
    assert rules_by_resource(one(example, "Role", account)) == rules_by_resource(charts_role)
    binding = one(example, "RoleBinding")
    assert binding["roleRef"]["name"] == account
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ml"}]


def test_gpu_exporter_daemonset(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, *scenario("gpu-exporter-values.yaml"))
    (daemonset,) = find(docs, "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = spec["containers"]
    assert container["command"] == ["costslo"] and container["image"] == operator_container(docs)["image"]
    assert_flags_exist(container["args"], "gpu-exporter")
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    # It must not take a GPU from the workloads it measures.
    assert "nvidia.com/gpu" not in str(container["resources"])
    account = spec["serviceAccountName"]
    (role,) = [r for r in find(docs, "ClusterRole") if r["metadata"]["name"] == account]
    assert rules_by_resource(role) == {("", "pods"): {"get", "list"}}
    (monitor,) = [m for m in find(docs, "ServiceMonitor") if m["metadata"]["name"] == account]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is False  # pods arrive as exported_pod
    assert not find(render(helm_env), "DaemonSet")


def test_chart_readme_documents_every_top_level_value() -> None:
    readme = (REPO / "charts" / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}" not in readme]
    assert not missing, f"charts/README.md does not mention {missing}"


def test_the_http_api_admits_only_the_listed_peers(helm_env: dict[str, str]) -> None:
    """/verdict tells every tenant's cost, budget and reason: by default only the release's namespace and
    the namespaces of Argo Rollouts, Flagger and Prometheus reach it."""
    docs = render(helm_env)
    policy = one(docs, "NetworkPolicy")
    operator = one(docs, "Deployment")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= operator["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    namespaces = [p["namespaceSelector"] for p in rule["from"]]
    assert namespaces[0] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    (admitted,) = namespaces[1]["matchExpressions"]
    assert set(admitted["values"]) == {"argo-rollouts", "flagger-system", "monitoring"}
    ports = operator["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert "http" in {p["name"] for p in ports}
    peers = '{"podSelector": {"matchLabels": {"app": "gate"}}}'
    custom = one(render(helm_env, "--set-json", f"networkPolicy.httpFrom=[{peers}]"), "NetworkPolicy")
    assert custom["spec"]["ingress"][0]["from"][1:] == [{"podSelector": {"matchLabels": {"app": "gate"}}}]
    assert not find(render(helm_env, "--set", "networkPolicy.enabled=false"), "NetworkPolicy")
