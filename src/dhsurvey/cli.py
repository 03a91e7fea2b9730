"""``dhsurvey`` command line: parses arguments, calls the library, shows progress and results.

Library errors (:class:`DhsurveyError`) are printed as one readable block naming file, sheet,
row and column, and the command exits with status 2 — never a traceback for bad input.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dhsurvey.errors import DhsurveyError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="From XLSForm instruments to weighted, anonymised, labelled releases.")
translate_app = typer.Typer(no_args_is_help=True, help="Translation round trip for translators.")
app.add_typer(translate_app, name="translate")
# Piped output (CI logs, files) gets a readable width instead of 80 columns.
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)

DEFAULT_INSTRUMENTS = Path("instruments")
DEFAULT_DATA = Path(os.environ.get("DHSURVEY_DATA", "data"))


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print library errors as one block and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DhsurveyError as exc:
            err_console.print(f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}",
                              soft_wrap=True)
            for key, value in exc.ordered_context():
                err_console.print(f"  {key:<8} {value}", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None

    return wrapper


def _public_key(path: Path | None) -> str | None:
    """A PEM or bare base64 RSA public key, as XLSForm's settings.public_key wants it."""
    source = path or (Path(os.environ["DHSURVEY_PUBLIC_KEY"])
                      if os.environ.get("DHSURVEY_PUBLIC_KEY") else None)
    if source is None:
        return None
    if not source.exists():
        raise DhsurveyError("public key file not found", code="config", file=source)
    lines = [ln.strip() for ln in source.read_text().splitlines()
             if ln.strip() and not ln.startswith("-----")]
    return "".join(lines)


PublicKey = Annotated[Path | None, typer.Option(
    "--public-key", help="PEM public key to encrypt submissions (or $DHSURVEY_PUBLIC_KEY).")]


@app.command()
@friendly_errors
def build(
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
    DEFAULT_INSTRUMENTS,
    out: Annotated[Path, typer.Option(help="Output root; XForms go to OUT/forms/.")] =
    DEFAULT_DATA / "build",
    validate: Annotated[bool, typer.Option(help="Run ODK Validate (Java).")] = True,
    public_key: PublicKey = None,
) -> None:
    """Compile every instrument to an XForm plus a manifest (form id, version, hash)."""
    from dhsurvey.forms.compile import build as build_forms

    with console.status("Compiling instruments with pyxform and ODK Validate…"):
        compiled = build_forms(instruments, out, validate=validate,
                               public_key=_public_key(public_key))
    table = Table("form_id", "version", "fields", "languages", "XForm", title="Compiled forms")
    for c in compiled:
        table.add_row(c.model.form_id, c.model.version, str(len(c.model.fields)),
                      ", ".join(c.model.languages), str(out / "forms" / f"{c.model.form_id}.xml"))
    console.print(table)
    for c in compiled:
        for w in c.warnings:
            console.print(f"[yellow]warning[/] {c.model.path.name}: {w}")


@app.command()
@friendly_errors
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(help="Workbooks or folders.")] = None,
    validate: Annotated[bool, typer.Option(help="Also run ODK Validate (Java).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON lines.")] = False,
    public_key: PublicKey = None,
) -> None:
    """Check workbooks: compile errors, DIME ietestform rules and the study's rules.

    Exits 1 when any finding is an error.
    """
    from dhsurvey.forms.lint import ERROR, lint_paths

    with console.status("Linting…"):
        findings = lint_paths(list(paths or [DEFAULT_INSTRUMENTS]), validate=validate,
                              public_key=_public_key(public_key))
    if as_json:
        for f in findings:
            typer.echo(json.dumps(f.as_dict(), default=str))
    else:
        for f in findings:
            colour = "red" if f.severity == ERROR else "yellow"
            console.print(f"{escape(f.location())}: [{colour}]{f.severity}[/] {f.rule}: "
                          f"{escape(f.message)}", soft_wrap=True)
        counts = Counter(f.severity for f in findings)
        console.print(f"{counts['error']} error(s), {counts['warning']} warning(s)")
    if any(f.severity == ERROR for f in findings):
        raise typer.Exit(1)


