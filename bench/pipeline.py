"""Time and peak memory of validate → weight → anonymise → release: a wave and growing sizes.

- **wave**: 13 full-size countries (the three country files in turn, each with its own seed)
  simulated first, untimed, to Parquet; then timed: a pool of 2 worker processes (2 cores)
  takes the countries one by one through the library steps the pipeline's assets call, and
  writes each release. Prints the wall time from the pool's start to the last release (worker
  start-up and imports included), the seconds per country and the workers' peak RSS.
- **sizes** (N children): one country simulated once, then grown by copying PSUs under new
  cluster numbers and instanceIDs (a bigger sample of the same design), written to raw Parquet
  one copy at a time (untimed), and taken through :func:`dhsurvey.batched.release_in_batches`
  in a fresh process per size. Prints seconds per step, seconds per 1,000 children, peak RSS
  after each step and the size of the release files.
- **whole** sizes (``whole 10000 100000``): the same grown country held in memory and taken
  through the whole-table library steps, as the pipeline's assets call them. A size whose
  memory estimate exceeds the free memory is reported as not run (~29 MB per 1,000
  children).

Never part of the test suite. Usage: ``python bench/pipeline.py [wave] [whole] [N ...]``
(default: the wave, then 10,000, 100,000 and 1,000,000 children in batches).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def copies(sim, factor: int):  # noqa: ANN001, ANN201
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


def grow(sim, factor: int):  # noqa: ANN001, ANN201
    """All copies in memory: (forms, design)."""
    import pandas as pd

    from dhsurvey.ingest.canonical import RawForm

    parts = list(copies(sim, factor))
    forms = {}
    for form in sim.forms:
        mine = [p[form] for p, _ in parts if form in p]
        forms[form] = RawForm(form, pd.concat([m.root for m in mine], ignore_index=True),
                              {n: pd.concat([m.repeats[n] for m in mine], ignore_index=True)
                               for n in mine[0].repeats}, mine[0].quarantine)
    return forms, pd.concat([d for _, d in parts], ignore_index=True)


def grow_to_disk(sim, factor: int, folder: Path):  # noqa: ANN001, ANN201
    """The copies appended to raw Parquet files under ``folder`` (as the raw zone holds
    them), one copy at a time: (design, children). Memory: one copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dhsurvey.ingest.store import QUARANTINE, _parquet

    writers: dict[str, pq.ParquetWriter] = {}
    designs, children = [], 0

    def append(name: str, table) -> None:  # noqa: ANN001
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


WAVE = 13
COUNTRY_FILES = ("KEN", "TZA", "UGA")


def _models():  # noqa: ANN202
    from dhsurvey.fieldwork.simulate import FORMS
    from dhsurvey.forms.model import load_form

    return {f: load_form(ROOT / "instruments" / f"{f}.xlsx") for f in FORMS}


def _config(iso: str):  # noqa: ANN202
    from dhsurvey.fieldwork.config import load_country

    return load_country(ROOT / "instruments" / "countries" / f"{iso}.yaml")


def release_country(forms: dict, design, models: dict, config, out: Path) -> tuple:  # noqa: ANN001
    """validate → weight → anonymise → release, as the pipeline's assets call them.

    Between steps only what the next asset reads is kept (the pipeline's assets pass Parquet
    files, not objects): ``forms`` is emptied once validated.
    """
    import numpy as np

    from dhsurvey.anonymise.release import anonymise_country
    from dhsurvey.release.writers import write_release
    from dhsurvey.validate.run import validate_forms
    from dhsurvey.weight.study import study_weights

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    peaks = [peak()]
    t0 = time.perf_counter()
    result = validate_forms(forms, models, config=config)
    t1 = time.perf_counter()
    peaks.append(peak())
    acc = {f: r.accepted for f, r in result.forms.items()}
    del result
    forms.clear()
    w = study_weights(design, acc["household"], acc["child"], acc["caregiver"], config)
    t2 = time.perf_counter()
    peaks.append(peak())
    release = anonymise_country(acc, {"household": w.household, "child": w.child,
                                      "caregiver": w.caregiver}, models, config,
                                key=b"k" * 32, rng=np.random.default_rng(0))
    t3 = time.perf_counter()
    peaks.append(peak())
    children = len(acc["child"])
    del acc, w
    write_release(release.tables, models, out, language=config.release_language)
    t4 = time.perf_counter()
    peaks.append(peak())
    return children, t1 - t0, t2 - t1, t3 - t2, t4 - t3, peaks


def _grown(children: int):  # noqa: ANN202
    """(models, config, base simulation, factor): KEN grown to about ``children``."""
    from dhsurvey.fieldwork.simulate import simulate_country

    models, config = _models(), _config("KEN")
    base = simulate_country(config, models, seed=1)
    factor = max(1, round(children / len(base.forms["child"].root)))
    return models, config, base, factor


