"""Release SPSS files: .sav (UTF-8, row-compressed), written a block of rows at a time.

98/99 stay as values and are declared missing (``MISSING VALUES x (98, 99)``), so SPSS excludes
them from statistics but still shows them, labelled, in frequency tables. Strings longer than
SPSS's 32,767 bytes are truncated with a :class:`~dhsurvey.release.encode.ReleaseWarning`.
Measurement levels follow the XLSForm type (:func:`measure_level`).

How: SPSS rows have a fixed width, so pyreadstat writes each block of rows uncompressed behind a
template row (:mod:`.readstat`) that forces the whole table's types and string widths; the
rows are cut out and compressed here with readstat's bytecode scheme, and spliced behind the
header of a template-only file whose case counts are patched.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from dhsurvey.forms.model import Item
from dhsurvey.io import atomic_open
from dhsurvey.release.encode import Layout, byte_lengths, convert_block, warn
from dhsurvey.release.formats.parquet import ParquetSource
from dhsurvey.release.formats.readstat import (
    READSTAT_ROWS,
    header_stamp,
    scratch_write,
    template_frame,
    template_value,
)
from dhsurvey.release.labels import ReleaseError, truncate_bytes

#: SPSS string and value-label limits, in bytes.
SPSS_STRING_BYTES = 32_767
_SPSS_VALUE_LABEL_BYTES = 120
#: SPSS system-missing (-DBL_MAX) and eight spaces, as 8-byte words.
_SYSMIS = np.frombuffer(struct.pack("<d", -np.finfo("float64").max), "<u8")[0]
_SPACES = np.frombuffer(b" " * 8, "<u8")[0]
#: Record 7, subtype 16 (64-bit case count): two 8-byte elements follow.
_CASES64 = struct.pack("<4i", 7, 16, 8, 2)


class _Measured(Protocol):
    kind: str
    item: Item | None


def measure_level(column: _Measured) -> str:
    """SPSS measurement level from the XLSForm type: what SPSS offers in dialogs and charts.

    rank and ``likert`` selects are ordinal, other selects (and their dummies) and text nominal,
    numbers and dates scale. ``column`` is anything with the column's ``kind`` and form ``item``.
    """
    return _measure(column.kind, column.item)


def _measure(kind: str, item: Item | None) -> str:
    if item is not None and (item.type == "rank" or (
            item.is_select_one and "likert" in item.appearance)):
        return "ordinal"
    if kind == "string" or (item is not None and item.is_select):
        return "nominal"
    return "scale"


@dataclass(frozen=True)
class SavColumn:
    """How a column is stored in a .sav, decided on the whole column."""

    truncate: bool = False  # some strings exceed SPSS's limit and are cut
    width: int = 0  # bytes of the longest string once cut (string columns)
    format: str | None = None  # print format of whole numbers, wide enough for the largest


def sav_column(name: str, values: pd.Series, kind: str, form_id: str,
               notes: list[str] | None) -> SavColumn:
    """SPSS storage of a whole converted column; warns (and notes) when strings are cut."""
    if kind == "string":
        lengths = byte_lengths(values)
        too_long = lengths > SPSS_STRING_BYTES
        if not bool(too_long.any()):
            return SavColumn(width=int(lengths.max()) if len(lengths) else 0)
        warn(f"{form_id}.{name}: {int(too_long.sum())} value(s) longer than "
             f"{SPSS_STRING_BYTES} bytes truncated for SPSS", notes, stacklevel=4)
        cut = [len(truncate_bytes(s, SPSS_STRING_BYTES).encode("utf-8"))
               for s in values[too_long]]
        return SavColumn(True, max([*cut, *lengths[~too_long].tolist()]))
    if kind == "int":
        numbers = values.to_numpy(dtype="float64")
        finite = np.abs(numbers[~np.isnan(numbers)])
        digits = len(str(int(finite.max()))) if len(finite) else 1
        return SavColumn(format=f"F{min(40, max(digits + 1, 3))}.0")
    return SavColumn()


def _converted(block: pd.DataFrame, layout: Layout,
               columns: Mapping[str, SavColumn]) -> dict[str, np.ndarray]:
    """A block's columns as written: numbers, dates and text (cut where the column says)."""
    converted = convert_block(block, layout)
    return {n: np.array([truncate_bytes(s, SPSS_STRING_BYTES) for s in converted[n]],
                        dtype=object)
            if columns[n].truncate else converted[n]
            for n in layout.names}


