"""The raw zone: canonical tables per country and form, as Parquet, plus ingest quarantine.

Several exports of one form (an incremental pull, a folder of XML from a device that never
synced) are combined here: the same submission delivered twice is kept once, and two different
submissions claiming one instanceID are both kept out of the raw table, in quarantine, with the
reason — nothing is dropped without a trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.ingest.canonical import (
    PROVENANCE,
    QUARANTINE_COLUMNS,
    SERVER_META,
    RawForm,
    empty_quarantine,
)
from dhsurvey.io import atomic_write_parquet, read_parquet
from dhsurvey.store import RAW_QUARANTINE, raw_table

QUARANTINE = RAW_QUARANTINE


_PART = "__part"


def combine(raws: list[RawForm]) -> RawForm:
    """One RawForm from several reads of the same form (first delivery wins on exact copies).

    One instanceID with different content in two exports is a conflict, quarantined, unless a
    server says which is current: a device never holds two contents under one instanceID (an
    edit made on it gets a new one), but ODK Central keeps an interview edited after it arrived
    under its first instanceID, with the edit's answers. So a copy from a server (it knows the
    submitter or review state) supersedes a device's copies of that instanceID, which are set
    aside (quarantine rule ``edited-on-server``); two servers' copies that differ remain a
    conflict. A submission's repeat rows come from the export its row was kept from.
    """
    if not raws:
        raise DhsurveyError("nothing to combine", code="ingest-empty")
    form_ids = {r.form_id for r in raws}
    if len(form_ids) > 1:
        raise DhsurveyError(f"cannot combine different forms {sorted(form_ids)}",
                            code="ingest-mixed-forms")
    root = pd.concat([r.root.assign(**{_PART: i}) for i, r in enumerate(raws)],
                     ignore_index=True)
    # Missing is None whatever the table's age (one stored before a column existed has NaN).
    root = root.astype(object).where(root.notna(), None)  # type: ignore[call-overload]
    # A copy from a server (with submitter and review state) beats one from a device folder.
    known = root[SERVER_META].notna().sum(axis=1).to_numpy()
    root = root.iloc[np.argsort(-known, kind="stable")]
    content = root.drop(columns=[*PROVENANCE, *SERVER_META, _PART]).astype(str)
    root = root[~content.duplicated(keep="first")]
    quarantine = [r.quarantine for r in raws]
    clash = root["KEY"].duplicated(keep=False)
    from_server = root[SERVER_META].notna().any(axis=1)
    superseded = clash & ~from_server & root["KEY"].isin(set(root.loc[clash & from_server,
                                                                       "KEY"]))
    _set_aside(quarantine, root[superseded], "edited-on-server",
               "a device's copy of a submission the server holds in another (edited) version, "
               "which is kept")
    root = root[~superseded]
    clash = root["KEY"].duplicated(keep=False)
    _set_aside(quarantine, root[clash], "duplicate-key-conflict",
               "the same instanceID arrived with different content in two exports")
    kept = root[~clash].reset_index(drop=True)
    part_of = dict(zip(kept["KEY"], kept[_PART], strict=True))
    repeats: dict[str, pd.DataFrame] = {}
    for name in {n for r in raws for n in r.repeats}:
        table = pd.concat([r.repeats[name].assign(**{_PART: i}) for i, r in enumerate(raws)
                           if name in r.repeats], ignore_index=True)
        # A repeat row belongs to the submission whose instanceID starts its KEY.
        owner = table["KEY"].str.split("/", n=1).str[0]
        mine = owner.map(part_of) == table[_PART]
        repeats[name] = table[mine].drop_duplicates("KEY", keep="first").drop(
            columns=_PART).reset_index(drop=True)
    nonempty = [q for q in quarantine if len(q)]
    q = pd.concat(nonempty, ignore_index=True) if nonempty else empty_quarantine()
    # A submission Central still cannot decrypt is listed again by every fetch: one row.
    again = (q["rule"] == "not-decrypted") & q["KEY"].notna() & q.duplicated(["KEY", "rule"])
    return RawForm(raws[0].form_id, kept.drop(columns=_PART), repeats,
                   q[~again].reset_index(drop=True))


def supersede(stored: RawForm, newer: RawForm) -> RawForm:
    """``stored`` with every submission ``newer`` holds again replaced by its newer version:
    a server sends an interview again when it was edited or reviewed since it was stored."""
    keys = set(newer.root["KEY"]) | set(newer.quarantine["KEY"].dropna())
    if not keys:
        return combine([stored, newer])
    prefixes = tuple(f"{k}/" for k in keys)
    kept = RawForm(
        stored.form_id, stored.root[~stored.root["KEY"].isin(keys)].reset_index(drop=True),
        {name: t[~t["KEY"].astype(str).str.startswith(prefixes)].reset_index(drop=True)
         for name, t in stored.repeats.items()},
        stored.quarantine[~stored.quarantine["KEY"].isin(keys)].reset_index(drop=True))
    return combine([kept, newer])


def _set_aside(quarantine: list[pd.DataFrame], rows: pd.DataFrame, rule: str,
               message: str) -> None:
    if len(rows):
        quarantine.append(pd.DataFrame({
            "source_file": rows["source_file"].to_numpy(), "row": None,
            "KEY": rows["KEY"].to_numpy(), "rule": rule, "column": "KEY",
            "value": rows["KEY"].to_numpy(), "message": message,
        }, columns=QUARANTINE_COLUMNS))


def _write(path: Path, table: pd.DataFrame) -> Path:
    """A raw table as Parquet, every value as it was parsed (missing values become None);
    encrypted at rest in the raw zone (:func:`~dhsurvey.io.atomic_write_parquet`)."""
    # pandas-stubs reject other=None, which pandas accepts (missing values become None)
    return atomic_write_parquet(
        path, table.astype(object).where(table.notna(), None))  # type: ignore[call-overload]


def write_raw(raw: RawForm, folder: str | Path) -> list[Path]:
    """``<form>.parquet``, ``<form>-<repeat>.parquet`` and ``<form>-quarantine.parquet``."""
    folder = Path(folder)
    paths = [_write(folder / raw_table(raw.form_id), raw.root)]
    for name, table in sorted(raw.repeats.items()):
        paths.append(_write(folder / raw_table(raw.form_id, name), table))
    paths.append(_write(folder / raw_table(raw.form_id, QUARANTINE), raw.quarantine))
    return paths


def repeat_names(folder: str | Path, form_id: str) -> list[str]:
    """The repeats of a form in a raw folder (``<form>-<repeat>.parquet``), sorted."""
    return sorted(p.stem[len(form_id) + 1:] for p in Path(folder).glob(f"{form_id}-*.parquet")
                  if p.stem != f"{form_id}-{QUARANTINE}")


def read_raw(folder: str | Path, form_id: str) -> RawForm:
    folder = Path(folder)
    root_path = folder / raw_table(form_id)
    if not root_path.exists():
        raise DhsurveyError("no raw table for this form", code="raw-missing", file=root_path,
                            form=form_id)
    root = read_parquet(root_path)
    repeats = {name: read_parquet(folder / raw_table(form_id, name))
               for name in repeat_names(folder, form_id)}
    q_path = folder / raw_table(form_id, QUARANTINE)
    quarantine = read_parquet(q_path) if q_path.exists() else empty_quarantine()
    return RawForm(form_id, root, repeats, quarantine)
