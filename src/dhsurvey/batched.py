"""A country larger than memory, in batches of PSUs: validate → weight → anonymise → release.

Why: the pipeline's steps hold a country's tables in pandas, about 29 MB per 1,000 children;
a national sample grown to a million children would need ~30 GB. Here the country is cut into
batches of whole PSUs, and each step reads either one batch or only the few columns the whole
sample must see together:

1. **Partition** (:func:`partition_raw`): the raw tables are read in row groups and every row
   goes to the batch of its cluster. All interviews of a household share its cluster, and the
   forms identify an interview by cluster and household (their ``instance_name``), so
   linkage, one-interview-per-household and duplicate detection never cross a batch; repeat
   rows follow their submission. A form identified without a cluster (frontline workers) is
   kept whole, in batch 0. The pass also collects every form's interview durations: the
   speeder threshold is a share of the *country's* median.
2. **Validate** each batch (:func:`~dhsurvey.validate.run.validate_forms` with those
   thresholds); accepted rows go to one Parquet part per batch, issues and the
   reconciliation (raw = accepted + quarantined + duplicates) are summed over batches.
3. **Weights** from the columns they read (:data:`~dhsurvey.weight.study.INPUT_COLUMNS`) of
   every accepted part; child replicate weights stay in factor form.
4. **Anonymisation plan**: :func:`~dhsurvey.anonymise.release.anonymise_country` on the
   columns whose release depends on the whole sample
   (:func:`~dhsurvey.anonymise.release.plan_columns`): IDs, order, recodes, suppressions.
5. **Release**: each batch's accepted records through the plan
   (:class:`~dhsurvey.anonymise.release.ReleasePlan`) with their replicate weights, appended
   to Parquet as row groups; CSV, Stata and SPSS are then written from the Parquet file a
   block of rows at a time (:func:`~dhsurvey.release.stream.write_from_parquet`).

Batches are random groups of PSUs drawn from the release's random generator, and each batch's
rows come out in the release's shuffled order, so the file order says no more than the
released (random) PSU codes already do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import RawForm, empty_quarantine
from dhsurvey.ingest.store import QUARANTINE, repeat_names
from dhsurvey.io import atomic_write_json, atomic_write_parquet

#: Rows read from a raw table at a time while partitioning.
READ_ROWS = 200_000
#: Values formatted at a time by the CSV, Stata and SPSS writers (rows × columns): the text
#: of a block of rows takes ~400 bytes per value in pandas.
WRITE_CELLS = 500_000
#: Sensitive columns read over the whole sample at a time (for the l-diversity report).
SENSITIVE_AT_ONCE = 8


@dataclass
class Partition:
    """Where :func:`partition_raw` put a country's raw rows."""

    folder: Path
    batches: int
    batched: list[str]  # forms dealt to batches by cluster
    whole: list[str]  # forms kept whole, in batch 0
    repeats: dict[str, list[str]]
    speeder_thresholds: dict[str, float]

    def part(self, table: str, batch: int) -> Path:
        return self.folder / table / f"batch-{batch:05d}.parquet"

    def raw(self, batch: int) -> dict[str, RawForm]:
        """The forms' raw rows of one batch (whole forms in batch 0 only)."""
        out = {}
        for form in [*self.batched, *(self.whole if batch == 0 else [])]:
            repeats = {name: pd.read_parquet(self.part(f"{form}-{name}", batch))
                       for name in self.repeats[form]}
            quarantine = empty_quarantine()
            if batch == 0 and self.part(f"{form}-{QUARANTINE}", 0).exists():
                quarantine = pd.read_parquet(self.part(f"{form}-{QUARANTINE}", 0))
            out[form] = RawForm(form, pd.read_parquet(self.part(form, batch)), repeats,
                                quarantine)
        return out


def psu_batches(design: pd.DataFrame, households: int, rng: np.random.Generator
                ) -> pd.Series:
    """Cluster → batch: PSUs in random order, cut into batches of about ``households``
    sampled households (whole PSUs only)."""
    sizes = pd.to_numeric(design["cluster"]).astype(int).value_counts()
    order = sizes.index.to_numpy()[rng.permutation(len(sizes))]
    cumulative = np.cumsum(sizes.loc[order].to_numpy())
    batch = (cumulative - 1) // max(int(households), 1)
    return pd.Series(batch.astype(np.int64), index=order, name="batch").sort_index()


