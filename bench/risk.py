"""Benchmark: key frequencies (wildcard rule) + individual risk on 1,000,000 records.

Six keys with some missing values, and sampling weights. Prints the best of three timings and
the ratio to sdcMicro's 2.3 s for the same work (``measure_risk`` on the same shape; the
reference figure from shared/REFERENCE.md). If R with sdcMicro is installed here, R is timed
on the same data as well. Run: ``.venv/bin/python bench/risk.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dhsurvey.anonymise.risk import frequencies, individual_risk

N = 1_000_000
SDCMICRO_REFERENCE_S = 2.3
TARGET_S = 0.5

KEYS = ["region", "age", "sex", "urban", "hhsize", "educ"]


def make_data(n: int = N, seed: int = 20261) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "region": rng.integers(1, 13, n),
            "age": rng.integers(0, 18, n),
            "sex": rng.integers(1, 3, n),
            "urban": rng.integers(0, 2, n),
            "hhsize": np.minimum(rng.poisson(5, n) + 1, 15),
            "educ": rng.integers(0, 6, n),
        }
    ).astype(np.float64)
    # Item non-response / earlier suppression on four keys.
    for key, rate in {"age": 0.02, "hhsize": 0.01, "educ": 0.03, "region": 0.005}.items():
        df.loc[rng.random(n) < rate, key] = np.nan
    df["weight"] = rng.lognormal(mean=3.0, sigma=0.5, size=n)
    return df


def best_of(work: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``work``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def time_python(df: pd.DataFrame) -> float:
    return best_of(lambda: (frequencies(df, KEYS, "weight"), individual_risk(df, KEYS, "weight")))


def time_python_shared(df: pd.DataFrame) -> float:
    """Individual risk alone: it computes the frequencies itself (one wildcard pass)."""
    return best_of(lambda: individual_risk(df, KEYS, "weight"))


def time_r(df: pd.DataFrame) -> float | None:
    """Seconds for sdcMicro freqCalc + measure_risk, or None when R/sdcMicro is absent."""
    if shutil.which("Rscript") is None:
        return None
    probe = subprocess.run(
        ["Rscript", "-e", "library(sdcMicro)"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        df.to_csv(path, index=False)
        script = (
            "suppressMessages(library(sdcMicro)); "
            f"d <- read.csv('{path}'); "
            f"k <- c({', '.join(repr(k) for k in KEYS)}); "
            "t <- system.time({f <- freqCalc(d, keyVars=k, w='weight'); "
            "r <- measure_risk(d, keyVars=k, w='weight')}); cat(t[['elapsed']])"
        )
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                             check=True)
        return float(out.stdout.strip().split()[-1])


def main() -> int:
    df = make_data()
    incomplete = int(df[KEYS].isna().any(axis=1).sum())
    print(f"rows: {len(df):,}; keys: {len(KEYS)}; records with a missing key: {incomplete:,}")
    both = time_python(df)
    risk_only = time_python_shared(df)
    print(f"dhsurvey frequencies + individual_risk: {both:.3f} s (best of 3)")
    print(f"dhsurvey individual_risk alone (includes its own frequencies): {risk_only:.3f} s")
    r_time = time_r(df)
    if r_time is None:
        print(
            f"R sdcMicro not available here; reference figure {SDCMICRO_REFERENCE_S} s "
            "(shared/REFERENCE.md) for the same work"
        )
        reference = SDCMICRO_REFERENCE_S
    else:
        print(f"R sdcMicro freqCalc + measure_risk: {r_time:.3f} s (measured here)")
        reference = r_time
    print(f"ratio dhsurvey / sdcMicro: {both / reference:.3f} ({reference / both:.1f}x faster)")
    print(f"target {TARGET_S} s: {'met' if both < TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
