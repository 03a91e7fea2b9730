"""The real ODK Central for integration tests: find or start it, one fresh project per test.

``make test`` starts Central with ``scripts/central.sh run`` and exports ``CENTRAL_URL``,
``CENTRAL_USER`` and ``CENTRAL_PASS``; :func:`central_session` uses them. Without them it starts
Central itself for the session (``scripts/central.sh start``, a temporary folder, free ports) and
stops it at the end. When Central cannot run, the tests that need it skip saying how to run them
— or fail under ``CI=true``, where a skipped integration suite would pass unnoticed.

Each test gets its own Central project (about 0.1 s; ``run-central.sh reset`` takes about 6 s)
and a pyodk config file pointing at it, so tests never see each other's forms or submissions.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from dhsurvey.fieldwork.exports import write_xml_folder
from dhsurvey.forms.compile import CompiledForm, to_xform
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import RawForm, assert_same_content
from dhsurvey.ingest.central_api import submit_instances

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "central.sh"
HOW = ("run them with `make test` (starts ../shared/central), or start Central with "
       "`bash ../shared/central/run-central.sh start` and export CENTRAL_URL, CENTRAL_USER and "
       "CENTRAL_PASS as it prints them")


@dataclass(frozen=True)
class CentralServer:
    """A running Central and its administrator's login (from the environment, never a file)."""

    url: str
    user: str
    password: str
    stop_env: dict[str, str] | None = None  # set when this session started it

    def login(self, password: str | None = None) -> requests.Session:
        http = requests.Session()
        answer = http.post(f"{self.url}/v1/sessions", timeout=30,
                           json={"email": self.user, "password": password or self.password})
        answer.raise_for_status()
        http.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        return http


def unavailable(reason: str) -> None:
    """Skip (fail under CI) the Central integration tests, saying how to run them."""
    message = f"real ODK Central is not available ({reason}); {HOW}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _reachable(url: str) -> bool:
    try:
        return requests.get(f"{url}/v1/projects", timeout=5).status_code == 401
    except requests.RequestException:
        return False


def start_session_server() -> Iterator[CentralServer]:
    """The Central of the environment, or one started for this test session."""
    url, user, password = (os.environ.get(k) for k in ("CENTRAL_URL", "CENTRAL_USER",
                                                       "CENTRAL_PASS"))
    if url and user and password:
        if not _reachable(url):
            unavailable(f"CENTRAL_URL={url} does not answer")
        yield CentralServer(url.rstrip("/"), user, password)
        return
    found = subprocess.run(["bash", str(SCRIPT), "dir"], capture_output=True, text=True)
    if found.returncode != 0:
        unavailable("no ../shared/central folder and no DHSURVEY_CENTRAL_DIR")
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True,
                             timeout=600)
    if started.returncode != 0:
        tail = " | ".join(started.stderr.strip().splitlines()[-3:])
        unavailable(f"scripts/central.sh start failed: {tail}")
    values = dict(kv.split("=", 1) for kv in shlex.split(started.stdout.strip().splitlines()[-1]))
    server = CentralServer(values["CENTRAL_URL"], values["CENTRAL_USER"],
                           values["CENTRAL_PASS"], {"CENTRAL_ROOT": values["CENTRAL_ROOT"]})
    try:
        yield server
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env={**os.environ, **(server.stop_env or {})},
                       capture_output=True, timeout=120)


