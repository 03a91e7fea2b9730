"""Read any export into canonical tables: recognise the format and the form, then dispatch.

A ``.zip`` goes to :mod:`dhsurvey.ingest.central`, Kobo ``.json`` to :mod:`dhsurvey.ingest.kobo`,
a folder of instance XML to :mod:`dhsurvey.ingest.xmlfolder`. What the readers share (decoding,
time stamps, the table builder and its quarantine rules ``ROOT_RULES``/``REPEAT_RULES``) is in
:mod:`dhsurvey.ingest.builder`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.builder import REPEAT_RULES, ROOT_RULES, decode_utf8
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.central import read_central_zip
from dhsurvey.ingest.instances import Instance, discover_instances
from dhsurvey.ingest.kobo import read_kobo_json
from dhsurvey.ingest.limits import JSON, read_file
from dhsurvey.ingest.xmlfolder import read_xml_folder

__all__ = ["REPEAT_RULES", "ROOT_RULES", "read_export", "read_export_forms"]


# --------------------------------------------------------------------------- dispatch


def _unknown(file: str | Path, found: str | None, models: Mapping[str, FormModel],
             why: str = "") -> DhsurveyError:
    known = ", ".join(sorted(models)) or "none"
    what = f"form id '{found}' is not one of the study's forms" if found else (
        why or "cannot tell which form this export belongs to")
    return DhsurveyError(f"{what} (known: {known})", code="export-unknown-form", file=str(file),
                         form=found)


def _zip_form_id(path: Path, models: Mapping[str, FormModel]) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DhsurveyError(f"is not a complete zip file: still being copied, or damaged "
                            f"({exc})", code="export-unreadable", file=str(path)) from None
    matches = [form_id for form_id in models if f"{form_id}.csv" in names]
    if len(matches) == 1:
        return matches[0]
    roots = sorted(n for n in names if n.endswith(".csv") and "/" not in n)
    raise _unknown(path, None, models,
                   f"no single '<formId>.csv' of a known form in the zip (csv files: "
                   f"{', '.join(roots) or 'none'})")


def _json_form_id(paths: Sequence[Path], models: Mapping[str, FormModel]) -> str:
    broken: list[tuple[Path, Exception]] = []
    for path in paths:
        try:  # a page over the size cap is refused here, unread
            page = json.loads(decode_utf8(read_file(path, JSON), path) or "null")
        except (json.JSONDecodeError, OSError) as exc:
            broken.append((path, exc))
            continue  # the reader reports it with the line
        results = page.get("results") if isinstance(page, dict) else None
        for result in results if isinstance(results, list) else []:
            if isinstance(result, dict) and result.get("_xform_id_string"):
                found = str(result["_xform_id_string"])
                if found not in models:
                    raise _unknown(path, found, models)
                return found
    if broken:
        first, why = broken[0]
        raise DhsurveyError(f"is not complete JSON: still being copied, or damaged ({why})",
                            code="export-unreadable", file=str(first))
    raise _unknown(paths[0], None, models,
                   "no submission carries '_xform_id_string' (empty or not a Kobo export)")


def _xml_form_ids(folder: Path, models: Mapping[str, FormModel]) -> list[str]:
    """The study forms whose submissions the folder holds (a device folder holds several)."""
    found = [i.form_id for i in discover_instances(folder) if i.form_id]
    known = sorted({f for f in found if f in models})
    if known:
        return known
    raise _unknown(folder, found[0] if found else None, models,
                   "no submission found: no instance XML with a form id (an ODK Collect "
                   "instances/ folder, Briefcase storage, or a folder of instance .xml files)")


def discover_folders(paths: Iterable[str | Path]) -> dict[Path, list[Instance]]:
    """The instances of each folder of instance XML among ``paths``, each folder walked once:
    what :func:`read_export_forms` takes as ``discovered``."""
    return {Path(p): discover_instances(p) for p in dict.fromkeys(paths) if Path(p).is_dir()}


def read_export_forms(path: str | Path | Sequence[str | Path],
                      models: Mapping[str, FormModel], *, private_key_pem: bytes | None = None,
                      only: str | None = None,
                      discovered: dict[Path, list[Instance]] | None = None) -> list[RawForm]:
    """Read one export into a table per form it holds (a folder of instance XML may hold
    several forms; any other export holds one). With ``only``, just that form's table: an
    instance folder without its submissions gives an empty one, and every other export must be
    of that form. ``discovered`` keeps the instances found in each folder for the next read
    of it (each of a country's forms reads every instance folder)."""
    if isinstance(path, str | Path) and Path(path).is_dir():
        folder = Path(path)
        forms = [only] if only else _xml_form_ids(folder, models)
        instances = None
        if discovered is not None:
            if folder not in discovered:
                discovered[folder] = discover_instances(folder)
            instances = discovered[folder]
        return [read_xml_folder(folder, models[form], private_key_pem=private_key_pem,
                                other_forms=[f for f in models if f != form],
                                instances=instances)
                for form in forms]
    chosen = {only: models[only]} if only else models
    return [read_export(path, chosen, private_key_pem=private_key_pem)]


def read_export(path: str | Path | Sequence[str | Path], models: Mapping[str, FormModel], *,
                private_key_pem: bytes | None = None) -> RawForm:
    """Read one export of any supported kind, choosing the form from the export itself.

    A ``.zip`` is an ODK Central CSV export (form from its ``{formId}.csv``), a ``.json`` file
    (or a list of them: pages) is KoboToolbox v2 data (form from ``_xform_id_string``), a folder
    holds instance XML (form from the root ``id``). Anything else, or a form not in ``models``,
    is a :class:`DhsurveyError` naming the file rather than a guess.
    """
    if not isinstance(path, str | Path):
        pages = [Path(p) for p in path]
        if not pages:
            raise DhsurveyError("no export files given", code="export-missing")
        if not all(p.suffix.lower() == ".json" for p in pages):
            raise DhsurveyError("several files are read together only as Kobo JSON pages",
                                code="export-unknown-format", file=str(pages[0]))
        return read_kobo_json(pages, models[_json_form_id(pages, models)])
    path = Path(path)
    if not path.exists():
        raise DhsurveyError("export not found", code="export-missing", file=str(path))
    if path.is_dir():
        tables = read_export_forms(path, models, private_key_pem=private_key_pem)
        if len(tables) > 1:
            forms = ", ".join(t.form_id for t in tables)
            raise DhsurveyError(f"submissions of several forms in one folder: {forms} (read it "
                                "with read_export_forms)", code="export-mixed-forms",
                                file=str(path))
        return tables[0]
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return read_central_zip(path, models[_zip_form_id(path, models)])
    if suffix == ".json":
        return read_kobo_json(path, models[_json_form_id([path], models)])
    raise DhsurveyError(
        f"unknown export format '{suffix or 'no suffix'}' (expected a Central .zip, a Kobo "
        ".json or a folder of instance XML)", code="export-unknown-format", file=str(path))
