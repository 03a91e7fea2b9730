"""The demo: synthetic fieldwork for every configured country, from instruments to clean zone.

It runs what a study would run, on simulated data: lint and compile the instruments, simulate
fieldwork with planted faults (encrypted device submissions included), ingest the exports, and
validate them into accepted tables, quarantine and a fieldwork quality report.
It needs no server and no secrets: a throwaway key pair is created under ``data/secrets/`` (never
under ``release/``) for the encrypted submissions, and the summary says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dhsurvey.fieldwork.config import load_countries
from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.forms.compile import build, instrument_paths
from dhsurvey.forms.lint import ERROR, Finding, lint_paths
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.run import IngestResult, ingest_exports
from dhsurvey.io import atomic_write_bytes


@dataclass
class DemoResult:
    findings: list[Finding]
    forms: dict[str, str]  # form_id → version
    simulated: dict[str, dict[str, int]]  # ISO → form → submissions
    faults: dict[str, int]
    ingested: list[IngestResult]
    key_path: Path
    dispositions: dict[str, dict[str, int]] = field(default_factory=dict)
    validation: dict[str, dict[str, dict]] = field(default_factory=dict)  # ISO → form → rec
    response: dict[str, dict[str, float]] = field(default_factory=dict)  # ISO → RR1 by level

    @property
    def lint_errors(self) -> int:
        return sum(f.severity == ERROR for f in self.findings)


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
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return public, private


def run_demo(instruments: Path, data: Path, *, households: int | None = None, seed: int = 2026,
             step: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Lint, build, simulate every country with all fault kinds, ingest Central and XML."""
    step("Linting instruments")
    findings = lint_paths([instruments], validate=False)
    step("Compiling instruments with pyxform and ODK Validate")
    compiled = build(instruments, data / "build")
    models = {c.model.form_id: c.model for c in compiled}
    if set(models) != {load_form(p).form_id for p in instrument_paths(instruments)}:
        raise AssertionError("compiled forms differ from the instruments")  # pragma: no cover
    configs = load_countries(instruments, list(models.values()))
    public, private = demo_key(data / "secrets")
    step(f"Simulating fieldwork in {', '.join(c.iso for c in configs)}")
    outputs = simulate_to(data / "landing", configs, models, seed=seed, households=households,
                          faults=list(KINDS), formats=("central", "xml"),
                          public_key_pem=public)
    step("Ingesting Central exports and encrypted device submissions")
    exports = [p for o in outputs for p in sorted((o.folder / "central").glob("*.zip"))]
    exports += [p for o in outputs for p in sorted((o.folder / "xml").iterdir())]
    ingested = ingest_exports(exports, models, configs, data,
                              private_key_pem=private.read_bytes())
    import pandas as pd

    from dhsurvey.ingest.store import read_raw
    from dhsurvey.validate.run import validate_forms, write_quality, write_validation

    dispositions, validation, response = {}, {}, {}
    for config in configs:
        step(f"Validating {config.iso}: schemas, linkage, quarantine, quality report")
        raws = {f: read_raw(data / "raw" / config.iso, f) for f in models}
        result = validate_forms(raws, models, config=config)
        clean = data / "clean" / config.iso
        write_validation(result, clean)
        write_quality(result, models, clean, config=config, expectations=False)
        validation[config.iso] = {f: r.reconciliation for f, r in result.forms.items()}
        hh = raws["household"].root
        dispositions[config.iso] = hh["disposition"].value_counts().to_dict()
        aapor = pd.read_parquet(clean / "quality" / "aapor.parquet")
        overall = aapor[aapor["level"] == "country"]
        response[config.iso] = dict(zip(overall["interview"], overall["RR1"], strict=True))
    return DemoResult(findings, {m: c.model.version for m, c in zip(models, compiled,
                                                                     strict=True)},
                      {o.iso: o.counts for o in outputs}, {o.iso: o.faults for o in outputs},
                      ingested, private, dispositions, validation, response)
