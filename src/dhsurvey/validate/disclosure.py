"""What the shared quality outputs may print: counts for everyone, values only where they
identify nobody.

The HTML report, the check tables beside it (``quality/``), the Dagster metadata and the
Great Expectations Data Docs are shared: a data manager forwards them to field coordinators
and supervisors. The check tables :func:`~dhsurvey.validate.quality.run_checks` returns are
not: they list instanceIDs, children's own words about abuse (other-specify answers) and the
values that broke a rule, which may be a name or a phone number. So every check table is
split in two by :func:`share_checks`:

* the **listing** — the check table whole, each row numbered (``row``) — is written to the
  restricted listings (:data:`LISTINGS` in the validation folder, owner-only in the clean
  zone) and never leaves it;
* the **shared table** keeps what a supervisor needs to act — form, question, rule,
  enumerator, day, counts and the ``row`` of the listing to ask the data manager about — and
  drops every instanceID and every value of a withheld field (:func:`withheld_fields`).
  Other-specify answers become counts per question and enumerator.

Which fields are withheld is read from the instruments (each field's ``pii`` class and type),
never from the data: direct identifiers, free text and sensitive answers; device, SIM, GPS
and media fields whatever their class; in a form holding sensitive answers (the child's),
every text field; and any calculation that copies a withheld answer (the selected child's
name). Values of the other fields — select codes and numbers, such as an age out of range —
stay, and so do enumerator IDs (staff codes, needed to act).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dhsurvey.forms.expressions import references
from dhsurvey.forms.model import FormModel
from dhsurvey.validate.quality import grids, write_checks

#: Restricted listings, relative to a validation folder (``clean/<ISO>/``): beside the
#: release's restricted mappings, owner-only.
LISTINGS = "restricted/listings"
#: What a shared table prints in place of a withheld value.
WITHHELD = "(withheld)"
#: ``pii`` classes whose values are never shown.
WITHHELD_PII = ("direct", "free_text", "sensitive")
#: Field types whose values identify whatever their ``pii`` class: device and SIM
#: identifiers, positions, recordings, media and scanned codes.
IDENTIFYING_TYPES = frozenset({
    "deviceid", "username", "phonenumber", "email", "simserial", "subscriberid", "audit",
    "start-geopoint", "background-audio", "geopoint", "geotrace", "geoshape", "image", "audio",
    "video", "file", "barcode"})
#: Field types of typed-in text: withheld in a form that holds sensitive answers.
TEXT_TYPES = frozenset({"text"})
#: Submission metadata (not form fields) whose values may be shown.
SHOWN_META = frozenset({"form_id", "form_version", "submission_time", "review_state",
                        "source_format"})
_INSTANCE_ID = re.compile(r"uuid:[0-9A-Za-z-]+")


def holds_sensitive(model: FormModel) -> bool:
    """Whether the form records sensitive answers (experiences of abuse: the child form)."""
    return bool(model.by_pii("sensitive"))


def withheld_fields(model: FormModel) -> frozenset[str]:
    """The fields of ``model`` whose values a shared output never shows (module docstring)."""
    sensitive_form = holds_sensitive(model)
    out = {i.name for i in model.fields
           if i.pii in WITHHELD_PII or i.type in IDENTIFYING_TYPES
           or (sensitive_form and i.type in TEXT_TYPES)}
    calculations = [(i.name, set(references(i.calculation))) for i in model.fields
                    if i.type == "calculate" and i.calculation]
    grown = True
    while grown:  # a calculation that copies a withheld answer carries it
        grown = False
        for name, refs in calculations:
            if name not in out and refs & out:
                out.add(name)
                grown = True
    return frozenset(out)


class Policy:
    """Which values the shared outputs may show, per form (``models`` None: none)."""

    def __init__(self, models: Mapping[str, FormModel] | None) -> None:
        self.models = dict(models or {})
        self._withheld = {form: withheld_fields(m) for form, m in self.models.items()}

    def shows(self, form: object, column: object) -> bool:
        """Whether a value of ``column`` of ``form`` may be shown."""
        model = self.models.get(str(form))
        if model is None or not isinstance(column, str) or not column:
            return False
        if column in model:
            return column not in self._withheld[model.form_id]
        return column in SHOWN_META

    def grid_shows(self, form: object, grid: object) -> bool:
        """Whether the common answer of a straight-lined grid may be shown."""
        model = self.models.get(str(form))
        items = grids(model).get(str(grid)) if model is not None else None
        return bool(items) and all(self.shows(form, i) for i in items or [])


# -- shared tables ------------------------------------------------------------------------------


def _without(listing: pd.DataFrame, *columns: str) -> pd.DataFrame:
    return listing.drop(columns=[c for c in columns if c in listing.columns])


def _hide(values: pd.Series, shown: pd.Series) -> pd.Series:
    """``values`` where ``shown``; NA (numbers) or :data:`WITHHELD` (text) elsewhere."""
    mask = shown.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.where(mask)
    out = values.astype("string")
    return out.where(mask | out.isna().to_numpy(), WITHHELD)


def _by_field(listing: pd.DataFrame, column: str, policy: Policy) -> pd.Series:
    return pd.Series([policy.shows(f, c) for f, c in zip(listing["form"], listing[column],
                                                         strict=True)],
                     index=listing.index, dtype=bool)


def _message(message: object, key: object, value: object, shown: bool) -> object:
    """A rule's message without the instanceID, nor the value when that is withheld."""
    if not isinstance(message, str):
        return message
    if isinstance(key, str) and key:
        message = message.replace(key, "(instanceID)")
    message = _INSTANCE_ID.sub("(instanceID)", message)
    if not shown and isinstance(value, str) and value.strip() and value.strip() in message:
        return WITHHELD
    return message


