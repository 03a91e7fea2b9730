"""Read the written release files back and report every identifier found in them.

Why after writing: a release is what is in its files, not what the tables held; a writer
adding labels, notes or metadata could carry a value the anonymisation dropped. Every file
is read as the format stores it (Parquet, CSV, Stata, SPSS, Excel, text), plus the raw
bytes of the binary statistical formats.

Why streaming and set-based: at a million records the release files hold tens of millions
of cells and the restricted values (every instanceID) number millions. Parquet is read one
column of one row group at a time, CSV, Stata and SPSS in chunks of rows, text line by
line; each distinct string is examined once per scan (columns repeat a few codes, and the
same labels recur across a release's formats and tables); restricted values are matched
through a token index (:class:`~dhsurvey.anonymise.identifiers.RestrictedValues`) and
patterns only where a cheap test says one may be
(:func:`~dhsurvey.anonymise.identifiers.pattern_hits`).

Findings say file, where, column, row (the first occurrence), kind, the index of the
restricted value matched and how often it occurs; never the value itself. They come in
the order a reading of the file cell by cell (row by row for CSV) first meets them.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from dhsurvey.anonymise.identifiers import RestrictedValues, mask, may_hold, pattern_hits
from dhsurvey.errors import DhsurveyError

#: Rows per chunk of a CSV, Stata or SPSS file and per batch of a Parquet column.
CHUNK_ROWS = 131_072
#: Characters of a binary file (decoded latin-1) matched at once by the raw-bytes scan.
BYTES_BLOCK = 1 << 22
#: Bytes of release files from which a scan spreads its files over the cores.
PARALLEL_BYTES = 32 << 20
#: Distinct strings whose result a scan remembers across columns and files.
_MEMORY = 200_000
#: Distinct strings of a column chunk looked at one by one (through the memo) rather than
#: first sifted in Arrow, whose calls cost more than a few dictionary lookups.
_FEW = 512
#: Line ends :meth:`str.splitlines` knows.
_LINE_ENDS = ("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")

Hit = tuple[str, str, int | None]  # (kind, matched text, restricted index)
#: What the memo holds for a text sifted clean (shared; never changed).
_CLEAN: list[Hit] = []
Order = tuple[Any, ...]


class _Findings:
    """The findings of one file: one per (kind, column, restricted value or pattern text),
    counted; each sorted by where a cell-by-cell reading of the file first meets it."""

    def __init__(self, path: Path, restricted: RestrictedValues,
                 memo: dict[str, list[Hit]] | None = None) -> None:
        self.path = path
        self.restricted = restricted
        self.found: list[tuple[Order, dict[str, Any]]] = []
        self._seen: set[tuple[Any, ...]] = set()
        self._first: dict[tuple[Any, ...], dict[str, Any]] = {}
        #: What each distinct string holds, shared by the files of one scan: the same codes,
        #: labels and lines recur across a release's formats and tables.
        self.memo: dict[str, list[Hit]] = {} if memo is None else memo

    def hits(self, text: str) -> list[Hit]:
        """Restricted values, then patterns, in one string (a cell, a label, a line)."""
        found = self.memo.get(text)
        if found is None:
            found = [("restricted", m, i) for m, i in self.restricted.find(text.casefold())]
            found += [(kind, m, None) for kind, m in pattern_hits(text)]
            if len(self.memo) >= _MEMORY:
                self.memo.clear()
            self.memo[text] = found
        return found

    def sift(self, texts: list[str]) -> Iterable[int]:
        """Positions of the ``texts`` that may hold a hit; the rest hold none. A text the
        memo knows is decided by it; of the others, a few are all kept (looked at one by one,
        then remembered) and many are sifted in Arrow
        (:func:`~dhsurvey.anonymise.identifiers.may_hold`), those found clean remembered while
        the memo has room: the same numbers and labels recur across the columns and formats
        of a release."""
        import pyarrow as pa

        memo = self.memo
        fresh = [i for i, text in enumerate(texts) if text not in memo]
        if len(fresh) <= _FEW:
            return fresh if len(fresh) == len(texts) else \
                [i for i, text in enumerate(texts) if memo.get(text, True)]
        try:
            array = pa.array([texts[i] for i in fresh], type=pa.string())
        except (pa.ArrowException, UnicodeError):  # e.g. a lone surrogate: each looked at
            return [i for i, text in enumerate(texts) if memo.get(text, True)]
        maybe = may_hold(array, self.restricted)
        room = _MEMORY - len(memo)
        for j in np.flatnonzero(~maybe)[:max(room, 0)].tolist():
            memo[texts[fresh[j]]] = _CLEAN
        flagged = {fresh[j] for j in np.flatnonzero(maybe).tolist()}
        return [i for i, text in enumerate(texts)
                if i in flagged or memo.get(text)]

    def add(self, hits: Sequence[Hit], where: str, column: Any, row: Any, order: Order,
            times: int = 1) -> None:
        """Record the ``hits`` of a string met ``times`` times, first at ``row``. Repeats
        count on the first finding of their kind, column and restricted value."""
        for seq, (kind, text, restricted) in enumerate(hits):
            key = (kind, column, restricted, text if restricted is None else None)
            group = key[:3]
            if key in self._seen:
                self._first[group]["count"] += times
                continue
            self._seen.add(key)
            finding = {"file": str(self.path), "where": where, "column": column, "row": row,
                       "kind": kind, "restricted_index": restricted, "excerpt": mask(text),
                       "count": 1}
            self.found.append(((*order, seq), finding))
            first = self._first.setdefault(group, finding)
            first["count"] += times - 1

    def result(self) -> list[dict[str, Any]]:
        return [f for _, f in sorted(self.found, key=lambda x: x[0])]


class _Column:
    """One column read in chunks: each distinct string examined once per chunk (and
    remembered across chunks while there are few), findings at its first row.

    ``order(row)`` places a finding among the file's; ``header`` names the ``where`` of
    row 0 when the header is the first row (CSV).
    """

    def __init__(self, findings: _Findings, column: Any, where: str,
                 order: Callable[[int], Order], header: str | None = None) -> None:
        self.findings = findings
        self.column = column
        self.where = where
        self.order = order
        self.header = header

    def hits(self, text: str) -> list[Hit]:
        return self.findings.hits(text)

    def chunk(self, texts: Any, times: np.ndarray, offset: int,
              first_rows: Callable[[list[str]], dict[str, int]]) -> None:
        """``texts``: the distinct strings of a chunk starting at row ``offset`` (Arrow without
        nulls, or a list), in order of first appearance; ``times`` how often each occurs
        there; ``first_rows`` gives the position in the chunk of some of them."""
        if isinstance(texts, list):  # not Arrow: each looked at
            at, picked = np.arange(len(texts)), texts
        elif len(texts) <= _FEW:  # a few codes or labels: looked up in the scan's memo
            at, picked = np.arange(len(texts)), texts.to_pylist()
        else:
            at = np.flatnonzero(may_hold(texts, self.findings.restricted))
            picked = texts.take(at).to_pylist()
        found = [(text, int(times[i]), hits) for i, text in zip(at, picked, strict=True)
                 if text for hits in [self.hits(text)] if hits]
        if not found:
            return
        rows = first_rows([text for text, _, _ in found])
        for text, n, hits in found:
            row = offset + rows[text]
            if self.header is not None and row == 0:
                self.findings.add(hits, self.header, self.column, None, self.order(row), n)
            else:
                self.findings.add(hits, self.where, self.column, row, self.order(row), n)


def _ordered(*head: Any) -> Callable[[int], Order]:
    """Findings of a column read down: after ``head`` (section, column), by row."""
    return lambda row: (*head, row)


def _row_major(col_no: int) -> Callable[[int], Order]:
    """Findings of a file read across (CSV): by row, then column."""
    return lambda row: (row, col_no)


# ------------------------------------------------------------------------ values of cells


def _cell_text(value: Any) -> str | None:
    """A cell as the scan reads it: numbers, booleans, dates and missing values are not
    text (an identifier is written as text)."""
    if value is None or value is pd.NA or isinstance(value, bool | int | float | np.number):
        return None
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return None
    return str(value)


def _texts(values: Iterable[Any]) -> list[str | None]:
    return [v if type(v) is str else _cell_text(v) for v in values]


def _list_chunk(column: _Column, values: Sequence[str | None], offset: int) -> None:
    """A chunk of a column as Python values (``None``: not text)."""

    def first_rows(wanted: list[str]) -> dict[str, int]:
        want = set(wanted)
        out: dict[str, int] = {}
        for i, v in enumerate(values):
            if v in want and v not in out:
                out[v] = i
                if len(out) == len(want):
                    break
        return out

    counts = Counter(values)
    counts.pop(None, None)
    texts = cast(list[str], list(counts))
    at = list(column.findings.sift(texts))
    times = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    column.chunk([texts[i] for i in at], times[at], offset, first_rows)


def _arrow_chunk(column: _Column, array: Any, offset: int) -> None:
    """A chunk of an Arrow string column, counted in Arrow (no Python string per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    counted = pc.value_counts(array)  # in order of first appearance
    texts, times = counted.field("values"), counted.field("counts")
    if texts.null_count:
        valid = texts.is_valid()
        texts, times = texts.filter(valid), times.filter(valid)

    def first_rows(wanted: list[str]) -> dict[str, int]:
        at = pc.index_in(array, value_set=pa.array(wanted, type=array.type))
        codes = at.fill_null(-1).to_numpy()
        rows = np.flatnonzero(codes >= 0)
        _, first = np.unique(codes[rows], return_index=True)
        return {wanted[int(codes[rows[j]])]: int(rows[j]) for j in first}

    column.chunk(texts, times.to_numpy(), offset, first_rows)


# ------------------------------------------------------------------------------- formats


def _frame_chunks(findings: _Findings, chunks: Iterable[pd.DataFrame], where: str,
                  names: Sequence[Any]) -> None:
    """A table read in chunks of rows (Stata, SPSS): each header once, then string cells.
    ``names``: every column of the file, in order (the chunks may hold only some)."""
    number = {col: i for i, col in enumerate(names)}
    for col_no, col in enumerate(names):
        findings.add(findings.hits(str(col)), f"{where}:header", col, None, (0, col_no, 0))
    columns: dict[Any, _Column] = {}
    offset = 0
    for chunk in chunks:
        for col in chunk.columns:
            if col not in columns:
                columns[col] = _Column(findings, col, where, _ordered(0, number[col], 1))
            series = chunk[col]
            if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series) or \
                    pd.api.types.is_datetime64_any_dtype(series):
                continue
            _list_chunk(columns[col], _texts(series.to_numpy(dtype=object)), offset)
        offset += len(chunk)


