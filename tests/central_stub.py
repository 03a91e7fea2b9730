"""A small stand-in for ODK Central's REST and OData API, so pyodk can be tested for real.

Bound to 127.0.0.1 on an ephemeral port and run in a thread, it speaks the wire format of
Central (checked against central-backend's ``lib/formats/odata.js``, ``lib/data/odata.js``,
``lib/util/odata.js`` and ``lib/util/problem.js``) for what this project uses:

- ``POST /v1/sessions`` (email/password → token), ``GET /v1/users/current``; every other call
  needs ``Authorization: Bearer <token>`` and gets Central's 401 problem otherwise.
- projects and forms: list/get, ``/versions``, ``.xml``; ``POST …/forms?publish=false`` with
  XForm XML, ``POST …/draft``, ``POST …/draft/attachments/{name}`` (chunked bodies, as pyodk
  sends them), ``POST …/draft/publish[?version=]`` refusing a used version with 409.6.
- OData: service document, ``Submissions`` and ``Submissions.<group…>.<repeat>`` generated
  from canonical RawForms, typed by the form (integers/decimals as numbers, geopoints as
  GeoJSON), with ``$top``, ``$skip``, ``$skiptoken`` (Central's ``01`` + base64 JSON),
  ``@odata.nextLink``, ``$count``, ``$expand=*`` and ``$filter`` on
  ``[$root/Submissions/]__system/submissionDate`` (``gt ge lt le eq``, joined by ``and``).
  Submissions are listed newest first, as Central does.

Every request is logged (method, path, query, content type, body, status) with passwords and
tokens left out, so tests can assert exactly which calls a client made.

Deliberate differences from Central: a missing bearer token gets 401 (Central answers an
anonymous caller 403.1); repeat ``__id`` hashes are computed differently (they are opaque);
``$select``, ``$wkt`` and ``$metadata`` answer 501.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import pandas as pd
import pytest

from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item
from dhsurvey.ingest.canonical import RawForm, normalise

EMAIL = "manager@example.org"
PASSWORD = "stub-password-not-secret"
MAX_BODY = 20 * 1024 * 1024
XFORMS_NS = "http://www.w3.org/2002/xforms"
_FILTER = re.compile(
    r"^\s*(?P<root>\$root/Submissions/)?__system/submissionDate\s+(?P<op>gt|ge|lt|le|eq)\s+"
    r"(?P<value>\S+)\s*$"
)
_OPS = {
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "eq": lambda a, b: a == b,
}
_MEDIA = re.compile(r"jr://(?:file|images|audio|video|file-csv)/([^\"'<>\s]+)")


def odata_name(name: str) -> str:
    """Central's sanitizeOdataIdentifier (kept here so the stub does not trust the reader)."""
    name = re.sub(r"^([^A-Za-z_])", r"_\1", name)
    return re.sub(r"[^A-Za-z0-9_]+", "_", name)


