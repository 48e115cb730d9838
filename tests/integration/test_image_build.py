"""The Dockerfile's build stage replayed without Docker: its COPY and RUN lines, in order, into a scratch
directory and a fresh virtualenv. This proves what an image build would: the COPY set is enough to install
the package, requirements.lock holds every package it needs (installed with --no-deps, nothing resolved),
and the installed entry point starts."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lab import REPO

PREFIX = "/opt/costslo"


def build_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the first stage, continuation lines joined, comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, args = (pending + line).partition(" ")
        pending = ""
        if instruction == "FROM" and steps:
            break
        steps.append((instruction, args.strip()))
    return steps


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs the build stage; returns the virtualenv that stands in for the image's /opt/costslo."""
    root = tmp_path_factory.mktemp("image")
    workdir, venv = root / "src", root / "venv"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for instruction, args in build_stage():
        if instruction == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "ENV":
            env.update(dict(word.split("=", 1) for word in shlex.split(args)))
        elif instruction == "COPY":
            *sources, target = shlex.split(args)
            for source in sources:
                # Docker's rules: a directory's contents land in the target; a file lands inside a target
                # that ends in a slash, or as the target.
                if (REPO / source).is_dir():
                    shutil.copytree(
                        REPO / source,
                        workdir / target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),  # as .dockerignore
                        dirs_exist_ok=True,
                    )
                else:
                    into = workdir / target
                    destination = into / Path(source).name if target.endswith("/") else into
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(REPO / source, destination)
        elif instruction == "RUN":
            command = args.replace(PREFIX, str(venv))
            result = subprocess.run(
                ["bash", "-ec", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=900
            )
            assert result.returncode == 0, f"RUN {args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        else:
            assert instruction == "FROM", f"the replay does not know {instruction}; teach it before using it"
    return venv


def test_the_build_stage_installs_from_the_pinned_list_alone(replayed: Path) -> None:
    # pip check fails on any requirement the lock leaves out, since nothing was resolved.
    check = subprocess.run([replayed / "bin" / "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("command", ["run", "gate", "gpu-exporter", "report", "estimate"])
def test_every_command_the_chart_runs_starts_from_the_image(replayed: Path, command: str) -> None:
    result = subprocess.run(
        [replayed / "bin" / "costslo", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_every_module_imports_with_the_image_dependencies_alone(replayed: Path) -> None:
    # Optional extras (matplotlib for `profile --plot`) are imported where used, so they are not needed here.
    script = (
        "import importlib, pkgutil, costslo\n"
        "for module in pkgutil.walk_packages(costslo.__path__, 'costslo.'):\n"
        "    if not module.name.endswith('__main__'):\n"
        "        importlib.import_module(module.name)\n"
        "import importlib.resources as r\n"
        "assert r.files('costslo').joinpath('py.typed').is_file()\n"
        "assert r.files('costslo.simulator').joinpath('profiles.yaml').is_file()\n"
    )
    result = subprocess.run(
        [replayed / "bin" / "python", "-c", script], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr
