"""Load test: country runs through the Celery executor, then the multiprocess one, same data.

Simulates the countries once into a temporary data root, starts a redis-server of its own on a
free port and ``--workers`` Celery workers (``dagster-celery worker start -A
pipelines.executors``, one pool process each, as docs/scale-out.md says), and launches
``country_job`` for every country with ``dagster job execute`` — one run after the other
(latency), then all at once, as a backfill from the UI would (throughput) — first with
``DHSURVEY_EXECUTOR=celery``, then ``multiprocess`` on the same data. Prints wall time per run
and in total, steps per run and per worker, summed step time and the time steps waited in the
broker queue. Every process it starts runs in its own process group and is killed on exit.
Never part of the test suite.

Usage: ``python bench/celery.py [--households 1000] [--workers 2] [--countries KEN TZA UGA]``
(``--households 0``: the sizes in the country files).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
#: The pseudonym key of the workers (hex, a fixed random one: weak keys are refused).
KEY_HEX = "477399719f87d145297c470ed6c4cde1af727040430cd9855922fd8648b9db00"
RUNNING: list[subprocess.Popen] = []


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if proc in RUNNING:
        RUNNING.remove(proc)


def stop_all() -> None:
    for proc in reversed(list(RUNNING)):
        stop(proc)


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    RUNNING.append(proc)
    return proc


def wait_until(ready, what: str, proc: subprocess.Popen, log: Path,
               timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(tmp: Path) -> str:
    exe = shutil.which("redis-server") or sys.exit("redis-server not found "
                                                   "(apt-get install redis-server)")
    import redis

    port = free_port()
    log = tmp / "redis.log"
    proc = start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(tmp)], log)
    client = redis.Redis(host="127.0.0.1", port=port)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(ready, "redis-server", proc, log)
    return f"redis://127.0.0.1:{port}/0"


def start_workers(n: int, env: dict[str, str], tmp: Path) -> list[str]:
    names, started = [f"bench-{i + 1}" for i in range(n)], []
    for name in names:
        log = tmp / f"{name}.log"
        proc = start([str(BIN / "dagster-celery"), "worker", "start", "-A",
                      "pipelines.executors", "-n", name, "--", "--concurrency=1"], log, env)
        started.append((name, proc, log))
    for name, proc, log in started:
        wait_until(lambda log=log: " ready." in log.read_text(errors="replace"),
                   f"worker {name}", proc, log)
    return names


def dagster_home(home: Path) -> dict[str, str]:
    """A DAGSTER_HOME with its SQLite storage created now: processes starting at once on a
    fresh home race to create the same tables."""
    import dagster as dg

    from pipelines.demo import write_dagster_home

    write_dagster_home(home)
    dg.DagsterInstance.from_config(str(home)).dispose()
    return {"DAGSTER_HOME": str(home)}


def simulate(data: Path, isos: list[str], households: int | None) -> None:
    from dhsurvey.fieldwork.faults import KINDS
    from dhsurvey.fieldwork.run import simulate_to
    from pipelines.study import countries, models

    configs = [c for c in countries() if c.iso in isos]
    simulate_to(data / "landing", configs, models(), seed=11, households=households,
                faults=list(KINDS), formats=("central",))


def launch(isos: list[str], env: dict[str, str], tmp: Path, *, at_once: bool) -> dict:
    """``dagster job execute`` per country; seconds from launch to exit, per country."""
    def run(iso: str) -> subprocess.Popen:
        return start([str(BIN / "dagster"), "job", "execute", "-m", "pipelines.definitions",
                      "-j", "country_job", "--tags", json.dumps({"dagster/partition": iso})],
                     tmp / f"launch-{iso}.log", env)

    seconds, codes = {}, {}
    t0 = time.monotonic()
    if at_once:
        procs = {iso: run(iso) for iso in isos}
        while len(seconds) < len(procs):
            for iso, proc in procs.items():
                if iso not in seconds and proc.poll() is not None:
                    seconds[iso], codes[iso] = time.monotonic() - t0, proc.returncode
                    RUNNING.remove(proc)
            time.sleep(0.1)
    else:
        for iso in isos:
            start_at = time.monotonic()
            proc = run(iso)
            codes[iso] = proc.wait()
            RUNNING.remove(proc)
            seconds[iso] = time.monotonic() - start_at
    return {"seconds": seconds, "codes": codes, "total": time.monotonic() - t0}


def run_stats(home: Path) -> dict[str, dict]:
    """Per run (by partition): status, steps, summed step seconds, steps per worker, queue wait."""
    import dagster as dg

    kinds = dg.DagsterEventType
    stats = {}
    instance = dg.DagsterInstance.from_config(str(home))
    for run in instance.get_runs():
        logs = instance.all_logs(run.run_id)
        began, step_seconds, submitted, waited, workers = {}, 0.0, {}, [], Counter()
        failed = []
        for entry in logs:
            event = entry.dagster_event
            if event is None:
                continue
            key = event.step_key
            if event.event_type == kinds.STEP_START:
                began[key] = entry.timestamp
            elif event.event_type in (kinds.STEP_SUCCESS, kinds.STEP_FAILURE) and key in began:
                step_seconds += entry.timestamp - began[key]
            elif event.event_type == kinds.ASSET_CHECK_EVALUATION:
                check = event.event_specific_data
                if not check.passed:
                    reasons = check.metadata.get("reasons")
                    failed.append(f"{check.check_name} ({reasons.value if reasons else '?'})")
            elif event.event_type == kinds.ENGINE_EVENT and key:
                if (event.message or "").startswith("Submitting celery task"):
                    submitted[key] = entry.timestamp
                elif "in celery worker" in (event.message or "") and key in submitted:
                    waited.append(entry.timestamp - submitted[key])
                    workers[event.event_specific_data.metadata["Celery worker"].value
                            .split("@")[0]] += 1
        record = instance.get_run_record_by_id(run.run_id)
        stats[run.tags.get("dagster/partition", "?")] = {
            "status": run.status.value, "steps": len(began), "step_seconds": step_seconds,
            "run_seconds": (record.end_time or 0) - (record.start_time or 0),
            "queue_wait": max(waited) if waited else None, "workers": dict(workers),
            "failed": failed}
    return stats


def report(title: str, launched: dict, stats: dict) -> None:
    print(f"\n{title}: {launched['total']:.1f} s in total")
    print(f"  {'run':5} {'status':8} {'wall s':>7} {'run s':>7} {'steps':>5} {'step s':>7} "
          f"{'max wait s':>10}  steps per worker")
    for iso, seconds in launched["seconds"].items():
        s = stats.get(iso, {})
        wait = f"{s['queue_wait']:.1f}" if s.get("queue_wait") is not None else "-"
        print(f"  {iso:5} {s.get('status', 'NONE'):8} {seconds:7.1f} "
              f"{s.get('run_seconds', 0):7.1f} {s.get('steps', 0):5d} "
              f"{s.get('step_seconds', 0):7.1f} {wait:>10}  "
              f"{', '.join(f'{w}: {n}' for w, n in sorted(s.get('workers', {}).items()))}")
        for check in s.get("failed", []):
            print(f"        failed check: {check}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=1000,
                        help="per country; 0 = the sizes in the country files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--countries", nargs="+", default=["KEN", "TZA", "UGA"])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    atexit.register(stop_all)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(1))
    tmp = Path(tempfile.mkdtemp(prefix="dhsurvey-celery-bench-"))
    try:
        data = tmp / "data"
        t0 = time.monotonic()
        simulate(data, args.countries, args.households or None)
        print(f"simulated {', '.join(args.countries)} "
              f"({args.households or 'configured'} households each) in "
              f"{time.monotonic() - t0:.1f} s; data in {data}")
        broker = start_redis(tmp)
        base = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "DHSURVEY_INSTRUMENTS": str(ROOT / "instruments"), "DHSURVEY_DATA": str(data),
                "DHSURVEY_PSEUDONYM_KEY": KEY_HEX, "DHSURVEY_CELERY_BROKER": broker}
        t0 = time.monotonic()
        names = start_workers(args.workers, {**base, **dagster_home(tmp / "home-workers")},
                              tmp)
        print(f"{len(names)} Celery workers (1 pool process each) ready in "
              f"{time.monotonic() - t0:.1f} s; broker {broker}; {os.cpu_count()} CPUs")
        results = {}
        for executor in ("celery", "multiprocess"):
            for at_once in (False, True):
                home = tmp / f"home-{executor}-{'at-once' if at_once else 'one-by-one'}"
                env = {**base, **dagster_home(home), "DHSURVEY_EXECUTOR": executor}
                launched = launch(args.countries, env, tmp, at_once=at_once)
                results[executor, at_once] = launched["total"]
                report(f"{executor}, {'all at once' if at_once else 'one after the other'}",
                       launched, run_stats(home))
        print("\ncelery / multiprocess wall time: "
              f"one after the other {results['celery', False] / results['multiprocess', False]:.2f}"
              f", all at once {results['celery', True] / results['multiprocess', True]:.2f}")
        print("wall s: launch to exit of `dagster job execute` (loads the code location); "
              "run s: Dagster's run start to end; step s: summed step durations; max wait s: "
              "longest time a step waited in the broker queue for a free worker.")
    finally:
        stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
