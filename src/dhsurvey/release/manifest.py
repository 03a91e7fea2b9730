"""The release manifest: which form version each file came from, and its checksum.

Why: a researcher holding ``child.dta`` must be able to tell which questionnaire version it
was built from and whether the file is the one published; a data manager comparing two
releases must see what changed. ``manifest.json`` lists every file of a release folder with
its SHA-256 and size and, for a data table, the form (ID, title, version) and its rows and
columns. It holds no timestamps, so a rebuilt release with the same inputs has the same
manifest, byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dhsurvey.forms.model import FormModel
from dhsurvey.io import atomic_write_json
from dhsurvey.release.formats.parquet import ParquetTable
from dhsurvey.release.writers import model_for

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path, tables: Mapping[str, pd.DataFrame | ParquetTable],
                   models: Mapping[str, FormModel], about: Mapping[str, Any]) -> Path:
    """Write ``folder/manifest.json`` over every other file in ``folder`` (sorted by name).

    ``tables``: the released tables by name (``child``, ``household.roster`` …) — a file
    ``<name>.<ext>`` is linked to its table; ``about``: what the release is (country or
    countries, release label, …), copied to the top of the manifest.
    """
    folder = Path(folder)
    forms = {}
    for name, table in tables.items():
        model = model_for(name, models)
        forms[name] = {"form_id": model.form_id, "title": model.title,
                       "version": model.version, "rows": int(len(table)),
                       "columns": int(table.shape[1])}
    files = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST
                       and not p.name.startswith(".")):
        entry: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size,
                                 "sha256": _sha256(path)}
        stem = path.name.rsplit(".", 1)[0]
        if stem in forms:
            entry["table"] = stem
        files.append(entry)
    return atomic_write_json(folder / MANIFEST, {**about, "tables": forms, "files": files})


__all__ = ["MANIFEST", "write_manifest"]
