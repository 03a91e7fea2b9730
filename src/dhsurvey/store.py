"""The data store: one owner of the runtime data layout (zones, file names, permissions).

Why: every stage reads what an earlier one wrote. When each spells its own paths the layout
drifts (a batched release nobody pools, a gate file read from one place and written to
another). Here every zone and file name is spelled once; stages, the CLI, the demo and the
Dagster resource ask the store for paths and typed reads and writes.

Zones (``root`` defaults to ``./data``)::

    landing/<ISO>/…            exports as they arrive, the sample design, faults.json  restricted
    raw/<ISO>/<form>.parquet   parsed, decrypted submissions (+ repeats, quarantine)    restricted
    clean/<ISO>/…              accepted, quarantine, quality, weights, restricted maps  restricted
    licensed/<ISO>/…           scientific-use files                                     licensed
    release/<ISO>/…            public-use files; release/pooled/ for all countries      public
    build/ secrets/            compiled forms; the demo's throwaway keys                restricted

The Parquet files of ``raw/`` and ``clean/`` (:data:`ENCRYPTED`; the restricted mappings of
release IDs included) are encrypted at rest when ``DHSURVEY_AT_REST_KEY`` is set: the store
reads and writes them through :mod:`dhsurvey.io`, which decides by the path
(:func:`~dhsurvey.io.in_encrypted_zone`: a folder on it named ``raw`` or ``clean``); hence
the data root may not lie below a folder of those names.

Restricted zones and their folders are 0700 (made so when the store hands out a path, even if
someone else created them); every file is written atomically (temporary file in the same folder,
renamed into place; ``mkstemp`` makes it 0600) or, when a library writes it through a handle,
opened 0600 (:func:`~dhsurvey.io.open_private`), so a killed run never leaves a half-written
file and nothing in a restricted zone is readable by other users (tested after a batched run).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pandas as pd

from dhsurvey.io import (
    ENCRYPTED,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    parquet_file,
    private_dirs,
    read_parquet,
    seal,
    unseal,
)

#: Zones that hold personal data: created owner-only.
RESTRICTED = ("landing", "raw", "clean", "build", "secrets", "work")
#: Folder of the pooled release under ``release/``.
POOLED = "pooled"
# A raw folder (``raw/<ISO>/``, ``landing/<ISO>/central-api/``): per form its root table,
# one table per repeat and the ingest quarantine.
RAW_QUARANTINE = "quarantine"


# The landing layout, relative to ``landing/<ISO>/`` (README, "The landing folder"); glob
# patterns, ``{form}`` standing for a form id. Spelled here only: :meth:`Store.exports` reads
# by them and :mod:`dhsurvey.ingest.landing` tells recognised files from the others by them.
#: ODK Central's CSV zip export of a form; a newer export replaces the file.
CENTRAL_EXPORT = "central/{form}.csv.zip"
#: KoboToolbox v2 JSON pages of a form.
KOBO_PAGES = "kobo/{form}*.json"
#: Folders of instance XML in any layout (Collect device, Briefcase storage, flat, Central
#: per-submission downloads), every form mixed; the form is read from each instance.
XML_FOLDERS = "xml/*"
#: Submissions pulled from ODK Central's API (``dhsurvey fetch``, the Central sync job).
CENTRAL_API = "central-api"
#: Back-check re-interviews of a sample of households (``instruments/backcheck.yaml``):
#: exports of the plan's form in any format ingest reads, an ODK Central CSV zip
#: (``<form>.csv.zip``), KoboToolbox JSON pages (``<form>*.json``) or a folder of instance XML.
#: Never read as fieldwork (:meth:`Store.exports` does not look here); the form is read from
#: each export, as ingest does.
BACKCHECK = "backcheck/*"
#: The files of :data:`BACKCHECK` the readers take (any folder there is instance XML).
BACKCHECK_FILES = ("*.csv.zip", "*.json")
#: The sample design (households with their selection probabilities; PSUs beside it).
DESIGN = "design/households.parquet"
DESIGN_FILES = "design/*.parquet"
#: Simulated fieldwork only: the planted faults and canaries.
FAULTS = "faults.json"
#: A marker a transfer script writes when an upload is complete (any name, top level).
DONE_MARKER = "*.done"


def raw_table(form: str, repeat: str | None = None) -> str:
    """File of a form's raw root table, or of one of its repeats (or the quarantine)."""
    return f"{form}.parquet" if repeat is None else f"{form}-{repeat}.parquet"