@translate_app.command("export")
@friendly_errors
def translate_export(
    workbook: Path,
    out: Annotated[Path, typer.Option(help="Spreadsheet for translators (.xlsx).")],
    language: Annotated[str, typer.Option(help="Target language, e.g. 'Kiswahili (sw)'.")],
    missing_only: Annotated[bool, typer.Option(help="Only untranslated strings.")] = False,
) -> None:
    """Write one row per string (location, source text, target column) for translators."""
    from dhsurvey.forms.translate import export

    n = export(workbook, out, language, missing_only=missing_only)
    console.print(f"{n} strings written to {out}")


@translate_app.command("import")
@friendly_errors
def translate_import(
    workbook: Path,
    translations: Path,
    out: Annotated[Path | None, typer.Option(help="Write here instead of in place.")] = None,
) -> None:
    """Write translated strings back into the workbook; stale rows are reported, not written."""
    from dhsurvey.forms.translate import import_

    result = import_(workbook, translations, out=out)
    console.print(f"{result.written} strings written, {result.unchanged} rows left empty, "
                  f"{len(result.conflicts)} conflicts")
    for c in result.conflicts:
        console.print(f"[yellow]conflict[/] {c}")
    if result.conflicts:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def diff(old: Path, new: Path) -> None:
    """Semantic changes between two versions of a workbook (fields, wording, options, logic)."""
    from dhsurvey.forms.diff import diff_files

    changes = diff_files(old, new)
    for change in changes:
        console.print(str(change), soft_wrap=True, markup=False)
    console.print(f"{len(changes)} change(s)")


def _models(instruments: Path) -> dict:
    from dhsurvey.forms.compile import instrument_paths
    from dhsurvey.forms.model import load_form

    models = [load_form(p) for p in instrument_paths(instruments)]
    return {m.form_id: m for m in models}


def _configs(instruments: Path, models: dict, only: list[str] | None = None) -> list:
    from dhsurvey.fieldwork.config import load_countries

    return load_countries(instruments, list(models.values()), only)


