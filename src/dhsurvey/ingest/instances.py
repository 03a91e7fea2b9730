"""Where the submissions are in a folder of instance XML, whatever wrote the folder.

Submissions reach the office as folders laid out by the tool that carried them, and ingest,
validation and decryption must find the same submissions in all of them:

- **ODK Collect device** (``odk/`` copied off a tablet): ``instances/<form>_<date>/`` holding
  ``<form>_<date>.xml`` and the media, or, for an encrypted form, the ``submission.xml``
  manifest with ``submission.xml.enc`` and ``<media>.enc``; the form definitions sit beside it
  in ``forms/``.
- **ODK Briefcase storage**: ``[ODK Briefcase Storage/forms/]<Form name>/instances/<uuid…>/
  submission.xml[.enc]``, a form definition ``<Form name>.xml`` beside ``instances/``.
- **A flat folder** of instance documents, one ``.xml`` file each; a submission's attachments,
  if any, in a folder named after the file's stem (``uuid:…xml`` + ``uuid:…/``, as ODK
  Central's per-submission download gives them).
- **One folder per submission** (Central's per-submission XML with its attachments, the
  simulator's ``<instance>/submission.xml``).

The rule that covers all of them: a folder holding exactly one instance document is that
submission's folder (the other files are its media); a folder holding several is flat. An XML
file is an instance document when its root element carries a form ``id`` (plain or an encrypted
manifest); a file named ``submission.xml`` is one whatever it holds (a damaged one is
quarantined, never skipped); other XML files rooted in ``<html>`` are form definitions and are
not submissions. A leaf folder of files without any XML, among instance folders, is a
submission whose document is missing. Only the root element is read here (the form id), so
discovery costs one short read per file; the reader parses each document in full.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

SUBMISSION = "submission.xml"
#: Root attribute with the server's receipt time (Briefcase, Central downloads, the simulator).
SUBMISSION_DATE_ATTR = "submissionDate"
#: Folders that never hold submissions: failed decryptions kept for inspection, and the media
#: of Collect's form definitions.
FAILED_DIR = "_failed"
_MEDIA_SUFFIX = "-media"
#: Files an operating system leaves in folders it shows (not a submission's media).
_LITTER = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class Instance:
    """One submission found in a folder.

    ``xml`` is its document (the plain instance or an encrypted manifest; it may not exist when
    the folder lost it), ``media`` the folder of its attachments (``None``: none), ``name`` a
    stable name unique within the discovery (the instance folder's name, or the file's stem),
    ``form_id`` the root's ``id`` (``None`` when the document is unreadable or has none).
    """

    xml: Path
    media: Path | None
    name: str
    form_id: str | None
    encrypted: bool = False
    readable: bool = True


def _root(path: Path) -> tuple[str, dict[str, str]] | None:
    """The root element's local name and attributes, reading only up to it; None if unreadable.
    (A pull parser fed chunk by chunk, as ``iterparse`` does, without its generator.)"""
    try:
        with open(path, "rb") as fh:
            parser: ET.XMLPullParser = ET.XMLPullParser(events=("start",))
            while data := fh.read(_ROOT_CHUNK):
                parser.feed(data)
                for event in parser.read_events():
                    el = event[-1]
                    if isinstance(el, ET.Element):  # always, for "start" events
                        return el.tag.rsplit("}", 1)[-1], dict(el.attrib)
    except (ET.ParseError, OSError):
        return None
    return None


#: Bytes read at a time while looking for the root element (as ``ET.iterparse`` reads).
_ROOT_CHUNK = 16 * 1024


def _classify(path: Path) -> Instance | None:
    """An instance document (readable or not), or None for an XML that is not a submission."""
    root = _root(path)
    if root is None:
        return Instance(path, None, path.stem, None, readable=False)
    tag, attrs = root
    if path.name != SUBMISSION and "id" not in attrs and (
            tag == "html" or "encrypted" not in attrs):
        return None  # a form definition or some other XML document
    return Instance(path, None, path.stem, attrs.get("id") or None,
                    encrypted=(attrs.get("encrypted") or "").lower() == "yes")


#: Documents classified in this process, by (path, size, modification time): a country's
#: ingest reads every instance folder once per form (a device folder holds several forms), and
#: classifying opens each document.
_CLASSIFIED: dict[tuple[str, int, int], Instance | None] = {}
_CLASSIFIED_KEEP = 1_000_000


def _classified(entry: os.DirEntry[str]) -> Instance | None:
    """:func:`_classify` of a directory entry, remembered while the file is unchanged."""
    try:
        stat = entry.stat()
    except OSError:
        return _classify(Path(entry.path))
    key = (entry.path, stat.st_size, stat.st_mtime_ns)
    if key not in _CLASSIFIED:
        if len(_CLASSIFIED) >= _CLASSIFIED_KEEP:
            _CLASSIFIED.clear()
        _CLASSIFIED[key] = _classify(Path(entry.path))
    return _CLASSIFIED[key]


def _skip(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith(".") or entry.name == FAILED_DIR or \
        entry.name.endswith(_MEDIA_SUFFIX)


def discover_instances(folder: str | Path) -> list[Instance]:
    """Every submission below ``folder``, in a stable order (by path).

    Names are unique: the instance folder's name, or the document's stem in a flat folder, with
    ``-2``, ``-3`` … for a name met again elsewhere in the tree (two devices' copies).
    """
    found: list[Instance] = []
    top = Path(folder)
    _walk(top, os.path.realpath(top), found, set())
    used: set[str] = set()
    out = []
    for inst in sorted(found, key=lambda i: str(i.xml)):
        name, n = inst.name, 1
        while name in used:
            n += 1
            name = f"{inst.name}-{n}"
        used.add(name)
        out.append(inst if name == inst.name else
                   Instance(inst.xml, inst.media, name, inst.form_id, inst.encrypted,
                            inst.readable))
    return out


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _walk(folder: Path, real: str, found: list[Instance], visited: set[str]) -> bool:
    """Collect the submissions of ``folder`` (whose real path is ``real``) and below; True if
    ``folder`` is one instance. A folder reached twice (a link back up the tree) is walked
    once. The real path of a subfolder that is not a link is its parent's joined with its
    name, so only links are resolved (one ``realpath`` per link, not per folder)."""
    if real in visited:
        return False
    visited.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=_name)
    except OSError:
        return False
    files = [e for e in entries if e.is_file() and not is_litter(e.name)]
    dirs = [e for e in entries if e.is_dir() and not _skip(e)]
    docs = [d for d in (_classified(e) for e in files
                        if e.name.lower().endswith(".xml")) if d is not None]
    if len(docs) == 1 and not dirs:
        d = docs[0]
        found.append(Instance(d.xml, folder, folder.name, d.form_id, d.encrypted, d.readable))
        return True
    stems = {d.xml.stem for d in docs}
    for d in docs:
        media = folder / d.xml.stem
        found.append(Instance(d.xml, media if media.is_dir() else None, d.xml.stem, d.form_id,
                              d.encrypted, d.readable))
    instance_dirs, leaves = 0, []
    for e in dirs:
        if e.name in stems:
            continue  # a flat document's attachments
        sub = folder / e.name
        sub_real = os.path.realpath(sub) if e.is_symlink() else os.path.join(real, e.name)
        if _walk(sub, sub_real, found, visited):
            instance_dirs += 1
        elif _leaf_without_xml(sub):
            leaves.append(sub)
    if instance_dirs:  # a leaf among submission folders is one whose document is missing
        found.extend(Instance(leaf / SUBMISSION, leaf, leaf.name, None, readable=False)
                     for leaf in leaves)
    return False


def is_litter(name: str) -> bool:
    """A hidden file or one an operating system leaves behind (never a submission's)."""
    return name.startswith(".") or name.lower() in _LITTER


def _leaf_without_xml(folder: Path) -> bool:
    try:
        entries = [e for e in os.scandir(folder) if not is_litter(e.name)]
    except OSError:
        return False
    return bool(entries) and not any(e.is_dir() for e in entries) and not any(
        e.name.lower().endswith(".xml") for e in entries)


def instance_folder_name(instance_id: str) -> str:
    """A submission's folder name, as Briefcase names it: the instanceID without the colon
    (``uuid6f1c…``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "", instance_id) or "instance"


_ROOT_TAG = re.compile(rb"<(?![?!])[^>]*?(?=/?>)")
_DATE_ATTR = re.compile(rb"""\s+""" + SUBMISSION_DATE_ATTR.encode()
                        + rb"""\s*=\s*(?:"[^"]*"|'[^']*')""")


def with_submission_date(xml: bytes, stamp: str | None, *, keep_own: bool = False) -> bytes:
    """The document with ``stamp`` as the server's receipt time on its root element, as
    Briefcase writes it (the XML-folder reader takes it as the submission time); a time the
    root already carries is replaced, or with ``keep_own`` kept."""
    match = _ROOT_TAG.search(xml)
    if not stamp or match is None:
        return xml
    tag = match.group()
    if _DATE_ATTR.search(tag):
        if keep_own:
            return xml
        tag = _DATE_ATTR.sub(b"", tag)
    attr = f" {SUBMISSION_DATE_ATTR}={quoteattr(stamp)}".encode()
    return xml[:match.start()] + tag + attr + xml[match.end():]
