"""What is in a country's landing folder: a cheap scan, whether it has settled, what it holds.

Why: exports reach ``landing/<ISO>/`` by hand, by a browser download or by a transfer script,
and a run must start neither on a half-copied file nor on a file nobody will read. Deciding
that is cheap when it looks at names, sizes and modification times only:

- :func:`scan` walks the folder once (``os.scandir``, one ``stat`` per file, no file opened;
  thousands of instance XML files in tens of milliseconds) into a :class:`LandingState`.
- Its :attr:`~LandingState.digest` names the state; a state unchanged across two looks, or
  with a ``*.done`` marker newer than every file, has settled (:func:`waiting_for`).
  Nothing is hashed: a copied, downloaded or rewritten file gets a new modification time (and
  usually size), so sizes and times tell every replacement; at worst a file touched without
  change starts one more, idempotent, run. Hashing gigabytes of exports at every look would
  cost seconds for no run saved.
- :func:`classify` sorts the files by the layout the store spells (:mod:`dhsurvey.store`) and
  says, per file it does not recognise, what was probably meant (a renamed browser download,
  a wrong extension, a form the study does not have); :func:`foreign_instances` adds the
  instance XML of forms not in the study (this one reads each instance's root element).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from dhsurvey.ingest.instances import discover_instances, is_litter
from dhsurvey.store import (
    BACKCHECK,
    CENTRAL_API,
    CENTRAL_EXPORT,
    DESIGN_FILES,
    DONE_MARKER,
    FAULTS,
    KOBO_PAGES,
    XML_FOLDERS,
    is_backcheck_file,
)

#: Names of files still being written by a browser or a transfer tool.
PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".filepart", ".tmp")
#: ``household (1)``, ``household-2``, ``household_3``, ``household copy``: a second download
#: of an export, renamed by the browser or the file manager.
_RENAMED = re.compile(r"^(?P<form>.+?)(?: ?\(\d+\)| copy(?: \d+)?|[-_]\d+)$")
#: The folder of back-check exports (:data:`~dhsurvey.store.BACKCHECK`).
_BACKCHECK_DIR = BACKCHECK.split("/", 1)[0]


@dataclass(frozen=True)
class LandingState:
    """Every file below a landing folder: relative path → (size, modification time in ns);
    ``*.done`` markers apart (writing a marker is no new data)."""

    files: Mapping[str, tuple[int, int]]
    #: Modification time (ns) of the newest ``*.done`` marker, or None.
    done: int | None = None
    #: The latest time (ns) a file was written or changed: its modification or, when later,
    #: inode change time (a copy that keeps the source's modification times still changes it).
    latest: int = 0

    @property
    def digest(self) -> str:
        """A short name of this state ("" for an empty folder): equal states, equal names."""
        if not self.files:
            return ""
        text = "\n".join(f"{p}\0{s}\0{m}" for p, (s, m) in sorted(self.files.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def copying(self) -> list[str]:
        """Files a browser or transfer tool is still writing (by their names)."""
        return sorted(p for p in self.files if p.lower().endswith(PARTIAL_SUFFIXES))

    @property
    def marked_done(self) -> bool:
        """A ``*.done`` marker newer than every file: the upload says it is complete."""
        return self.done is not None and self.done >= self.latest

    def changed(self, previous: LandingState) -> list[str]:
        """Files added, removed, or of another size or time than in ``previous``."""
        return sorted(p for p in self.files.keys() | previous.files.keys()
                      if self.files.get(p) != previous.files.get(p))


def scan(folder: Path) -> LandingState:
    """Names, sizes and modification times of every file below ``folder`` (missing: empty)."""
    files: dict[str, tuple[int, int]] = {}
    done: int | None = None
    latest = 0
    stack = [(folder, "")]
    while stack:
        path, prefix = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:  # gone, or not ours to read: ingest names it if it matters
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
                continue
            try:
                st = entry.stat()
            except OSError:  # removed since the listing, or unreadable
                continue
            if not prefix and fnmatchcase(entry.name, DONE_MARKER):
                done = max(done or 0, st.st_mtime_ns)
            else:
                files[rel] = (st.st_size, st.st_mtime_ns)
                latest = max(latest, st.st_mtime_ns, st.st_ctime_ns)
    return LandingState(files, done, latest)


def waiting_for(state: LandingState, previous_digest: str | None) -> str | None:
    """Why a changed landing state may not be read yet, or None when it has settled.

    Settled: no file is still being written (by its name), and either a ``*.done`` marker is
    newer than every file or the state is the one seen at the previous look.
    """
    if state.copying:
        return "still being copied: " + ", ".join(state.copying[:3]) + (
            f" and {len(state.copying) - 3} more" if len(state.copying) > 3 else "")
    if state.marked_done or state.digest == previous_digest:
        return None
    return "files changed since the last look; waiting for them to settle (or a .done marker)"


# --------------------------------------------------------------------------- what is there


@dataclass(frozen=True)
class Unrecognised:
    """A file (or folder) of a landing folder that no reader will take, and what to do."""

    path: str
    hint: str

    def __str__(self) -> str:
        return f"not recognised: {self.path} — {self.hint}"


@dataclass(frozen=True)
class Contents:
    """Recognised exports by kind (``central``, ``kobo``, ``xml`` folders, ``backcheck``
    exports …) and the rest."""

    recognised: Mapping[str, list[str]] = field(default_factory=dict)
    unrecognised: list[Unrecognised] = field(default_factory=list)


def _match(rel: str, pattern: str) -> bool:
    """``rel`` matches ``pattern`` as a whole path (``*`` stays within one folder)."""
    return rel.count("/") == pattern.count("/") and fnmatchcase(rel, pattern)


def _known(forms: Collection[str]) -> str:
    return ", ".join(sorted(forms)) or "none"


def _central_hint(name: str, forms: Collection[str]) -> str:
    must = "an ODK Central export must be named <form_id>.csv.zip"
    lower = name.lower()
    if lower.endswith(".csv.zip"):
        stem = name[: -len(".csv.zip")]
        renamed = _RENAMED.match(stem)
        if renamed and renamed["form"] in forms:
            return (f"{must} (a renamed second download of {renamed['form']}.csv.zip? "
                    f"replace {renamed['form']}.csv.zip with it)")
        return f"{must}; '{stem}' is not one of the study's forms ({_known(forms)})"
    if lower.endswith(".zip"):
        return f"{must} (Central's 'CSV' download, with the .csv.zip extension)"
    return f"{must}; this is not one (wrong extension)"


def _kobo_hint(name: str, forms: Collection[str]) -> str:
    must = "a KoboToolbox export must be v2 JSON pages named <form_id>*.json"
    if name.lower().endswith(".json"):
        return f"{must}; '{name}' starts with none of the study's forms ({_known(forms)})"
    return f"{must}; this is not one (wrong extension)"


def _top_hint(name: str, forms: Collection[str]) -> str:
    lower = name.lower()
    if lower.endswith(".zip"):
        where = "central/ (named <form_id>.csv.zip)"
    elif lower.endswith(".json"):
        where = "kobo/ (named <form_id>*.json)"
    elif lower.endswith(".xml"):
        where = "a folder under xml/"
    else:
        return ("a stray file: exports go in central/, kobo/ or a folder under xml/ "
                f"(back-checks in {_BACKCHECK_DIR}/)")
    return f"an export goes in {where}, not at the top of the landing folder"


def _backcheck_kind(rest: str) -> tuple[str, str | None]:
    """A back-check export (``backcheck``: a Central CSV zip, Kobo JSON pages or a folder of
    instance XML, whatever its form; the back-check reads the form from it), or a hint."""
    if "/" in rest or is_backcheck_file(rest):
        return "backcheck", None
    hint = (f"a back-check export in {_BACKCHECK_DIR}/ is an ODK Central CSV zip "
            "(<form_id>.csv.zip), KoboToolbox JSON pages (<form_id>*.json) or a folder of "
            "instance XML")
    if rest.lower().endswith(".zip"):
        return "", f"{hint} (Central's 'CSV' download, with the .csv.zip extension)"
    return "", f"{hint}; this is not one (wrong extension)"


def _classify_one(rel: str, forms: Collection[str]) -> tuple[str, str | None]:
    """(kind, None) for a recognised file, ("", hint) for another ("outside", hint: in a
    folder outside the layout)."""
    top, _, rest = rel.partition("/")
    name = rel.rsplit("/", 1)[-1]
    if rel.lower().endswith(PARTIAL_SUFFIXES):
        return "", "still being copied (a browser or transfer tool is writing it)"
    if not rest:
        return ("faults", None) if rel == FAULTS else ("", _top_hint(name, forms))
    if top == "central":
        if any(_match(rel, CENTRAL_EXPORT.format(form=f)) for f in forms):
            return "central", None
        return "", _central_hint(name, forms)
    if top == "kobo":
        if any(_match(rel, KOBO_PAGES.format(form=f)) for f in forms):
            return "kobo", None
        return "", _kobo_hint(name, forms)
    if top == "xml":
        if "/" in rest:  # inside a folder under xml/: the XML readers look at it
            return "xml", None
        return "", "instance XML goes in a folder under xml/ (xml/<any name>/…)"
    if top == _BACKCHECK_DIR:
        return _backcheck_kind(rest)
    if top == CENTRAL_API:
        return "central-api", None
    if top == "design":
        return ("design", None) if _match(rel, DESIGN_FILES) else (
            "", "design/ holds the sample design, households.parquet")
    return "outside", f"{top}/ is not part of the landing layout (central/, kobo/, xml/, " \
        f"{_BACKCHECK_DIR}/, design/)"


def classify(files: Iterable[str], forms: Collection[str]) -> Contents:
    """Sort a landing folder's files (relative paths, as :func:`scan` lists them) into those
    the readers take, by kind, and the others with a hint each. Hidden and operating-system
    files are left out; a folder outside the layout is reported once, with its file count.
    XML folders are recognised as a whole (:func:`foreign_instances` looks inside)."""
    recognised: dict[str, list[str]] = {}
    unrecognised: list[Unrecognised] = []
    stray_folders: Counter[str] = Counter()
    hints: dict[str, str] = {}
    for rel in sorted(files):
        name = rel.rsplit("/", 1)[-1]
        if is_litter(name):  # hidden or an operating system's: in the state, never reported
            continue
        kind, hint = _classify_one(rel, forms)
        if hint is None:
            # A folder of instance XML is one unit (under xml/, or of back-checks).
            unit = "/".join(rel.split("/")[:2]) if kind in ("xml", "backcheck") else rel
            if unit not in recognised.setdefault(kind, []):
                recognised[kind].append(unit)
        elif kind == "outside":
            top = rel.split("/", 1)[0] + "/"
            stray_folders[top] += 1
            hints[top] = hint
        else:
            unrecognised.append(Unrecognised(rel, hint))
    unrecognised += [Unrecognised(f"{top} ({n} file{'s' if n > 1 else ''})", hints[top])
                     for top, n in sorted(stray_folders.items())]
    return Contents(recognised, unrecognised)


def foreign_instances(landing: Path, forms: Collection[str]) -> list[Unrecognised]:
    """Instances under ``xml/`` of forms the study does not have, counted per folder and form
    (reads each instance's root element; instances without a form id are the reader's to
    quarantine)."""
    out = []
    for folder in sorted(landing.glob(XML_FOLDERS)):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        counts = Counter(i.form_id for i in discover_instances(folder)
                         if i.form_id and i.form_id not in forms)
        out += [Unrecognised(f"{folder.relative_to(landing).as_posix()}/ ({n} instance"
                             f"{'s' if n > 1 else ''} of form '{form_id}')",
                             f"'{form_id}' is not one of the study's forms ({_known(forms)})")
                for form_id, n in sorted(counts.items())]
    return out


__all__ = ["PARTIAL_SUFFIXES", "Contents", "LandingState", "Unrecognised", "classify",
           "foreign_instances", "scan", "waiting_for"]
