"""Answers the skip logic hides never reach the accepted data: blanked and logged, or the
submission quarantined — one rule per case (dhsurvey.validate.skip, docs/validation.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workbooks import SETTINGS, YES_NO, q, write_workbook

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import inject_faults
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.frames import PARENT, FormData
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import META, RawForm, repeat_key
from dhsurvey.validate.logic import check_logic
from dhsurvey.validate.run import validate_form, validate_forms, write_validation
from dhsurvey.validate.skip import BLANKED, _readers, _recheck
from dhsurvey.validate.types import retyped, to_typed

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> FormModel:
    """A form with a gate (smart → apps, and why_not when not smart), an identifier behind
    skip logic (tag) and a roster whose questions have skip logic of their own."""
    survey = [
        q("start", "start"), q("end", "end"),
        q("integer", "hh", "Household", pii="quasi"),
        q("text", "tag", "Tag", relevant="${hh} > 100"),
        q("select_one yes_no", "consent", "Agree?"),
        q("begin_group", "main", "Main", relevant="${consent} = 1"),
        q("select_one yes_no", "owns_phone", "Owns a phone?"),
        q("select_one yes_no", "smart", "Smartphone?", relevant="${owns_phone} = 1"),
        q("select_one yes_no", "apps", "Uses apps?", relevant="${smart} = 1"),
        q("select_one yes_no", "why_not", "Wants one?", relevant="${smart} != 1"),
        q("integer", "n_kids", "Children?"),
        q("begin_repeat", "kids", "Kids", relevant="${n_kids} > 0", repeat_count="${n_kids}"),
        q("integer", "kid_age", "Age"),
        q("select_one yes_no", "kid_school", "In school?", relevant="${kid_age} >= 6"),
        q("end_repeat", "kids"),
        q("end_group", "main"),
    ]
    settings = {**SETTINGS, "version": "1", "consent_gates": "consent",
                "instance_name": "concat(${hh}, '-', ${tag})"}
    return load_form(write_workbook(tmp_path_factory.mktemp("form") / "t.xlsx", survey,
                                    YES_NO, settings))


def _raw(model: FormModel, rows: list[dict], kids: dict[int, list[dict]] | None = None
         ) -> RawForm:
    """Submissions ``rows`` (answers by field; KEY uuid:s<i>, household i + 1) and roster rows
    per submission."""
    root = []
    for i, answers in enumerate(rows):
        root.append({**dict.fromkeys(META), "KEY": f"uuid:s{i}", "form_id": model.form_id,
                     "form_version": model.version,
                     "submission_time": f"2026-03-01T10:{i:02d}:00.000Z",
                     "start": "2026-03-01T09:00:00.000+03:00",
                     "end": "2026-03-01T09:30:00.000+03:00",
                     **{f.name: None for f in model.fields_in(None) if f.name not in
                        ("start", "end")}, "hh": str(i + 1), **answers})
    roster = [{"KEY": repeat_key(f"uuid:s{i}", model, "kids", n), PARENT: f"uuid:s{i}",
               "kid_age": None, "kid_school": None, **kid}
              for i, kid_rows in (kids or {}).items() for n, kid in enumerate(kid_rows, 1)]
    table = pd.DataFrame(roster, columns=["KEY", PARENT, "kid_age", "kid_school"])
    return RawForm(model.form_id, pd.DataFrame(root), {"kids": table})


CLEAN = {"consent": "1", "owns_phone": "0", "why_not": "1", "n_kids": "0"}


def _log(result, key: str) -> dict[str, str | None]:
    log = result.corrections[result.corrections["instanceID"] == key]
    assert (log["rule"] == BLANKED).all() and (log["source"] == "automatic").all()
    assert log["new_value"].isna().all() and (log["status"] == "applied").all()
    return dict(zip(log["field"], log["old_value"], strict=True))


def _accepted(result, key: str) -> pd.Series:
    return result.accepted.set_index("KEY").loc[key]


def test_a_hidden_answer_is_blanked_logged_and_flagged(model: FormModel) -> None:
    result = validate_form(_raw(model, [{**CLEAN, "apps": "1"}, CLEAN]), model)
    assert _log(result, "uuid:s0") == {"apps": "1"}
    assert pd.isna(_accepted(result, "uuid:s0")["apps"])
    flags = result.flags[result.flags["instanceID"] == "uuid:s0"]
    assert flags[["rule", "column", "value"]].values.tolist() == [["not-relevant", "apps", "1"]]
    assert _log(result, "uuid:s1") == {}
    assert result.reconciliation["automatic_corrections"] == {BLANKED: 1}
    assert result.reconciliation["corrections"] == {}
    assert result.reconciliation["accepted"] == 2 and result.reconciliation["balanced"]
    # The high-frequency checks still see what came from the field.
    assert result.typed.set_index("KEY").loc["uuid:s0", "apps"] == 1


def test_a_hidden_gate_is_blanked_in_dependency_order(model: FormModel) -> None:
    """smart is hidden (no phone) and gates apps and why_not. Blanking smart hides apps, and
    asks why_not: why_not's answer, hidden only while smart held its value, is kept."""
    hidden_gate = {**CLEAN, "smart": "1", "apps": "1", "why_not": "0"}
    result = validate_form(_raw(model, [hidden_gate]), model)
    assert _log(result, "uuid:s0") == {"smart": "1", "apps": "1"}
    row = _accepted(result, "uuid:s0")
    assert pd.isna(row["smart"]) and pd.isna(row["apps"]) and row["why_not"] == 0
    assert set(result.flags["column"]) == {"smart", "apps"}


