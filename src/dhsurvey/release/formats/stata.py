"""Release Stata files: .dta format 118 (Stata 14+, UTF-8), written a block of rows at a time.

Don't know (98) and refused (99) answers are written as extended missing ``.d`` and ``.r`` and
the value labels label those letters, so ``tab x, missing`` still shows why an answer is missing
while ``mean x`` leaves it out. Strings of 2045 bytes or more become strL; missing strings are ""
as Stata has no other. Times are UTC (``%tc``), dates ``%td``.

How: pyreadstat writes only whole frames, so a template-only file (:mod:`.readstat`) gives the
header, labels and trailer, and every block of rows is written behind the template row, whose
row is cut off; the rows are spliced into the ``<data>`` section and the row count and the map
of section offsets patched. strL values are stored apart from the rows (``<strls>``) under the
(variable, observation) where each distinct value first occurs; the blocks' references are
renumbered to the whole table's, so the file is byte for byte what pyreadstat writes for the
whole frame.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pandas as pd

from dhsurvey.io import atomic_open
from dhsurvey.release.encode import Layout, byte_lengths, convert_block
from dhsurvey.release.formats.parquet import ParquetSource
from dhsurvey.release.formats.readstat import (
    READSTAT_ROWS,
    header_stamp,
    scratch_write,
    template_frame,
    template_value,
)
from dhsurvey.release.labels import LABEL_LIMIT, ReleaseError, truncate

#: Stata's `long` range (larger values are reserved for missing): codes outside go as double.
_STATA_LONG = (-2_147_483_647, 2_147_483_620)
#: .dta 118 variable types: strL, and the bytes of each numeric type (str# is its width).
_STRL = 32_768
_NUMBER_BYTES = {65_526: 8, 65_527: 4, 65_528: 4, 65_529: 2, 65_530: 1}
#: Bytes of a variable or label-set name field.
_NAME_FIELD = 129


@dataclass(frozen=True)
class StataColumn:
    """How a column is stored in a .dta, decided on the whole column."""

    storage: str  # tagged | long | double | string | date | datetime
    width: int = 0  # bytes of the longest string (string storage)


def stata_column(values: pd.Series, kind: str, tags: Mapping[int, str]) -> StataColumn:
    """Stata storage of a whole converted column
    (:func:`~dhsurvey.release.encode.column_values`); ``tags`` its extended-missing letters."""
    if tags:
        # Tagged columns go as double: pyreadstat (≤ 1.3.7) misreads a plain missing that
        # follows a tagged one in an int column; Stata reads either the same way.
        return StataColumn("tagged")
    if kind == "int" and _fits_long(values.to_numpy(dtype="float64")):
        return StataColumn("long")
    if kind in ("int", "float", "empty"):
        # pyreadstat takes a column's type from its first value: a leading missing value
        # (a suppressed cell) in an object column made it a string. Doubles hold the codes.
        return StataColumn("double")
    if kind == "string":
        lengths = byte_lengths(values)
        return StataColumn("string", int(lengths.max()) if len(lengths) else 0)
    return StataColumn(kind)


def _fits_long(values: np.ndarray) -> bool:
    """Whole numbers in Stata's long range, none missing (NaN fails every comparison)."""
    low, high = _STATA_LONG
    return bool(((values >= low) & (values <= high) & (values == np.floor(values))).all())


def _values(values: np.ndarray, column: StataColumn, tags: Mapping[int, str]) -> np.ndarray:
    """Rows of a converted column (:func:`~dhsurvey.release.encode.column_array`) as
    pyreadstat writes them with the column's storage."""
    if column.storage == "tagged":
        return _tagged(values, tags)
    if column.storage == "long":
        # Whole numbers in the long range without a missing one (the whole column's storage
        # says so): int32, which pyreadstat writes as Stata long, as it does python ints
        # (int64 it would write as double).
        return values.astype("int32")
    if column.storage == "double" and values.dtype != np.float64:
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values


def _tagged(values: np.ndarray, tags: Mapping[int, str]) -> np.ndarray:
    """Codes as python floats, missing as None and each tagged code (the code's whole part)
    as its letter: the mixed column pyreadstat writes as Stata extended missing values."""
    numbers = values.astype("float64")
    if bool(np.isinf(numbers).any()):  # int() of an infinite code fails, as it must
        return np.array([None if np.isnan(v) else tags.get(int(v), float(v)) for v in numbers],
                        dtype=object)
    out = numbers.astype(object)
    whole = np.trunc(numbers)
    for code, tag in tags.items():
        out[whole == code] = tag
    out[np.isnan(numbers)] = None
    return out


def _alias(names: list[str]) -> dict[str, str]:
    """Placeholder names keep pyreadstat's label-set names short; :func:`_patch` restores them."""
    return {name: f"v{i + 1}" for i, name in enumerate(names)}


