"""The demo: synthetic fieldwork for every configured country, carried to the release.

The library part is here: lint and compile the instruments, simulate fieldwork with every
fault kind (encrypted device submissions included) into ``landing/``, and afterwards read the
zones back into a short summary. The pipeline itself (ingest → validate → weight → …) runs as
the Dagster job (``pipelines/demo.py``), exactly as a data manager would run it; its assets
call the library's one path (:mod:`dhsurvey.study`).

It needs no server and no real secrets: throwaway keys are created under ``data/secrets/``
(never under ``release/``) and the summary says so. That includes a key for encryption at rest
when ``DHSURVEY_AT_REST_KEY`` is unset, so the demo's raw and clean zones are encrypted as a
real study's should be (:mod:`dhsurvey.io`); a key in the variable is used as it is.
"""

from __future__ import annotations

import os
import secrets as random_secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from dhsurvey.fieldwork.config import load_countries
from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import CountryOutput, simulate_to
from dhsurvey.forms.compile import build
from dhsurvey.forms.lint import ERROR, Finding, lint_paths
from dhsurvey.io import AT_REST_KEY_ENV, atomic_write_bytes, atomic_write_text
from dhsurvey.parallel import beside
from dhsurvey.store import POOLED, Store

#: Indicators shown in the demo's summary.
HEADLINE = ("ind_ocsea_any", "ind_told_nobody", "ind_know_helpline", "ind_cg_aware")


@dataclass
class Prepared:
    findings: list[Finding]
    forms: dict[str, str]  # form_id → version
    outputs: list[CountryOutput]
    private_key: Path
    pseudonym_key: Path
    #: The throwaway key for encryption at rest; None when ``DHSURVEY_AT_REST_KEY`` is set.
    at_rest_key: Path | None = None

    @property
    def lint_errors(self) -> int:
        return sum(f.severity == ERROR for f in self.findings)

    @property
    def countries(self) -> list[str]:
        return [o.iso for o in self.outputs]


@dataclass
class Summary:
    rows: list[dict] = field(default_factory=list)  # one per country
    indicators: pd.DataFrame = field(default_factory=pd.DataFrame)


def demo_key(secrets: Path) -> tuple[bytes, Path]:
    """A throwaway RSA key pair for the demo's encrypted submissions (public PEM, private path)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = secrets / "demo-private.pem"
    if not private.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        atomic_write_bytes(private, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        private.chmod(0o600)
    loaded = serialization.load_pem_private_key(private.read_bytes(), None)
    public = loaded.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return public, private


def demo_pseudonym_key(secrets: Path) -> Path:
    """A throwaway 32-byte pseudonym key (hex) for the demo, kept with the other secrets."""
    return _throwaway_key(secrets / "demo-pseudonym.key")


def demo_at_rest_key(secrets: Path) -> Path:
    """A throwaway 32-byte key (hex) for encryption at rest, kept with the other secrets and
    reused by later runs (the files it encrypted stay readable)."""
    return _throwaway_key(secrets / "demo-at-rest.key")


def _throwaway_key(path: Path) -> Path:
    if not path.exists():
        atomic_write_text(path, random_secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path


#: The share of each country's tablets whose encrypted instance folders the demo's field teams
#: copy off, besides sending every submission to Central (``fieldwork.run.pulled_devices``).
DEVICE_SHARE = 0.25

#: The countries `dhsurvey demo` runs unless told otherwise (`--countries all`: every one).
DEMO_COUNTRIES = ("KEN", "TZA", "UGA")


def demo_countries(choice: str) -> list[str] | None:
    """``--countries``: comma-separated ISO codes, ``all`` (None: every configured country)."""
    if choice.strip().lower() == "all":
        return None
    return [c.strip().upper() for c in choice.split(",") if c.strip()]


def prepare_demo(instruments: Path, data: Path, *, households: int | None = None,
                 seed: int = 2026, step: Callable[[str], None] = lambda _: None,
                 countries: tuple[str, ...] | list[str] | None = DEMO_COUNTRIES) -> Prepared:
    """Lint, build, and simulate ``countries`` (None: all) into ``data/landing`` with every
    fault kind: every submission in a Central export, and the encrypted instance folders of
    :data:`DEVICE_SHARE` of the tablets."""
    # The lint (one core) runs beside the compiling and the simulation: nothing else waits on
    # its findings, which are reported at the end.
    with beside(partial(lint_paths, [instruments], validate=False)) as linted:
        step("Linting and compiling instruments with pyxform and ODK Validate")
        store = Store(data)
        compiled = build(instruments, store.build)
        models = {c.model.form_id: c.model for c in compiled}
        configs = load_countries(instruments, list(models.values()),
                                 list(countries) if countries is not None else None)
        public, private = demo_key(store.secrets)
        step(f"Simulating fieldwork in {', '.join(c.iso for c in configs)}")
        outputs = simulate_to(store.landing(), configs, models, seed=seed,
                              households=households, faults=list(KINDS),
                              formats=("central", "xml"), public_key_pem=public,
                              devices=DEVICE_SHARE)
        findings = linted()
    at_rest = None if os.environ.get(AT_REST_KEY_ENV, "").strip() else \
        demo_at_rest_key(store.secrets)
    return Prepared(findings, {m: c.model.version for m, c in zip(models, compiled,
                                                                   strict=True)},
                    outputs, private, demo_pseudonym_key(store.secrets), at_rest)


def dagster_home(data: Path) -> Path:
    """Where the demo's runs are recorded: $DAGSTER_HOME, else ``data/dagster_home``."""
    return Path(os.environ.get("DAGSTER_HOME") or data / "dagster_home").resolve()


def summarise(data: Path, countries: list[str], simulated: dict[str, dict[str, int]],
              faults: dict[str, int]) -> Summary:
    """Numbers worth reading, from the files the pipeline wrote."""
    store = Store(data)
    summary = Summary()
    tables = []
    for iso in countries:
        rec = {f: store.reconciliation(iso, f)
               for f in ("household", "child", "caregiver", "frontline_worker")}
        aapor = store.quality_table(iso, "aapor")
        rr = dict(zip(aapor.loc[aapor["level"] == "country", "interview"],
                      aapor.loc[aapor["level"] == "country", "RR1"], strict=True))
        summary.rows.append({
            "country": iso, "simulated": simulated.get(iso, {}), "faults": faults.get(iso, 0),
            "received": {f: r["raw"] for f, r in rec.items()},
            "accepted": {f: r["accepted"] for f, r in rec.items()},
            "quarantined": sum(r["quarantined"] for r in rec.values()),
            "duplicates": sum(r["duplicates"] for r in rec.values()),
            "flagged": sum(r["flagged"] for r in rec.values()),
            "rr1": rr,
        })
        path = store.release(iso) / "indicators.parquet"
        if path.exists():
            tables.append(pd.read_parquet(path))
    pooled = store.release(POOLED) / "indicators.parquet"
    if pooled.exists():
        tables.append(pd.read_parquet(pooled).assign(country="all"))
    if tables:
        table = pd.concat(tables, ignore_index=True)
        summary.indicators = table[(table["domain"] == "all")
                                   & table["indicator"].isin(HEADLINE)]
    return summary
