"""Benchmark: raking and a calibration-aware SE on 1,000,000 rows, against R's survey.

1,000,000 rows, 20 strata, 2,000 PSUs (100 per stratum), 3 margins (sex 2, age group 4,
region 5 levels). The data are a deterministic formula of the row number (no random seed to
share), so when ``Rscript`` is on PATH the same table is written to a temporary CSV and R times
``survey::rake`` and ``svymean`` on the raked design. Prints both times and the ratios.
Targets: raking ≥ 50× faster than R, SE ≥ 10× faster. Not part of the test suite.

    .venv/bin/python bench/weights.py [--rows 1000000] [--no-r]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dhsurvey.weight import Design, rake

N_STRATA = 20
N_PSU = 2000


def _hash01(i: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 of (row, salt) mapped to [0, 1): pseudo-random yet a pure formula."""
    with np.errstate(over="ignore"):
        x = i.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def make_data(rows: int) -> tuple[pd.DataFrame, dict[str, dict[int, float]]]:
    """Deterministic survey-like data: every column is a formula of the row number."""
    i = np.arange(rows, dtype=np.int64)
    psu = i * N_PSU // rows  # contiguous PSUs of equal size
    stratum = psu * N_STRATA // N_PSU
    sex = 1 + (_hash01(i, 1) < 0.48).astype(np.int64)
    age = 1 + np.minimum((_hash01(i, 2) * 4).astype(np.int64), 3)
    region = 1 + np.minimum((_hash01(psu, 3) * 5).astype(np.int64), 4)
    w = 50.0 + 60.0 * _hash01(psu, 4) + 20.0 * _hash01(i, 5)
    y = (2.0 + 0.6 * _hash01(psu, 6) + 0.5 * (sex == 2) + 0.2 * age + 0.3 * region
         + _hash01(i, 7))
    df = pd.DataFrame({"stratum": stratum, "psu": psu, "sex": sex, "age": age,
                       "region": region, "w": w, "y": y})
    total = round(w.sum() * 1.1)
    margins = {
        "sex": {1: round(total * 0.49), 2: total - round(total * 0.49)},
        "age": {1: round(total * 0.3), 2: round(total * 0.3), 3: round(total * 0.2),
                4: total - 2 * round(total * 0.3) - round(total * 0.2)},
        "region": {k: round(total * s) for k, s in zip(range(1, 5), (0.3, 0.25, 0.2, 0.15),
                                                       strict=True)},
    }
    margins["region"][5] = total - sum(margins["region"].values())
    return df, margins


R_SCRIPT = r"""
suppressMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
df <- read.csv(args[1])
m <- jsonlite::fromJSON(args[2])
pop <- lapply(names(m), function(v) {
  d <- data.frame(as.integer(names(m[[v]])), as.numeric(unlist(m[[v]])))
  names(d) <- c(v, "Freq"); d
})
des <- svydesign(id = ~psu, strata = ~stratum, weights = ~w, data = df)
t0 <- Sys.time()
r <- rake(des, list(~sex, ~age, ~region), pop, control = list(maxit = 100, epsilon = 1e-10))
t1 <- Sys.time()
s <- svymean(~y, r)
t2 <- Sys.time()
cat(sprintf("%.6f %.6f %.10f %.10f\n", as.numeric(t1 - t0, units = "secs"),
            as.numeric(t2 - t1, units = "secs"), coef(s), SE(s)))
"""


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-r", action="store_true", help="skip the R comparison")
    args = parser.parse_args()
    df, margins = make_data(args.rows)
    print(f"{args.rows:,} rows, {N_STRATA} strata, {N_PSU} PSUs, {len(margins)} margins")

    t_rake, raked = best_of(lambda: rake(df, "w", margins, tol=1e-10))
    df["rw"] = raked

    def se() -> object:
        design = Design(df, "rw", strata="stratum", psu="psu", calibrated_on=margins)
        return design.mean("y")

    t_se, est = best_of(se)
    print(f"dhsurvey rake           {t_rake:8.3f} s")
    print(f"dhsurvey design + SE    {t_se:8.3f} s   mean {est.estimate:.10f} se {est.se:.10f}")

    if args.no_r or shutil.which("Rscript") is None:
        print("Rscript not found: no R comparison" if not args.no_r else "R comparison skipped")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        csv, js, script = Path(tmp, "bench.csv"), Path(tmp, "m.json"), Path(tmp, "bench.R")
        df[["stratum", "psu", "sex", "age", "region", "w", "y"]].to_csv(csv, index=False,
                                                                        float_format="%.17g")
        js.write_text(json.dumps({k: {str(a): b for a, b in v.items()}
                                  for k, v in margins.items()}))
        script.write_text(R_SCRIPT)
        t0 = time.perf_counter()
        done = subprocess.run(["Rscript", str(script), str(csv), str(js)], capture_output=True,
                              text=True, check=False)
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        print("R failed:", done.stderr[-2000:])
        return 1
    r_rake, r_se, r_mean, r_sd = (float(x) for x in done.stdout.split()[-4:])
    print(f"R survey rake           {r_rake:8.3f} s   (R run incl. CSV read: {wall:.1f} s)")
    print(f"R survey svymean        {r_se:8.3f} s   mean {r_mean:.10f} se {r_sd:.10f}")
    print(f"speed-up rake {r_rake / t_rake:6.1f}x (target >= 50x), "
          f"SE {r_se / t_se:6.1f}x (target >= 10x)")
    print(f"agreement: mean {abs(est.estimate - r_mean):.2e}, se rel "
          f"{abs(est.se - r_sd) / r_sd:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