def now_iso() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Problem(Exception):
    """Central's error: HTTP status from the integer part of ``code``, JSON {message, code}."""

    def __init__(self, code: float, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return int(self.code)


def not_found() -> Problem:
    return Problem(404.1, "Could not find the resource you were looking for.")


def not_supported(feature: str) -> Problem:
    return Problem(501.1, f"The requested feature {feature} is not supported by this server.")


@dataclass
class LoggedRequest:
    """One request as the stub saw it (no Authorization header; session bodies redacted)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: bytes
    authorized: bool
    status: int = 0


@dataclass
class FormVersion:
    version: str
    xml: str
    title: str
    created_at: str
    published_at: str | None = None
    attachments: dict[str, bytes] = field(default_factory=dict)


@dataclass
class RepeatInstance:
    repeat: str
    key: str
    parent_key: str
    values: dict[str, str | None]


@dataclass
class Submission:
    instance_id: str
    submission_date: str
    submitter_id: int | None
    submitter_name: str | None
    review_state: str | None
    device_id: str | None
    form_version: str | None
    values: dict[str, str | None]
    repeats: list[RepeatInstance] = field(default_factory=list)
    encrypted: bool = False  # Central could not decrypt it: no data, status notDecrypted


@dataclass
class StubForm:
    project_id: int
    form_id: str
    created_at: str
    model: FormModel | None = None
    versions: list[FormVersion] = field(default_factory=list)  # published, oldest first
    draft: FormVersion | None = None
    draft_token: str | None = None
    submissions: list[Submission] = field(default_factory=list)

    def current(self) -> FormVersion:
        return self.versions[-1] if self.versions else self.draft  # type: ignore[return-value]


def xform_identity(xml: str) -> tuple[str, str | None, str]:
    """(form id, version, title) of an XForm, or a 400 problem as Central would give."""
    try:
        root = ET.fromstring(xml.encode("utf-8"))
    except ET.ParseError:
        raise Problem(400.1, f"Could not parse the given data ({len(xml)} chars) as xml."
                      ) from None
    instance = next((e for e in root.iter(f"{{{XFORMS_NS}}}instance") if "id" not in e.attrib),
                    None)
    data = next(iter(instance), None) if instance is not None else None
    if data is None or not data.get("id"):
        raise Problem(400.2, "Required parameter formId missing.")
    version = data.get("version") or data.get("{http://openrosa.org/xforms}version")
    title = next((e.text or "" for e in root.iter("{http://www.w3.org/1999/xhtml}title")), "")
    return data.get("id"), version, title


class CentralStub:
    """The stub server and its store. Use as a context manager (or start()/stop())."""

    def __init__(self, *, email: str = EMAIL, password: str = PASSWORD, project_id: int = 1,
                 project_name: str = "OCSEA household survey") -> None:
        self.email = email
        self._password = password
        self.project_id = project_id
        self.projects: dict[int, dict[str, Any]] = {
            project_id: {"name": project_name, "created_at": now_iso()}}
        self.forms: dict[tuple[int, str], StubForm] = {}
        self.requests: list[LoggedRequest] = []
        self.tokens: dict[str, datetime] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._submitters: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> CentralStub:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.stub = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="central-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> CentralStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "stub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def pyodk_config(self, *, password: str | None = None) -> str:
        """TOML for pyodk's config file pointing at this stub."""
        pw = self._password if password is None else password
        return (f'[central]\nbase_url = "{self.base_url}"\nusername = "{self.email}"\n'
                f'password = "{pw}"\ndefault_project_id = {self.project_id}\n')

    # -- test helpers -----------------------------------------------------------------------
    def calls(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests, optionally by method and a substring (or regex) of the path."""
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method)
                    and (path is None or re.search(path, r.path))]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def published_versions(self, form_id: str, project_id: int | None = None) -> list[str]:
        form = self.forms.get((project_id or self.project_id, form_id))
        return [v.version for v in form.versions] if form else []

    def form(self, form_id: str, project_id: int | None = None) -> StubForm:
        return self.forms[(project_id or self.project_id, form_id)]

    def load(self, model: FormModel, raw: RawForm, *, project_id: int | None = None,
             form_id: str | None = None, xform: str | None = None) -> None:
        """Add a RawForm's submissions (a published form is created if needed).

        ``submission_time`` becomes Central's ``submissionDate``; rows without one get "now".
        It may carry microseconds: like Central, the stub filters on them but prints ms.
        ``submitter`` becomes ``submitterName`` (with a stable numeric ``submitterId``).
        """
        pid = project_id or self.project_id
        fid = form_id or raw.form_id
        with self._lock:
            form = self.forms.get((pid, fid))
            if form is None:
                version = next((v for v in raw.root.get("form_version", []) if normalise(v)),
                               model.version)
                form = StubForm(pid, fid, now_iso())
                form.versions.append(FormVersion(version, xform or "", model.title, now_iso(),
                                                 now_iso()))
                self.forms[(pid, fid)] = form
            form.model = model
            children: dict[str, list[RepeatInstance]] = {}
            for rep in model.repeats:
                table = raw.repeats.get(rep.name)
                if table is None:
                    continue
                for rec in table.to_dict("records"):
                    inst = RepeatInstance(rep.name, rec["KEY"], rec[PARENT],
                                          {k: normalise(v) for k, v in rec.items()})
                    children.setdefault(rec[PARENT], []).append(inst)
            for rec in raw.root.to_dict("records"):
                values = {k: normalise(v) for k, v in rec.items()}
                name = values.get("submitter")
                sub_id = None
                if name is not None:
                    sub_id = self._submitters.setdefault(name, 100 + len(self._submitters))
                sub = Submission(
                    instance_id=values["KEY"],
                    submission_date=values.get("submission_time") or now_iso(),
                    submitter_id=sub_id, submitter_name=name,
                    review_state=values.get("review_state"),
                    device_id=values.get("deviceid"),
                    form_version=values.get("form_version") or form.current().version,
                    values=values,
                )
                sub.repeats = _descendants(children, sub.instance_id)
                form.submissions.append(sub)

    # -- request handling -------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str],
               body: bytes) -> tuple[int, Any, str]:
        """Route one request; returns (status, payload, content type)."""
        split = urlsplit(target)
        parts = [unquote(p) for p in split.path.split("/") if p]
        query = parse_qsl(split.query, keep_blank_values=True)
        auth = headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        with self._lock:
            authorized = token is not None and self.tokens.get(token, datetime.min.replace(
                tzinfo=UTC)) > datetime.now(UTC)
            is_session = parts == ["v1", "sessions"]
            entry = LoggedRequest(method, split.path, dict(query),
                                  headers.get("content-type"),
                                  b"<redacted>" if is_session else body, authorized)
            self.requests.append(entry)
        try:
            if not parts or parts[0] != "v1":
                raise Problem(404.2, "Expected an API version (eg /v1) at the start of the "
                                     "request URL.")
            if is_session and method == "POST":
                status, payload = 200, self._login(body)
            elif not authorized:
                raise Problem(401.2, "Could not authenticate with the provided credentials.")
            else:
                status, payload = 200, self._route(method, parts[1:], query, headers, body,
                                                   split.path)
            ctype = "application/json; charset=utf-8"
            if isinstance(payload, str):
                ctype = "application/xml"
        except Problem as problem:
            status, ctype = problem.status, "application/json; charset=utf-8"
            payload = {"message": problem.message, "code": problem.code}
        entry.status = status
        return status, payload, ctype

    def _login(self, body: bytes) -> dict[str, Any]:
        try:
            creds = json.loads(body or b"{}")
        except ValueError:
            raise Problem(400.1, f"Could not parse the given data ({len(body)} chars) as json."
                          ) from None
        if not isinstance(creds, dict) or creds.get("email") != self.email or \
                creds.get("password") != self._password:
            raise Problem(401.2, "Could not authenticate with the provided credentials.")
        token = secrets.token_urlsafe(48)
        expires = datetime.now(UTC) + timedelta(hours=24)
        with self._lock:
            self.tokens[token] = expires
        return {"createdAt": now_iso(), "expiresAt": expires.isoformat().replace("+00:00", "Z"),
                "token": token, "csrf": secrets.token_urlsafe(16)}

    def _route(self, method: str, parts: list[str], query: list[tuple[str, str]],
               headers: dict[str, str], body: bytes, path: str) -> Any:
        q = dict(query)
        if parts == ["users", "current"] and method == "GET":
            return {"id": 1, "type": "user", "displayName": "Survey manager",
                    "email": self.email, "createdAt": now_iso(), "updatedAt": None,
                    "deletedAt": None}
        if not parts or parts[0] != "projects":
            raise not_found()
        if len(parts) == 1 and method == "GET":
            return [self._project_json(pid) for pid in sorted(self.projects)]
        try:
            pid = int(parts[1])
        except ValueError:
            raise not_found() from None
        if pid not in self.projects:
            raise not_found()
        rest = parts[2:]
        if not rest and method == "GET":
            return self._project_json(pid)
        if rest[:1] != ["forms"]:
            raise not_found()
        if len(rest) == 1:
            if method == "GET":
                return [self._form_json(f) for (p, _), f in sorted(self.forms.items())
                        if p == pid]
            if method == "POST":
                return self._create_form(pid, q, headers, body)
            raise not_found()
        return self._route_form(method, pid, rest[1], rest[2:], query, headers, body, path)

    def _route_form(self, method: str, pid: int, name: str, tail: list[str],
                    query: list[tuple[str, str]], headers: dict[str, str], body: bytes,
                    path: str) -> Any:
        """/projects/{pid}/forms/{name}/...: OData, form XML, form, versions and draft."""
        q = dict(query)
        if name.endswith(".svc") and method == "GET":
            return self._odata(pid, name[:-4], tail, query, path)
        if name.endswith(".xml") and not tail and method == "GET":
            return self._get_form(pid, name[:-4]).current().xml
        form = self._get_form(pid, name)
        if not tail and method == "GET":
            return self._form_json(form)
        if tail == ["versions"] and method == "GET":
            return [self._form_json(form, v) for v in reversed(form.versions)]
        if tail == ["draft"] and method == "POST":
            return self._new_draft(form, headers, body)
        if tail[:2] == ["draft", "attachments"] and len(tail) == 3 and method == "POST":
            return self._attach(form, tail[2], body)
        if tail == ["draft", "publish"] and method == "POST":
            return self._publish(form, q.get("version"))
        raise not_found()

    # -- projects and forms -----------------------------------------------------------------
    def _project_json(self, pid: int) -> dict[str, Any]:
        p = self.projects[pid]
        return {"id": pid, "name": p["name"], "description": None, "archived": None,
                "keyId": None, "createdAt": p["created_at"], "updatedAt": None,
                "deletedAt": None}

    def _get_form(self, pid: int, form_id: str) -> StubForm:
        form = self.forms.get((pid, form_id))
        if form is None:
            raise not_found()
        return form

    def _form_json(self, form: StubForm, version: FormVersion | None = None) -> dict[str, Any]:
        v = version or form.current()
        data = v.xml.encode("utf-8")
        return {
            "projectId": form.project_id, "xmlFormId": form.form_id, "state": "open",
            "enketoId": None, "enketoOnceId": None, "hash": hashlib.md5(data).hexdigest(),
            "sha": hashlib.sha1(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
            "version": v.version, "keyId": None,
            "draftToken": form.draft_token if v is form.draft else None,
            "publishedAt": v.published_at, "name": v.title or None,
            "createdAt": form.created_at, "updatedAt": None, "webformsEnabled": False,
        }

    @staticmethod
    def _xml_body(headers: dict[str, str], body: bytes) -> str:
        ctype = headers.get("content-type", "")
        if "xml" not in ctype:
            raise Problem(501.3, "This ODK Central has not been configured to allow XLSForm "
                                 "conversion. Please upload an XForms XML file (try XLSForm "
                                 "Online) or contact your server administrator.")
        return body.decode("utf-8")

    def _create_form(self, pid: int, q: dict[str, str], headers: dict[str, str],
                     body: bytes) -> dict[str, Any]:
        xml = self._xml_body(headers, body)
        form_id, version, title = xform_identity(xml)
        if (pid, form_id) in self.forms:
            raise Problem(409.3, "A resource already exists with projectId,xmlFormId value(s) "
                                 f"of {pid},{form_id}.")
        form = StubForm(pid, form_id, now_iso())
        form.draft = FormVersion(version or "", xml, title, now_iso())
        form.draft_token = secrets.token_urlsafe(24)
        self.forms[(pid, form_id)] = form
        if q.get("publish", "").lower() == "true":
            self._publish(form, None)
        return self._form_json(form)

    def _new_draft(self, form: StubForm, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        if body:
            xml = self._xml_body(headers, body)
            form_id, version, title = xform_identity(xml)
            if form_id != form.form_id:
                raise Problem(400.8, f"Unexpected xmlFormId value {form_id}; The form ID in "
                                     "the XForm does not match the form being updated.")
            form.draft = FormVersion(version or "", xml, title, now_iso())
        elif form.versions:
            last = form.versions[-1]
            form.draft = FormVersion(last.version, last.xml, last.title, now_iso(),
                                     attachments=dict(last.attachments))
        else:
            raise not_found()
        form.draft_token = secrets.token_urlsafe(24)
        return {"success": True}

    def _attach(self, form: StubForm, name: str, body: bytes) -> dict[str, Any]:
        if form.draft is None or name not in set(_MEDIA.findall(form.draft.xml)):
            raise not_found()
        form.draft.attachments[name] = body
        return {"success": True}

    def _publish(self, form: StubForm, version: str | None) -> dict[str, Any]:
        draft = form.draft
        if draft is None:
            raise not_found()
        if version is not None and version != draft.version:
            pattern = r'(<[^>]*\bid="' + re.escape(form.form_id) + r'"[^>]*\bversion=")[^"]*"'
            draft.xml = re.sub(pattern, lambda m: m.group(1) + version + '"', draft.xml, count=1)
            draft.version = version
        if draft.version in {v.version for v in form.versions}:
            raise Problem(409.6, f"You tried to publish the form '{form.form_id}' with version "
                                 f"'{draft.version}', but a published form has already existed "
                                 "in this project with those identifiers. Please choose a new "
                                 "name and try again. You can re-request with ?version=xyz to "
                                 "have the version changed in-place for you.")
        draft.published_at = now_iso()
        form.versions.append(draft)
        form.draft = None
        form.draft_token = None
        return {"success": True}

    # -- OData ------------------------------------------------------------------------------
    def _odata(self, pid: int, form_id: str, rest: list[str], query: list[tuple[str, str]],
               path: str) -> dict[str, Any]:
        form = self._get_form(pid, form_id)
        svc = f"{self.base_url}/v1/projects/{pid}/forms/{quote(form_id)}.svc"
        model = form.model
        tables = {"Submissions": None}
        if model is not None:
            tables.update({_table(model, r.name): r.name for r in model.repeats})
        if not rest:
            return {"@odata.context": f"{svc}/$metadata",
                    "value": [{"name": t, "kind": "EntitySet", "url": t} for t in tables]}
        if len(rest) != 1 or rest[0] not in tables:
            if rest and rest[0] == "$metadata":
                raise not_supported("$metadata")
            raise not_found()
        table = rest[0]
        q = dict(query)
        _refuse_unsupported(q)
        keep = _filter(q.get("$filter"), table != "Submissions")
        subs = [s for s in _newest_first(form.submissions) if keep(s.submission_date)]
        if table == "Submissions":
            rows = [self._root_row(form, s, q.get("$expand") == "*") for s in subs]
            cursor = "instanceId"
        else:
            rows = [self._repeat_row(form, s, inst)
                    for s in subs if not s.encrypted
                    for inst in s.repeats if inst.repeat == tables[table]]
            cursor = "repeatId"
        start = _page_start(q, rows, cursor)
        limit = _int(q["$top"], "$top") if "$top" in q else None
        page = rows[start:] if limit is None else rows[start:start + max(0, limit)]
        out: dict[str, Any] = {"value": page, "@odata.context": f"{svc}/$metadata#{table}"}
        remaining = len(rows) - start - len(page)
        if remaining > 0 and page:
            token = "01" + base64.b64encode(json.dumps(
                {cursor: page[-1]["__id"]}).encode()).decode()
            params = [(k, v) for k, v in query if k not in ("$skip", "$skiptoken")]
            params.append(("$skiptoken", token))
            out["@odata.nextLink"] = f"{self.base_url}{path}?{urlencode(params)}"
        if q.get("$count", "").lower() == "true":
            out["@odata.count"] = len(rows)
        return out

    def _root_row(self, form: StubForm, sub: Submission, expand: bool) -> dict[str, Any]:
        model = form.model
        assert model is not None
        row: dict[str, Any] = {"__id": sub.instance_id}
        if not sub.encrypted:
            row.update(_frame(model, None, sub.values, sub, sub.instance_id, expand))
            meta = row.setdefault("meta", {})
            meta["instanceID"] = sub.instance_id
            if model.settings.get("instance_name"):
                meta.setdefault("instanceName", None)
        row["__system"] = {
            "submissionDate": _ms(sub.submission_date), "updatedAt": None,
            "submitterId": None if sub.submitter_id is None else str(sub.submitter_id),
            "submitterName": sub.submitter_name, "attachmentsPresent": 0,
            "attachmentsExpected": 0,
            "status": "notDecrypted" if sub.encrypted else None, "reviewState": sub.review_state,
            "deviceId": sub.device_id, "edits": 0, "formVersion": sub.form_version,
            "deletedAt": None,
        }
        return row

    def _repeat_row(self, form: StubForm, sub: Submission,
                    inst: RepeatInstance) -> dict[str, Any]:
        model = form.model
        assert model is not None
        outer = model[inst.repeat].repeat
        link = ["Submissions"]
        if outer is not None:
            o = model[outer]
            link += [odata_name(p) for p in (*o.path, o.name)]
        parent = sub.instance_id if outer is None else _row_id(inst.parent_key)
        row: dict[str, Any] = {"__id": _row_id(inst.key), f"__{'-'.join(link)}-id": parent}
        row.update(_frame(model, inst.repeat, inst.values, sub, inst.key, False))
        return row


# -- row generation -----------------------------------------------------------------------------


def _table(model: FormModel, repeat: str) -> str:
    rep = model[repeat]
    return ".".join(["Submissions", *(odata_name(p) for p in (*rep.path, rep.name))])


def _row_id(key: str) -> str:
    return hashlib.sha1(f"Submissions#{key}".encode()).hexdigest()


def _descendants(children: dict[str, list[RepeatInstance]], key: str) -> list[RepeatInstance]:
    """Repeat instances under ``key``, depth first in position order (document order)."""
    out: list[RepeatInstance] = []
    for inst in sorted(children.get(key, []), key=lambda i: _position(i.key)):
        out.append(inst)
        out.extend(_descendants(children, inst.key))
    return out


def _position(key: str) -> int:
    found = re.search(r"\[(\d+)\]$", key)
    return int(found.group(1)) if found else 0


def _ms(stamp: str) -> str:
    """Central keeps microseconds but prints milliseconds (a JavaScript Date)."""
    moment = _parse_time(stamp).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _newest_first(subs: list[Submission]) -> list[Submission]:
    order = sorted(enumerate(subs), key=lambda t: (_parse_time(t[1].submission_date), t[0]),
                   reverse=True)
    return [s for _, s in order]


def _typed(item: Item, text: str | None) -> Any:
    """An answer as Central's OData types it (lib/data/odata.js)."""
    if text is None:
        return None
    kind = item.type
    if kind == "integer":
        return int(text)
    if kind in ("decimal", "range"):
        number = float(text)
        return int(number) if number.is_integer() else number
    if kind == "geopoint":
        parts = [float(p) for p in text.split()]
        point: dict[str, Any] = {"type": "Point", "coordinates": [parts[1], parts[0], *parts[2:3]]}
        if len(parts) > 3:
            point["properties"] = {"accuracy": parts[3]}
        return _js_numbers(point)
    if kind in ("geotrace", "geoshape"):
        points = [[float(x) for x in p.split()] for p in text.split(";") if p.strip()]
        coords = [[p[1], p[0], *p[2:3]] for p in points]
        shape: dict[str, Any] = ({"type": "LineString", "coordinates": coords}
                                 if kind == "geotrace"
                                 else {"type": "Polygon", "coordinates": [coords]})
        accuracies = [p[3] if len(p) > 3 else None for p in points]
        if any(a is not None for a in accuracies):
            shape["properties"] = {"accuracies": accuracies}
        return _js_numbers(shape)
    if kind in ("start", "end", "datetime"):
        return re.sub(r"([+-]\d\d)$", r"\1:00", text.strip())
    return text


def _js_numbers(obj: Any) -> Any:
    """Whole floats as ints, as JavaScript's JSON.stringify writes them."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, list):
        return [_js_numbers(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _js_numbers(v) for k, v in obj.items()}
    return obj


def _frame(model: FormModel, level: str | None, values: dict[str, str | None],
           sub: Submission, key: str, expand: bool) -> dict[str, Any]:
    """A row of ``level``'s table: every field present (null when unanswered), groups nested."""
    row: dict[str, Any] = {}
    for item in model.items:
        if item.repeat != level:
            continue
        path = item.path if level is None else item.path[item.path.index(level) + 1:]
        node = row
        for part in path:
            node = node.setdefault(odata_name(part), {})
        name = odata_name(item.name)
        if item.type == "begin_group":
            node.setdefault(name, {})
        elif item.is_repeat:
            instances = [i for i in sub.repeats if i.repeat == item.name and i.parent_key == key]
            if not instances:
                continue
            nav = [f"Submissions('{quote(sub.instance_id, safe='')}')"]
            nav += [odata_name(p) for p in (*item.path, item.name)]
            node[f"{name}@odata.navigationLink"] = "/".join(nav)
            if expand:
                node[name] = [{"__id": _row_id(i.key),
                               **_frame(model, item.name, i.values, sub, i.key, True)}
                              for i in instances]
        elif item.holds_data or item.type == "note":
            node[name] = _typed(item, values.get(item.name))
    return row


def _filter(text: str | None, subtable: bool):
    """A predicate on submissionDate from Central's supported $filter subset."""
    if not text:
        return lambda _date: True
    clauses = []
    for at, clause in enumerate(re.split(r"\s+and\s+", text.strip())):
        match = _FILTER.match(clause)
        if match is None or bool(match.group("root")) != subtable:
            raise Problem(501.5, "The given OData filter expression references fields not "
                                 f"supported by this server: {clause} at {at}")
        try:
            bound = _parse_time(match.group("value"))
        except ValueError:
            raise Problem(400.18, "The OData filter expression you provided could not be "
                                  f"parsed: bad date {match.group('value')}") from None
        clauses.append((_OPS[match.group("op")], bound))
    return lambda date: all(op(_parse_time(date), bound) for op, bound in clauses)


def _refuse_unsupported(q: dict[str, str]) -> None:
    """Central's answer to the query options it does not support."""
    for option in ("$select", "$wkt", "$orderby", "$search"):
        if option in q and not (option == "$wkt" and q[option].lower() == "false"):
            raise not_supported(option)
    if "$expand" in q and q["$expand"] != "*":
        raise Problem(501.6, f'The given OData expand expression is not supported by this '
                             f'server: "{q["$expand"]}". Currently, only "$expand=*" is '
                             "supported.")


def _page_start(q: dict[str, str], rows: list[dict[str, Any]], cursor: str) -> int:
    """The first row of the page: after the $skiptoken's row, else $skip, else 0."""
    if "$skiptoken" in q:
        token = _parse_skiptoken(q["$skiptoken"])
        last = token.get(cursor)
        ids = [r["__id"] for r in rows]
        if last not in ids:
            raise Problem(400.8, "Unexpected $skiptoken value; the row it points to "
                                 "no longer exists.")
        return ids.index(last) + 1
    if "$skip" in q:
        return max(0, _int(q["$skip"], "$skip"))
    return 0


def _parse_skiptoken(token: str) -> dict[str, Any]:
    if not token.startswith("01"):
        raise Problem(400.8, "Unexpected $skiptoken value; it is not valid.")
    try:
        data = json.loads(base64.b64decode(token[2:]))
    except ValueError:
        raise Problem(400.8, "Unexpected $skiptoken value; it is not valid.") from None
    if not isinstance(data, dict):
        raise Problem(400.8, "Unexpected $skiptoken value; it is not valid.")
    return data


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Problem(400.11, f"Invalid input data type: expected '{name}' to be (integer)"
                      ) from None


# -- HTTP ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "central-stub/1"
    timeout = 10  # a stuck client cannot hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:  # keep stderr quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise Problem(400.13, "Length of value too long for a field")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise Problem(400.13, "Length of value too long for a field")
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        stub: CentralStub = self.server.stub  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._body()
        except (Problem, ValueError):
            status, payload, ctype = 400, {"message": "Could not read the request body.",
                                           "code": 400.1}, "application/json"
        else:
            status, payload, ctype = stub.handle(method, self.path, headers, body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


@pytest.fixture
def central_stub() -> Iterator[CentralStub]:
    """A running stub, stopped after the test (use with ``pytest_plugins`` or import)."""
    with CentralStub() as stub:
        yield stub


def frame_of(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A canonical table (object dtype, None for missing) from records, in column order."""
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.DataFrame(records, columns=columns, dtype=object)