def _arrow_kind(kind: Any) -> str:
    """How a Parquet column is read (as pandas would show it): ``skip`` (numbers, booleans,
    timestamps, dates), ``strings``, ``categories`` (dictionary-encoded: only the
    categories) or ``objects`` (anything else, as the text of each value)."""
    import pyarrow.types as t

    if t.is_integer(kind) or t.is_floating(kind) or t.is_boolean(kind) or \
            t.is_timestamp(kind) or t.is_date(kind) or t.is_null(kind):
        return "skip"
    if t.is_string(kind) or t.is_large_string(kind) or t.is_string_view(kind):
        return "strings"
    if t.is_dictionary(kind):
        return "categories"
    return "objects"


def _scan_parquet(findings: _Findings, path: Path) -> None:
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    for key, value in (source.schema_arrow.metadata or {}).items():
        text = _decode(key) + "\n" + _decode(value)
        _text_lines(findings, text.splitlines(), "parquet:metadata", (0, len(findings.found)))
    for col_no, field in enumerate(source.schema_arrow):
        name = field.name
        findings.add(findings.hits(str(name)), "parquet:header", name, None, (1, col_no, 0))
        kind = _arrow_kind(field.type)
        if kind == "skip":
            continue
        column = _Column(findings, name, "parquet", _ordered(1, col_no, 1))
        categories: list[str] = []
        offset = 0
        for batch in source.iter_batches(batch_size=CHUNK_ROWS, columns=[name]):
            array = batch.column(0)
            if kind == "strings":
                _arrow_chunk(column, array, offset)
            elif kind == "categories":
                categories += [t for t in _texts(array.dictionary.to_pylist())
                               if t is not None and t not in categories]
            else:
                _list_chunk(column, _texts(array.to_pandas().to_numpy(dtype=object)), offset)
            offset += len(array)
        for i, text in enumerate(categories):  # each category once, in order, no row
            findings.add(column.hits(text), "parquet:categories", name, None, (1, col_no, 1, i))


