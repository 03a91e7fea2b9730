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
country_app = typer.Typer(no_args_is_help=True, help="Country files and the form attachments "
                          "made from them.")
app.add_typer(country_app, name="country")
# Piped output (CI logs, files) gets a readable width instead of 80 columns.
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(highlight=False, emoji=False, width=_WIDTH)  # `:label:` is text, not 🏷
err_console = Console(stderr=True, highlight=False, emoji=False, width=_WIDTH)

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
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Workbooks, folders, country or indicator YAML files.")] = None,
    validate: Annotated[bool, typer.Option(help="Also run ODK Validate (Java).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON lines.")] = False,
    public_key: PublicKey = None,
    simulate: Annotated[int, typer.Option(
        "--simulate", help="Interviews simulated per form to find questions never shown "
        "(0: skip).")] = 500,
    draft: Annotated[list[str] | None, typer.Option(
        "--draft", help="A language still being translated (name or code, repeatable): its "
        "missing texts are information.")] = None,
    summary: Annotated[bool, typer.Option(
        help="Print translated/missing/stale texts per language.")] = True,
) -> None:
    """Check workbooks: compile errors, DIME ietestform rules and the study's rules; in a
    folder also the country files and indicators.yaml against the forms.

    Exits 1 when any finding is an error.
    """
    from dhsurvey.forms.lint import ERROR, INFO, lint_paths
    from dhsurvey.study_files import fielded_languages, lint_study_files, lint_targets

    workbooks, studies = lint_targets(list(paths or [DEFAULT_INSTRUMENTS]))
    with console.status("Linting…"):
        findings = lint_paths(workbooks, validate=validate, public_key=_public_key(public_key),
                              reach=_reach(simulate) if simulate > 0 else None,
                              drafts=tuple(draft or ()), fielded=fielded_languages(workbooks))
        findings += lint_study_files(studies)
    if as_json:
        for f in findings:
            typer.echo(json.dumps(f.as_dict(), default=str))
    else:
        colours = {ERROR: "red", INFO: "cyan"}
        for f in findings:
            console.print(f"{escape(f.location())}: [{colours.get(f.severity, 'yellow')}]"
                          f"{f.severity}[/] {f.rule}: {escape(f.message)}", soft_wrap=True)
        if summary:
            _print_translation_summary(workbooks, tuple(draft or ()))
        counts = Counter(f.severity for f in findings)
        info = f", {counts[INFO]} info" if counts[INFO] else ""
        console.print(f"{counts['error']} error(s), {counts['warning']} warning(s){info}")
    if any(f.severity == ERROR for f in findings):
        raise typer.Exit(1)


def _reach(n: int) -> Callable[[Any], tuple[int, dict[str, int]]]:
    """The lint's reachability check: ``n`` simulated interviews with choices drawn evenly,
    and runs steered towards what they did not reach."""
    from dhsurvey.fieldwork.answers import reachability

    def reach(model: Any) -> tuple[int, dict[str, int]]:
        return n, reachability(model, n)

    return reach


def _print_translation_summary(workbooks: list[str | Path], drafts: tuple[str, ...]) -> None:
    """Per workbook and language: translated / missing / stale labels, hints, messages,
    choices (a workbook in one language has nothing to show)."""
    from dhsurvey.errors import FormError
    from dhsurvey.forms.compile import instrument_paths
    from dhsurvey.forms.lint import SUMMARY_KINDS, translation_summary
    from dhsurvey.forms.model import load_form

    rows = []
    for target in workbooks:
        try:
            paths = instrument_paths(target)
        except FormError:
            continue
        for p in paths:
            try:
                rows += translation_summary(load_form(p, check_expressions=False), drafts)
            except FormError:
                continue
    if not rows:
        return
    table = Table("workbook", "language", *SUMMARY_KINDS, "missing", "stale",
                  title="Translations (translated/total)")
    for r in rows:
        cells = [f"{r.counts[k][0]}/{sum(r.counts[k][:2])}" if k in r.counts else "–"
                 for k in SUMMARY_KINDS]
        _, missing, stale = r.total()
        table.add_row(Path(r.file).name, r.language + (" (draft)" if r.draft else ""), *cells,
                      str(missing), str(stale))
    console.print(table)


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


