"""Read ODK Central's OData JSON into the canonical raw tables.

Central serves a form's submissions as OData tables: ``Submissions`` (a row per submission,
groups nested as objects, ``__system`` metadata) and one ``Submissions.<group>.<repeat>`` table
per repeat, whose rows carry an opaque ``__id`` and a link to their parent row
(``__Submissions-id``, or ``__Submissions-<path>-id`` under an outer repeat). Central types the
answers as the form's binds say (integers and decimals become JSON numbers, geopoints GeoJSON),
so this reader turns them back into the strings the device wrote, and rebuilds the
position-based repeat ``KEY`` that Central's CSV export and the other routes use. The OData
route therefore lands in exactly the same :class:`~dhsurvey.ingest.canonical.RawForm` as the
CSV zip, and the same validation applies to both.

Known losses of the OData format (Central's, not ours): a decimal written as ``3.0`` arrives as
``3``; geopoint parts lose trailing zeros (``1650.0`` → ``1650``); a datetime offset written as
``+03`` arrives as ``+03:00``. Position in a repeat is the order Central lists the rows in, which
is document order within each parent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.canonical import (
    META,
    QUARANTINE_COLUMNS,
    REPEAT_META,
    RawForm,
    field_columns,
    normalise,
    repeat_key,
)

SOURCE_FORMAT = "central-odata"
#: Where the passphrase of Central-managed encryption comes from (never a file or an option).
PASSPHRASE_ENV = "DHSURVEY_CENTRAL_PASSPHRASE"
ROOT_TABLE = "Submissions"
_GEO_TYPES = ("geopoint", "geotrace", "geoshape")
#: What Central appends to a form's version under managed encryption (``1.0[encrypted:Ab12]``).
_MANAGED_SUFFIX = re.compile(r"\[encrypted:[^\]]*\]$")
_WKT = re.compile(r"^\s*(POINT|LINESTRING|POLYGON)\s*\(+(.*?)\)+\s*$", re.IGNORECASE)


# -- Central's naming ---------------------------------------------------------------------------


def odata_name(name: str) -> str:
    """Central's ``sanitizeOdataIdentifier``: the property name a form field gets in OData.

    XLSForm names may contain ``.`` and ``-``, OData identifiers may not; Central replaces them
    (and prefixes a leading non-letter) so the reader must look fields up by the same rule.
    """
    name = re.sub(r"^([^A-Za-z_])", r"_\1", name)
    return re.sub(r"[^A-Za-z0-9_]+", "_", name)


def table_name(model: FormModel, repeat: str | None) -> str:
    """The OData table of a repeat: ``Submissions`` plus its full group path, dot-joined.

    Central names the table after every enclosing group, not just the repeat, so the household
    roster inside ``hh_interview`` is ``Submissions.hh_interview.roster``.
    """
    if repeat is None:
        return ROOT_TABLE
    rep = model[repeat]
    return ".".join([ROOT_TABLE, *(odata_name(p) for p in rep.path), odata_name(rep.name)])


def parent_id_field(model: FormModel, repeat: str) -> str:
    """The property linking a repeat row to its parent row (``__Submissions-id`` at top level).

    Under an outer repeat it names that repeat's table path with ``-`` instead of ``.``, and
    holds the outer row's ``__id`` rather than the instanceID.
    """
    outer = model[repeat].repeat
    parts = [ROOT_TABLE]
    if outer is not None:
        o = model[outer]
        parts += [odata_name(p) for p in (*o.path, o.name)]
    return "__" + "-".join(parts) + "-id"


def _relative_path(item: Item, level: str | None) -> tuple[str, ...]:
    """Where ``item`` sits inside a row of ``level``'s table (groups below the repeat)."""
    path = item.path
    if level is not None:
        path = path[path.index(level) + 1:]
    return tuple(odata_name(p) for p in (*path, item.name))


