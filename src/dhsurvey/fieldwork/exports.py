"""Write canonical tables in the shapes real servers and devices produce.

The simulator hands its :class:`RawForm` to these writers so that ingest is tested on the same
layouts it meets in the field: an ODK Central CSV zip, KoboToolbox v2 data JSON, and a folder of
instance XML (plain or encrypted as Collect does it). Each writer is deterministic (same tables →
same bytes; a seeded ``rng`` gives the AES keys, so only the two RSA-OAEP values of an
encrypted manifest, whose padding ``cryptography`` draws, differ between runs) and is the exact
inverse of its reader in :mod:`dhsurvey.ingest`, which the round-trip tests hold them to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.builder import repeat_position
from dhsurvey.ingest.canonical import RawForm, normalise
from dhsurvey.ingest.central import (
    repeat_header,
    root_header,
    split_geopoint,
    table_name,
)
from dhsurvey.ingest.decrypt import MANIFEST_NAME, encrypt_submission
from dhsurvey.ingest.instances import SUBMISSION_DATE_ATTR, instance_folder_name
from dhsurvey.ingest.kobo import REVIEW_TO_VALIDATION, VALIDATION_LABELS, full_path
from dhsurvey.ingest.xmlfolder import children_by_container
from dhsurvey.io import atomic_write_bytes, atomic_write_text, private_dirs

__all__ = ["device_field", "write_central_zip", "write_kobo_json", "write_xml_folder"]

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same tables give the same zip bytes


# --------------------------------------------------------------------------- shared


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts of canonical cells (built column by column: a country's
    tables hold millions of cells)."""
    if frame is None or frame.empty:
        return []
    names = [str(c) for c in frame.columns]
    columns = [[normalise(v) for v in frame.iloc[:, i].tolist()] for i in range(len(names))]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _children(raw: RawForm, model: FormModel) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """repeat name → parent KEY → rows in position order (the order devices write them)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rep in model.repeats:
        by_parent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in _records(raw.repeats.get(rep.name)):
            by_parent[rec[PARENT]].append(rec)
        for rows in by_parent.values():  # stable: table order where KEY has no position
            rows.sort(key=lambda r: repeat_position(r["KEY"] or "") or 0)
        out[rep.name] = by_parent
    return out


def _utc(stamp: str | None) -> dt.datetime | None:
    if stamp is None:
        return None
    try:
        value = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


# --------------------------------------------------------------------------- Central CSV zip


def _csv_line(cells: list[str]) -> str:
    """One record as Central's csv-stringify writes it: quote only when needed, ``\\n`` ends."""
    line = ",".join(cells)
    # Most records need no quotes: a search of the joined line, not of every cell.
    if line.count(",") == len(cells) - 1 and not any(ch in line for ch in '"\n\r'):
        return line + "\n"
    out = []
    for cell in cells:
        if any(ch in cell for ch in ',"\n\r'):
            cell = '"' + cell.replace('"', '""') + '"'
        out.append(cell)
    return ",".join(out) + "\n"


def _submitter_id(name: str | None) -> str:
    """A stable numeric actor id for a submitter name (Central numbers its users)."""
    if name is None:
        return ""
    return str(int(hashlib.sha256(name.encode()).hexdigest()[:6], 16) % 9000 + 1000)


def _cells(model: FormModel, repeat: str | None, rec: dict[str, Any]) -> list[str]:
    cells: list[str] = []
    for item in model.fields_in(repeat):
        value = rec.get(item.name)
        if item.type == "geopoint":
            cells += split_geopoint(value)
        else:
            cells.append(value or "")
    return cells


def device_field(model: FormModel) -> str | None:
    """The root field a device writes its id into (``deviceid`` metadata), if the form has
    one: Central's ``DeviceID`` column, and which tablet a submission was made on."""
    return next((i.name for i in model.fields_in(None) if i.type == "deviceid"), None)


def central_tables(raw: RawForm, model: FormModel) -> dict[str, str]:
    """The CSV texts of a Central export by member name (root first, then repeats)."""
    device = device_field(model)
    lines = [_csv_line(root_header(model))]
    for rec in _records(raw.root):
        key = rec["KEY"] or ""
        lines.append(_csv_line([
            rec["submission_time"] or "", *_cells(model, None, rec), key,
            key, _submitter_id(rec["submitter"]), rec["submitter"] or "", "0", "0", "",
            rec["review_state"] or "", (rec.get(device) if device else None) or "",
            "0", rec["form_version"] or "",
        ]))
    tables = {table_name(model): "".join(lines)}
    for rep in model.repeats:
        lines = [_csv_line(repeat_header(model, rep.name))]
        for rec in _records(raw.repeats.get(rep.name)):
            lines.append(_csv_line([*_cells(model, rep.name, rec), rec[PARENT] or "",
                                    rec["KEY"] or ""]))
        tables[table_name(model, rep.name)] = "".join(lines)
    return tables