def _frame(block: pd.DataFrame, layout: Layout, columns: Mapping[str, SavColumn],
           template: Mapping[str, Any]) -> pd.DataFrame:
    """A block of rows behind the template row, as the frame handed to pyreadstat."""
    return template_frame(_converted(block, layout, columns), template)


#: Longest string readstat stores in one piece (longer ones go in segments).
_SHORT_STRING = 255


def _direct(layout: Layout, columns: Mapping[str, SavColumn]) -> bool:
    """Whether the rows can be laid out here (:func:`_encode`) rather than by pyreadstat:
    numbers and strings of one segment; dates and times take pyreadstat's conversion."""
    return all(layout.kinds[n] in ("int", "float", "empty")
               or (layout.kinds[n] == "string" and columns[n].width <= _SHORT_STRING)
               for n in layout.names)


def _encode(converted: Mapping[str, np.ndarray], layout: Layout,
            columns: Mapping[str, SavColumn], rows: int) -> np.ndarray | None:
    """Uncompressed rows as ``(rows, slots)`` words, as readstat lays them out: a number in
    its 8 bytes (missing: system-missing), a string's UTF-8 bytes padded with spaces to its
    slots. None where readstat would differ (a NUL in a string, which it cuts there; an
    infinite number), so pyreadstat writes that block."""
    parts = []
    for name in layout.names:
        values = converted[name]
        if layout.kinds[name] == "string":
            width = _slots("string", columns[name].width) * 8
            if any("\0" in text for text in values):
                return None
            data = b"".join(text.encode("utf-8").ljust(width, b" ") for text in values)
            if len(data) != rows * width:
                raise ReleaseError(f"{name}: a string is wider than its SPSS column")
            parts.append(np.frombuffer(data, dtype="<u8").reshape(rows, width // 8))
            continue
        numbers = np.asarray(values, dtype="float64")
        if bool(np.isinf(numbers).any()):
            return None
        words = numbers.astype("<f8").view("<u8").copy()
        words[np.isnan(numbers)] = _SYSMIS
        parts.append(words.reshape(rows, 1))
    return np.hstack(parts) if parts else np.zeros((rows, 0), dtype="<u8")


def _options(layout: Layout, columns: Mapping[str, SavColumn]) -> dict[str, Any]:
    """pyreadstat.write_sav's labels and options for a table (row-compressed)."""
    return {
        "file_label": truncate_bytes(layout.title, 64),
        "column_labels": {n: layout.labels[n] or None for n in layout.names},
        "variable_value_labels": {
            name: {code: truncate_bytes(text, _SPSS_VALUE_LABEL_BYTES)
                   for code, text in v.items()}
            for name, v in layout.value_labels.items()
        },
        "missing_ranges": {n: sorted(tags) for n, tags in layout.missing.items()},
        "variable_measure": {n: _measure(layout.kinds[n], layout.items[n]) for n in layout.names},
        "variable_format": {n: c.format for n, c in columns.items() if c.format},
        "row_compress": True,
    }


def _patch(data: bytearray) -> None:
    """Overwrite readstat's creation date and time (header bytes 92-108) with the fixed stamp."""
    if bytes(data[:4]) not in (b"$FL2", b"$FL3"):
        raise ReleaseError("unexpected .sav layout from pyreadstat")
    data[92:109] = header_stamp("%d %b %y%H:%M:%S")


def _slots(kind: str, width: int) -> int:
    """8-byte slots a variable takes in a .sav row (readstat: very long strings in segments of
    252 bytes, each stored in 256; other strings rounded up to 8; numbers one slot)."""
    if kind != "string":
        return 1
    width = max(width, 1)
    if width > 255:
        segments = (width + 251) // 252
        return ((segments - 1) * 256 + (width - (segments - 1) * 252 + 7) // 8 * 8) // 8
    return (width + 7) // 8


def _compress(slots: np.ndarray, text: np.ndarray, last: bool) -> bytes:
    """Rows of 8-byte slots (``(rows, slots)`` little-endian words) compressed as readstat
    does: each row starts a block of 8 command bytes followed by the raw words they announce
    (253); 254 eight spaces, 255 system-missing, 1-251 the whole number code-100; a row ends
    with its zero-padded last block, which is a new block if the row filled the previous one;
    252 ends the file."""
    n, width = slots.shape
    blocks = width // 8 + 1
    codes = np.zeros((n, blocks * 8), dtype=np.uint8)
    if n == 0:
        return b""
    values = slots.view("<f8")
    small = ~text & (values > -100) & (values < 152) & (np.trunc(values) == values)
    raw = np.ones((n, width), dtype=bool)
    raw[small] = False
    part = codes[:, :width]
    part[:] = 253
    with np.errstate(invalid="ignore"):
        part[small] = (values[small] + 100).astype(np.uint8)
    missing = ~text & (slots == _SYSMIS)
    spaces = text & (slots == _SPACES)
    part[missing | spaces] = np.where(missing, 255, 254)[missing | spaces]
    raw &= ~(missing | spaces)
    if last:
        codes[-1, width] = 252
    raw_full = np.zeros((n, blocks * 8), dtype=bool)
    raw_full[:, :width] = raw
    per_block = raw_full.reshape(n, blocks, 8)
    units = 1 + per_block.sum(axis=2)  # a command word and its raw words, per block
    starts = np.cumsum(units.ravel()) - units.ravel()
    out = np.empty(int(units.sum()), dtype="<u8")
    out[starts] = codes.reshape(n, blocks, 8).copy().view("<u8").ravel()
    rank = np.cumsum(per_block, axis=2) - 1
    where = (starts.reshape(n, blocks)[:, :, None] + 1 + rank)[per_block]
    out[where] = slots[raw]
    return out.tobytes()


def _rows(data: bytes, rows: int) -> np.ndarray:
    """The last ``rows`` rows of an uncompressed readstat .sav as ``(rows, slots)`` words."""
    (slots,) = struct.unpack("<i", data[68:72])
    size = rows * slots * 8
    return np.frombuffer(data[len(data) - size:], dtype="<u8").reshape(rows, slots)


def stream_sav(source: ParquetSource, layout: Layout, columns: Mapping[str, SavColumn],
               path: str | Path) -> Path:
    """Write the .sav of ``source`` atomically, :data:`~.readstat.READSTAT_ROWS` rows at a
    time, with the whole table's layout and SPSS storage of its columns."""
    import pyreadstat

    name = Path(path).name
    options = _options(layout, columns)
    flat = {**options, "row_compress": False}
    kinds = {n: "string" if layout.kinds[n] == "string" else "number" for n in layout.names}
    template = {n: template_value(layout.kinds[n], layout.items[n], kinds[n], columns[n].width)
                for n in layout.names}
    text = np.concatenate([np.full(_slots(kinds[n], columns[n].width), kinds[n] == "string")
                           for n in layout.names]) if layout.names else np.zeros(0, dtype=bool)

    def rows(block: pd.DataFrame) -> pd.DataFrame:
        return _frame(block, layout, columns, template)

    only = rows(source.empty())
    plain = scratch_write(pyreadstat.write_sav, only, flat)
    if plain[:4] != b"$FL2" or struct.unpack("<i", plain[64:68])[0] != 2:
        raise ReleaseError("unexpected .sav layout from pyreadstat (expected little-endian)")
    if struct.unpack("<i", plain[68:72])[0] != len(text):
        raise ReleaseError(f"{name}: unexpected .sav row width from pyreadstat")
    first = _compress(_rows(plain, 1), text, last=True)
    head = bytearray(scratch_write(pyreadstat.write_sav, only, options))
    if not head.endswith(first):
        raise ReleaseError(f"{name}: .sav compression differs from pyreadstat's")
    del head[len(head) - len(first):]
    _patch(head)
    head[80:84] = struct.pack("<i", source.rows)
    # The extension record 7.16 repeats the case count in 64 bits (after a 64-bit 1).
    at = head.find(_CASES64 + struct.pack("<q", 1) + struct.pack("<q", 1))
    if at < 0:
        raise ReleaseError(f"{name}: no 64-bit case count in pyreadstat's .sav header")
    at += len(_CASES64) + 8
    head[at:at + 8] = struct.pack("<q", source.rows)
    # Rows laid out here where that gives pyreadstat's template row (checked), else by it.
    direct = _direct(layout, columns) and np.array_equal(_encode(  # type: ignore[arg-type]
        {n: np.array([template[n]], dtype=object if kinds[n] == "string" else "float64")
         for n in layout.names}, layout, columns, 1), _rows(plain, 1))
    done = 0
    with atomic_open(path) as fh:
        fh.write(head)
        for block in source.batches(READSTAT_ROWS):
            slots = _encode(_converted(block, layout, columns), layout, columns, len(block)) \
                if direct else None
            if slots is None:
                data = scratch_write(pyreadstat.write_sav, rows(block), flat)
                slots = _rows(data, len(block))
            done += len(block)
            fh.write(_compress(slots, text, last=done == source.rows))
    return Path(path)


__all__ = ["SPSS_STRING_BYTES", "SavColumn", "measure_level", "sav_column", "stream_sav"]