def _lookup(row: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = row
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


# -- values ---------------------------------------------------------------------------------------


def format_number(value: int | float) -> str:
    """A JSON number as the device would have written it: integers without ``.0``.

    Central emits JavaScript numbers, which never carry ``.0``; Python floats do, so a float
    that is whole is printed as an integer to give the same string on every route.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _point(coords: list[Any], accuracy: Any = None) -> str:
    """GeoJSON ``[lon, lat, alt?]`` (+ accuracy) → ODK's ``lat lon alt acc``."""
    if len(coords) < 2:
        raise ValueError("a point needs longitude and latitude")
    parts = [format_number(coords[1]), format_number(coords[0])]
    if len(coords) > 2 and coords[2] is not None:
        parts.append(format_number(coords[2]))
    if accuracy is not None:
        if len(parts) == 2:
            parts.append("0")
        parts.append(format_number(accuracy))
    return " ".join(parts)


def _geojson(value: Mapping[str, Any]) -> str:
    kind = value.get("type")
    coords = value.get("coordinates")
    props = value.get("properties") or {}
    if kind == "Point" and isinstance(coords, list):
        return _point(coords, props.get("accuracy"))
    if kind in ("LineString", "Polygon") and isinstance(coords, list):
        points = coords if kind == "LineString" else (coords[0] if coords else [])
        accuracies = props.get("accuracies") or []
        return ";".join(
            _point(p, accuracies[i] if i < len(accuracies) else None)
            for i, p in enumerate(points)
        )
    raise ValueError(f"unexpected GeoJSON object {json.dumps(value)[:80]}")


def _wkt(text: str) -> str:
    """``POINT (lon lat alt)`` (Central's ``$wkt=true``) → ``lat lon alt``."""
    match = _WKT.match(text)
    if match is None:
        return text
    points = [p.split() for p in match.group(2).split(",")]
    return ";".join(" ".join([p[1], p[0], *p[2:]]) for p in points if len(p) >= 2)


def cell(value: Any, item: Item) -> str | None:
    """One OData answer as the canonical string (None for null/empty)."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return format_number(value)
    if isinstance(value, Mapping) and item.type in _GEO_TYPES:
        return _geojson(value)
    if isinstance(value, str):
        if item.type in _GEO_TYPES and _WKT.match(value):
            return _wkt(value)
        return normalise(value)
    raise ValueError(f"unexpected {type(value).__name__} value for a {item.type} field")


def form_version(value: Any) -> str | None:
    """The form version a submission was made with, as the workbook has it.

    Central-managed encryption rewrites every form version to ``<version>[encrypted:<id>]``;
    the suffix names Central's key, not a change to the form, so it is dropped (validation
    would otherwise flag every such submission as made with an outdated form).
    """
    text = normalise(value)
    return None if text is None else _MANAGED_SUFFIX.sub("", text) or None


def utc_ms(value: Any) -> str | None:
    """Central's ``submissionDate`` as canonical UTC ISO 8601 with milliseconds and ``Z``."""
    text = normalise(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- reading --------------------------------------------------------------------------------------


def _rows(pages: Iterable[Mapping[str, Any]], table: str) -> Iterator[Mapping[str, Any]]:
    for number, page in enumerate(pages, start=1):
        value = page.get("value") if isinstance(page, Mapping) else None
        if not isinstance(value, list):
            raise DhsurveyError(
                f"page {number} of OData table '{table}' has no 'value' list; is this a "
                "Central OData response?", code="odata-shape", table=table,
            )
        for row in value:
            if not isinstance(row, Mapping):
                raise DhsurveyError(f"a row of OData table '{table}' is not an object",
                                    code="odata-shape", table=table)
            yield row


class _Reader:
    """State shared while reading one form: rows per level and the ``__id`` → KEY links."""

    def __init__(self, model: FormModel, form_id: str, source: str | None) -> None:
        self.model = model
        self.form_id = form_id
        self.source = source
        self.tables: dict[str | None, list[dict[str, str | None]]] = {None: []}
        self.tables.update({r.name: [] for r in model.repeats})
        self.keys: dict[str | None, dict[str, str]] = {name: {} for name in self.tables}
        self.positions: dict[tuple[str, str], int] = {}
        self.quarantine: list[dict[str, Any]] = []
        self.fields = {name: self.model.fields_in(name) for name in self.tables}
        self.children = {name: [r for r in model.repeats if r.repeat == name]
                         for name in self.tables}

    def reject(self, table: str, row: int, key: str | None, rule: str, message: str,
               column: str | None = None, value: Any = None) -> None:
        self.quarantine.append({
            "source_file": f"{self.source}#{table}" if self.source else table,
            "row": row, "KEY": key, "rule": rule, "column": column,
            "value": None if value is None else str(value), "message": message,
        })

    def values(self, row: Mapping[str, Any], level: str | None, table: str,
               number: int) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for item in self.fields[level]:
            raw = _lookup(row, _relative_path(item, level))
            try:
                out[item.name] = cell(raw, item)
            except ValueError as exc:
                raise DhsurveyError(
                    f"OData table '{table}' row {number}: {exc}", code="odata-shape",
                    table=table, row=number, field=item.name,
                ) from None
        return out

    def root(self, pages: Iterable[Mapping[str, Any]]) -> None:
        for number, row in enumerate(_rows(pages, ROOT_TABLE), start=1):
            system = row.get("__system") or {}
            iid = normalise(row.get("__id")) or normalise(_lookup(row, ("meta", "instanceID")))
            if iid is None:
                self.reject(ROOT_TABLE, number, None, "no-instance-id",
                            "submission has neither __id nor meta/instanceID")
                continue
            status = normalise(system.get("status"))
            if status is not None:
                self.reject(ROOT_TABLE, number, iid, "not-decrypted",
                            f"Central holds this submission encrypted ({status}): set "
                            f"{PASSPHRASE_ENV} (Central-managed key) or decrypt "
                            "it with the private key (self-managed key)", column="__system/status",
                            value=status)
                continue
            if iid in self.keys[None]:
                self.reject(ROOT_TABLE, number, iid, "duplicate-key",
                            "instanceID already read in an earlier row", column="KEY",
                            value=iid)
                continue
            self.keys[None][iid] = iid
            record: dict[str, str | None] = {
                "KEY": iid,
                "form_id": self.form_id,
                "form_version": form_version(system.get("formVersion")),
                "submission_time": utc_ms(system.get("submissionDate")),
                "submitter": normalise(system.get("submitterName")),
                "review_state": normalise(system.get("reviewState")),
                "source_format": SOURCE_FORMAT,
                "source_file": self.source,
            }
            record.update(self.values(row, None, ROOT_TABLE, number))
            self.tables[None].append(record)
            self.expanded(row, None, iid)

    def add_repeat_row(self, repeat: str, row: Mapping[str, Any], parent_key: str,
                       table: str, number: int) -> str:
        slot = (repeat, parent_key)
        self.positions[slot] = self.positions.get(slot, 0) + 1
        key = repeat_key(parent_key, self.model, repeat, self.positions[slot])
        record: dict[str, str | None] = {"KEY": key, PARENT: parent_key}
        record.update(self.values(row, repeat, table, number))
        self.tables[repeat].append(record)
        rid = normalise(row.get("__id"))
        if rid is not None:
            self.keys[repeat][rid] = key
        return key

    def expanded(self, row: Mapping[str, Any], level: str | None, key: str) -> None:
        """Repeats nested in a row by ``$expand=*``: positions are the list order."""
        for child in self.children[level]:
            nested = _lookup(row, _relative_path(child, level))
            if not isinstance(nested, list):
                continue
            table = table_name(self.model, child.name)
            for number, item in enumerate(nested, start=1):
                if isinstance(item, Mapping):
                    child_key = self.add_repeat_row(child.name, item, key, table, number)
                    self.expanded(item, child.name, child_key)

    def repeat(self, repeat: str, pages: Iterable[Mapping[str, Any]]) -> None:
        table = table_name(self.model, repeat)
        link = parent_id_field(self.model, repeat)
        parents = self.keys[self.model[repeat].repeat]
        seen: set[str] = set()
        for number, row in enumerate(_rows(pages, table), start=1):
            rid = normalise(row.get("__id"))
            if rid is not None and rid in seen:
                self.reject(table, number, None, "duplicate-key",
                            "repeat row __id already read in an earlier row", column="__id",
                            value=rid)
                continue
            if rid is not None:
                seen.add(rid)
            parent = normalise(row.get(link))
            if parent is None or parent not in parents:
                self.reject(table, number, None, "orphan-repeat",
                            f"no parent row with {link} = {parent!r} was read", column=link,
                            value=parent)
                continue
            self.add_repeat_row(repeat, row, parents[parent], table, number)

    def frame(self, level: str | None) -> pd.DataFrame:
        meta = META if level is None else REPEAT_META
        columns = meta + field_columns(self.model, level)
        rows = self.tables[level]
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        # a column no row names (deprecated_id: OData has no meta/deprecatedID) is None, not NaN
        return pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=columns,
                            dtype=object)