def _csv_rows(handle: Iterable[str]) -> Iterator[list[list[str]]]:
    chunk: list[list[str]] = []
    for row in csv.reader(handle):
        chunk.append(row)
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _scan_csv(findings: _Findings, path: Path, encoding: str) -> None:
    """Cell by cell, header row included; columns named by the header."""
    header: list[str] = []
    columns: dict[int, _Column] = {}
    offset = 0
    with open(path, encoding=encoding, newline="") as handle:
        for chunk in _csv_rows(handle):
            if offset == 0:
                header = chunk[0]
            for col_no, values in enumerate(zip_longest(*chunk)):
                if col_no not in columns:
                    name = header[col_no] if col_no < len(header) else col_no
                    columns[col_no] = _Column(findings, name, "csv", _row_major(col_no),
                                              "csv:header")
                _list_chunk(columns[col_no], values, offset)
            offset += len(chunk)


#: Bytes of a CSV file Arrow parses at a time.
CSV_BLOCK = 1 << 26


class _NotArrow(Exception):
    """A CSV Arrow would read otherwise than Python's :mod:`csv` (a byte-order mark, a blank
    first line) or that is empty."""


def _scan_csv_arrow(findings: _Findings, path: Path) -> None:
    """:func:`_scan_csv` of a UTF-8 file, parsed and counted in Arrow (no Python string per
    cell): every cell a string, the header as row 0, no line skipped. Raises
    ``pyarrow.ArrowInvalid`` for what Arrow cannot read so (ragged rows, invalid UTF-8) and
    :class:`_NotArrow` for a byte-order mark (which :mod:`csv` keeps in the first cell), a
    blank first line or an empty file."""
    import pyarrow as pa
    import pyarrow.csv as pv

    with open(path, "rb") as raw:
        if raw.read(3) == codecs.BOM_UTF8:
            raise _NotArrow(path)
    with open(path, encoding="utf-8", newline="") as handle:
        width = len(next(csv.reader(handle), []))
    if not width:  # empty, or a blank first line
        raise _NotArrow(path)
    names = [f"f{i}" for i in range(width)]
    reader = pv.open_csv(
        path, read_options=pv.ReadOptions(column_names=names, block_size=CSV_BLOCK),
        parse_options=pv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=pv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                          strings_can_be_null=False,
                                          quoted_strings_can_be_null=False))
    columns: list[_Column] = []
    offset = 0
    for batch in reader:
        if not len(batch):
            continue
        if not columns:
            header = [batch.column(i)[0].as_py() for i in range(width)]
            columns = [_Column(findings, header[i], "csv", _row_major(i), "csv:header")
                       for i in range(width)]
        for col_no, column in enumerate(columns):
            _arrow_chunk(column, batch.column(col_no), offset)
        offset += len(batch)


