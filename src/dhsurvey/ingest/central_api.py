"""Talk to ODK Central through pyodk: fetch submissions incrementally, publish form versions.

pyodk is the client on purpose: it owns the credentials (its own config file,
``~/.pyodk_config.toml`` or ``PYODK_CONFIG_FILE``), the session token and the URL quoting, so
this module never reads, stores or logs a password. What it adds is what a survey pipeline
needs on top:

- **Incremental fetch.** A small JSON state file remembers, per server, project and form, the
  newest ``submissionDate`` and the newest ``updatedAt`` already fetched, so the next run asks
  Central only for submissions that are new or changed since (``$filter=__system/submissionDate
  gt … or __system/updatedAt gt …``): an interview edited on Central, or reviewed, comes again
  in its current version, which replaces the stored one (:func:`dhsurvey.ingest.store.
  supersede`). Central keeps microseconds but prints milliseconds, so the instanceIDs at each
  last millisecond are remembered too and dropped if Central sends them again unchanged.
- **Consistent repeats.** Repeat tables are fetched with the same window on the parent
  submission (``$root/Submissions/__system/…``), closed at the newest date and update read
  from the root table, so a submission arriving or changing mid-fetch cannot leave repeat rows
  without their parent.
- **Paging** follows Central's ``@odata.nextLink`` (``$skiptoken`` or ``$skip``), re-issued
  against the configured server so a proxy's different host name cannot redirect the token.
  Each page is streamed and refused once it passes ``DHSURVEY_MAX_JSON_MB``
  (:mod:`dhsurvey.ingest.limits`), before it is parsed.
- **Publishing** refuses a version string Central already has *before* uploading anything, so
  a forgotten version bump never leaves a half-made draft behind. A form can be left as a
  draft (``draft_only``) for testing with Collect before it is published.
- **Central-managed encryption.** When the form has a managed key, the submissions are fetched
  decrypted through ``POST submissions.csv.zip`` with the passphrase from
  ``DHSURVEY_CENTRAL_PASSPHRASE`` (Central's documented way; OData never decrypts). The
  passphrase is read from the environment only and never logged or put in a message.
- **Self-managed encryption** (Collect encrypts with the form's public key; Central cannot
  decrypt): such submissions come back quarantined as ``not-decrypted``, and with
  ``encrypted_dir`` each is downloaded as ``<dir>/<instance>/submission.xml`` + its ``.enc``
  files, the folder layout :func:`dhsurvey.ingest.xmlfolder.read_xml_folder` decrypts.
- **Submitting as Collect does** (:func:`submit_instances`): OpenRosa multipart POSTs of
  instance folders, to a published form or to a draft (with its draft token).
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.compile import CompiledForm
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.central import read_central_zip
from dhsurvey.ingest.instances import SUBMISSION, instance_folder_name, with_submission_date
from dhsurvey.ingest.limits import XML, read_file, read_response_json
from dhsurvey.ingest.odata import (
    PASSPHRASE_ENV,
    ROOT_TABLE,
    form_version,
    read_odata,
    table_name,
    utc_ms,
)
from dhsurvey.io import atomic_open, atomic_write_bytes, atomic_write_json, private_dirs

log = logging.getLogger(__name__)

STATE_FILE = "central-odata-state.json"
DEFAULT_PAGE_SIZE = 1000
#: Upper bound on pages when Central does not say how many rows there are.
MAX_PAGES = 100_000
_TABLE_URL = "projects/{project_id}/forms/{form_id}.svc/{table_name}"
_VERSIONS_URL = "projects/{project_id}/forms/{form_id}/versions"
_XFORMS_NS = "http://www.w3.org/2002/xforms"
_ORX_NS = "http://openrosa.org/xforms"


# -- client and errors ----------------------------------------------------------------------------


def _config_path() -> Path:
    """Where pyodk reads its config (for messages only; pyodk itself opens the file)."""
    env = os.environ.get("PYODK_CONFIG_FILE")
    return Path(env) if env else Path.home() / ".pyodk_config.toml"


def _server(client: Any) -> str:
    return str(getattr(getattr(client, "session", None), "base_url", "") or "ODK Central")


def _central_problem(exc: Exception) -> tuple[int | None, str | None, str | None]:
    """(HTTP status, Central problem code, Central message) from a pyodk error, if known."""
    response: Any = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if status is None:
        return None, None, None
    try:
        body = response.json()
    except ValueError:
        return status, None, None
    if not isinstance(body, dict):
        return status, None, None
    code = body.get("code")
    return status, (None if code is None else str(code)), body.get("message")


@contextmanager
def _central_errors(client: Any, form_id: str | None = None) -> Iterator[None]:
    """Turn pyodk and network failures into DhsurveyErrors a data manager can act on."""
    import requests
    from pyodk.errors import PyODKError

    server = _server(client)
    try:
        yield
    except PyODKError as exc:
        status, code, message = _central_problem(exc)
        detail = f": {message} (Central code {code})" if message else ""
        if status == 401:
            raise DhsurveyError(
                f"ODK Central at {server} refused the login from the pyodk config "
                f"({_config_path()}){detail}; check username and password there",
                code="central-auth", form=form_id,
            ) from None
        if status == 403:
            raise DhsurveyError(f"the Central account has no rights for this{detail}",
                                code="central-forbidden", form=form_id) from None
        if status == 404:
            raise DhsurveyError(f"ODK Central at {server} has no such project or form{detail}",
                                code="central-not-found", form=form_id) from None
        if code == "409.6":
            raise DhsurveyError(f"Central already has this form version{detail}",
                                code="publish-version-exists", form=form_id) from None
        if code == "400.12":
            raise DhsurveyError(
                f"ODK Central could not decrypt the submissions with the passphrase in "
                f"{PASSPHRASE_ENV}; check it (the project's key hint is in Central)",
                code="central-passphrase", form=form_id) from None
        what = f"status {status}{detail}" if status else str(exc)
        raise DhsurveyError(f"ODK Central request failed: {what}", code="central-error",
                            form=form_id) from None
    except requests.RequestException as exc:
        raise DhsurveyError(f"cannot reach ODK Central at {server} ({type(exc).__name__})",
                            code="central-unreachable", form=form_id) from None


@contextmanager
def _client(client: Any, form_id: str | None = None) -> Iterator[Any]:
    """The caller's pyodk client, or one configured by pyodk's own config file."""
    if client is not None:
        with _central_errors(client, form_id):
            yield client
        return
    try:
        from pyodk.client import Client
        from pyodk.errors import PyODKError
    except ImportError:  # pragma: no cover - pyodk is a dependency
        raise DhsurveyError("pyodk is not installed", code="central-config") from None
    try:
        made = Client()
    except (PyODKError, KeyError, TypeError, ValueError) as exc:
        # Messages from pyodk name the file; TOML/dataclass errors could quote config text,
        # so only their type is shown.
        reason = str(exc) if isinstance(exc, PyODKError) else type(exc).__name__
        raise DhsurveyError(
            f"cannot use the pyodk config ({reason}); it needs a [central] table with "
            "base_url, username, password and default_project_id",
            code="central-config", file=_config_path(), form=form_id,
        ) from None
    try:
        with _central_errors(made, form_id):
            made.open()
            yield made
    finally:
        made.close()


def _project_id(client: Any, project_id: int | None) -> int:
    pid = project_id if project_id is not None else getattr(client, "project_id", None)
    if pid is None:
        raise DhsurveyError(
            "no ODK Central project: pass project_id or set default_project_id in the pyodk "
            "config", code="central-config", file=_config_path(),
        )
    return int(pid)


# -- state ----------------------------------------------------------------------------------------


def _read_state(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DhsurveyError(f"cannot read the fetch state ({type(exc).__name__}); delete it "
                            "to fetch everything again", code="central-state", file=path) from None
    return data if isinstance(data, dict) else {}


def _state_entry(state: dict[str, Any], server: str, project_id: int,
                 form_id: str) -> dict[str, Any]:
    entry = state.get("servers", {}).get(server, {}).get(f"{project_id}/{form_id}", {})
    return entry if isinstance(entry, dict) else {}


def _plus_ms(stamp: str) -> str:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    return utc_ms(moment.isoformat()) or stamp


# -- fetching -------------------------------------------------------------------------------------


def _fetch_table(client: Any, project_id: int, form_id: str, table: str, filter_: str | None,
                 page_size: int) -> list[dict[str, Any]]:
    """Every page of one OData table; rows repeated across pages (offset paging) kept once.
    A page is streamed and refused as soon as it passes ``DHSURVEY_MAX_JSON_MB``."""
    url = client.session.urlformat(_TABLE_URL, project_id=project_id, form_id=form_id,
                                   table_name=table)
    label = f"{_server(client).rstrip('/')}/{url.lstrip('/')}"

    def get(params: Any) -> dict[str, Any]:
        response = client.session.response_or_error(method="GET", url=url, logger=log,
                                                     params=params, stream=True)
        page = read_response_json(response, file=label)
        if not isinstance(page, dict):
            raise DhsurveyError(f"a page of OData table '{table}' is not an object",
                                code="odata-shape", form=form_id, table=table)
        return page

    # As pyodk's submissions.get_table asks for the first page.
    first = get({k: v for k, v in {"$top": page_size, "$count": True,
                                   "$filter": filter_}.items() if v is not None})
    total = first.get("@odata.count")
    max_pages = total // page_size + 2 if isinstance(total, int) else MAX_PAGES
    seen: set[str] = set()
    links: set[str] = set()
    pages: list[dict[str, Any]] = []
    page: dict[str, Any] = first
    while True:
        rows = []
        for row in page.get("value") or []:
            rid = row.get("__id") if isinstance(row, dict) else None
            if rid is not None and rid in seen:
                continue
            if rid is not None:
                seen.add(rid)
            rows.append(row)
        pages.append({**page, "value": rows})
        link = page.get("@odata.nextLink")
        if not link:
            return pages
        if link in links or len(pages) >= max_pages:
            raise DhsurveyError(
                f"Central's paging of '{table}' does not end (page {len(pages)}); "
                "refusing to loop", code="central-paging", form=form_id,
            )
        links.add(link)
        # Only the query of the link is used: the server part comes from our own config.
        page = get(parse_qsl(urlsplit(link).query, keep_blank_values=True))


def _window(entry: dict[str, Any], since: str | None) -> _Window:
    """The fetch window: after ``since``, else after what the state file says was read. A
    state written before updates were followed starts following them at its last date."""
    if since is not None:
        at = utc_ms(since)
        return _Window(at, update=at)
    date = entry.get("last_submission_date")
    return _Window(date, frozenset(entry.get("keys_at_last") or ()),
                   entry.get("last_updated") or date,
                   frozenset(entry.get("keys_updated_at_last") or ()))


def _drop_keys(raw: RawForm, keys: set[str]) -> RawForm:
    """Remove already-fetched submissions (and their repeat rows) from a fetch result."""
    if not keys:
        return raw
    root = raw.root[~raw.root["KEY"].isin(keys)].reset_index(drop=True)
    prefixes = tuple(f"{k}/" for k in keys)
    repeats = {
        name: t[~t["KEY"].astype(str).str.startswith(prefixes)].reset_index(drop=True)
        for name, t in raw.repeats.items()
    }
    return RawForm(raw.form_id, root, repeats, raw.quarantine)


def _managed_key(client: Any, project_id: int, form_id: str) -> int | None:
    """The id of the Central-managed key the form's submissions use, if any."""
    url = client.session.urlformat("projects/{project_id}/forms/{form_id}/submissions/keys",
                                   project_id=project_id, form_id=form_id)
    keys = client.session.response_or_error(method="GET", url=url, logger=log).json()
    managed = [int(k["id"]) for k in keys
               if isinstance(k, dict) and k.get("managed") and k.get("id") is not None]
    return managed[-1] if managed else None


