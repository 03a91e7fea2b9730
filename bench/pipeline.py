"""Time and peak memory of the whole path of one country, from its landing exports to its
release files, as library calls and as the Dagster ``country_job``, against the floor of
unavoidable I/O and crypto on the same inputs.

Per size (N children; default 1,000, 10,000 and 100,000), each step in a fresh process:

1. **input** (untimed): KEN simulated once at its design size (no faults; the simulator's
   canaries planted) and grown by copying PSUs under new cluster numbers (then new household
   numbers, within the forms' bounds) and new instanceIDs, then written as
   ``dhsurvey simulate --formats central,xml --public-key PEM`` writes a
   country: ``landing/KEN/central/<form>.csv.zip`` (ODK Central CSV zips) and
   ``landing/KEN/xml/<form>/<instance>/`` (Collect-encrypted instances: manifest and
   ``submission.xml.enc``) for every form, with the simulator's own exporters and a fresh RSA
   key pair; ``design/households.parquet`` and ``design/psus.parquet`` of the grown sample and
   ``faults.json`` (the canaries). Every submission is thus delivered twice (the demo copies
   the folders of a quarter of the tablets only);
   ingest reads both exports and keeps one copy. The country file gets as many PSUs per
   stratum as there are cluster copies (in memory, in both runs).
2. **library**: what ``dhsurvey run KEN`` does (:func:`dhsurvey.study.run_country`), stage by
   stage in its order, with its keys (``DHSURVEY_PSEUDONYM_KEY`` through
   :func:`~dhsurvey.anonymise.pseudonym.load_key`, the private key PEM named by
   ``DHSURVEY_PRIVATE_KEY``): :func:`~dhsurvey.study.ingest` (reading every export, decrypting
   every instance, writing the raw zone), :func:`~dhsurvey.study.validate` (whole or batched as
   the library chooses by size; the quality report of a whole country),
   :func:`~dhsurvey.study.weight`, :func:`~dhsurvey.study.release` (anonymisation, the data
   files in four formats, codebook, manifest, the scan of the written files and the gate) and
   :func:`~dhsurvey.study.indicators`: seconds, share and peak RSS (``ru_maxrss``) after each.
3. **floor**, on the same landing files and the library's release: read every landing file
   (unzip and parse each Central CSV with pyarrow; read every instance's manifest and
   ciphertext), decrypt every instance (:func:`dhsurvey.ingest.decrypt.decrypt_submission`:
   RSA-OAEP key unwrap, AES-CFB, RSA signature check; the key parsed once) and parse the
   plain XML (ElementTree), and write the release's data tables once each to Parquet, CSV,
   Stata ``.dta`` and SPSS ``.sav`` (pandas, pyreadstat; the tables read back untimed).
4. everything but ``landing/`` removed, then **Dagster**: ``country_job`` of
   ``pipelines.definitions.build_defs`` in-process on an ephemeral instance for KEN's
   partition, every asset of the job (landing, raw_<form>, validated, fieldwork_day, weights,
   release, indicators), keys from the environment and ``Secrets(private_key_path=...)``:
   total seconds, seconds per step from the run's event log, peak RSS; whether its release
   is the library's (manifests' SHA-256s).

Prints one row per size (children, s per 1,000 children of the library, of Dagster and of
the floor, library/floor, peak RSS of both runs) with lines of detail under it, and, with
two sizes or more, the ratio of the library's s/1000 at the largest size to the one before
(1.00: flat cost per child).

Dropped from earlier versions: the 13-country ``wave`` (it measured validate → release from
raw tables; the whole path of 13 countries is ``dhsurvey demo``) and ``--parallel``.

Never part of the test suite. Usage:
``python bench/pipeline.py [--sizes 1000,10000,100000] [--no-dagster] [--batch-households=H]
[--tmp /tmp/benchpipe]`` (``--batch-households``: validate in batches of H households in both
runs instead of choosing by size). Each size's data root goes to ``TMP/<N>/`` and is removed
afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queues
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
INSTRUMENTS = ROOT / "instruments"
ISO = "KEN"
SEED = 1
#: The pseudonym key of both runs (hex, as both read it from DHSURVEY_PSEUDONYM_KEY).
KEY_HEX = "531d8dc8b91fb39be8b72cfe162fe81c2b35ab43c1d38d4bfe43f5f7304209b3"
#: The library's stages in the order of ``dhsurvey run`` (:func:`dhsurvey.study.run_country`).
STAGES = ("ingest", "validate", "weight", "release", "indicators")
FLOOR_PARTS = ("read CSV", "read XML", "decrypt", "parse XML", "write")


def gigabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9


def peak_mb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """This process's CPU seconds so far, user and system: on a shared machine a steadier
    measure than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _env(pem: str) -> None:
    """The keys as a deployment passes them (and the study's instruments)."""
    os.environ["DHSURVEY_INSTRUMENTS"] = str(INSTRUMENTS)
    os.environ["DHSURVEY_PSEUDONYM_KEY"] = KEY_HEX
    os.environ["DHSURVEY_PRIVATE_KEY"] = pem