def read_odata(
    pages: Iterable[Mapping[str, Any]],
    repeat_pages: Mapping[str, Iterable[Mapping[str, Any]]] | None,
    model: FormModel,
    *,
    form_id: str | None = None,
    source: str | None = None,
) -> RawForm:
    """Turn Central OData pages into a canonical :class:`RawForm`.

    ``pages`` are the JSON documents of the ``Submissions`` table (one per page, as Central
    returned them); ``repeat_pages`` maps each repeat — by name (``roster``) or by OData table
    name (``Submissions.hh_interview.roster``) — to its table's pages. Repeats nested in the root
    rows by ``$expand=*`` are read too when no table is given for them. Encrypted, duplicated
    and orphaned rows go to ``quarantine``; nothing is dropped silently.

    ``form_id`` defaults to the model's (Central's xmlFormId may differ per country);
    ``source`` (e.g. the OData service URL) fills ``source_file``.
    """
    reader = _Reader(model, form_id or model.form_id, source)
    reader.root(pages)
    given = dict(repeat_pages or {})
    for rep in model.repeats:  # outer repeats first: form order
        table = table_name(model, rep.name)
        rep_pages = given.get(rep.name, given.get(table))
        if rep_pages is None:
            continue
        if reader.tables[rep.name]:
            raise DhsurveyError(
                f"repeat '{rep.name}' was given both expanded in the root rows and as table "
                f"'{table}'; pass one of them", code="odata-shape", table=table,
            )
        reader.repeat(rep.name, rep_pages)
    quarantine = pd.DataFrame(reader.quarantine, columns=QUARANTINE_COLUMNS, dtype=object)
    return RawForm(
        form_id=reader.form_id,
        root=reader.frame(None),
        repeats={r.name: reader.frame(r.name) for r in model.repeats},
        quarantine=quarantine,
    )