def _batch_of(clusters: pd.Series, psu_batch: pd.Series) -> np.ndarray:
    """Each row's batch by its cluster; rows of no sampled cluster go to batch 0 (they fail
    the frame or linkage checks there, with a reason)."""
    number = pd.to_numeric(clusters, errors="coerce")
    return psu_batch.reindex(number.to_numpy()).fillna(0).to_numpy(dtype=np.int64)


def _deal(source: Path, target: Callable[[Any], np.ndarray], parts: list[Path]) -> None:
    """Rows of ``source`` read in row groups, each written to ``parts[target(rows)]``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source)
    writers = [pq.ParquetWriter(_mkdir(p), pf.schema_arrow) for p in parts]
    try:
        for chunk in pf.iter_batches(batch_size=READ_ROWS):
            batch = target(chunk)
            order = np.argsort(batch, kind="stable")
            bounds = np.searchsorted(batch[order], np.arange(len(parts) + 1))
            for b, writer in enumerate(writers):
                if bounds[b + 1] > bounds[b]:
                    writer.write_table(pa.Table.from_batches(
                        [chunk.take(pa.array(order[bounds[b]:bounds[b + 1]]))]))
    finally:
        for writer in writers:
            writer.close()


class _Roots:
    """Per root chunk: each row's batch, each submission's batch (for its repeat rows) and
    the durations of completed interviews (for the speeder threshold)."""

    def __init__(self, psu_batch: pd.Series | None, timing: list[str]) -> None:
        self.psu_batch, self.timing = psu_batch, timing
        self.owner: list[pd.Series] = []
        self.minutes: list[np.ndarray] = []

    def __call__(self, chunk: Any) -> np.ndarray:
        from dhsurvey.validate.timing import completed, duration_minutes

        wanted = ["KEY", "cluster", *self.timing] if self.psu_batch is not None else self.timing
        frame = chunk.select([c for c in wanted if c in chunk.schema.names]).to_pandas()
        self.minutes.append(duration_minutes(frame).to_numpy()[completed(frame).to_numpy()])
        if self.psu_batch is None:
            return np.zeros(chunk.num_rows, dtype=np.int64)
        batch = _batch_of(frame["cluster"], self.psu_batch)
        self.owner.append(pd.Series(batch, index=frame["KEY"].to_numpy()))
        return batch

    def threshold(self) -> float:
        from dhsurvey.validate.timing import speeder_threshold

        values = np.concatenate(self.minutes) if self.minutes else np.array([])
        return speeder_threshold(pd.Series(values, dtype=float).median())

    def repeats(self) -> Callable[[Any], np.ndarray]:
        """A repeat row's batch: its submission's (the instanceID starting its KEY)."""
        owner = pd.concat(self.owner) if self.owner else pd.Series(dtype=np.int64)
        batches = owner.to_numpy()

        def target(chunk: Any) -> np.ndarray:
            key = chunk.column(chunk.schema.get_field_index("KEY")).to_pandas()
            found = owner.index.get_indexer(key.str.split("/", n=1).str[0].to_numpy(object))
            return np.where(found >= 0, batches[np.maximum(found, 0)], 0)

        return target


def partition_raw(raw: str | Path, models: Mapping[str, FormModel], psu_batch: pd.Series,
                  folder: str | Path) -> Partition:
    """Deal the raw tables in ``raw`` (as :func:`~dhsurvey.ingest.store.write_raw` writes
    them) to batches by cluster, one Parquet part per table and batch, under ``folder``."""
    import pyarrow.parquet as pq

    from dhsurvey.forms.lint import CONSENT_RE
    from dhsurvey.validate.run import id_fields

    raw, folder = Path(raw), Path(folder)
    n_batches = int(psu_batch.max()) + 1 if len(psu_batch) else 1
    part = Partition(folder, n_batches, [], [], {}, {})
    for form, model in models.items():
        source = raw / f"{form}.parquet"
        if not source.exists():
            continue
        batched = "cluster" in id_fields(model)
        (part.batched if batched else part.whole).append(form)
        count = n_batches if batched else 1  # a whole form: everything in batch 0
        part.repeats[form] = repeat_names(raw, form)
        # What the speeder rule reads: durations and the consent gates of completed ones.
        timing = [c for c in pq.read_schema(source).names
                  if c in ("start", "end") or CONSENT_RE.match(c)]
        roots = _Roots(psu_batch if batched else None, timing)
        _deal(source, roots, [part.part(form, b) for b in range(count)])
        part.speeder_thresholds[form] = roots.threshold()
        target = roots.repeats()
        for name in part.repeats[form]:
            _deal(raw / f"{form}-{name}.parquet", target,
                  [part.part(f"{form}-{name}", b) for b in range(count)])
        quarantine = raw / f"{form}-{QUARANTINE}.parquet"
        if quarantine.exists():
            _mkdir(part.part(f"{form}-{QUARANTINE}", 0)).write_bytes(quarantine.read_bytes())
    return part


def _width(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return len(pq.read_schema(parquet).names)


def _glibc() -> Any:
    """The C library when it is glibc (malloc_trim, mallopt), else None."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> None:
    """Hand freed memory back to the system between steps and batches.

    glibc and Arrow keep freed blocks for reuse, so a process's resident memory stays at its
    largest step; returning them lets the next step start from what is really in use.
    """
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:  # not glibc: nothing to hand back explicitly
        libc.malloc_trim(0)