def public_pem(base64_der: str) -> bytes:
    """A form's ``base64RsaPublicKey`` (DER) as the PEM the simulator encrypts with."""
    key = serialization.load_der_public_key(base64.b64decode(base64_der))
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class CentralProject:
    """One fresh project on the real Central, and a pyodk config whose default it is."""

    server: CentralServer
    http: requests.Session
    project_id: int
    config: Path
    forms: set[str] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return self.server.url

    def api(self, path: str) -> str:
        return f"{self.server.url}/v1/projects/{self.project_id}/{path.lstrip('/')}"

    def pyodk_config(self, *, password: str | None = None) -> str:
        return (f'[central]\nbase_url = "{self.server.url}"\nusername = "{self.server.user}"\n'
                f'password = "{password or self.server.password}"\n'
                f"default_project_id = {self.project_id}\n")

    def get(self, path: str, **params: Any) -> Any:
        answer = self.http.get(self.api(path), params=params, timeout=30)
        answer.raise_for_status()
        return answer.json() if "json" in answer.headers.get("Content-Type", "") else \
            answer.content

    def publish(self, form: CompiledForm | FormModel) -> CompiledForm:
        """Upload and publish a compiled form directly (the library's publish is under test
        elsewhere)."""
        compiled = form if isinstance(form, CompiledForm) else to_xform(form)
        answer = self.http.post(self.api("forms"), params={"publish": "true"}, timeout=60,
                                data=compiled.xform.encode(),
                                headers={"Content-Type": "application/xml"})
        assert answer.status_code == 200, answer.text[:300]
        self.forms.add(compiled.model.form_id)
        return compiled

    def published_versions(self, form_id: str) -> list[str]:
        return [v["version"] for v in self.get(f"forms/{form_id}/versions")]

    def form_key(self, form_id: str) -> tuple[str, bytes]:
        """(version, public key PEM) of a form Central serves encrypted."""
        xml = self.get(f"forms/{form_id}.xml").decode()
        key = re.search(r'base64RsaPublicKey="([^"]+)"', xml)
        version = re.search(rf'id="{re.escape(form_id)}"[^>]*\sversion="([^"]+)"', xml)
        assert key and version, "the form is not encrypted"
        return version.group(1), public_pem(key.group(1))

    def load(self, model: FormModel, raw: RawForm, *, public_key_pem: bytes | None = None,
             version: str | None = None) -> list[str]:
        """Send ``raw``'s submissions as Collect does (instance folders, OpenRosa), publishing
        the form first if the project lacks it; returns their instanceIDs."""
        if model.form_id not in self.forms:
            self.publish(model)
        root = raw.root.copy()
        if version is not None:
            root["form_version"] = version
        with tempfile.TemporaryDirectory(prefix="dhsurvey-push-") as tmp:
            folders = write_xml_folder(RawForm(raw.form_id, root, raw.repeats), model, tmp,
                                       public_key_pem=public_key_pem)
            sent = submit_instances(folders, project_id=self.project_id)
        assert all(s.status == 201 for s in sent)
        return list(root["KEY"])

    def review(self, form_id: str, instance_id: str, state: str) -> None:
        answer = self.http.patch(self.api(f"forms/{form_id}/submissions/{instance_id}"),
                                 json={"reviewState": state}, timeout=30)
        assert answer.status_code == 200, answer.text[:300]

    def odata(self, form_id: str, table: str = "Submissions", **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"forms/{form_id}.svc/{table}", **params)
        return result


def new_project(server: CentralServer, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> CentralProject:
    """A fresh project and pyodk's config file and cache pointed at it (per test)."""
    http = server.login()
    made = http.post(f"{server.url}/v1/projects", json={"name": f"t-{uuid.uuid4().hex[:8]}"},
                     timeout=30)
    made.raise_for_status()
    project = CentralProject(server, http, made.json()["id"], tmp_path / "pyodk_config.toml")
    project.config.write_text(project.pyodk_config(), encoding="utf-8")
    monkeypatch.setenv("PYODK_CONFIG_FILE", str(project.config))
    monkeypatch.setenv("PYODK_CACHE_FILE", str(tmp_path / "pyodk_cache.toml"))
    return project


def same_answers(fetched: RawForm, sent: RawForm, *, server_meta: bool = False) -> None:
    """``fetched`` holds what was ``sent``, with Central's receipt times (the server sets
    them; the sent ones were the simulator's)."""
    times = dict(zip(fetched.root["KEY"], fetched.root["submission_time"], strict=True))
    root = sent.root.copy()
    root["submission_time"] = root["KEY"].map(times)
    assert_same_content(fetched, RawForm(sent.form_id, root, sent.repeats),
                        server_meta=server_meta)
