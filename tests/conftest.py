"""Test wiring: markers by folder, and the lab for integration and end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lab import REPO, Lab, lab_session

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(HERE).parts
        if parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))
    # Tests that take the lab down run after everything that needs it.
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_teardown: stops and restarts the lab; runs last")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab: reused when one answers, otherwise started here and stopped at the end."""
    with lab_session() as running:
        yield running


@pytest.fixture(scope="session")
def costslo_crd(lab: Lab) -> None:
    """The CostSLO CRD from crds/, installed in the lab and established."""
    lab.kubectl("apply", "-f", str(REPO / "crds"))
    lab.kubectl("wait", "--for", "condition=established", "crd/costslos.costslo.dev", "--timeout=30s")
