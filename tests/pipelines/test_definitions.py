"""The Dagster code location loads, and the instruments asset materialises in-process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from workbooks import write_workbook

from pipelines.defs.forms.assets import compiled_forms, instruments_lint_clean
from pipelines.resources import StudyPaths


def test_code_location_loads() -> None:
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("compiled_forms") in graph.get_all_asset_keys()


def test_compiled_forms_materialises(tmp_path: Path) -> None:
    write_workbook(tmp_path / "instruments" / "t.xlsx")
    paths = StudyPaths(instruments=str(tmp_path / "instruments"),
                       data_root=str(tmp_path / "data"))
    result = dg.materialize([compiled_forms, instruments_lint_clean],
                            resources={"paths": paths}, raise_on_error=True)
    assert result.success
    (mat,) = result.asset_materializations_for_node("compiled_forms")
    versions = {r.data["form"]: r.data["version"] for r in mat.metadata["versions"].records}
    assert list(versions) == ["test_form"] and versions["test_form"]
    assert (tmp_path / "data" / "build" / "forms" / "test_form.xml").exists()
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    assert check.metadata["errors"].value == 0


def test_great_expectations_is_off_the_release_path() -> None:
    """``country_job`` (ingest to release) holds no Great Expectations step; its own job does,
    and the sensor after a successful country run asks for that country's partition."""
    from pipelines.definitions import defs
    from pipelines.defs.validate.expectations import expectations_after_country

    country = defs.resolve_job_def("country_job")
    assert dg.AssetKey("expectations") not in country.asset_layer.selected_asset_keys
    assert dg.AssetKey("release") in country.asset_layer.selected_asset_keys
    ge = defs.resolve_job_def("expectations_job")
    assert ge.asset_layer.selected_asset_keys == {dg.AssetKey("expectations")}
    instance = dg.DagsterInstance.ephemeral()

    def request(job_name: str, tags: dict[str, str]) -> object:
        run = dg.DagsterRun(job_name=job_name, run_id="r1", tags=tags)
        context = dg.build_run_status_sensor_context(
            sensor_name="expectations_after_country", dagster_instance=instance,
            dagster_run=run, dagster_event=dg.DagsterEvent(
                event_type_value="PIPELINE_SUCCESS", job_name=job_name))
        return expectations_after_country(context)

    asked = request("country_job", {"dagster/partition": "KEN"})
    assert isinstance(asked, dg.RunRequest) and asked.partition_key == "KEN"
    assert isinstance(request("pooled_job", {}), dg.SkipReason)