@country_app.command("new")
@friendly_errors
def country_new(
    iso: Annotated[str, typer.Argument(help="ISO 3166 alpha-3 code, e.g. KHM.")],
    name: Annotated[str, typer.Option(help="The country's name in English.")],
    code: Annotated[int, typer.Option(help="ISO 3166 numeric code, e.g. 116.")],
    language: Annotated[list[str], typer.Option(
        help="An interview language as the workbook column names it, e.g. 'Khmer (km)' "
        "(repeatable).")],
    release_language: Annotated[str, typer.Option(help="Language of the released labels.")]
    = "English (en)",
    instruments: Annotated[Path, typer.Option(help="Instruments folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Scaffold countries/<ISO>.yaml with every key documented, and add the country to the
    forms' attached files."""
    from dhsurvey.fieldwork.scaffold import new_country

    path = new_country(instruments, iso, name, code, language, release_language)
    console.print(f"wrote {path}")
    _write_media(instruments)
    console.print(f"Next: replace the placeholders in {path}, run `dhsurvey country media`, "
                  f"then `dhsurvey lint {instruments}`.")


@country_app.command("media")
@friendly_errors
def country_media(
    instruments: Annotated[Path, typer.Option(help="Instruments folder.")] = DEFAULT_INSTRUMENTS,
) -> None:
    """Write the forms' attached files (countries, regions, schools, education) from the
    country files."""
    _write_media(instruments)


def _write_media(instruments: Path) -> None:
    from dhsurvey.fieldwork.config import load_countries, write_attachments

    models = list(_models(instruments).values())
    configs = load_countries(instruments, models, attachments=False)
    for path in write_attachments(instruments, configs, models):
        console.print(f"wrote {path}")


@app.command()
@friendly_errors
def diff(
    old: Path,
    new: Path,
    format: Annotated[str, typer.Option(
        "--format", help="text (one line a change) or md (a Markdown change log, e.g. for an "
        "ethics amendment).")] = "text",
) -> None:
    """Semantic changes between two versions of a workbook (fields, wording, options, logic)."""
    from dhsurvey.forms.diff import diff_files

    if format not in ("text", "md"):
        raise DhsurveyError(f"unknown format {format!r}: use text or md", code="usage")
    if format == "md":
        from dhsurvey.forms.changelog import changelog_files

        console.print(changelog_files(old, new), markup=False, soft_wrap=True, end="")
        return
    changes = diff_files(old, new)
    for change in changes:
        console.print(str(change), soft_wrap=True, markup=False)
    console.print(f"{len(changes)} change(s)")


@app.command("print")
@friendly_errors
def print_questionnaire(
    forms: Annotated[list[str] | None, typer.Argument(
        metavar="[FORM]...", help="Form ids or workbook paths (default: every instrument).")] =
        None,
    out: Annotated[Path, typer.Option(help="Folder for the HTML and PDF files.")] =
        Path("printed"),
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
        DEFAULT_INSTRUMENTS,
    country: Annotated[str | None, typer.Option(
        help="Print the languages this country (ISO code) interviews and releases in.")] = None,
    language: Annotated[list[str] | None, typer.Option(
        help="A language to print, by name or code (repeatable). Default: all of a "
        "workbook's languages when it has at most three, else its default language.")] = None,
) -> None:
    """A readable questionnaire per form (HTML and PDF, languages side by side) for ethics
    boards and translators."""
    from dhsurvey.forms.model import load_form
    from dhsurvey.forms.printing import print_form

    if forms:
        by_id: dict | None = None
        models = []
        for form in forms:
            if form.endswith(".xlsx") or Path(form).is_file():
                models.append(load_form(form))
                continue
            by_id = by_id if by_id is not None else _models(instruments)
            if form not in by_id:
                raise DhsurveyError(f"no form {form!r} in the instruments (known: "
                                    f"{', '.join(sorted(by_id))})", code="usage",
                                    file=instruments)
            models.append(by_id[form])
    else:
        models = list(_models(instruments).values())
    wanted, suffix, code = list(language or []), "", None
    if country:
        (config,) = _configs(instruments, {m.form_id: m for m in models}, [country.upper()])
        wanted, suffix = [*config.languages, config.release_language], f".{config.iso}"
        code = str(config.code)
    elif wanted:
        suffix = "." + "-".join(w.strip().lower() for w in wanted)
    missing_pdf = []
    for model in models:
        columns = model.languages_named(wanted) if wanted else (
            model.languages if len(model.languages) <= 3 else [model.default_language])
        if wanted and not columns:
            raise DhsurveyError(f"{model.path.name} has none of {wanted} (languages: "
                                f"{', '.join(model.languages)})", code="usage", file=model.path)
        printed = print_form(model, out, languages=columns, suffix=suffix, country=code)
        console.print(f"wrote {printed.html}", soft_wrap=True, markup=False)
        if printed.pdf is not None:
            console.print(f"wrote {printed.pdf}", soft_wrap=True, markup=False)
        else:
            missing_pdf.append(printed)
    if missing_pdf:
        err_console.print(f"[yellow]no PDF[/] {escape(missing_pdf[0].note)}", soft_wrap=True)


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
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes (but for the "
                                           "RSA-OAEP values of encrypted manifests).")] = 0,
    households: Annotated[int | None, typer.Option(
        help="Approximate households per country (default: the configured design).")] = None,
    faults: Annotated[str | None, typer.Option(
        help="Fault kinds to plant: 'all' or a comma list (see docs).")] = None,
    formats: Annotated[str, typer.Option(help="Comma list of central, kobo, xml.")] =
    "central,kobo,xml",
    public_key: Annotated[Path | None, typer.Option(
        help="PEM public key: encrypt the XML instances as ODK Collect does.")] = None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
    dry_run: Annotated[Path | None, typer.Option(
        "--dry-run", help="A workbook to try out alone (no country file): simulate --n "
        "interviews, write them as CSV to OUT and print how often each question was "
        "reached.")] = None,
    n: Annotated[int, typer.Option("--n", help="Interviews of a --dry-run.", min=1)] = 200,
    even: Annotated[bool, typer.Option(
        "--even", help="--dry-run: draw every choice equally often (as lint's reachability "
        "check does), so rare branches are taken too.")] = False,
) -> None:
    """Simulate fieldwork from the forms' own logic and write it as the servers export it;
    or (--dry-run) try out one workbook."""
    from dhsurvey.fieldwork.faults import parse_faults
    from dhsurvey.fieldwork.run import FORMATS, simulate_to

    if dry_run is not None:
        if country or households or faults or public_key:
            raise DhsurveyError("--dry-run simulates one workbook on its own: --country, "
                                "--households, --faults and --public-key do not apply",
                                code="cli")
        _dry_run(dry_run, out, n=n, seed=seed, even=even)
        return

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


def _dry_run(path: Path, out: Path, *, n: int, seed: int, even: bool) -> None:
    """Simulate ``n`` interviews of one workbook, write them (one CSV per table, with
    ``reached.csv`` and ``gave_up.csv``) and print how often each question was reached."""
    from dhsurvey.fieldwork.answers import dry_run
    from dhsurvey.forms.model import load_form

    model = load_form(path)
    with console.status(f"Simulating {n} interviews of {path.name}…"):
        run = dry_run(model, n, seed=seed, uniform=even)
    tables = run.write(out)
    table = Table("row", "question", "type", "reached", "%",
                  title=f"{path.name}: questions reached in {n} simulated interviews")
    for r in run.reach_table().to_dict("records"):
        count = int(r["reached"])
        table.add_row(str(r["row"]), str(r["name"]), str(r["type"]),
                      f"[red]{count}[/]" if count == 0 else str(count),
                      f"{100 * count / n:.0f}")
    console.print(table)
    for g in run.gave_up:
        console.print(f"[yellow]gave up[/] {escape(str(g))}", soft_wrap=True)
    console.print(f"{len(tables)} table(s), reached.csv and gave_up.csv in {escape(str(out))}")


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
    data_docs: Annotated[bool, typer.Option(
        "--data-docs", help="Also check the accepted tables with Great Expectations and write "
                            "its Data Docs (what the schema enforced, seen again; about 10 s "
                            "more for a country).")] = False,
) -> None:
    """Validate and link forms; write accepted/quarantine/flags per form, HFC tables, report.

    Exits 0 when rows were quarantined (the normal case); non-zero only when it could not run.
    """
    from dhsurvey.validate.corrections import read_corrections
    from dhsurvey.validate.disclosure import LISTINGS
    from dhsurvey.validate.run import validate_exports

    models = _models(instruments)
    configs = _configs(instruments, models)
    log = read_corrections(corrections) if corrections else None
    with console.status("Validating…"):
        result = validate_exports(exports, models, configs, out, country=country, forms=form,
                                  corrections=log, private_key_pem=_read_pem(key, "private key"),
                                  expectations=data_docs)
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
                  f"quality tables in {out / 'quality'}; report {out / 'report.html'} "
                  f"(restricted listings behind it in {out / LISTINGS})"
                  + (f"; Great Expectations Data Docs {out / 'data_docs' / 'index.html'}"
                     if data_docs else ""), soft_wrap=True)


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
    from dhsurvey.fieldwork.config import load_plan
    from dhsurvey.validate.backcheck import run_backcheck

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
    draft: Annotated[bool, typer.Option(
        "--draft", help="Upload as a draft only, to test on devices before publishing.")] =
    False,
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
    version = publish_form(compiled, attachments=attachment or (), project_id=project,
                           draft_only=draft)
    if draft:
        console.print(f"Uploaded {form} version {version} as a draft (test it in Collect with "
                      "the draft's QR code; publish without --draft)")
    else:
        console.print(f"Published {form} version {version}")


