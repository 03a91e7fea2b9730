"""Accepted tables per form and country: validation links the forms, so one step makes all."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from dhsurvey.ingest.store import read_raw
from dhsurvey.validate.run import (
    ValidationResult,
    validate_forms,
    write_quality,
    write_validation,
)
from pipelines.resources import StudyPaths
from pipelines.study import config_for, country_partitions, models

FORMS = list(models())


def accepted_key(form_id: str) -> dg.AssetKey:
    return dg.AssetKey(f"accepted_{form_id}")


QUALITY = dg.AssetKey("fieldwork_quality")


@dg.multi_asset(
    specs=[dg.AssetSpec(accepted_key(f), deps=[f"raw_{f}"], group_name="clean",
                        kinds={"parquet"},
                        description=f"Validated, linked '{f}' submissions (restricted zone); "
                                    "quarantine, flags and duplicates beside them.")
           for f in FORMS]
    + [dg.AssetSpec(QUALITY, deps=[f"raw_{f}" for f in FORMS], group_name="clean",
                    kinds={"html"},
                    description="High-frequency checks, response rates and the fieldwork "
                                "quality report (clean/<ISO>/report.html).")],
    check_specs=[dg.AssetCheckSpec("reconciliation", asset=accepted_key(f), blocking=True,
                                   description="raw = accepted + quarantined + duplicates")
                 for f in FORMS]
    + [dg.AssetCheckSpec("expectations", asset=accepted_key(f), blocking=False,
                         description="Great Expectations suite generated from the form; "
                                     "Data Docs in clean/<ISO>/data_docs/")
       for f in FORMS],
    partitions_def=country_partitions,
    name="validated",
)
def validated(context: dg.AssetExecutionContext, paths: StudyPaths) -> Iterator:
    """Validate and link every form of the country; write clean/<ISO>/<form>/…"""
    iso = context.partition_key
    config = config_for(iso)
    raws = {f: read_raw(paths.zone("raw", iso), f) for f in FORMS}
    result = validate_forms(raws, models(), config=config)
    out = paths.zone("clean", iso)
    write_validation(result, out)
    yield from _results(result)
    yield _quality(result, out, config)
    yield from _expectations(result, out / "data_docs", iso)


def _quality(result: ValidationResult, out: Path, config) -> dg.MaterializeResult:  # noqa: ANN001
    """The day's fieldwork picture: response rates, enumerators, referrals."""
    import pandas as pd

    write_quality(result, models(), out, config=config, expectations=False)
    folder = out / "quality"
    aapor = pd.read_parquet(folder / "aapor.parquet")
    country = aapor[aapor["level"] == "country"]
    rates = "\n".join(f"| {r.interview} | {r.n} | {r.RR1:.3f} | {r.RR3:.3f} | {r.COOP1:.3f} "
                      f"| {r.REF1:.3f} | {r.CON1:.3f} |" for r in country.itertuples())
    enum = pd.read_parquet(folder / "enumerator_dashboard.parquet")
    enum = enum[(enum["form"] == "child") & enum["median_duration"].notna()]
    enum = enum.sort_values("median_duration")
    chart = "\n".join(f"| {r.enum_id} | {r.submissions} | {r.median_duration:.1f} | "
                       f"{'█' * max(1, round(r.median_duration / 2))} | {r.speeders} |"
                       for r in enum.itertuples())
    referrals = pd.read_parquet(folder / "referrals.parquet")
    total = referrals[referrals["dimension"] == "all"]
    return dg.MaterializeResult(
        asset_key=QUALITY,
        metadata={
            "response rates (AAPOR)": dg.MetadataValue.md(
                "| interview | cases | RR1 | RR3 | COOP1 | REF1 | CON1 |\n"
                "|---|---|---|---|---|---|---|\n" + rates),
            "child interview minutes by enumerator": dg.MetadataValue.md(
                "| enumerator | interviews | median minutes | | speeders |\n"
                "|---|---|---|---|---|\n" + chart),
            "distress-protocol referrals": int(total["referrals"].sum()) if len(total) else 0,
            "report": dg.MetadataValue.path(str(out / "report.html")),
        },
    )


def _expectations(result: ValidationResult, docs: Path, iso: str) -> Iterator:
    """Non-blocking: the accepted tables against the suites generated from the forms."""
    from dhsurvey.validate.expectations import validate_accepted

    ge = validate_accepted({f: r.accepted for f, r in result.forms.items()}, models(), docs,
                           name=iso)
    for form, outcome in ge.forms.items():
        yield dg.AssetCheckResult(
            asset_key=accepted_key(form), check_name="expectations", passed=outcome.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"evaluated": outcome.evaluated, "successful": outcome.successful,
                      "failed": ", ".join(outcome.failed) or "none",
                      "data docs": dg.MetadataValue.path(str(ge.index))},
        )


def _results(result: ValidationResult) -> Iterator:
    for form, r in result.forms.items():
        rec = r.reconciliation
        reasons = "\n".join(f"| {rule} | {n} |" for rule, n in
                            list(rec["quarantine_by_rule"].items())[:10])
        yield dg.MaterializeResult(
            asset_key=accepted_key(form),
            metadata={
                "dagster/row_count": rec["accepted"],
                "raw": rec["raw"], "quarantined": rec["quarantined"],
                "duplicates": rec["duplicates"], "flagged": rec["flagged"],
                "top quarantine reasons": dg.MetadataValue.md(
                    "| rule | submissions |\n|---|---|\n" + reasons if reasons else "none"),
                "dagster/column_schema": dg.TableSchema(columns=[
                    dg.TableColumn(c, str(t)) for c, t in r.accepted.dtypes.items()]),
            },
        )
        yield dg.AssetCheckResult(
            asset_key=accepted_key(form), check_name="reconciliation",
            passed=bool(rec["balanced"]),
            metadata={k: rec[k] for k in ("raw", "accepted", "quarantined", "duplicates")},
        )
