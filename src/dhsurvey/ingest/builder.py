"""What the export readers share: decoding, time stamps, and the table builder.

The builder applies the duplicate/orphan rules, so every route (Central zip, Kobo JSON, instance
XML) quarantines the same things under the same rule names and the accounting ``submissions in =
root rows + root-level quarantine rows`` holds for each of them. :mod:`dhsurvey.ingest.read`
dispatches an export to its reader; the readers import this module, never the dispatcher.

Quarantine rules used by the readers:

- root level (one row per submission not taken): ``duplicate-key`` (a later copy of a KEY),
  ``missing-key`` (no instanceID), ``not-decrypted`` (encrypted and not readable: Central's
  Status, no private key, or a decryption failure whose code is in ``value``), ``wrong-form``
  (an instance of another form), ``xml-unreadable`` (not well-formed XML), ``xml-too-large``
  (a submission's XML over ``DHSURVEY_MAX_XML_MB``, not read), ``xml-missing`` (an instance
  folder without ``submission.xml``);
- repeat level: ``orphan-repeat`` (PARENT_KEY matches no row of the parent level),
  ``duplicate-repeat-key``, ``parent-quarantined`` (rows of a submission quarantined above).
"""

from __future__ import annotations

import codecs
import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import (
    META,
    QUARANTINE_COLUMNS,
    REPEAT_META,
    RawForm,
    field_columns,
    normalise,
)

ROOT_RULES = frozenset({
    "duplicate-key", "missing-key", "not-decrypted", "wrong-form", "xml-unreadable",
    "xml-too-large", "xml-missing",
})
REPEAT_RULES = frozenset({"orphan-repeat", "duplicate-repeat-key", "parent-quarantined"})

__all__ = [
    "REPEAT_RULES",
    "ROOT_RULES",
    "TableBuilder",
    "canonical_time",
    "decode_utf8",
    "repeat_order",
    "repeat_position",
]