def _big(config, base, factor: int):  # noqa: ANN001, ANN202
    """The country file with as many PSUs per stratum as the grown sample has."""
    from dataclasses import replace

    psus = min(factor, 9999 // int(base.sample.psus["cluster"].max()))
    return replace(config, strata=tuple(replace(s, psus=s.psus * psus) for s in config.strata))


def run(children: int, queue) -> None:  # noqa: ANN001
    """In memory: the grown country held whole, through the library steps one by one."""
    models, config, base, factor = _grown(children)
    forms, design = grow(base, factor)
    big = _big(config, base, factor)
    del base
    with tempfile.TemporaryDirectory() as tmp:
        queue.put(release_country(forms, design, models, big, Path(tmp)))


def run_batched(children: int, queue) -> None:  # noqa: ANN001
    """In batches: the grown country written to raw Parquet one copy at a time, then
    :func:`dhsurvey.batched.release_in_batches` (the generation is not timed)."""
    import numpy as np

    from dhsurvey.batched import release_in_batches

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    models, config, base, factor = _grown(children)
    big = _big(config, base, factor)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        design, n = grow_to_disk(base, factor, Path(tmp) / "raw")
        generated = time.perf_counter() - t0
        del base
        marks = [("input", time.perf_counter(), peak())]
        result = release_in_batches(
            Path(tmp) / "raw", design, models, big, Path(tmp) / "release", Path(tmp) / "work",
            key=b"k" * 32, rng=np.random.default_rng(0),
            on_step=lambda name: marks.append((name, time.perf_counter(), peak())))
        size = sum(p.stat().st_size for p in result.files)
        queue.put((n, result.batches, generated, size,
                   [(name, t - marks[i][1], mb) for i, (name, t, mb) in
                    enumerate(marks[1:])], marks[0][2]))


def _simulate(task: tuple[int, str, str]) -> None:
    """Simulate one country of the wave to ``folder`` (raw Parquet and the sample design)."""
    index, iso, folder = task
    from dhsurvey.fieldwork.simulate import simulate_country
    from dhsurvey.ingest.store import write_raw

    sim = simulate_country(_config(iso), _models(), seed=100 + index)
    for raw in sim.forms.values():
        write_raw(raw, Path(folder))
    sim.sample.households.to_parquet(Path(folder) / "design.parquet")


def _release(task: tuple[int, str, str]) -> tuple:
    index, iso, folder = task
    import pandas as pd

    from dhsurvey.ingest.store import read_raw

    models = _models()
    forms = {f: read_raw(folder, f) for f in models}
    design = pd.read_parquet(Path(folder) / "design.parquet")
    t0 = time.perf_counter()
    times = release_country(forms, design, models, _config(iso), Path(folder) / "release")
    return index, iso, time.perf_counter() - t0, times[0], times[-1][-1]


def wave() -> None:
    """13 countries on 2 worker processes; simulation untimed, the rest timed end to end."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
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
    print(f"wave: {WAVE} countries, {children:,} children; simulated (untimed) in "
          f"{simulated:.0f} s")
    print(f"wave: validate → weight → anonymise → release on 2 processes: {wall:.1f} s wall; "
          f"per country {min(per_country):.1f}–{max(per_country):.1f} s "
          f"(mean {sum(per_country) / len(per_country):.1f} s); "
          f"worker peak RSS {max(r[4] for r in results):.0f} MB")


#: Peak RSS per child measured at 100,000 children (2,979 MB): the steps hold a country in
#: memory, so a size whose estimate exceeds the free memory is refused, not left to swap.
MB_PER_CHILD = 0.030


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def _in_fresh_process(target, size: int) -> tuple:  # noqa: ANN001
    """``target(size, queue)`` in a new process (peak RSS is that run's alone); its result."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(size, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def whole(sizes: list[int]) -> None:
    """The in-memory steps (what the pipeline's assets do today) at each size that fits."""
    for size in sizes:
        need = size * MB_PER_CHILD
        if need > 0.9 * _available_mb():
            print(f"whole {size:,} children: not run — about {need / 1024:.0f} GB needed at "
                  f"{MB_PER_CHILD * 1000:.0f} MB per 1,000 children, "
                  f"{_available_mb() / 1024:.0f} GB available (use the batched run)")
    sizes = [s for s in sizes if s * MB_PER_CHILD <= 0.9 * _available_mb()]
    if not sizes:
        return
    print(f"{'whole':>5} {'children':>9} {'validate':>9} {'weight':>8} {'anonymise':>10} "
          f"{'release':>8} {'total s':>8} {'s/1k':>6} {'peak MB':>8}  peak MB after "
          "input/validate/weight/anonymise")
    for size in sizes:
        n, v, w, a, r, peaks = _in_fresh_process(run, size)
        total = v + w + a + r
        print(f"{'':>5} {n:>9,} {v:>9.1f} {w:>8.1f} {a:>10.1f} {r:>8.1f} {total:>8.1f} "
              f"{1000 * total / n:>6.2f} {peaks[-1]:>8.0f}  "
              + " / ".join(f"{p:.0f}" for p in peaks[:-1]), flush=True)


def batched(sizes: list[int]) -> None:
    """The batched steps (:mod:`dhsurvey.batched`) at each size, each in a fresh process."""
    steps = ("partition", "validate", "weight", "anonymise", "release")
    print(f"{'children':>9} {'batches':>7} " + " ".join(f"{s:>9}" for s in steps)
          + f" {'total s':>8} {'s/1k':>6} {'peak MB':>8}  peak MB after input/"
          + "/".join(steps[:-1]) + "; release files; input generated in (untimed)")
    for size in sizes:
        n, batches, generated, size_bytes, marks, input_peak = _in_fresh_process(run_batched,
                                                                                 size)
        total = sum(t for _, t, _ in marks)
        peaks = [input_peak, *(mb for _, _, mb in marks)]
        print(f"{n:>9,} {batches:>7} " + " ".join(f"{t:>9.1f}" for _, t, _ in marks)
              + f" {total:>8.1f} {1000 * total / n:>6.2f} {peaks[-1]:>8.0f}  "
              + " / ".join(f"{p:.0f}" for p in peaks[:-1])
              + f"; {size_bytes / 1e9:.1f} GB; {generated:.0f} s", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:] or ["wave", "10000", "100000", "1000000"]
    if "wave" in args:
        wave()
    sizes = [int(a) for a in args if a.isdigit()]
    if "whole" in args:
        whole(sizes)
    elif sizes:
        batched(sizes)
