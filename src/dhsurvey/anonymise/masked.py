"""Masked variance units and smoothed weights for the public tier.

Why: a PSU code, a replicate weight column (a jackknife replicate drops one PSU, so its zero
names the cluster) and an exact weight (a child's weight is its household's weight times its
own adjustments, often unique) each let an intruder place a record in a cluster or join it
to another file. The public tier therefore releases, as NHANES does, *masked variance units*:
pseudo-strata (the region: its urban and rural strata collapsed) with fresh codes, and within
each a pseudo-PSU that groups its PSUs at random into two halves. Variance by Taylor
linearisation on (stratum, pseudo-PSU) is the random-group estimator: unbiased, with fewer
degrees of freedom. Each weight is replaced by the mean weight of the records of its stratum
that share the released values of the rules' ``weight_cells`` (suppressed values form their
own cell), so a weight tells nothing the file does not show, no weight is held by fewer than
k records, and the totals of the groups averaged over are kept.
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
    """(stratum code, psu code) -> pseudo-PSU 1..2: each stratum's PSUs in random halves
    (a stratum with one PSU keeps it as pseudo-PSU 1)."""
    pairs = pd.DataFrame({"s": stratum, "p": psu}).dropna().drop_duplicates()
    out: dict[tuple[int, int], int] = {}
    for s, group in pairs.sort_values(["s", "p"]).groupby("s", sort=True):
        codes = group["p"].to_numpy(dtype=np.int64)
        order = rng.permutation(len(codes))
        for i, j in enumerate(order):
            out[(int(str(s)), int(codes[j]))] = 1 + (i % PSEUDO_PSUS)
    return out


def smooth_weights(table: pd.DataFrame, cells: list[str], k: int = 3) -> pd.Series:
    """Each record's weight replaced by the mean weight of its group, so that no released
    weight is held by fewer than ``k`` records (a weight held by one record would join two
    releases of the same data record by record) and each group's total is kept.

    Groups: stratum x the released values of ``cells`` when that cell holds ``k`` records or
    more; the stratum's other records (smaller cells, or a cell variable suppressed) pooled;
    what is still fewer than ``k`` pooled over all strata (and, if that pool is still too
    small, with the largest group).
    """
    keys = [c for c in cells if c in table.columns]
    weight = pd.Series(table["weight"].astype(float).to_numpy(), index=table.index)
    stratum = table["stratum"].astype(str)
    complete = table[keys].notna().all(axis=1) if keys else \
        pd.Series(True, index=table.index)
    cell = stratum
    for c in keys:
        cell = cell + "\x00" + table[c].astype(str)
    cell = cell.where(complete & (cell.map(cell.value_counts()) >= k), stratum + "\x00rest")
    cell = cell.where(cell.map(cell.value_counts()) >= k, "\x00all")
    counts = cell.value_counts()
    if 0 < counts.get("\x00all", 0) < k and len(counts) > 1:  # joins the largest group
        cell = cell.replace("\x00all", counts.drop("\x00all").idxmax())
    return weight.groupby(cell).transform("mean")


def mask_design(forms: Mapping[str, WorkingForm], rules: Rules, rng: np.random.Generator
                ) -> dict[str, pd.DataFrame]:
    """Replace every weighted form's ``psu`` by its pseudo-PSU and its weights by smoothed
    ones, in place; replicate columns are not in a masked tier. Returns the restricted
    mapping (stratum, psu, pseudo_psu)."""
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
        t["weight"] = smooth_weights(t, list(rules.weight_cells.get(f.name, ())),
                                     rules.k).to_numpy()
        if "weight_norm" in t.columns:
            t["weight_norm"] = (t["weight"] / t["weight"].mean()).to_numpy()
    return {"pseudo_psu": pd.DataFrame([{"stratum": s, "psu": p, "pseudo_psu": q}
                                        for (s, p), q in sorted(mapping.items())])}


__all__ = ["PSEUDO_PSUS", "collapse_strata", "mask_design", "pseudo_psus", "smooth_weights"]