def _read_pem(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    if not path.exists():
        raise DhsurveyError(f"{what} file not found", code="secret-missing", file=path)
    return path.read_bytes()


@app.command()
@friendly_errors
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder (one subfolder per country).")],
    country: Annotated[list[str] | None, typer.Option(
        help="Country ISO code (repeatable); default: every configured country.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 0,
    households: Annotated[int | None, typer.Option(
        help="Approximate households per country (default: the configured design).")] = None,
    faults: Annotated[str | None, typer.Option(
        help="Fault kinds to plant: 'all' or a comma list (see docs).")] = None,
    formats: Annotated[str, typer.Option(help="Comma list of central, kobo, xml.")] =
    "central,kobo,xml",
    public_key: Annotated[Path | None, typer.Option(
        help="PEM public key: encrypt the XML instances as ODK Collect does.")] = None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Simulate fieldwork from the forms' own logic and write it as the servers export it."""
    from dhsurvey.fieldwork.faults import parse_faults
    from dhsurvey.fieldwork.run import FORMATS, simulate_to

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise DhsurveyError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}",
                            code="cli")
    kinds = parse_faults(faults)
    models = _models(instruments)
    configs = _configs(instruments, models, country)
    with console.status(f"Simulating {len(configs)} country(ies)…"):
        outputs = simulate_to(out, configs, models, seed=seed, households=households,
                              faults=kinds, formats=chosen,
                              public_key_pem=_read_pem(public_key, "public key"))
    table = Table("country", *models, "faults", "folder", title="Simulated fieldwork")
    for o in outputs:
        table.add_row(o.iso, *(str(o.counts.get(f, 0)) for f in models), str(o.faults),
                      str(o.folder))
    console.print(table)


@app.command()
@friendly_errors
def ingest(
    exports: Annotated[list[Path], typer.Argument(help="Central zips, Kobo JSON, XML folders.")],
    out: Annotated[Path, typer.Option(help="Data root; tables go to OUT/raw/<ISO>/.")] =
    DEFAULT_DATA,
    country: Annotated[str | None, typer.Option(help="Keep only this country.")] = None,
    key: Annotated[Path | None, typer.Option(
        help="Private key (PEM) for encrypted instances; default $DHSURVEY_PRIVATE_KEY.")] =
    None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Read exports of any kind into canonical raw tables per country and form."""
    from dhsurvey.ingest.decrypt import load_private_key
    from dhsurvey.ingest.run import ingest_exports

    models = _models(instruments)
    configs = _configs(instruments, models)
    pem = key.read_bytes() if key else (load_private_key() if os.environ.get(
        "DHSURVEY_PRIVATE_KEY") else None)
    with console.status(f"Reading {len(exports)} export(s)…"):
        results = ingest_exports(exports, models, configs, out, private_key_pem=pem,
                                 country=country)
    table = Table("country", "form", "submissions", "repeat rows", "quarantined",
                  title=f"Raw tables in {out / 'raw'}")
    for r in results:
        table.add_row(r.country, r.form_id, str(r.submissions), str(r.repeat_rows),
                      str(r.quarantined))
    console.print(table)


@app.command()
@friendly_errors
def validate(
    exports: Annotated[list[Path], typer.Argument(help="Exports of any kind (form recognised).")],
    out: Annotated[Path, typer.Option(help="Folder for accepted, quarantine, flags, report.")],
    country: Annotated[str | None, typer.Option(
        help="Country ISO: adds fieldwork window, frame and target rules.")] = None,
    form: Annotated[list[str] | None, typer.Option(help="Only these form ids.")] = None,
    corrections: Annotated[Path | None, typer.Option(
        help="Corrections log (CSV/XLSX: instanceID, field, old_value, new_value, reason, "
             "author), applied first.")] = None,
    key: Annotated[Path | None, typer.Option(help="Private key for encrypted instances.")] =
    None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Validate and link forms; write accepted/quarantine/flags per form, HFC tables, report.

    Exits 0 when rows were quarantined (the normal case); non-zero only when it could not run.
    """
    from dhsurvey.validate.corrections import read_corrections
    from dhsurvey.validate.run import validate_exports

    models = _models(instruments)
    configs = _configs(instruments, models)
    log = read_corrections(corrections) if corrections else None
    with console.status("Validating…"):
        result = validate_exports(exports, models, configs, out, country=country, forms=form,
                                  corrections=log, private_key_pem=_read_pem(key, "private key"))
    table = Table("form", "raw", "accepted", "quarantined", "duplicates", "flagged",
                  "top quarantine reasons", title=f"Validation ({result.country or 'no country'})")
    for form_id, r in result.forms.items():
        rec = r.reconciliation
        reasons = ", ".join(f"{k} {v}" for k, v in list(rec["quarantine_by_rule"].items())[:3])
        table.add_row(form_id, str(rec["raw"]), str(rec["accepted"]), str(rec["quarantined"]),
                      str(rec["duplicates"]), str(rec["flagged"]), reasons or "-")
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"Results in {out}/<form>/ (accepted, quarantine, flags, reconciliation.json); "
                  f"quality tables in {out / 'quality'}; report {out / 'report.html'}; "
                  f"Great Expectations Data Docs {out / 'data_docs' / 'index.html'}",
                  soft_wrap=True)


@app.command()
@friendly_errors
def backcheck(
    original: Annotated[Path, typer.Argument(help="Export of the original interviews.")],
    checks: Annotated[Path, typer.Argument(help="Export of the back-check interviews.")],
    out: Annotated[Path, typer.Option(help="Folder for the comparison tables.")],
    plan: Annotated[Path, typer.Option(help="Back-check plan (YAML).")] =
    DEFAULT_INSTRUMENTS / "backcheck.yaml",
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Compare back-check answers with the original interviews (types 1/2/3, tolerances)."""
    from dhsurvey.validate.backcheck import load_plan, run_backcheck

    models = _models(instruments)
    result = run_backcheck(original, checks, load_plan(plan), models, out)
    table = Table("variable", "type", "compared", "differences", "error rate",
                  title="Back-check error rates by variable")
    for row in result["by_variable"].itertuples(index=False):
        table.add_row(str(row.variable), str(row.type), str(row.compared), str(row.errors),
                      f"{row.error_rate:.1%}")
    console.print(table)
    console.print(f"{len(result['unmatched'])} back-check(s) without an original interview; "
                  f"tables in {out}", soft_wrap=True)


@app.command()
@friendly_errors
def decrypt(
    src: Annotated[Path, typer.Argument(help="Folder of instance folders (manifest + .enc).")],
    dst: Annotated[Path, typer.Argument(help="Where decrypted instances go.")],
    key: Annotated[Path | None, typer.Option(
        help="Private key (PEM); default $DHSURVEY_PRIVATE_KEY.")] = None,
) -> None:
    """Decrypt ODK-encrypted submissions; failures are kept in DST/_failed with a reason."""
    from dhsurvey.ingest.decrypt import decrypt_folder, load_private_key

    report = decrypt_folder(src, dst, load_private_key(key))
    console.print(f"{len(report.decrypted)} decrypted, {len(report.plain)} plain, "
                  f"{len(report.failed)} failed (kept in {dst / '_failed'})")
    for folder, code, message in report.failed:
        console.print(f"  {folder}: [{code}] {message}", markup=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def publish(
    form: Annotated[str, typer.Option(help="form_id of the instrument to publish.")],
    attachment: Annotated[list[Path] | None, typer.Option(
        help="Media or CSV file the form uses (repeatable).")] = None,
    project: Annotated[int | None, typer.Option(
        help="Central project id (default: pyodk's default_project_id).")] = None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
    public_key: PublicKey = None,
) -> None:
    """Compile a form and publish it on ODK Central (pyodk config); refuses a reused version."""
    from dhsurvey.forms.compile import compile_forms, instrument_paths
    from dhsurvey.ingest.central_api import publish_form

    models = _models(instruments)
    if form not in models:
        raise DhsurveyError(f"no instrument with form_id '{form}' (have: {', '.join(models)})",
                            code="cli", file=instruments)
    (compiled,) = compile_forms([p for p in instrument_paths(instruments)
                                 if p == models[form].path], public_key=_public_key(public_key))
    version = publish_form(compiled, attachments=attachment or (), project_id=project)
    console.print(f"Published {form} version {version}")


@app.command()
@friendly_errors
def fetch(
    form: Annotated[list[str] | None, typer.Option(help="form_id (repeatable); default all.")] =
    None,
    out: Annotated[Path, typer.Option(help="Data root; tables go to OUT/raw/<ISO>/.")] =
    DEFAULT_DATA,
    project: Annotated[int | None, typer.Option(help="Central project id.")] = None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Fetch new submissions from ODK Central (pyodk config) into the raw zone, incrementally."""
    from dhsurvey.ingest.central_api import fetch_submissions
    from dhsurvey.ingest.run import split_by_country
    from dhsurvey.ingest.store import combine, read_raw, write_raw

    models = _models(instruments)
    configs = _configs(instruments, models)
    codes = {str(c.code): c.iso for c in configs}
    for form_id in form or list(models):
        raw = fetch_submissions(form_id, models[form_id], project_id=project,
                                state_dir=out / "landing" / "central")
        for iso, part in split_by_country(raw, codes).items():
            folder = out / "raw" / iso
            parts = [part]
            if (folder / f"{form_id}.parquet").exists():
                parts.insert(0, read_raw(folder, form_id))
            write_raw(combine(parts), folder)
            console.print(f"{iso} {form_id}: {len(part.root)} new submission(s)")


@app.command()
@friendly_errors
def demo(
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
    DEFAULT_INSTRUMENTS,
    out: Annotated[Path, typer.Option(help="Data root.")] = DEFAULT_DATA,
    households: Annotated[int | None, typer.Option(
        help="Households per country (default: each country's design).")] = None,
) -> None:
    """Simulate three countries and run the Dagster pipeline on them; summarise the result."""
    from dhsurvey.demo import dagster_home, prepare_demo, summarise

    with console.status("Starting…") as status:
        def step(text: str) -> None:
            status.update(text + "…")

        prepared = prepare_demo(instruments, out, households=households, step=step)
        try:
            from pipelines.demo import run_pipeline
        except ImportError as exc:  # pragma: no cover - installed with the package
            raise DhsurveyError(f"the Dagster code location is not installed ({exc})",
                                code="pipeline-missing") from None
        run_pipeline(instruments.resolve(), out.resolve(), dagster_home(out),
                     prepared.countries, private_key=prepared.private_key.resolve(),
                     pseudonym_key=prepared.pseudonym_key, step=step)
        summary = summarise(out, prepared.countries,
                            {o.iso: o.counts for o in prepared.outputs},
                            {o.iso: o.faults for o in prepared.outputs})
    console.print(f"Instruments: {len(prepared.forms)} forms compiled; lint "
                  f"{prepared.lint_errors} error(s), "
                  f"{len(prepared.findings) - prepared.lint_errors} warning(s)", soft_wrap=True)
    table = Table("country", "households", "RR1", "children", "RR1", "caregivers", "workers",
                  "faults", "quarantined", "duplicates", "flagged",
                  title="Fieldwork (simulated, with planted faults) after validation; RR1 = "
                        "AAPOR response rate")
    for row in summary.rows:
        acc, rr = row["accepted"], row["rr1"]
        table.add_row(row["country"], str(row["received"]["household"]),
                      f"{rr.get('household', 0):.1%}", str(acc["child"]),
                      f"{rr.get('child', 0):.1%}", str(acc["caregiver"]),
                      str(acc["frontline_worker"]), str(row["faults"]),
                      str(row["quarantined"]), str(row["duplicates"]), str(row["flagged"]))
    console.print(table)
    if len(summary.indicators):
        ind = Table("country", "indicator", "estimate", "95 % CI", "n",
                    title="Headline indicators (weighted, design-based CIs)")
        for r in summary.indicators.itertuples():
            ind.add_row(r.country, r.label, f"{r.estimate:.1%}",
                        f"{r.ci_low:.1%} – {r.ci_high:.1%}", str(r.n))
        console.print(ind)
    console.print(f"Data zones under {out}/: landing (exports), raw, clean (accepted, "
                  f"quarantine, weights, report.html), release (one folder per country, and "
                  f"pooled/ for all countries together)", soft_wrap=True)
    console.print(f"Throwaway demo keys in {out / 'secrets'} (restricted; never part of a "
                  f"release). The run is recorded in {dagster_home(out)}: `make ui` shows it.",
                  soft_wrap=True)
    if prepared.lint_errors:
        raise typer.Exit(1)


@app.command("release-batches")
@friendly_errors
def release_batches(
    country: Annotated[str, typer.Argument(help="ISO code of the country (its country file).")],
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
    DEFAULT_INSTRUMENTS,
    data: Annotated[Path, typer.Option(help="Data root (raw/<ISO>, landing/<ISO>/design).")] =
    DEFAULT_DATA,
    out: Annotated[Path | None, typer.Option(
        help="Release folder (default DATA/batched/<ISO>/release).")] = None,
    batch_households: Annotated[int, typer.Option(
        help="Sampled households per batch (whole PSUs).")] = 30_000,
) -> None:
    """Validate, weight, anonymise and release one country a batch of PSUs at a time.

    For a sample too large to hold in memory: peak memory follows the batch, not the country.
    Reads DATA/raw/<ISO> and DATA/landing/<ISO>/design/households.parquet; the pseudonym key
    comes from $DHSURVEY_PSEUDONYM_KEY. Writes the data files (Parquet, CSV, .dta, .sav) and,
    under DATA/batched/<ISO>/work, validation results, the restricted mappings and the
    disclosure report.
    """
    import numpy as np
    import pandas as pd

    from dhsurvey.anonymise.pseudonym import load_key
    from dhsurvey.batched import release_in_batches
    from dhsurvey.fieldwork.config import load_country
    from dhsurvey.forms.model import load_form

    iso = country.upper()
    config = load_country(instruments / "countries" / f"{iso}.yaml")
    design_path = data / "landing" / iso / "design" / "households.parquet"
    raw = data / "raw" / iso
    for path in (design_path, raw):
        if not path.exists():
            raise DhsurveyError("input not found", code="batches-input", file=path, country=iso)
    models = {p.stem: load_form(p) for p in sorted(instruments.glob("*.xlsx"))
              if (raw / f"{p.stem}.parquet").exists()}
    key = load_key()
    root = data / "batched" / iso
    with console.status("Partitioning the raw tables by PSU…") as status:
        done: list[str] = []
        after = {"partition": "Validating batch by batch", "validate": "Computing weights",
                 "weight": "Planning the anonymisation", "anonymise": "Writing the release"}

        def step(name: str) -> None:
            done.append(name)
            if name in after:
                status.update(after[name] + "…")

        result = release_in_batches(raw, pd.read_parquet(design_path), models, config,
                                    out or root / "release", root / "work", key=key,
                                    rng=np.random.default_rng(),
                                    batch_households=batch_households, on_step=step)
    table = Table("form", "received", "accepted", "quarantined", "duplicates", "flagged",
                  title=f"{iso}: {result.batches} batches of PSUs")
    for form, rec in result.reconciliation.items():
        table.add_row(form, *(str(rec[c]) for c in ("raw", "accepted", "quarantined",
                                                     "duplicates", "flagged")))
    console.print(table)
    console.print(f"Release files: {len(result.files)} in {out or root / 'release'}; "
                  f"restricted mappings and reports in {root / 'work'}", soft_wrap=True)
    decision = result.gate
    if decision.passed:
        console.print("Disclosure gate (k, global risk, design variables): passed. The scan "
                      "of the files for identifiers is not run on batched releases.",
                      soft_wrap=True)
    else:
        console.print("[bold red]Disclosure gate: blocked[/] — do not publish: "
                      + escape("; ".join(decision.reasons)), soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 3000,
    workspace: Annotated[Path, typer.Option(help="Dagster workspace file.")] =
    Path("workspace.yaml"),
) -> None:
    """Start the Dagster UI on 127.0.0.1 with DAGSTER_HOME set and pop-ups/telemetry off."""
    import signal
    import subprocess

    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DATA / "dagster_home").resolve()
    write_dagster_home(home)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    demo_secrets = DEFAULT_DATA / "secrets"
    if "DHSURVEY_PRIVATE_KEY" not in env and (demo_secrets / "demo-private.pem").exists():
        env["DHSURVEY_PRIVATE_KEY"] = str((demo_secrets / "demo-private.pem").resolve())
        console.print("Using the demo's throwaway private key (set DHSURVEY_PRIVATE_KEY for a "
                      "real study).")
    if "DHSURVEY_PSEUDONYM_KEY" not in env and (demo_secrets / "demo-pseudonym.key").exists():
        env["DHSURVEY_PSEUDONYM_KEY"] = (demo_secrets / "demo-pseudonym.key").read_text().strip()
        console.print("Using the demo's throwaway pseudonym key (set DHSURVEY_PSEUDONYM_KEY for a "
                      "real study).")
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    console.print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={home}); Ctrl-C stops.")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        raise typer.Exit(proc.wait()) from None


def write_dagster_home(home: Path) -> Path:
    """Create DAGSTER_HOME with nux and telemetry off (else a pop-up covers the UI)."""
    from dhsurvey.io import atomic_write_text

    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        atomic_write_text(config, "nux:\n  enabled: false\ntelemetry:\n  enabled: false\n")
    return config


if __name__ == "__main__":  # pragma: no cover
    app()
