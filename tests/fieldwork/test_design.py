"""Sample selection: PPS systematic within strata, households within PSUs, probabilities kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.design import (
    inclusion_probabilities,
    pps_systematic,
    select_sample,
    synthetic_frame,
)

KEN = Path(__file__).parents[2] / "instruments" / "countries" / "KEN.yaml"


def test_inclusion_probabilities_sum_to_n_with_certainty_units() -> None:
    sizes = np.array([1000, 10, 20, 30, 40, 50, 60])
    pi = inclusion_probabilities(sizes, 3)
    assert pi[0] == 1.0
    assert np.isclose(pi.sum(), 3)
    assert np.allclose(pi[1:], 2 * sizes[1:] / sizes[1:].sum())


def test_pps_systematic_selects_n_distinct_with_the_right_frequencies() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.integers(20, 300, 30)
    counts = np.zeros(30)
    reps = 4000
    for _ in range(reps):
        idx, pi = pps_systematic(sizes, 5, rng)
        assert len(idx) == len(set(idx)) == 5
        counts[idx] += 1
    # Empirical inclusion frequencies match π (binomial SE ≤ 0.008 at 4000 reps).
    assert np.abs(counts / reps - pi).max() < 0.03


def test_sample_records_probabilities_and_weights() -> None:
    config = load_country(KEN)
    rng = np.random.default_rng(7)
    frame = synthetic_frame(config, rng)
    sample = select_sample(config, frame, rng)
    assert len(sample.psus) == config.psus
    assert sample.psus["cluster"].is_unique
    per_stratum = sample.psus.groupby("stratum").size()
    assert per_stratum.to_dict() == {s.code: s.psus for s in config.strata}
    hh = sample.households
    assert (hh.groupby("cluster").size() <= config.households_per_psu).all()
    assert np.allclose(hh["base_weight"], 1 / (hh["psu_prob"] * hh["hh_prob"]))
    assert hh["hh_prob"].between(0, 1).all() and hh["psu_prob"].between(0, 1).all()
    # The design weights estimate the frame's households (listing ≈ frame size ±15 %).
    estimate = hh["base_weight"].sum()
    assert abs(estimate / frame["mos"].sum() - 1) < 0.1


def test_sample_is_reproducible() -> None:
    config = load_country(KEN)
    a = select_sample(config, synthetic_frame(config, np.random.default_rng(3)),
                      np.random.default_rng(4))
    b = select_sample(config, synthetic_frame(config, np.random.default_rng(3)),
                      np.random.default_rng(4))
    assert a.households.equals(b.households)
