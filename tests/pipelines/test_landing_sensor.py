"""The landing folder as a data manager meets it in Dagster: one run per country at a time on
the real run queue, a warning that names a renamed download, a failure that names the file."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipelines.cli import write_instance_settings
from pipelines.defs.ingest.assets import landing, raw_assets
from pipelines.resources import COUNTRY_TAG, INSTANCE_SETTINGS, Secrets, StudyPaths

ISO = "KEN"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated country's ODK Central exports (simulated once for the module)."""
    from dhsurvey.fieldwork.run import simulate_to
    from pipelines.study import config_for, models

    out = tmp_path_factory.mktemp("landing")
    simulate_to(out, [config_for(ISO)], models(), seed=2, households=30, formats=("central",))
    return out / ISO


@pytest.fixture
def data(tmp_path: Path, exports: Path) -> Path:
    shutil.copytree(exports, tmp_path / "landing" / ISO)
    return tmp_path


def _materialize(data: Path, form: str) -> dg.ExecuteInProcessResult:
    raw = next(a for a in raw_assets if a.key == dg.AssetKey(f"raw_{form}"))
    return dg.materialize([landing, raw], partition_key=ISO, raise_on_error=False,
                          resources={"paths": StudyPaths(data_root=str(data)),
                                     "secrets": Secrets()})


def test_a_renamed_download_is_named_in_a_warning(data: Path) -> None:
    central = data / "landing" / ISO / "central"
    shutil.copy(central / "household.csv.zip", central / "household (1).csv.zip")
    result = _materialize(data, "household")
    assert result.success  # the run goes on with what it recognises, but not silently green
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "recognised"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["files"].value == ["central/household (1).csv.zip"]
    assert check.description is not None and check.description.startswith(
        "not recognised: central/household (1).csv.zip — an ODK Central export must be named "
        "<form_id>.csv.zip")
    (mat,) = result.asset_materializations_for_node("landing")
    assert mat.metadata["not recognised"].value == 1
    assert "central/household.csv.zip" in mat.metadata["exports"].value


def test_a_truncated_zip_fails_with_the_file_first(data: Path) -> None:
    export = data / "landing" / ISO / "central" / "child.csv.zip"
    export.write_bytes(export.read_bytes()[: export.stat().st_size // 2])  # still copying
    result = _materialize(data, "child")
    assert not result.success
    (failure,) = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and user.description is not None
    assert user.description.startswith(f"{ISO} central/child.csv.zip")
    assert "zip" in user.description[len(f"{ISO} central/child.csv.zip"):]
    assert user.metadata["file"].value == "central/child.csv.zip"
    assert str(data) not in user.description  # relative to the landing folder
    assert "Traceback" not in user.description


def test_a_file_still_copying_fails_the_landing_step(data: Path) -> None:
    (data / "landing" / ISO / "central" / "caregiver.csv.zip.crdownload").write_bytes(b"PK")
    result = _materialize(data, "caregiver")
    (failure,) = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and user.description == (
        f"{ISO} landing is still being copied: central/caregiver.csv.zip.crdownload")


# --------------------------------------------------------------------------- the run queue


@pytest.fixture
def queued_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An instance with the settings ``dhsurvey ui`` writes, its runs launched by a mock."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    home = tmp_path / "dagster_home"
    assert write_instance_settings(home) is None
    settings = yaml.safe_load((home / "dagster.yaml").read_text())
    overrides = {**settings, "run_launcher": {"module": "dagster._core.test_utils",
                                              "class": "MockedRunLauncher"}}
    with dg.instance_for_test(overrides=overrides) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        yield instance


def _dequeue(instance: dg.DagsterInstance) -> set[str]:
    """One pass of the daemon that launches queued runs; the ids launched so far."""
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as context:
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))
    return {run.run_id for run in instance.run_launcher.queue()}  # type: ignore[attr-defined]