def _issues(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    shown = _by_field(listing, "column", policy)
    out = listing.copy()
    out["message"] = pd.array([_message(m, k, v, s) for m, k, v, s in zip(
        listing["message"].astype(object), listing["KEY"].astype(object),
        listing["value"].astype(object), shown, strict=True)], dtype="string")
    out["value"] = _hide(listing["value"], shown)
    return _without(out, "KEY")


def _outliers(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    out = listing.copy()
    out["value"] = _hide(listing["value"], _by_field(listing, "variable", policy))
    return _without(out, "KEY")


def _straightlined(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    out = listing.copy()
    shown = pd.Series([policy.grid_shows(f, g) for f, g in zip(listing["form"], listing["grid"],
                                                                strict=True)],
                      index=listing.index, dtype=bool)
    out["value"] = _hide(listing["value"], shown)
    return _without(out, "KEY")


def _duplicate_units(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """The household or interview (its identifying answers) becomes a set number."""
    number = pd.factorize(listing["form"].astype(str) + "\x00" + listing["unit"].astype(str))[0]
    out = listing.assign(set=pd.Series(number + 1, index=listing.index, dtype="Int64"))
    order = [c for c in listing.columns if c not in ("unit", "KEY")]
    return out[[*order[:order.index("form") + 1], "set", *order[order.index("form") + 1:]]]


def _other_specify(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """Counts of other-specify answers per form, question and enumerator: no text."""
    columns = ["form", "field", "parent", "enum_id", "answers"]
    if listing.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "answers" else "string")
                             for c in columns}).astype({"enum_id": "Int64"})
    out = (listing.groupby(["form", "field", "parent", "enum_id"], dropna=False, sort=True)
           .size().rename("answers").reset_index())
    return out[columns].astype({"enum_id": "Int64", "answers": "int64"}).reset_index(drop=True)


def _drop_key(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    return _without(listing, "KEY")


def _generic(listing: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """A check without its own rule: no instanceID, no value, no text."""
    return _without(listing, "KEY", "value", "text", "unit", "instanceID")


#: Check → how its listing becomes the shared table.
SHARE: dict[str, Callable[[pd.DataFrame, Policy], pd.DataFrame]] = {
    "duplicate_ids": _drop_key,
    "duplicate_units": _duplicate_units,
    "speeders": _drop_key,
    "issues": _issues,
    "outliers": _outliers,
    "other_specify": _other_specify,
    "straightlining_cases": _straightlined,
}


@dataclass(frozen=True)
class SharedChecks:
    """Check tables as shared outputs may print them, and the listings behind them."""

    #: check → the table shared outputs show (no instanceID, no withheld value)
    tables: dict[str, pd.DataFrame]
    #: check → the whole check table with its rows numbered (restricted)
    listings: dict[str, pd.DataFrame]


def listed(table: pd.DataFrame) -> bool:
    """Whether a check table lists submissions (by instanceID): it has a listing."""
    return "KEY" in table.columns or "instanceID" in table.columns


def share_checks(checks: Mapping[str, pd.DataFrame],
                 models: Mapping[str, FormModel] | None = None) -> SharedChecks:
    """Split each check table that lists submissions into its shared table and its listing.

    Tables that list no submission (dashboards, rates, summaries) are shared as they are, and
    so are tables already shared, so this can be applied twice. Without ``models`` no value
    of a listing is shown.
    """
    policy = Policy(models)
    tables: dict[str, pd.DataFrame] = {}
    listings: dict[str, pd.DataFrame] = {}
    for name, table in checks.items():
        if not listed(table):
            tables[name] = table
            continue
        listing = table.reset_index(drop=True)
        listing.insert(0, "row", pd.Series(np.arange(1, len(listing) + 1), index=listing.index,
                                           dtype="int64"))
        listings[name] = listing
        tables[name] = SHARE.get(name, _generic)(listing, policy).reset_index(drop=True)
    return SharedChecks(tables, listings)


def write_listings(listings: Mapping[str, pd.DataFrame], folder: str | Path) -> dict[str, Path]:
    """Each listing as ``<check>.parquet`` in ``folder``, made owner-only (its parent too)."""
    folder = Path(folder)
    for path in (folder.parent, folder):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    paths = write_checks(listings, folder)
    return {p.stem: p for p in paths}