#: glibc's M_MMAP_THRESHOLD: allocations from this size up are mapped on their own.
_MMAP_THRESHOLD = 1 << 20


def return_large_blocks() -> None:
    """Have glibc map every block of 1 MiB or more on its own, so that freeing it returns it.

    By default glibc raises this threshold each time a mapped block is freed, after which
    large arrays come from the heap and a freed one stays resident behind smaller live
    objects; a step then holds its transients' memory long after it freed them. Fixing the
    threshold costs a system call per large array. Process-wide; nothing to do off glibc.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-3, _MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD


def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _sum_reconciliation(parts: list[dict]) -> dict:
    """One form's reconciliation over batches: counts and per-rule counts add up."""
    out: dict[str, Any] = {"form": parts[0]["form"]}
    for name in ("raw", "accepted", "quarantined", "duplicates", "flagged"):
        out[name] = sum(p[name] for p in parts)
    for name in ("quarantine_by_rule", "flags_by_rule", "corrections"):
        total: dict[str, int] = {}
        for p in parts:
            for rule, n in p[name].items():
                total[rule] = total.get(rule, 0) + int(n)
        out[name] = dict(sorted(total.items(), key=lambda kv: -kv[1]))
    out["balanced"] = out["raw"] == out["accepted"] + out["quarantined"] + out["duplicates"]
    return out


def validate_batches(part: Partition, models: Mapping[str, FormModel], config: CountryConfig,
                     folder: str | Path, *, progress: Callable[[int], None] | None = None
                     ) -> dict[str, dict]:
    """Validate every batch; accepted root rows to ``folder/accepted/<form>/batch-*.parquet``,
    quarantine, flags and duplicates of all batches to ``folder/<form>/*.parquet`` with the
    summed ``reconciliation.json``. Returns the reconciliations."""
    from dhsurvey.validate.run import validate_forms

    folder = Path(folder)
    issues: dict[str, dict[str, list[pd.DataFrame]]] = {}
    recs: dict[str, list[dict]] = {}
    for batch in range(part.batches):
        result = validate_forms(part.raw(batch), models, config=config,
                                speeder_thresholds=part.speeder_thresholds)
        for form, r in result.forms.items():
            atomic_write_parquet(folder / "accepted" / form / f"batch-{batch:05d}.parquet",
                                 r.accepted)
            for name in ("quarantine", "flags", "duplicates"):
                issues.setdefault(form, {}).setdefault(name, []).append(getattr(r, name))
            recs.setdefault(form, []).append(r.reconciliation)
        del result
        release_memory()
        if progress:
            progress(batch)
    out = {}
    for form, parts in recs.items():
        out[form] = _sum_reconciliation(parts)
        if not out[form]["balanced"]:
            raise DhsurveyError("batches do not reconcile: raw ≠ accepted + quarantined + "
                                "duplicates", code="batches-unbalanced", form=form)
        for name, frames in issues[form].items():
            frames = [f for f in frames if len(f)] or frames[:1]
            atomic_write_parquet(folder / form / f"{name}.parquet",
                                 pd.concat(frames, ignore_index=True))
        atomic_write_json(folder / form / "reconciliation.json",
                          {**out[form], "country": config.iso, "batches": part.batches})
    return out