def _text_lines(findings: _Findings, lines: Iterable[str], where: str,
                order: Order = ()) -> None:
    """Line by line (numbered from 1), in chunks sifted first."""
    it = iter(lines)
    done = 0
    while chunk := list(islice(it, CHUNK_ROWS)):
        for i in findings.sift(chunk):
            hits = findings.hits(chunk[i])
            if hits:
                line_no = done + i + 1
                findings.add(hits, where, None, line_no, (*order, line_no))
        done += len(chunk)


def _lines(path: Path, encoding: str, block: int = 1 << 20) -> Iterator[str]:
    """The lines of a file as :meth:`str.splitlines` gives them, decoded block by block."""
    decoder = codecs.getincrementaldecoder(encoding)()
    rest = ""
    with open(path, "rb") as handle:
        while data := handle.read(block):
            lines = (rest + decoder.decode(data)).splitlines(keepends=True)
            # The last line may go on in the next block (a "\r" may be half of "\r\n").
            rest = lines.pop() if lines and (not lines[-1].endswith(_LINE_ENDS)
                                             or lines[-1].endswith("\r")) else ""
            for line in lines:
                yield line.splitlines()[0]
    yield from (rest + decoder.decode(b"", final=True)).splitlines()


def _scan_bytes(findings: _Findings, path: Path, where: str) -> None:
    """Raw bytes of a binary file, decoded latin-1: restricted values only. Patterns (e-mail,
    phone) would match random binary runs ("cz@…"); the file's cells and labels are
    pattern-scanned. Matched in blocks of whole lines; no match spans a line break, and
    findings name the line (as :meth:`str.splitlines` counts them)."""
    if not findings.restricted:
        return
    first_line, rest = 1, b""
    with open(path, "rb") as handle:
        while data := handle.read(BYTES_BLOCK):
            data = rest + data
            cut = _after_last_break(data)
            data, rest = data[:cut], data[cut:]
            if data:
                first_line = _bytes_block(findings, data, first_line, where)
    if rest:
        _bytes_block(findings, rest, first_line, where)


