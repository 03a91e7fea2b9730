"""A run killed mid-way and rerun gives byte-identical release files; a rerun changes nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workbooks import code_location_instruments

from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from pipelines.demo import run_pipeline
from pipelines.study import countries, models

ROOT = Path(__file__).parents[2]

KEY = "b353c8f4933ae04f50f82a2b36f0c1f41a356b3fb0bb9688716df1fa7bdc0aa2"


def _simulate(data: Path) -> None:
    config = next(c for c in countries() if c.iso == "UGA")
    simulate_to(data / "landing", [config], models(), seed=7, households=450,
                faults=list(KINDS), formats=("central",))


def _release(data: Path) -> dict[str, str]:
    folder = data / "release" / "UGA"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHSURVEY_PSEUDONYM_KEY", KEY)


def test_killed_run_then_rerun_gives_identical_release(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _simulate(reference)
    run_pipeline(code_location_instruments(), reference, tmp_path / "home-a", ["UGA"])
    expected = _release(reference)
    assert {"child.dta", "child.sav", "child.csv", "child.parquet", "codebook.xlsx",
            "disclosure_risk.md", "indicators.csv"} <= set(expected)

    # Unchanged inputs: a second run rewrites nothing differently.
    run_pipeline(code_location_instruments(), reference, tmp_path / "home-a", ["UGA"])
    assert _release(reference) == expected

    killed = tmp_path / "killed"
    _simulate(killed)
    script = ("import sys; from pathlib import Path; from pipelines.demo import run_pipeline; "
              f"run_pipeline(Path({str(code_location_instruments())!r}), Path({str(killed)!r}), "
              f"Path({str(tmp_path / 'home-b')!r}), ['UGA'])")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "DHSURVEY_PSEUDONYM_KEY": KEY},
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (killed / "clean" / "UGA" / "weights").exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed / "clean" / "UGA").exists(), "the run was not under way when killed"
    run_pipeline(code_location_instruments(), killed, tmp_path / "home-b", ["UGA"])
    assert _release(killed) == expected