def write_central_zip(raw: RawForm, model: FormModel, path: str | Path) -> Path:
    """Write ``raw`` as ODK Central's ``submissions.csv.zip`` (no media, no audit log).

    Root: ``SubmissionDate``, fields with ``-``-joined group paths (geopoints in four columns),
    ``meta-instanceID``, then Central's metadata ``KEY … FormVersion``. One
    ``{formId}-{repeat}.csv`` per repeat with ``PARENT_KEY`` and ``KEY`` last.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in central_tables(raw, model).items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, text.encode("utf-8"))
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- Kobo JSON


def _geolocation(model: FormModel, rec: dict[str, Any]) -> list[float | None]:
    """Kobo's ``_geolocation``: latitude and longitude of the form's first geopoint."""
    geo = next((i for i in model.fields_in(None) if i.type == "geopoint"), None)
    parts = (rec.get(geo.name) or "").split() if geo else []
    try:
        return [float(parts[0]), float(parts[1])]
    except (IndexError, ValueError):
        return [None, None]


def _kobo_level(model: FormModel, level: str | None, rec: dict[str, Any],
                children: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Answers of one row, plus its repeats, keyed by full path in form order."""
    out: dict[str, Any] = {}
    for item in model.items:
        if item.repeat != level:
            continue
        if item.is_repeat:
            rows = children[item.name].get(rec["KEY"], [])
            if rows:
                out[full_path(item)] = [_kobo_level(model, item.name, r, children)
                                        for r in rows]
        elif item.holds_data and rec.get(item.name) is not None:
            out[full_path(item)] = rec[item.name]
    return out


def kobo_results(raw: RawForm, model: FormModel) -> list[dict[str, Any]]:
    """The ``results`` objects of a Kobo v2 data export, one per root row."""
    children = _children(raw, model)
    formhub = hashlib.md5(f"{model.form_id}:{model.version}".encode(),
                          usedforsecurity=False).hexdigest()
    results = []
    for number, rec in enumerate(_records(raw.root), start=1):
        key = rec["KEY"] or ""
        obj: dict[str, Any] = {"_id": number, "formhub/uuid": formhub}
        obj.update(_kobo_level(model, None, rec, children))
        if rec["form_version"] is not None:
            obj["__version__"] = rec["form_version"]
        obj["meta/instanceID"] = key
        uid = REVIEW_TO_VALIDATION.get(rec["review_state"] or "")
        submitted = _utc(rec["submission_time"])
        obj.update({
            "_xform_id_string": model.form_id,
            "_uuid": key.removeprefix("uuid:"),
            "_attachments": [],
            "_status": "submitted_via_web",
            "_geolocation": _geolocation(model, rec),
            "_submission_time": submitted.strftime("%Y-%m-%dT%H:%M:%S") if submitted else None,
            "_validation_status": {"uid": uid, "label": VALIDATION_LABELS[uid]} if uid else {},
            "_submitted_by": rec["submitter"],
        })
        results.append(obj)
    return results