def decode_utf8(data: bytes, file: str | Path) -> str:
    """UTF-8 text without a BOM; anything else is an error naming the (physical) line.

    ODK Central and KoboToolbox write UTF-8. A file that is not has been re-saved by some other
    tool (typically Excel as Latin-1/cp1252); guessing would silently garble names, so refuse.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DhsurveyError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} cannot be decoded "
            "(exports are UTF-8; was the file re-saved in another encoding, e.g. Latin-1 by "
            "Excel?)",
            code="export-encoding", file=str(file), line=line,
        ) from None


def canonical_time(text: str | None) -> str | None:
    """A server time stamp as ``2026-03-01T10:15:00.000Z`` (UTC, milliseconds).

    Central writes that already; Kobo writes UTC without a zone; Briefcase attributes vary.
    Text that is not a time is kept as it is: checking it is validation's job.
    """
    if text is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    stamp = stamp.astimezone(dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def repeat_position(key: str) -> int | None:
    """The 1-based position at the end of a repeat KEY (``…/roster[3]`` → 3)."""
    if key.endswith("]") and "[" in key:
        number = key[key.rindex("[") + 1:-1]
        if number.isdigit():
            return int(number)
    return None


def repeat_order(model: FormModel) -> list[str]:
    """Repeat names, outer repeats before the ones nested in them (form order does that)."""
    return [r.name for r in model.repeats]


def _normalised(values: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """``columns`` of ``values`` normalised (most cells of a wide form are absent: None)."""
    get = values.get
    return {c: None if (v := get(c)) is None else normalise(v) for c in columns}


class TableBuilder:
    """Collects rows of one form from one export and applies the rules every route shares."""

    def __init__(self, model: FormModel, source_format: str, source_file: str | Path) -> None:
        self.model = model
        self.source_format = source_format
        self.source_file = str(source_file)
        self.root: list[dict[str, Any]] = []
        self._root_keys: set[str] = set()
        self.repeats: dict[str, list[tuple[dict[str, Any], str, int | None]]] = {
            name: [] for name in repeat_order(model)
        }
        self.quarantine_rows: list[dict[str, Any]] = []

    def quarantine(self, rule: str, message: str, *, source_file: str | Path | None = None,
                   row: int | None = None, key: str | None = None, column: str | None = None,
                   value: str | None = None) -> None:
        self.quarantine_rows.append({
            "source_file": str(source_file or self.source_file), "row": row, "KEY": key,
            "rule": rule, "column": column, "value": value, "message": message,
        })

    def add_root(self, values: Mapping[str, Any], *, source_file: str | Path | None = None,
                 row: int | None = None) -> bool:
        """Take one submission's root row; False (and a quarantine row) if it is refused."""
        key = normalise(values.get("KEY"))
        if key is None:
            self.quarantine("missing-key", "submission has no instanceID (KEY)",
                            source_file=source_file, row=row, column="KEY")
            return False
        if key in self._root_keys:
            self.quarantine("duplicate-key", f"KEY {key} already read; the first copy is kept",
                            source_file=source_file, row=row, key=key, column="KEY", value=key)
            return False
        self._root_keys.add(key)
        out = _normalised(values, field_columns(self.model))
        out.update(_normalised(values, META))
        out.update(KEY=key, form_id=self.model.form_id, source_format=self.source_format,
                   source_file=str(source_file or self.source_file))
        self.root.append(out)
        return True

    def add_repeat(self, repeat: str, values: Mapping[str, Any], *,
                   source_file: str | Path | None = None, row: int | None = None) -> None:
        self.repeats[repeat].append((dict(values), str(source_file or self.source_file), row))

    def add_submission(self, root: Mapping[str, Any],
                       repeats: Iterable[tuple[str, Mapping[str, Any]]], *,
                       source_file: str | Path | None = None, row: int | None = None) -> None:
        """A submission with its repeat rows (Kobo, XML): a refused root takes its rows along."""
        if self.add_root(root, source_file=source_file, row=row):
            for name, values in repeats:
                self.add_repeat(name, values, source_file=source_file, row=row)
            return
        for name, values in repeats:
            self.quarantine("parent-quarantined",
                            f"repeat '{name}' row of a submission quarantined above",
                            source_file=source_file, row=row, key=normalise(values.get("KEY")))

    def finish(self) -> RawForm:
        """Apply duplicate and orphan rules level by level and build the tables."""
        root = pd.DataFrame(self.root, columns=META + field_columns(self.model), dtype=object)
        tables: dict[str, pd.DataFrame] = {}
        keys_of: dict[str | None, set[str]] = {None: set(root["KEY"])}
        for name in repeat_order(self.model):
            parent_keys = keys_of[self.model[name].repeat]
            columns = REPEAT_META + field_columns(self.model, name)
            taken: list[dict[str, Any]] = []
            seen: set[str] = set()
            for values, source, row in self.repeats[name]:
                key, parent = normalise(values.get("KEY")), normalise(values.get(PARENT))
                if parent not in parent_keys:
                    self.quarantine("orphan-repeat",
                                    f"repeat '{name}' row: PARENT_KEY {parent} matches no "
                                    "submission/parent row", source_file=source, row=row,
                                    key=key, column=PARENT, value=parent)
                    continue
                if key is None or key in seen:
                    self.quarantine("duplicate-repeat-key",
                                    f"repeat '{name}' row: KEY {key} is missing or repeated; "
                                    "the first copy is kept", source_file=source, row=row,
                                    key=key, column="KEY", value=key)
                    continue
                seen.add(key)
                taken.append(_normalised(values, columns))
            tables[name] = pd.DataFrame(taken, columns=columns, dtype=object)
            keys_of[name] = seen
        quarantine = pd.DataFrame(self.quarantine_rows, columns=QUARANTINE_COLUMNS, dtype=object)
        return RawForm(self.model.form_id, root, tables, quarantine)
