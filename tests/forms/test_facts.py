"""Study facts come from the instruments: household ID, consent gates, dispositions, interview IDs.

Against the study's own workbooks (the values every stage used to keep by hand), and against a
small synthetic study whose household ID, gate names and disposition codes differ, to show that
what a workbook declares flows through validation, quality checks and AAPOR rates.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from workbooks import EN, SETTINGS, SW, YES_NO, c, q, valid_survey, write_workbook

from dhsurvey.errors import FormError
from dhsurvey.forms.facts import StudyFacts, gates_asked, gates_passed, gates_refused, study_facts
from dhsurvey.forms.lint import lint_form
from dhsurvey.forms.model import AAPOR_CATEGORIES, load_form
from dhsurvey.ingest.canonical import META, RawForm
from dhsurvey.validate import aapor
from dhsurvey.validate.quality import progress_psu
from dhsurvey.validate.run import id_fields, validate_forms
from dhsurvey.weight.study import input_columns

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
FORMS = ("household", "child", "caregiver", "frontline_worker")


@pytest.fixture(scope="module")
def models():
    return {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


# -- the study's instruments -------------------------------------------------------------------


def test_interview_ids_come_from_instance_name(models) -> None:
    assert models["household"].instance_fields == ("country", "cluster", "hh_number")
    assert models["child"].instance_fields == ("country", "cluster", "hh_number", "child_line")
    assert models["caregiver"].instance_fields == ("country", "cluster", "hh_number", "cg_line")
    assert models["frontline_worker"].instance_fields == ("country", "worker_no")
    assert id_fields(models["child"]) == list(models["child"].instance_fields)


def test_household_id_is_declared_by_the_forms_of_a_household(models) -> None:
    for form in ("household", "child", "caregiver"):
        assert models[form].household_id == ("cluster", "hh_number")
        assert set(models[form].household_id) <= set(models[form].instance_fields)
    assert models["frontline_worker"].household_id == ()
    facts = StudyFacts(models)
    assert facts.household_id == ("cluster", "hh_number")
    assert facts.household_form == "household"
    assert facts.linked_forms == ("child", "caregiver")


def test_consent_gates_and_the_answer_that_goes_on(models) -> None:
    assert models["household"].consent_gates == ("consent",)
    assert models["child"].consent_gates == ("caregiver_permission", "assent")
    assert models["child"].consent_given == {"caregiver_permission": "1", "assent": "1"}
    assert models["caregiver"].consent_given == {"consent": "1"}
    assert models["frontline_worker"].consent_given == {"consent": "1"}
    assert StudyFacts(models).all_gates == {"consent": "1", "caregiver_permission": "1",
                                            "assent": "1"}


def test_dispositions_and_their_aapor_categories(models) -> None:
    hh = models["household"]
    assert hh.disposition_field == "disposition"
    assert {code: d.aapor for code, d in hh.dispositions.items()} == {
        "1": "I", "2": "P", "3": "R", "4": "NC", "5": "I", "6": "NE", "7": "O"}
    assert hh.dispositions["6"].label == "Vacant or not a dwelling"
    assert all(d.aapor in AAPOR_CATEGORIES for d in hh.dispositions.values())
    facts = StudyFacts(models)
    assert facts.disposition == "disposition"
    assert facts.codes("I") == ("1", "5") and facts.codes("NE") == ("6",)
    assert facts.codes("I", "P") == ("1", "2", "5")
    assert facts.aapor_mapping == {code: d.aapor for code, d in hh.dispositions.items()}
    assert models["frontline_worker"].disposition_field is None
    # The child and caregiver forms record their own interview's result, and say they belong
    # to the household form's households (settings linked_to): they stay linked forms.
    assert facts.household_form == "household"
    assert facts.linked_forms == ("child", "caregiver")
    assert facts.result_field("child") == "ch_result"
    assert facts.result_field("caregiver") == "cg_result"
    assert facts.result_field("household") is None
    assert {c: d.aapor for c, d in models["child"].dispositions.items()} == {
        "1": "I", "2": "P", "3": "R", "4": "R", "5": "NC", "6": "O", "7": "NE", "96": "O"}
    table = pd.DataFrame({"caregiver_permission": ["1", "1", "1", "0", "1"],
                          "assent": ["1", "1", "1", None, "1"],
                          "ch_result": ["1", "2", "7", "3", None]})
    assert facts.results(table, "child").tolist()[:4] == ["I", "P", "NE", "R"]
    # Interviews that took place: consent given and a complete or partial result; a child
    # found not aged 12-17 after assent is not one.
    assert facts.completed(table, "child").tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="AAPOR"):
        facts.codes("complete")


def test_weights_read_what_the_forms_declare(models) -> None:
    assert input_columns(models) == {
        "household": ["cluster", "hh_number", "KEY", "disposition", "n_eligible", "sel_sex",
                      "sel_age"],
        "child": ["cluster", "hh_number", "KEY", "caregiver_permission", "assent", "ch_result"],
        "caregiver": ["cluster", "hh_number", "KEY", "consent", "cg_result"],
    }
    from dhsurvey.weight.study import INPUT_COLUMNS

    assert INPUT_COLUMNS == input_columns(models)


def test_without_models_the_study_instruments_are_read(models) -> None:
    facts = study_facts()
    assert facts is study_facts()  # read once
    assert facts.household_id == StudyFacts(models).household_id
    assert study_facts(facts) is facts


def test_accessors_are_cached(models) -> None:
    hh = models["household"]
    assert hh.consent_given is hh.consent_given and hh.dispositions is hh.dispositions
    assert hh.household_id is hh.household_id and hh.instance_fields is hh.instance_fields


# -- gates in a table --------------------------------------------------------------------------


def test_gates_passed_and_refused_compare_codes_as_numbers() -> None:
    gates = {"permission": "1", "assent": "1"}
    table = pd.DataFrame({"permission": ["1", "1", "0", None, "1"],
                          "assent": [1.0, 0.0, None, None, float("nan")]})
    assert gates_passed(table, gates).tolist() == [True, False, False, False, False]
    assert gates_refused(table, gates).tolist() == [False, True, True, False, False]
    assert gates_asked(table, gates).tolist() == [True, True, True, False, True]
    # A table holding none of the gates: every row passed, none asked.
    assert gates_passed(table[[]], gates).all() and not gates_asked(table[[]], gates).any()


# -- a synthetic study: other names, other codes -----------------------------------------------


def _settings(form_id: str, instance: str, **extra: str) -> dict[str, str]:
    return {**SETTINGS, "form_id": form_id, "instance_name": instance, **extra}


def _screen(path: Path, final: list[dict[str, str]] | None = None, **extra: str) -> Path:
    survey = [
        q("start", "start"), q("end", "end"),
        q("integer", "ea", "Area", "Eneo", pii="quasi"),
        q("integer", "dwelling", "Dwelling", "Nyumba", pii="quasi"),
        q("select_one yes_no", "agreed", "Do you agree?", "Unakubali?"),
        q("begin_group", "main", "Main", "Kuu", relevant="${agreed} = 1"),
        q("integer", "members", "Members", "Wanakaya", pii="quasi"),
        q("end_group", "main"),
        q("select_one final", "outcome", "Outcome", "Matokeo"),
    ]
    final = final or [{**c("final", "10", "Done"), "aapor": "I"},
                      {**c("final", "20", "No dwelling here"), "aapor": "NE"},
                      {**c("final", "30", "Never found"), "aapor": "UH"},
                      {**c("final", "40", "Said no"), "aapor": "R"}]
    settings = _settings("screen", "concat('S-', ${ea}, '-', ${dwelling})",
                         household_id="ea dwelling", consent_gates="agreed")
    return write_workbook(path, survey, [*YES_NO, *final], {**settings, **extra})


def _member(path: Path) -> Path:
    survey = [
        q("start", "start"), q("end", "end"),
        q("integer", "ea", "Area", "Eneo", pii="quasi"),
        q("integer", "dwelling", "Dwelling", "Nyumba", pii="quasi"),
        q("integer", "child_line", "Line", "Mstari"),
        q("select_one yes_no", "ok_parent", "Parent agrees?", "Mzazi anakubali?"),
        q("begin_group", "asked", "Asked", "Ameulizwa", relevant="${ok_parent} = 1"),
        q("select_one yes_no", "ok_kid", "Child agrees?", "Mtoto anakubali?"),
        q("end_group", "asked"),
        q("begin_group", "talk", "Talk", "Ongea", relevant="${ok_parent} = 1 and ${ok_kid} = 1"),
        q("integer", "hours", "Hours online", "Saa mtandaoni", pii="none"),
        q("end_group", "talk"),
    ]
    settings = _settings("member", "concat('M-', ${ea}, '-', ${dwelling}, '-', ${child_line})",
                         household_id="ea, dwelling", consent_gates="ok_parent ok_kid")
    return write_workbook(path, survey, settings=settings)


@pytest.fixture()
def study(tmp_path: Path) -> dict:
    return {m.form_id: m for m in (load_form(_screen(tmp_path / "screen.xlsx")),
                                   load_form(_member(tmp_path / "member.xlsx")))}


def test_synthetic_study_declares_its_own_facts(study) -> None:
    facts = StudyFacts(study)
    assert facts.household_id == ("ea", "dwelling")
    assert facts.household_form == "screen" and facts.linked_forms == ("member",)
    assert facts.disposition == "outcome"
    assert facts.aapor_mapping == {"10": "I", "20": "NE", "30": "UH", "40": "R"}
    assert facts.gates("member") == {"ok_parent": "1", "ok_kid": "1"}
    assert facts.gates("screen") == {"agreed": "1"}
    assert facts.instance_fields("member") == ("ea", "dwelling", "child_line")


def test_declared_gate_is_linted_whatever_its_name(tmp_path: Path) -> None:
    survey = [*valid_survey()[:2],
              q("select_one yes_no", "agreed", "Do you agree?", "Unakubali?"),
              q("begin_group", "main", "Main", "Kuu", relevant="${agreed} = 1"),
              q("integer", "age", "Age", "Umri", pii="quasi"),
              q("end_group", "main"),
              q("integer", "rooms", "Rooms", "Vyumba", pii="quasi")]
    declared = write_workbook(tmp_path / "declared.xlsx", survey,
                              settings={**SETTINGS, "consent_gates": "agreed"})
    hits = [f for f in lint_form(declared, compile=False) if f.rule == "consent-ungated"]
    assert [(f.row, "agreed" in f.message) for f in hits] == [(8, True)]
    # Undeclared, "agreed" is no gate (the naming convention finds none): nothing to report.
    plain = write_workbook(tmp_path / "plain.xlsx", survey)
    assert not [f for f in lint_form(plain, compile=False) if f.rule == "consent-ungated"]


@pytest.mark.parametrize("extra,final,code,where", [
    ({"household_id": "ea parcel"}, None, "household-id-invalid", "settings"),
    ({"household_id": "ea members"}, None, "household-id-invalid", "settings"),  # not an ID
    ({"consent_gates": "members"}, None, "consent-gate-invalid", "settings"),
    ({}, [{**c("final", "10", "Done"), "aapor": "DONE"}], "disposition-invalid", "choices"),
    ({}, [{**c("final", "10", "Done"), "aapor": "I"}, c("final", "20", "Gone")],
     "disposition-invalid", "choices"),  # a code without a category
])
def test_bad_declarations_name_the_cell(tmp_path: Path, extra: dict, final: list | None,
                                        code: str, where: str) -> None:
    path = _screen(tmp_path / "screen.xlsx", final, **extra)
    with pytest.raises(FormError) as info:
        load_form(path)
    assert info.value.code == code and info.value.context["sheet"] == where
    findings = lint_form(path, compile=False)
    assert [f.rule for f in findings if f.severity == "error"] == ["form"]


def test_forms_that_disagree_on_the_household_id_fail(tmp_path: Path, study) -> None:
    other = load_form(_screen(tmp_path / "other.xlsx", form_id="other", household_id="ea"))
    with pytest.raises(FormError, match="identify households differently"):
        StudyFacts([*study.values(), other])


def test_synthetic_dispositions_flow_into_aapor_rates_and_progress(study) -> None:
    households = pd.DataFrame({"ea": [1, 1, 1, 2, 2], "dwelling": [1, 2, 3, 1, 2],
                               "outcome": [10, 20, 30, 10, 40]})
    row = aapor.rates(households["outcome"], models=study).iloc[0]
    assert (row["I"], row["NE"], row["UH"], row["R"], row["unmapped"]) == (2, 1, 1, 1, 0)
    # The PSU column is the sample's ``cluster``; one record per household (ea, dwelling).
    psu = progress_psu(households.assign(cluster=households["ea"]), models=study)
    assert psu["done"].tolist() == [3, 2] and psu["interviewed"].tolist() == [1, 1]
    assert psu["refusals"].tolist() == [0, 1]


def _raw(model, rows: list[dict]) -> RawForm:
    fields = [f.name for f in model.fields_in(None)]
    root = pd.DataFrame([{**{m: None for m in META}, "form_id": model.form_id,
                          "form_version": model.version, **{f: None for f in fields},
                          "start": "2026-02-02T09:00:00.000+03:00",
                          "end": "2026-02-02T09:40:00.000+03:00", **r} for r in rows],
                        columns=[*META, *fields]).astype(object)
    root["submission_time"] = [f"2026-02-02T10:00:0{i}.000Z" for i in range(len(root))]
    return RawForm(model.form_id, root.where(root.notna(), None))


def test_synthetic_household_id_and_gates_flow_through_validation(study) -> None:
    screen = _raw(study["screen"], [
        {"KEY": "uuid:h1", "ea": "1", "dwelling": "1", "agreed": "1", "members": "4",
         "outcome": "10"},
        {"KEY": "uuid:h2", "ea": "1", "dwelling": "2", "agreed": "0", "members": "3",
         "outcome": "40"},  # answered after refusing: beyond consent
    ])
    member = _raw(study["member"], [
        {"KEY": "uuid:m1", "ea": "1", "dwelling": "9", "child_line": "2", "ok_parent": "1",
         "ok_kid": "1", "hours": "3"},  # no household (1, 9): an orphan
        {"KEY": "uuid:m2", "ea": "1", "dwelling": "9", "child_line": "2", "ok_parent": "1",
         "ok_kid": "1", "hours": "3"},  # the same interview again: a duplicate
    ])
    result = validate_forms({"screen": screen, "member": member}, study)
    issues = result.issues().set_index("instanceID")
    assert issues.loc["uuid:h2", "rule"] == "beyond-consent"
    orphan = issues.loc[["uuid:m1"]]
    assert orphan["rule"].tolist() == ["orphan"] and orphan["column"].tolist() == ["dwelling"]
    assert result.forms["member"].duplicates["instanceID"].tolist() == ["uuid:m2"]
    assert result.notes == ["country not given: fieldwork window, frame and targets not checked"]

    assert study["screen"].languages == [EN, SW]
    assert study["screen"].dispositions["30"].label == "Never found"
