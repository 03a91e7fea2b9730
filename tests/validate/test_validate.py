"""Validation end to end: every planted fault caught, no clean submission quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import KINDS, inject_faults
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.frames import FormData
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.validate.corrections import apply_corrections, read_corrections
from dhsurvey.validate.run import validate_form, validate_forms
from dhsurvey.validate.schema import build_schema

ROOT = Path(__file__).parents[2]
INSTRUMENTS = ROOT / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


def _config(iso: str):
    return load_country(INSTRUMENTS / "countries" / f"{iso}.yaml")


@pytest.mark.parametrize("iso,seed", [("KEN", 1), ("TZA", 2), ("UGA", 3)])
def test_recall_is_complete_and_no_clean_submission_is_quarantined(iso: str, seed: int) -> None:
    config = _config(iso)
    sim = simulate_country(config, MODELS, seed=seed, households=900)
    manifest = inject_faults(sim, MODELS, list(KINDS), np.random.default_rng(seed), per_kind=4)
    result = validate_forms(sim.forms, MODELS, config=config)
    planted = {(f["form"], f["instanceID"]) for f in manifest}
    caught = set()
    for form, r in result.forms.items():
        for table in (r.quarantine, r.flags, r.duplicates):
            caught |= {(form, k) for k in table["instanceID"]}
        assert r.reconciliation["balanced"], r.reconciliation
        clean_quarantined = set(r.quarantine["instanceID"]) - {k for f, k in planted
                                                               if f == form}
        assert clean_quarantined == set(), r.quarantine[
            r.quarantine["instanceID"].isin(clean_quarantined)].to_string()
    missed = planted - caught
    assert missed == set(), [f for f in manifest if (f["form"], f["instanceID"]) in missed]
    kinds = {f["kind"] for f in manifest}
    assert kinds == set(KINDS)


@pytest.fixture(scope="module")
def kenya():
    return simulate_country(_config("KEN"), MODELS, seed=21, households=400)


def test_schemas_are_generated_for_every_form_and_repeat(kenya) -> None:
    for form, raw in kenya.forms.items():
        data = raw.to_form_data(MODELS[form])
        for repeat in [None, *[r.name for r in MODELS[form].repeats]]:
            schema = build_schema(data, repeat).schema
            fields = [f.name for f in MODELS[form].fields_in(repeat)]
            assert set(fields) <= set(schema.columns)
            assert schema.columns["KEY"].unique is (repeat is None)
    hh = build_schema(kenya.forms["household"].to_form_data(MODELS["household"])).schema
    assert str(hh.columns["hh_size"].dtype) == "Int64"
    assert str(hh.columns["start"].dtype).startswith("datetime64[ns, UTC]")


def _mutate(raw: RawForm, row: int, **values: str | None) -> RawForm:
    root = raw.root.copy()
    for column, value in values.items():
        root.loc[row, column] = value
    return RawForm(raw.form_id, root, raw.repeats, raw.quarantine)


def _rules(result, key: str) -> set[str]:
    return set(result.quarantine.loc[result.quarantine["instanceID"] == key, "rule"])


def test_type_errors_and_answers_after_refusal_are_quarantined(kenya) -> None:
    child = kenya.forms["child"]
    refused = child.root.index[child.root["assent"] == "0"]
    consented = child.root.index[child.root["assent"] == "1"]
    raw = _mutate(child, consented[0], age_first="ten")
    raw = _mutate(raw, refused[0], in_school="1") if len(refused) else raw
    result = validate_form(raw, MODELS["child"])
    assert "type" in _rules(result, raw.root.loc[consented[0], "KEY"])
    if len(refused):
        assert "beyond-consent" in _rules(result, raw.root.loc[refused[0], "KEY"])
    assert result.reconciliation["balanced"]


def test_window_and_version_are_flags_not_quarantine(kenya) -> None:
    config = _config("KEN")
    hh = kenya.forms["household"]
    raw = _mutate(hh, 0, start="2025-12-01T09:00:00.000+03:00", form_version="old")
    result = validate_form(raw, MODELS["household"], config=config)
    key = raw.root.loc[0, "KEY"]
    flags = set(result.flags.loc[result.flags["instanceID"] == key, "rule"])
    assert {"outside-window", "outdated-version"} <= flags
    assert key in set(result.accepted["KEY"])
    without = validate_form(raw, MODELS["household"])
    assert "outside-window" not in set(without.flags["rule"])


def test_roster_errors_quarantine_the_submission(kenya) -> None:
    hh = kenya.forms["household"]
    roster = hh.repeats["roster"].copy()
    roster.loc[0, "age"] = "140"
    raw = RawForm("household", hh.root, {"roster": roster})
    result = validate_form(raw, MODELS["household"])
    owner = roster.loc[0, "PARENT_KEY"]
    assert "constraint" in _rules(result, owner)
    assert owner not in set(result.accepted["KEY"])
    assert not result.accepted_repeats["roster"]["KEY"].str.startswith(owner).any()


def test_corrections_log_is_applied_reproducibly(kenya, tmp_path: Path) -> None:
    hh = kenya.forms["household"]
    key = hh.root.loc[hh.root["hh_phones"].notna(), "KEY"].iloc[0]
    current = hh.root.set_index("KEY").loc[key, "hh_phones"]
    electricity = hh.root.set_index("KEY").loc[key, "hh_electricity"]
    other = "0" if electricity == "1" else "1"  # a stale correction: neither old nor new
    broken = hh.root.copy()
    broken.loc[broken["KEY"] == key, "hh_phones"] = "99"
    raw = RawForm("household", broken, hh.repeats)
    log = tmp_path / "corrections.csv"
    log.write_text(
        "instanceID,field,old_value,new_value,reason,author\n"
        f"{key},hh_phones,99,{current},call-back: typo,supervisor 3\n"
        f"{key},hh_electricity,7,{other},stale correction,supervisor 3\n"
        "uuid:nobody,hh_phones,1,2,other form,supervisor 3\n", encoding="utf-8")
    corrections = read_corrections(log)
    before = validate_form(raw, MODELS["household"])
    assert "constraint" in _rules(before, key)
    after = validate_form(raw, MODELS["household"], corrections=corrections)
    assert key in set(after.accepted["KEY"])
    assert after.reconciliation["corrections"] == {"applied": 1, "conflict": 1}
    again, report = apply_corrections(apply_corrections(raw, corrections)[0], corrections)
    assert list(report["status"]) == ["already-applied", "conflict"]
    assert again.root.equals(apply_corrections(raw, corrections)[0].root)


def test_validate_cli_writes_every_output(tmp_path: Path) -> None:
    outputs = simulate_to(tmp_path / "sim", [_config("UGA")], MODELS, seed=4, households=200,
                          faults=list(KINDS), formats=("central", "kobo"))
    folder = outputs[0].folder
    exports = [folder / "central" / f"{f}.csv.zip" for f in ("household", "child")]
    exports.append(folder / "kobo" / "caregiver.json")
    runner = CliRunner()
    result = runner.invoke(app, ["validate", *map(str, exports), "--out", str(tmp_path / "v"),
                                 "--country", "UGA", "--instruments", str(INSTRUMENTS),
                                 "--data-docs"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v" / "data_docs" / "index.html").is_file()
    for form in ("household", "child", "caregiver"):
        for name in ("accepted", "quarantine", "flags"):
            assert (tmp_path / "v" / form / f"{name}.parquet").exists()
        rec = json.loads((tmp_path / "v" / form / "reconciliation.json").read_text())
        assert rec["balanced"] and rec["country"] == "UGA"
    quarantine = pd.read_parquet(tmp_path / "v" / "child" / "quarantine.parquet")
    assert list(quarantine.columns) == ["instanceID", "rule", "column", "value", "message"]
    alone = runner.invoke(app, ["validate", str(exports[1]), "--out", str(tmp_path / "w"),
                                "--instruments", str(INSTRUMENTS)])
    assert alone.exit_code == 0
    assert "linkage skipped" in alone.output and "country not given" in alone.output
    # Data Docs only when asked: the schema already enforced what they would check again.
    assert (tmp_path / "w" / "report.html").is_file()
    assert not (tmp_path / "w" / "data_docs").exists() and "Data Docs" not in alone.output
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    failed = runner.invoke(app, ["validate", str(broken), "--out", str(tmp_path / "x"),
                                 "--instruments", str(INSTRUMENTS)])
    assert failed.exit_code == 2


def test_form_data_is_evaluated_on_raw_answers(kenya) -> None:
    data = kenya.forms["child"].to_form_data(MODELS["child"])
    assert isinstance(data, FormData)
    assert data.root.index.name == "KEY"


def test_a_choice_filter_is_evaluated_once_per_distinct_answer() -> None:
    """Rows that share what the filter reads share its result: the mask is the one each row
    gives on its own (None and '' and an unknown country kept apart)."""
    model = MODELS["household"]
    item = model["child_lang"]
    langs = ["1 2", "1 2", None, "", "3", "1 2", "3", None]
    root = pd.DataFrame({"KEY": [f"k{i}" for i in range(len(langs))],
                         "country_langs": langs}).set_index("KEY", drop=False)
    whole = FormData(model, root).choice_mask(item)
    alone = pd.concat([FormData(model, root.iloc[[i]]).choice_mask(item)
                       for i in range(len(root))])
    pd.testing.assert_frame_equal(whole, alone)
    assert whole.loc["k0"].tolist() != whole.loc["k4"].tolist()


def test_relevance_parts_combine_as_pandas_would() -> None:
    from dhsurvey.forms.frames import _all_of

    index = pd.Index(["a", "b", "c"])
    aligned = [pd.Series([True, True, False], index=index),
               pd.Series([True, False, True], index=index)]
    other = pd.Series([True, False, True], index=["c", "a", "b"])  # aligned by label
    for parts in (aligned, [*aligned, other], [aligned[0], other.astype("boolean")], []):
        expected = pd.Series(True, index=index)
        for part in parts:
            expected &= part.reindex(index)
        pd.testing.assert_series_equal(_all_of(parts, index), expected)
