"""Two-stage sample design: PPS systematic PSUs within strata, then households within PSUs.

Every selection probability is recorded here, because design weights are nothing but their
inverse: weighting reads ``psu_prob`` and ``hh_prob`` from these tables rather than recomputing
them. The frame is synthetic (enumeration areas with a measure of size in households), built
deterministically from the country configuration and a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig


def synthetic_frame(config: CountryConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Enumeration areas per stratum with a measure of size (households), lognormal."""
    parts = []
    for s in config.strata:
        sigma = 0.5
        mu = np.log(s.mean_households) - sigma**2 / 2
        mos = np.maximum(20, np.round(rng.lognormal(mu, sigma, s.eas))).astype(int)
        parts.append(pd.DataFrame({
            "stratum": s.code,
            "region": s.region,
            "urban_rural": s.urban_rural,
            "ea_id": [f"{config.iso}-{s.code}-{i:04d}" for i in range(1, s.eas + 1)],
            "mos": mos,
        }))
    return pd.concat(parts, ignore_index=True)


def inclusion_probabilities(sizes: np.ndarray, n: int) -> np.ndarray:
    """π_i = n·M_i/ΣM, with units whose π would reach 1 taken with certainty (iteratively)."""
    sizes = np.asarray(sizes, dtype=float)
    if n > len(sizes):
        raise DhsurveyError(f"cannot select {n} units from {len(sizes)}", code="design")
    pi = np.zeros(len(sizes))
    certain = np.zeros(len(sizes), dtype=bool)
    while True:
        remaining = n - certain.sum()
        rest = ~certain
        pi[rest] = remaining * sizes[rest] / sizes[rest].sum()
        pi[certain] = 1.0
        newly = rest & (pi >= 1.0)
        if not newly.any():
            return pi
        certain |= newly


def pps_systematic(sizes: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Indices selected by systematic PPS (in frame order) and every unit's probability.

    Certainty units are taken first; the rest by a random start and a fixed interval on the
    cumulated probabilities, which selects exactly ``n`` distinct units.
    """
    pi = inclusion_probabilities(sizes, n)
    certain = np.flatnonzero(pi >= 1.0)
    rest = np.flatnonzero(pi < 1.0)
    k = n - len(certain)
    chosen = list(certain)
    if k > 0:
        cum = np.cumsum(pi[rest])
        start = rng.uniform(0.0, 1.0)
        points = start + np.arange(k)
        chosen += list(rest[np.searchsorted(cum, points, side="right")])
    return np.sort(np.array(chosen, dtype=int)), pi


@dataclass
class Sample:
    """The selected PSUs and households of one country, with their probabilities."""

    psus: pd.DataFrame
    households: pd.DataFrame


def select_sample(config: CountryConfig, frame: pd.DataFrame, rng: np.random.Generator,
                  households_per_psu: int | None = None) -> Sample:
    """Select PSUs by PPS within strata, then households by equal-probability systematic
    sampling from each PSU's listing; numbers clusters 1..n in stratum order."""
    m = households_per_psu or config.households_per_psu
    psu_parts = []
    # Each stratum's rows found in one pass (a frame holds a country's EAs: 10^5 rows).
    rows = frame.groupby("stratum", sort=False).indices
    for s in config.strata:
        units = frame.iloc[rows.get(s.code, np.empty(0, dtype=np.intp))].reset_index(drop=True)
        idx, pi = pps_systematic(units["mos"].to_numpy(), s.psus, rng)
        chosen = units.iloc[idx].copy()
        chosen["psu_prob"] = pi[idx]
        psu_parts.append(chosen)
    psus = pd.concat(psu_parts, ignore_index=True)
    psus.insert(0, "cluster", np.arange(1, len(psus) + 1))
    # Listing: the count found when the PSU is listed, close to but not equal to the frame's.
    psus["listed"] = np.maximum(m // 2, np.round(psus["mos"] * rng.uniform(0.85, 1.15,
                                                                           len(psus)))).astype(int)
    teams = _assign_teams(config, psus)
    psus["team"] = teams

    hh_parts = []
    for cluster, listed in zip(psus["cluster"].tolist(), psus["listed"].tolist(), strict=True):
        take = min(m, listed)
        interval = listed / take
        start = rng.uniform(0, interval)
        lines = np.floor(start + interval * np.arange(take)).astype(int) + 1
        hh_parts.append(pd.DataFrame({
            "cluster": cluster,
            "hh_number": np.arange(1, take + 1),
            "listing_line": lines,
            "hh_prob": take / listed,
        }))
    households = pd.concat(hh_parts, ignore_index=True)
    households = households.merge(
        psus[["cluster", "stratum", "region", "urban_rural", "ea_id", "psu_prob", "team"]],
        on="cluster")
    households["base_weight"] = 1.0 / (households["psu_prob"] * households["hh_prob"])
    return Sample(psus=psus, households=households)


def _assign_teams(config: CountryConfig, psus: pd.DataFrame) -> list[int]:
    """Each PSU to the team covering its region (round robin where none is named)."""
    by_region = {r: t.id for t in config.teams for r in t.regions}
    ids = [t.id for t in config.teams]
    return [by_region.get(region, ids[i % len(ids)])
            for i, region in enumerate(psus["region"])]
