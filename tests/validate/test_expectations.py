"""GX suites come from the form model; accepted tables are checked and Data Docs written.

The simulated fieldwork answers every form by its own logic, so its typed root tables must pass
their generated suites; each planted fault must fail exactly the expectation that guards it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
import pytest

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import META, REPEAT_META
from dhsurvey.validate.expectations import (
    GEResult,
    literal_bounds,
    multi_select_regex,
    suite_for,
    validate_accepted,
)
from dhsurvey.validate.types import to_typed

INSTRUMENTS = Path(__file__).parents[2] / "instruments"


@pytest.fixture(scope="module")
def models() -> dict[str, FormModel]:
    return {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def typed(models: dict[str, FormModel]) -> dict[str, pd.DataFrame]:
    sim = simulate_country(load_country(INSTRUMENTS / "countries" / "KEN.yaml"), models, seed=1,
                           households=300)
    out = {}
    for f in FORMS:
        table, errors = to_typed(sim.forms[f].root, models[f])
        assert errors.empty
        out[f] = table
    return out


def _by(suite, type_: str, column: str | None = None) -> list:
    return [e for e in suite.expectations
            if e.expectation_type == type_ and getattr(e, "column", None) == column]


# -- suite generation ---------------------------------------------------------------------------


def test_suite_follows_the_form_model(models: dict[str, FormModel]) -> None:
    model = models["caregiver"]
    suite = suite_for(model)
    assert suite.name == "caregiver"
    assert suite.meta["form_version"] == model.version

    (columns,) = _by(suite, "expect_table_columns_to_match_set")
    assert set(columns.column_set) == set(META) | {f.name for f in model.fields_in(None)}
    assert columns.exact_match is True
    assert _by(suite, "expect_column_values_to_be_unique", "KEY")
    assert _by(suite, "expect_column_values_to_not_be_null", "KEY")

    (sex,) = _by(suite, "expect_column_values_to_be_in_set", "cg_sex")
    assert all(isinstance(c, int) for c in sex.value_set)  # typed tables hold Int64 codes
    assert {int(c) for c in model.choices_for(model["cg_sex"]).codes()} == set(sex.value_set)
    assert sex.meta == {"field": "cg_sex", "rule": "choices", "row": model["cg_sex"].row,
                        "list_name": "sex"}

    (age,) = _by(suite, "expect_column_values_to_be_between", "cg_age")
    assert (age.min_value, age.max_value) == (18, 110)
    assert age.meta["rule"] == "constraint" and age.meta["source"] == ". >= 18 and . <= 110"

    # required with no relevance → not null; required but behind a relevance → nothing
    assert _by(suite, "expect_column_values_to_not_be_null", "cg_avail")
    assert not _by(suite, "expect_column_values_to_not_be_null", "consent")
    assert not _by(suite, "expect_column_values_to_not_be_null", "cg_age")
    # free text and direct identifiers are never rendered in Data Docs
    for item in model.fields_in(None):
        if item.pii in ("free_text", "direct"):
            assert not [e for e in suite.expectations if getattr(e, "column", None) == item.name]
    # every expectation says where it came from
    assert all({"field", "rule"} <= set(e.meta) for e in suite.expectations)


def test_select_multiple_tokens_must_be_codes(models: dict[str, FormModel]) -> None:
    model = models["caregiver"]
    (devices,) = _by(suite_for(model), "expect_column_values_to_match_regex", "ch_devices")
    codes = model.choices_for(model["ch_devices"]).codes()
    pattern = re.compile(devices.regex)
    assert pattern.search(codes[0]) and pattern.search(f"{codes[0]} {codes[-1]}")
    for bad in ("77", f"{codes[0]} 77", f"{codes[0]}  {codes[1]}", f" {codes[0]}", ""):
        assert not pattern.search(bad), bad
    assert re.search(multi_select_regex(["a.b"]), "axb") is None  # codes are escaped


def test_repeat_suite(models: dict[str, FormModel]) -> None:
    model = models["household"]
    suite = suite_for(model, "roster")
    assert suite.name == "household.roster"
    (columns,) = _by(suite, "expect_table_columns_to_match_set")
    assert set(columns.column_set) == set(REPEAT_META) | {f.name for f in
                                                          model.fields_in("roster")}
    assert _by(suite, "expect_column_values_to_not_be_null", "PARENT_KEY")


@pytest.mark.parametrize(("constraint", "bounds"), [
    (". >= 0 and . <= 110", {"min_value": 0, "max_value": 110}),
    (". >= 1 and . <= ${n} and indexed-repeat(${age}, ${roster}, .) >= 18", {"min_value": 1}),
    (". > 0", {"min_value": 0, "strict_min": True}),
    ("120 >= . and . >= -5", {"min_value": -5, "max_value": 120}),
    (". >= 2 and . >= 3 and . <= 9 and . < 9", {"min_value": 3, "max_value": 9,
                                                "strict_max": True}),
    (". >= 0.5", {"min_value": 0.5}),
    (". < 3 or . > 10", {}),
    ("not(. > 5)", {}),
    (". <= today()", {}),
    ("", {}),
])
def test_literal_bounds(constraint: str, bounds: dict) -> None:
    assert literal_bounds(constraint) == bounds


# -- validation and Data Docs -------------------------------------------------------------------


def test_clean_tables_pass_and_docs_stay_in_docs_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict[str, FormModel],
    typed: dict[str, pd.DataFrame],
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    docs = tmp_path / "docs"
    result = validate_accepted(typed, models, docs, name="clean")

    assert isinstance(result, GEResult)
    assert result.success, {f: r.failed for f, r in result.forms.items()}
    assert set(result.forms) == set(FORMS)
    for form_id, outcome in result.forms.items():
        assert outcome.evaluated == len(suite_for(models[form_id]).expectations)
        assert outcome.successful == outcome.evaluated and outcome.failed == []

    assert result.index == docs.resolve() / "index.html" and result.index.is_file()
    index = result.index.read_text(encoding="utf-8")
    for form_id in FORMS:
        assert f"expectations/{form_id}.html" in index
        assert (docs / "expectations" / f"{form_id}.html").is_file()
        assert list((docs / "validations" / form_id).rglob("*.html"))
    # nothing outside docs_dir: no gx/ project in the working directory, nothing beside docs
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "docs"]
    # importing GX turned on logging.captureWarnings; it must be off again
    assert warnings.showwarning.__module__ != "logging"


def test_planted_faults_fail_the_expectation_that_guards_them(
    tmp_path: Path, models: dict[str, FormModel], typed: dict[str, pd.DataFrame],
) -> None:
    tables = {f: t.copy() for f, t in typed.items()}
    caregiver = tables["caregiver"]
    row = caregiver.index[caregiver["cg_sex"].notna()][0]
    caregiver.loc[row, "cg_sex"] = 7  # not a code of the 'sex' list
    household = tables["household"]
    household.loc[1, "KEY"] = household.loc[0, "KEY"]
    fw = tables["frontline_worker"]
    row = fw.index[fw["years_service"].notna()][0]
    fw.loc[row, "years_service"] = 51  # constraint: . >= 0 and . <= 50
    child = tables["child"]
    row = child.index[child["devices"].notna()][0]
    child.loc[row, "devices"] = child.loc[row, "devices"] + " 77"

    result = validate_accepted(tables, models, tmp_path / "docs", name="faults")

    assert not result.success
    failed = {f: r.failed for f, r in result.forms.items()}
    assert failed == {
        "caregiver": ["expect_column_values_to_be_in_set:cg_sex"],
        "household": ["expect_column_values_to_be_unique:KEY"],
        "frontline_worker": ["expect_column_values_to_be_between:years_service"],
        "child": ["expect_column_values_to_match_regex:devices"],
    }
    for outcome in result.forms.values():
        assert not outcome.success and outcome.successful == outcome.evaluated - 1
    page = next((tmp_path / "docs" / "validations" / "caregiver").rglob("*.html"))
    assert "cg_sex" in page.read_text(encoding="utf-8")


def test_columns_must_match_the_form(
    tmp_path: Path, models: dict[str, FormModel], typed: dict[str, pd.DataFrame],
) -> None:
    table = typed["caregiver"].drop(columns=["cg_age"]).assign(stray=1)
    result = validate_accepted({"caregiver": table}, models, tmp_path / "docs", name="cols")
    outcome = result.forms["caregiver"]
    assert not result.success
    assert "expect_table_columns_to_match_set" in outcome.failed
    # the bound on the missing column cannot hold either
    assert "expect_column_values_to_be_between:cg_age" in outcome.failed
    assert set(result.forms) == {"caregiver"}


def test_a_table_without_a_model_is_refused(tmp_path: Path,
                                            typed: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(KeyError, match="household"):
        validate_accepted({"household": typed["household"]}, {}, tmp_path / "docs", name="x")
    assert not (tmp_path / "docs").exists()
