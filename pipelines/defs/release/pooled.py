"""The pooled release: every country whose release passed its gate, in one set of files."""

import dagster as dg

from dhsurvey.errors import DhsurveyError
from dhsurvey.study import pool
from pipelines.defs.release.assets import indicators_table
from pipelines.defs.release.files import child_schema, release
from pipelines.defs.runlog import table
from pipelines.resources import StudyPaths
from pipelines.study import study


@dg.asset(
    group_name="release",
    deps=[release],
    kinds={"parquet", "csv", "stata", "spss"},
    check_specs=[dg.AssetCheckSpec(
        "pooled_scan", asset="pooled_release", blocking=True,
        description="no direct identifier, instanceID, GPS string or canary in any pooled "
                    "file; every included country passed its own disclosure gate")],
    description="All countries' released tables pooled per tier (release/pooled/, "
                "licensed/pooled/): renumbered strata and PSUs, the union of the countries' "
                "replicate weights (licensed), codebook, indicators overall and by country.",
)
def pooled_release(context: dg.AssetExecutionContext, paths: StudyPaths):
    try:
        pooled = pool(paths.store, study())
    except DhsurveyError as exc:
        raise dg.Failure(exc.message) from None
    isos = pooled.countries
    tiers = pooled.tiers or {"public": pooled}
    context.log.info(f"pooled {', '.join(isos)}: " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v:,} rows" for k, v in t.rows.items())
        for name, t in tiers.items())
        + (f"; left out: {'; '.join(f'{k} ({v})' for k, v in pooled.left_out.items())}"
           if pooled.left_out else ""))
    yield dg.MaterializeResult(metadata={
        "countries": ", ".join(isos),
        "left out": "; ".join(f"{k}: {v}" for k, v in pooled.left_out.items()) or "none",
        "rows per table": table([{"tier": name, "table": form, "rows": n}
                                 for name, t in tiers.items() for form, n in t.rows.items()],
                                {"tier": "string", "table": "string", "rows": "int"}),
        "dagster/column_schema": child_schema(pooled.folder / "child.parquet",
                                              study().config(isos[0]).release_language),
        "replicates": pooled.replicates,
        "notes": "; ".join(pooled.notes) or "none",
        "files": len(list(pooled.folder.iterdir())),
        "manifest": dg.MetadataValue.path(str(pooled.manifest)),
        "indicators": indicators_table(pooled.indicators),
    })
    yield dg.AssetCheckResult(check_name="pooled_scan", passed=pooled.passed,
                              metadata={"scan findings": sum(len(t.findings) for t in
                                                             (pooled.tiers or {"": pooled})
                                                             .values()),
                                        "countries": ", ".join(isos)})