@app.command()
@friendly_errors
def fetch(
    form: Annotated[list[str] | None, typer.Option(help="form_id (repeatable); default all.")] =
    None,
    out: Annotated[Path, typer.Option(
        help="Data root; submissions go to OUT/landing/<ISO>/central-api/.")] = DEFAULT_DATA,
    project: Annotated[int | None, typer.Option(help="Central project id.")] = None,
    instruments: Annotated[Path, typer.Option(help="Instrument folder.")] = DEFAULT_INSTRUMENTS,
    key: Annotated[Path | None, typer.Option(
        help="Private key (PEM) for self-managed encryption; default $DHSURVEY_PRIVATE_KEY.")]
    = None,
) -> None:
    """Fetch new submissions from ODK Central (pyodk config), incrementally, into
    OUT/landing/<ISO>/central-api/, where `dhsurvey run` and the pipeline ingest them.

    Central-managed encryption: set $DHSURVEY_CENTRAL_PASSPHRASE. Self-managed encryption:
    the submissions are downloaded to OUT/landing/central/encrypted/ and decrypted with the
    private key."""
    from dhsurvey.store import Store
    from dhsurvey.study import Study, fetch_central

    study = Study.load(instruments)
    unknown = [f for f in form or [] if f not in study.models]
    if unknown:
        raise DhsurveyError(f"no instrument for form(s) {unknown}", code="config-missing",
                            file=instruments)
    store = Store(out)
    private_key = _read_pem(key, "private key")
    for name, n in fetch_central(store, study, form, project=project,
                                 private_key=private_key).items():
        if name.startswith("encrypted/"):
            where = store.central_state() / name / "pending"
            console.print(f"{name}: {n} submission(s) kept encrypted in {where} (no private "
                          "key: pass --key or set DHSURVEY_PRIVATE_KEY)", soft_wrap=True)
        else:
            console.print(f"{name}: {n} new submission(s)")


