"""A country run through the Celery executor: a real Redis broker, a real worker process.

The worker is started the way docs/scale-out.md says (``dagster-celery worker start -A
pipelines.executors``), the run the way a data manager's CLI would (``dagster job execute``
with ``DHSURVEY_EXECUTOR=celery``), on a persistent DAGSTER_HOME both share. Redis requires a
password, so the test also shows the broker URL never lands in Dagster's storage or logs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from pipelines.demo import write_dagster_home
from pipelines.executors import executor_from_env
from pipelines.study import countries, models

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
KEY = "b353c8f4933ae04f50f82a2b36f0c1f41a356b3fb0bb9688716df1fa7bdc0aa2"
ISO = "UGA"
WORKER = "dhsurvey-test"
RELEASE = {"child.dta", "child.sav", "child.csv", "child.parquet", "codebook.xlsx",
           "disclosure_risk.md", "indicators.csv"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """End a process started in its own session, with everything it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers: the worker's pool children
    except ProcessLookupError:
        pass
    proc.wait()


def _wait_for(predicate, what: str, proc: subprocess.Popen, log: Path,
              timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@pytest.fixture
def password() -> str:
    return secrets.token_hex(12)


@pytest.fixture
def broker(tmp_path: Path, password: str) -> Iterator[str]:
    """A redis-server of its own on a free port, with a password; the broker URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` "
                    "(.ci/run installs it); the Celery test needs a real broker")
    port = _free_port()
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(tmp_path), "--requirepass", password],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, password=password)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _wait_for(ready, "redis-server", proc, log, timeout=20)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@pytest.fixture
def study(tmp_path: Path, broker: str) -> dict[str, str]:
    """Simulated fieldwork of one country, a persistent DAGSTER_HOME, and the environment the
    launching process and the worker share."""
    config = next(c for c in countries() if c.iso == ISO)
    simulate_to(tmp_path / "data" / "landing", [config], models(), seed=7, households=450,
                faults=list(KINDS), formats=("central",))
    home = tmp_path / "dagster_home"
    write_dagster_home(home)
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DAGSTER_HOME": str(home), "DHSURVEY_INSTRUMENTS": os.environ["DHSURVEY_INSTRUMENTS"],
            "DHSURVEY_DATA": str(tmp_path / "data"), "DHSURVEY_PSEUDONYM_KEY": KEY,
            "DHSURVEY_EXECUTOR": "celery", "DHSURVEY_CELERY_BROKER": broker}


@pytest.fixture
def worker(tmp_path: Path, study: dict[str, str]) -> Iterator[subprocess.Popen]:
    """One Celery worker process (one pool process), started as docs/scale-out.md says."""
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "pipelines.executors",
             "-n", WORKER, "--", "--concurrency=1"],
            cwd=ROOT, env=study, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: f"{WORKER}@" in log.read_text(errors="replace")
                  and " ready." in log.read_text(errors="replace"),
                  "the Celery worker", proc, log, timeout=90)
        yield proc
    finally:
        _stop(proc)


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind)]


def test_country_run_on_a_celery_worker(tmp_path: Path, study: dict[str, str],
                                        worker: subprocess.Popen, password: str) -> None:
    launch = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "pipelines.definitions",
         "-j", "country_job", "--tags", json.dumps({"dagster/partition": ISO})],
        # The launching process only orchestrates: the pseudonym key is needed on workers.
        cwd=ROOT, env={**study, "DHSURVEY_PSEUDONYM_KEY": ""}, capture_output=True,
        text=True, timeout=240)
    assert launch.returncode == 0, (launch.stdout + launch.stderr)[-4000:]

    instance = dg.DagsterInstance.from_config(study["DAGSTER_HOME"])
    (run,) = instance.get_runs()
    assert run.is_success and run.tags["dagster/partition"] == ISO
    started = {e.step_key: e.pid for e in _events(instance, run.run_id,
                                                   dg.DagsterEventType.STEP_START)}
    succeeded = {e.step_key for e in _events(instance, run.run_id,
                                             dg.DagsterEventType.STEP_SUCCESS)}
    assert {"raw_child", "validated", "weights", "indicators", "release"} <= set(started)
    assert succeeded == set(started)
    # Every step ran in the worker's process group, and the worker reported it.
    assert {os.getpgid(pid) for pid in started.values()} == {worker.pid}
    on_worker = {e.step_key: e.event_specific_data.metadata["Celery worker"].value
                 for e in _events(instance, run.run_id, dg.DagsterEventType.ENGINE_EVENT)
                 if "in celery worker" in (e.message or "")}
    assert set(on_worker) == set(started)
    assert all(name.startswith(f"{WORKER}@") for name in on_worker.values())

    (gate,) = [e.event_specific_data for e in _events(
        instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.event_specific_data.check_name == "disclosure_gate"]
    assert gate.passed, {k: v.value for k, v in gate.metadata.items()}
    release = tmp_path / "data" / "release" / ISO
    assert RELEASE <= {p.name for p in release.iterdir()}

    # The broker URL (with its password) was read from the environment, never stored.
    assert password not in json.dumps(run.run_config) + json.dumps(dict(run.tags))
    for path in Path(study["DAGSTER_HOME"]).rglob("*"):
        assert not path.is_file() or password.encode() not in path.read_bytes(), path


def test_executor_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DHSURVEY_EXECUTOR", raising=False)
    assert executor_from_env().name == "multiprocess"
    monkeypatch.setenv("DHSURVEY_EXECUTOR", "celery")
    monkeypatch.delenv("DHSURVEY_CELERY_BROKER", raising=False)
    with pytest.raises(ValueError, match="DHSURVEY_CELERY_BROKER"):
        executor_from_env()
    monkeypatch.setenv("DHSURVEY_CELERY_BROKER", "redis://:hunter2@broker:6379/0")
    assert executor_from_env().name == "celery"
    monkeypatch.setenv("DHSURVEY_EXECUTOR", "celery-k8s")
    with pytest.raises(ValueError, match="one of multiprocess, celery"):
        executor_from_env()