# A validation folder (``clean/<ISO>/`` or ``dhsurvey validate --out DIR``): per form
# ``<form>/ACCEPTED``, the issue tables and ``RECONCILIATION``; beside them the high-frequency
# check tables (``QUALITY/``), the report and the Great Expectations Data Docs.
ACCEPTED = "accepted.parquet"
ISSUES = ("quarantine", "flags", "duplicates")
CORRECTIONS = "corrections.parquet"
RECONCILIATION = "reconciliation.json"
QUALITY = "quality"
REPORT = "report.html"
DATA_DOCS = "data_docs"
#: Back-check comparison tables of a country (``clean/<ISO>/backcheck/<table>.parquet``).
BACKCHECKS = "backcheck"
#: A country's counts at each run, by form and enumerator (the morning report's history).
HISTORY = "history.parquet"


def is_backcheck_file(name: str) -> bool:
    """Whether a file of ``backcheck/`` is, by its name, an export the readers take."""
    return any(fnmatchcase(name, pattern) for pattern in BACKCHECK_FILES)


def accepted_repeat(name: str) -> str:
    """File of a form's accepted rows of repeat ``name``."""
    return f"accepted-{name}.parquet"


def issue_table(name: str) -> str:
    """File of a form's issues of one kind (:data:`ISSUES`)."""
    return f"{name}.parquet"