def test_blanking_that_asks_a_required_question_quarantines(model: FormModel) -> None:
    result = validate_form(_raw(model, [{**CLEAN, "smart": "1", "why_not": None}]), model)
    assert _log(result, "uuid:s0") == {"smart": "1"}
    rules = set(result.quarantine.loc[result.quarantine["instanceID"] == "uuid:s0", "rule"])
    assert rules == {"required"} and result.accepted.empty


def test_answers_after_refused_consent_are_kept_as_evidence_and_quarantined(
        model: FormModel) -> None:
    refused = {"consent": "0", "owns_phone": "1"}
    result = validate_form(_raw(model, [refused]), model)
    assert result.corrections.empty
    quarantine = result.quarantine[result.quarantine["column"] == "owns_phone"]
    assert quarantine[["rule", "value"]].values.tolist() == [["beyond-consent", "1"]]


def test_a_hidden_identifier_is_not_blanked_but_quarantined(model: FormModel) -> None:
    result = validate_form(_raw(model, [{**CLEAN, "tag": "B"}]), model)
    assert result.corrections.empty
    quarantine = result.quarantine
    assert quarantine[["rule", "column", "value"]].values.tolist() == [
        ["not-relevant-identifier", "tag", "B"]]


def test_roster_answers_are_blanked_by_their_row_and_hidden_rows_quarantine(
        model: FormModel) -> None:
    kids = {0: [{"kid_age": "3", "kid_school": "1"}, {"kid_age": "9", "kid_school": "1"}],
            1: [{"kid_age": "8", "kid_school": "0"}]}
    raw = _raw(model, [{**CLEAN, "n_kids": "2"}, CLEAN], kids)  # s1: no children, one row
    result = validate_form(raw, model)
    log = result.corrections
    young = repeat_key("uuid:s0", model, "kids", 1)
    assert log[["instanceID", "KEY", "field", "old_value"]].values.tolist() == [
        ["uuid:s0", young, "kid_school", "1"]]
    roster = result.accepted_repeats["kids"].set_index("KEY")
    assert pd.isna(roster.loc[young, "kid_school"])
    assert roster.loc[repeat_key("uuid:s0", model, "kids", 2), "kid_school"] == 1
    assert set(result.quarantine.loc[result.quarantine["instanceID"] == "uuid:s1", "rule"]) \
        == {"non-relevant-repeat"}
    assert list(result.accepted["KEY"]) == ["uuid:s0"] and result.reconciliation["balanced"]


