"""The Dagster UI in a real browser: asset graph and a check page after a pipeline run.

Starts ``dagster dev`` on 127.0.0.1 (its own DAGSTER_HOME, nux and telemetry off), renders the
pages in headless Chromium (Debian ``chromium``, installed by ``.ci/run``) and keeps the
screenshots under ``tests/artifacts/`` for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from workbooks import code_location_instruments

from dhsurvey.fieldwork.run import simulate_to
from pipelines.demo import run_pipeline
from pipelines.study import countries, models

ROOT = Path(__file__).parents[2]

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900"]

# CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def _chromium(url: str, profile: Path, *args: str) -> str:
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                          "--virtual-time-budget=20000", *args, url],
                         capture_output=True, text=True, timeout=120, check=False)
    return out.stdout


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("ui")
    data, home = base / "data", base / "dagster_home"
    config = next(c for c in countries() if c.iso == "UGA")
    simulate_to(data / "landing", [config], models(), seed=3, households=450,
                formats=("central",))
    key = base / "pseudonym.key"
    key.write_text("accee70b0b449abe7272bd14aed2ca765a51454a821d4f61cf0b89442fba51c1")
    run_pipeline(code_location_instruments(), data, home, ["UGA"], pseudonym_key=key)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DHSURVEY_DATA": str(data),
           "DHSURVEY_INSTRUMENTS": os.environ["DHSURVEY_INSTRUMENTS"],
           "DHSURVEY_PSEUDONYM_KEY": key.read_text()}
    # As a data manager starts it (the README's `make ui`): `dhsurvey ui`, which runs
    # `dagster dev` in a process group of its own.
    dhsurvey = Path(sys.executable).with_name("dhsurvey")
    proc = subprocess.Popen([str(dhsurvey), "ui", "--port", str(port), "--workspace",
                             str(ROOT / "workspace.yaml")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/server_info", 120)
        yield f"http://127.0.0.1:{port}", base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_asset_graph_lists_the_pipeline(dagster_ui) -> None:
    url, base, _ = dagster_ui
    ARTIFACTS.mkdir(exist_ok=True)
    dom = _chromium(f"{url}/assets", base / "profile-a", "--dump-dom")
    for name in ("compiled_forms", "raw_household", "accepted_child", "weights", "indicators",
                 "release", "pooled_release"):
        assert name in dom, name
    _chromium(f"{url}/asset-groups", base / "profile-b",
              f"--screenshot={ARTIFACTS / 'asset-graph.png'}")
    assert (ARTIFACTS / "asset-graph.png").stat().st_size > 10_000


def test_check_page_shows_a_passed_check(dagster_ui) -> None:
    url, base, _ = dagster_ui
    page = f"{url}/assets/accepted_child?view=checks"
    dom = _chromium(page, base / "profile-c", "--dump-dom")
    assert "reconciliation" in dom
    assert "Passed" in dom or "Succeeded" in dom
    _chromium(page, base / "profile-d", f"--screenshot={ARTIFACTS / 'check-page.png'}")
    assert (ARTIFACTS / "check-page.png").stat().st_size > 10_000


def test_stopping_dhsurvey_ui_stops_the_server(dagster_ui) -> None:
    """A service manager stops `dhsurvey ui` with SIGTERM (to it alone, not its group): the
    UI and its daemon stop with it rather than live on as orphans. Last in this module."""
    import urllib.request

    url, _, proc = dagster_ui
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/server_info", timeout=5)