@dataclass(frozen=True)
class Store:
    """The data root and the release label (release IDs are fresh per label, stable for a
    rebuild of the same label)."""

    root: Path
    release_label: str = "r1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        below = [part for part in self.root.absolute().parts if part in ENCRYPTED]
        if below:
            from dhsurvey.errors import DhsurveyError

            # Files are encrypted at rest by a folder named raw or clean on their path
            # (dhsurvey.io): below one, the release would be encrypted too.
            raise DhsurveyError(
                f"the data root may not lie in a folder named '{below[0]}' (a name of a data "
                "zone): choose another folder", code="store-root", file=self.root)

    # ------------------------------------------------------------------------- zones

    def zone(self, name: str, country: str | None = None) -> Path:
        """``root/name[/country]``, created (owner-only for restricted zones)."""
        path = self.root / name / country if country else self.root / name
        self._mkdir(path, name in RESTRICTED)
        return path

    def _mkdir(self, path: Path, restricted: bool) -> None:
        """Create ``path``; in a restricted zone every folder from the zone down to ``path``
        is made owner-only, also when it exists already (exports copied into ``landing/``
        by hand, a folder made by another tool)."""
        if not restricted:
            path.mkdir(parents=True, exist_ok=True)
            return
        self.root.mkdir(parents=True, exist_ok=True)  # the data root as the umask makes it
        private_dirs(path)
        folder = self.root
        for part in path.relative_to(self.root).parts:  # not the data root itself
            folder = folder / part
            if stat.S_IMODE(folder.stat().st_mode) != 0o700:
                os.chmod(folder, 0o700)

    def landing(self, iso: str | None = None) -> Path:
        return self.zone("landing", iso)

    def raw(self, iso: str) -> Path:
        return self.zone("raw", iso)

    def has_raw(self, iso: str, form: str, folder: Path | None = None) -> bool:
        """Whether a raw root table of ``form`` is in the raw zone (or ``folder``)."""
        return ((folder or self.raw(iso)) / raw_table(form)).exists()

    def clean(self, iso: str) -> Path:
        return self.zone("clean", iso)

    def release(self, iso: str) -> Path:
        """Public-use files of a country (``POOLED`` for all countries together)."""
        return self.zone("release", iso)

    def licensed(self, iso: str) -> Path:
        return self.zone("licensed", iso)

    @property
    def build(self) -> Path:
        return self.zone("build")

    @property
    def secrets(self) -> Path:
        return self.zone("secrets")

    def work(self, iso: str, step: str) -> Path:
        """Scratch space of a step (batches of a partition), emptied before use."""
        path = self.clean(iso) / "work" / step
        if path.exists():
            shutil.rmtree(path)
        self._mkdir(path, True)
        return path

    # ----------------------------------------------------------------------- landing

    def exports(self, iso: str, form: str) -> list[Path]:
        """Every export that may hold submissions of ``form`` in a country's landing folder, in
        a stable order: its ODK Central CSV zip, its KoboToolbox JSON pages, and every folder
        of instance XML (any layout; the reader keeps the instances of ``form``)."""
        landing = self.landing(iso)
        found = sorted(landing.glob(CENTRAL_EXPORT.format(form=form)))
        found += sorted(landing.glob(KOBO_PAGES.format(form=form)))
        found += [p for p in sorted(landing.glob(XML_FOLDERS))
                  if p.is_dir() and not p.name.startswith(".")]
        return found

    def backcheck_exports(self, iso: str) -> list[Path]:
        """Every back-check export in a country's landing folder (:data:`BACKCHECK`), in a
        stable order: its Central CSV zips and Kobo JSON pages (:data:`BACKCHECK_FILES`) and its
        folders of instance XML; hidden files and folders, and other files, left out."""
        return [p for p in sorted(self.landing(iso).glob(BACKCHECK))
                if not p.name.startswith(".") and (p.is_dir() or is_backcheck_file(p.name))]

    def central_api(self, iso: str) -> Path:
        """Submissions pulled from ODK Central's API (raw-zone layout)."""
        return self.landing(iso) / CENTRAL_API

    def central_state(self) -> Path:
        """Where incremental pulls from ODK Central keep their position."""
        return self.landing() / "central"

    def design_path(self, iso: str) -> Path:
        return self.landing(iso) / DESIGN

    def design(self, iso: str) -> pd.DataFrame:
        """The sample's households with their selection probabilities."""
        path = self.design_path(iso)
        if not path.exists():
            from dhsurvey.errors import DhsurveyError

            raise DhsurveyError("the sample design is missing", code="store-design",
                                file=path, country=iso)
        return read_parquet(path)

    def faults(self, iso: str) -> dict[str, Any]:
        """``faults.json`` of simulated fieldwork (planted faults and canaries), or {}."""
        path = self.landing(iso) / FAULTS
        return json.loads(path.read_text()) if path.exists() else {}

    # ------------------------------------------------------------------------- clean

    def form_dir(self, iso: str, form: str) -> Path:
        """Validation results of one form: accepted, quarantine, flags, duplicates."""
        return self.clean(iso) / form

    def accepted_parts(self, iso: str, form: str) -> list[Path]:
        """A form's accepted rows: one file, or one part per batch of PSUs."""
        folder = self.form_dir(iso, form)
        whole = folder / ACCEPTED
        return [whole] if whole.exists() else sorted((folder / "accepted").glob("*.parquet"))

    def accepted_part(self, iso: str, form: str, batch: int | None) -> Path:
        """Where validation writes a form's accepted rows (``batch=None``: whole)."""
        folder = self.form_dir(iso, form)
        return folder / ACCEPTED if batch is None else \
            folder / "accepted" / f"batch-{batch:05d}.parquet"

    def clear_accepted(self, iso: str, form: str) -> None:
        """Remove a form's accepted rows of an earlier run (whole or batched)."""
        folder = self.form_dir(iso, form)
        (folder / ACCEPTED).unlink(missing_ok=True)
        shutil.rmtree(folder / "accepted", ignore_errors=True)

    def accepted_batches(self, iso: str, form: str, columns: list[str] | None = None
                         ) -> Iterator[pd.DataFrame]:
        """A form's accepted rows one part at a time (some columns, or all)."""
        for path in self.accepted_parts(iso, form):
            yield read_parquet(path, columns=columns)

    def read_accepted(self, iso: str, form: str, columns: list[str] | None = None
                      ) -> pd.DataFrame:
        """Some columns of a form's accepted rows over every part."""
        frames = list(self.accepted_batches(iso, form, columns))
        if not frames:
            from dhsurvey.errors import DhsurveyError

            raise DhsurveyError("no accepted rows: validation has not run", code="store-clean",
                                country=iso, form=form)
        frames = [f for f in frames if len(f)] or frames[:1]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def accepted_columns(self, iso: str, form: str) -> list[str]:
        parts = self.accepted_parts(iso, form)
        if not parts:
            return []
        with parquet_file(parts[0]) as source:
            return [c for c in source.schema_arrow.names if not c.startswith("__")]

    def has_accepted(self, iso: str, form: str) -> bool:
        return bool(self.accepted_parts(iso, form))

    def reconciliation(self, iso: str, form: str) -> dict[str, Any]:
        return json.loads((self.form_dir(iso, form) / RECONCILIATION).read_text())

    def quality(self, iso: str) -> Path:
        """The validation folder: high-frequency check tables (``QUALITY/``), ``REPORT`` and
        ``DATA_DOCS`` live here."""
        return self.clean(iso)

    def report(self, iso: str) -> Path | None:
        """The country's fieldwork quality report when validation wrote one (no folder is
        created: a web server asks for countries by name)."""
        path = self.root / "clean" / iso / REPORT
        return path if path.is_file() else None

    def countries_with_reports(self) -> list[str]:
        clean = self.root / "clean"
        return sorted(p.parent.name for p in clean.glob(f"*/{REPORT}")) if clean.is_dir() \
            else []

    def quality_table(self, iso: str, name: str) -> pd.DataFrame:
        """One high-frequency check table (``aapor``, ``enumerator_dashboard`` …)."""
        return read_parquet(self.clean(iso) / QUALITY / f"{name}.parquet")

    def read_history(self, iso: str) -> pd.DataFrame:
        """The country's counts recorded at each run (``run, form, enum_id, metric, value``;
        empty before the first)."""
        path = self.clean(iso) / HISTORY
        if not path.exists():
            return pd.DataFrame({"run": pd.Series(dtype="string"),
                                 "form": pd.Series(dtype="string"),
                                 "enum_id": pd.Series(dtype="Int64"),
                                 "metric": pd.Series(dtype="string"),
                                 "value": pd.Series(dtype="float64")})
        return read_parquet(path)

    def write_history(self, iso: str, history: pd.DataFrame) -> Path:
        return atomic_write_parquet(self.clean(iso) / HISTORY, history.reset_index(drop=True))

    def backchecks(self, iso: str) -> Path:
        """Back-check comparison tables of a country (:data:`BACKCHECKS`: ``comparison``,
        ``by_enumerator`` …; :func:`dhsurvey.validate.backcheck.country_backcheck`)."""
        return self.clean(iso) / BACKCHECKS

    def backcheck_table(self, iso: str, name: str) -> pd.DataFrame:
        """One back-check table of a country (``by_enumerator``, ``by_variable`` …)."""
        return read_parquet(self.backchecks(iso) / f"{name}.parquet")

    def weights_dir(self, iso: str) -> Path:
        return self.clean(iso) / "weights"

    def write_weights(self, iso: str, weights: Any) -> list[Path]:
        """Weight tables per form, the summary, and the whole result (replicate design in
        factor form) for the release to generate replicate weights from."""
        folder = self.weights_dir(iso)
        paths = [atomic_write_parquet(folder / f"{name}.parquet", getattr(weights, name))
                 for name in ("household", "child", "caregiver")]
        paths.append(atomic_write_json(folder / "summary.json", weights.summary))
        path = folder / "weights.pickle"  # sealed at rest like the Parquet files
        paths.append(atomic_write_bytes(path, seal(path, pickle.dumps(weights, protocol=5))))
        return paths

    def read_weights(self, iso: str) -> Any:
        """The :class:`~dhsurvey.weight.study.StudyWeights` the weight step wrote (a file of
        this store's own restricted zone, written by the same code)."""
        path = self.weights_dir(iso) / "weights.pickle"
        if not path.exists():
            from dhsurvey.errors import DhsurveyError

            raise DhsurveyError("no weights: the weight step has not run", code="store-clean",
                                file=path, country=iso)
        return pickle.loads(unseal(path, path.read_bytes()))

    def weights_summary(self, iso: str) -> dict[str, Any]:
        return json.loads((self.weights_dir(iso) / "summary.json").read_text())

    def restricted(self, iso: str) -> Path:
        """Mappings from release IDs back to instanceIDs and households (never released)."""
        return self.clean(iso) / "restricted"

    def gate_path(self, iso: str) -> Path:
        return self.clean(iso) / "gate.json"

    def write_gate(self, iso: str, verdict: dict[str, Any]) -> Path:
        return atomic_write_json(self.gate_path(iso), verdict)

    def gate(self, iso: str) -> dict[str, Any] | None:
        """The country's latest disclosure-gate decision, or None before its first release."""
        path = self.gate_path(iso)
        return json.loads(path.read_text()) if path.exists() else None


__all__ = ["ACCEPTED", "BACKCHECK", "BACKCHECKS", "BACKCHECK_FILES", "CENTRAL_API",
           "CENTRAL_EXPORT", "CORRECTIONS", "DATA_DOCS", "DESIGN",
           "DESIGN_FILES", "DONE_MARKER", "ENCRYPTED", "FAULTS", "HISTORY", "ISSUES", "KOBO_PAGES",
           "POOLED", "QUALITY", "RAW_QUARANTINE", "RECONCILIATION", "REPORT", "RESTRICTED",
           "XML_FOLDERS", "Store", "accepted_repeat", "is_backcheck_file", "issue_table",
           "raw_table"]