def test_checking_again_what_blanking_affects_equals_checking_everything(
        model: FormModel) -> None:
    """After a blanking round only the fields reading a blanked one are checked again; with
    the other fields' violations kept, the table is the full check's, row for row."""
    kids = {0: [{"kid_age": "3", "kid_school": "1"}, {"kid_age": "9", "kid_school": "1"}],
            1: [{"kid_age": "12", "kid_school": None}]}
    raw = _raw(model, [{**CLEAN, "smart": "1", "apps": "1", "why_not": "0", "n_kids": "2",
                        "tag": "B"}, {**CLEAN, "apps": "1", "n_kids": "1", "tag": "C"}], kids)
    before = check_logic(raw.to_form_data(model))
    assert {"not-relevant", "required"} <= set(before["rule"])
    readers = _readers(model)
    for blanked in ({"smart"}, {"owns_phone"}, {"kid_age"}, {"apps", "n_kids"}, {"tag"}):
        root, repeats = raw.root.copy(), {n: t.copy() for n, t in raw.repeats.items()}
        for name in blanked:
            table = root if model[name].repeat is None else repeats[model[name].repeat]
            table[name] = None
        view = RawForm(model.form_id, root, repeats).to_form_data(model)
        pd.testing.assert_frame_equal(_recheck(view, before, blanked, readers),
                                      check_logic(view))


def test_retyping_the_blanked_columns_equals_typing_the_table(model: FormModel) -> None:
    raw = _raw(model, [{**CLEAN, "smart": "1", "apps": "1", "tag": "B"}, CLEAN])
    blanked = raw.root.assign(smart=None, apps=None)
    pd.testing.assert_frame_equal(retyped(to_typed(blanked, model)[0], raw.root, model,
                                          {"smart", "apps", "kid_age"}),
                                  to_typed(raw.root, model)[0])


def _hidden_values(source: pd.DataFrame, repeats: dict[str, pd.DataFrame], model: FormModel,
                   accepted: pd.DataFrame) -> list[str]:
    """Fields of ``model`` with a value in an accepted row where the form does not ask them
    (relevance evaluated on the accepted submissions' answers)."""
    keys = set(accepted["KEY"])
    root = source[source["KEY"].isin(keys)].set_index("KEY", drop=False)
    data = FormData(model, root, {n: t.set_index("KEY", drop=False) for n, t in repeats.items()})
    rows = accepted.set_index("KEY").loc[root.index]
    return [f.name for f in model.fields_in(None) if f.name in rows.columns and
            (rows[f.name].notna() & ~data.relevant(f).to_numpy()).any()]


def test_simulated_hidden_answers_never_reach_accepted_data(tmp_path: Path) -> None:
    config = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
    sim = simulate_country(config, MODELS, seed=5, households=400)
    planted = inject_faults(sim, MODELS, ["non_relevant"], np.random.default_rng(5),
                            per_kind=8)
    as_sent = sim.forms["child"].root.set_index("KEY")
    result = validate_forms(sim.forms, MODELS, config=config)
    child = result.forms["child"]
    assert len(planted) == 8
    log = child.corrections.set_index(["instanceID", "field"])
    for fault in planted:
        key, name = fault["instanceID"], fault["field"]
        assert log.loc[(key, name), "old_value"] == as_sent.loc[key, name]
        assert key in set(child.accepted["KEY"]), fault  # blanked, so nothing else is wrong
        assert pd.isna(child.accepted.set_index("KEY").loc[key, name])
    # Every blanked value is logged with the value as received.
    for (key, name), old in log["old_value"].items():
        assert as_sent.loc[key, name] == old
    # Nothing blanked where the simulator answered by the rules.
    assert set(log.index.get_level_values(0)) == {f["instanceID"] for f in planted}
    for form, r in result.forms.items():
        assert _hidden_values(r.source, sim.forms[form].repeats, MODELS[form],
                              r.accepted) == [], form
        assert r.reconciliation["balanced"]
    write_validation(result, tmp_path)
    written = pd.read_parquet(tmp_path / "child" / "corrections.parquet")
    assert len(written) == len(log) and set(written["source"]) == {"automatic"}
    rec = json.loads((tmp_path / "child" / "reconciliation.json").read_text())
    assert rec["automatic_corrections"] == {BLANKED: len(log)}


def test_values_that_do_not_convert_are_type_errors(model: FormModel) -> None:
    raw = _raw(model, [{**CLEAN, "hh": "12a"}, {**CLEAN, "hh": ""}, {**CLEAN, "hh": "-7"},
                       {**CLEAN, "n_kids": " 4"}])
    typed, errors = to_typed(raw.root, model)
    assert typed["hh"].isna().tolist() == [True, True, False, False]
    assert typed["hh"].iloc[2] == -7 and str(typed["hh"].dtype) == "Int64"
    assert errors[["KEY", "column", "value"]].values.tolist() == [
        ["uuid:s0", "hh", "12a"], ["uuid:s3", "n_kids", " 4"]]
