"""The image's pinned dependencies cover what the package needs, at versions the package accepts."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from tests.support.lab import REPO


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_every_runtime_dependency_is_pinned_at_an_accepted_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = pinned()
    for text in project["dependencies"]:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in requirements.lock"
        assert req.specifier.contains(pins[name]), (
            f"{req.name}=={pins[name]} does not satisfy {req.specifier}"
        )


def test_the_image_installs_the_pinned_list_and_runs_as_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --no-deps -r requirements.lock" in dockerfile
    assert re.search(r"^USER 65532:65532$", dockerfile, re.M)
    assert all(":latest" not in line for line in dockerfile.splitlines() if line.startswith("FROM"))
