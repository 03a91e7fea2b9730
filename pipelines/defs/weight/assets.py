"""Weights per country: read the sample file and accepted tables, write clean/<ISO>/weights/."""


import dagster as dg

from dhsurvey.study import WEIGHTED, weight
from pipelines.defs.validate.assets import accepted_key
from pipelines.resources import StudyPaths
from pipelines.study import country_partitions, study


@dg.asset(
    group_name="weights",
    partitions_def=country_partitions,
    deps=[accepted_key(f) for f in WEIGHTED],
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec("margins", asset="weights", blocking=True,
                                   description="achieved calibration margins equal the "
                                               "country's population totals")],
    description="Household, child and caregiver weights (design → nonresponse → raking → "
                "trimming), strata, PSU and JKn replicate weights; frontline workers "
                "unweighted.",
)
def weights(context: dg.AssetExecutionContext, paths: StudyPaths):
    result = weight(paths.store, study(), context.partition_key)
    s = result.summary
    rows = "\n".join(f"| {k} | {v['target']:,.0f} | {v['achieved']:,.0f} |"
                     for k, v in s["margins"].items())
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": len(result.child),
        "children weighted": s["children"]["respondents"],
        "Kish deff before trimming": round(s["trim"]["deff_before"], 3),
        "Kish deff after trimming": round(s["trim"]["deff_after"], 3),
        "weights trimmed": s["trim"]["trimmed"],
        "replicates": int(s["replicates"].get("count", 0)),
        "margins": dg.MetadataValue.md("| margin | target | achieved |\n|---|---|---|\n" + rows),
    })
    worst = max(abs(v["achieved"] - v["target"]) / v["target"] for v in s["margins"].values())
    yield dg.AssetCheckResult(check_name="margins", passed=bool(worst < 1e-8),
                              metadata={"largest relative difference": worst})
