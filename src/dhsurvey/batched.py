"""Validation of a country larger than memory, in batches of whole PSUs.

Why: the validation steps hold a country's tables in pandas, about 29 MB per 1,000 children; a
national sample grown to a million children would need ~30 GB. :func:`dhsurvey.study.validate`
cuts such a country into batches of whole PSUs:

1. **Partition** (:func:`partition_raw`): the raw tables are read in row groups and every row
   goes to the batch of its cluster. All interviews of a household share its cluster, and the
   forms identify an interview by cluster and household (their ``instance_name``), so
   linkage, one-interview-per-household and duplicate detection never cross a batch; repeat
   rows follow their submission. A form identified without a cluster (frontline workers) is
   kept whole, in batch 0. The pass also collects every form's interview durations: the
   speeder threshold is a share of the *country's* median.
2. **Validate** each batch (:func:`validate_batches`); accepted rows go to one Parquet part per
   batch, issues and the reconciliation (raw = accepted + quarantined + duplicates) are summed
   over batches.

Everything after validation (weights, the anonymisation plan, the release) reads the accepted
parts a few columns or one part at a time and is the same for a country validated whole
(:mod:`dhsurvey.study`). Here too: the memory helpers those steps call between batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
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
from dhsurvey.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    open_private,
    parquet_file,
    parquet_writer,
    read_parquet,
)
from dhsurvey.store import CORRECTIONS, ISSUES, RECONCILIATION, Store, issue_table

#: The sample design's PSU column, part of every household form's household ID.
PSU = "cluster"
#: Rows read from a raw table at a time while partitioning.
READ_ROWS = 200_000

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
            repeats = {name: read_parquet(self.part(f"{form}-{name}", batch))
                       for name in self.repeats[form]}
            quarantine = empty_quarantine()
            if batch == 0 and self.part(f"{form}-{QUARANTINE}", 0).exists():
                quarantine = read_parquet(self.part(f"{form}-{QUARANTINE}", 0))
            out[form] = RawForm(form, read_parquet(self.part(form, batch)), repeats,
                                quarantine)
        return out


def psu_batches(design: pd.DataFrame, households: int, rng: np.random.Generator
                ) -> pd.Series:
    """Cluster → batch: PSUs in random order, cut into batches of about ``households``
    sampled households (whole PSUs only)."""
    sizes = pd.to_numeric(design[PSU]).astype(int).value_counts()
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

    with ExitStack() as files:  # owner-only files (pyarrow would make them 0644)
        pf = files.enter_context(parquet_file(source))
        sinks = [files.enter_context(open_private(p)) for p in parts]
        writers = [parquet_writer(sink, pf.schema_arrow, p)
                   for sink, p in zip(sinks, parts, strict=True)]
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

    def __init__(self, psu_batch: pd.Series | None, timing: list[str],
                 gates: Mapping[str, str | None]) -> None:
        self.psu_batch, self.timing, self.gates = psu_batch, timing, gates
        self.owner: list[pd.Series] = []
        self.minutes: list[np.ndarray] = []

    def __call__(self, chunk: Any) -> np.ndarray:
        from dhsurvey.validate.timing import completed, duration_minutes

        wanted = ["KEY", PSU, *self.timing] if self.psu_batch is not None else self.timing
        frame = chunk.select([c for c in wanted if c in chunk.schema.names]).to_pandas()
        done = completed(frame, self.gates).to_numpy()
        self.minutes.append(duration_minutes(frame).to_numpy()[done])
        if self.psu_batch is None:
            return np.zeros(chunk.num_rows, dtype=np.int64)
        batch = _batch_of(frame[PSU], self.psu_batch)
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
    raw, folder = Path(raw), Path(folder)
    n_batches = int(psu_batch.max()) + 1 if len(psu_batch) else 1
    part = Partition(folder, n_batches, [], [], {}, {})
    for form, model in models.items():
        source = raw / f"{form}.parquet"
        if not source.exists():
            continue
        batched = PSU in model.household_id
        (part.batched if batched else part.whole).append(form)
        count = n_batches if batched else 1  # a whole form: everything in batch 0
        part.repeats[form] = repeat_names(raw, form)
        # What the speeder rule reads: durations and the consent gates of completed ones.
        with parquet_file(source) as pf:
            timing = [c for c in pf.schema_arrow.names
                      if c in ("start", "end") or c in model.consent_gates]
        roots = _Roots(psu_batch if batched else None, timing, model.consent_given)
        _deal(source, roots, [part.part(form, b) for b in range(count)])
        part.speeder_thresholds[form] = roots.threshold()
        target = roots.repeats()
        for name in part.repeats[form]:
            _deal(raw / f"{form}-{name}.parquet", target,
                  [part.part(f"{form}-{name}", b) for b in range(count)])
        quarantine = raw / f"{form}-{QUARANTINE}.parquet"
        if quarantine.exists():
            atomic_write_bytes(part.part(f"{form}-{QUARANTINE}", 0), quarantine.read_bytes())
    return part


def _glibc() -> Any:
    """The C library when it is glibc (malloc_trim, mallopt), else None."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


