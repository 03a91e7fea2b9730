"""Simulated fieldwork shared by several test modules (cached: simulating costs seconds)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

INSTRUMENTS = Path(__file__).parents[1] / "instruments"


@cache
def weighted_country(iso: str, seed: int, households: int, replicates: bool = True):
    """Simulated, validated and weighted fieldwork of one country (cached per arguments):
    (config, simulation, accepted tables, StudyWeights)."""
    from dhsurvey.fieldwork.config import load_country
    from dhsurvey.fieldwork.simulate import FORMS, simulate_country
    from dhsurvey.forms.model import load_form
    from dhsurvey.validate.run import validate_forms
    from dhsurvey.weight.study import study_weights

    models = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
    config = load_country(INSTRUMENTS / "countries" / f"{iso}.yaml")
    sim = simulate_country(config, models, seed=seed, households=households)
    result = validate_forms(sim.forms, models, config=config)
    accepted = {f: r.accepted for f, r in result.forms.items()}
    weights = study_weights(sim.sample.households, accepted["household"], accepted["child"],
                            accepted["caregiver"], config, replicates=replicates)
    return config, sim, accepted, weights
