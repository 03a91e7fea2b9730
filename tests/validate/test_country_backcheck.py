"""Back-checks as part of a country's data: simulated, landed, recognised, left out of
fieldwork, compared with the raw interviews, written to the clean zone.

A small simulated KEN (200 households, Central exports) carries a back-check export in
``landing/KEN/backcheck/`` in which two enumerators' households were planted to differ far more
often; the comparison must find them at the top of the type-1 error rates, with the teams of the
country file, and ingest must read the fieldwork exactly as without the back-checks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.ingest.landing import classify, scan
from dhsurvey.ingest.read import read_export
from dhsurvey.store import Store
from dhsurvey.study import Study, ingest
from dhsurvey.validate.backcheck import BackcheckError, country_backcheck

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
ISO = "KEN"
EXPORT = "backcheck/household.csv.zip"


@pytest.fixture(scope="module")
def study() -> Study:
    return Study.load(INSTRUMENTS)


@pytest.fixture(scope="module")
def country(tmp_path_factory: pytest.TempPathFactory, study: Study) -> Path:
    """The data root of a simulated, ingested KEN (landing and raw zones)."""
    root = tmp_path_factory.mktemp("data")
    store = Store(root)
    simulate_to(store.landing(), [study.config(ISO)], study.models, seed=3, households=200,
                formats=("central",))
    ingest(store, study, ISO)
    return root


@pytest.fixture
def store(country: Path, tmp_path: Path) -> Store:
    """A copy of the country to change (the module's stays as simulated)."""
    shutil.copytree(country, tmp_path / "data")
    return Store(tmp_path / "data")


def test_the_simulated_country_has_a_backcheck_export(country: Path, study: Study) -> None:
    store = Store(country)
    landing = store.landing(ISO)
    assert store.backcheck_exports(ISO) == [landing / EXPORT]
    planted = store.faults(ISO)["backcheck"]
    assert planted["export"] == EXPORT and planted["form"] == "household"
    assert len(planted["worse_enumerators"]) == 2
    bc = read_export(landing / EXPORT, study.models)
    assert bc.form_id == "household" and len(bc.root) == planted["households"]
    assert bc.root["KEY"].str.startswith("uuid:").all() and len(bc.quarantine) == 0
    # Only what a back-check form holds: ids, re-asked answers, the server's metadata.
    plan = study.backcheck_plan
    answered = {c for c in bc.root.columns if bc.root[c].notna().any()}
    assert answered <= {*plan.id_columns, *plan.variables, "KEY", "form_id", "form_version",
                        "submission_time", "submitter", "source_format", "source_file"}
    # About a tenth of the completed households, every enumerator at least twice.
    household = read_export(landing / "central" / "household.csv.zip", study.models).root
    assert 0.08 * len(household) <= len(bc.root) <= 0.25 * len(household)
    # Recognised by the landing check, and never taken as fieldwork.
    contents = classify(scan(landing).files, study.models)
    assert contents.recognised["backcheck"] == [EXPORT] and contents.unrecognised == []
    assert all("backcheck" not in p.parts for form in study.models
               for p in store.exports(ISO, form))


def test_ingest_reads_the_fieldwork_as_without_the_backchecks(store: Store,
                                                              study: Study) -> None:
    def household_rows() -> tuple[int, int]:
        raw = ingest(store, study, ISO)["household"]
        return len(raw.raw.root), len(raw.raw.quarantine)

    with_checks = household_rows()
    central = read_export(store.landing(ISO) / "central" / "household.csv.zip", study.models)
    assert with_checks == (len(central.root), len(central.quarantine))
    shutil.rmtree(store.landing(ISO) / "backcheck")
    assert household_rows() == with_checks


def test_the_worse_enumerators_have_the_highest_type1_error_rates(store: Store,
                                                                  study: Study) -> None:
    config = study.config(ISO)
    plan = study.backcheck_plan
    tables = country_backcheck(store, plan, study.models, ISO, config)
    assert tables is not None
    worse = set(store.faults(ISO)["backcheck"]["worse_enumerators"])
    by_enum = tables["by_enumerator"]
    assert list(by_enum.columns[:4]) == ["enum_id", "team", "submissions", "backchecked"]
    assert {"error_rate", "type1_error_rate", "type1_compared"} <= set(by_enum.columns)
    # Most type-1 errors first: the planted two, ahead of everyone else.
    assert set(by_enum["enum_id"].head(2).astype(str)) == worse
    mine = by_enum["enum_id"].astype(str).isin(worse)
    assert by_enum.loc[mine, "type1_error_rate"].min() > \
        by_enum.loc[~mine, "type1_error_rate"].max()
    pooled = by_enum.groupby(mine)[["type1_errors", "type1_compared"]].sum()
    rates = pooled["type1_errors"] / pooled["type1_compared"]
    assert rates[True] > 0.3 and rates[False] < 0.1
    # Every enumerator of the country file, in their team; each back-checked.
    teams = {e: t.id for t in config.teams for e in t.enumerators}
    assert dict(zip(by_enum["enum_id"], by_enum["team"], strict=True)) == teams
    assert (by_enum["backchecked"] >= 2).all()
    assert (by_enum["type1_compared"] == 3 * by_enum["backchecked"]).all()
    by_team = tables["by_team"].set_index("team")
    assert sorted(by_team.index) == [t.id for t in config.teams]
    assert by_team["submissions"].sum() == by_enum["submissions"].sum()
    assert by_team["type1_errors"].sum() == by_enum["type1_errors"].sum()

    checked = store.faults(ISO)["backcheck"]["households"]
    assert by_enum["backchecked"].sum() == checked and len(tables["unmatched"]) == 0
    assert len(tables["comparison"]) == checked * len(plan.variables)
    assert tables["by_backchecker"]["backchecked"].sum() == checked
    by_type = tables["by_type"].set_index("type")
    assert by_type.loc["all", "compared"] == len(tables["comparison"])
    # Written to the clean zone, one Parquet file per table.
    assert sorted(p.stem for p in store.backchecks(ISO).glob("*.parquet")) == sorted(tables)
    pd.testing.assert_frame_equal(store.backcheck_table(ISO, "by_enumerator"), by_enum,
                                  check_dtype=False)


def test_no_backcheck_export_no_tables(store: Store, study: Study) -> None:
    plan = study.backcheck_plan
    assert country_backcheck(store, plan, study.models, ISO, study.config(ISO)) is not None
    shutil.rmtree(store.landing(ISO) / "backcheck")
    assert country_backcheck(store, plan, study.models, ISO) is None
    assert not list(store.backchecks(ISO).glob("*.parquet"))  # an earlier run's are gone
    assert country_backcheck(store, plan, study.models, "UGA") is None


def test_bad_backcheck_input_is_named(store: Store, study: Study) -> None:
    from dhsurvey.fieldwork.exports import write_central_zip

    plan, models = study.backcheck_plan, study.models
    landing = store.landing(ISO)
    # An export of another form in backcheck/.
    other = landing / "backcheck" / "child.csv.zip"
    shutil.copy(landing / "central" / "child.csv.zip", other)
    with pytest.raises(BackcheckError) as info:
        country_backcheck(store, plan, models, ISO)
    assert info.value.code == "backcheck-form" and info.value.context["file"] == other
    assert str(info.value) == (f"{other}, form 'child': holds submissions of form 'child', "
                               "not back-checks: the back-check plan checks 'household'")
    other.unlink()
    # A household back-checked twice (a second back-check under a new instanceID).
    bc = read_export(landing / EXPORT, models)
    again = bc.root.head(1).assign(KEY="uuid:00000000-0000-4000-8000-000000000001")
    second = landing / "backcheck" / "household-again.csv.zip"
    write_central_zip(type(bc)("household", again), models["household"], second)
    with pytest.raises(BackcheckError) as info:
        country_backcheck(store, plan, models, ISO)
    assert info.value.code == "backcheck-duplicate-ids"
    assert info.value.context["file"] == f"{second}, {landing / EXPORT}"  # both copies
    assert "back-checked more than once" in str(info.value)
    second.unlink()
    # No raw table of the form: ingest has not run.
    shutil.rmtree(store.root / "raw")
    with pytest.raises(BackcheckError) as info:
        country_backcheck(store, plan, models, ISO)
    assert info.value.code == "backcheck-no-original"
    assert str(info.value.context["file"]).endswith("raw/KEN/household.parquet")


def test_a_plan_naming_fields_the_form_lacks(store: Store, study: Study) -> None:
    from dataclasses import replace

    plan = replace(study.backcheck_plan, variables={"hh_size": 1, "hh_cows": 2})
    with pytest.raises(BackcheckError, match=r"\['hh_cows'\]") as info:
        country_backcheck(store, plan, study.models, ISO)
    assert info.value.code == "backcheck-fields"


def test_the_landing_layout_of_backchecks(tmp_path: Path) -> None:
    files = ["backcheck/household.csv.zip", "backcheck/household.json",
             "backcheck/household-2.json", "backcheck/tablet-3/instances/a/a.xml",
             "backcheck/tablet-3/instances/b/b.xml", "backcheck/household.zip",
             "backcheck/notes.txt", "backcheck/.DS_Store"]
    got = classify(files, ["household", "child"])
    assert got.recognised["backcheck"] == ["backcheck/household-2.json",
                                           "backcheck/household.csv.zip",
                                           "backcheck/household.json", "backcheck/tablet-3"]
    hints = {u.path: u.hint for u in got.unrecognised}
    assert set(hints) == {"backcheck/household.zip", "backcheck/notes.txt"}
    assert ".csv.zip extension" in hints["backcheck/household.zip"]
    assert "wrong extension" in hints["backcheck/notes.txt"]
    store = Store(tmp_path)
    landing = store.landing(ISO)
    for rel in files:
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_text("x")
    (landing / "backcheck" / ".hidden").mkdir()
    assert [p.relative_to(landing).as_posix() for p in store.backcheck_exports(ISO)] == [
        "backcheck/household-2.json", "backcheck/household.csv.zip",
        "backcheck/household.json", "backcheck/tablet-3"]
    assert store.exports(ISO, "household") == []


def test_backchecks_are_simulated_deterministically(tmp_path: Path, study: Study) -> None:
    config = study.config("UGA")
    runs = [simulate_to(tmp_path / str(i), [config], study.models, seed=9, households=60,
                        formats=("central",))[0] for i in (1, 2)]
    assert runs[0].backchecks == runs[1].backchecks > 0
    one, two = ((o.folder / EXPORT).read_bytes() for o in runs)
    assert one == two
    manifests = [json.loads((o.folder / "faults.json").read_text()) for o in runs]
    assert manifests[0]["backcheck"] == manifests[1]["backcheck"]


def test_the_study_reads_its_plan(study: Study, tmp_path: Path) -> None:
    plan = study.backcheck_plan
    assert plan.form == "household" and plan.id_columns == ["cluster", "hh_number"]
    assert plan.enumerator == "enum_id" and plan.variables["hh_size"] == 1
    assert Study(tmp_path, {}, {}).backcheck_plan is None
