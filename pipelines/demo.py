"""Run the whole pipeline in-process for every country, recorded in DAGSTER_HOME.

``dhsurvey demo`` calls this after simulating fieldwork, so the demo goes through the same
assets and checks a data manager runs — and the Dagster UI afterwards (same DAGSTER_HOME)
shows the materialisations, checks and metadata of that run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def write_dagster_home(home: Path) -> Path:
    """Create DAGSTER_HOME with the study's instance settings: nux and telemetry off (else a
    pop-up covers the UI), one run per country at a time for runs the UI launches later."""
    import yaml

    from dhsurvey.io import atomic_write_text
    from pipelines.resources import INSTANCE_SETTINGS

    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        atomic_write_text(config, yaml.safe_dump(INSTANCE_SETTINGS, sort_keys=False))
    return config


@contextmanager
def in_env(variable: str, value: str | None) -> Iterator[None]:
    """``value`` as environment variable ``variable`` for the block, the variable as it was
    afterwards; nothing changes when ``value`` is None."""
    import os

    previous = os.environ.get(variable)
    if value is not None:
        os.environ[variable] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


def key_in_env(variable: str, path: Path | None) -> Any:
    """The key in the file at ``path`` as environment variable ``variable`` for the block."""
    return in_env(variable, path.read_text().strip() if path is not None else None)


def run_pipeline(instruments: Path, data: Path, dagster_home: Path, countries: list[str], *,
                 private_key: Path | None = None, pseudonym_key: Path | None = None,
                 at_rest_key: Path | None = None,
                 step: Callable[[str], None] = lambda _: None) -> None:
    """Materialise the compiled forms, then each country's partition of ``country_job``.

    ``pseudonym_key``, ``at_rest_key``: files holding the demo's throwaway keys; each is put
    in the environment variable the pipeline reads (``DHSURVEY_PSEUDONYM_KEY``,
    ``DHSURVEY_AT_REST_KEY``), as a real deployment would, never in resource config.
    """
    from dhsurvey.io import AT_REST_KEY_ENV

    with key_in_env("DHSURVEY_PSEUDONYM_KEY", pseudonym_key), \
            key_in_env(AT_REST_KEY_ENV, at_rest_key), instruments_in_env(instruments):
        _run(instruments, data, dagster_home, countries, private_key, step)


@contextmanager
def instruments_in_env(folder: Path) -> Iterator[None]:
    """The code location reads the study (forms, countries, disclosure rules) from
    ``DHSURVEY_INSTRUMENTS``: point it at ``folder`` for the run, as a deployment would."""
    with in_env("DHSURVEY_INSTRUMENTS", str(folder)):
        # Imported here, once the variable is set: the code location derives its country
        # partitions from the instruments when first imported.
        from pipelines import study

        study.study.cache_clear()
        try:
            yield
        finally:
            study.study.cache_clear()


def _run(instruments: Path, data: Path, dagster_home: Path, countries: list[str],
         private_key: Path | None, step: Callable[[str], None]) -> None:
    import os

    import dagster as dg

    from pipelines.definitions import build_defs
    from pipelines.reports import DEFAULT_REPORTS_URL, REPORTS_URL_ENV
    from pipelines.resources import Secrets, StudyPaths

    write_dagster_home(dagster_home)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    # Links in metadata point where `dhsurvey ui` serves the reports (its default port + 1).
    reports = os.environ.get(REPORTS_URL_ENV, DEFAULT_REPORTS_URL)
    defs = build_defs(StudyPaths(instruments=str(instruments), data_root=str(data),
                                 reports_url=reports),
                      Secrets(private_key_path=str(private_key) if private_key else None))
    step("Dagster: compiling forms")
    if not defs.resolve_job_def("forms_job").execute_in_process(
            instance=instance, run_config=QUIET).success:
        raise RuntimeError("compiling the forms failed")
    step(f"Dagster: {', '.join(countries)} — ingest, validate, weight, anonymise, release")
    for iso, success in run_countries(defs, dagster_home, countries):
        if not success:
            raise RuntimeError(f"the pipeline failed for {iso}")
        step(f"Dagster: {iso} released")
    if len(countries) > 1:
        step("Dagster: pooled release of " + ", ".join(countries))
        if not defs.resolve_job_def("pooled_job").execute_in_process(
                instance=instance, run_config=QUIET).success:
            raise RuntimeError("the pooled release failed")


def run_countries(defs: Any, dagster_home: Path, countries: list[str],
                  workers: int | None = None) -> Iterator[tuple[str, bool]]:
    """Each country's partition of ``country_job``, in-process, several countries at once:
    (ISO, success) as each run ends.

    Countries share nothing until the pooled release, so ``workers`` forked processes
    (default: :func:`~dhsurvey.parallel.workers_for_countries`) each run one country's job at
    a time, recorded in the same DAGSTER_HOME as separate runs, as the UI shows runs a data
    manager launched side by side."""
    from functools import partial

    from dhsurvey.parallel import forked_map, workers_for_countries
    from pipelines.study import config_for

    yield from forked_map(partial(_country_run, defs, dagster_home), countries,
                          workers=workers_for_countries(len(countries), workers), as_done=True,
                          size=lambda iso: config_for(iso).households)


def _country_run(defs: Any, dagster_home: Path, iso: str) -> bool:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    result = defs.resolve_job_def("country_job").execute_in_process(
        partition_key=iso, instance=instance, run_config=QUIET)
    return bool(result.success)