def _frame(block: pd.DataFrame, layout: Layout, columns: Mapping[str, StataColumn],
           template: Mapping[str, Any]) -> pd.DataFrame:
    """A block of rows behind the template row, as the frame handed to pyreadstat
    (placeholder names)."""
    converted = convert_block(block, layout)
    alias = _alias(layout.names)
    return template_frame({alias[n]: _values(converted[n], columns[n], layout.missing.get(n, {}))
                           for n in layout.names}, template)


def _options(layout: Layout) -> dict[str, Any]:
    """pyreadstat.write_dta's labels and options for a table."""
    alias = _alias(layout.names)
    # In column order, as pyreadstat numbers the label sets in the order it is given them.
    dta_labels = {
        alias[name]: {layout.missing.get(name, {}).get(code, code): text
                      for code, text in layout.value_labels[name].items()}
        for name in layout.names if name in layout.value_labels
    }
    return {
        "file_label": truncate(layout.title, LABEL_LIMIT),
        "column_labels": {alias[n]: truncate(layout.labels[n]) or None for n in layout.names},
        "version": 14,  # Stata 14/15 → file format 118
        "variable_value_labels": dta_labels,
        "missing_user_values": {alias[n]: sorted(layout.missing[n].values())
                                for n in layout.names if n in layout.missing},
    }


# -- the layout of a readstat .dta 118 -----------------------------------------------------------


@dataclass(frozen=True)
class _Dta:
    """Where things are in a readstat .dta 118: byte order, the fields of the header, the map
    of section offsets and the layout of a row."""

    order: str  # struct byte order
    variables: int
    n_at: int  # the row count (8 bytes)
    stamp_at: int  # the timestamp's length byte
    map_at: int  # the 14 section offsets
    offsets: tuple[int, ...]
    width: int  # bytes of a row
    strls: tuple[tuple[int, int], ...]  # (byte in a row, variable number) of strL columns
    types: tuple[int, ...] = ()  # each variable's type code (str# is its width)

    @classmethod
    def read(cls, data: bytes | bytearray) -> _Dta:
        def tag(pos: int, text: bytes) -> int:
            if data[pos:pos + len(text)] != text:
                raise ReleaseError("unexpected .dta layout from pyreadstat (expected release "
                                   f"118, no {text.decode()} at byte {pos})")
            return pos + len(text)

        pos = tag(0, b"<stata_dta><header><release>118</release><byteorder>")
        order = "<" if data[pos:pos + 3] == b"LSF" else ">"
        pos = tag(pos + 3, b"</byteorder><K>")
        (k,) = struct.unpack(order + "H", data[pos:pos + 2])
        n_at = tag(pos + 2, b"</K><N>")
        pos = tag(n_at + 8, b"</N><label>")
        (label_len,) = struct.unpack(order + "H", data[pos:pos + 2])
        stamp_at = tag(pos + 2 + label_len, b"</label><timestamp>")
        map_at = tag(stamp_at + 1 + data[stamp_at], b"</timestamp></header><map>")
        offsets = struct.unpack(order + "14Q", data[map_at:map_at + 14 * 8])
        for index, section in ((2, b"<variable_types>"), (3, b"<varnames>"),
                               (6, b"<value_label_names>"), (9, b"<data>"), (10, b"<strls>"),
                               (11, b"<value_labels>")):
            tag(offsets[index], section)
        at = offsets[2] + len(b"<variable_types>")
        width, strls = 0, []
        types = struct.unpack(order + f"{k}H", data[at:at + 2 * k])
        for number, kind in enumerate(types, 1):
            if kind == _STRL:
                strls.append((width, number))
            width += 8 if kind == _STRL else _NUMBER_BYTES.get(kind, kind)
        return cls(order, k, n_at, stamp_at, map_at, offsets, width, tuple(strls), types)

    def rows(self, data: bytes | bytearray) -> bytes:
        """The bytes between ``<data>`` and ``</data>``."""
        return bytes(data[self.offsets[9] + len(b"<data>"):self.offsets[10] - len(b"</data>")])

    def long_strings(self, data: bytes | bytearray) -> dict[tuple[int, int], bytes]:
        """The strL values (GSOs) by (variable, observation): type, length and bytes."""
        out: dict[tuple[int, int], bytes] = {}
        pos, end = self.offsets[10] + len(b"<strls>"), self.offsets[11] - len(b"</strls>")
        while pos < end:
            if data[pos:pos + 3] != b"GSO":
                raise ReleaseError("unexpected .dta layout from pyreadstat (strL values)")
            v, o = struct.unpack(self.order + "IQ", data[pos + 3:pos + 15])
            (length,) = struct.unpack(self.order + "I", data[pos + 16:pos + 20])
            out[(v, o)] = bytes(data[pos + 15:pos + 20 + length])
            pos += 20 + length
        return out


