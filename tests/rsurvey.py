"""R's re-estimation of a release folder's indicators (tests/r/reproduce_indicators.R), and
the comparison with the published ones: shared by the test and tests/r/regenerate.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).parent / "r" / "reproduce_indicators.R"
EXPECTED = Path(__file__).parent / "r" / "expected"
#: The folders whose indicators R re-estimates: a country's two tiers and a pooled release.
FOLDERS = ("release/KEN", "licensed/KEN", "release/pooled")


def run_r(folder: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """R's re-estimates of ``folder``'s indicators, and its svyset.do set-ups' estimates."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["Rscript", str(SCRIPT), str(folder), str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return (pd.read_csv(out / "r_indicators.csv", dtype={"level": str}),
            pd.read_csv(out / "r_svyset.csv"))


def compare(published: pd.DataFrame, r: pd.DataFrame) -> pd.DataFrame:
    """Every weighted published row against R's: estimate and SE to 1e-8, n and df exactly,
    the interval to 1e-8 by the delta method and to 1e-6 by svyciprop's own logit fit."""
    weighted = published[published["weighted"]].astype({"level": str})
    both = weighted.merge(r, on=["indicator", "domain", "level"], suffixes=("", "_r"),
                          how="left", validate="one_to_one")
    assert both["estimate_r"].notna().all(), "R has no estimate for some published rows"
    assert len(both) == len(weighted) > 0
    for col in ("estimate", "se"):
        np.testing.assert_allclose(both[f"{col}_r"], both[col], rtol=1e-8, atol=1e-13,
                                   err_msg=col)
    assert (both["n_r"] == both["n"]).all()
    assert (both["df_r"] == both["df"]).all()
    defined = both["ci_low"].notna()
    for col, xlogit in (("ci_low", "xlogit_low"), ("ci_high", "xlogit_high")):
        # The logit interval by the delta method on svymean: exact arithmetic, 1e-8.
        np.testing.assert_allclose(both.loc[defined, xlogit], both.loc[defined, col],
                                   rtol=1e-8, err_msg=col)
        # svyciprop's own logit interval comes from svyglm's iterations, which stop at a
        # relative change of 1e-8 in the deviance: the same interval to about 1e-7. With one
        # degree of freedom its confint() loses the level to rounding (1 - 2e-37 is 1) and
        # gives (0, NaN); the t interval above is the one it means.
        glm = defined & (both["df"] > 1)
        np.testing.assert_allclose(both.loc[glm, f"{col}_r"], both.loc[glm, col],
                                   rtol=1e-6, err_msg=col)
    # Where the logit interval is undefined, R's estimate is 0 or 1 or the domain's records
    # lie in a single PSU (no degrees of freedom), and its delta-method interval is NaN too.
    undefined = both[~defined]
    assert (undefined["estimate_r"].isin([0.0, 1.0]) | (undefined["df_r"] <= 0)).all()
    assert undefined["xlogit_low"].isna().all()
    return both