def accepted_parts(folder: str | Path, form: str) -> list[Path]:
    return sorted((Path(folder) / "accepted" / form).glob("batch-*.parquet"))


def accepted_batches(folder: str | Path, form: str, columns: list[str] | None = None, *,
                     numbered: int | None = None) -> Iterator[pd.DataFrame]:
    """A form's accepted rows, one batch at a time (some columns, or all).

    ``numbered``: KEY is replaced by record numbers from this one on, in part order
    (:func:`number_keys`).
    """
    read = [c for c in columns if c != "KEY"] if numbered is not None and columns else columns
    for p in accepted_parts(folder, form):
        frame = pd.read_parquet(p, columns=read)
        if numbered is not None:
            keys = pd.array(numbered + np.arange(len(frame)), dtype="Int64")
            if "KEY" in frame.columns:
                frame["KEY"] = keys
            else:
                frame.insert(0, "KEY", keys)
            numbered += len(frame)
        yield frame


def read_accepted(folder: str | Path, form: str, columns: list[str] | None = None, *,
                  numbered: int | None = None) -> pd.DataFrame:
    """Some columns of a form's accepted rows over every batch (one part at a time)."""
    frames = list(accepted_batches(folder, form, columns, numbered=numbered))
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True)


def number_keys(folder: str | Path, forms: list[str]) -> dict[str, int]:
    """The first record number of each form: records are numbered across forms in the order
    of the accepted parts, so a number names one record of the country.

    While planning, numbers stand in for instanceIDs (a million households' instanceIDs as
    Python strings take more memory than all their keys); the restricted mapping gets the
    instanceIDs back at the end (:func:`_restore_keys`).
    """
    import pyarrow.parquet as pq

    starts, n = {}, 0
    for form in forms:
        starts[form] = n
        n += sum(pq.ParquetFile(p).metadata.num_rows for p in accepted_parts(folder, form))
    return starts


def _restore_keys(records: Path, folder: Path, starts: dict[str, int]) -> None:
    """Put the instanceIDs back into the restricted record mapping, a block at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = np.concatenate([read_accepted(folder, f, ["KEY"])["KEY"].to_numpy(dtype=object)
                           for f in starts])
    source = pq.ParquetFile(records)
    target = records.with_name(f".{records.name}.tmp")
    writer = None
    try:
        for chunk in source.iter_batches(batch_size=READ_ROWS):
            frame = chunk.to_pandas()
            frame["KEY"] = keys[frame["KEY"].to_numpy(dtype=np.int64)]
            # Coded columns (the form) are written out as text: one schema for every
            # block, whichever categories a block holds.
            frame = frame.astype({c: object for c in frame.columns
                                  if isinstance(frame[c].dtype, pd.CategoricalDtype)})
            table = pa.Table.from_pandas(frame, preserve_index=False,
                                         schema=writer.schema if writer else None)
            writer = writer or pq.ParquetWriter(target, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        target.replace(records)


def accepted_columns(folder: str | Path, form: str) -> list[str]:
    import pyarrow.parquet as pq

    return [c for c in pq.read_schema(accepted_parts(folder, form)[0]).names
            if not c.startswith("__")]


class _Accepted(Mapping[str, pd.DataFrame]):
    """Some columns of each form's accepted rows, read when asked for and not kept: the
    anonymisation holds one form's input at a time, not all of them."""

    def __init__(self, folder: Path, columns: dict[str, list[str]], starts: dict[str, int]
                 ) -> None:
        self.folder, self.columns, self.starts = folder, columns, starts

    def __getitem__(self, form: str) -> pd.DataFrame:
        return read_accepted(self.folder, form, self.columns[form], numbered=self.starts[form])

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


@dataclass
class BatchedRelease:
    """What :func:`release_in_batches` did: per-form reconciliation, weights summary, the
    disclosure report, the files written and the batches."""

    reconciliation: dict[str, dict]
    weights: dict
    report: dict[str, dict]
    files: list[Path]
    batches: int
    children: int
    gate: Any = None  # GateResult on the report (k, risk, design); the file scan is not run


