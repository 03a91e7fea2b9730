"""Folders of instance XML (Collect devices, Briefcase storage, flat folders) → canonical tables.

The submissions are found by :func:`dhsurvey.ingest.instances.discover_instances`, whatever
tool laid the folder out. Each is either the instance document itself (``<data id="form"
version="…">`` with groups as nested elements, repeats as repeated elements, non-relevant fields
absent, notes and triggers as the empty elements real clients write) or, for an encrypted form,
a manifest with ``submission.xml.enc``. Every submission of the form ends up as a root row or a
quarantine row; none is skipped silently. A submission's XML over the size cap
(``DHSURVEY_MAX_XML_MB``) is quarantined as ``xml-too-large`` without being read.

One folder may hold several forms (a device's ``instances/``): reading it for one form takes
that form's submissions and leaves those of the study's ``other_forms`` to their own read. A
submission no study form can claim (unreadable, no form id, a form the study does not have) is
quarantined once, under the form its name starts with (Collect names instance folders
``<form>_<date>``), else under the first of the study's forms present in the folder (the first
of all of them when none is).

A folder of many encrypted submissions (:data:`~dhsurvey.ingest.decrypt.PARALLEL_MIN`) is read
and decrypted on :data:`~dhsurvey.ingest.decrypt.WORKERS` threads ahead of the table building,
which stays in this thread and in the folder's order: the rows and the quarantine are the same
as one thread's, record for record.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.builder import TableBuilder, canonical_time
from dhsurvey.ingest.canonical import DEPRECATED_ID, RawForm, normalise, repeat_key
from dhsurvey.ingest.decrypt import (
    DecryptionError,
    FolderFiles,
    Outcome,
    attempt,
    decrypt_submission,
    in_order,
    load_key_once,
    workers_for,
)
from dhsurvey.ingest.instances import (
    SUBMISSION,
    SUBMISSION_DATE_ATTR,
    Instance,
    discover_instances,
)
from dhsurvey.ingest.limits import XML, InputTooLarge, read_file

log = logging.getLogger(__name__)

SOURCE_FORMAT = "xml"
#: Elements of an instance's ``meta`` block the canonical tables keep.
_META_ELEMENTS = {"instanceID": "KEY", "deprecatedID": DEPRECATED_ID}


@functools.lru_cache(maxsize=4096)
def local(tag: str) -> str:
    """Element name without namespace: Collect, Aggregate and Central disagree on them.
    (Remembered: a folder's documents repeat the same few hundred tags.)"""
    return tag.rsplit("}", 1)[-1]


def children_by_container(model: FormModel) -> dict[tuple[str, ...], dict[str, Item]]:
    """For each group/repeat path, the data fields, groups and repeats directly inside it."""
    out: dict[tuple[str, ...], dict[str, Item]] = {(): {}}
    for item in model.items:
        if item.holds_data or item.is_group:
            out.setdefault(item.path, {})[item.name] = item
        if item.is_group:
            out.setdefault((*item.path, item.name), {})
    return out


#: What an element of the form is, for :func:`_walk`.
_FIELD, _GROUP, _REPEAT = 0, 1, 2
_Lookups = tuple[dict[tuple[str, ...], dict[str, int]], set[str]]


def _kinds(model: FormModel) -> dict[tuple[str, ...], dict[str, int]]:
    """:func:`children_by_container` as what each child is (field, group or repeat)."""
    return {path: {name: _REPEAT if item.is_repeat else _GROUP if item.is_group else _FIELD
                   for name, item in inside.items()}
            for path, inside in children_by_container(model).items()}


def _elements_without_data(model: FormModel) -> set[str]:
    """Names of the form's rows that hold no value (notes …): clients write them empty."""
    return {item.name for item in model.items
            if item.name and not item.holds_data and not item.is_group}


def _meta(root: ET.Element) -> dict[str, str | None]:
    out: dict[str, str | None] = {"KEY": normalise(root.get("instanceID"))}
    for child in root:
        if local(child.tag) == "meta":
            for el in child:
                column = _META_ELEMENTS.get(local(el.tag))
                if column:
                    out[column] = normalise("".join(el.itertext()).strip())
    return out


def _instance_id(root: ET.Element) -> str | None:
    return _meta(root)["KEY"]


def claims(inst: Instance, form_id: str, study_forms: Collection[str],
           present: Collection[str]) -> bool:
    """Whether the read of ``form_id`` takes ``inst``: its own form's submissions, and one no
    study form can claim by its id when the name or the folder points here (see module doc)."""
    if inst.form_id in study_forms:
        return inst.form_id == form_id
    named = [f for f in study_forms if inst.name == f or inst.name.startswith(f"{f}_")]
    if named:
        return max(named, key=len) == form_id
    here = sorted(f for f in present if f in study_forms) or sorted(study_forms)
    return here[0] == form_id


def read_xml_folder(folder: str | Path, model: FormModel, *,
                    private_key_pem: bytes | None = None,
                    other_forms: Collection[str] = (), workers: int | None = None,
                    instances: Sequence[Instance] | None = None) -> RawForm:
    """Read every submission of ``model``'s form found below ``folder``.

    Encrypted instances are decrypted with ``private_key_pem``; without a key, or when
    decryption fails, the instance becomes a ``not-decrypted`` quarantine row whose ``value``
    is the reason code (``no-private-key``, ``decrypt-wrong-key`` …). An unusable private key is
    an error for the whole folder, not a per-instance failure. Submissions of ``other_forms``
    (the study's other forms) are left to their own read; any other form's are ``wrong-form``.

    ``workers``: threads that read and decrypt the submissions ahead of the table building
    (default: :data:`~dhsurvey.ingest.decrypt.WORKERS` when the form has
    :data:`~dhsurvey.ingest.decrypt.PARALLEL_MIN` encrypted submissions or more and a key is
    given, else 1, in this thread); the result is the same whatever the number.

    ``instances``: what :func:`~dhsurvey.ingest.instances.discover_instances` found in
    ``folder``, when the caller already walked it (a country's forms read the same folders).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DhsurveyError("instance folder not found", code="export-missing", file=str(folder))
    builder = TableBuilder(model, SOURCE_FORMAT, folder)
    lookup = _kinds(model)
    silent = _elements_without_data(model)
    unknown: Counter[str] = Counter()
    instances = discover_instances(folder) if instances is None else list(instances)
    study = {model.form_id, *other_forms}
    present = {i.form_id for i in instances if i.form_id}
    mine = [inst for inst in instances if inst.form_id not in other_forms and (
        inst.form_id == model.form_id or claims(inst, model.form_id, study, present))]
    key = load_key_once(private_key_pem) if private_key_pem is not None else None
    threads = workers_for(sum(i.encrypted for i in mine), workers) if key is not None else 1
    if key is not None and threads > 1:
        attempt(key)  # parsed once here, not in each worker (an unusable key fails there)
    opened = in_order(functools.partial(_open, form_id=model.form_id, key=key), mine, threads)
    with contextlib.closing(opened):
        for inst, outcome in zip(mine, opened, strict=True):
            _read_instance(model, builder, (lookup, silent), inst, outcome.get(), unknown, key)
    if unknown:
        log.warning("%s: ignoring elements the form does not have: %s", folder,
                    ", ".join(f"{k} ({n}x)" for k, n in sorted(unknown.items())))
    return builder.finish()


@dataclass(frozen=True)
class _Opened:
    """An instance's document as read (its bytes; the error reading it; None: there is none)
    and, when discovery found it an encrypted submission of the form and a key is given, its
    decryption. Plain bytes and outcomes only, so that it can come back from a forked worker;
    the document is parsed where the table is built."""

    document: bytes | Exception | None
    plain: Outcome[bytes] | None = None


def _is_encrypted(root: ET.Element) -> bool:
    return (root.get("encrypted") or "").lower() == "yes"


def _open(inst: Instance, form_id: str,
          key: Callable[[], rsa.RSAPrivateKey] | None) -> _Opened:
    """Read (and decrypt) one instance without touching the table, so that it can run ahead of
    the reading in another thread or process; :func:`_read_instance` turns any failure into
    quarantine. Whether to decrypt is discovery's reading of the root element: the table
    builder parses the document and decides (and decrypts itself should the document have
    changed since)."""
    sub = inst.xml
    if not sub.is_file():
        return _Opened(None)
    try:
        data = read_file(sub, XML)
    except (InputTooLarge, OSError) as exc:
        return _Opened(exc)
    if not inst.encrypted or inst.form_id != form_id or key is None:
        return _Opened(data)
    return _Opened(data, _decrypt_attempt(inst, data, key))


def _decrypt_attempt(inst: Instance, data: bytes,
                     key: Callable[[], rsa.RSAPrivateKey]) -> Outcome[bytes]:
    """The decrypted XML of an encrypted manifest, or the error that stopped it. The files are
    read as the manifest names them, the XML's size checked first."""
    folder = inst.media or inst.xml.parent
    return attempt(lambda: decrypt_submission(data, FolderFiles(folder), key(),
                                              source=str(folder)).xml)


def _parse(builder: TableBuilder, inst: Instance,
           document: bytes | Exception | None) -> ET.Element | None:
    """The document's root, or None after quarantining why it cannot be read."""
    sub = inst.xml
    if isinstance(document, bytes):
        try:
            return ET.fromstring(document)
        except ET.ParseError as exc:
            document = exc
    if document is None:
        builder.quarantine("xml-missing", f"instance folder has no {SUBMISSION} (nor another "
                           "instance document)", source_file=inst.media or sub.parent)
    elif isinstance(document, InputTooLarge):
        builder.quarantine("xml-too-large", document.message, source_file=sub,
                           value=f"{document.context['cap_mb']:g} MB")
    else:  # ET.ParseError, OSError
        builder.quarantine("xml-unreadable", f"{sub.name} is not well-formed XML ({document})",
                           source_file=sub)
    return None


def _decrypted(model: FormModel, builder: TableBuilder, inst: Instance, root: ET.Element,
               plain: Outcome[bytes] | None) -> ET.Element | None:
    """The plain instance of an encrypted manifest, or None after quarantining why not."""
    sub, key = inst.xml, _instance_id(root)
    if root.get("id") != model.form_id:
        builder.quarantine("wrong-form", f"an encrypted instance of form '{root.get('id')}', "
                           f"not '{model.form_id}'", source_file=sub, key=key,
                           column="id", value=root.get("id"))
        return None
    if plain is None:
        builder.quarantine("not-decrypted", "encrypted submission and no private key given",
                           source_file=sub, key=key, value="no-private-key")
        return None
    try:
        return ET.fromstring(plain.get())
    except InputTooLarge as exc:
        builder.quarantine("xml-too-large", exc.message, source_file=sub, key=key,
                           value=f"{exc.context['cap_mb']:g} MB")
    except DecryptionError as exc:
        builder.quarantine("not-decrypted", exc.message, source_file=sub, key=key,
                           value=exc.code)
    except ET.ParseError as exc:
        builder.quarantine("xml-unreadable", f"decrypted {SUBMISSION} is not well-formed "
                           f"XML ({exc})", source_file=sub, key=key)
    return None


def _read_instance(model: FormModel, builder: TableBuilder,
                   lookups: _Lookups, inst: Instance, opened: _Opened, unknown: Counter[str],
                   private_key: Callable[[], rsa.RSAPrivateKey] | None) -> None:
    root = _parse(builder, inst, opened.document)
    if root is None:
        return
    submitted = root.get(SUBMISSION_DATE_ATTR)
    if _is_encrypted(root):
        decrypted = opened.plain
        if decrypted is None and private_key is not None and \
                root.get("id") == model.form_id and isinstance(opened.document, bytes):
            # not encrypted, or not of this form, when it was discovered
            decrypted = _decrypt_attempt(inst, opened.document, private_key)
        plain = _decrypted(model, builder, inst, root, decrypted)
        if plain is None:
            return
        root, submitted = plain, submitted or plain.get(SUBMISSION_DATE_ATTR)
    meta = _meta(root)
    key = meta["KEY"]
    if root.get("id") != model.form_id:
        builder.quarantine("wrong-form", f"root <{local(root.tag)}> is not an instance of form "
                           f"'{model.form_id}' (id={root.get('id')!r})", source_file=inst.xml,
                           key=key, column="id", value=root.get("id"))
        return
    values: dict[str, Any] = {
        **meta, "form_version": root.get("version"),
        "submission_time": canonical_time(submitted),
    }
    repeats: list[tuple[str, dict[str, Any]]] = []
    if key is not None:
        _walk(model, lookups, root, (), values, key, repeats, Counter(), unknown)
    here = inst.xml.parent if inst.media == inst.xml.parent else inst.xml
    builder.add_submission(values, repeats, source_file=here)


def _walk(model: FormModel, lookups: _Lookups, el: ET.Element, path: tuple[str, ...],
          row: dict[str, Any], row_key: str, repeats: list[tuple[str, dict[str, Any]]],
          positions: Counter[tuple[str, str]], unknown: Counter[str]) -> None:
    """Fill ``row`` from the children of ``el`` (container ``path``); repeats become rows."""
    inside = lookups[0].get(path, {})
    for child in el:
        name = local(child.tag)
        kind = inside.get(name)
        if kind is None:
            if not (path == () and name == "meta") and name not in lookups[1]:
                unknown["/".join((*path, name))] += 1
            continue
        if kind == _FIELD:
            # A leaf's text is its value (normalised: empty is None); one with elements
            # inside, all the text in it.
            text = "".join(child.itertext()) if len(child) else child.text
            row[name] = text if text else None
        elif kind == _REPEAT:
            positions[(row_key, name)] += 1
            key = repeat_key(row_key, model, name, positions[(row_key, name)])
            sub_row: dict[str, Any] = {"KEY": key, PARENT: row_key}
            repeats.append((name, sub_row))
            _walk(model, lookups, child, (*path, name), sub_row, key, repeats, positions,
                  unknown)
        else:
            _walk(model, lookups, child, (*path, name), row, row_key, repeats, positions,
                  unknown)
