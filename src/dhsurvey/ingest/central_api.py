"""Talk to ODK Central through pyodk: fetch submissions incrementally, publish form versions.

pyodk is the client on purpose: it owns the credentials (its own config file,
``~/.pyodk_config.toml`` or ``PYODK_CONFIG_FILE``), the session token and the URL quoting, so
this module never reads, stores or logs a password. What it adds is what a survey pipeline
needs on top:

- **Incremental fetch.** A small JSON state file remembers, per server, project and form, the
  newest ``submissionDate`` already fetched, so the next run asks Central only for newer
  submissions (``$filter=__system/submissionDate gt …``). Central keeps microseconds but
  prints milliseconds, so the instanceIDs at that last millisecond are remembered too and
  dropped if Central sends them again.
- **Consistent repeats.** Repeat tables are fetched with the same window on the parent
  submission's date (``$root/Submissions/__system/submissionDate``), closed at the newest
  submission read from the root table, so a submission arriving mid-fetch cannot leave repeat
  rows without their parent.
- **Paging** follows Central's ``@odata.nextLink`` (``$skiptoken`` or ``$skip``), re-issued
  against the configured server so a proxy's different host name cannot redirect the token.
  Each page is streamed and refused once it passes ``DHSURVEY_MAX_JSON_MB``
  (:mod:`dhsurvey.ingest.limits`), before it is parsed.
- **Publishing** refuses a version string Central already has *before* uploading anything, so
  a forgotten version bump never leaves a half-made draft behind.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.compile import CompiledForm
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.limits import read_response_json
from dhsurvey.ingest.odata import ROOT_TABLE, read_odata, table_name, utc_ms
from dhsurvey.io import atomic_write_json

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


def fetch_submissions(
    form_id: str,
    model: FormModel,
    *,
    since: str | None = None,
    client: Any = None,
    project_id: int | None = None,
    state_dir: Path | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> RawForm:
    """Fetch a form's submissions from ODK Central as a canonical :class:`RawForm`.

    Without ``state_dir`` every submission (or every one after ``since``, an ISO timestamp) is
    fetched. With it, only submissions newer than the last run's are fetched, and the state is
    advanced once the whole fetch succeeded — so store the result before the next run, or
    delete the state file to fetch everything again. Submissions edited after they were
    fetched are not fetched again (their ``submissionDate`` does not change).

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
        lower = utc_ms(since) if since is not None else entry.get("last_submission_date")
        boundary = set(entry.get("keys_at_last") or []) if since is None else set()

        root_filter = f"__system/submissionDate gt {lower}" if lower else None
        root_pages = _fetch_table(central, pid, form_id, ROOT_TABLE, root_filter, page_size)
        stamps = [utc_ms((row.get("__system") or {}).get("submissionDate"))
                  for page in root_pages for row in page.get("value", [])]
        dates = [d for d in stamps if d]
        newest = max(dates) if dates else None

        repeat_pages: dict[str, list[dict[str, Any]]] = {}
        if newest is not None:
            window = [f"$root/Submissions/__system/submissionDate lt {_plus_ms(newest)}"]
            if lower:
                window.insert(0, f"$root/Submissions/__system/submissionDate gt {lower}")
            for rep in model.repeats:
                repeat_pages[rep.name] = _fetch_table(
                    central, pid, form_id, table_name(model, rep.name), " and ".join(window),
                    page_size,
                )
        service = f"{server.rstrip('/')}/projects/{pid}/forms/{form_id}.svc"
        raw = read_odata(root_pages, repeat_pages, model, form_id=form_id, source=service)
        raw = _drop_keys(raw, boundary)

    log.info("fetched %d new submissions of %s (project %s)", len(raw.root), form_id, pid)
    if state_path is not None and newest is not None and (lower is None or newest > lower):
        at_last = sorted(raw.root.loc[raw.root["submission_time"] == newest, "KEY"])
        if newest == entry.get("last_submission_date"):
            at_last = sorted(set(at_last) | boundary)
        servers = state.setdefault("servers", {})
        servers.setdefault(server, {})[f"{pid}/{form_id}"] = {
            "last_submission_date": newest, "keys_at_last": at_last,
        }
        atomic_write_json(state_path, state)
    return raw


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
    return [str(v.get("version")) for v in listing if isinstance(v, dict)]


def publish_form(
    xform_path_or_compiled: CompiledForm | str | Path,
    *,
    attachments: Iterable[str | Path] = (),
    client: Any = None,
    project_id: int | None = None,
) -> str:
    """Upload a compiled XForm to Central as a draft, with its attachments, and publish it.

    The version published is the one in the XForm (``FormModel.version``, derived from the
    workbook's content). Returns it. Raises ``DhsurveyError`` with code
    ``publish-version-exists`` — before uploading anything — when Central already has a
    published version with that string: devices would not see the change, and Central would
    refuse the publish after the draft had been replaced.
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
        if existing is None:
            central.forms.create(definition=definition, attachments=files or None,
                                 form_id=form_id, project_id=pid)
        else:
            central.forms.update(form_id, project_id=pid, definition=definition,
                                 attachments=files or None)
    log.info("published %s version %s to project %s", form_id, version, pid)
    return version
