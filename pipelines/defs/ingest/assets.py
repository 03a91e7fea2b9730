"""Raw tables: one asset per form, partitioned by country, with a blocking schema check."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from dhsurvey.study import ingest_form
from dhsurvey.validate.schema import build_schema
from dhsurvey.validate.types import to_typed
from pipelines.defs.forms.assets import compiled_forms
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import country_partitions, models, study


def _raw_asset(form_id: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{form_id}",
        group_name="raw",
        partitions_def=country_partitions,
        deps=[compiled_forms],
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec("structure", asset=f"raw_{form_id}", blocking=True,
                                       description="columns of the form present, instanceID "
                                                   "unique, every value typed or reported")],
        description=f"Submissions of '{form_id}' from every export in landing/<ISO>/, "
                    "combined into canonical tables (restricted zone).",
    )
    def raw_form(context: dg.AssetExecutionContext, paths: StudyPaths,
                 secrets: Secrets) -> Iterator:
        got = ingest_form(paths.store, study(), context.partition_key, form_id,
                          private_key=secrets.private_key())
        raw, model = got.raw, models()[form_id]
        yield dg.MaterializeResult(
            asset_key=f"raw_{form_id}",
            metadata={
                "dagster/row_count": len(raw.root),
                "exports": len(got.exports),
                "repeat rows": {n: len(t) for n, t in raw.repeats.items()},
                "ingest quarantine": len(raw.quarantine),
                "form version": model.version,
                "path": dg.MetadataValue.path(str(got.paths[0])),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(c, "string") for c in raw.root.columns]),
            },
        )
        yield _structure_check(form_id, raw, model)

    return raw_form


def _structure_check(form_id: str, raw, model) -> dg.AssetCheckResult:
    """Blocking: the table must be one validation can run on. Row-level failures are normal
    fieldwork (quarantined later) and only counted here."""
    expected = {f.name for f in model.fields_in(None)}
    missing = sorted(expected - set(raw.root.columns)) if len(raw.root) else []
    typed, type_errors = to_typed(raw.root, model) if len(raw.root) else (raw.root, [])
    failures = build_schema(raw.to_form_data(model)).failures(
        typed.set_index("KEY", drop=False)) if len(raw.root) else pd.DataFrame()
    duplicate_keys = int(raw.root["KEY"].duplicated().sum()) if len(raw.root) else 0
    passed = not missing and duplicate_keys == 0
    by_rule = failures.groupby("rule").size().sort_values(ascending=False).head(8) \
        if len(failures) else pd.Series(dtype=int)
    return dg.AssetCheckResult(
        asset_key=f"raw_{form_id}", check_name="structure", passed=passed,
        metadata={
            "missing columns": ", ".join(missing) or "none",
            "duplicate instanceIDs": duplicate_keys,
            "type errors": len(type_errors),
            "row-level schema failures": len(failures),
            "failures by rule": dg.MetadataValue.md(
                "| rule | cells |\n|---|---|\n" + "\n".join(
                    f"| {k} | {v} |" for k, v in by_rule.items()) if len(by_rule) else "none"),
        },
    )


raw_assets = [_raw_asset(form_id) for form_id in models()]
