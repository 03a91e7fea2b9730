"""Raw tables: one asset per form, partitioned by country, with a blocking schema check."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from dhsurvey.ingest.read import read_export
from dhsurvey.ingest.run import split_by_country
from dhsurvey.ingest.store import combine, read_raw, write_raw
from dhsurvey.validate.schema import build_schema
from dhsurvey.validate.types import to_typed
from pipelines.defs.forms.assets import compiled_forms
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import config_for, country_partitions, models


def exports_for(landing: Path, form_id: str) -> list[Path]:
    """Every export of one form in a country's landing folder, in a stable order."""
    found = sorted(landing.glob(f"central/{form_id}.csv.zip"))
    found += sorted(landing.glob(f"kobo/{form_id}*.json"))
    found += [p for p in sorted(landing.glob(f"xml/{form_id}")) if p.is_dir()]
    return found


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
        iso = context.partition_key
        config = config_for(iso)
        model = models()[form_id]
        landing = paths.zone("landing", iso)
        exports = exports_for(landing, form_id)
        parts = []
        for path in exports:
            raw = read_export(path, {form_id: model}, private_key_pem=secrets.private_key())
            parts.extend(split_by_country(raw, {str(config.code): iso}, iso).values())
        api = landing / "central-api"
        if (api / f"{form_id}.parquet").exists():  # pulled by the Central sync job
            parts.append(read_raw(api, form_id))
        raw = combine(parts) if parts else None
        if raw is None:
            from dhsurvey.ingest.canonical import RawForm

            raw = RawForm(form_id, pd.DataFrame(columns=["KEY"]))
        written = write_raw(raw, paths.zone("raw", iso))
        yield dg.MaterializeResult(
            asset_key=f"raw_{form_id}",
            metadata={
                "dagster/row_count": len(raw.root),
                "exports": len(exports),
                "repeat rows": {n: len(t) for n, t in raw.repeats.items()},
                "ingest quarantine": len(raw.quarantine),
                "form version": model.version,
                "path": dg.MetadataValue.path(str(written[0])),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(c, "string") for c in raw.root.columns]),
            },
        )
        yield _structure_check(form_id, raw, model)

    return raw_form


def _structure_check(form_id: str, raw, model) -> dg.AssetCheckResult:  # noqa: ANN001
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
