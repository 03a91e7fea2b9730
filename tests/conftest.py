"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from central_stub import CentralStub


@pytest.fixture
def central(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CentralStub]:
    """A running ODK Central stand-in and a pyodk config pointing at it."""
    with CentralStub() as stub:
        config = tmp_path / "pyodk_config.toml"
        config.write_text(stub.pyodk_config(), encoding="utf-8")
        monkeypatch.setenv("PYODK_CONFIG_FILE", str(config))
        monkeypatch.setenv("PYODK_CACHE_FILE", str(tmp_path / "pyodk_cache.toml"))
        yield stub
