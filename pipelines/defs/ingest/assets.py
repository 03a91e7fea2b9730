"""The landing folder as a run found it, and the raw tables: one asset per form, partitioned
by country, with a blocking structure check.

``landing`` records the state it read (the landing sensor compares it with what it sees) and
warns, naming each, of files no reader takes (a renamed download, a wrong extension, a form the
study does not have), so a run that ignored one is not silently green. A raw asset that fails on
bad fieldwork input (a half-copied zip, unreadable JSON) says so first: ``KEN
central/child.csv.zip is not a complete zip file (…)``, not a stack trace.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from dhsurvey.errors import DhsurveyError
from dhsurvey.ingest.landing import classify, foreign_instances, scan
from dhsurvey.study import ingest_form
from pipelines.defs.forms.assets import compiled_forms
from pipelines.defs.runlog import change, check_metadata, counts_table, previous_metadata
from pipelines.resources import Secrets, StudyPaths
from pipelines.study import country_partitions, models, study

#: Metadata of a ``landing`` materialisation: the state of the folder it read.
LANDING_STATE = "landing state"


@dg.asset(
    group_name="raw",
    partitions_def=country_partitions,
    check_specs=[dg.AssetCheckSpec(
        "recognised", asset="landing", partitions_def=country_partitions,
        description="every file in `landing/<ISO>/` is one the layout recognises (warns, "
                    "naming each file no reader takes)")],
    description="The exports in `landing/<ISO>/` as this run found them (names, sizes, "
                "times): the state the landing sensor compares with, and the files it does "
                "not recognise.",
)
def landing(context: dg.AssetExecutionContext, paths: StudyPaths) -> Iterator:
    iso = context.partition_key
    folder = paths.store.landing(iso)
    state = scan(folder)
    if state.copying:
        raise dg.Failure(description=f"{iso} landing is still being copied: "
                                     + ", ".join(state.copying),
                         metadata={"country": iso, "files": ", ".join(state.copying)},
                         allow_retries=False)
    contents = classify(state.files, models())
    unrecognised = [*contents.unrecognised, *foreign_instances(folder, models())]
    before = previous_metadata(context, "landing")
    context.log.info(
        f"{iso}: {len(state.files):,} files in landing/{iso}/"
        f"{change(len(state.files), before.get('files'))}: "
        + ("; ".join(f"{kind} {len(files)}" for kind, files in sorted(contents.recognised.items()))
           or "no exports")
        + (f"; not recognised: {', '.join(u.path for u in unrecognised)}" if unrecognised
           else ""))
    yield dg.MaterializeResult(metadata={
        LANDING_STATE: state.digest,
        "files": len(state.files),
        "MB": round(sum(size for size, _ in state.files.values()) / 1e6, 1),
        "exports": dg.MetadataValue.md("\n".join(
            f"- {kind}: {', '.join(files)}" for kind, files in sorted(contents.recognised.items())
            if kind in ("central", "kobo", "xml", "central-api", "backcheck")) or "none"),
        "not recognised": len(unrecognised),
    })
    yield dg.AssetCheckResult(
        check_name="recognised", passed=not unrecognised, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(map(str, unrecognised)) or "every file recognised",
        metadata=check_metadata({"not recognised": dg.MetadataValue.md(
            "\n".join(f"- {u}" for u in unrecognised) or "none"),
                  "files": [u.path for u in unrecognised]}),
    )


def landing_failure(error: DhsurveyError, iso: str, form: str, folder: Path) -> dg.Failure:
    """A run failure that leads with the fieldwork cause: country, file relative to the landing
    folder, the library's message; no retry (the same file fails the same way)."""
    file = error.context.get("file")
    where, in_landing = form, False
    if file is not None:
        path = Path(str(file))
        try:
            where, in_landing = path.resolve().relative_to(folder.resolve()).as_posix(), True
        except ValueError:
            where = path.name
    sep = " " if error.message.startswith(("is ", "has ", "was ")) else ": "
    metadata = {str(k): str(v) for k, v in error.ordered_context() if k != "file"}
    if in_landing:
        metadata["what to do"] = (f"replace or remove it in landing/{iso}/; the landing sensor "
                                  "starts a new run once the folder has settled")
    return dg.Failure(
        description=f"{iso} {where}{sep}{error.message}",
        metadata={**metadata, "country": iso, "form": form, "file": where, "code": error.code},
        allow_retries=False)


def _raw_asset(form_id: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{form_id}",
        group_name="raw",
        partitions_def=country_partitions,
        deps=[compiled_forms, landing],
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec("structure", asset=f"raw_{form_id}", blocking=True,
                                       partitions_def=country_partitions,
                                       description="the form's columns present, each instanceID "
                                                   "once (values are typed by validation)")],
        description=f"Submissions of '{form_id}' from every export in `landing/<ISO>/`, "
                    "combined into canonical tables (restricted zone).",
    )
    def raw_form(context: dg.AssetExecutionContext, paths: StudyPaths,
                 secrets: Secrets) -> Iterator:
        iso = context.partition_key
        try:
            got = ingest_form(paths.store, study(), iso, form_id,
                              private_key=secrets.private_key())
        except DhsurveyError as error:
            raise landing_failure(error, iso, form_id, paths.store.landing(iso)) from None
        raw, model = got.raw, models()[form_id]
        before = previous_metadata(context, f"raw_{form_id}")
        context.log.info(
            f"{iso} {form_id}: {len(raw.root):,} submissions"
            f"{change(len(raw.root), before.get('dagster/row_count'))} from "
            f"{len(got.exports)} export(s); "
            f"{len(raw.quarantine)} quarantined at ingest")
        yield dg.MaterializeResult(
            asset_key=f"raw_{form_id}",
            metadata={
                "dagster/row_count": len(raw.root),
                "exports": len(got.exports),
                "repeat rows": counts_table({n: len(t) for n, t in raw.repeats.items()},
                                            "repeat", "rows"),
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
    """Blocking: the table must be one validation can run on — the form's columns present
    and each instanceID once. Values are typed and checked against the form's schema once,
    by validation, which quarantines and flags row by row (the ``validated`` asset's
    metadata counts them by rule)."""
    expected = {f.name for f in model.fields_in(None)}
    missing = sorted(expected - set(raw.root.columns)) if len(raw.root) else []
    duplicate_keys = int(raw.root["KEY"].duplicated().sum()) if len(raw.root) else 0
    return dg.AssetCheckResult(
        asset_key=f"raw_{form_id}", check_name="structure",
        passed=not missing and duplicate_keys == 0,
        metadata=check_metadata({"missing columns": ", ".join(missing) or "none",
                                 "duplicate instanceIDs": duplicate_keys}),
    )


raw_assets = [_raw_asset(form_id) for form_id in models()]
