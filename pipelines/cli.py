"""The ``dhsurvey`` command: the library's commands plus those that run the Dagster code
location (``demo``, ``ui``).

Why here: the library (``dhsurvey``) knows nothing of Dagster; the console script is assembled
in the code location, which imports Dagster only when one of its commands runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from dhsurvey.cli import DEFAULT_DATA, DEFAULT_INSTRUMENTS, app, console, friendly_errors
from dhsurvey.errors import DhsurveyError
from dhsurvey.io import load_yaml


@app.command()
@friendly_errors
def demo(
    instruments: Annotated[Path, typer.Option(help="Folder of XLSForm workbooks.")] =
    DEFAULT_INSTRUMENTS,
    out: Annotated[Path, typer.Option(help="Data root.")] = DEFAULT_DATA,
    households: Annotated[int | None, typer.Option(
        help="Households per country (default: each country's design).")] = None,
    countries: Annotated[str, typer.Option(
        help="Comma-separated ISO codes, or 'all' for the whole wave.")] = "KEN,TZA,UGA",
) -> None:
    """Simulate countries (three by default, `--countries all` every configured one) and run
    the Dagster pipeline on them, each through its own path and all into the pooled release;
    summarise the result."""
    from dhsurvey.demo import dagster_home, demo_countries, prepare_demo, summarise
    from dhsurvey.io import AT_REST_KEY_ENV
    from pipelines.demo import key_in_env, run_pipeline

    with console.status("Starting…") as status:
        def step(text: str) -> None:
            status.update(text + "…")

        prepared = prepare_demo(instruments, out, households=households, step=step,
                                countries=demo_countries(countries))
        run_pipeline(instruments.resolve(), out.resolve(), dagster_home(out),
                     prepared.countries, private_key=prepared.private_key.resolve(),
                     pseudonym_key=prepared.pseudonym_key, at_rest_key=prepared.at_rest_key,
                     step=step)
        with key_in_env(AT_REST_KEY_ENV, prepared.at_rest_key):  # the summary reads clean/
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
                    title="Headline indicators (from the public-use files; 95 % logit CIs "
                          "with the design's df)")
        for r in summary.indicators.itertuples():
            ci = "–" if pd.isna(r.ci_low) else f"{r.ci_low:.1%} – {r.ci_high:.1%}"
            ind.add_row(r.country, r.label, f"{r.estimate:.1%}", ci, str(r.n))
        console.print(ind)
    console.print(f"Data zones under {out}/: landing (exports), raw, clean (accepted, "
                  f"quarantine, weights, report.html), release (public-use files: one folder "
                  f"per country, and pooled/ for all countries together), licensed "
                  f"(scientific-use files, the same layout; docs/disclosure.md)",
                  soft_wrap=True)
    console.print(f"Throwaway demo keys in {out / 'secrets'} (restricted; never part of a "
                  f"release). The run is recorded in {dagster_home(out)}: `make ui` shows it; "
                  f"each country's morning view is Catalog → fieldwork_day → Partitions.",
                  soft_wrap=True)
    if prepared.at_rest_key is not None:
        console.print(f"raw/ and clean/ are encrypted at rest with the demo's throwaway key "
                      f"{prepared.at_rest_key.name} (set {AT_REST_KEY_ENV} for a real study).",
                      soft_wrap=True)
    else:
        console.print(f"raw/ and clean/ are encrypted at rest with the key in "
                      f"{AT_REST_KEY_ENV}.", soft_wrap=True)
    if prepared.lint_errors:
        raise typer.Exit(1)


def write_instance_settings(home: Path) -> str | None:
    """Write ``home/dagster.yaml`` with the run limits (one run per country at a time,
    :data:`~pipelines.resources.INSTANCE_SETTINGS`) unless the file is someone's own; returns
    a warning when their own file lacks the limits.

    A file holding nothing but settings this one holds too (the demo's: pop-ups and telemetry
    off) is ours, and completed.
    """
    import yaml

    from dhsurvey.io import atomic_write_text
    from pipelines.resources import INSTANCE_SETTINGS

    config = home / "dagster.yaml"
    if config.exists():
        try:
            current = load_yaml(config.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DhsurveyError(f"not valid YAML ({exc}); fix it or move it away, and "
                                "dhsurvey ui writes the study's settings",
                                code="dagster-settings", file=config) from None
        if not isinstance(current, dict):
            current = {"?": current}
        if _one_run_per_country(current):
            return None
        if any(INSTANCE_SETTINGS.get(key) != value for key, value in current.items()):
            return (f"{config} is your own: runs of one country may overlap unless it limits "
                    f"them (concurrency: runs: tag_concurrency_limits: key dagster/partition, "
                    f"value applyLimitPerUniqueValue, limit 1; README, 'The landing folder').")
    home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config, yaml.safe_dump(INSTANCE_SETTINGS, sort_keys=False))
    return None


def _one_run_per_country(settings: dict) -> bool:
    """Whether instance settings hold a country's runs to one at a time."""
    from pipelines.resources import COUNTRY_TAG

    def at(*keys: str) -> list:
        node: object = settings
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, list) else []

    limits = [*at("concurrency", "runs", "tag_concurrency_limits"),  # today's place
              *at("run_queue", "tag_concurrency_limits"),  # older ones
              *at("run_coordinator", "config", "tag_concurrency_limits")]
    return any(isinstance(limit, dict) and limit.get("key") in ("dagster/partition", COUNTRY_TAG)
               and limit.get("value") == {"applyLimitPerUniqueValue": True}
               and limit.get("limit") == 1 for limit in limits)


