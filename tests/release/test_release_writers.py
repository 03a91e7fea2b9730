"""Release files reopened with pyreadstat (and pandas): labels, missing codes, determinism."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest
from workbooks import EN, SW, YES_NO, c, q, write_workbook

from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.io import neutralise_formulas
from dhsurvey.release.labels import (
    LABEL_LIMIT,
    NAME_LIMIT,
    ReleaseError,
    file_labels,
    missing_codes,
    select_multiple_dummies,
    value_labels,
)
from dhsurvey.release.writers import (
    FORMATS,
    ReleaseWarning,
    model_for,
    write_csv,
    write_dta,
    write_release,
    write_sav,
)

TABLES = ("child", "household", "household.roster")


def _release(tables: dict[str, pd.DataFrame], models: dict[str, FormModel], folder: Path,
             language: str = "stata") -> list[Path]:
    return write_release(tables, models, folder, language=language)


def test_write_release_writes_every_format_per_table(tables, models, tmp_path: Path) -> None:
    paths = _release(tables, models, tmp_path)
    assert paths == [tmp_path / f"{t}.{ext}" for t in TABLES for ext in FORMATS]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert paths.warnings == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("language", ["stata", "Kiswahili (sw)"])
@pytest.mark.parametrize("table", TABLES)
def test_dta_labels_match_the_model(tables, models, tmp_path: Path, table: str,
                                    language: str) -> None:
    model = model_for(table, models)
    path = write_dta(tables[table], model, tmp_path / "t.dta", language=language)
    data, meta = pyreadstat.read_dta(path, user_missing=True)
    assert list(data.columns) == list(tables[table].columns)
    expected = file_labels(tables[table].columns, model, language)
    assert meta.column_names_to_labels == {k: v or None for k, v in expected.items()}

    tags = missing_codes(model)
    coded = {k: v for k, v in value_labels(model, language).items() if k in data.columns}
    assert coded, "the table has labelled variables"
    assert meta.variable_value_labels == {
        name: {tags.get(name, {}).get(code, code): text for code, text in labels.items()}
        for name, labels in coded.items()
    }
    # Stata convention: each label set is named like its variable (≤ 32 characters).
    assert meta.variable_to_label == {name: name for name in coded}
    assert all(len(name) <= NAME_LIMIT for name in data.columns)
    assert all(len(label) <= LABEL_LIMIT for label in meta.column_labels if label)
    assert all(len(v) <= LABEL_LIMIT for labels in coded.values() for v in labels.values())
    assert meta.file_label == model.title


def test_dta_writes_dont_know_and_refused_as_extended_missing(tables, models,
                                                              tmp_path: Path) -> None:
    child = tables["child"]
    path = write_dta(child, models["child"], tmp_path / "child.dta", language="stata")
    tagged, meta = pyreadstat.read_dta(path, user_missing=True)
    plain, _ = pyreadstat.read_dta(path)
    assert tagged.loc[0, "contact_unknown"] == "d"
    assert tagged.loc[1, "contact_unknown"] == "r"
    assert tagged.loc[3, "sex_content"] == "r"
    assert set(meta.missing_user_values["contact_unknown"]) == {"d", "r"}
    assert meta.value_labels["contact_unknown"]["d"] == "Don't know"
    assert meta.value_labels["contact_unknown"]["r"] == "Prefer not to say"
    # Every 98/99 is tagged, every other value (and plain missing) is unchanged.
    for name, tags in missing_codes(models["child"]).items():
        original = child[name]
        for code, tag in tags.items():
            assert (tagged[name][original.eq(code).fillna(False).to_numpy()] == tag).all()
        answers = original.notna() & ~original.isin(list(tags))
        assert (plain[name][answers.to_numpy()].to_numpy() == original[answers].to_numpy()).all()
        assert plain[name][(~answers).to_numpy()].isna().all()
    assert np.isnan(tagged.loc[2, "contact_unknown"])  # a plain missing after a tag
    # pandas' own reader agrees: .d and .r are Stata extended missing values.
    with pd.io.stata.StataReader(path) as reader:
        raw = reader.read(convert_missing=True, convert_categoricals=False)
    assert str(raw.loc[0, "contact_unknown"]) == ".d"
    assert str(raw.loc[1, "contact_unknown"]) == ".r"
    assert str(raw.loc[2, "contact_unknown"]) == "."


def test_dta_roster_dont_know(tables, models, tmp_path: Path) -> None:
    path = write_dta(tables["household.roster"], models["household"], tmp_path / "r.dta")
    data, meta = pyreadstat.read_dta(path, user_missing=True)
    assert data.loc[0, "internet_use"] == "d"
    assert np.isnan(data.loc[1, "internet_use"])
    assert meta.value_labels["internet_use"]["d"] == "Don't know"


def test_dta_times_are_utc_and_dates_are_days(tables, models, tmp_path: Path) -> None:
    household = tables["household"]
    path = write_dta(household, models["household"], tmp_path / "h.dta")
    data, meta = pyreadstat.read_dta(path)
    assert meta.original_variable_types["start"] == "%tc"
    assert meta.original_variable_types["v1_date"] == "%td"
    expected = household["start"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert (data["start"] - expected).abs().max() < pd.Timedelta(milliseconds=1)
    assert (pd.to_datetime(data["v1_date"]) == household["v1_date"]).all()


@pytest.mark.parametrize("table", TABLES)
def test_sav_labels_user_missing_and_measure(tables, models, tmp_path: Path, table: str) -> None:
    model = model_for(table, models)
    df = tables[table]
    path = write_sav(df, model, tmp_path / "t.sav", language="stata")
    data, meta = pyreadstat.read_sav(path, user_missing=True)
    plain, _ = pyreadstat.read_sav(path)
    expected = file_labels(df.columns, model, "stata")
    assert meta.column_names_to_labels == {k: v or None for k, v in expected.items()}
    coded = {k: v for k, v in value_labels(model, "stata").items() if k in df.columns}
    assert meta.variable_value_labels == {
        name: {float(code): text for code, text in labels.items()}
        for name, labels in coded.items()
    }
    tags = {k: v for k, v in missing_codes(model).items() if k in df.columns}
    assert tags or table == "household"  # no household-level list offers 98/99
    assert meta.missing_ranges == {
        name: [{"lo": float(code), "hi": float(code)} for code in sorted(t)]
        for name, t in tags.items()
    }
    for name, t in tags.items():
        reserved = df[name].isin(list(t)).fillna(False).to_numpy()
        assert (data[name][reserved].to_numpy() == df[name][reserved].to_numpy()).all()
        assert plain[name][reserved].isna().all()  # excluded unless asked for
    assert meta.variable_measure["KEY"] == "nominal"
    for name in coded:
        assert meta.variable_measure[name] == "nominal"
    numeric = [f.name for f in model.fields if f.type == "integer" and f.name in df.columns]
    assert numeric and all(meta.variable_measure[n] == "scale" for n in numeric)
    assert all(len(label) <= LABEL_LIMIT for label in meta.column_labels if label)


def test_sav_child_refused_is_user_missing(tables, models, tmp_path: Path) -> None:
    path = write_sav(tables["child"], models["child"], tmp_path / "c.sav")
    data, _ = pyreadstat.read_sav(path, user_missing=True)
    plain, _ = pyreadstat.read_sav(path)
    assert data.loc[0, "contact_unknown"] == 98 and np.isnan(plain.loc[0, "contact_unknown"])
    assert data.loc[1, "contact_unknown"] == 99 and np.isnan(plain.loc[1, "contact_unknown"])


def test_rerun_gives_byte_identical_files(tables, models, tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in _release(tables, models, tmp_path / "a")}
    time.sleep(1.1)  # readstat's clock has one-second resolution in .sav headers
    again = _release(tables, models, tmp_path / "a")
    elsewhere = _release(tables, models, tmp_path / "b")
    assert {p.name: p.read_bytes() for p in again} == first
    assert {p.name: p.read_bytes() for p in elsewhere} == first
    assert {Path(n).suffix for n in first} == {f".{f}" for f in FORMATS}
    # The header stamps are the fixed release stamp, not the wall clock.
    assert b"\x1101 Jan 2000 00:00</timestamp>" in first["child.dta"]
    assert pyreadstat.read_sav(tmp_path / "a" / "child.sav", metadataonly=True)[1] \
        .creation_time == pd.Timestamp("2000-01-01").to_pydatetime()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]


def test_source_date_epoch_sets_the_header_stamp(tables, models, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01 00:00 UTC
    dta = write_dta(tables["child"], models["child"], tmp_path / "c.dta")
    sav = write_sav(tables["child"], models["child"], tmp_path / "c.sav")
    assert b"\x1101 Jan 2026 00:00</timestamp>" in dta.read_bytes()
    assert pyreadstat.read_sav(sav, metadataonly=True)[1].creation_time.year == 2026


@pytest.mark.parametrize("table", TABLES)
def test_csv_round_trips_to_the_same_values(tables, models, tmp_path: Path, table: str) -> None:
    df = tables[table]
    path = write_csv(df, model_for(table, models), tmp_path / "t.csv")
    text = path.read_bytes().decode("utf-8")
    assert "\r" not in text and text.splitlines()[0].split(",") == list(df.columns)
    back = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    assert len(back) == len(df)
    for name in df.columns:
        original, read = df[name], back[name]
        if isinstance(original.dtype, pd.DatetimeTZDtype):
            read = pd.to_datetime(read, utc=True, format="ISO8601")
            pd.testing.assert_series_equal(read, original.dt.tz_convert("UTC"),
                                           check_names=False, check_dtype=False)
        elif pd.api.types.is_datetime64_dtype(original.dtype):
            pd.testing.assert_series_equal(pd.to_datetime(read), original, check_names=False,
                                           check_dtype=False)
        elif pd.api.types.is_numeric_dtype(original.dtype):
            pd.testing.assert_series_equal(pd.to_numeric(read).astype(original.dtype), original,
                                           check_names=False)
        else:  # text a spreadsheet would run as a formula has a quote in front
            expected = neutralise_formulas(original.astype("string"))
            pd.testing.assert_series_equal(read.astype("string"), expected, check_names=False)


def test_csv_written_in_blocks_is_the_same_file(tables, models, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import dhsurvey.release.formats.csv as csv_format

    df = tables["child"]
    whole = write_csv(df, models["child"], tmp_path / "whole.csv").read_bytes()
    size = next(k for k in range(7, 14) if len(df) % k)  # many blocks, the last one short
    monkeypatch.setattr(csv_format, "CSV_ROWS", size)
    assert len(df) > 2 * size
    assert write_csv(df, models["child"], tmp_path / "blocks.csv").read_bytes() == whole


def test_parquet_keeps_dtypes_and_carries_labels(tables, models, tmp_path: Path) -> None:
    paths = write_release({"child": tables["child"]}, models, tmp_path, language="sw",
                          formats=("parquet",))
    back = pd.read_parquet(paths[0])
    pd.testing.assert_frame_equal(back, tables["child"].reset_index(drop=True))
    import json

    meta = json.loads(pq.read_schema(paths[0]).metadata[b"dhsurvey"])
    assert meta["language"] == "Kiswahili (sw)"
    assert meta["value_labels"]["contact_unknown"]["98"] == "Sijui"
    assert meta["missing_codes"]["contact_unknown"] == {"98": "d", "99": "r"}


def test_dummies_are_written_with_labels(tables, models, tmp_path: Path) -> None:
    model = models["child"]
    df = select_multiple_dummies(tables["child"], model)
    dta = write_dta(df, model, tmp_path / "c.dta")
    sav = write_sav(df, model, tmp_path / "c.sav")
    for path, reader in ((dta, pyreadstat.read_dta), (sav, pyreadstat.read_sav)):
        data, meta = reader(path)
        assert meta.column_names_to_labels["devices_96"] == "devices: Other device"
        assert set(data["devices_96"].dropna()) <= {0, 1}
    assert pyreadstat.read_sav(sav)[1].variable_measure["devices_1"] == "nominal"


@pytest.fixture
def long_form(tmp_path: Path) -> FormModel:
    """A form with a 32-character select name, a long label and a long text answer."""
    long_name = "a_very_long_select_one_name_32ch"
    assert len(long_name) == 32
    survey = [
        q("select_one yes_no_dk", long_name, "Long-named question " + "x" * 100,
          **{"label::stata": None}),
        q("text", "story", "Tell us more", pii="free_text"),
    ]
    choices = [*YES_NO, c("yes_no_dk", "1", "Yes"), c("yes_no_dk", "0", "No"),
               c("yes_no_dk", "98", "Don't know", "Sijui")]
    return load_form(write_workbook(tmp_path / "long.xlsx", survey, choices))


def test_long_names_labels_and_strings(long_form: FormModel, tmp_path: Path) -> None:
    name = "a_very_long_select_one_name_32ch"
    df = pd.DataFrame({
        name: pd.array([1, 98, None, 0], dtype="Int64"),
        "story": pd.array(["x" * 3000, None, "é" * 20_000, "short"], dtype="string"),
    })
    with pytest.warns(ReleaseWarning, match="truncated for SPSS"):
        paths = write_release({"long": df}, {"long": long_form}, tmp_path,
                              formats=("dta", "sav"))
    assert len(paths.warnings) == 1 and "story" in paths.warnings[0]
    data, meta = pyreadstat.read_dta(paths[0], user_missing=True)
    assert meta.variable_to_label == {name: name}
    assert data[name].tolist()[:2] == [1, "d"]
    assert data["story"].tolist() == ["x" * 3000, "", "é" * 20_000, "short"]  # strL, no cut
    assert len(meta.column_names_to_labels[name]) == LABEL_LIMIT
    assert meta.column_names_to_labels[name].endswith("…")
    spss, _ = pyreadstat.read_sav(paths[1])
    assert len(spss.loc[2, "story"].encode("utf-8")) <= 32_767
    assert spss.loc[2, "story"].endswith("…")


@pytest.mark.parametrize("bad", ["in", "with", "_hidden", "x" * 33, "two words", "BY"])
def test_names_stata_or_spss_refuse_are_rejected(long_form: FormModel, tmp_path: Path,
                                                 bad: str) -> None:
    df = pd.DataFrame({bad: [1, 2]})
    for writer in (write_dta, write_sav):
        with pytest.raises(ReleaseError, match="column names unfit"):
            writer(df, long_form, tmp_path / "bad.out")
    assert not list(tmp_path.glob("bad.*"))


def test_names_differing_only_in_case_are_rejected(long_form: FormModel, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="differ only in case"):
        write_sav(pd.DataFrame({"Age": [1], "age": [2]}), long_form, tmp_path / "x.sav")


def test_unknown_language_and_format_are_errors(tables, models, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="language 'fr'"):
        write_release({"child": tables["child"]}, models, tmp_path, language="fr")
    with pytest.raises(ReleaseError, match="unknown release format"):
        write_release({"child": tables["child"]}, models, tmp_path, formats=("xlsx",))
    with pytest.raises(ReleaseError, match="no form model"):
        write_release({"nope": tables["child"]}, models, tmp_path)


def test_measure_levels_follow_the_xlsform_type(tmp_path: Path) -> None:
    survey = [
        q("select_one agree", "opinion", "Agree?", appearance="likert"),
        q("select_one yes_no", "owns", "Owns a phone?"),
        q("select_multiple yes_no", "which", "Which?"),
        q("integer", "age", "Age"),
        q("decimal", "hours", "Hours online"),
        q("text", "note_text", "Anything else?", pii="free_text"),
    ]
    choices = [*YES_NO, c("agree", "1", "Disagree"), c("agree", "2", "Agree")]
    model = load_form(write_workbook(tmp_path / "m.xlsx", survey, choices))
    df = pd.DataFrame({
        "opinion": pd.array([1, 2], dtype="Int64"), "owns": pd.array([1, 0], dtype="Int64"),
        "which": pd.array(["1 0", "1"], dtype="string"), "age": pd.array([3, 4], dtype="Int64"),
        "hours": pd.array([1.5, 2.0], dtype="Float64"),
        "note_text": pd.array(["a", None], dtype="string"),
    })
    _, meta = pyreadstat.read_sav(write_sav(df, model, tmp_path / "m.sav"))
    assert meta.variable_measure == {"opinion": "ordinal", "owns": "nominal", "which": "nominal",
                                     "age": "scale", "hours": "scale", "note_text": "nominal"}


@pytest.mark.parametrize("table", TABLES)
def test_an_english_release_takes_the_stata_variable_labels(tables, models, tmp_path: Path,
                                                            table: str) -> None:
    """Variable labels are the workbook's label::stata wherever it has one (value labels
    follow the release language)."""
    model = model_for(table, models)
    path = write_dta(tables[table], model, tmp_path / "t.dta", language=EN)
    data, meta = pyreadstat.read_dta(path)
    shorts = {i.name: i.labels["stata"] for i in model.fields
              if i.labels.get("stata") and i.name in data.columns}
    assert shorts
    assert {n: meta.column_names_to_labels[n] for n in shorts} == {
        n: t if len(t) <= LABEL_LIMIT else t[:LABEL_LIMIT - 1] + "…" for n, t in shorts.items()}
    # Only fields with an English label (a calculate may have only the Stata one).
    english = {i.name: i.labels[EN] for i in model.fields
               if i.name in shorts and i.labels.get(EN)}
    assert any(english[n] != shorts[n] for n in english)  # not the long English labels


def test_labels_in_another_language(tables, models, tmp_path: Path) -> None:
    path = write_dta(tables["child"], models["child"], tmp_path / "c.dta", language="sw")
    _, meta = pyreadstat.read_dta(path)
    assert meta.variable_value_labels["assent"] == {1: "Ndiyo", 0: "Hapana"}
    sw = models["child"]["assent"].labels[SW]
    assert meta.column_names_to_labels["assent"] == (sw if len(sw) <= 80 else sw[:79] + "…")
    assert EN in models["child"].languages


def test_dta_int_column_starting_with_missing_values(models, tmp_path: Path) -> None:
    """Suppressed cells (missing) at the top of a coded column still write as numbers."""
    import pandas as pd
    import pyreadstat

    from dhsurvey.release.writers import write_dta

    table = pd.DataFrame({"cg_educ": pd.array([None, None, 1, 5, None, 2], dtype="Int64")})
    path = write_dta(table, models["caregiver"], tmp_path / "cg.dta", language="English (en)")
    back, meta = pyreadstat.read_dta(str(path))
    assert back["cg_educ"].tolist()[2:4] == [1.0, 5.0]
    assert back["cg_educ"].isna().tolist() == [True, True, False, False, True, False]
    assert meta.variable_value_labels["cg_educ"]


#: The study's interview languages other than English and Kiswahili: each a script or
#: spelling the label writers must carry byte for byte (Ethiopic, Khmer and Thai are 3 bytes a
#: character in UTF-8; Vietnamese combines diacritics).
STUDY_SCRIPTS = ("am", "km", "th", "vi", "fil", "id", "ms", "pt", "af", "zu", "lg")


@pytest.mark.parametrize("code", STUDY_SCRIPTS)
def test_labels_in_every_study_language_read_back_intact(tables, models, tmp_path: Path,
                                                         code: str) -> None:
    """Variable and value labels in each language, written to .dta and .sav and read back with
    pyreadstat: the model's text, cut (if at all) on a character boundary with an ellipsis —
    Stata 80 characters, SPSS value labels 120 bytes — never a broken byte sequence."""
    from dhsurvey.release.labels import choice_labels, pick_label, truncate_bytes

    def cut_from(label: str, full: str) -> bool:  # the whole text, or its start and "…"
        return label == full or (label.endswith("…") and full.startswith(label[:-1]))

    model = models["child"]
    (language,) = model.languages_named([code])
    df = tables["child"]
    names = file_labels(df.columns, model, language)
    coded = {k: v for k, v in value_labels(model, language).items() if k in df.columns}
    english = file_labels(df.columns, model, EN)
    assert sum(names[n] != english[n] for n in names) > len(names) / 2  # translated
    fields = [model[n] for n in df.columns if n in model.by_name and model[n].holds_data]
    assert all(cut_from(names[i.name], pick_label(i.labels, language, model))
               and len(names[i.name]) <= 80 for i in fields)
    assert any(names[i.name].endswith("…") for i in fields)  # some cut
    full = {n: choice_labels(model, model[n], language, limit=None) for n in coded}
    assert all(cut_from(text, full[n][str(c)]) and len(text) <= 80
               for n, labels in coded.items() for c, text in labels.items())
    tags = missing_codes(model)
    _, dta = pyreadstat.read_dta(write_dta(df, model, tmp_path / "c.dta", language=language))
    assert dta.column_names_to_labels == {k: v or None for k, v in names.items()}
    assert dta.variable_value_labels == {
        name: {tags.get(name, {}).get(c, c): text for c, text in labels.items()}
        for name, labels in coded.items()}
    _, sav = pyreadstat.read_sav(write_sav(df, model, tmp_path / "c.sav", language=language))
    assert sav.column_names_to_labels == {k: v or None for k, v in names.items()}
    assert sav.variable_value_labels == {
        name: {float(c): truncate_bytes(text, 120) for c, text in labels.items()}
        for name, labels in coded.items()}
    assert all(len(t.encode("utf-8")) <= 120 and cut_from(t, full[n][str(int(c))])
               and "\ufffd" not in t
               for n, v in sav.variable_value_labels.items() for c, t in v.items())


def test_a_large_release_written_on_every_core_is_the_same(tables, models, long_form: FormModel,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Formats written in forked processes are the bytes of one process writing them in turn;
    the notes come back in order and the warnings are given here."""
    from dhsurvey.release import writers

    long = pd.DataFrame({"story": pd.array(["é" * 20_000, "short"], dtype="string")})
    every = {**tables, "long": long}
    both = {**models, "long": long_form}
    runs = {}
    for cells, folder in ((1 << 60, tmp_path / "alone"), (0, tmp_path / "spread")):
        monkeypatch.setattr(writers, "PARALLEL_CELLS", cells)
        with pytest.warns(ReleaseWarning, match="truncated for SPSS"):
            runs[folder.name] = write_release(every, both, folder)
    alone, spread = runs["alone"], runs["spread"]
    assert [p.name for p in spread] == [p.name for p in alone]
    assert spread.warnings == alone.warnings and len(alone.warnings) == 1  # type: ignore[attr-defined]
    for a, b in zip(alone, spread, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
