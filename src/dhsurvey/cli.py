"""``dhsurvey`` command line: parses arguments, calls the library, shows progress and results.

Library errors (:class:`DhsurveyError`) are printed as one readable block naming file, sheet,
row and column, and the command exits with status 2 — never a traceback for bad input.
"""

from __future__ import annotations

import functools
import json
import os
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
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

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


@app.command()
@friendly_errors
def demo(
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
    DEFAULT_INSTRUMENTS,
    out: Annotated[Path, typer.Option(help="Data root.")] = DEFAULT_DATA,
) -> None:
    """Run the study end to end on synthetic data and summarise the result."""
    from dhsurvey.forms.compile import build as build_forms
    from dhsurvey.forms.lint import ERROR, lint_paths

    with console.status("Linting instruments…"):
        findings = lint_paths([instruments], validate=False)
    errors = [f for f in findings if f.severity == ERROR]
    console.print(f"Lint: {len(errors)} error(s), {len(findings) - len(errors)} warning(s) "
                  f"in {instruments}/")
    for f in errors:
        console.print(f"  {f.location()}: {f.rule}: {f.message}", soft_wrap=True, markup=False)
    with console.status("Compiling instruments with pyxform and ODK Validate…"):
        compiled = build_forms(instruments, out / "build")
    table = Table("form", "version", "questions", "fields", "repeats", "languages",
                  title="Instruments")
    for c in compiled:
        m = c.model
        table.add_row(m.form_id, m.version, str(len(m.questions)), str(len(m.fields)),
                      ", ".join(r.name for r in m.repeats) or "-", ", ".join(m.languages))
    console.print(table)
    console.print(f"XForms and manifest in {out / 'build' / 'forms'}")
    if errors:
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
    import sys

    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DATA / "dagster_home").resolve()
    write_dagster_home(home)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
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
