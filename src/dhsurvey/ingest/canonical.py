"""The canonical raw tables every export route is read into.

ODK Central CSV zips, Central OData pages, KoboToolbox JSON and folders of instance XML all carry
the same submissions in different shapes. Each reader produces a :class:`RawForm`: one root
table (a row per submission) and one table per repeat, with the form's own field names as
columns and the answers as the strings the device recorded. Typing and validation come later,
from the form model, so every route is validated by the same rules.

Conventions (the contract between readers, the simulator's writers and validation):

- Root columns: :data:`META` then the form's data fields at root level (not in a repeat), in
  form order, named by field name (no group path). ``KEY`` is the instanceID (``uuid:…``).
- Repeat columns: :data:`REPEAT_META` then the repeat's fields. ``KEY`` follows Central:
  the parent's KEY, the group path inside the parent, the repeat name and a 1-based position,
  e.g. ``uuid:…/hh_interview/roster[2]``; ``PARENT_KEY`` is the parent row's KEY.
- Values are ``str`` or ``None``. An empty answer and an absent (non-relevant) one are both
  ``None`` (Central's CSV cannot tell them apart). select_multiple answers are space-separated
  choice names; a geopoint is ``"lat lon alt acc"`` as in the XML.
- ``submission_time`` is the server's receipt time in UTC, ISO 8601 with milliseconds and
  ``Z`` (``2026-03-01T10:15:00.000Z``); ``None`` where the route does not know it.
- Rows a reader cannot take (orphan repeat rows, duplicated KEY, undecryptable submissions, …)
  go to ``quarantine`` with :data:`QUARANTINE_COLUMNS`; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dhsurvey.forms.frames import PARENT, FormData
from dhsurvey.forms.model import FormModel

#: The instanceID a submission edits (``meta/deprecatedID``; ODK edits).
DEPRECATED_ID = "deprecated_id"
META = [
    "KEY",  # instanceID
    "form_id",
    "form_version",
    "submission_time",
    "submitter",
    "review_state",
    DEPRECATED_ID,
    "source_format",  # central-csv | central-odata | kobo-json | xml
    "source_file",
]
#: Provenance columns: differ between routes that carry the same submissions.
PROVENANCE = ["source_format", "source_file"]
#: Kept by the server, not in the submission itself: a folder of instance XML lacks them.
SERVER_META = ["submitter", "review_state"]
REPEAT_META = ["KEY", PARENT]
QUARANTINE_COLUMNS = ["source_file", "row", "KEY", "rule", "column", "value", "message"]
#: Quarantine rules of a second copy set aside while a copy under the same instanceID is kept
#: (a KEY twice in one export; a device's first version of an interview the server holds in a
#: later version): a record of what arrived, not a fault of the submission kept.
SET_ASIDE_COPIES = frozenset({"duplicate-key", "edited-on-server"})


def field_columns(model: FormModel, repeat: str | None = None) -> list[str]:
    """Data columns of a level in form order (the canonical column list comes from the form)."""
    return [f.name for f in model.fields_in(repeat)]


def repeat_key(parent_key: str, model: FormModel, repeat: str, position: int) -> str:
    """Central's KEY for the ``position``-th instance of ``repeat`` under ``parent_key``."""
    rep = model[repeat]
    outer = rep.repeat
    path = list(rep.path)
    if outer is not None:
        path = path[path.index(outer) + 1:]
    return "/".join([parent_key, *path, f"{repeat}[{position}]"])


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS})


@dataclass
class RawForm:
    """One form's submissions from one or more exports, as canonical tables."""

    form_id: str
    root: pd.DataFrame
    repeats: dict[str, pd.DataFrame] = field(default_factory=dict)
    quarantine: pd.DataFrame = field(default_factory=empty_quarantine)

    def to_form_data(self, model: FormModel) -> FormData:
        """Index every table by KEY so the form's expressions can be evaluated on it."""
        root = self.root.set_index("KEY", drop=False)
        repeats = {name: t.set_index("KEY", drop=False) for name, t in self.repeats.items()}
        return FormData(model, root, repeats)

    def content(self, server_meta: bool = True) -> dict[str, pd.DataFrame]:
        """Tables without provenance, sorted by KEY: equal for the same submissions.

        ``server_meta=False`` also drops what only a server knows (submitter, review state),
        to compare with a route that does not carry it (instance XML).
        """
        drop = PROVENANCE if server_meta else PROVENANCE + SERVER_META
        out = {"": self.root.drop(columns=drop)}
        out.update(self.repeats)
        return {name: t.sort_values("KEY").reset_index(drop=True) for name, t in out.items()}


def assert_same_content(a: RawForm, b: RawForm, *, server_meta: bool = True) -> None:
    """Raise AssertionError naming the first table and column where two reads differ."""
    ca, cb = a.content(server_meta), b.content(server_meta)
    if set(ca) != set(cb):
        raise AssertionError(f"tables differ: {sorted(ca)} vs {sorted(cb)}")
    for name in ca:
        ta, tb = ca[name], cb[name]
        if list(ta.columns) != list(tb.columns):
            raise AssertionError(f"table '{name}': columns differ: {list(ta.columns)} vs "
                                 f"{list(tb.columns)}")
        pd.testing.assert_frame_equal(ta, tb, check_dtype=False, obj=f"table '{name or 'root'}'")


def normalise(value: object) -> str | None:
    """The canonical form of one cell: a string, or None for empty/absent."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    text = str(value)
    return text if text != "" else None