@app.command()
@friendly_errors
def run(
    countries: Annotated[list[str], typer.Argument(
        help="ISO codes of the countries (their country files); several run side by side.")],
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
    DEFAULT_INSTRUMENTS,
    data: Annotated[Path, typer.Option(help="Data root (landing/<ISO> in, release/<ISO> out).")]
    = DEFAULT_DATA,
    batch_households: Annotated[int | None, typer.Option(
        help="Validate in batches of this many sampled households (whole PSUs); default: "
             "whole up to 100,000 households, else batches of 30,000.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Countries run at once (default: all when they outnumber the cores by at "
             "most one, else one per core).")] = None,
) -> None:
    """Run countries from DATA/landing/<ISO> to DATA/release/<ISO>.

    Ingest every export, validate, weight, anonymise and release (with the indicators
    estimated from the released files), as the Dagster country job does; several countries
    run at once. The pseudonym key comes from $DHSURVEY_PSEUDONYM_KEY and, for
    encrypted submissions, the private key's path from $DHSURVEY_PRIVATE_KEY. Exit 1 when a
    disclosure gate blocks a release.
    """
    from dhsurvey.anonymise.pseudonym import load_key
    from dhsurvey.store import Store
    from dhsurvey.study import Study, run_countries, run_country

    isos = list(dict.fromkeys(c.upper() for c in countries))
    study = Study.load(instruments)
    for iso in isos:
        study.config(iso)
    key = load_key()
    private = os.environ.get("DHSURVEY_PRIVATE_KEY")
    pem = _read_pem(Path(private), "private key") if private else None
    store = Store(data)
    blocked = False
    if len(isos) == 1:
        iso = isos[0]
        after = {"ingest": "Validating", "validate": "Computing weights",
                 "weight": "Anonymising, releasing and estimating the indicators",
                 "indicators": "Writing the fieldwork report"}
        with console.status(f"{iso}: reading the exports…") as status:
            result = run_country(store, study, iso, key=key, private_key=pem,
                                 batch_households=batch_households,
                                 on_step=lambda name: status.update(
                                     f"{iso}: {after.get(name, name)}…"))
        blocked = _print_run(iso, result, store)
    else:
        with console.status(f"Running {', '.join(isos)}, {_workers(workers, len(isos))} at "
                            "a time…"):
            for iso, result in run_countries(store, study, isos, key=key, private_key=pem,
                                             batch_households=batch_households,
                                             workers=workers):
                blocked = _print_run(iso, result, store) or blocked
    if blocked:
        raise typer.Exit(1)