def _patch(data: bytearray, names: list[str]) -> None:
    """Fix a readstat .dta 118 in place: header timestamp, real names, label-set names.

    readstat stamps the wall clock into the header, and pyreadstat names each value-label set
    ``<variable><counter>``, which breaks Stata's 32-character limit for long names. The
    variables are therefore written as ``v1``, ``v2`` … and their real names (and a label set
    named like its variable, Stata's own convention) are put back into the fixed-width fields
    here, so no section moves and the map of offsets stays valid.
    """
    dta = _Dta.read(data)
    if dta.variables != len(names):
        raise ReleaseError(f".dta has {dta.variables} variables, expected {len(names)}")
    if data[dta.stamp_at] == 17:
        data[dta.stamp_at + 1:dta.stamp_at + 18] = header_stamp("%d %b %Y %H:%M")

    def field_at(start: int, i: int) -> tuple[int, bytes]:
        at = start + i * _NAME_FIELD
        return at, bytes(data[at:at + _NAME_FIELD]).split(b"\0", 1)[0]

    def put(at: int, text: bytes) -> None:
        data[at:at + _NAME_FIELD] = text.ljust(_NAME_FIELD, b"\0")

    varnames = dta.offsets[3] + len(b"<varnames>")
    label_names = dta.offsets[6] + len(b"<value_label_names>")
    renamed: dict[bytes, bytes] = {}
    for i, name in enumerate(names):
        put(field_at(varnames, i)[0], name.encode("utf-8"))
        at, label_set = field_at(label_names, i)
        if label_set:
            renamed[label_set] = name.encode("utf-8")
            put(at, renamed[label_set])
    pos = dta.offsets[11] + len(b"<value_labels>")
    while data[pos:pos + 5] == b"<lbl>":
        (length,) = struct.unpack(dta.order + "i", data[pos + 5:pos + 9])
        at = pos + 9
        label_set = bytes(data[at:at + _NAME_FIELD]).split(b"\0", 1)[0]
        put(at, renamed.get(label_set, label_set))
        pos = at + _NAME_FIELD + 3 + length + len(b"</lbl>")


