"""What a user needs beside the replicate weights: their multipliers and ready-made set-ups.

Replicate weights alone do not give a variance: JKn multiplies each replicate's squared
deviation by (n_h − 1)/n_h of its stratum, which a user cannot recover from a release whose
stratum and cluster codes are scrambled. So the release carries ``replicates.csv`` (one row per
replicate column: its multiplier) and the two set-ups reviewers use, ``svydesign.R`` (R
``survey``) and ``svyset.do`` (Stata), with the numbers filled in. Taylor linearisation needs
only ``stratum``, ``psu`` and ``weight``, which are in every weighted table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.io import atomic_write_text, neutralise_formulas
from dhsurvey.weight.study import replicate_names


def replicate_table(info: Mapping[str, Any]) -> pd.DataFrame:
    """``replicate`` (column name) and ``rscale`` per replicate, from the weights summary."""
    rscales = info.get("rscales")
    if not rscales or info.get("method") != "JKn":
        raise DhsurveyError("the weights summary lists no JKn replicates",
                            code="release-design", field="replicates")
    if int(info.get("count", len(rscales))) != len(rscales):
        raise DhsurveyError(f"{info['count']} replicates but {len(rscales)} multipliers",
                            code="release-design", field="replicates")
    return pd.DataFrame({"replicate": replicate_names(len(rscales)),
                         "rscale": [float(r) for r in rscales]})


def _r_script(table: pd.DataFrame, scale: float, note: str) -> str:
    return f"""# Survey design of the weighted tables (child, caregiver), for R's survey package.
# Replicates: {note}.
library(survey)
child <- read.csv("child.csv")  # or haven::read_dta("child.dta") / arrow::read_parquet(...)
rscales <- read.csv("replicates.csv")$rscale

# Taylor linearisation: strata and PSUs.
taylor <- svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = child,
                    nest = TRUE)

# Replicate weights ({len(table)} columns rep_001 ... rep_{len(table):03d}).
jkn <- svrepdesign(data = child, repweights = "^rep_[0-9]+$", weights = ~weight,
                   type = "JKn", scale = {scale!r}, rscales = rscales,
                   combined.weights = TRUE, mse = FALSE)
"""


def _stata_do(table: pd.DataFrame, note: str) -> str:
    # One multiplier per line, named: readable, and no run of decimals that looks like a
    # coordinate pair to the release scan.
    multipliers = "".join(f"\n        {float(r)!r} /// {name}"
                          for name, r in zip(table["replicate"], table["rscale"], strict=True))
    first, last = table["replicate"].iloc[0], table["replicate"].iloc[-1]
    return f"""* Survey design of the weighted tables (child, caregiver), for Stata's svy commands.
* Replicates: {note}.
* Taylor linearisation:
*   svyset psu [pweight=weight], strata(stratum) singleunit(centered)
* Replicate weights, one multiplier per replicate (replicates.csv):
svyset [pweight=weight], vce(jackknife) ///
    jkrweight({first}-{last}, multiplier( ///{multipliers}
    ))
"""


def variance_text(info: Mapping[str, Any]) -> str:
    """The codebook's line on variance estimation."""
    count = len(replicate_table(info))
    return ("Taylor linearisation: strata `stratum`, PSUs `psu`, weight `weight`. "
            f"Replicate weights rep_001–rep_{count:03d}: {info.get('note', 'JKn')}; "
            "variance = scale × Σ rscale_r (θ_r − mean θ)², the multipliers in replicates.csv; "
            "set-ups for R (svydesign.R) and Stata (svyset.do) beside this codebook.")


MASKED_R = """# Survey design of the public-use files, for R's survey package.
# Masked variance units: `stratum` (fresh codes) and `psu`, a pseudo-PSU that groups the
# stratum's PSUs at random into two halves; weights rounded so no value is held by fewer
# than k records (disclosure_risk.md). Taylor linearisation on them is the random-group estimator.
library(survey)
child <- haven::read_dta("child.dta")  # or arrow::read_parquet("child.parquet")
design <- svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = child,
                    nest = TRUE)
"""

MASKED_DO = """* Survey design of the public-use files, for Stata's svy commands.
* Masked variance units: stratum and psu (a pseudo-PSU: each stratum's PSUs in two random
* halves); weights rounded so no value is held by fewer than k records (disclosure_risk.md).
svyset psu [pweight=weight], strata(stratum) singleunit(centered)
"""


def masked_text() -> str:
    """The codebook's line on variance estimation in a tier of masked variance units."""
    return ("Taylor linearisation on masked variance units: strata `stratum`, pseudo-PSUs "
            "`psu` (each stratum's PSUs in two random halves), weight `weight` (rounded to "
            "two significant digits, no value held by fewer than k records); no replicate "
            "weights in this tier; set-ups for R (svydesign.R) and Stata (svyset.do) beside "
            "this codebook.")


def write_masked(folder: str | Path) -> list[Path]:
    """Write ``svydesign.R`` and ``svyset.do`` for masked variance units."""
    folder = Path(folder)
    return [atomic_write_text(folder / "svydesign.R", MASKED_R),
            atomic_write_text(folder / "svyset.do", MASKED_DO)]


def write_design(folder: str | Path, info: Mapping[str, Any]) -> list[Path]:
    """Write ``replicates.csv``, ``svydesign.R`` and ``svyset.do`` into the release folder."""
    folder = Path(folder)
    table = replicate_table(info)
    note = str(info.get("note", "JKn"))
    scale = float(info.get("scale", 1.0))
    return [
        atomic_write_text(folder / "replicates.csv",
                          neutralise_formulas(table).to_csv(index=False)),
        atomic_write_text(folder / "svydesign.R", _r_script(table, scale, note)),
        atomic_write_text(folder / "svyset.do", _stata_do(table, note)),
    ]


__all__ = ["masked_text", "replicate_table", "variance_text", "write_design", "write_masked"]