#: Line breaks :meth:`str.splitlines` knows within Latin-1 (``\r\n`` counts once).
_LATIN1_BREAKS = (b"\n", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85")
#: Latin-1 bytes as :meth:`str.casefold` maps their characters, where it maps one to one
#: within Latin-1: A–Z and À–Þ (not ×) to their small letters.
_FOLD = bytes.maketrans(
    bytes([*range(0x41, 0x5B), *range(0xC0, 0xD7), *range(0xD8, 0xDF)]),
    bytes([*range(0x61, 0x7B), *range(0xE0, 0xF7), *range(0xF8, 0xFF)]))


def _casefold_latin1(data: bytes) -> str:
    """``data.decode("latin-1").casefold()``, mostly done on the bytes: ``str.casefold`` of
    a megabyte of binary bytes costs milliseconds. The two Latin-1 characters it maps out of
    one byte each follow: ß → ss, µ → μ."""
    data = data.translate(_FOLD)
    if b"\xdf" in data:
        data = data.replace(b"\xdf", b"ss")
    text = data.decode("latin-1")
    return text.replace("\xb5", "\u03bc") if "\xb5" in text else text


def _after_last_break(data: bytes) -> int:
    """Where the last whole line of ``data`` ends (0: none yet). A final ``\\r`` may be half
    of a ``\\r\\n`` whose ``\\n`` is still unread, so it waits for the next block."""
    end = len(data) - 1 if data.endswith(b"\r") else len(data)
    return max(data.rfind(c, 0, end) for c in _LATIN1_BREAKS) + 1


#: Every byte but the line breaks: what deleting them leaves is the breaks, counted in one pass.
_NOT_BREAKS = bytes(c for c in range(256) if bytes([c]) not in _LATIN1_BREAKS)
#: Latin-1 bytes → the token characters their case folding gives (A–Z → a–z; 0–9 and a–z
#: themselves), a space for every other byte: the token runs of a block without decoding it.
#: Only ß folds to token characters beyond these ("ss"), and is replaced first.
_BYTE_RUNS = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else c + 32 if 65 <= c <= 90 else 32
                   for c in range(256))


def _breaks(data: bytes | str, end: int) -> int:
    """Line breaks in ``data[:end]``, counted in C."""
    if isinstance(data, str):
        return sum(data.count(c.decode("latin-1"), 0, end) for c in _LATIN1_BREAKS) - \
            data.count("\r\n", 0, end)
    part = data if end >= len(data) else data[:end]
    return len(part.translate(None, _NOT_BREAKS)) - part.count(b"\r\n")


