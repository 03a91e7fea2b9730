"""Accepted tables per form and country: validation links the forms, so one step makes all."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.store import REPORT, Store
from dhsurvey.study import Validated, validate
from dhsurvey.validate.disclosure import LISTINGS
from pipelines.defs.runlog import change, check_metadata, previous_metadata, stage_failure
from pipelines.resources import StudyPaths
from pipelines.study import country_partitions, models, study

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
                                "quality report (`clean/<ISO>/report.html`, served by "
                                "`dhsurvey ui` and linked from the metadata).")],
    check_specs=[dg.AssetCheckSpec("reconciliation", asset=accepted_key(f), blocking=True,
                                   partitions_def=country_partitions,
                                   description="raw = accepted + quarantined + duplicates")
                 for f in FORMS],
    partitions_def=country_partitions,
    name="validated",
)
def validated(context: dg.AssetExecutionContext, paths: StudyPaths) -> Iterator:
    """Validate and link every form of the country; write `clean/<ISO>/<form>/`."""
    iso, store = context.partition_key, paths.store
    try:
        outcome = validate(store, study(), iso,
                           batch_households=paths.batch_households or None)
    except DhsurveyError as error:
        raise stage_failure(error, iso, "validation") from None
    context.log.info(f"{iso}: validated in {outcome.batches} batch(es)")
    for form, rec in outcome.reconciliation.items():
        before = previous_metadata(context, accepted_key(form))
        reasons = ", ".join(f"{rule} {n}" for rule, n in rec["quarantine_by_rule"].items())
        context.log.info(
            f"{iso} {form}: {rec['raw']:,} received"
            f"{change(rec['raw'], before.get('raw'))}, {rec['accepted']:,} accepted"
            f"{change(rec['accepted'], before.get('dagster/row_count'))}, "
            f"{rec['quarantined']} quarantined"
            f"{change(rec['quarantined'], before.get('quarantined'))}"
            + (f" ({reasons})" if reasons else "") + f", {rec['duplicates']} duplicates"
            f"{change(rec['duplicates'], before.get('duplicates'))}, {rec['flagged']} flagged"
            + ("" if before else " (first run)"))
    yield from _results(outcome, store, iso)
    yield _quality(outcome, store, iso, paths.report_url(iso))


def _listed_rows(folder: Path) -> dict[str, int]:
    """Rows of each restricted listing (from the Parquet footers: no value is read;
    decrypted when encrypted at rest)."""
    from dhsurvey.io import parquet_file

    rows = {}
    for path in sorted(folder.glob("*.parquet")):
        with parquet_file(path) as source:
            rows[path.stem] = source.metadata.num_rows
    return rows


def _quality(outcome: Validated, store: Store, iso: str, url: str) -> dg.MaterializeResult:
    """The day's fieldwork picture: response rates, enumerators, referrals.

    Metadata is shared like the report: rates, counts, rule and column names and enumerator
    codes only; the instanceIDs and values behind listed rows stay in the restricted
    listings, of which only the row counts are shown."""
    if outcome.result is None:
        return dg.MaterializeResult(asset_key=QUALITY, metadata={
            "report": f"not made: the country was validated in {outcome.batches} batches"})
    aapor = store.quality_table(iso, "aapor")
    country = aapor[aapor["level"] == "country"]
    rates = "\n".join(f"| {r.interview} | {r.n} | {r.RR1:.3f} | {r.RR3:.3f} | {r.COOP1:.3f} "
                      f"| {r.REF1:.3f} | {r.CON1:.3f} |" for r in country.itertuples())
    enum = store.quality_table(iso, "enumerator_dashboard")
    enum = enum[(enum["form"] == "child") & enum["median_duration"].notna()]
    enum = enum.sort_values("median_duration")
    chart = "\n".join(f"| {r.enum_id} | {r.submissions} | {r.median_duration:.1f} | "
                       f"{'█' * max(1, round(r.median_duration / 2))} | {r.speeders} | "
                       f"{_marks(r)} |" for r in enum.itertuples())
    referrals = store.quality_table(iso, "referrals")
    total = referrals[referrals["dimension"] == "all"]
    listings = store.quality(iso) / LISTINGS
    listed = "\n".join(f"| {name} | {rows} |" for name, rows in _listed_rows(listings).items())
    return dg.MaterializeResult(
        asset_key=QUALITY,
        metadata={
            "response rates (AAPOR)": dg.MetadataValue.md(
                "| interview | cases | RR1 | RR3 | COOP1 | REF1 | CON1 |\n"
                "|---|---|---|---|---|---|---|\n" + rates),
            "child interview minutes by enumerator": dg.MetadataValue.md(
                "| enumerator | interviews | median minutes | | speeders | marked |\n"
                "|---|---|---|---|---|---|\n" + chart),
            "distress-protocol referrals": int(total["referrals"].sum()) if len(total) else 0,
            "report": dg.MetadataValue.url(url),
            "report file": dg.MetadataValue.path(str(store.quality(iso) / REPORT)),
            "restricted listings (rows)": dg.MetadataValue.md(
                "| check | listed rows |\n|---|---|\n" + listed if listed else "none"),
            "restricted listings": dg.MetadataValue.path(str(listings)),
        },
    )


def _marks(row: Any) -> str:
    """What marks an enumerator in the duration chart: quarantined interviews (with the
    reasons) and an ID in no team of the country file (the dashboard's own columns)."""
    marks = []
    if not pd.isna(row.quarantined) and row.quarantined:
        reasons = "" if pd.isna(row.quarantine_reasons) else f" ({row.quarantine_reasons})"
        marks.append(f"⚠ {int(row.quarantined)} quarantined{reasons}")
    if pd.isna(row.team):
        marks.append("⚠ in no team")
    return "; ".join(marks)


def _results(outcome: Validated, store: Store, iso: str) -> Iterator:
    for form, rec in outcome.reconciliation.items():
        # Rule names and counts only: the values and instanceIDs are in the issue tables.
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
                    dg.TableColumn(c) for c in store.accepted_columns(iso, form)]),
            },
        )
        yield dg.AssetCheckResult(
            asset_key=accepted_key(form), check_name="reconciliation",
            passed=bool(rec["balanced"]),
            metadata=check_metadata({k: rec[k] for k in ("raw", "accepted", "quarantined",
                                                         "duplicates")}),
        )