def _study():
    from dhsurvey.study import Study

    return Study.load(INSTRUMENTS)


def _big(config, multiple: int):
    """The country file with ``multiple`` times as many PSUs per stratum."""
    from dataclasses import replace

    return replace(config, strata=tuple(replace(s, psus=s.psus * multiple)
                                        for s in config.strata))


# ----------------------------------------------------------------------------- input


def _shifter(sim, factor: int):
    """(shift, blocks): ``shift(table, i)`` renumbers copy i's clusters (and, once the forms'
    cluster numbers (≤ 9999) run out, its household numbers (≤ 999)) and EAs."""
    import pandas as pd

    n_clusters = int(sim.sample.psus["cluster"].max())
    per_psu = int(sim.sample.households["hh_number"].max())
    blocks = 9999 // n_clusters
    if factor > blocks * (999 // per_psu):
        raise SystemExit(f"{factor} copies exceed the forms' cluster and household numbers")

    def shift(table: pd.DataFrame, i: int) -> pd.DataFrame:
        out = table.copy()
        if "cluster" in out:
            out["cluster"] = pd.to_numeric(out["cluster"]) + (i % blocks) * n_clusters
        if "hh_number" in out:
            out["hh_number"] = pd.to_numeric(out["hh_number"]) + (i // blocks) * per_psu
        if "ea_id" in out and i % blocks:
            out["ea_id"] = out["ea_id"].astype(str) + f"-{i % blocks}"
        return out

    return shift, blocks


def _copy_form(form: str, raw, shift, i: int):
    """Copy i of one form's submissions: new instanceIDs, clusters and household numbers."""
    from dhsurvey.ingest.canonical import RawForm

    suffix = f"-{i:04d}"
    root = raw.root.copy()
    root["KEY"] = root["KEY"] + suffix
    if form != "frontline_worker":
        shifted = shift(root, i)
        for col in ("cluster", "hh_number"):
            if col in root:
                root[col] = shifted[col].astype("Int64").astype(str).where(root[col].notna())
    reps = {}
    for name, table in raw.repeats.items():
        t = table.copy()
        t["PARENT_KEY"] = t["PARENT_KEY"] + suffix
        t["KEY"] = [k.replace("/", suffix + "/", 1) for k in t["KEY"]]
        reps[name] = t
    return RawForm(form, root, reps, raw.quarantine.iloc[0:0])


def grow(sim, factor: int):
    """The simulated country as ``factor`` copies of its PSUs: (forms, households, psus).
    Frontline workers (a fixed ~50 per country, not a household sample) are not copied."""
    import pandas as pd

    from dhsurvey.ingest.canonical import RawForm

    shift, blocks = _shifter(sim, factor)
    parts: dict[str, list] = {form: [] for form in sim.forms}
    households, psus = [], []
    for i in range(factor):
        for form, raw in sim.forms.items():
            if form != "frontline_worker" or not i:
                parts[form].append(_copy_form(form, raw, shift, i))
        households.append(shift(sim.sample.households, i))
        if i < blocks:
            psus.append(shift(sim.sample.psus, i))
    forms = {}
    for form, copies in parts.items():
        names = copies[0].repeats
        forms[form] = RawForm(form, pd.concat([c.root for c in copies], ignore_index=True),
                              {n: pd.concat([c.repeats[n] for c in copies], ignore_index=True)
                               for n in names}, copies[0].quarantine)
    return forms, pd.concat(households, ignore_index=True), pd.concat(psus, ignore_index=True)


def _key_pair(pem_path: Path) -> bytes:
    """A fresh RSA key pair: the private key written to ``pem_path``; the public key PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def generate(children: int, data: str, pem: str) -> dict:
    """KEN grown to about ``children`` and written as landing exports into the data root
    ``data`` (the private key to ``pem``); the PSU multiple of its country file."""
    import random

    from dhsurvey.fieldwork.exports import write_central_zip, write_xml_folder
    from dhsurvey.fieldwork.simulate import simulate_country
    from dhsurvey.io import atomic_write_json, atomic_write_parquet
    from dhsurvey.store import Store

    study = _study()
    t0 = time.perf_counter()
    base = simulate_country(study.config(ISO), study.models, seed=SEED)
    factor = max(1, round(children / len(base.forms["child"].root)))
    multiple = min(factor, 9999 // int(base.sample.psus["cluster"].max()))
    forms, households, psus = grow(base, factor)
    simulated = time.perf_counter() - t0
    landing = Store(Path(data)).landing(ISO)
    public = _key_pair(Path(pem))
    rng = random.Random(f"{SEED}/{ISO}/encrypt").randbytes
    for form, raw in forms.items():
        model = study.models[form]
        write_central_zip(raw, model, landing / "central" / f"{form}.csv.zip")
        write_xml_folder(raw, model, landing / "xml" / form, public_key_pem=public, rng=rng)
    atomic_write_parquet(landing / "design" / "households.parquet", households)
    atomic_write_parquet(landing / "design" / "psus.parquet", psus)
    atomic_write_json(landing / "faults.json", {"country": ISO, "seed": SEED, "faults": [],
                                                "canaries": base.canaries})
    return {"children": len(forms["child"].root), "households": len(households),
            "psus": len(psus), "submissions": sum(len(r.root) for r in forms.values()),
            "multiple": multiple, "simulated": simulated,
            "written": time.perf_counter() - t0 - simulated, "landing": gigabytes(landing),
            "files": sum(1 for p in landing.rglob("*") if p.is_file())}


# --------------------------------------------------------------------------- library


def _manifest(store) -> dict[str, str]:
    """The release's files and their SHA-256s (the manifest)."""
    import json

    path = store.release(ISO) / "manifest.json"
    if not path.exists():
        return {}
    return {f["file"]: f["sha256"] for f in json.loads(path.read_text())["files"]}


def library(data: str, pem: str, multiple: int, batch: int | None) -> dict:
    """``dhsurvey run KEN``'s stages (:func:`dhsurvey.study.run_country`) one by one."""
    _env(pem)
    from dhsurvey.anonymise.pseudonym import load_key
    from dhsurvey.store import Store
    from dhsurvey.study import batches_for, indicators, ingest, release, validate, weight

    study = _study()
    study.countries[ISO] = _big(study.config(ISO), multiple)
    store = Store(Path(data))
    key = load_key()  # as `dhsurvey run`: the pseudonym key and the private key's file
    private = Path(os.environ["DHSURVEY_PRIVATE_KEY"]).read_bytes()
    start = peak_mb()
    stages = {"ingest": lambda: ingest(store, study, ISO, private_key=private),
              "validate": lambda: validate(store, study, ISO, batch_households=batch),
              "weight": lambda: weight(store, study, ISO),
              "release": lambda: release(store, study, ISO, key=key),
              "indicators": lambda: indicators(store, study, ISO)}
    marks, outs = [], {}
    for name in STAGES:
        t, c = time.perf_counter(), cpu_s()
        outs[name] = stages[name]()
        marks.append((name, time.perf_counter() - t, peak_mb(), cpu_s() - c))
    tiers = outs["release"].tiers or {"public": outs["release"]}
    return {"marks": marks, "start": start, "batches": outs["validate"].batches,
            "per_batch": batches_for(store, ISO, batch),
            "accepted": outs["validate"].reconciliation["child"]["accepted"],
            "gate": all(t.gate.passed for t in tiers.values()),
            "release": gigabytes(store.release(ISO)), "manifest": _manifest(store)}


# ----------------------------------------------------------------------------- floor


def _read_central(landing: Path, clock: dict) -> int:
    """Every Central CSV of every zip, unzipped and parsed (pyarrow); rows read."""
    import io
    import zipfile

    from pyarrow import csv

    rows, t = 0, time.perf_counter()
    options = csv.ParseOptions(newlines_in_values=True)
    for path in sorted(landing.glob("central/*.csv.zip")):
        with zipfile.ZipFile(path) as zipped:
            for name in zipped.namelist():
                if name.endswith(".csv"):
                    rows += csv.read_csv(io.BytesIO(zipped.read(name)),
                                         parse_options=options).num_rows
    clock["read CSV"] += time.perf_counter() - t
    return rows


def _read_instances(landing: Path, pem: bytes, clock: dict) -> int:
    """Every instance: manifest and ciphertext read, decrypted and verified, plain XML
    parsed; instances read."""
    import xml.etree.ElementTree as ET

    from dhsurvey.ingest.decrypt import decrypt_submission

    n = 0
    for manifest in sorted(landing.glob("xml/*/*/submission.xml")):
        t0 = time.perf_counter()
        head = manifest.read_bytes()
        files = {p.name: p.read_bytes() for p in manifest.parent.iterdir()
                 if p.name.endswith(".enc")}
        t1 = time.perf_counter()
        plain = decrypt_submission(head, files, pem).xml if files else head
        t2 = time.perf_counter()
        ET.fromstring(plain)
        t3 = time.perf_counter()
        clock["read XML"] += t1 - t0
        clock["decrypt"] += t2 - t1
        clock["parse XML"] += t3 - t2
        n += 1
    return n


def _writable(df):
    """The table as Stata and SPSS writers take it: text as str, nullable numbers float."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].astype("float64")
        else:
            out[col] = out[col].astype("string").fillna("").astype(object)
    return out


def _write_release(release: Path, out: Path, clock: dict) -> int:
    """Each data table of the release (a Parquet file with a ``.dta`` beside it), read back
    untimed, written once to Parquet, CSV, .dta and .sav; rows written."""
    import warnings

    import pandas as pd
    import pyreadstat

    warnings.filterwarnings("ignore", category=pd.errors.InvalidColumnName)  # `end` → `_end`
    rows = 0
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(release.rglob("*.parquet")):
        if not path.with_suffix(".dta").exists():
            continue
        df = pd.read_parquet(path)
        flat = _writable(df)
        name = out / path.stem
        t = time.perf_counter()
        df.to_parquet(name.with_suffix(".parquet"), index=False)
        flat.to_csv(name.with_suffix(".csv"), index=False)
        flat.to_stata(name.with_suffix(".dta"), write_index=False, version=118)
        pyreadstat.write_sav(flat, str(name.with_suffix(".sav")))
        clock["write"] += time.perf_counter() - t
        rows += len(df)
    return rows


def floor(data: str, pem: str, out: str) -> dict:
    """The unavoidable I/O and crypto of the whole path, on the same files."""
    from dhsurvey.ingest.decrypt import decrypt_submission  # noqa: F401  (import untimed)
    from dhsurvey.store import Store

    store = Store(Path(data))
    landing = store.landing(ISO)
    clock = dict.fromkeys(FLOOR_PARTS, 0.0)
    csv_rows = _read_central(landing, clock)
    instances = _read_instances(landing, Path(pem).read_bytes(), clock)
    written = _write_release(store.release(ISO), Path(out), clock)
    shutil.rmtree(out, ignore_errors=True)
    return {"clock": clock, "csv_rows": csv_rows, "instances": instances, "written": written,
            "peak": peak_mb()}


# ---------------------------------------------------------------------------- dagster


def dagster(data: str, pem: str, multiple: int, batch: int | None) -> dict:
    """The whole ``country_job`` for KEN in-process (ephemeral instance)."""
    _env(pem)  # before pipelines.* is imported: the code location reads the instruments
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
                                 batch_households=batch or 0), Secrets(private_key_path=pem))
    job = defs.resolve_job_def("country_job")
    instance = dg.DagsterInstance.ephemeral()
    loaded = time.perf_counter() - t0
    start = peak_mb()
    t, c = time.perf_counter(), cpu_s()
    result = job.execute_in_process(partition_key=ISO, instance=instance, run_config=QUIET,
                                    raise_on_error=False)
    total, cpu = time.perf_counter() - t, cpu_s() - c
    begun, steps = {}, {}
    for entry in instance.all_logs(result.run_id):
        kind = entry.dagster_event_type.value if entry.dagster_event_type else None
        if kind == "STEP_START":
            begun[entry.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in begun:
            steps[entry.step_key] = (begun[entry.step_key],
                                     entry.timestamp - begun[entry.step_key])
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    checks = [e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return {"seconds": total, "cpu": cpu, "loaded": loaded, "start": start, "peak": peak_mb(),
            "steps": [(k, s) for k, (_, s) in sorted(steps.items(), key=lambda kv: kv[1][0])],
            "success": result.success, "failed": failed,
            "checks_failed": sorted(f"{c.asset_key.to_user_string()}:{c.check_name}"
                                    for c in checks if not c.passed),
            "manifest": _manifest(Store(Path(data)))}


# ----------------------------------------------------------------------------- runner


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
    """Everything the library wrote (raw, clean, release, …): only ``landing/`` stays."""
    for zone in data.iterdir():
        if zone.name != "landing":
            shutil.rmtree(zone) if zone.is_dir() else zone.unlink()


HEADER = (f"{'children':>9} {'lib s':>7} {'lib s/1k':>8} {'dag s':>7} {'dag s/1k':>8} "
          f"{'floor s':>7} {'flr s/1k':>8} {'lib/flr':>7} {'lib MB':>7} {'dag MB':>7}")


def one_size(size: int, tmp: Path, *, with_dagster: bool, batch: int | None,
             keep: bool) -> tuple[int, float]:
    """Generate (untimed), library, floor, Dagster; prints the row; (children, lib s/1k)."""
    folder = tmp / str(size)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data, pem = folder / "data", str(folder / "private.pem")
    t0 = time.perf_counter()
    made = in_fresh_process(generate, size, str(data), pem)
    lib = in_fresh_process(library, str(data), pem, made["multiple"], batch)
    flr = in_fresh_process(floor, str(data), pem, str(folder / "floor"))
    dag = None
    if with_dagster:
        _clear_outputs(data)
        try:
            dag = in_fresh_process(dagster, str(data), pem, made["multiple"], batch)
        except SystemExit as died:  # e.g. the code location does not load: the rest stands
            print(f"Dagster run not measured: {died}", flush=True)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    _row(made, lib, flr, dag, time.perf_counter() - t0)
    total = sum(m[1] for m in lib["marks"])
    return made["children"], 1000 * total / made["children"]


def _row(made: dict, lib: dict, flr: dict, dag: dict | None, wall: float) -> None:
    n = made["children"]
    total = sum(m[1] for m in lib["marks"])
    floor_s = sum(flr["clock"].values())
    line = f"{n:>9,} {total:>7.1f} {1000 * total / n:>8.2f} "
    line += (f"{dag['seconds']:>7.1f} {1000 * dag['seconds'] / n:>8.2f} " if dag else
             f"{'–':>7} {'–':>8} ")
    line += (f"{floor_s:>7.1f} {1000 * floor_s / n:>8.2f} {total / floor_s:>7.2f} "
             f"{max(m[2] for m in lib['marks']):>7.0f} "
             + (f"{dag['peak']:>7.0f}" if dag else f"{'–':>7}"))
    print(line)
    pad = " " * 10
    strategy = "whole" if lib["per_batch"] is None else \
        f"{lib['batches']} batches of {lib['per_batch']:,} households"
    print(f"{pad}input: {made['households']:,} households, {made['psus']:,} PSUs, "
          f"{made['submissions']:,} submissions, each as Central CSV and encrypted XML: "
          f"{made['files']:,} files, {made['landing']:.2f} GB; simulated and grown "
          f"{made['simulated']:.0f} s, written {made['written']:.0f} s (untimed)")
    print(f"{pad}library: " + " / ".join(f"{m[0]} {m[1]:.1f}" for m in lib["marks"])
          + " s; share " + " / ".join(f"{100 * m[1] / total:.0f}%" for m in lib["marks"])
          + f"; peak MB at start {lib['start']:.0f}, after each stage "
          + " / ".join(f"{m[2]:.0f}" for m in lib["marks"])
          + "; CPU s " + " / ".join(f"{m[3]:.1f}" for m in lib["marks"])
          + f"; validated {strategy}; "
          f"{lib['accepted']:,} children accepted; release {lib['release']:.2f} GB; gate "
          + ("passed" if lib["gate"] else "BLOCKED"))
    clock = flr["clock"]
    print(f"{pad}floor: " + " / ".join(f"{k} {clock[k]:.1f}" for k in FLOOR_PARTS)
          + f" s ({flr['csv_rows']:,} CSV rows, {flr['instances']:,} instances, "
          f"{flr['written']:,} release rows × 4 formats); peak MB {flr['peak']:.0f}; "
          f"library/floor per stage: ingest {lib['marks'][0][1] / (floor_s - clock['write']):.1f}"
          f", release {lib['marks'][3][1] / clock['write']:.1f}")
    if dag is not None:
        _dagster_line(dag, lib, total, pad)
    print(f"{pad}size done in {wall:.0f} s wall (input, library, floor and Dagster)")
    sys.stdout.flush()


def _dagster_line(dag: dict, lib: dict, total: float, pad: str) -> None:
    steps = dag["steps"]
    ingest = sum(s for k, s in steps if k == "landing" or k.startswith("raw_"))
    same = "the same files" if dag["manifest"] == lib["manifest"] else \
        "DIFFERENT files (manifests differ)"
    print(f"{pad}dagster: " + " / ".join(f"{k} {s:.1f}" for k, s in steps)
          + f" s (ingest steps {ingest:.1f} s), outside steps "
          f"{dag['seconds'] - sum(s for _, s in steps):.1f} s; dagster/library "
          f"{dag['seconds'] / total:.2f}; CPU s {dag['cpu']:.1f}; import and definitions "
          f"{dag['loaded']:.1f} s (untimed), peak MB at start {dag['start']:.0f}; "
          + ("run succeeded" if dag["success"] else
             f"run FAILED at {', '.join(dag['failed']) or '?'}")
          + (f", failed checks {', '.join(dag['checks_failed'])}"
             if dag["checks_failed"] else "")
          + f"; release: {same} as the library's")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="children per size, comma-separated")
    parser.add_argument("--no-dagster", action="store_true", help="library and floor only")
    parser.add_argument("--batch-households", type=int, default=None)
    parser.add_argument("--tmp", default="/tmp/benchpipe", help="data roots go here")
    parser.add_argument("--keep", action="store_true", help="keep each size's data root")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"KEN, whole path landing → release; machine load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    print(HEADER, flush=True)
    done = []
    for size in sizes:
        done.append(one_size(size, Path(args.tmp), with_dagster=not args.no_dagster,
                             batch=args.batch_households, keep=args.keep))
    if len(done) > 1:
        (n0, a), (n1, b) = done[-2], done[-1]
        print(f"cost per child, library: {b:.2f} s/1k at {n1:,} children / {a:.2f} s/1k at "
              f"{n0:,} = {b / a:.2f} (1.00 is flat); load average now "
              f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
