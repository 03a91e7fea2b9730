"""The published replicate multipliers and set-ups reproduce the library's JKn variance."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from simulated import weighted_country

from dhsurvey.anonymise.release import scan_release
from dhsurvey.errors import DhsurveyError
from dhsurvey.release.design import replicate_table, variance_text, write_design
from dhsurvey.weight import Design, Replicates
from dhsurvey.weight.study import age_group, study_weights


@pytest.mark.parametrize("max_replicates", [200, 40])  # one per PSU; grouped PSUs
def test_published_multipliers_give_the_jkn_standard_error(tmp_path, max_replicates: int
                                                           ) -> None:
    config, sim, accepted, _ = weighted_country("TZA", 12, 1500)
    config = replace(config, max_replicates=max_replicates)
    w = study_weights(sim.sample.households, accepted["household"], accepted["child"],
                      accepted["caregiver"], config)
    info = w.summary["replicates"]
    files = write_design(tmp_path, info)
    assert [f.name for f in files] == ["replicates.csv", "svydesign.R", "svyset.do"]
    published = pd.read_csv(tmp_path / "replicates.csv")
    reps = [c for c in w.child.columns if c.startswith("rep_")]
    assert published["replicate"].tolist() == reps

    child = accepted["child"].drop(columns=["cluster"]).merge(w.child, on="KEY")
    child["talk"] = (child["ocsea_talk"].astype(str) == "1").astype(float)
    from_release = Design(child, "weight", replicates=Replicates(
        reps, scale=info["scale"], rscales=published["rscale"].tolist())).mean("talk")
    # The same design built from the (unpublished) strata and variance units, re-raked to
    # the margins of the selected child (sex and age from the roster, urban/rural of the PSU).
    frame = sim.sample.households[["cluster", "hh_number", "urban_rural"]]
    resp = child.astype({"cluster": int, "hh_number": int}).merge(frame, on=["cluster",
                                                                               "hh_number"])
    resp = resp.assign(stratum=resp["stratum"].astype(str), sex=resp["child_sex"],
                       age_group=age_group(resp["child_age"]))
    direct = Design.jkn(resp, "weight", strata="stratum", psu="variance_unit",
                        calibrated_on=config.margins, lonely_psu="adjust").mean("talk")
    assert from_release.estimate == pytest.approx(direct.estimate, rel=1e-9)
    assert from_release.se == pytest.approx(direct.se, rel=1e-9)
    assert from_release.se > 0

    do = (tmp_path / "svyset.do").read_text()
    assert f"jkrweight(rep_001-rep_{len(reps):03d}, multiplier(" in do
    lines = do.split("multiplier(")[1].split("))")[0].splitlines()[1:]
    multipliers = [line.split("///") for line in lines if "///" in line]
    assert [name.strip() for _, name in multipliers] == reps
    np.testing.assert_allclose([float(m) for m, _ in multipliers], published["rscale"])
    assert not scan_release(files, [])  # nothing in them looks like an identifier
    r = (tmp_path / "svydesign.R").read_text()
    assert 'type = "JKn"' in r and "rscales = rscales" in r
    assert f"{len(reps):03d}" in variance_text(info)


def test_a_summary_without_replicates_is_refused() -> None:
    with pytest.raises(DhsurveyError, match="no JKn replicates"):
        replicate_table({"method": "none requested"})
    with pytest.raises(DhsurveyError, match="multipliers"):
        replicate_table({"method": "JKn", "count": 3, "rscales": [0.5, 0.5]})


def test_r_survey_reads_the_release_with_the_shipped_set_up(tmp_path) -> None:
    """R ``survey`` (Debian r-cran-survey, installed by .ci/run) runs svydesign.R on a written
    release and gets this library's estimate and standard errors."""
    import shutil
    import subprocess

    from dhsurvey.anonymise.release import anonymise_country
    from dhsurvey.fieldwork.simulate import FORMS
    from dhsurvey.forms.model import load_form
    from dhsurvey.release.writers import write_release

    rscript = shutil.which("Rscript")
    assert rscript, "Rscript is missing: .ci/run installs r-cran-survey"
    config, _, accepted, w = weighted_country("TZA", 12, 1500)
    models = {f: load_form(Path(__file__).parents[2] / "instruments" / f"{f}.xlsx")
              for f in FORMS}
    release = anonymise_country(accepted, {"household": w.household, "child": w.child,
                                           "caregiver": w.caregiver}, models, config,
                                key=bytes(range(32)), rng=np.random.default_rng(3))
    child = release.tables["child"]
    write_release({"child": child}, models, tmp_path, formats=("csv",))
    write_design(tmp_path, w.summary["replicates"])
    (tmp_path / "check.R").write_text(
        'source("svydesign.R")\n'
        'taylor <- update(taylor, talk = as.numeric(ocsea_talk == 1))\n'
        'jkn <- update(jkn, talk = as.numeric(ocsea_talk == 1))\n'
        'a <- svymean(~talk, subset(taylor, ocsea_talk %in% c(0, 1)))\n'
        'b <- svymean(~talk, subset(jkn, ocsea_talk %in% c(0, 1)))\n'
        'cat(sprintf("%.15g", c(coef(a), SE(a), coef(b), SE(b))), sep = "\\n")\n')
    out = subprocess.run([rscript, "check.R"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    est, taylor_se, jkn_est, jkn_se = (float(v) for v in out.stdout.split())

    data = child[child["ocsea_talk"].isin([0, 1])].assign(
        talk=lambda d: (d["ocsea_talk"] == 1).astype(float))
    ours = Design(data, "weight", strata="stratum", psu="psu").mean("talk")
    reps = [c for c in child.columns if c.startswith("rep_")]
    ours_jkn = Design(data, "weight", replicates=Replicates(
        reps, 1.0, w.summary["replicates"]["rscales"])).mean("talk")
    assert est == pytest.approx(ours.estimate, rel=1e-9) == jkn_est
    assert taylor_se == pytest.approx(ours.se, rel=1e-7)
    assert jkn_se == pytest.approx(ours_jkn.se, rel=1e-7)
