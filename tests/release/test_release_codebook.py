"""The codebook: labels in every language, universes in words, frequencies, files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from workbooks import EN, SW, YES_NO, q, write_workbook

from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.release.codebook import (
    build_codebook,
    describe_universe,
    frequency_table,
    write_codebook,
)
from dhsurvey.release.labels import choice_labels, select_multiple_dummies

_FREQ = re.compile(r"^(?P<code>\S+)(?: (?P<label>.*?))?: (?P<n>[\d.]+)(?: \((?P<pct>[\d.]+)%\))?$")


def _parse(text: str) -> dict[str, float]:
    """``1 Yes: 30 (41.1%); 0 No: 39 (53.4%)`` → {"1": 30, "0": 39}."""
    out = {}
    for part in text.split("; "):
        match = _FREQ.match(part)
        assert match, part
        out[match["code"]] = float(match["n"])
    return out


@pytest.fixture
def weighted(tables) -> dict[str, pd.DataFrame]:
    child = tables["child"]
    child["wt"] = np.random.default_rng(7).uniform(0.5, 2.0, len(child))
    return tables


@pytest.fixture
def codebook(weighted, models) -> pd.DataFrame:
    return build_codebook(weighted, models, weights={"child": "wt", "household": "missing_col"})


def test_one_row_per_variable_with_labels_in_every_language(codebook, weighted, models) -> None:
    for name, df in weighted.items():
        part = codebook[codebook["form"] == name]
        assert part["variable"].tolist() == list(df.columns)
        model = models[name.split(".")[0]]
        fields = [f.name for f in model.fields if f.name in df.columns]
        assert fields and part["variable"].isin(fields).sum() == len(fields)
    assert {"label_en", "label_sw", "label_stata", "values_en", "values_sw"} <= set(codebook)
    rows = codebook.set_index(["form", "variable"])
    child = models["child"]
    for item in child.fields:
        row = rows.loc[("child", item.name)]
        # A calculate may have only a Stata label (helpline, country_langs): that labels it in
        # every language, so no variable is left unlabelled.
        english = item.labels.get(EN) or item.labels["stata"]
        assert row["label_en"] == " ".join(english.split()).replace("${", "[") \
            .replace("}", "]")
        assert row["label_sw"] and row["label_stata"] == item.labels["stata"]
    assert any(not item.labels.get(EN) for item in child.fields)
    assert rows.loc[("child", "assent"), "values_sw"] == "1 = Ndiyo; 0 = Hapana"
    assert rows.loc[("child", "contact_unknown"), "missing_codes"] == \
        "98 = .d (Don't know); 99 = .r (Prefer not to say)"
    assert rows.loc[("child", "KEY"), "type"] == "meta"
    assert rows.loc[("child", "wt"), "type"] == "weight"


def test_universe_in_words(codebook, models) -> None:
    rows = codebook.set_index(["form", "variable"])["universe"]
    assert rows[("household", "hh_size")] == "Asked if: consent = Yes"
    assert rows[("household", "consent")] == "Asked if: contacted = 1"
    assert rows[("child", "met_offline")] == (
        "Asked if: caregiver_permission = Yes and assent = Yes and privacy = Yes"
        " and distress_1 ≠ Stop the interview and contact_unknown = Yes")
    assert rows[("child", "devices_oth")].endswith("devices includes Other device")
    assert rows[("household", "disposition")] == "Asked if: contacted = 0 or consent is answered"
    assert rows[("household", "v2_date")].startswith("Asked if: v1_outcome is one of ")
    assert rows[("household.roster", "internet_use")] == \
        "Asked if: consent = Yes and age ≥ 12 and age ≤ 17"
    assert rows[("child", "country")] == "All respondents"
    sw = describe_universe(models["household"], models["household"]["hh_size"], "sw")
    assert sw == "Asked if: consent = Ndiyo"


def test_universe_falls_back_to_the_raw_expression(tmp_path: Path) -> None:
    survey = [
        q("select_one yes_no", "consent", "Consent?"),
        q("begin_group", "main", "Main", relevant="${consent} = 1"),
        q("integer", "age", "Age"),
        q("text", "email", "Email", relevant="regex(${email_ok}, '^y') or ${age} > 20",
          pii="direct"),
        q("text", "email_ok", "OK?", pii="none"),
        q("end_group", "main"),
    ]
    model = load_form(write_workbook(tmp_path / "f.xlsx", survey, YES_NO))
    assert describe_universe(model, model["age"]) == "Asked if: consent = Yes"
    assert describe_universe(model, model["email"]) == \
        "Asked if: consent = Yes and (regex(${email_ok}, '^y') or ${age} > 20)"


def test_frequencies_add_up_to_n(codebook, weighted, models) -> None:
    checked = 0
    for row in codebook.itertuples(index=False):
        model = models[row.form.split(".")[0]]
        item = model.by_name.get(row.variable)
        if item is None or item.type != "select_one":
            continue
        counts = _parse(row.frequencies)
        assert sum(counts.values()) == row.n, row.variable
        table = weighted[row.form]
        observed = table[row.variable].dropna().astype(int).astype(str).value_counts()
        assert {k: v for k, v in counts.items() if v} == observed.to_dict()
        assert list(counts)[: len(choice_labels(model, item))] == list(choice_labels(model, item))
        if row.form == "child":
            weights = _parse(row.weighted_frequencies)
            total = table.loc[table[row.variable].notna(), "wt"].sum()
            assert sum(weights.values()) == pytest.approx(total, abs=0.05 * len(weights) + 1e-9)
        else:
            assert pd.isna(row.weighted_frequencies)  # no weight column in that table
        checked += 1
    assert checked > 40


def test_frequency_table_counts_and_weights() -> None:
    values = pd.Series([1, 0, 98, 1, None], dtype="Int64")
    weights = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0])
    table = frequency_table(values, {"1": "Yes", "0": "No", "98": "Don't know"},
                            weights=weights)
    assert table["code"].tolist() == ["1", "0", "98"]
    assert table["n"].tolist() == [2, 1, 1]
    assert table["n"].sum() == values.notna().sum()
    assert table["weighted"].tolist() == [5.0, 2.0, 3.0]
    assert table["percent"].sum() == pytest.approx(100)
    multiple = frequency_table(pd.Series(["1 2", "2", None]), {"1": "A", "2": "B"},
                               multiple=True)
    assert multiple["n"].tolist() == [1, 2]


def test_numeric_statistics(codebook, weighted) -> None:
    row = codebook.set_index(["form", "variable"]).loc[("child", "age_now")]
    values = weighted["child"]["age_now"].dropna().astype(float)
    assert (row["min"], row["max"]) == (values.min(), values.max())
    assert row["median"] == values.median()
    assert row["mean"] == pytest.approx(values.mean(), abs=1e-4)
    assert row["n"] == len(values)
    date = codebook.set_index(["form", "variable"]).loc[("household", "v1_date")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", date["min"])


def test_dummy_rows(models, tables) -> None:
    child = select_multiple_dummies(tables["child"], models["child"])
    book = build_codebook({"child": child}, models).set_index("variable")
    row = book.loc["devices_96"]
    assert row["type"] == "select_multiple dummy"
    other = next(ch for ch in models["child"].choices_for(models["child"]["devices"]).choices
                 if ch.name == "96")
    assert row["label_stata"] == f"devices: {other.labels['stata']}"
    assert row["label_en"] == f"devices: {other.labels[EN]}"
    counts = _parse(row["frequencies"])
    assert sum(counts.values()) == row["n"] == child["devices"].notna().sum()


def test_write_codebook_files_are_deterministic(codebook, tmp_path: Path) -> None:
    first = write_codebook(codebook, tmp_path / "a")
    assert [p.name for p in first] == ["codebook.xlsx", "codebook.md"]
    content = {p.name: p.read_bytes() for p in first}
    again = write_codebook(codebook, tmp_path / "a")
    other = write_codebook(codebook.copy(), tmp_path / "b")
    assert {p.name: p.read_bytes() for p in again} == content
    assert {p.name: p.read_bytes() for p in other} == content
    book = openpyxl.load_workbook(first[0])
    assert book.sheetnames == ["about", "child", "household", "household.roster"]
    child = book["child"]
    assert child.freeze_panes == "C2" and book["about"].freeze_panes == "A2"
    assert all(cell.font.bold for cell in child[1])
    header = [cell.value for cell in child[1]]
    assert header[:2] == ["variable", "position"] and "label_sw" in header
    assert child.max_row == 1 + (codebook["form"] == "child").sum()
    markdown = first[1].read_text(encoding="utf-8")
    assert markdown.startswith("# Codebook\n")
    assert "## household.roster" in markdown and "### `contact_unknown`" in markdown
    assert "- **Universe:** Asked if: consent = Yes" in markdown


def test_codebook_xlsx_cells_hold_what_a_cell_can(codebook, tmp_path: Path) -> None:
    """A cell holds at most 32,767 characters: longer text is cut there with an ellipsis in
    codebook.xlsx, and codebook.md keeps it whole. Nor can it hold an infinite number."""
    from dhsurvey.release.codebook import XLSX_CELL_TEXT

    long = codebook.copy()
    at = long.index[long["form"] == "child"][0]
    text = "; ".join(f"{i} option {i}: 1 (0.1%)" for i in range(2000))
    assert len(text) > XLSX_CELL_TEXT
    long.loc[at, "frequencies"] = text
    xlsx, md = write_codebook(long, tmp_path)
    sheet = openpyxl.load_workbook(xlsx)["child"]
    header = [cell.value for cell in sheet[1]]
    cell = sheet.cell(2, header.index("frequencies") + 1).value
    assert len(cell) == XLSX_CELL_TEXT and cell.endswith("…") and text.startswith(cell[:-1])
    assert text in md.read_text(encoding="utf-8")
    # A cell's number cannot be infinite: such a statistic is written as text.
    long.loc[at, "max"] = float("inf")
    sheet = openpyxl.load_workbook(write_codebook(long, tmp_path)[0])["child"]
    assert sheet.cell(2, header.index("max") + 1).value == "inf"


def test_codebook_for_a_small_form(tmp_path: Path) -> None:
    model: FormModel = load_form(write_workbook(tmp_path / "f.xlsx"))
    df = pd.DataFrame({
        "consent": pd.array([1, 1, 0, 1], dtype="Int64"),
        "age": pd.array([12, 30, None, 14], dtype="Int64"),
        "uses_internet": pd.array([1, None, None, 0], dtype="Int64"),
    })
    book = build_codebook({"test_form": df}, {"test_form": model}).set_index("variable")
    assert book.loc["uses_internet", "universe"] == "Asked if: consent = Yes and age ≥ 12"
    assert book.loc["age", "universe"] == "Asked if: consent = Yes"
    assert book.loc["consent", "frequencies"] == "1 Yes: 3 (75.0%); 0 No: 1 (25.0%)"
    assert book.loc["uses_internet", "label_sw"] == "Anatumia intaneti?"
    assert SW in model.languages


def test_codebook_xlsx_text_cannot_run_as_formulas(tmp_path: Path) -> None:
    """Labels and values starting with = + - @ are quoted in codebook.xlsx (the Markdown
    keeps them as they are); numbers stay numbers."""
    survey = [q("integer", "devices", "-Devices owned", "+Vifaa"),
              q("select_one yes_no", "owns", "@home phone?")]
    model = load_form(write_workbook(tmp_path / "f.xlsx", survey))
    df = pd.DataFrame({"devices": pd.array([-3, 2, None, 4], dtype="Int64"),
                       "owns": pd.array([1, 0, 1, None], dtype="Int64")})
    book = build_codebook({"test_form": df}, {"test_form": model})
    at = book.index[book["variable"] == "owns"][0]
    book.loc[at, "values_stata"] = '=HYPERLINK("http://evil.example","x")'
    xlsx, md = write_codebook(book, tmp_path / "out")
    sheet = openpyxl.load_workbook(xlsx)["test_form"]
    header = [cell.value for cell in sheet[1]]
    rows = {r[0].value: {h: cell for h, cell in zip(header, r, strict=True)}
            for r in sheet.iter_rows(min_row=2)}
    assert rows["devices"]["label_en"].value == "'-Devices owned"
    assert rows["devices"]["label_sw"].value == "'+Vifaa"
    assert rows["owns"]["label_en"].value == "'@home phone?"
    formula = rows["owns"]["values_stata"]
    assert formula.data_type == "s" and formula.value == '\'=HYPERLINK("http://evil.example","x")'
    assert rows["devices"]["min"].value == -3 and rows["devices"]["n"].value == 3
    assert "-Devices owned" in md.read_text(encoding="utf-8")
