"""The published replicate multipliers and set-ups reproduce the library's JKn variance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from simulated import weighted_country

from dhsurvey.anonymise.release import scan_release
from dhsurvey.errors import DhsurveyError
from dhsurvey.release.design import replicate_table, variance_text, write_design
from dhsurvey.weight import Design, Replicates
from dhsurvey.weight.study import study_weights


@pytest.mark.parametrize("max_replicates", [200, 40])  # one per PSU; grouped PSUs
def test_published_multipliers_give_the_jkn_standard_error(tmp_path, max_replicates: int
                                                           ) -> None:
    config, sim, accepted, _ = weighted_country("TZA", 12, 1500)
    config = replace(config, max_replicates=max_replicates)
    w = study_weights(sim.sample.households, accepted["household"], accepted["child"],
                      accepted["caregiver"], config)
    infos = w.summary["replicates_by_form"]
    info = infos["child"]
    files = write_design(tmp_path, infos)
    assert [f.name for f in files] == ["replicates.csv", "svydesign.R", "svyset.do"]
    # Read exactly (pandas' default parser may be off by one ulp, e.g. 61/62).
    published = pd.read_csv(tmp_path / "replicates.csv", float_precision="round_trip")
    assert set(published["file"]) == {"household", "child", "caregiver"}
    for form in ("household", "caregiver"):  # every weighted file its own multipliers
        own = published[published["file"] == form]
        assert own["rscale"].tolist() == infos[form]["rscales"]
        assert own["replicate"].tolist() == [c for c in getattr(w, form).columns
                                             if c.startswith("rep_")]
    published = published[published["file"] == "child"]
    reps = [c for c in w.child.columns if c.startswith("rep_")]
    assert published["replicate"].tolist() == reps

    child = accepted["child"].drop(columns=["cluster"]).merge(w.child, on="KEY")
    child["talk"] = (child["ocsea_talk"].astype(str) == "1").astype(float)
    from_release = Design(child, "weight", replicates=Replicates(
        reps, scale=info["scale"], rscales=published["rscale"].tolist())).mean("talk")
    # The same design built from the (unpublished) strata and variance units, re-raked to
    # the margins of the selected child (the weights table's margin variables).
    resp = child.assign(stratum=child["stratum"].astype(str))
    direct = Design.jkn(resp, "weight", strata="stratum", psu="variance_unit",
                        calibrated_on=config.margins, lonely_psu="adjust").mean("talk")
    assert from_release.estimate == pytest.approx(direct.estimate, rel=1e-9)
    assert from_release.se == pytest.approx(direct.se, rel=1e-9)
    assert from_release.se > 0

    do = (tmp_path / "svyset.do").read_text()
    assert f"jkrweight(rep_001-rep_{len(reps):03d}, multiplier(" in do
    child_do = do.split("use child.dta, clear")[1]
    lines = child_do.split("multiplier(")[1].split("))")[0].splitlines()[1:]
    multipliers = [line.split("///") for line in lines if "///" in line]
    assert [name.strip() for _, name in multipliers] == reps
    np.testing.assert_allclose([float(m) for m, _ in multipliers], published["rscale"])
    assert not scan_release(files, [])  # nothing in them looks like an identifier
    r = (tmp_path / "svydesign.R").read_text()
    assert 'type = "JKn"' in r and 'multipliers$rscale[multipliers$file == name]' in r
    assert f"child rep_001–rep_{len(reps):03d}" in variance_text(infos)


def test_a_summary_without_replicates_is_refused() -> None:
    with pytest.raises(DhsurveyError, match="no JKn replicates"):
        replicate_table({"method": "none requested"})
    with pytest.raises(DhsurveyError, match="multipliers"):
        replicate_table({"method": "JKn", "count": 3, "rscales": [0.5, 0.5]})
