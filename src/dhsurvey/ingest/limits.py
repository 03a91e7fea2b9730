"""Size caps on what ingest reads into memory: zip members, JSON files and pages, XML files.

Why: exports come from outside. A Central zip of 632 KB can hold a 300 MB CSV (text compresses
a thousandfold); read whole, decoded and parsed, it took 2.3 GB before anything could refuse it.
So a zip member is refused on the size its zip directory declares, *before* it is decompressed,
and again while it is decompressed (a directory can lie); a JSON or XML file on its size on disk
before it is read. Every refusal is an :class:`InputTooLarge` naming the file (and member), its
size and the cap with the variable that raises it; the export itself stays where it is (the
landing zone), and an XML submission over the cap becomes a quarantine row of its folder, so
nothing that entered is lost.

Caps, in MB (10^6 bytes), from the environment (read at each call, so a run can change them):

- ``DHSURVEY_MAX_ZIP_MEMBER_MB`` (default 2000): one CSV of a Central zip, uncompressed;
- ``DHSURVEY_MAX_JSON_MB`` (default 500): one Kobo JSON page, or one OData page from Central;
- ``DHSURVEY_MAX_XML_MB`` (default 50): one submission's XML (plain, manifest or encrypted).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhsurvey.errors import ConfigError, DhsurveyError

MB = 1_000_000
#: Bytes read (or decompressed) at a time.
CHUNK = 1 << 20


@dataclass(frozen=True)
class Cap:
    """One cap: what it limits, its variable and its default in MB."""

    what: str
    variable: str
    default_mb: float

    def bytes(self) -> int:
        """The cap in bytes, from the environment variable or the default."""
        raw = os.environ.get(self.variable, "").strip()
        if not raw:
            return int(self.default_mb * MB)
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value > 0 or value == float("inf"):
            raise ConfigError(f"{self.variable} must be a positive number of MB (got {raw!r})",
                              code="config-limit", variable=self.variable)
        return int(value * MB)


ZIP_MEMBER = Cap("a zip member", "DHSURVEY_MAX_ZIP_MEMBER_MB", 2000)
JSON = Cap("a JSON file", "DHSURVEY_MAX_JSON_MB", 500)
XML = Cap("an XML file", "DHSURVEY_MAX_XML_MB", 50)


class InputTooLarge(DhsurveyError):
    """An input over its size cap, refused before it is read into memory."""

    code = "input-too-large"


def _mb(size: int) -> str:
    return f"{size / MB:,.1f} MB" if size >= MB else f"{size:,} bytes"


def too_large(cap: Cap, size: int | None, limit: int, *, file: str | Path,
              member: str | None = None, while_reading: bool = False) -> InputTooLarge:
    """The error for an input of ``size`` bytes (None: more than the cap, read so far)."""
    what = f"{cap.what} '{member}'" if member else cap.what
    if while_reading:
        told = f" (declared: {_mb(size)})" if size is not None else ""
        found = f"passed the cap while it was read{told}"
    else:
        found = f"is {_mb(size or 0)}"
    return InputTooLarge(
        f"{what} {found}, over the cap of {_mb(limit)}; refused before reading it into "
        f"memory (set {cap.variable} to raise the cap, in MB)",
        file=str(file), member=member, cap_mb=limit / MB, variable=cap.variable)


def check_size(cap: Cap, size: int, *, file: str | Path, member: str | None = None) -> None:
    """Refuse an input whose size (on disk, or declared) is over ``cap``."""
    limit = cap.bytes()
    if size > limit:
        raise too_large(cap, size, limit, file=file, member=member)


def read_file(path: str | Path, cap: Cap) -> bytes:
    """The bytes of a file no larger than ``cap``: its size is checked before it is read, and
    no more than the cap is read should it grow meanwhile."""
    path = Path(path)
    limit = cap.bytes()
    size = path.stat().st_size
    if size > limit:
        raise too_large(cap, size, limit, file=path)
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise too_large(cap, len(data), limit, file=path)
    return data


def read_zip_member(zf: zipfile.ZipFile, member: str, *, file: str | Path,
                    cap: Cap = ZIP_MEMBER) -> bytes:
    """One member of an open zip, no larger than ``cap`` uncompressed: refused on the size its
    directory declares before anything is decompressed, and as soon as the decompressed bytes
    pass the cap (should a directory lie; :mod:`zipfile` itself stops at the declared size and
    then fails the CRC check, which is ``export-unreadable`` like any damaged zip data)."""
    limit = cap.bytes()
    info = zf.getinfo(member)
    if info.file_size > limit:
        raise too_large(cap, info.file_size, limit, file=file, member=member)
    out = io.BytesIO()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(CHUNK):
                out.write(chunk)
                if out.tell() > limit:
                    raise too_large(cap, info.file_size, limit, file=file, member=member,
                                    while_reading=True)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DhsurveyError(f"cannot read '{member}' from the zip ({exc})",
                            code="export-unreadable", file=str(file), member=member) from None
    return out.getvalue()


def read_response_json(response: Any, *, file: str, cap: Cap = JSON) -> Any:
    """The JSON of a streamed HTTP response (``requests``, ``stream=True``) no larger than
    ``cap``: refused on its declared Content-Length, or as soon as the (decompressed) body
    passes the cap."""
    limit = cap.bytes()
    try:
        declared = int(response.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    try:
        if declared > limit:  # compressed or not, the body is at least this long
            raise too_large(cap, declared, limit, file=file)
        body = io.BytesIO()
        for chunk in response.iter_content(CHUNK):  # decompressed by requests
            body.write(chunk)
            if body.tell() > limit:
                raise too_large(cap, None, limit, file=file, while_reading=True)
    finally:
        response.close()
    try:
        return json.loads(body.getvalue())
    except ValueError as exc:
        raise DhsurveyError(f"the response is not JSON ({type(exc).__name__})",
                            code="odata-shape", file=file) from None


__all__ = ["CHUNK", "JSON", "MB", "XML", "ZIP_MEMBER", "Cap", "InputTooLarge", "check_size",
           "read_file", "read_response_json", "read_zip_member", "too_large"]
