"""Time and peak memory of the one path through a country: validate → weight → indicators →
release (:mod:`dhsurvey.study`), as a library call and as the Dagster ``country_job``.

- **sizes** (N children): KEN simulated once and grown by copying PSUs under new cluster
  numbers and instanceIDs (a bigger sample of the same design, with a country file of as many
  PSUs), written into a temporary data root as the store lays it out — ``raw/KEN/`` one copy
  at a time and ``landing/KEN/design/households.parquet`` — in a process of its own
  (untimed). Then, each in a fresh process on the same raw inputs:

  1. **library**: :func:`dhsurvey.study.validate`, :func:`~dhsurvey.study.weight`,
     :func:`~dhsurvey.study.indicators` and :func:`~dhsurvey.study.release`, one after the
     other, the strategy chosen by size as the library chooses it (whole up to
     ``WHOLE_UP_TO`` sampled households, else batches of ``BATCH_HOUSEHOLDS``): seconds,
     share of the total and peak RSS (``ru_maxrss``) after each stage;
  2. the clean and release zones emptied (raw and landing kept), then **Dagster**: the
     ``country_job`` of ``pipelines.definitions.build_defs`` executed in-process on an
     ephemeral instance for KEN's partition, the assets after ingest selected (``validated``
     — accepted_<form> and fieldwork_quality —, ``weights``, ``indicators``, ``release``):
     total seconds, seconds per step from the run's event log, peak RSS.

  Prints one row per size (library and Dagster side by side, and their ratio), a line of
  detail under it, and whether the two releases are the same files (manifests' SHA-256s).
- **wave**: 13 full-size countries (the three country files in turn, each with its own seed,
  each in its own data root) simulated first, untimed; then timed: a pool of 2 worker
  processes (2 cores) takes the countries one by one through the same four stages
  (whole: a country file's sample is below ``WHOLE_UP_TO``). Prints the wall time from the
  pool's start to the last release (worker start-up and imports included), the seconds per
  country and the workers' peak RSS.

The 13-country wave is kept: it goes through :mod:`dhsurvey.study` now. The ``whole`` mode
of earlier versions (the grown country held in memory through the whole-table functions) is
gone: the library chooses whole or batches by size, and that choice is what is measured.

Never part of the test suite. Usage:
``python bench/pipeline.py [wave] [N ...] [--no-dagster] [--parallel] [--batch-households=H]``
(default: the wave, then 10,000, 100,000 and 1,000,000 children; ``--no-dagster``: the
library run only; ``--parallel``: the library and Dagster runs at once on copies of the
inputs, one core each, which halves the wall time of a large size; ``--batch-households``:
validate every size in batches of H households, in both runs,
instead of choosing by size). Temporary data roots go to ``$TMPDIR`` (about 15 GB at a
million children).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queues
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
INSTRUMENTS = ROOT / "instruments"
ISO = "KEN"
#: The pseudonym key of both runs (hex, as Dagster reads it from DHSURVEY_PSEUDONYM_KEY).
KEY_HEX = "531d8dc8b91fb39be8b72cfe162fe81c2b35ab43c1d38d4bfe43f5f7304209b3"
STAGES = ("validate", "weight", "indicators", "release")
#: The assets after ingest, i.e. the Dagster steps of the timed run.
DAGSTER_STEPS = ("validated", "weights", "indicators", "release")


def gigabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9


def peak_mb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """This process's CPU seconds so far, user and system, all threads: on a shared machine
    a steadier measure than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def copies(sim, factor: int):
    """The simulated country repeated ``factor`` times as distinct clusters and interviews:
    yields (forms, design) of each copy.

    The forms bound cluster numbers (≤ 9999) and household numbers (≤ 999), as real frames
    do: copies first take new cluster numbers, then, once those run out, new household
    numbers within the clusters (more sampled households per PSU).
    """
    import pandas as pd

    from dhsurvey.ingest.canonical import RawForm

    n_clusters = int(sim.sample.psus["cluster"].max())
    per_psu = int(sim.sample.households["hh_number"].max())
    blocks = 9999 // n_clusters
    if factor > blocks * (999 // per_psu):
        raise SystemExit(f"{factor} copies exceed the forms' cluster and household numbers")

    def shift(table: pd.DataFrame, i: int) -> pd.DataFrame:
        out = table.copy()
        if "cluster" in out:
            out["cluster"] = (pd.to_numeric(out["cluster"]) + (i % blocks) * n_clusters)
        if "hh_number" in out:
            out["hh_number"] = (pd.to_numeric(out["hh_number"]) + (i // blocks) * per_psu)
        return out

    for i in range(factor):
        forms = {}
        for form, raw in sim.forms.items():
            # Frontline workers are a fixed ~50 per country, not a household sample: not grown.
            if form == "frontline_worker" and i:
                continue
            root = raw.root.copy()
            suffix = f"-{i:04d}"
            root["KEY"] = root["KEY"] + suffix
            if form != "frontline_worker":
                shifted = shift(root, i)
                for col in ("cluster", "hh_number"):
                    if col in root:
                        root[col] = shifted[col].astype("Int64").astype(str).where(
                            root[col].notna())
            reps = {}
            for name, table in raw.repeats.items():
                t = table.copy()
                t["PARENT_KEY"] = t["PARENT_KEY"] + suffix
                t["KEY"] = [k.replace("/", suffix + "/", 1) for k in t["KEY"]]
                reps[name] = t
            forms[form] = RawForm(form, root, reps, raw.quarantine if i == 0 else
                                  raw.quarantine.iloc[0:0])
        yield forms, shift(sim.sample.households, i)


def grow_to_disk(sim, factor: int, folder: Path):
    """The copies appended to raw Parquet files under ``folder`` (as the raw zone holds
    them), one copy at a time: (design, children). Memory: one copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dhsurvey.ingest.store import QUARANTINE, _parquet

    writers: dict[str, pq.ParquetWriter] = {}
    designs, children = [], 0

    def append(name: str, table) -> None:
        data = pa.table({c: pa.array(table[c].astype(object).where(table[c].notna(), None),
                                     type=pa.string()) for c in table.columns})
        if name not in writers:
            writers[name] = pq.ParquetWriter(folder / f"{name}.parquet", data.schema)
        writers[name].write_table(data.cast(writers[name].schema))

    folder.mkdir(parents=True, exist_ok=True)
    for forms, design in copies(sim, factor):
        for form, raw in forms.items():
            append(form, raw.root)
            for name, table in raw.repeats.items():
                append(f"{form}-{name}", table)
            if form == "frontline_worker" or len(raw.quarantine):
                (folder / f"{form}-{QUARANTINE}.parquet").write_bytes(_parquet(raw.quarantine))
        children += len(forms["child"].root)
        designs.append(design[["cluster", "hh_number", "hh_prob", "psu_prob", "stratum",
                               "region", "urban_rural"]])
    for w in writers.values():
        w.close()
    import pandas as pd

    design = pd.concat(designs, ignore_index=True)
    design["stratum"] = design["stratum"].astype("category")
    return design, children


def _study():
    from dhsurvey.study import Study

    return Study.load(INSTRUMENTS)


def _big(config, multiple: int):
    """The country file with ``multiple`` times as many PSUs per stratum."""
    from dataclasses import replace

    return replace(config, strata=tuple(replace(s, psus=s.psus * multiple)
                                        for s in config.strata))


# ------------------------------------------------------------------------------ sizes


def generate(children: int, data: str) -> dict:
    """KEN grown to about ``children`` into the data root ``data`` (raw zone and sample
    design), as the store lays them out; the PSU multiple of its country file."""
    from dhsurvey.fieldwork.simulate import simulate_country
    from dhsurvey.store import Store

    study = _study()
    t0 = time.perf_counter()
    base = simulate_country(study.config(ISO), study.models, seed=1)
    factor = max(1, round(children / len(base.forms["child"].root)))
    multiple = min(factor, 9999 // int(base.sample.psus["cluster"].max()))
    store = Store(Path(data))
    design, n = grow_to_disk(base, factor, store.raw(ISO))
    path = store.design_path(ISO)
    path.parent.mkdir(parents=True, exist_ok=True)
    design.to_parquet(path)
    return {"children": n, "households": len(design), "psus": int(
        design[["cluster"]].drop_duplicates().shape[0]), "multiple": multiple,
        "seconds": time.perf_counter() - t0, "raw": gigabytes(store.raw(ISO))}


def _manifest(store) -> dict[str, str]:
    """The release's files and their SHA-256s (the manifest)."""
    import json

    manifest = json.loads((store.release(ISO) / "manifest.json").read_text())
    return {f["file"]: f["sha256"] for f in manifest["files"]}


def library(data: str, multiple: int, batch: int | None) -> dict:
    """validate → weight → indicators → release through :mod:`dhsurvey.study`; validation
    whole or in batches as chosen by size, or in batches of ``batch`` households."""
    from dhsurvey.store import Store
    from dhsurvey.study import batches_for, indicators, release, validate, weight

    study = _study()
    study.countries[ISO] = _big(study.config(ISO), multiple)
    store = Store(Path(data))
    per_batch = batches_for(store, ISO, batch)
    key = bytes.fromhex(KEY_HEX)
    start = peak_mb()
    marks, cpu = [], []
    t, c = time.perf_counter(), cpu_s()
    for name, stage in (("validate", lambda: validate(store, study, ISO,
                                                     batch_households=batch)),
                        ("weight", lambda: weight(store, study, ISO)),
                        ("indicators", lambda: indicators(store, study, ISO)),
                        ("release", lambda: release(store, study, ISO, key=key))):
        out = stage()
        now = time.perf_counter()
        marks.append((name, now - t, peak_mb()))
        cpu.append(cpu_s() - c)
        t, c = now, cpu_s()
        if name == "validate":
            batches = out.batches
        elif name == "release":
            passed = out.gate.passed
        del out
    return {"release": gigabytes(store.release(ISO)), "clean": gigabytes(store.clean(ISO)),
            "per_batch": per_batch, "batches": batches, "marks": marks, "cpu": cpu,
            "start": start, "gate": passed, "manifest": _manifest(store)}


def dagster(data: str, multiple: int, batch: int | None) -> dict:
    """The ``country_job`` for KEN in-process (ephemeral instance), assets after ingest."""
    import os

    os.environ["DHSURVEY_INSTRUMENTS"] = str(INSTRUMENTS)
    os.environ["DHSURVEY_PSEUDONYM_KEY"] = KEY_HEX
    t0 = time.perf_counter()
    import dagster as dg

    import pipelines.study
    from dhsurvey.store import Store

    cached = pipelines.study.study()  # the Study every asset asks for
    cached.countries[ISO] = _big(cached.config(ISO), multiple)
    from pipelines.definitions import build_defs
    from pipelines.demo import QUIET
    from pipelines.resources import Secrets, StudyPaths

    defs = build_defs(StudyPaths(instruments=str(INSTRUMENTS), data_root=data,
                                 batch_households=batch or 0), Secrets())
    job = defs.resolve_job_def("country_job")
    selection = [dg.AssetKey(f"accepted_{f}") for f in cached.models] + [
        dg.AssetKey(k) for k in ("fieldwork_quality", "weights", "indicators", "release")]
    instance = dg.DagsterInstance.ephemeral()
    loaded = time.perf_counter() - t0
    start = peak_mb()
    t, c = time.perf_counter(), cpu_s()
    result = job.execute_in_process(partition_key=ISO, instance=instance, run_config=QUIET,
                                    asset_selection=selection, raise_on_error=False)
    total, cpu = time.perf_counter() - t, cpu_s() - c
    begun, steps = {}, {}
    for entry in instance.all_logs(result.run_id):
        kind = entry.dagster_event_type.value if entry.dagster_event_type else None
        if kind == "STEP_START":
            begun[entry.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in begun:
            steps[entry.step_key] = entry.timestamp - begun[entry.step_key]
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    checks = [e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    store = Store(Path(data))
    manifest = _manifest(store) if (store.release(ISO) / "manifest.json").exists() else {}
    return {"seconds": total, "cpu": cpu, "loaded": loaded, "start": start, "peak": peak_mb(),
            "steps": steps, "success": result.success, "failed": failed,
            "checks_failed": sorted(f"{c.asset_key.to_user_string()}:{c.check_name}"
                                    for c in checks if not c.passed),
            "manifest": manifest}


def _call(target, args: tuple, queue) -> None:
    queue.put(target(*args))


def in_fresh_process(target, *args):
    """``target(*args)`` in a new process (peak RSS is that run's alone); its result."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_call, args=(target, args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queues.Empty:
            if not proc.is_alive():
                raise SystemExit(f"{target.__name__}{args} died (exit code {proc.exitcode})"
                                 ) from None
    proc.join()
    return result


def _clear_outputs(data: Path) -> None:
    """Everything the stages wrote; raw exports and the design stay."""
    for zone in ("clean", "release", "licensed"):
        shutil.rmtree(data / zone, ignore_errors=True)


def _in_parallel(*calls: tuple) -> list:
    """Each ``(target, *args)`` in a fresh process of its own, all at once; their results."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: in_fresh_process(*call), calls))


def sizes(children: list[int], *, with_dagster: bool = True, batch: int | None = None,
          parallel: bool = False) -> None:
    """Each size: generated (untimed), then the library run, then the Dagster run (with
    ``parallel``: both at once, on copies of the inputs, one core each)."""
    print(f"{'children':>9} {'strategy':>12} " + " ".join(f"{s:>10}" for s in STAGES)
          + f" {'lib s':>7} {'lib s/1k':>8} {'lib MB':>7} {'dag s':>7} {'dag s/1k':>8} "
          f"{'dag MB':>7} {'dag/lib':>7}", flush=True)
    for size in children:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            data = Path(tmp) / "data"
            made = in_fresh_process(generate, size, str(data))
            dag = None
            if with_dagster and parallel:
                copy = Path(tmp) / "copy"
                shutil.copytree(data, copy)
                lib, dag = _in_parallel((library, str(data), made["multiple"], batch),
                                        (dagster, str(copy), made["multiple"], batch))
            else:
                lib = in_fresh_process(library, str(data), made["multiple"], batch)
            if with_dagster and not parallel:
                _clear_outputs(data)
                dag = in_fresh_process(dagster, str(data), made["multiple"], batch)
        _row(made, lib, dag)


def _row(made: dict, lib: dict, dag: dict | None) -> None:
    n = made["children"]
    total = sum(s for _, s, _ in lib["marks"])
    peak = max(mb for _, _, mb in lib["marks"])
    strategy = "whole" if lib["per_batch"] is None else \
        f"{lib['batches']}×{lib['per_batch']:,}"
    line = (f"{n:>9,} {strategy:>12} " + " ".join(f"{s:>10.1f}" for _, s, _ in lib["marks"])
            + f" {total:>7.1f} {1000 * total / n:>8.2f} {peak:>7.0f}")
    if dag is not None:
        line += (f" {dag['seconds']:>7.1f} {1000 * dag['seconds'] / n:>8.2f} "
                 f"{dag['peak']:>7.0f} {dag['seconds'] / total:>7.2f}")
    print(line)
    print(f"{'':>9} input: {made['households']:,} households, {made['psus']:,} PSUs, "
          f"raw {made['raw']:.2f} GB, generated (untimed) in {made['seconds']:.0f} s")
    print(f"{'':>9} library: share "
          + " / ".join(f"{100 * s / total:.0f}%" for _, s, _ in lib["marks"])
          + f", peak MB at start {lib['start']:.0f}, after each stage "
          + " / ".join(f"{mb:.0f}" for _, _, mb in lib["marks"])
          + f"; CPU s {' / '.join(f'{c:.1f}' for c in lib['cpu'])} "
          f"(total {sum(lib['cpu']):.1f}); release {lib['release']:.2f} GB, clean "
          f"{lib['clean']:.2f} GB; gate "
          + ("passed" if lib["gate"] else "failed"))
    if dag is not None:
        steps = dag["steps"]
        inside = sum(steps.values())
        same = "the same files" if dag["manifest"] == lib["manifest"] else \
            "DIFFERENT files (manifests differ)"
        print(f"{'':>9} dagster: steps " + " / ".join(
            f"{k} {steps[k]:.1f}" for k in DAGSTER_STEPS if k in steps)
            + f" s, outside steps {dag['seconds'] - inside:.1f} s; CPU s {dag['cpu']:.1f} "
            f"(dagster/library {dag['cpu'] / sum(lib['cpu']):.2f}); import and definitions "
            f"{dag['loaded']:.1f} s (untimed), peak MB at start {dag['start']:.0f}; "
            + ("run succeeded" if dag["success"] else
               f"run FAILED at {', '.join(dag['failed']) or '?'}")
            + (f", failed checks {', '.join(dag['checks_failed'])}"
               if dag["checks_failed"] else "")
            + f"; release: {same} as the library's")
    sys.stdout.flush()


# ------------------------------------------------------------------------------- wave

WAVE = 13
COUNTRY_FILES = ("KEN", "TZA", "UGA")
_WORKER_STUDY = []


def _worker_study():
    if not _WORKER_STUDY:
        _WORKER_STUDY.append(_study())
    return _WORKER_STUDY[0]


def _simulate(task: tuple[int, str, str]) -> None:
    """One country of the wave into its own data root (raw zone and sample design)."""
    index, iso, data = task
    from dhsurvey.fieldwork.run import write_design
    from dhsurvey.fieldwork.simulate import simulate_country
    from dhsurvey.ingest.store import write_raw
    from dhsurvey.store import Store

    study, store = _worker_study(), Store(Path(data))
    sim = simulate_country(study.config(iso), study.models, seed=100 + index)
    for raw in sim.forms.values():
        write_raw(raw, store.raw(iso))
    write_design(sim, store.landing(iso))


def _release(task: tuple[int, str, str]) -> tuple:
    index, iso, data = task
    from dhsurvey.store import Store
    from dhsurvey.study import indicators, release, validate, weight

    study, store = _worker_study(), Store(Path(data))
    t0 = time.perf_counter()
    validated = validate(store, study, iso)
    weight(store, study, iso)
    indicators(store, study, iso)
    release(store, study, iso, key=bytes.fromhex(KEY_HEX))
    return (index, iso, time.perf_counter() - t0,
            validated.reconciliation["child"]["accepted"], validated.batches, peak_mb())


def wave() -> None:
    """13 countries on 2 worker processes; simulation untimed, the rest timed end to end."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-wave-") as tmp:
        tasks = [(i, COUNTRY_FILES[i % len(COUNTRY_FILES)], f"{tmp}/c{i:02d}")
                 for i in range(WAVE)]
        t0 = time.perf_counter()
        with ctx.Pool(2) as pool:
            pool.map(_simulate, tasks, chunksize=1)
        simulated = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ctx.Pool(2) as pool:
            results = pool.map(_release, tasks, chunksize=1)
        wall = time.perf_counter() - t0
    children = sum(r[3] for r in results)
    per_country = [r[2] for r in results]
    whole = sum(r[4] == 1 for r in results)
    print(f"wave: {WAVE} countries, {children:,} accepted children; simulated (untimed) in "
          f"{simulated:.0f} s")
    print(f"wave: validate → weight → indicators → release (dhsurvey.study, {whole} of "
          f"{WAVE} whole) on 2 processes: {wall:.1f} s wall; per country "
          f"{min(per_country):.1f}–{max(per_country):.1f} s "
          f"(mean {sum(per_country) / len(per_country):.1f} s); "
          f"worker peak RSS {max(r[5] for r in results):.0f} MB", flush=True)


USAGE = ("bench/pipeline.py [wave] [N ...] [--no-dagster] [--parallel] "
         "[--batch-households=H]")

if __name__ == "__main__":
    args = sys.argv[1:]
    options = {a.split("=")[0]: a.partition("=")[2] for a in args if a.startswith("--")}
    chosen = [a for a in args if not a.startswith("--")] or ["wave", "10000", "100000",
                                                              "1000000"]
    if set(options) - {"--no-dagster", "--parallel", "--batch-households"} or \
            any(a != "wave" and not a.isdigit() for a in chosen):
        raise SystemExit(f"usage: {USAGE}")
    if "wave" in chosen:
        wave()
    if numbers := [int(a) for a in chosen if a.isdigit()]:
        sizes(numbers, with_dagster="--no-dagster" not in options,
              parallel="--parallel" in options,
              batch=int(options["--batch-households"]) if "--batch-households" in options
              else None)
