"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from central_server import CentralProject, CentralServer
    from demo_run import DemoRun


# -- the real ODK Central (tests/central_server.py) ----------------------------------------------


@pytest.fixture(scope="session")
def central_session() -> Iterator[CentralServer]:
    """The real ODK Central: ``make test``'s (CENTRAL_URL/USER/PASS), or one started for the
    session; skips saying how to run the tests when it cannot (fails under CI=true)."""
    from central_server import start_session_server

    yield from start_session_server()


@pytest.fixture
def central(central_session: CentralServer, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> CentralProject:
    """A fresh project on the real Central, the default of a pyodk config made for the test."""
    from central_server import new_project

    return new_project(central_session, tmp_path, monkeypatch)


# -- the demo's run, once per session (tests/demo_run.py) -----------------------------------------


@pytest.fixture(scope="session")
def study_instruments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study's instruments with local suppression unbounded (tests/workbooks.py), made
    once: the demo's run uses them and the pipeline tests' code location reads them
    (tests/pipelines/conftest.py)."""
    from workbooks import instruments_with_budget

    return instruments_with_budget(tmp_path_factory.mktemp("instruments"), 1.0)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, study_instruments: Path) -> DemoRun:
    """``dhsurvey demo --households 450`` on KEN, TZA and UGA, run once for the session and
    read (never changed) by the demo's, pooled, UI and rerun tests."""
    from demo_run import run_demo, shared_demo

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        root = tmp_path_factory.mktemp("demo")
        return run_demo(study_instruments, root / "data", root / "dagster_home")
    # Several workers (make test): the first to ask runs the demo, the others read its run.
    return shared_demo(tmp_path_factory.getbasetemp().parent / "demo", study_instruments)
