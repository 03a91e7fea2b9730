"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from central_server import CentralProject, CentralServer


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
