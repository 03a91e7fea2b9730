"""A run killed mid-way and rerun gives byte-identical release files.

The reference is UGA's release in the demo's run of the session (tests/demo_run.py). UGA's
landing folder, the demo's keys and its compiled forms are copied into a fresh data root,
where a run is killed mid-way and rerun with the same keys: its release files must be those
of the reference, byte for byte. (A run over a finished release rewriting it identically is
tests/test_one_path.py's: two runs into one data root, the same files each time.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from demo_run import DemoRun
from workbooks import code_location_instruments

from pipelines.demo import run_pipeline
from pipelines.reports import REPORTS_URL_ENV

ROOT = Path(__file__).parents[2]


def _release(data: Path) -> dict[str, str]:
    folder = data / "release" / "UGA"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _copy(run: DemoRun, data: Path) -> dict[str, Path]:
    """UGA's landing folder, the demo's keys and compiled forms, in a fresh data root; the
    keys' copies as run_pipeline takes them."""
    shutil.copytree(run.data / "landing" / "UGA", data / "landing" / "UGA")
    shutil.copytree(run.secrets, data / "secrets")
    shutil.copytree(run.data / "build", data / "build")
    return {name: data / "secrets" / path.name for name, path in (
        ("private_key", run.private_key), ("pseudonym_key", run.pseudonym_key),
        ("at_rest_key", run.at_rest_key))}


def test_killed_run_then_rerun_gives_identical_release(demo_run: DemoRun, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = demo_run.checked()
    instruments = code_location_instruments()
    assert run.reads_like(instruments)
    expected = _release(run.data)
    assert {"child.dta", "child.sav", "child.csv", "child.parquet", "codebook.xlsx",
            "disclosure_risk.md", "indicators.csv"} <= set(expected)

    killed = tmp_path / "killed"
    keys = _copy(run, killed)
    assert not (killed / "release").exists()
    monkeypatch.setenv(REPORTS_URL_ENV, run.reports_url)  # as the demo's run had it
    home = tmp_path / "home"
    script = ("import sys; from pathlib import Path; from pipelines.demo import run_pipeline; "
              f"run_pipeline(Path({str(instruments)!r}), Path({str(killed)!r}), "
              f"Path({str(home)!r}), ['UGA'], "
              + ", ".join(f"{name}=Path({str(path)!r})" for name, path in keys.items()) + ")")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ),
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (killed / "clean" / "UGA" / "weights").exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed / "clean" / "UGA").exists(), "the run was not under way when killed"
    assert not (killed / "release" / "UGA" / "indicators.csv").exists(), "killed too late"
    run_pipeline(instruments, killed, home, ["UGA"], **keys)
    assert _release(killed) == expected
