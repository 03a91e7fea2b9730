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