def _workers(asked: int | None, countries: int) -> int:
    from dhsurvey.parallel import workers_for_countries

    return workers_for_countries(countries, asked)


def _print_run(iso: str, result: Any, store: Any) -> bool:
    """A country's run as tables: reconciliation, each tier's gate, the indicators; whether
    a gate blocked."""
    import pandas as pd

    table = Table("form", "received", "accepted", "quarantined", "duplicates", "flagged",
                  title=f"{iso}: validated in {result.validated.batches} batch(es)")
    for form, rec in result.validated.reconciliation.items():
        table.add_row(form, *(str(rec[c]) for c in ("raw", "accepted", "quarantined",
                                                     "duplicates", "flagged")))
    console.print(table)
    released = result.release
    blocked = False
    for name, tier in (released.tiers or {"public": released}).items():
        console.print(f"{name.capitalize()} tier: {len(tier.files)} files in {tier.folder}",
                      soft_wrap=True)
        if tier.gate.passed:
            console.print("  disclosure gate (k and l among respondents on linked keys, "
                          "suppression budget, global risk, design variables, file scan): "
                          "passed.", soft_wrap=True)
        else:
            blocked = True
            console.print("  [bold red]disclosure gate: blocked[/] — do not publish: "
                          + escape("; ".join(tier.gate.reasons)), soft_wrap=True)
    overall = result.indicators[result.indicators["domain"] == "all"]
    if len(overall):
        estimates = Table("indicator", "estimate", "95 % CI (logit, design df)", "n",
                          title=f"{iso}: indicators of the public-use files (indicators.csv)")
        for r in overall.to_dict("records"):
            low, high = float(r["ci_low"]), float(r["ci_high"])
            ci = "–" if pd.isna(low) else f"{low:.1%} – {high:.1%}"
            estimates.add_row(str(r["indicator"]), f"{float(r['estimate']):.1%}", ci,
                              str(r["n"]))
        console.print(estimates)
    console.print(f"Restricted mappings in {store.restricted(iso)}", soft_wrap=True)
    return blocked


if __name__ == "__main__":  # pragma: no cover
    app()