def write_kobo_json(raw: RawForm, model: FormModel, path: str | Path, *,
                    page_size: int | None = None) -> list[Path]:
    """Write ``raw`` as KoboToolbox v2 ``data.json`` page(s); returns the files written.

    With ``page_size`` the results are split like the API pages them: ``path`` holds the first
    page, ``<stem>-2.json`` … the next ones, each with ``next``/``previous`` links. Central's
    review state "edited" has no Kobo validation status and is written as ``{}``.
    """
    path = Path(path)
    results = kobo_results(raw, model)
    size = page_size or max(len(results), 1)
    pages = [results[i:i + size] for i in range(0, len(results), size)] or [[]]
    names = [path] + [path.with_name(f"{path.stem}-{n}{path.suffix}")
                      for n in range(2, len(pages) + 1)]
    base = f"https://kf.kobotoolbox.org/api/v2/assets/{model.form_id}/data.json?limit={size}"
    for n, page in enumerate(pages):
        doc = {
            "count": len(results),
            "next": f"{base}&start={(n + 1) * size}" if n + 1 < len(pages) else None,
            "previous": (base if n == 1 else f"{base}&start={(n - 1) * size}") if n else None,
            "results": page,
        }
        atomic_write_text(names[n], json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    return names


# --------------------------------------------------------------------------- instance XML


def _escape_text(value: str) -> str:
    # \r must be a character reference or XML parsers turn it into \n.
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def _xml_content(model: FormModel, lookup: dict[tuple[str, ...], dict[str, Item]],
                 path: tuple[str, ...], rec: dict[str, Any],
                 children: dict[str, dict[str, list[dict[str, Any]]]]) -> Iterator[str]:
    """Elements inside one container: absent values and empty groups are left out."""
    for name, item in lookup.get(path, {}).items():
        if item.is_repeat:
            for row in children[name].get(rec["KEY"], []):
                inner = "".join(_xml_content(model, lookup, (*path, name), row, children))
                yield f"<{name}>{inner}</{name}>" if inner else f"<{name}/>"
        elif item.is_group:
            inner = "".join(_xml_content(model, lookup, (*path, name), rec, children))
            if inner:
                yield f"<{name}>{inner}</{name}>"
        elif rec.get(name) is not None:
            yield f"<{name}>{_escape_text(rec[name])}</{name}>"


def instance_xml(model: FormModel, rec: dict[str, Any],
                 children: dict[str, dict[str, list[dict[str, Any]]]], *,
                 submission_date: bool = True,
                 lookup: dict[tuple[str, ...], dict[str, Item]] | None = None) -> bytes:
    """The submission document of one root row, as a device would send it (``lookup``: the
    form's :func:`children_by_container`, passed in when writing many)."""
    lookup = lookup if lookup is not None else children_by_container(model)
    root = model.settings.get("name") or "data"
    attrs = f"id={quoteattr(model.form_id)}"
    if rec["form_version"] is not None:
        attrs += f" version={quoteattr(rec['form_version'])}"
    if submission_date and rec["submission_time"] is not None:
        attrs += f" {SUBMISSION_DATE_ATTR}={quoteattr(rec['submission_time'])}"
    body = "".join(_xml_content(model, lookup, (), rec, children))
    key = rec["KEY"]  # None only in deliberately broken data: the reader quarantines it
    edits = rec.get("deprecated_id")  # an edit names the instanceID it replaces
    meta = (f"<meta><instanceID>{_escape_text(key)}</instanceID>" if key else
            "<meta><instanceID/>") + (
        f"<deprecatedID>{_escape_text(edits)}</deprecatedID>" if edits else "") + "</meta>"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} {attrs}>{body}{meta}</{root}>\n'
            ).encode()


def write_xml_folder(raw: RawForm, model: FormModel, folder: str | Path, *,
                     public_key_pem: bytes | None = None,
                     rng: Callable[[int], bytes] | None = None) -> list[Path]:
    """Write one ``<folder>/<instance>/submission.xml`` per root row; returns the folders.

    Plain instances carry a Briefcase-style ``submissionDate`` root attribute when the time is
    known. With ``public_key_pem`` each instance is encrypted as Collect does it
    (``submission.xml`` manifest + ``submission.xml.enc``); the submission date then goes on the
    manifest, where the server adds it. Other files already in ``folder`` are left alone.
    """
    folder = private_dirs(folder)
    children = _children(raw, model)
    lookup = children_by_container(model)
    written: list[Path] = []
    used: set[str] = set()
    for rec in _records(raw.root):
        name = instance_folder_name(rec["KEY"] or "")
        stem, n = name, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        if public_key_pem is None:
            files = {MANIFEST_NAME: instance_xml(model, rec, children, lookup=lookup)}
        else:
            enc = encrypt_submission(
                instance_xml(model, rec, children, submission_date=False, lookup=lookup),
                form_id=model.form_id, version=rec["form_version"], instance_id=rec["KEY"],
                public_key_pem=public_key_pem, rng=rng)
            manifest = enc.manifest
            if rec["submission_time"] is not None:
                stamp = quoteattr(rec["submission_time"])
                attr = f' encrypted="yes" {SUBMISSION_DATE_ATTR}={stamp}'
                manifest = manifest.replace(b' encrypted="yes"', attr.encode(), 1)
            files = {MANIFEST_NAME: manifest, **enc.files}
        written.append(_write_instance(folder / name, files))
    return written


def _write_instance(inst: Path, files: dict[str, bytes]) -> Path:
    """One instance folder, whole or not at all: a new one is written under a hidden name
    (which readers skip) and renamed into place, one rename for all its files; into an
    existing one each file is replaced atomically."""
    if inst.exists():
        for file_name, data in files.items():
            atomic_write_bytes(inst / file_name, data)
        return inst
    partial = inst.with_name(f".{inst.name}.partial")
    partial.mkdir(mode=0o700, exist_ok=True)
    for file_name, data in files.items():
        fd = os.open(partial / file_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    os.rename(partial, inst)
    return inst