class _LongStrings:
    """The strL values of the blocks, numbered as in one file of the whole table.

    readstat stores each distinct strL value once, under the (variable, observation) of its
    first occurrence in row order, in that order; a block's file numbers them from its own
    first (template) row. Each block's references are renumbered here and every value not seen
    in an earlier block is appended to ``out``. Memory: a 16-byte digest per distinct value.
    """

    def __init__(self, dta: _Dta, out: BinaryIO) -> None:
        self.dta = dta
        self.out = out
        self.seen: dict[bytes, bytes] = {}  # digest of a value → its 8-byte reference
        self.endian: Literal["little", "big"] = "little" if dta.order == "<" else "big"

    def _ref(self, v: int, o: int) -> bytes:
        return v.to_bytes(2, self.endian) + o.to_bytes(6, self.endian)  # format 118: 2 + 6

    def renumber(self, rows: bytes, part: bytes, first: int) -> bytes:
        """``rows`` of the block file ``part`` whose first row is row ``first`` (from 0)."""
        values = _Dta.read(part).long_strings(part)
        width, data = self.dta.width, bytearray(rows)
        for i in range(len(rows) // width):
            for at, v in self.dta.strls:
                cell = i * width + at
                local = (int.from_bytes(data[cell:cell + 2], self.endian),
                         int.from_bytes(data[cell + 2:cell + 8], self.endian))
                value = values[local]
                digest = hashlib.blake2b(value, digest_size=16).digest()
                ref = self.seen.get(digest)
                if ref is None:
                    ref = self.seen[digest] = self._ref(v, first + i + 1)
                    self.out.write(b"GSO" + struct.pack(self.dta.order + "IQ", v, first + i + 1)
                                   + value)
                data[cell:cell + 8] = ref
        return bytes(data)


#: .dta 118 type codes of double and long, and Stata's largest double.
_DOUBLE, _LONG = 65_526, 65_528
_MAX_DOUBLE = 8.988465674311579e307
#: A double's system missing (.) and the step from one extended missing letter to the next.
_MISSING = 0x7FE0_0000_0000_0000
_LETTER = 1 << 40


def _direct(layout: Layout, dta: _Dta) -> bool:
    """Whether the rows can be laid out here (:func:`_encode`) rather than by pyreadstat:
    numbers stored as double or long and strings as str#; dates and times take pyreadstat's
    conversion, strL its numbering."""
    return dta.order == "<" and len(dta.types) == len(layout.names) and all(
        layout.kinds[n] in ("int", "float", "empty", "string")
        and (kind in (_DOUBLE, _LONG) or kind <= 2045)
        for n, kind in zip(layout.names, dta.types, strict=True))


def _encode(columns: Mapping[str, np.ndarray], layout: Layout, dta: _Dta,
            tags: Mapping[str, Mapping[int, str]], rows: int) -> bytes | None:
    """Rows of converted columns (:func:`~dhsurvey.release.encode.column_array`) as readstat
    lays them out in a little-endian .dta: a double in 8 bytes (missing: ``.``, a tagged code
    its letter), a long in 4, a str# NUL-padded. None where readstat would differ (a NUL in a
    string, which it cuts there; a number Stata cannot hold), so pyreadstat writes the block."""
    parts = []
    for name, kind in zip(layout.names, dta.types, strict=True):
        values = columns[name]
        if kind == _LONG:
            parts.append(np.asarray(values, dtype="float64").astype("<i4").view(np.uint8)
                         .reshape(rows, 4))
            continue
        if kind == _DOUBLE:
            numbers = np.asarray(values, dtype="float64")
            if bool((np.abs(numbers) > _MAX_DOUBLE).any()):
                return None
            words = numbers.astype("<f8").view("<u8").copy()
            whole = np.trunc(numbers)
            for code, letter in tags.get(name, {}).items():
                words[whole == code] = _MISSING + (ord(letter) - ord("a") + 1) * _LETTER
            words[np.isnan(numbers)] = _MISSING
            parts.append(words.view(np.uint8).reshape(rows, 8))
            continue
        if any("\0" in text for text in values):
            return None
        data = b"".join(text.encode("utf-8").ljust(kind, b"\0") for text in values)
        if len(data) != rows * kind:
            raise ReleaseError(f"{name}: a string is wider than its Stata column")
        parts.append(np.frombuffer(data, dtype=np.uint8).reshape(rows, kind))
    return np.hstack(parts).tobytes() if parts else b""


def stream_dta(source: ParquetSource, layout: Layout, columns: Mapping[str, StataColumn],
               path: str | Path) -> Path:
    """Write the .dta of ``source`` atomically, :data:`~.readstat.READSTAT_ROWS` rows at a
    time, with the whole table's layout and Stata storage of its columns."""
    import pyreadstat

    options = _options(layout)
    alias = _alias(layout.names)
    template = {alias[n]: template_value(layout.kinds[n], layout.items[n], columns[n].storage,
                                         columns[n].width)
                for n in layout.names}

    def write(block: pd.DataFrame) -> bytes:
        return scratch_write(pyreadstat.write_dta, _frame(block, layout, columns, template),
                             options)

    # Header, labels and trailer from a template-only file; its one row gives the row width.
    head = bytearray(write(source.empty()))
    _patch(head, layout.names)
    dta = _Dta.read(head)
    if len(dta.rows(head)) != dta.width:
        raise ReleaseError(f"{Path(path).name}: unexpected .dta row width from pyreadstat")
    head[dta.n_at:dta.n_at + 8] = struct.pack(dta.order + "Q", source.rows)
    # Rows laid out here where that gives pyreadstat's template row (checked), else by it.
    direct = _direct(layout, dta) and _encode(
        {n: np.array([template[alias[n]]], dtype=object if layout.kinds[n] == "string"
                     else "float64") for n in layout.names},
        layout, dta, layout.missing, 1) == dta.rows(head)
    with atomic_open(path) as fh, tempfile.TemporaryFile(prefix="dhsurvey-strls-") as strls:
        fh.write(head[:dta.offsets[9] + len(b"<data>")])
        long_strings = _LongStrings(dta, strls)
        done = 0
        for block in source.batches(READSTAT_ROWS):
            encoded = _encode(convert_block(block, layout), layout, dta, layout.missing,
                              len(block)) if direct else None
            if encoded is not None:
                fh.write(encoded)
                done += len(block)
                continue
            part = write(block)
            rows = _Dta.read(part).rows(part)
            if len(rows) != dta.width * (len(block) + 1):
                raise ReleaseError(f"{Path(path).name}: rows of a block are not {dta.width} "
                                   "bytes wide")
            rows = rows[dta.width:]
            fh.write(long_strings.renumber(rows, part, done) if dta.strls else rows)
            done += len(block)
        fh.write(b"</data>")
        strls_at = fh.tell()
        fh.write(b"<strls>")
        strls.seek(0)
        shutil.copyfileobj(strls, fh)
        fh.write(b"</strls>")
        shift = fh.tell() - dta.offsets[11]
        fh.write(head[dta.offsets[11]:])
        fh.seek(dta.map_at)
        fh.write(struct.pack(dta.order + "14Q", *dta.offsets[:10], strls_at,
                             *(o + shift for o in dta.offsets[11:])))
    return Path(path)


__all__ = ["StataColumn", "stata_column", "stream_dta"]
