"""The weights read the study facts from the forms given, or from the study's instruments."""

from __future__ import annotations

import pandas as pd

from dhsurvey.forms.facts import study_facts
from dhsurvey.weight.study import input_columns, study_weights


def test_weights_from_the_models_equal_the_instruments_default() -> None:
    from simulated import weighted_country

    config, sim, accepted, default = weighted_country("UGA", 7, 500, False)
    facts = study_facts()
    tables = [accepted[f][input_columns(facts)[f]] for f in ("household", "child", "caregiver")]
    given = study_weights(sim.sample.households, *tables, config, replicates=False,
                          models=facts.models)
    for name in ("household", "child", "caregiver"):
        pd.testing.assert_frame_equal(getattr(given, name), getattr(default, name))
    assert given.summary["households"] == default.summary["households"]