@app.command()
@friendly_errors
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 3000,
    workspace: Annotated[Path, typer.Option(help="Dagster workspace file.")] =
    Path("workspace.yaml"),
    reports_port: Annotated[int | None, typer.Option(
        help="Port on 127.0.0.1 of the fieldwork quality reports (default: the UI's + 1).")]
    = None,
) -> None:
    """Start the Dagster UI on 127.0.0.1 with DAGSTER_HOME set and pop-ups/telemetry off, and
    beside it the countries' fieldwork quality reports, which asset metadata links to."""
    import signal
    import subprocess

    from dhsurvey.store import Store
    from pipelines.reports import REPORTS_URL_ENV, serve_reports

    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DATA / "dagster_home").resolve()
    warning = write_instance_settings(home)
    if warning:
        console.print(warning, soft_wrap=True)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    demo_secrets = Store(DEFAULT_DATA).root / "secrets"
    if "DHSURVEY_PRIVATE_KEY" not in env and (demo_secrets / "demo-private.pem").exists():
        env["DHSURVEY_PRIVATE_KEY"] = str((demo_secrets / "demo-private.pem").resolve())
        console.print("Using the demo's throwaway private key (set DHSURVEY_PRIVATE_KEY for a "
                      "real study).")
    if "DHSURVEY_PSEUDONYM_KEY" not in env and (demo_secrets / "demo-pseudonym.key").exists():
        env["DHSURVEY_PSEUDONYM_KEY"] = (demo_secrets / "demo-pseudonym.key").read_text().strip()
        console.print("Using the demo's throwaway pseudonym key (set DHSURVEY_PSEUDONYM_KEY for a "
                      "real study).")
    if "DHSURVEY_AT_REST_KEY" not in env and (demo_secrets / "demo-at-rest.key").exists():
        env["DHSURVEY_AT_REST_KEY"] = (demo_secrets / "demo-at-rest.key").read_text().strip()
        console.print("Using the demo's throwaway key for encryption at rest (set "
                      "DHSURVEY_AT_REST_KEY for a real study).")
    dagster = Path(sys.executable).with_name("dagster")
    if not dagster.exists():
        raise DhsurveyError("Dagster is not installed (pip install 'dhsurvey[pipeline]')",
                            code="pipeline-missing")
    data = Path(env.get("DHSURVEY_DATA") or DEFAULT_DATA)
    reports_port = reports_port or port + 1
    try:
        reports = serve_reports(data, reports_port)
    except OSError as exc:
        raise DhsurveyError(f"cannot serve the reports on 127.0.0.1:{reports_port} ({exc}); "
                            "choose another with --reports-port", code="ui-port") from None
    env[REPORTS_URL_ENV] = f"http://127.0.0.1:{reports_port}"
    cmd = [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    console.print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={home}); fieldwork "
                  f"quality reports on {env[REPORTS_URL_ENV]}; Ctrl-C stops.", soft_wrap=True)
    # dagster dev stops on SIGTERM by handling it as SIGINT. Started from the background of a
    # script or under nohup, this process holds SIGINT ignored, which the child would inherit
    # and dagster dev would then ignore SIGTERM as well; caught here, SIGINT starts at its
    # default in the child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # a service manager's SIGTERM stops the UI as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        raise typer.Exit(_stop_group(proc)) from None
    finally:
        reports.shutdown()


#: Seconds ``dagster dev`` has to stop its webserver, daemon and code servers after SIGTERM
#: before its process group is killed.
STOP_GRACE = 30


def _stop_group(proc: Any) -> int:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL for whatever of the group is
    still running :data:`STOP_GRACE` seconds later, the leader or a process it left behind
    (a code server that outlives dagster dev would otherwise wait out its heartbeat as an
    orphan), so that nothing lives on. Returns the leader's exit code."""
    import signal
    import subprocess
    import time

    deadline = time.monotonic() + STOP_GRACE
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = int(proc.wait(timeout=STOP_GRACE))
    except subprocess.TimeoutExpired:
        console.print(f"dagster dev did not stop within {STOP_GRACE} s of SIGTERM; killed.",
                      soft_wrap=True)
        _kill_group(proc.pid)
        return int(proc.wait())
    while _group_runs(proc.pid):
        if time.monotonic() >= deadline:
            console.print(f"processes dagster dev started were still running {STOP_GRACE} s "
                          "after SIGTERM; killed.", soft_wrap=True)
            _kill_group(proc.pid)
            break
        time.sleep(0.1)
    return code


def group_members(group: int) -> list[int] | None:
    """The processes of process group ``group`` that have not ended (a zombie has: it only
    waits for its parent to reap it), from Linux's /proc; None where there is no /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    found = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _group_runs(group: int) -> bool:
    """Whether process group ``group`` still has a running process (without /proc: whether
    signal 0 reaches one, a zombie included)."""
    members = group_members(group)
    if members is not None:
        return bool(members)
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(group: int) -> None:
    import signal

    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:  # it ended meanwhile
        pass


if __name__ == "__main__":  # pragma: no cover
    app()
