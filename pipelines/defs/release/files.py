"""The release per country: anonymised, labelled files, codebook, risk report, and the gate."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from dhsurvey.release.formats.parquet import ParquetTable
from dhsurvey.release.labels import column_labels
from dhsurvey.study import MAX_GLOBAL_RISK, K
from dhsurvey.study import release as release_country
from pipelines.defs.release.assets import indicators
from pipelines.defs.validate.assets import FORMS, accepted_key
from pipelines.defs.weight.assets import weights
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import config_for, country_partitions, models, study


def child_schema(path: Path, language: str) -> dg.TableSchema:
    """The released child table's columns with their labels, shown on the asset's page."""
    dtypes = ParquetTable(path).dtypes
    labels = column_labels(dtypes.index, models()["child"], language)
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t), description=labels[c]
                                                  or None)
                                   for c, t in dtypes.items()])


@dg.asset(
    group_name="release",
    partitions_def=country_partitions,
    deps=[weights, indicators, *[accepted_key(f) for f in FORMS]],
    kinds={"parquet", "csv", "stata", "spss"},
    check_specs=[dg.AssetCheckSpec(
        "disclosure_gate", asset="release", blocking=True,
        description=f"k ≥ {K} on every key combination, global risk ≤ {MAX_GLOBAL_RISK}, and "
                    "no direct identifier or canary in any release file")],
    description="Anonymised, labelled release (Parquet, CSV, Stata, SPSS), codebook and "
                "disclosure-risk report in release/<ISO>/; restricted mappings in clean/<ISO>/.",
)
def release(context: dg.AssetExecutionContext, paths: StudyPaths, secrets: Secrets):
    iso = context.partition_key
    out = release_country(paths.store, study(), iso, key=secrets.pseudonym_key())
    verdict, replicates = out.gate, out.replicates
    files = out.files
    yield dg.MaterializeResult(metadata={
        "files": len(files),
        "rows": out.rows,
        "dagster/row_count": out.rows.get("child", 0),
        "dagster/column_schema": child_schema(out.folder / "child.parquet",
                                              config_for(iso).release_language),
        "form versions": {f: m.version for f, m in models().items()},
        "format warnings": "; ".join(out.warnings) or "none",
        "replicates": f"{replicates['count']} ({replicates['note']})" if replicates else "none",
        "disclosure report": dg.MetadataValue.path(str(out.folder / "disclosure_risk.md")),
        "manifest": dg.MetadataValue.path(str(out.manifest)),
    }, data_version=dg.DataVersion(hashlib.sha256(json.dumps(
        {f.name: f.stat().st_size for f in files}, sort_keys=True).encode()).hexdigest()[:16]))
    yield dg.AssetCheckResult(
        check_name="disclosure_gate", passed=verdict.passed,
        metadata={"reasons": "; ".join(verdict.reasons) or "none",
                  "notes": "; ".join(verdict.notes) or "none",
                  "scan findings": len(out.findings)})
