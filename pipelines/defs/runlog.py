"""What a run tells the data manager: the fieldwork story in its log, and failures that lead
with their fieldwork cause.

Why: the run log is what a data manager reads when a country's run is red or its numbers
moved. Dagster's own events ("Yielded output … of type Any") say nothing of fieldwork; each
stage logs one line per form or tier with counts and what changed since the country's
previous run, and a library error becomes a failure whose first words are the country, the
stage and the cause, with where and what to do in its metadata.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from dhsurvey.errors import DhsurveyError


def previous_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey | str
                      ) -> dict[str, Any]:
    """The metadata values of the asset's latest materialisation of this run's country (the
    one before this run's): ``{}`` on the first run."""
    asset_key = dg.AssetKey(key) if isinstance(key, str) else key
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[context.partition_key]),
        limit=1).records
    event = records[0].asset_materialization if records else None
    return {k: v.value for k, v in event.metadata.items()} if event else {}


def change(now: int, before: Any) -> str:
    """The change since the previous run in brackets (`` (+12)``, `` (±0)``); nothing on the
    first run."""
    if not isinstance(before, int | float):
        return ""
    delta = now - int(before)
    return " (±0)" if delta == 0 else f" ({delta:+,})"


def stage_failure(error: DhsurveyError, iso: str, stage: str) -> dg.Failure:
    """A run failure that leads with the fieldwork cause: ``KEN weights: <message>``; where it
    happened (file, form, column …) and the error's code in the metadata; no retry (the same
    input fails the same way)."""
    where = error.where()
    return dg.Failure(
        description=f"{iso} {stage}: {error.message}" + (f" ({where})" if where else ""),
        metadata={**{str(k): str(v) for k, v in error.ordered_context()},
                  "country": iso, "stage": stage, "code": error.code},
        allow_retries=False)


def table(rows: list[dict[str, Any]], columns: dict[str, str]) -> dg.TableMetadataValue:
    """Rows as a metadata table (``columns``: name → Dagster column type), which the UI shows
    as a table rather than a JSON blob."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in
                                     columns.items()])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c) for c in columns}) for row in rows],
        schema=schema)


def counts_table(counts: dict[str, Any], name: str, value: str) -> dg.TableMetadataValue:
    """``{key: number}`` as a two-column table."""
    kind = "int" if all(isinstance(v, int) for v in counts.values()) else "string"
    return table([{name: str(k), value: v if kind == "int" else str(v)}
                  for k, v in counts.items()], {name: "string", value: kind})


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A country's check metadata with numbers as text.

    Why: the UI plots a check's numeric metadata over every evaluation, whatever its partition,
    so one line would join KEN's figures to UGA's. Each country's own series is in its morning
    view (``fieldwork_day``)."""
    return {k: (f"{v:,}" if isinstance(v, int) else f"{v:.3g}")
            if isinstance(v, int | float) and not isinstance(v, bool) else v
            for k, v in metadata.items()}
