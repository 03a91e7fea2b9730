"""Folders of instance XML (Collect's instances, Briefcase storage) → canonical tables.

One sub-folder per submission holding ``submission.xml``: either the instance document itself
(``<data id="form" version="…">`` with groups as nested elements, repeats as repeated elements,
non-relevant fields absent) or, for an encrypted form, a manifest with ``submission.xml.enc``.
Every instance folder ends up as a root row or a quarantine row; none is skipped silently. A
submission's XML over the size cap (``DHSURVEY_MAX_XML_MB``) is quarantined as
``xml-too-large`` without being read.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.builder import TableBuilder, canonical_time
from dhsurvey.ingest.canonical import RawForm, normalise, repeat_key
from dhsurvey.ingest.decrypt import (
    FAILED_DIR,
    DecryptionError,
    FolderFiles,
    decrypt_submission,
)
from dhsurvey.ingest.limits import XML, InputTooLarge, read_file

log = logging.getLogger(__name__)

SOURCE_FORMAT = "xml"
SUBMISSION = "submission.xml"
#: Briefcase-style root attribute carrying the server's receipt time.
SUBMISSION_DATE_ATTR = "submissionDate"


def local(tag: str) -> str:
    """Element name without namespace: Collect, Aggregate and Central disagree on them."""
    return tag.rsplit("}", 1)[-1]


def instance_folders(folder: str | Path) -> list[Path]:
    """The instance sub-folders, in name order (a Briefcase ``instances/`` level is entered)."""
    folder = Path(folder)
    if (folder / "instances").is_dir() and not (folder / "instances" / SUBMISSION).exists():
        folder = folder / "instances"
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != FAILED_DIR)


def children_by_container(model: FormModel) -> dict[tuple[str, ...], dict[str, Item]]:
    """For each group/repeat path, the data fields, groups and repeats directly inside it."""
    out: dict[tuple[str, ...], dict[str, Item]] = {(): {}}
    for item in model.items:
        if item.holds_data or item.is_group:
            out.setdefault(item.path, {})[item.name] = item
        if item.is_group:
            out.setdefault((*item.path, item.name), {})
    return out


def _instance_id(root: ET.Element) -> str | None:
    for child in root:
        if local(child.tag) == "meta":
            for el in child:
                if local(el.tag) == "instanceID":
                    return normalise("".join(el.itertext()).strip())
    return normalise(root.get("instanceID"))


def read_xml_folder(folder: str | Path, model: FormModel, *,
                    private_key_pem: bytes | None = None) -> RawForm:
    """Read every instance folder under ``folder`` as a submission of ``model``'s form.

    Encrypted instances are decrypted with ``private_key_pem``; without a key, or when
    decryption fails, the instance becomes a ``not-decrypted`` quarantine row whose ``value``
    is the reason code (``no-private-key``, ``decrypt-wrong-key`` …). An unusable private key is
    an error for the whole folder, not a per-instance failure.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DhsurveyError("instance folder not found", code="export-missing", file=str(folder))
    builder = TableBuilder(model, SOURCE_FORMAT, folder)
    lookup = children_by_container(model)
    unknown: Counter[str] = Counter()
    for inst in instance_folders(folder):
        _read_instance(model, builder, lookup, inst, private_key_pem, unknown)
    if unknown:
        log.warning("%s: ignoring elements the form does not have: %s", folder,
                    ", ".join(f"{k} ({n}x)" for k, n in sorted(unknown.items())))
    return builder.finish()


def _read_instance(model: FormModel, builder: TableBuilder,
                   lookup: dict[tuple[str, ...], dict[str, Item]], inst: Path,
                   private_key_pem: bytes | None, unknown: Counter[str]) -> None:
    sub = inst / SUBMISSION
    if not sub.is_file():
        builder.quarantine("xml-missing", f"instance folder has no {SUBMISSION}",
                           source_file=inst)
        return
    try:
        data = read_file(sub, XML)
        root = ET.fromstring(data)
    except InputTooLarge as exc:
        builder.quarantine("xml-too-large", exc.message, source_file=sub,
                           value=f"{exc.context['cap_mb']:g} MB")
        return
    except (ET.ParseError, OSError) as exc:
        builder.quarantine("xml-unreadable", f"{SUBMISSION} is not well-formed XML ({exc})",
                           source_file=sub)
        return
    submitted = root.get(SUBMISSION_DATE_ATTR)
    if (root.get("encrypted") or "").lower() == "yes":
        key = _instance_id(root)
        if root.get("id") != model.form_id:
            builder.quarantine("wrong-form", f"an encrypted instance of form '{root.get('id')}', "
                               f"not '{model.form_id}'", source_file=sub, key=key,
                               column="id", value=root.get("id"))
            return
        if private_key_pem is None:
            builder.quarantine("not-decrypted", "encrypted submission and no private key given",
                               source_file=sub, key=key, value="no-private-key")
            return
        try:  # the files are read as the manifest names them, the XML's size checked first
            plain = decrypt_submission(data, FolderFiles(inst), private_key_pem,
                                       source=str(inst))
            root = ET.fromstring(plain.xml)
        except InputTooLarge as exc:
            builder.quarantine("xml-too-large", exc.message, source_file=sub, key=key,
                               value=f"{exc.context['cap_mb']:g} MB")
            return
        except DecryptionError as exc:
            builder.quarantine("not-decrypted", exc.message, source_file=sub, key=key,
                               value=exc.code)
            return
        except ET.ParseError as exc:
            builder.quarantine("xml-unreadable", f"decrypted {SUBMISSION} is not well-formed "
                               f"XML ({exc})", source_file=sub, key=key)
            return
        submitted = submitted or root.get(SUBMISSION_DATE_ATTR)
    key = _instance_id(root)
    if root.get("id") != model.form_id:
        builder.quarantine("wrong-form", f"root <{local(root.tag)}> is not an instance of form "
                           f"'{model.form_id}' (id={root.get('id')!r})", source_file=sub,
                           key=key, column="id", value=root.get("id"))
        return
    values: dict[str, Any] = {
        "KEY": key, "form_version": root.get("version"),
        "submission_time": canonical_time(submitted),
    }
    repeats: list[tuple[str, dict[str, Any]]] = []
    if key is not None:
        _walk(model, lookup, root, (), values, key, repeats, Counter(), unknown)
    builder.add_submission(values, repeats, source_file=inst)


def _walk(model: FormModel, lookup: dict[tuple[str, ...], dict[str, Item]], el: ET.Element,
          path: tuple[str, ...], row: dict[str, Any], row_key: str,
          repeats: list[tuple[str, dict[str, Any]]], positions: Counter[tuple[str, str]],
          unknown: Counter[str]) -> None:
    """Fill ``row`` from the children of ``el`` (container ``path``); repeats become rows."""
    inside = lookup.get(path, {})
    for child in el:
        name = local(child.tag)
        item = inside.get(name)
        if item is None:
            if not (path == () and name == "meta"):
                unknown["/".join((*path, name))] += 1
            continue
        if item.is_repeat:
            positions[(row_key, name)] += 1
            key = repeat_key(row_key, model, name, positions[(row_key, name)])
            sub_row: dict[str, Any] = {"KEY": key, PARENT: row_key}
            repeats.append((name, sub_row))
            _walk(model, lookup, child, (*path, name), sub_row, key, repeats, positions,
                  unknown)
        elif item.is_group:
            _walk(model, lookup, child, (*path, name), row, row_key, repeats, positions,
                  unknown)
        else:
            row[name] = normalise("".join(child.itertext()))