def release_in_batches(raw: str | Path, design: pd.DataFrame,
                       models: Mapping[str, FormModel], config: CountryConfig,
                       out: str | Path, work: str | Path, *, key: bytes,
                       rng: np.random.Generator, batch_households: int = 30_000,
                       language: str | None = None,
                       on_step: Callable[[str], None] | None = None) -> BatchedRelease:
    """validate → weight → anonymise → release of one country, a batch of PSUs at a time.

    ``raw``: the raw zone folder of the country; ``design``: the sample's households (for
    the weights); ``work``: scratch space for the partition and the accepted parts;
    ``out``: the release folder (``<form>.parquet|csv|dta|sav``, codebook-free). ``on_step``
    is called with each step's name when it ends (a benchmark reads time and memory there).
    """
    from dhsurvey.anonymise.release import ReleasePlan, anonymise_country, gate, plan_columns
    from dhsurvey.release.labels import with_merged_codes
    from dhsurvey.release.stream import ParquetAppender, write_from_parquet
    from dhsurvey.release.writers import FORMATS
    from dhsurvey.weight.study import INPUT_COLUMNS, study_weights

    work, out = Path(work), Path(out)
    return_large_blocks()

    def step(name: str) -> None:
        release_memory()
        if on_step is not None:
            on_step(name)

    part = partition_raw(raw, models, psu_batches(design, batch_households, rng),
                         work / "raw")
    step("partition")
    recs = validate_batches(part, models, config, work / "validation")
    step("validate")
    accepted = work / "validation"
    starts = number_keys(accepted, list(recs))
    w = study_weights(design, *(read_accepted(accepted, f, INPUT_COLUMNS[f], numbered=starts[f])
                                for f in ("household", "child", "caregiver")),
                      config, dense_replicates=False)
    step("weight")
    columns = {f: accepted_columns(accepted, f) for f in recs}
    slim = _Accepted(accepted, {f: plan_columns(models[f], columns[f])
                                if f in part.batched else columns[f] for f in recs}, starts)
    weights = {"household": w.household, "child": w.child, "caregiver": w.caregiver}
    release = anonymise_country(slim, weights, models, config, key=key, rng=rng,
                                numeric_ids=True)
    del weights
    plan = ReleasePlan(release, models, config, columns)
    # The restricted mappings go to the restricted zone now; only the child weights (for
    # the replicate columns) stay in memory.
    for name, table in release.restricted.items():
        atomic_write_parquet(work / "restricted" / f"{name}.parquet", table)
    release.restricted = {}
    w.household, w.caregiver = w.household.iloc[0:0], w.caregiver.iloc[0:0]
    for form in part.batched:
        sensitive = plan.sensitive(form)
        for i in range(0, len(sensitive), SENSITIVE_AT_ONCE):
            plan.diversity(form, read_accepted(
                accepted, form, ["KEY", *sensitive[i:i + SENSITIVE_AT_ONCE]],
                numbered=starts[form]))
    step("anonymise")
    labelled = with_merged_codes(models, release.merged_codes)
    files: list[Path] = []
    for form in recs:
        path = out / f"{form}.parquet"
        with ParquetAppender(path, labelled[form], language=language) as appender:
            if form in part.batched:
                for batch in accepted_batches(accepted, form, numbered=starts[form]):
                    rows = plan.rows(form, batch, w.child_replicates
                                     if form == "child" else None)
                    if len(rows):
                        appender.write(rows)
            else:
                appender.write(plan.table(form))
        files.append(path)
        files += write_from_parquet(path, labelled[form], out, language=language,
                                    formats=[f for f in FORMATS if f != "parquet"],
                                    batch_rows=max(500, WRITE_CELLS // _width(path)))
    atomic_write_json(work / "release-report.json", json.loads(json.dumps(release.report,
                                                                          default=str)))
    summary, report = w.summary, release.report
    del plan, release, w
    _restore_keys(work / "restricted" / "records.parquet", accepted, starts)
    step("release")
    # The release decision on the disclosure report (k, global risk, design variables); the
    # scan of the written files for identifiers reads whole files and is not run here.
    decision = gate(report, [])
    atomic_write_json(work / "gate.json", {"passed": decision.passed,
                                           "reasons": decision.reasons,
                                           "notes": decision.notes, "scan": "not run"})
    return BatchedRelease(recs, summary, report, files, part.batches,
                          int(recs.get("child", {}).get("accepted", 0)), decision)
