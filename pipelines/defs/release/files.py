"""The release per country: anonymised, labelled files, codebook, risk report, and the gate."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from dhsurvey.errors import DhsurveyError
from dhsurvey.release.formats.parquet import ParquetTable
from dhsurvey.release.labels import column_labels
from dhsurvey.study import release as release_country
from pipelines.defs.runlog import check_metadata, counts_table, stage_failure, table
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
    deps=[weights, *[accepted_key(f) for f in FORMS]],
    kinds={"parquet", "csv", "stata", "spss"},
    check_specs=[dg.AssetCheckSpec(
        "disclosure_gate", asset="release", blocking=True, partitions_def=country_partitions,
        description="Every tier of instruments/disclosure.yaml: k among each file's "
                    "respondents on every key that can be joined to it, no group sharing a "
                    "harmful answer, local suppression within its budget per variable, global "
                    "risk, and no direct identifier, instanceID or canary in any file")],
    description="Anonymised, labelled releases (Parquet, CSV, Stata, SPSS), codebook and "
                "disclosure-risk report per tier: public-use files in `release/<ISO>/`, "
                "scientific-use files in `licensed/<ISO>/`; restricted mappings in "
                "`clean/<ISO>/restricted/`.",
)
def release(context: dg.AssetExecutionContext, paths: StudyPaths, secrets: Secrets):
    iso = context.partition_key
    try:
        out = release_country(paths.store, study(), iso, key=secrets.pseudonym_key())
    except DhsurveyError as error:
        raise stage_failure(error, iso, "release") from None
    tiers = out.tiers or {"public": out}
    licensed = tiers.get("licensed")
    replicates = licensed.replicates if licensed is not None else out.replicates
    files = [f for t in tiers.values() for f in t.files]
    rows = [{"tier": name, "table": form, "rows": n}
            for name, t in tiers.items() for form, n in t.rows.items()]
    for name, t in tiers.items():
        context.log.info(
            f"{iso} {name}: disclosure gate {'passed' if t.gate.passed else 'BLOCKED'}; "
            f"{len(t.files)} files; " + ", ".join(f"{k} {v:,} rows" for k, v in t.rows.items())
            + ("" if t.gate.passed else "; " + "; ".join(t.gate.reasons)))
    yield dg.MaterializeResult(metadata={
        "files": len(files),
        "rows per table": table(rows, {"tier": "string", "table": "string", "rows": "int"}),
        "dagster/column_schema": child_schema(out.folder / "child.parquet",
                                              config_for(iso).release_language),
        "form versions": counts_table({f: m.version for f, m in models().items()}, "form",
                                      "version"),
        "format warnings": "; ".join(out.warnings) or "none",
        "replicates (licensed)": table(
            [{"file": f, "replicates": int(r["count"]), "note": str(r["note"])}
             for f, r in replicates.items()],
            {"file": "string", "replicates": "int", "note": "string"}) if replicates
        else "none",
        **{f"{name} gate": "passed" if t.gate.passed else "blocked"
           for name, t in tiers.items()},
        **{f"{name} disclosure report": dg.MetadataValue.path(str(t.folder
                                                                  / "disclosure_risk.md"))
           for name, t in tiers.items()},
        "manifest": dg.MetadataValue.path(str(out.manifest)),
    }, data_version=dg.DataVersion(hashlib.sha256(json.dumps(
        {f.name: f.stat().st_size for f in files}, sort_keys=True).encode()).hexdigest()[:16]))
    yield dg.AssetCheckResult(
        check_name="disclosure_gate", passed=all(t.gate.passed for t in tiers.values()),
        metadata=check_metadata({
            "reasons": "; ".join(f"{n}: {r}" for n, t in tiers.items()
                                 for r in t.gate.reasons) or "none",
            "notes": "; ".join(f"{n}: {r}" for n, t in tiers.items()
                               for r in t.gate.notes) or "none",
            "scan findings": sum(len(t.findings) for t in tiers.values())}))