def test_one_run_per_country_at_a_time(queued_instance: dg.DagsterInstance) -> None:
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    # Where a queued run comes from (the mock launcher loads no code from it).
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(
        RegisteredCodeLocationOrigin("pipelines.definitions"), "__repository__"), "country_job")

    def queued(tags: dict[str, str]) -> str:
        return create_run_for_test(queued_instance, job_name="country_job", tags=tags,
                                   status=DagsterRunStatus.QUEUED,
                                   remote_job_origin=origin).run_id

    # The sensor's run of KEN, a run of KEN launched from the UI (only Dagster's partition
    # tag), and the sensor's run of UGA.
    ken_sensor = queued({COUNTRY_TAG: "KEN", "dagster/partition": "KEN"})
    ken_ui = queued({"dagster/partition": "KEN"})
    uga = queued({COUNTRY_TAG: "UGA", "dagster/partition": "UGA"})
    assert _dequeue(queued_instance) == {ken_sensor, uga}
    assert _dequeue(queued_instance) == {ken_sensor, uga}  # KEN's second waits
    run = queued_instance.get_run_by_id(ken_sensor)
    assert run is not None
    queued_instance.report_run_failed(run)  # KEN's first run ends
    assert _dequeue(queued_instance) == {ken_sensor, uga, ken_ui}


def test_ui_writes_the_run_limits_but_not_over_a_users_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("nux:\n  enabled: false\ntelemetry:\n  enabled: false\n")
    assert write_instance_settings(home) is None  # the demo's file: completed
    assert yaml.safe_load((home / "dagster.yaml").read_text()) == INSTANCE_SETTINGS
    own = "run_monitoring:\n  enabled: true\n"
    (home / "dagster.yaml").write_text(own)
    warning = write_instance_settings(home)
    assert warning and "may overlap" in warning
    assert (home / "dagster.yaml").read_text() == own  # never clobbered
    (home / "dagster.yaml").write_text(own + "run_queue:\n  tag_concurrency_limits:\n"
                                       "  - key: dagster/partition\n    value:\n"
                                       "      applyLimitPerUniqueValue: true\n    limit: 1\n")
    assert write_instance_settings(home) is None


def test_ui_names_a_broken_dagster_yaml_instead_of_a_traceback(tmp_path: Path,
                                                              monkeypatch) -> None:
    from typer.testing import CliRunner

    from dhsurvey.cli import app

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency: [unclosed\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 2
    assert "dagster-settings" in result.output and "dagster.yaml" in result.output
    assert "Traceback" not in result.output


#: Python that sets SIGTERM aside, as a process that does not stop when asked.
DEAF = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "


@pytest.mark.parametrize("deaf, code", [("leader", -signal.SIGKILL), ("child", -signal.SIGTERM)])
def test_ui_kills_what_of_dagster_devs_group_ignores_sigterm(monkeypatch, deaf: str,
                                                             code: int) -> None:
    """dhsurvey ui stops dagster dev's process group with SIGTERM; whatever of it still runs
    after the grace period, dagster dev itself or a process it started (a code server still
    loading), is killed, so nothing lives on as an orphan."""
    import subprocess
    import sys
    import time

    from pipelines import cli

    monkeypatch.setattr(cli, "STOP_GRACE", 1)
    child = f"{DEAF if deaf == 'child' else ''}import time; time.sleep(60)"
    leader = subprocess.Popen(
        [sys.executable, "-c", f"{DEAF if deaf == 'leader' else ''}import subprocess, sys, "
         f"time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"],
        start_new_session=True)
    deadline = time.monotonic() + 10
    while len(cli.group_members(leader.pid) or []) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the deaf one has set SIGTERM aside
    assert len(cli.group_members(leader.pid) or []) == 2
    started = time.monotonic()
    assert cli._stop_group(leader) == code
    assert time.monotonic() - started >= 0.9  # the deaf one had its grace, then was killed
    deadline = time.monotonic() + 5
    while cli.group_members(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli.group_members(leader.pid) == []
