"""Time and peak memory of validate → weight → anonymise → release at growing sizes.

Simulates one country once, then grows it by copying PSUs under new cluster numbers and
instanceIDs (a bigger sample of the same design), and runs the library steps the pipeline
runs for N children. Prints seconds, seconds per 1,000 children and peak RSS per size; never
part of the test suite. Usage: ``python bench/pipeline.py [10000 100000 ...]``.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def grow(sim, factor: int):  # noqa: ANN001, ANN201
    """The simulated country repeated ``factor`` times as distinct clusters and interviews."""
    import pandas as pd

    from dhsurvey.ingest.canonical import RawForm

    n_clusters = int(sim.sample.psus["cluster"].max())
    forms = {}
    for form, raw in sim.forms.items():
        roots, reps = [], {name: [] for name in raw.repeats}
        for i in range(factor):
            root = raw.root.copy()
            suffix = f"-{i:04d}"
            root["KEY"] = root["KEY"] + suffix
            if "cluster" in root:
                root["cluster"] = (pd.to_numeric(root["cluster"]) + i * n_clusters).astype(str)
            if form == "frontline_worker":
                root["worker_no"] = (pd.to_numeric(root["worker_no"]) + i * 1000).astype(str)
            roots.append(root)
            for name, table in raw.repeats.items():
                t = table.copy()
                t["PARENT_KEY"] = t["PARENT_KEY"] + suffix
                t["KEY"] = [k.replace("/", suffix + "/", 1) for k in t["KEY"]]
                reps[name].append(t)
        forms[form] = RawForm(form, pd.concat(roots, ignore_index=True),
                              {n: pd.concat(v, ignore_index=True) for n, v in reps.items()})
    design = pd.concat([sim.sample.households.assign(
        cluster=sim.sample.households["cluster"] + i * n_clusters) for i in range(factor)],
        ignore_index=True)
    return forms, design


def run(children: int, queue) -> None:  # noqa: ANN001
    import numpy as np

    from dhsurvey.anonymise.release import anonymise_country
    from dhsurvey.fieldwork.config import load_country
    from dhsurvey.fieldwork.simulate import FORMS, simulate_country
    from dhsurvey.forms.model import load_form
    from dhsurvey.release.writers import write_release
    from dhsurvey.validate.run import validate_forms
    from dhsurvey.weight.study import study_weights

    models = {f: load_form(ROOT / "instruments" / f"{f}.xlsx") for f in FORMS}
    config = load_country(ROOT / "instruments" / "countries" / "KEN.yaml")
    base = simulate_country(config, models, seed=1)
    factor = max(1, round(children / len(base.forms["child"].root)))
    forms, design = grow(base, factor)
    from dataclasses import replace

    big = replace(config, strata=tuple(replace(s, psus=s.psus * factor) for s in config.strata))
    t0 = time.perf_counter()
    result = validate_forms(forms, models, config=big)
    t1 = time.perf_counter()
    acc = {f: r.accepted for f, r in result.forms.items()}
    w = study_weights(design, acc["household"], acc["child"], acc["caregiver"], big,
                      replicates=children <= 20_000)
    t2 = time.perf_counter()
    release = anonymise_country(acc, {"household": w.household, "child": w.child,
                                      "caregiver": w.caregiver}, models, big,
                                key=b"k" * 32, rng=np.random.default_rng(0))
    t3 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_release(release.tables, models, tmp, language=config.release_language)
    t4 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((len(acc["child"]), t1 - t0, t2 - t1, t3 - t2, t4 - t3, peak))


def main(sizes: list[int]) -> None:
    print(f"{'children':>9} {'validate':>9} {'weight':>8} {'anonymise':>10} {'release':>8} "
          f"{'total s':>8} {'s/1k':>6} {'peak MB':>8}")
    for size in sizes:
        queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(target=run, args=(size, queue))
        proc.start()
        proc.join()
        n, v, w, a, r, peak = queue.get()
        total = v + w + a + r
        print(f"{n:>9,} {v:>9.1f} {w:>8.1f} {a:>10.1f} {r:>8.1f} {total:>8.1f} "
              f"{1000 * total / n:>6.2f} {peak:>8.0f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])