#: Private memory below which :func:`release_memory` does nothing: a process holding so
#: little has little to hand back, and the full collection would cost more than it gives (it
#: walks every object, millions in a process that also hosts Dagster or a test runner).
RELEASE_FROM = 256 << 20


def private_memory() -> int | None:
    """Bytes of memory this process alone holds (resident, not shared with the process it
    was forked from), or None where the system does not say (Linux's smaps_rollup)."""
    from dhsurvey.parallel import proc_bytes

    return proc_bytes("/proc/self/smaps_rollup", ("Private_Clean:", "Private_Dirty:"))


def release_memory() -> None:
    """Hand freed memory back to the system between steps and batches, when this process
    holds at least :data:`RELEASE_FROM` of its own.

    glibc and Arrow keep freed blocks for reuse, so a process's resident memory stays at its
    largest step; returning them lets the next step start from what is really in use.
    """
    import gc

    import pyarrow as pa

    held = private_memory()
    if held is not None and held < RELEASE_FROM:
        return
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


def _sum_reconciliation(parts: list[dict]) -> dict:
    """One form's reconciliation over batches: counts and per-rule counts add up."""
    out: dict[str, Any] = {"form": parts[0]["form"]}
    for name in ("raw", "accepted", "quarantined", "duplicates", "flagged"):
        out[name] = sum(p[name] for p in parts)
    for name in ("quarantine_by_rule", "flags_by_rule", "corrections", "automatic_corrections",
                 "duplicates_by_reason"):
        total: dict[str, int] = {}
        for p in parts:
            for rule, n in p.get(name, {}).items():
                total[rule] = total.get(rule, 0) + int(n)
        out[name] = dict(sorted(total.items(), key=lambda kv: -kv[1]))
    out["balanced"] = out["raw"] == out["accepted"] + out["quarantined"] + out["duplicates"]
    return out


def validate_batches(part: Partition, models: Mapping[str, FormModel], config: CountryConfig,
                     store: Store, iso: str, *, progress: Callable[[int], None] | None = None
                     ) -> dict[str, dict]:
    """Validate every batch: accepted root rows to one part per batch
    (:meth:`~dhsurvey.store.Store.accepted_part`), quarantine, flags and duplicates of all
    batches and the summed ``reconciliation.json`` beside them. Returns the reconciliations."""
    from dhsurvey.validate.run import validate_forms

    issues: dict[str, dict[str, list[pd.DataFrame]]] = {}
    corrected: dict[str, list[pd.DataFrame]] = {}
    recs: dict[str, list[dict]] = {}
    for batch in range(part.batches):
        result = validate_forms(part.raw(batch), models, config=config,
                                speeder_thresholds=part.speeder_thresholds)
        for form, r in result.forms.items():
            atomic_write_parquet(store.accepted_part(iso, form, batch), r.accepted)
            for name in ISSUES:
                issues.setdefault(form, {}).setdefault(name, []).append(getattr(r, name))
            recs.setdefault(form, []).append(r.reconciliation)
            if len(r.corrections):
                corrected.setdefault(form, []).append(r.corrections)
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
        folder = store.form_dir(iso, form)
        for name, frames in issues[form].items():
            frames = [f for f in frames if len(f)] or frames[:1]
            atomic_write_parquet(folder / issue_table(name), pd.concat(frames, ignore_index=True))
        if form in corrected:  # the log's entries and the blanked answers, as whole runs write
            atomic_write_parquet(folder / CORRECTIONS, pd.concat(corrected[form],
                                                                 ignore_index=True))
        atomic_write_json(folder / RECONCILIATION,
                          {**out[form], "country": config.iso, "batches": part.batches})
    return out


def restore_keys(records: Path, instance_ids: np.ndarray) -> None:
    """Put the instanceIDs back into the restricted record mapping (record numbers index
    ``instance_ids``), a block of rows at a time (encrypted at rest as the mapping is, by
    :func:`~dhsurvey.io.parquet_writer`)."""
    import pyarrow as pa

    target = records.with_name(f".{records.name}.tmp")
    writer = None
    with parquet_file(records) as source, open_private(target) as sink:  # owner-only
        try:
            for chunk in source.iter_batches(batch_size=READ_ROWS):
                frame = chunk.to_pandas()
                frame["KEY"] = instance_ids[frame["KEY"].to_numpy(dtype=np.int64)]
                # Coded columns (the form) are written out as text: one schema for every
                # block, whichever categories a block holds.
                frame = frame.astype({c: object for c in frame.columns
                                      if isinstance(frame[c].dtype, pd.CategoricalDtype)})
                table = pa.Table.from_pandas(frame, preserve_index=False,
                                             schema=writer.schema if writer else None)
                writer = writer or parquet_writer(sink, table.schema, records)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    if writer is not None:
        target.replace(records)
    else:
        target.unlink(missing_ok=True)
