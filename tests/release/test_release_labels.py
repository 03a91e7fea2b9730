"""Variable and value labels, missing codes and select_multiple dummies from the form model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from workbooks import EN, SW, YES_NO, c, q, write_workbook

from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.release.labels import (
    LABEL_LIMIT,
    NAME_LIMIT,
    ReleaseError,
    dummy_labels,
    missing_codes,
    resolve_language,
    select_multiple_dummies,
    value_labels,
    variable_labels,
)


@pytest.fixture
def form(tmp_path: Path) -> FormModel:
    long_en = "How often, in the last twelve months, did you " + "really " * 12 + "go online?"
    survey = [
        q("select_one yes_no", "consent", "Do you agree?", "Unakubali?"),
        q("select_one freq", "freq", long_en, "Mara ngapi?", **{"label::stata": None}),
        q("select_one freq", "freq_sw_missing", "Short English label",
          **{f"label::{SW}": None}),
        q("select_multiple device_with_a_long_list_name", "devices_used_to_go_online_ever",
          "Devices", "Vifaa"),
        q("select_one letters", "letter", "Letter", "Herufi"),
        q("integer", "age", "Age in years", "Umri"),
    ]
    choices = [
        *YES_NO,
        c("freq", "1", "Daily", "Kila siku"), c("freq", "2", "Weekly", "Kila wiki"),
        c("freq", "96", "Other", "Nyingine"), c("freq", "98", "Don't know", "Sijui"),
        c("freq", "99", "Refused", "Amekataa"),
        c("device_with_a_long_list_name", "1", "Phone", "Simu"),
        c("device_with_a_long_list_name", "96", "Other", "Nyingine"),
        c("letters", "a", "A"), c("letters", "b", "B"),
    ]
    return load_form(write_workbook(tmp_path / "f.xlsx", survey, choices))


def test_variable_labels_use_the_language_then_english(form: FormModel) -> None:
    stata = variable_labels(form, "stata")
    assert stata["consent"] == "Do you agree?"
    english = form["freq"].labels[EN]
    assert len(english) > LABEL_LIMIT
    assert len(stata["freq"]) == LABEL_LIMIT and stata["freq"].endswith("…")
    assert english.startswith(stata["freq"][:-1])
    sw = variable_labels(form, "sw")
    assert sw["consent"] == "Unakubali?"
    assert sw["freq_sw_missing"] == "Short English label"  # falls back to English
    assert set(stata) == {f.name for f in form.fields}
    assert variable_labels(form) == variable_labels(form, EN)


def test_language_names_and_codes(form: FormModel) -> None:
    assert resolve_language(form, "sw") == SW
    assert resolve_language(form, SW) == SW
    assert resolve_language(form, "STATA") == "stata"
    assert resolve_language(form, None) == EN
    with pytest.raises(ReleaseError, match="not in the form"):
        resolve_language(form, "fr")


def test_value_labels_only_for_integer_coded_selects(form: FormModel) -> None:
    labels = value_labels(form, "sw")
    assert set(labels) == {"consent", "freq", "freq_sw_missing"}
    assert labels["freq"] == {1: "Kila siku", 2: "Kila wiki", 96: "Nyingine", 98: "Sijui",
                              99: "Amekataa"}
    assert all(isinstance(k, int) for v in labels.values() for k in v)


def test_missing_codes_are_98_and_99_not_96(form: FormModel, models) -> None:
    assert missing_codes(form) == {"freq": {98: "d", 99: "r"},
                                   "freq_sw_missing": {98: "d", 99: "r"}}
    child = missing_codes(models["child"])
    assert child["contact_unknown"] == {98: "d", 99: "r"}
    assert child["helpline_recall"] == {98: "d"}
    assert all(96 not in tags for tags in child.values())


def test_select_multiple_dummies(form: FormModel) -> None:
    df = pd.DataFrame({
        "age": pd.array([12, 13, 14], dtype="Int64"),
        "devices_used_to_go_online_ever": pd.array(["1 96", None, "96"], dtype="string"),
    })
    out = select_multiple_dummies(df, form)
    long = "devices_used_to_go_online_ever"
    assert list(out.columns) == ["age", long, "devices_used_to_go_online_ever_1",
                                 "devices_used_to_go_online_eve_96"]
    assert all(len(c) <= NAME_LIMIT for c in out.columns)
    assert out["devices_used_to_go_online_ever_1"].tolist() == [1, pd.NA, 0]
    assert out["devices_used_to_go_online_eve_96"].tolist() == [1, pd.NA, 1]
    assert list(select_multiple_dummies(df, form, drop_original=True).columns) == [
        "age", "devices_used_to_go_online_ever_1", "devices_used_to_go_online_eve_96"]
    labels = dummy_labels(form, "sw")
    assert labels["devices_used_to_go_online_ever_1"] == f"{long}: Simu"


def test_child_dummies_fit_stata(tables, models) -> None:
    out = select_multiple_dummies(tables["child"], models["child"])
    added = [c for c in out.columns if c not in tables["child"].columns]
    assert "devices_96" in added and all(len(c) <= NAME_LIMIT for c in added)
    chosen = tables["child"]["devices"].fillna("").str.split().map(lambda s: "96" in s)
    answered = tables["child"]["devices"].notna()
    assert (out.loc[answered, "devices_96"] == chosen[answered].astype(int)).all()
    assert out.loc[~answered, "devices_96"].isna().all()
    assert all(len(v) <= LABEL_LIMIT for v in dummy_labels(models["child"], "stata").values())


def test_merged_rare_levels_get_a_label_in_every_language(models, tmp_path: Path) -> None:
    import pyreadstat

    from dhsurvey.release.labels import value_labels, with_merged_codes
    from dhsurvey.release.writers import write_dta

    fw = models["frontline_worker"]
    merged = with_merged_codes(models, {"frontline_worker": {
        "org_type": {"levels": [5, 96], "into": 995}}})
    new = merged["frontline_worker"]
    english = value_labels(new, "English (en)")["org_type"]
    assert english[995] == f"{english[5]} / {english[96]}"
    swahili = value_labels(new, "Kiswahili (sw)")["org_type"]
    assert swahili[995] == f"{swahili[5]} / {swahili[96]}" != english[995]
    assert 995 not in value_labels(fw, "English (en)")["org_type"]  # original untouched
    assert merged["child"] is models["child"]

    table = pd.DataFrame({"org_type": pd.array([1, 995, 995], dtype="Int64")})
    path = write_dta(table, new, tmp_path / "fw.dta", language="English (en)")
    _, meta = pyreadstat.read_dta(path)
    assert meta.variable_value_labels["org_type"][995] == english[995]

    # A second column of the same list merging other levels: the code names all of them.
    both = with_merged_codes({"frontline_worker": new}, {"frontline_worker": {
        "org_type": {"levels": [2, 3], "into": 995}}})["frontline_worker"]
    label = value_labels(both, "English (en)")["org_type"][995]
    assert label == " / ".join(english[c] for c in (2, 3, 5, 96))
    # A code the form defines is never relabelled.
    kept = with_merged_codes(models, {"frontline_worker": {
        "org_type": {"levels": [5], "into": 96}}})["frontline_worker"]
    assert value_labels(kept, "English (en)")["org_type"][96] == english[96]


def test_a_countrys_files_label_only_its_own_regions() -> None:
    """The region list holds every country's regions (filtered by ${country} in the form);
    a country's release labels its own, the pooled one those of its countries."""
    from dhsurvey.release.labels import for_countries
    from dhsurvey.study import Study

    study = Study.load(Path(__file__).parents[2] / "instruments")
    everything = value_labels(study.models["child"])["region"]
    codes = {iso: {int(r) for r in study.config(iso).regions} for iso in ("KEN", "TZA")}
    assert codes["KEN"] | codes["TZA"] < set(everything)  # the list holds more countries
    ken = for_countries(study.models, [study.config("KEN").code])
    assert set(value_labels(ken["child"])["region"]) == codes["KEN"]
    both = for_countries(study.models, [study.config(i).code for i in ("KEN", "TZA")])
    assert set(value_labels(both["household"])["region"]) == codes["KEN"] | codes["TZA"]
    # Lists without a country filter, and the models given, are untouched.
    assert value_labels(ken["child"])["child_sex"] == value_labels(study.models["child"])[
        "child_sex"]
    assert value_labels(study.models["child"])["region"] == everything
