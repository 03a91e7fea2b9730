"""Streamed release files: Parquet appended in batches, CSV/.dta/.sav written from it batch by
batch, byte for byte what the whole-frame writers write for the whole table."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest
from simulated import weighted_country
from workbooks import YES_NO, c, q, write_workbook

from dhsurvey.anonymise.release import anonymise_country
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.release.formats.parquet import row_group_rows
from dhsurvey.release.labels import ReleaseError, value_labels
from dhsurvey.release.stream import ParquetAppender, write_from_parquet
from dhsurvey.release.writers import (
    ReleaseWarning,
    release_metadata,
    write_csv,
    write_dta,
    write_parquet,
    write_sav,
)

FORMS = ("child", "household", "caregiver", "frontline_worker")
WHOLE = {"csv": write_csv, "dta": write_dta, "sav": write_sav}
#: Uneven shares of the rows in 7 batches.
SHARES = (0.04, 0.21, 0.09, 0.26, 0.03, 0.17)


@pytest.fixture(scope="module")
def release(models: dict[str, FormModel]) -> dict[str, pd.DataFrame]:
    """Anonymised KEN release tables (replicate weights, suppressed cells, 98/99 codes)."""
    config, _, accepted, w = weighted_country("KEN", 4, 900)
    out = anonymise_country(accepted, {"household": w.household, "child": w.child,
                                       "caregiver": w.caregiver}, models, config,
                            key=bytes(range(32)), rng=np.random.default_rng(4))
    tables = {}
    for name in FORMS:
        table = out.tables[name]
        repeat = -(-250 // len(table))  # enough rows for several batches of every size
        tables[name] = pd.concat([table] * repeat, ignore_index=True)
    return tables


def _batches(df: pd.DataFrame) -> list[pd.DataFrame]:
    """7 uneven batches: one with an all-missing string column, one holding a column's longest
    string, one where an Int64 key column is all NA."""
    cuts = np.cumsum([int(len(df) * s) for s in SHARES])
    parts = [df.iloc[a:b].reset_index(drop=True).copy()
             for a, b in zip([0, *cuts], [*cuts, len(df)], strict=True)]
    strings = [col for col in df.columns if isinstance(df[col].dtype, pd.StringDtype)]
    ints = [col for col in df.columns if isinstance(df[col].dtype, pd.Int64Dtype)]
    key = "stratum" if "stratum" in df.columns else ints[0]
    for part, column in ((parts[1], strings[0]), (parts[5], key)):
        part[column] = pd.Series(pd.NA, index=part.index, dtype=df[column].dtype)
    parts[3].loc[2, strings[-1]] = "ü" * 40 + " the longest answer"
    return parts


def _append(path: Path, parts: list[pd.DataFrame], model: FormModel,
            language: str | None = None) -> pd.DataFrame:
    with ParquetAppender(path, model, language) as appender:
        for part in parts:
            appender.write(part)
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("name", FORMS)
def test_streamed_files_are_the_whole_frame_files(release, models, tmp_path: Path,
                                                  name: str) -> None:
    model, language = models[name], "stata"
    whole = _append(tmp_path / f"{name}.parquet", _batches(release[name]), model, language)
    table = pd.read_parquet(tmp_path / f"{name}.parquet")
    pd.testing.assert_frame_equal(table, whole)
    # Row groups of a fixed size, however many batches came (7 here).
    groups = -(-len(whole) // row_group_rows(len(whole.columns)))
    assert pq.ParquetFile(tmp_path / f"{name}.parquet").metadata.num_row_groups == groups
    streamed = write_from_parquet(tmp_path / f"{name}.parquet", model, tmp_path / "stream",
                                  language=language, batch_rows=97)
    assert [p.name for p in streamed] == [f"{name}.{ext}" for ext in ("csv", "dta", "sav")]
    for path in streamed:
        fmt = path.suffix[1:]
        expected = WHOLE[fmt](table, model, tmp_path / f"whole.{fmt}", language=language)
        assert path.read_bytes() == expected.read_bytes(), fmt
    coded = {k: v for k, v in value_labels(model, language).items() if k in table.columns}
    _, dta = pyreadstat.read_dta(streamed[1])
    _, sav = pyreadstat.read_sav(streamed[2])
    assert dta.number_rows == sav.number_rows == len(table)
    assert set(dta.variable_value_labels) == set(sav.variable_value_labels) == set(coded)
    assert not list((tmp_path / "stream").glob(".*.tmp"))


@pytest.fixture
def stories(tmp_path: Path) -> tuple[FormModel, pd.DataFrame]:
    """A form and 300 rows with strings up to 800 bytes and one of 40,000, dates and times."""
    survey = [q("select_one yes_no", "owns", "Owns a phone?"),
              q("text", "story", "Tell us more", pii="free_text"),
              q("date", "visit", "Visit date")]
    model = load_form(write_workbook(tmp_path / "m.xlsx", survey, [*YES_NO, c("x", "1", "X")]))
    n = 300
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "owns": pd.array(rng.choice([0, 1, None], n), dtype="Int64"),
        "story": pd.array([("é" * int(k)) if k else None for k in rng.integers(0, 400, n)],
                          dtype="string"),
        "visit": pd.to_datetime("2026-01-01") + pd.to_timedelta(rng.integers(0, 90, n), "D"),
        "start": pd.to_datetime("2026-01-01T08:00:00.123Z")
        + pd.to_timedelta(rng.integers(0, 10**6, n), "s"),
        "score": rng.normal(size=n),
    })
    df.loc[250, "story"] = "x" * 40_000
    return model, df


def test_long_strings_truncated_for_spss_and_dates(stories, tmp_path: Path) -> None:
    """Very long SPSS strings (segments, the 32,767-byte cut), dates and UTC times."""
    model, df = stories
    parts = [df.iloc[:7], df.iloc[7:200], df.iloc[200:]]
    table = _append(tmp_path / "t.parquet", [p.reset_index(drop=True) for p in parts], model)
    notes: list[str] = []
    with pytest.warns(ReleaseWarning, match="truncated for SPSS"):
        paths = write_from_parquet(tmp_path / "t.parquet", model, tmp_path / "s",
                                   formats=("csv", "sav"), notes=notes, batch_rows=41)
    assert len(notes) == 1 and "story" in notes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReleaseWarning)
        for path in paths:
            fmt = path.suffix[1:]
            assert path.read_bytes() == WHOLE[fmt](table, model, tmp_path / f"w.{fmt}") \
                .read_bytes(), fmt
    # Strings over 2045 bytes are Stata strL, stored apart from the rows: the blocks' references
    # are renumbered into one file, the same as one block's.
    (dta,) = write_from_parquet(tmp_path / "t.parquet", model, tmp_path / "s",
                                formats=("dta",), batch_rows=41)
    assert dta.read_bytes() == write_dta(table, model, tmp_path / "w.dta").read_bytes()
    back, _ = pyreadstat.read_dta(dta)
    assert back["story"].tolist() == table["story"].fillna("").tolist()
    short = table.assign(story=table["story"].str.slice(0, 300))
    _append(tmp_path / "short.parquet", [short.iloc[:100], short.iloc[100:]], model)
    (dta,) = write_from_parquet(tmp_path / "short.parquet", model, tmp_path / "s",
                                formats=("dta",), batch_rows=64)
    assert dta.read_bytes() == write_dta(short, model, tmp_path / "w.dta").read_bytes()


def test_appender_metadata_matches_write_parquet(release, models, tmp_path: Path) -> None:
    df, model = release["child"], models["child"]
    _append(tmp_path / "a.parquet", _batches(df), model, "sw")
    write_parquet(df, model, tmp_path / "b.parquet", language="sw")
    meta = [json.loads(pq.read_schema(tmp_path / p).metadata[b"dhsurvey"])
            for p in ("a.parquet", "b.parquet")]
    assert meta[0] == meta[1] == release_metadata(df, model, "sw")


def test_appender_is_atomic_and_checks_batches(release, models, tmp_path: Path) -> None:
    df, model = release["household"], models["household"]
    path = tmp_path / "h.parquet"
    with pytest.raises(RuntimeError), ParquetAppender(path, model) as appender:
        appender.write(df.iloc[:10])
        raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())
    bad = df.iloc[10:20].assign(psu=df["psu"].iloc[10:20].astype("float64"))
    with pytest.raises(ReleaseError, match="'psu'"), ParquetAppender(path, model) as appender:
        appender.write(df.iloc[:10])
        appender.write(bad)
    strings = df.iloc[10:20].assign(record_id=pd.array([1] * 10, dtype="Int64"))
    with pytest.raises(ReleaseError, match="'record_id'"), \
            ParquetAppender(path, model) as appender:
        appender.write(df.iloc[:10])
        appender.write(strings)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ReleaseError, match="no batch"):
        ParquetAppender(path, model).close()


def test_zero_rows(release, models, tmp_path: Path) -> None:
    df, model = release["caregiver"], models["caregiver"]
    path = ParquetAppender(tmp_path / "e.parquet", model, empty=df.iloc[:0]).close()
    table = pd.read_parquet(path)
    assert len(table) == 0 and list(table.columns) == list(df.columns)
    for out in write_from_parquet(path, model, tmp_path / "s", name="cg"):
        fmt = out.suffix[1:]
        assert out.name == f"cg.{fmt}"
        assert out.read_bytes() == WHOLE[fmt](table, model, tmp_path / f"w.{fmt}").read_bytes()


def test_from_a_write_parquet_file(release, models, tmp_path: Path) -> None:
    """One large row group (write_parquet's) streams in batches to the same files."""
    df, model = release["frontline_worker"], models["frontline_worker"]
    path = write_parquet(df, model, tmp_path / "fw.parquet")
    for out in write_from_parquet(path, model, tmp_path / "s", batch_rows=33):
        fmt = out.suffix[1:]
        assert out.read_bytes() == WHOLE[fmt](df, model, tmp_path / f"w.{fmt}").read_bytes()


def _hashes(parts: list[pd.DataFrame], model: FormModel, folder: Path) -> dict[str, str]:
    """SHA-256 of every release file of the rows appended in ``parts``."""
    _append(folder / "t.parquet", parts, model, "stata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReleaseWarning)
        paths = write_from_parquet(folder / "t.parquet", model, folder, language="stata")
    return {p.suffix: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in [folder / "t.parquet", *paths]}


@pytest.mark.parametrize("name", ["child", "household", "stories"])
def test_bytes_do_not_depend_on_the_batches(release, models, stories, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The same rows appended whole, in 2 batches or in 7 uneven ones (some empty) give the
    same files: row groups of a fixed size (here 50 rows, so batches and groups cross), the
    other formats written from them (strL values renumbered across blocks)."""
    import dhsurvey.release.formats.parquet as parquet

    model, df = stories if name == "stories" else (models[name], release[name])
    monkeypatch.setattr(parquet, "ROW_GROUP_CELLS", 50 * len(df.columns))
    n = len(df)
    cuts = [0, 0, 3, 3, n // 4, n // 4 + 1, n - 60, n]
    ways = {"whole": [df], "two": [df.iloc[:n // 2], df.iloc[n // 2:]],
            "seven": [df.iloc[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]}
    assert len(ways["seven"]) == 7 and sum(map(len, ways["seven"])) == n
    hashes = {way: _hashes(parts, model, tmp_path / way) for way, parts in ways.items()}
    assert hashes["whole"] == hashes["two"] == hashes["seven"]
    assert set(hashes["whole"]) == {".parquet", ".csv", ".dta", ".sav"}
    assert pq.ParquetFile(tmp_path / "seven" / "t.parquet").metadata.num_row_groups \
        == -(-n // 50) > 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "seven" / "t.parquet"),
                                  df.reset_index(drop=True))


#: Text answers a spreadsheet would run (or hide a formula behind), and ones it would not.
FORMULA_TEXTS = ['=HYPERLINK("http://evil.example","click")', "+1+cmd|' /C calc'!A0", "-2+3",
                 "@SUM(A1:A9)", "\tx", "\r=1", "-3", "+2.5e3", "ok", None, "a=b", "'=quoted"]
NEUTRALISED = ['\'=HYPERLINK("http://evil.example","click")', "'+1+cmd|' /C calc'!A0",
               "'-2+3", "'@SUM(A1:A9)", "'\tx", "'\r=1", "-3", "+2.5e3", "ok", "", "a=b",
               "'=quoted"]


def test_csv_text_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    """Text starting with = + - @ tab or CR gets a leading quote, in the whole-frame and the
    streamed CSV alike; numbers (and texts that are plain numbers) are written as they are."""
    import csv
    import io

    survey = [q("text", "story", "Tell us more", pii="free_text"),
              q("integer", "count", "How many")]
    model = load_form(write_workbook(tmp_path / "m.xlsx", survey, YES_NO))
    n = len(FORMULA_TEXTS) * 20
    df = pd.DataFrame({
        "story": pd.array(FORMULA_TEXTS * 20, dtype="string"),
        "count": pd.array([-3, 0, None, 7] * (n // 4), dtype="Int64"),
        "score": [-2.5, 1.0, -0.125] * (n // 3),
    })
    table = _append(tmp_path / "t.parquet", [df.iloc[:37], df.iloc[37:].reset_index(drop=True)],
                    model)
    [streamed] = write_from_parquet(tmp_path / "t.parquet", model, tmp_path / "s",
                                    formats=("csv",), batch_rows=5)
    whole = write_csv(table, model, tmp_path / "w.csv")
    assert streamed.read_bytes() == whole.read_bytes()
    rows = list(csv.reader(io.StringIO(whole.read_bytes().decode("utf-8"), newline="")))
    assert rows[0] == ["story", "count", "score"]
    assert [r[0] for r in rows[1:len(FORMULA_TEXTS) + 1]] == NEUTRALISED
    assert [r[1] for r in rows[1:5]] == ["-3", "0", "", "7"]
    assert [r[2] for r in rows[1:4]] == ["-2.5", "1.0", "-0.125"]


@pytest.mark.parametrize("whole_cells", [0, 6, 10**9])
def test_a_parquet_table_gives_the_columns_pandas_reads(tmp_path: Path, whole_cells: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Column by column, in groups of two (a large file) or read whole once (a usual one),
    in order or not: the same values and dtypes as ``pd.read_parquet``."""
    from dhsurvey.release.formats import parquet as parquet_module

    monkeypatch.setattr(parquet_module, "WHOLE_CELLS", whole_cells)
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"),
                          "b": pd.Categorical(["x", "y", None]),
                          "c": ["p", None, "r"], "d": [0.5, 1.5, np.nan]})
    frame.to_parquet(tmp_path / "t.parquet")
    table = parquet_module.ParquetTable(tmp_path / "t.parquet")
    expected = pd.read_parquet(tmp_path / "t.parquet")
    assert list(table.columns) == list(expected.columns) and table.shape == (3, 4)
    for name in [*expected.columns, *reversed(expected.columns)]:
        pd.testing.assert_series_equal(table[name], expected[name])


@pytest.mark.parametrize("name", ["child", "household"])
def test_rows_laid_out_directly_are_pyreadstat_rows(release, models, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    name: str) -> None:
    """The .dta and .sav rows of numbers (missing, tagged 98/99, longs) and short strings
    (empty, multibyte) are laid out without pyreadstat, byte for byte as pyreadstat lays them
    out; a string holding a NUL (which readstat cuts) leaves its block to pyreadstat."""
    import dhsurvey.release.formats.spss as spss
    import dhsurvey.release.formats.stata as stata

    df = release[name].copy()
    for column in df.columns:
        if isinstance(df[column].dtype, pd.StringDtype):
            df[column] = df[column].str.slice(0, 100)
    df["note_text"] = pd.array([None, "", "ü" * 60, "a"] * (len(df) // 4)
                               + [None] * (len(df) % 4), dtype="string")
    nul = df.assign(note_text=df["note_text"].where(df.index != 5, "a\x00b"))
    model = models[name]
    laid: dict[str, list[bool]] = {"dta": [], "sav": []}
    for fmt, module in (("dta", stata), ("sav", spss)):
        def encode(*args: object, _fmt: str = fmt, _real: object = module._encode) -> object:
            out = _real(*args)  # type: ignore[operator]
            laid[_fmt].append(out is not None)
            return out
        monkeypatch.setattr(module, "_encode", encode)
    for way, frame in (("plain", df), ("nul", nul)):
        _append(tmp_path / f"{way}.parquet", [frame], model, "stata")
        direct = write_from_parquet(tmp_path / f"{way}.parquet", model, tmp_path / way,
                                    formats=("dta", "sav"), language="stata", batch_rows=97)
        with monkeypatch.context() as m:
            m.setattr(stata, "_direct", lambda *_: False)
            m.setattr(spss, "_direct", lambda *_: False)
            by_pyreadstat = write_from_parquet(tmp_path / f"{way}.parquet", model,
                                               tmp_path / f"{way}-pyreadstat",
                                               formats=("dta", "sav"), language="stata",
                                               batch_rows=97)
        for ours, theirs in zip(direct, by_pyreadstat, strict=True):
            assert ours.read_bytes() == theirs.read_bytes(), (way, ours.name)
        if way == "plain":
            assert all(laid["dta"]) and all(laid["sav"]) and len(laid["dta"]) > 2
        else:
            assert not all(laid["dta"]) and not all(laid["sav"])
        laid = {"dta": [], "sav": []}


@pytest.mark.parametrize("categorical", [False, True])
def test_blocks_of_a_file_read_whole_are_the_decoded_blocks(tmp_path: Path,
                                                            categorical: bool) -> None:
    """Once a file is read whole, its blocks are cut from it: the frames decoding each block
    gives (a categorical column's blocks are still decoded, with their own categories)."""
    from dhsurvey.release.formats.parquet import ParquetSource

    frame = pd.DataFrame({"a": pd.array([1, None, 3, 4, 5], dtype="Int64"),
                          "c": pd.array(["p", None, "r", "s", "t"], dtype="string"),
                          "d": [0.5, 1.5, np.nan, 2.0, 3.0]})
    if categorical:
        frame["b"] = pd.Categorical(["x", "x", "y", "y", None])
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=2)
    decoded = list(ParquetSource(tmp_path / "t.parquet", 2).batches(10))
    source = ParquetSource(tmp_path / "t.parquet", 2)
    source.column("a")  # a usual file is read whole at its first column
    assert source._whole is not None
    cut = list(source.batches(10))
    assert len(cut) == len(decoded) == 3
    for ours, theirs in zip(cut, decoded, strict=True):
        pd.testing.assert_frame_equal(ours, theirs)


def test_float_cells_formatted_once_per_value_are_each_values_text() -> None:
    """A block's float columns are formatted one distinct value at a time; each cell's text
    is the one formatting it alone gives (shortest round trip, -0.0 signed, NaN and pd.NA
    empty), numpy and masked columns alike."""
    from dhsurvey.release.formats import csv as csv_format

    rng = np.random.default_rng(4)
    n = 500
    weights = rng.choice([0.0, 1.5, 2.0 / 3.0, 1e16, 1e-5, 123456.789], n)
    table = pd.DataFrame({
        "w": weights,
        "rep": np.where(rng.random(n) < 0.5, weights, -0.0),
        "odd": rng.choice([np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308], n),
        "masked": pd.array(np.where(rng.random(n) < 0.2, None, rng.random(n)), dtype="Float64"),
        "id": [f"r{i}" for i in range(n)],
    })
    plans = {"w": "float", "rep": "float", "odd": "float", "masked": "float", "id": "string"}
    expected = {c: [None if v != v else float.__repr__(v)
                    for v in table[c].to_numpy(dtype="float64", na_value=np.nan).tolist()]
                for c in ("w", "rep", "odd", "masked")}
    got = csv_format._float_cells(table, [0, 1, 2, 3])
    assert [got[i] for i in range(4)] == list(expected.values())
    assert "-0.0" in got[1] and None in got[2] and None in got[3]
    # And the block, float columns together, is the text of each column formatted alone.
    block = csv_format._block(table, plans, header=True).decode()
    assert block.splitlines()[1] == ",".join(
        "" if v is None else v for v in
        [expected[c][0] for c in ("w", "rep", "odd", "masked")] + [table["id"][0]])


@pytest.mark.parametrize("width", [1, 2, 5])
def test_rows_joined_directly_are_what_the_csv_writer_writes(
        width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of several fields are joined without :func:`csv.writer`, quoting as it quotes
    (delimiter, quote, either line end; quotes doubled; missing empty, NUL and other
    characters as they are), a few rows at a time; a table of one column still goes through
    the writer."""
    import csv

    from dhsurvey.release.formats import csv as csv_format

    monkeypatch.setattr(csv_format, "_ROWS_AT_ONCE", 7)  # 300 rows in 43 pieces

    rng = np.random.default_rng(width)
    pieces = ["a", "", " ", ",", '"', "\r", "\n", "\r\n", "\x00", "é", "\u2028", "=1+2", "x y"]
    n = 300
    table = pd.DataFrame({f"c{j}": pd.array(
        [None if rng.random() < 0.15 else "".join(rng.choice(pieces, rng.integers(0, 4)))
         for _ in range(n)], dtype="string") for j in range(width)})
    last = f"c{width - 1}"  # with runs of missing cells
    table[last] = table[last].where(pd.Series(rng.random(n) < 0.5), pd.NA)
    plans = {c: "string" for c in table.columns}
    records = csv_format._Records()
    writer = csv.writer(records, lineterminator="\r\n")
    writer.writerow([str(c) for c in table.columns])
    writer.writerows(zip(*(csv_format._cells(table[c], "string") for c in table.columns),
                         strict=True))
    expected = "".join(records.parts)
    assert '"' in expected and "," * (width > 1) in expected
    assert csv_format._block(table, plans, header=True).decode("utf-8") == expected
