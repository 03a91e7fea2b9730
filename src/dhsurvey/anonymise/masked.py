"""Masked variance units and coarsened weights for the public tier.

Why: a PSU code, a replicate weight column (a jackknife replicate drops one PSU, so its zero
names the cluster) and an exact weight (a child's weight is its household's weight times its
own adjustments, often held by that child alone) each let an intruder place a record in a
cluster, join it to another file, or join two releases of the same data record by record.
The public tier therefore releases, as NHANES does, *masked variance units*: pseudo-strata
(the region: its urban and rural strata collapsed, so that a small country's thin strata do
not single out their few children and urban/rural is a key like any other) with fresh codes,
and within each a pseudo-PSU that groups its PSUs at random into two halves. Variance by
Taylor linearisation on (stratum, pseudo-PSU) is the random-group estimator: valid and
slightly conservative (strata collapsed), with fewer degrees of freedom. Weights are rounded
so that no value is held by fewer than k records of a stratum, and scaled back to each
stratum's total (:func:`coarsen_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dhsurvey.anonymise.scenario import Rules
from dhsurvey.anonymise.working import WorkingForm

#: Pseudo-PSUs per stratum (two, as NHANES's masked variance units).
PSEUDO_PSUS = 2


def collapse_strata(forms: Mapping[str, WorkingForm], rng: np.random.Generator
                    ) -> dict[str, pd.DataFrame]:
    """Pseudo-strata: every weighted form's ``stratum`` replaced by a fresh code of its
    region (the urban and rural strata of a region collapsed), in place. Collapsing strata
    keeps the variance estimator valid (slightly conservative) and frees ``urban_rural`` to
    be recoded or suppressed like any key. Returns the restricted mapping."""
    weighted = [f for f in forms.values() if f.weighted and {"stratum", "region"}
                <= set(f.table.columns)]
    if not weighted:
        return {}
    pairs = pd.concat([f.table[["stratum", "region"]] for f in weighted]).dropna()
    regions = sorted({int(r) for r in pairs["region"]})
    codes = dict(zip(regions, (int(c) + 1 for c in rng.permutation(len(regions))),
                     strict=True))
    for f in weighted:
        f.table["stratum"] = pd.array([codes.get(int(r)) if pd.notna(r) else None
                                       for r in f.table["region"]], dtype="Int64")
    mapping = pairs.drop_duplicates().assign(
        pseudo_stratum=lambda d: [codes[int(r)] for r in d["region"]])
    return {"pseudo_strata": mapping.reset_index(drop=True)}


def pseudo_psus(psu: pd.Series, stratum: pd.Series, rng: np.random.Generator
                ) -> dict[tuple[int, int], int]:
    """(stratum code, psu code) -> pseudo-PSU: each stratum's PSUs in random halves (a
    stratum with one PSU keeps it whole), numbered 1, 2 in the first stratum, 3, 4 in the
    next: unique across strata, so no design set-up needs ``nest``."""
    pairs = pd.DataFrame({"s": stratum, "p": psu}).dropna().drop_duplicates()
    out: dict[tuple[int, int], int] = {}
    for n, (s, group) in enumerate(pairs.sort_values(["s", "p"]).groupby("s", sort=True)):
        codes = group["p"].to_numpy(dtype=np.int64)
        order = rng.permutation(len(codes))
        for i, j in enumerate(order):
            out[(int(str(s)), int(codes[j]))] = PSEUDO_PSUS * n + 1 + (i % PSEUDO_PSUS)
    return out


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Each value rounded to ``digits`` significant digits (1234.5 -> 1200 at two)."""
    out = values.astype(float).copy()
    positive = out > 0
    scale = 10.0 ** (np.floor(np.log10(out[positive])) - digits + 1)
    out[positive] = np.round(out[positive] / scale) * scale
    return out


def coarsen_weights(weight: pd.Series, stratum: pd.Series, digits: int = 2, k: int = 3
                    ) -> pd.Series:
    """Weights no record holds alone, nearly unbiased.

    Each weight is rounded to ``digits`` significant digits; within a stratum, a rounded
    value held by fewer than ``k`` records takes the nearest value (on the log scale) that
    at least ``k`` hold (the stratum's mean weight when none does); the stratum's weights are
    then scaled back to its exact total. A value is thus held by at least ``k`` records of
    its stratum, and the error is a rounding one, unrelated to any answer (averaging weights
    within cells instead moved a 25 % prevalence by two points in a simulated country).
    """
    w = weight.astype(float).to_numpy()
    rounded = _significant(w, digits)
    groups = stratum.astype(str).to_numpy()
    out = np.empty_like(w)
    for g in np.unique(groups):
        at = groups == g
        values = rounded[at]
        levels, counts = np.unique(values, return_counts=True)
        common = levels[counts >= k]
        if len(common) and at.sum() >= k:
            rare = ~np.isin(values, common)
            nearest = np.abs(np.log(values[rare, None]) - np.log(common[None, :])).argmin(axis=1)
            values[rare] = common[nearest]
        else:
            values[:] = w[at].mean()
        out[at] = values * (w[at].sum() / values.sum())
    return pd.Series(out, index=weight.index)


def mask_design(forms: Mapping[str, WorkingForm], rules: Rules, rng: np.random.Generator
                ) -> dict[str, pd.DataFrame]:
    """Replace every weighted form's ``psu`` by its pseudo-PSU and its weights by coarsened
    ones (:func:`coarsen_weights`), in place; replicate columns are not in a masked tier.
    Returns the restricted mapping (stratum, psu, pseudo_psu)."""
    weighted = [f for f in forms.values() if f.weighted and "psu" in f.table.columns]
    if not weighted:
        return {}
    psu = pd.concat([f.table["psu"] for f in weighted], ignore_index=True)
    stratum = pd.concat([f.table["stratum"] for f in weighted], ignore_index=True)
    mapping = pseudo_psus(psu, stratum, rng)  # psu codes are unique across strata
    for f in weighted:
        t = f.table
        t["psu"] = pd.array([mapping.get((int(s), int(p))) if pd.notna(s) and pd.notna(p)
                             else None for s, p in zip(t["stratum"], t["psu"], strict=True)],
                            dtype="Int64")
        t["weight"] = coarsen_weights(t["weight"], t["stratum"], rules.weight_digits,
                                      rules.k).to_numpy()
        if "weight_norm" in t.columns:
            t["weight_norm"] = (t["weight"] / t["weight"].mean()).to_numpy()
    return {"pseudo_psu": pd.DataFrame([{"stratum": s, "psu": p, "pseudo_psu": q}
                                        for (s, p), q in sorted(mapping.items())])}


__all__ = ["PSEUDO_PSUS", "coarsen_weights", "collapse_strata", "mask_design", "pseudo_psus"]