@dataclass(frozen=True)
class _Window:
    """What an incremental fetch has already read: the newest submission date and update, and
    the instanceIDs at each (Central prints milliseconds but compares microseconds)."""

    date: str | None = None
    date_keys: frozenset[str] = frozenset()
    update: str | None = None
    update_keys: frozenset[str] = frozenset()

    def filter(self, prefix: str = "") -> str | None:
        """``$filter`` for what is new or changed since (None: everything)."""
        parts = [f"{prefix}__system/submissionDate gt {self.date}" if self.date else "",
                 f"{prefix}__system/updatedAt gt {self.update}" if self.update else ""]
        return " or ".join(f"({p})" for p in parts if p) or None

    def seen(self, key: str, date: str | None, update: str | None) -> bool:
        """Whether a row Central sent was read already, as it is now."""
        if self.date is None or date is None or date > self.date or (
                date == self.date and key not in self.date_keys):
            return False
        return update is None or (self.update is not None and (
            update < self.update or (update == self.update and key in self.update_keys)))

    def after(self, marks: dict[str, tuple[str | None, str | None]]) -> _Window:
        """The window once ``marks`` (instanceID → date, update) were read."""
        dates = [d for d, _ in marks.values() if d]
        updates = [u for _, u in marks.values() if u]
        date = max([*dates, *([self.date] if self.date else [])], default=None)
        # A change is later than the submission it changes: the date bounds updates too.
        update = max([*updates, *(w for w in (self.update, date) if w)], default=None)
        return _Window(
            date, frozenset({k for k, (d, _) in marks.items() if d == date}
                            | (self.date_keys if date == self.date else set())),
            update, frozenset({k for k, (_, u) in marks.items() if u == update}
                              | (self.update_keys if update == self.update else set())))