def _may_hold_restricted(restricted: RestrictedValues, data: bytes) -> bool:
    """Whether a block of raw bytes may hold a restricted value: a token run of it (as the
    case-folded text has them) indexes one, or a value is found by substring. Most blocks of
    a binary file hold none and are never decoded."""
    if restricted.untokened:
        return True
    if b"\xdf" in data:
        data = data.replace(b"\xdf", b"ss")
    runs = {run.decode("ascii") for run in set(data.translate(_BYTE_RUNS).split())}
    return bool(restricted.indexed(runs))


def _bytes_block(findings: _Findings, data: bytes, first_line: int, where: str) -> int:
    """Restricted values in ``data`` (whole lines of a file, the first numbered
    ``first_line``); returns the number of the line after them."""
    if not _may_hold_restricted(findings.restricted, data):
        return first_line + _breaks(data, len(data))
    text = _casefold_latin1(data)
    for start, end, i in findings.restricted.spans(text, lines=True):
        line_no = first_line + _breaks(text, start)
        findings.add([("restricted", text[start:end], i)], where, None, line_no,
                     (3, line_no, start))
    return first_line + _breaks(data, len(data))


def _labels(findings: _Findings, value_labels: dict[Any, dict[Any, Any]],
            variable_labels: dict[Any, Any], kind: str) -> None:
    """Value labels, then variable labels (after the cells, before the bytes)."""
    n = 0
    for name, mapping in value_labels.items():
        for value in mapping.values():
            text = _cell_text(value)
            if text:
                findings.add(findings.hits(text), f"{kind}:value-labels", name, None, (1, n))
            n += 1
    for name, label in variable_labels.items():
        text = _cell_text(label)
        if text:
            findings.add(findings.hits(text), f"{kind}:variable-labels", name, None, (2, n))
        n += 1


def _scan_readstat(findings: _Findings, path: Path, read: Callable[..., Any],
                   kind: str) -> None:
    """A Stata or SPSS file through ``pyreadstat``'s ``read``: each header, the cells of its
    text columns in chunks, value and variable labels, then the raw bytes. Numbers and dates
    hold no text (they are skipped when read), so the other columns, replicate weights above
    all, are not read."""
    import pyreadstat

    _, meta = read(str(path), metadataonly=True)
    texts = [c for c in meta.column_names if meta.readstat_variable_types.get(c) == "string"]
    chunks = (frame for frame, _ in pyreadstat.read_file_in_chunks(
        read, str(path), chunksize=CHUNK_ROWS, apply_value_formats=False,
        usecols=texts)) if texts else iter(())
    _frame_chunks(findings, chunks, kind, meta.column_names)
    var_labels = dict(zip(meta.column_names, meta.column_labels or [], strict=False))
    value_labels = meta.value_labels if kind == "dta" else meta.variable_value_labels
    _labels(findings, value_labels or {}, var_labels, kind)
    _scan_bytes(findings, path, f"{kind}:bytes")


def _scan_dta(findings: _Findings, path: Path) -> None:
    import pyreadstat

    _scan_readstat(findings, path, pyreadstat.read_dta, "dta")


def _scan_sav(findings: _Findings, path: Path) -> None:
    import pyreadstat

    _scan_readstat(findings, path, pyreadstat.read_sav, "sav")


def _xlsx_texts(path: Path) -> set[str] | None:
    """Every text a cell or sheet name of an xlsx package can hold — shared and inline strings
    (their runs joined), cell values, sheet names — or None when the package cannot be read
    so (the cell-by-cell reading then decides)."""
    import xml.etree.ElementTree as ET
    import zipfile

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    texts: set[str] = set()
    try:
        with zipfile.ZipFile(path) as package:
            for name in (n for n in package.namelist() if n.endswith(".xml")):
                with package.open(name) as handle:
                    for _, element in ET.iterparse(handle):
                        tag = local(element.tag)
                        if tag in ("si", "is"):  # a string's runs, as one text
                            texts.add("".join(t.text or "" for t in element.iter()
                                              if local(t.tag) == "t"))
                            element.clear()
                        elif tag == "v" and element.text:
                            texts.add(element.text)
                        elif tag == "sheet" and element.get("name"):
                            texts.add(element.get("name", ""))
                        elif tag == "row":
                            element.clear()
    except (zipfile.BadZipFile, ET.ParseError, OSError, KeyError, ValueError):
        return None
    return texts