def _marks(pages: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    """instanceID → (submission date, last update) of the root rows Central sent."""
    out = {}
    for page in pages:
        for row in page.get("value") or []:
            system = row.get("__system") or {}
            if row.get("__id") is not None:
                out[str(row["__id"])] = (utc_ms(system.get("submissionDate")),
                                         utc_ms(system.get("updatedAt")))
    return out


def _repeat_window(window: _Window, marks: dict[str, tuple[str | None, str | None]]) -> str:
    """The parents' window for a repeat table: what the root table read, closed at its newest
    date and update so rows of a submission arriving meanwhile are not read without it."""
    dates = [d for d, _ in marks.values() if d]
    updates = [u for _, u in marks.values() if u]
    root = "$root/Submissions/__system/"
    parts = []
    if dates:
        part = f"{root}submissionDate lt {_plus_ms(max(dates))}"
        parts.append(f"{root}submissionDate gt {window.date} and {part}" if window.date
                     else part)
    if updates and window.update:
        parts.append(f"{root}updatedAt gt {window.update} and "
                     f"{root}updatedAt lt {_plus_ms(max(updates))}")
    return " or ".join(f"({p})" for p in parts)


def _fetch_odata(client: Any, pid: int, form_id: str, model: FormModel, window: _Window,
                 page_size: int) -> tuple[RawForm, dict[str, tuple[str | None, str | None]]]:
    """The OData route: root table, then each repeat table in the same window."""
    root_pages = _fetch_table(client, pid, form_id, ROOT_TABLE, window.filter(), page_size)
    marks = _marks(root_pages)
    repeat_pages: dict[str, list[dict[str, Any]]] = {}
    if marks:
        for rep in model.repeats:
            repeat_pages[rep.name] = _fetch_table(
                client, pid, form_id, table_name(model, rep.name),
                _repeat_window(window, marks), page_size)
    service = f"{_server(client).rstrip('/')}/projects/{pid}/forms/{form_id}.svc"
    return read_odata(root_pages, repeat_pages, model, form_id=form_id, source=service), marks


def _download_zip(client: Any, pid: int, form_id: str, path: Path, filter_: str | None,
                  key_id: int | None, passphrase: str | None) -> str:
    """Stream ``submissions.csv.zip`` to ``path``; returns its URL (for ``source_file``).

    With a managed key it is ``POST``ed with the passphrase, which Central decrypts with; the
    passphrase travels in the request body only (pyodk logs the URL and the answer, never the
    body)."""
    url = client.session.urlformat("projects/{project_id}/forms/{form_id}/submissions.csv.zip",
                                   project_id=pid, form_id=form_id)
    params = {"$filter": filter_} if filter_ else None
    if key_id is not None and passphrase:
        response = client.session.response_or_error(
            method="POST", url=url, logger=log, params=params,
            data={str(key_id): passphrase}, stream=True)
    else:
        response = client.session.response_or_error(method="GET", url=url, logger=log,
                                                     params=params, stream=True)
    with atomic_open(path) as fh:  # owner-only, and never a half-downloaded zip in place
        for chunk in response.iter_content(chunk_size=1 << 20):
            fh.write(chunk)
    return f"{_server(client).rstrip('/')}/{url.lstrip('/')}"


def _fetch_decrypted_zip(client: Any, pid: int, form_id: str, model: FormModel,
                         window: _Window, key_id: int, passphrase: str, page_size: int
                         ) -> tuple[RawForm, dict[str, tuple[str | None, str | None]]]:
    """Central-managed encryption: the CSV zip Central decrypts, read like any export. Dates
    and updates come from the OData root table (it lists encrypted rows with their system
    fields), read first: a row the zip holds beyond them is simply read again next time."""
    marks = _marks(_fetch_table(client, pid, form_id, ROOT_TABLE, window.filter(), page_size))
    with tempfile.TemporaryDirectory(prefix="dhsurvey-central-") as tmp:
        path = Path(tmp) / f"{form_id}.csv.zip"
        source = _download_zip(client, pid, form_id, path, window.filter(), key_id, passphrase)
        raw = read_central_zip(path, model)
    raw.root["source_file"] = source
    if len(raw.quarantine):
        raw.quarantine["source_file"] = source
    return raw, marks


def download_csv_zip(form_id: str, path: str | Path, *, client: Any = None,
                     project_id: int | None = None, since: str | None = None,
                     passphrase: str | None = None) -> Path:
    """Save Central's CSV zip export of a form (``submissions.csv.zip``, media included) to
    ``path``, for :func:`~dhsurvey.ingest.central.read_central_zip` or for the record.

    Only submissions after ``since`` with it. Under Central-managed encryption the zip is
    decrypted by Central with ``passphrase`` (default ``$DHSURVEY_CENTRAL_PASSPHRASE``);
    without one its encrypted rows say "not decrypted".
    """
    path = Path(path)
    with _client(client, form_id) as central:
        pid = _project_id(central, project_id)
        secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
        key_id = _managed_key(central, pid, form_id) if secret else None
        private_dirs(path.parent)
        since_ms = utc_ms(since) if since else None
        _download_zip(central, pid, form_id, path,
                      _Window(since_ms, update=since_ms).filter(), key_id, secret)
    return path


def fetch_submissions(
    form_id: str,
    model: FormModel,
    *,
    since: str | None = None,
    client: Any = None,
    project_id: int | None = None,
    state_dir: Path | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    passphrase: str | None = None,
    encrypted_dir: Path | None = None,
) -> RawForm:
    """Fetch a form's submissions from ODK Central as a canonical :class:`RawForm`.

    Without ``state_dir`` every submission (or every one after ``since``, an ISO timestamp) is
    fetched. With it, only submissions new or changed (edited, reviewed) since the last run's
    are fetched, each in its current version, and the state is advanced once the whole fetch
    succeeded — so store the result before the next run (:func:`~dhsurvey.ingest.store.
    supersede` replaces the versions stored), or delete the state file to fetch everything
    again.

    Submissions under Central-managed encryption are fetched decrypted (CSV zip route) with
    ``passphrase``, by default ``$DHSURVEY_CENTRAL_PASSPHRASE``; without one the fetch is
    refused (``central-passphrase-missing``) rather than advancing past data it cannot read.
    Submissions Central cannot decrypt (self-managed keys) are quarantined as
    ``not-decrypted``; with ``encrypted_dir`` each is also downloaded there as an instance
    folder (see :func:`download_submissions`) to be decrypted locally.

    ``client`` is a pyodk ``Client``; by default one is made from pyodk's config file.
    """
    if page_size < 1:
        raise ValueError("page_size must be positive")
    state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
    with _client(client, form_id) as central:
        pid = _project_id(central, project_id)
        server = _server(central)
        state = _read_state(state_path)
        entry = _state_entry(state, server, pid, form_id)
        window = _window(entry, since)
        key_id = _managed_key(central, pid, form_id)
        if key_id is None:
            raw, marks = _fetch_odata(central, pid, form_id, model, window, page_size)
        else:
            secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
            if not secret:
                raise DhsurveyError(
                    f"the submissions of '{form_id}' use Central-managed encryption: set "
                    f"{PASSPHRASE_ENV} to the project's passphrase to fetch them decrypted",
                    code="central-passphrase-missing", form=form_id)
            raw, marks = _fetch_decrypted_zip(central, pid, form_id, model, window, key_id,
                                              secret, page_size)
        seen = {k for k, (d, u) in marks.items() if window.seen(k, d, u)}
        raw = _drop_keys(raw, seen)
        if encrypted_dir is not None:
            q = raw.quarantine
            keys = q.loc[q["rule"] == "not-decrypted", "KEY"].dropna()
            download_submissions(form_id, sorted(set(keys) - seen), encrypted_dir,
                                 client=central, project_id=pid)

    log.info("fetched %d new or changed submissions of %s (project %s)", len(raw.root),
             form_id, pid)
    after = window.after(marks)
    if state_path is not None and after != window and since is None:
        servers = state.setdefault("servers", {})
        servers.setdefault(server, {})[f"{pid}/{form_id}"] = {
            "last_submission_date": after.date, "keys_at_last": sorted(after.date_keys),
            "last_updated": after.update, "keys_updated_at_last": sorted(after.update_keys),
        }
        atomic_write_json(state_path, state)
    return raw


# -- single submissions: download and push ---------------------------------------------------


def download_submissions(form_id: str, instance_ids: Iterable[str], folder: str | Path, *,
                         client: Any = None, project_id: int | None = None) -> list[Path]:
    """Download submissions as instance folders: ``<folder>/<instance>/submission.xml`` and
    every attachment Central holds for it (for an encrypted one, the ``.enc`` files).

    This is how submissions Central cannot decrypt reach :func:`read_xml_folder
    <dhsurvey.ingest.xmlfolder.read_xml_folder>`, which decrypts them with the private key.
    ``submission.xml`` gets Central's ``submissionDate`` as a root attribute, as Briefcase
    does. Folders are owner-only: decrypted or not, these are interview data. A folder already
    there is replaced file by file (the same submission downloaded again).
    """
    base = private_dirs(Path(folder))
    written: list[Path] = []
    with _client(client, form_id) as central:
        pid = _project_id(central, project_id)
        session = central.session
        for iid in instance_ids:
            one = session.urlformat("projects/{project_id}/forms/{form_id}/submissions/{iid}",
                                    project_id=pid, form_id=form_id, iid=iid)
            meta = session.response_or_error(method="GET", url=one, logger=log).json()
            xml = session.response_or_error(method="GET", url=f"{one}.xml", logger=log).content
            inst = private_dirs(base / instance_folder_name(iid))
            atomic_write_bytes(inst / SUBMISSION,
                               with_submission_date(xml, utc_ms(meta.get("createdAt"))))
            listing = session.response_or_error(method="GET", url=f"{one}/attachments",
                                                logger=log).json()
            for item in listing:
                name = str(item.get("name") or "")
                if not item.get("exists") or not name or Path(name).name != name \
                        or name == SUBMISSION:
                    continue
                data = session.response_or_error(
                    method="GET", url=f"{one}/attachments/{quote(name, safe='')}",
                    logger=log).content
                atomic_write_bytes(inst / name, data)
            written.append(inst)
    log.info("downloaded %d submission(s) of %s to %s", len(written), form_id, base)
    return written


@dataclass(frozen=True)
class Submitted:
    """What Central answered to one pushed instance folder."""

    folder: Path
    status: int  # 201 created; a resent identical submission is accepted again


def _openrosa_parts(inst: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``xml_submission_file`` first, then every other file of the folder, as Collect sends."""
    xml = read_file(inst / SUBMISSION, XML)
    parts = [("xml_submission_file", (SUBMISSION, xml, "text/xml"))]
    for file in sorted(p for p in inst.iterdir() if p.is_file() and p.name != SUBMISSION):
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        parts.append((file.name, (file.name, file.read_bytes(), kind)))
    return parts


def submit_instances(folders: Iterable[str | Path], *, client: Any = None,
                     project_id: int | None = None, form_id: str | None = None,
                     draft_token: str | None = None) -> list[Submitted]:
    """Send instance folders to Central as ODK Collect does: one OpenRosa multipart POST per
    folder (``xml_submission_file`` = ``submission.xml``, each other file an attachment part).

    An encrypted instance (manifest + ``.enc`` files, :func:`encrypt_submission
    <dhsurvey.ingest.decrypt.encrypt_submission>`) is sent the same way. With ``draft_token``
    (from ``GET …/forms/F/draft``) and ``form_id`` the instances go to the form's draft, as a
    Collect that scanned the draft's QR code sends them; they are discarded on publish.
    Raises ``central-submission-refused`` naming the folder when Central refuses one (e.g. a
    version it does not have, or the same instanceID with other content: 409).
    """
    done: list[Submitted] = []
    with _client(client, form_id) as central:
        pid = _project_id(central, project_id)
        if draft_token is not None:
            if not form_id:
                raise DhsurveyError("submitting to a draft needs the form id", code="cli")
            url = central.session.urlformat(
                "test/{token}/projects/{project_id}/forms/{form_id}/draft/submission",
                token=draft_token, project_id=pid, form_id=form_id)
        else:
            url = central.session.urlformat("projects/{project_id}/submission", project_id=pid)
        for folder in folders:
            inst = Path(folder)
            if not (inst / SUBMISSION).is_file():
                raise DhsurveyError(f"no {SUBMISSION} in the instance folder",
                                    code="file-missing", file=inst, form=form_id)
            response = central.session.request(
                method="POST", url=url, files=_openrosa_parts(inst),
                headers={"X-OpenRosa-Version": "1.0"})
            if response.status_code not in (200, 201, 202):
                reason = re.sub(r"<[^>]+>", " ", response.text)
                raise DhsurveyError(
                    f"ODK Central refused the submission (status {response.status_code}: "
                    f"{' '.join(reason.split())[:300]})",
                    code="central-submission-refused", file=inst, form=form_id)
            done.append(Submitted(inst, response.status_code))
    log.info("submitted %d instance(s) to project %s", len(done), pid)
    return done


# -- publishing -----------------------------------------------------------------------------------


def _xform_identity(xml: str, where: Path | None) -> tuple[str, str]:
    """(form id, version) from the primary instance of an XForm."""
    try:
        root = ET.fromstring(xml.encode("utf-8"))
    except ET.ParseError as exc:
        raise DhsurveyError(f"not well-formed XForm XML ({exc})", code="publish-bad-xform",
                            file=where) from None
    instance = next((el for el in root.iter(f"{{{_XFORMS_NS}}}instance")
                     if "id" not in el.attrib), None)
    data = next(iter(instance), None) if instance is not None else None
    form_id = data.get("id") if data is not None else None
    if data is None or not form_id:
        raise DhsurveyError("the XForm's primary instance has no id", code="publish-bad-xform",
                            file=where)
    version = data.get("version") or data.get(f"{{{_ORX_NS}}}version")
    if not version:
        raise DhsurveyError(
            "the XForm has no version; Central could not tell it from the published one",
            code="publish-no-version", file=where, form=form_id,
        )
    return form_id, version


def _definition(form: CompiledForm | str | Path) -> tuple[str, str, Any, Path | None]:
    """(form id, version, what to hand pyodk, file) for a compiled form or an .xml file."""
    if isinstance(form, CompiledForm):
        xml = form.xform
        if _XFORMS_NS not in xml[:1000]:  # how pyodk tells XML text from a path
            raise DhsurveyError("compiled XForm lacks the XForms namespace",
                                code="publish-bad-xform", form=form.model.form_id)
        return (*_xform_identity(xml, form.model.path), xml, None)
    path = Path(form)
    if not path.is_file():
        raise DhsurveyError("XForm file not found", code="file-missing", file=path)
    if path.suffix.lower() != ".xml":
        raise DhsurveyError("expected a compiled XForm (.xml)", code="publish-bad-xform",
                            file=path)
    return (*_xform_identity(path.read_text(encoding="utf-8"), path), path, path)


def _published_versions(client: Any, project_id: int, form_id: str) -> list[str] | None:
    """Versions Central has published for the form; None when the form does not exist."""
    from pyodk.errors import PyODKError

    try:
        client.forms.get(form_id, project_id=project_id)
    except PyODKError as exc:
        if _central_problem(exc)[0] == 404:
            return None
        raise
    url = client.session.urlformat(_VERSIONS_URL, project_id=project_id, form_id=form_id)
    listing = client.session.response_or_error(method="GET", url=url, logger=log).json()
    return [form_version(str(v.get("version"))) or "" for v in listing if isinstance(v, dict)]


@dataclass(frozen=True)
class Draft:
    """A form's draft on Central: the version it would publish and the token that lets a
    device (or :func:`submit_instances`) send test submissions to it."""

    form_id: str
    version: str
    draft_token: str | None


def _upload_draft(client: Any, pid: int, form_id: str, definition: Any, files: list[Path],
                  new_form: bool) -> Draft:
    """Create the form with a draft, or replace the existing form's draft; attach files."""
    session = client.session
    xml = Path(definition).read_bytes() if isinstance(definition, Path) else \
        str(definition).encode("utf-8")
    headers = {"Content-Type": "application/xml"}
    if new_form:
        url = session.urlformat("projects/{project_id}/forms", project_id=pid)
        session.response_or_error(method="POST", url=url, logger=log, data=xml,
                                  headers=headers, params={"publish": "false"})
    else:
        url = session.urlformat("projects/{project_id}/forms/{form_id}/draft",
                                project_id=pid, form_id=form_id)
        session.response_or_error(method="POST", url=url, logger=log, data=xml,
                                  headers=headers)
    draft = session.urlformat("projects/{project_id}/forms/{form_id}/draft", project_id=pid,
                              form_id=form_id)
    for file in files:
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        session.response_or_error(method="POST", url=f"{draft}/attachments/{quote(file.name)}",
                                  logger=log, data=file.read_bytes(),
                                  headers={"Content-Type": kind})
    return _draft(client, pid, form_id)


def _draft(client: Any, pid: int, form_id: str) -> Draft:
    url = client.session.urlformat("projects/{project_id}/forms/{form_id}/draft",
                                   project_id=pid, form_id=form_id)
    info = client.session.response_or_error(method="GET", url=url, logger=log).json()
    return Draft(form_id, str(info.get("version")), info.get("draftToken"))


def publish_form(
    xform_path_or_compiled: CompiledForm | str | Path,
    *,
    attachments: Iterable[str | Path] = (),
    client: Any = None,
    project_id: int | None = None,
    draft_only: bool = False,
) -> str:
    """Upload a compiled XForm to Central as a draft, with its attachments, and publish it.

    The version published is the one in the XForm (``FormModel.version``, derived from the
    workbook's content). Returns it. Raises ``DhsurveyError`` with code
    ``publish-version-exists`` — before uploading anything — when Central already has a
    published version with that string: devices would not see the change, and Central would
    refuse the publish after the draft had been replaced.

    With ``draft_only`` the form is left as a draft (see :func:`get_draft` for its test token)
    so it can be tried on devices first; publishing it later with the same call without
    ``draft_only`` replaces the draft with the same definition and publishes it.
    """
    form_id, version, definition, path = _definition(xform_path_or_compiled)
    files = [Path(a) for a in attachments]
    for file in files:
        if not file.is_file():
            raise DhsurveyError("form attachment not found", code="file-missing", file=file,
                                form=form_id)
    with _client(client, form_id) as central:
        pid = _project_id(central, project_id)
        existing = _published_versions(central, pid, form_id)
        if existing is not None and version in existing:
            raise DhsurveyError(
                f"Central project {pid} already has version '{version}' of '{form_id}'; "
                "change the workbook (its content sets the version) or bump 'version' in its "
                "settings sheet",
                code="publish-version-exists", file=path, form=form_id,
            )
        _upload_draft(central, pid, form_id, definition, files, new_form=existing is None)
        if not draft_only:
            url = central.session.urlformat("projects/{project_id}/forms/{form_id}/draft/publish",
                                            project_id=pid, form_id=form_id)
            central.session.response_or_error(method="POST", url=url, logger=log)
    log.info("%s %s version %s in project %s", "drafted" if draft_only else "published",
             form_id, version, pid)
    return version


def get_draft(form_id: str, *, client: Any = None, project_id: int | None = None) -> Draft:
    """The form's current draft on Central (``central-not-found`` when it has none)."""
    with _client(client, form_id) as central:
        return _draft(central, _project_id(central, project_id), form_id)