def _xlsx_may_hold(findings: _Findings, path: Path) -> bool:
    """Whether any text of the package holds a hit. Every cell value and sheet name openpyxl
    reads is one of these texts, so when none holds one the cell-by-cell reading (which
    places each finding, and costs seconds for a codebook) would find nothing."""
    found = _xlsx_texts(path)
    if found is None:
        return True
    texts = [text for text in found if text.strip()]
    return any(findings.hits(texts[i]) for i in findings.sift(texts))


def _scan_xlsx(findings: _Findings, path: Path) -> None:
    """Cell by cell, row by row (openpyxl's streaming reader), each distinct text once, when
    a first pass over the package's texts finds something to place."""
    import openpyxl

    if not _xlsx_may_hold(findings, path):
        return
    n = 0
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        for ws in book.worksheets:
            n += 1
            findings.add(findings.hits(ws.title), "xlsx:sheet", None, None, (n,))
            for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
                for c, value in enumerate(values, start=1):
                    text = _cell_text(value)
                    n += 1
                    if not text:
                        continue
                    findings.add(findings.hits(text), f"xlsx:{ws.title}", c, r, (n,))
    finally:
        book.close()


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_BINARY: dict[str, Callable[[_Findings, Path], None]] = {
    ".parquet": _scan_parquet, ".xlsx": _scan_xlsx, ".xlsm": _scan_xlsx, ".dta": _scan_dta,
    ".sav": _scan_sav, ".zsav": _scan_sav}


def _scan_file(path: Path, restricted: RestrictedValues, memo: dict[str, list[Hit]]
               ) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in _BINARY:
        findings = _Findings(path, restricted, memo)
        _BINARY[suffix](findings, path)
        return findings.result()
    if suffix == ".csv":
        import pyarrow as pa

        findings = _Findings(path, restricted, memo)
        try:
            _scan_csv_arrow(findings, path)
            return findings.result()
        except (_NotArrow, UnicodeDecodeError, pa.ArrowInvalid):
            pass  # read again below, by Python's csv
    for encoding in ("utf-8", "latin-1"):  # not UTF-8: the whole file again as latin-1
        findings = _Findings(path, restricted, memo)
        try:
            if suffix in (".csv", ".tsv"):
                _scan_csv(findings, path, encoding)
            else:
                _text_lines(findings, _lines(path, encoding), suffix.lstrip(".") or "text")
        except UnicodeDecodeError:
            continue
        return findings.result()
    raise AssertionError("latin-1 decodes any bytes")


def scan_release(paths: Iterable[str | Path],
                 restricted_values: Iterable[Any]) -> list[dict[str, Any]]:
    """Every occurrence of a restricted value, and every e-mail, phone, UUID or coordinate
    pair in a string cell, in the release files at ``paths``.

    Parquet is read column by column, plus its metadata; xlsx cell by cell; dta and sav in
    chunks of rows with their value and variable labels, plus their raw bytes decoded; csv
    in chunks of rows; md, html and other text line by line (UTF-8, else latin-1).
    Restricted values match case insensitively as whole tokens (not inside a longer word or
    number). Findings say file, column, first row, kind, the index of the restricted value
    matched and how often it occurs, never the value itself.
    """
    from dhsurvey.parallel import forked_map

    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise DhsurveyError("release file not found", code="release-scan", file=path)
    restricted = RestrictedValues(restricted_values)
    # The files are independent: a large release is scanned on every core, the largest file
    # first. Each process keeps its own memo across the files it scans (a cache only: the
    # findings are the same); a small one is scanned here, its files sharing one memo.
    memo: dict[str, list[Hit]] = {}
    large = sum(map(_file_size, files)) >= PARALLEL_BYTES
    return [finding for _, found in forked_map(
        lambda path: _scan_file(path, restricted, memo), files, size=_file_size,
        workers=None if large else 1) for finding in found]


def _file_size(path: Path) -> float:
    return float(path.stat().st_size)


def release_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder``, sorted: what :func:`scan_release` should read."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())
