"""One path through a country: ingest → validate → weight → release (its indicators estimated
from the released files), and pool.

Why: the CLI (``dhsurvey run``), the demo and the Dagster assets must produce the same
release from the same exports. Each stage here is a function of a :class:`~dhsurvey.store.Store`
and a country; callers only choose when to run them and what to report.

A country is validated whole, or — when its sample is larger than :data:`WHOLE_UP_TO`
households, or when asked — in batches of whole PSUs (:mod:`dhsurvey.batched`): peak memory
then follows the batch, not the country. Everything after validation reads the accepted rows
in parts and puts them in one canonical order (by instanceID) before anything is computed
from them, and the release's rows are written in the order the anonymisation plan gave them,
a fixed number of rows at a time. So the release is the same set of files, byte for byte,
whatever the strategy or batch size (the manifests' SHA-256s are equal; tested).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig, load_countries
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.io import atomic_write_parquet, atomic_write_text, read_parquet
from dhsurvey.store import POOLED, Store
from dhsurvey.weight.study import WEIGHTED

#: Countries with at most this many sampled households are validated whole.
WHOLE_UP_TO = 100_000
#: Households per batch when a country is validated in batches.
BATCH_HOUSEHOLDS = 30_000
#: Resident memory one tier of a release takes per sampled household, from the largest size
#: measured (bench/pipeline.py: KEN grown to 376,470 households, 2.1 GB for one tier).
TIER_BYTES_PER_HOUSEHOLD = 6_000
#: Released rows assembled and appended at a time (a constant: the files do not depend on
#: the batches validation used).
RELEASE_ROWS = 100_000
#: Values formatted at a time by the CSV, Stata and SPSS writers (rows × columns): the text
#: of a block of rows takes ~400 bytes per value in pandas.
WRITE_CELLS = 500_000
#: Sensitive columns read over the whole sample at a time (for the l-diversity report).
SENSITIVE_AT_ONCE = 8
#: Niceness of the process writing a country's fieldwork report beside its release.
QUALITY_NICENESS = 10


@dataclass
class Study:
    """The instruments (form models) and the country files, loaded and checked once."""

    instruments: Path
    models: dict[str, FormModel]
    countries: dict[str, CountryConfig]

    @classmethod
    def load(cls, instruments: str | Path) -> Study:
        from dhsurvey.forms.compile import instrument_paths

        instruments = Path(instruments)
        loaded = {m.form_id: m for m in (load_form(p) for p in instrument_paths(instruments))}
        # The weighted forms first, in their order (household, child, caregiver): tables,
        # reports and codebooks list them so.
        order = [f for f in WEIGHTED if f in loaded] + [f for f in loaded if f not in WEIGHTED]
        models = {f: loaded[f] for f in order}
        configs = load_countries(instruments, list(models.values()))
        return cls(instruments, models, {c.iso: c for c in configs})

    def config(self, iso: str) -> CountryConfig:
        if iso not in self.countries:
            raise DhsurveyError(f"no country file for '{iso}'", code="config-missing",
                                file=self.instruments / "countries", country=iso)
        return self.countries[iso]

    @cached_property
    def indicators(self) -> tuple[list[Any], dict[str, list[Any]]]:
        """The declared indicators and domains (``indicators.yaml``)."""
        from dhsurvey.release.indicators import load_indicators

        return load_indicators(self.instruments / "indicators.yaml", self.models)

    def indicator_columns(self, form: str) -> list[str]:
        """The answers the indicators and domains of ``form`` read (and KEY): a country of a
        million children is estimated from these columns, not its whole table."""
        from dhsurvey.release.indicators import reads

        declared, domains = self.indicators
        items = [*[i for i in declared if i.form == form], *domains.get(form, [])]
        model = self.models[form]
        return list(dict.fromkeys(["KEY", *(r for item in items for r in reads(item)
                                            if r in model)]))

    @cached_property
    def disclosure(self) -> Any:
        """The disclosure rules: intruder scenarios per tier, thresholds, recoding steps
        (``disclosure.yaml``, :mod:`dhsurvey.anonymise.scenario`)."""
        from dhsurvey.anonymise.scenario import RULES_FILE, load_rules

        return load_rules(self.instruments / RULES_FILE, self.models)

    @cached_property
    def backcheck_plan(self) -> Any:
        """The back-check plan (``backcheck.yaml``: the form and household id, the enumerator
        field, the re-asked variables with their types and tolerances;
        :class:`~dhsurvey.fieldwork.config.Plan`), or None when the study has none."""
        from dhsurvey.fieldwork.config import PLAN_FILE, load_plan

        path = self.instruments / PLAN_FILE
        return load_plan(path) if path.exists() else None

    @cached_property
    def indicator_forms(self) -> tuple[str, ...]:
        """The weighted forms that indicators are declared for (estimated per country)."""
        declared = {i.form for i in self.indicators[0]}
        return tuple(f for f in WEIGHTED if f in declared)


# ---------------------------------------------------------------------------- ingest


@dataclass
class Ingested:
    """One form's raw table of a country: what came in and where it went."""

    raw: Any  # RawForm
    exports: list[Path]
    paths: list[Path]


def ingest_form(store: Store, study: Study, iso: str, form: str, *,
                private_key: bytes | None = None,
                discovered: dict[Path, list[Any]] | None = None) -> Ingested:
    """Every export of ``form`` in the country's landing folder → ``raw/<ISO>/``.

    Submissions of another country stay out; those of no known country are kept in the raw
    quarantine (nothing that enters is lost). ``discovered``: the instances found in each
    folder of instance XML, shared by the forms of one ingest (each form reads every folder).
    """
    from dhsurvey.ingest.canonical import RawForm
    from dhsurvey.ingest.read import read_export_forms
    from dhsurvey.ingest.run import split_by_country
    from dhsurvey.ingest.store import combine, read_raw, write_raw

    config = study.config(iso)
    exports = store.exports(iso, form)
    parts: list[Any] = []
    for path in exports:
        for raw in read_export_forms(path, study.models, private_key_pem=private_key,
                                     only=form, discovered=discovered):
            parts.extend(split_by_country(raw, {str(config.code): iso}, iso).values())
    api = store.central_api(iso)
    if store.has_raw(iso, form, api):  # pulled by the Central sync job
        parts.append(read_raw(api, form))
    raw = combine(parts) if parts else RawForm(form, pd.DataFrame(columns=["KEY"]))
    return Ingested(raw, exports, write_raw(raw, store.raw(iso)))


def fetch_central(store: Store, study: Study, forms: list[str] | None = None, *,
                  project: int | None = None, private_key: bytes | None = None
                  ) -> dict[str, int]:
    """New submissions of each form from ODK Central (pyodk's config) into each country's
    ``landing/<ISO>/central-api/``, where :func:`ingest_form` reads them; returns the new
    submissions per ``ISO/form``.

    Central-managed encryption is decrypted by Central with ``$DHSURVEY_CENTRAL_PASSPHRASE``.
    Submissions it cannot decrypt (a self-managed key: Collect encrypted them with the form's
    public key) can only be split by country once decrypted, so they are downloaded to
    ``landing/central/encrypted/<form>/pending/<instance>/`` and decrypted there with
    ``private_key`` (default: the PEM file named by ``$DHSURVEY_PRIVATE_KEY``); a decrypted
    one moves to ``…/read/``. Without the key they stay pending, are counted as
    ``encrypted/<form>``, and the first fetch with the key decrypts them.
    """
    import os

    from dhsurvey.ingest.central_api import fetch_submissions
    from dhsurvey.ingest.decrypt import PRIVATE_KEY_ENV, load_private_key
    from dhsurvey.ingest.instances import instance_folder_name
    from dhsurvey.ingest.run import split_by_country
    from dhsurvey.ingest.store import combine, read_raw, supersede, write_raw
    from dhsurvey.ingest.xmlfolder import read_xml_folder

    if private_key is None and os.environ.get(PRIVATE_KEY_ENV):
        private_key = load_private_key()
    codes = {str(c.code): c.iso for c in study.countries.values()}
    fetched = {}
    for form in forms or list(study.models):
        model = study.models[form]
        encrypted = store.central_state() / "encrypted" / form
        pending = encrypted / "pending"
        raw = fetch_submissions(form, model, project_id=project,
                                state_dir=store.central_state(), encrypted_dir=pending)
        parts, done = [raw], set[str]()
        if private_key is not None and pending.is_dir() and any(pending.iterdir()):
            plain = read_xml_folder(pending, model, private_key_pem=private_key)
            done = set(plain.root["KEY"])
            # Central's not-decrypted rows of these are replaced by the decrypted submissions;
            # failures stay pending and were quarantined once, when Central first listed them.
            q = raw.quarantine
            raw.quarantine = q[~(q["rule"].eq("not-decrypted") & q["KEY"].isin(done))]
            parts.append(replace(plain, quarantine=plain.quarantine.iloc[0:0]))
        for iso, part in split_by_country(combine(parts), codes).items():
            folder = store.central_api(iso)
            # A submission sent again was edited or reviewed since: its newer version stands.
            write_raw(supersede(read_raw(folder, form), part)
                      if store.has_raw(iso, form, folder) else part, folder)
            fetched[f"{iso}/{form}"] = len(part.root)
        # Only once the decrypted submissions are stored are they no longer pending.
        _forget_not_decrypted(store, form, done)
        for key in done:
            source = pending / instance_folder_name(key)
            target = encrypted / "read" / instance_folder_name(key)
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if source.is_dir():
                source.rename(target)
        left = sum(1 for p in pending.iterdir() if p.is_dir()) if pending.is_dir() else 0
        if left:
            fetched[f"encrypted/{form}"] = left
    return fetched


def _forget_not_decrypted(store: Store, form: str, done: set[str]) -> None:
    """Drop the "not decrypted" rows an earlier fetch without the key kept for submissions now
    decrypted (filed under no country, as their country could not be read)."""
    from dhsurvey.ingest.run import UNKNOWN
    from dhsurvey.ingest.store import read_raw, write_raw

    folder = store.central_api(UNKNOWN)
    if not done or not store.has_raw(UNKNOWN, form, folder):
        return
    stored = read_raw(folder, form)
    q = stored.quarantine
    stale = q["rule"].eq("not-decrypted") & q["KEY"].isin(done)
    if stale.any():
        write_raw(replace(stored, quarantine=q[~stale].reset_index(drop=True)), folder)


def ingest(store: Store, study: Study, iso: str, *, private_key: bytes | None = None
           ) -> dict[str, Ingested]:
    """Every form's exports (:func:`ingest_form`). The household form, the largest, is read
    here, where its decryption pool spreads over every core; the other forms are read in a
    process beside it (:func:`~dhsurvey.parallel.beside`), which fills the time that reading
    the household's Central export leaves a core idle. Each form writes its own raw files."""
    from dhsurvey.forms.facts import study_facts
    from dhsurvey.ingest.read import discover_folders
    from dhsurvey.parallel import beside

    # Every form reads every folder of instance XML: each is walked once, before the forms
    # part (the landing folder does not change meanwhile).
    discovered = discover_folders(p for form in study.models for p in store.exports(iso, form))

    def read(forms: list[str]) -> dict[str, Ingested]:
        return {form: ingest_form(store, study, iso, form, private_key=private_key,
                                  discovered=discovered) for form in forms}

    largest = study_facts(study.models).household_form or next(iter(study.models))
    with beside(partial(read, [f for f in study.models if f != largest])) as others:
        done = read([largest])
        done.update(others())
    return {form: done[form] for form in study.models}


# -------------------------------------------------------------------------- validate


@dataclass
class Validated:
    """Per-form reconciliation (raw = accepted + quarantined + duplicates); the whole
    result when the country was validated in one piece (for reports), else None."""

    reconciliation: dict[str, dict]
    batches: int
    result: Any = None  # ValidationResult


def batches_for(store: Store, iso: str, batch_households: int | None) -> int | None:
    """Households per batch, or None to validate whole: asked for, or chosen by size."""
    if batch_households is not None:
        return batch_households
    return BATCH_HOUSEHOLDS if len(store.design(iso)) > WHOLE_UP_TO else None


def validate(store: Store, study: Study, iso: str, *, batch_households: int | None = None,
             quality: bool = True) -> Validated:
    """``raw/<ISO>`` → accepted, quarantine, flags, duplicates and reconciliation per form in
    ``clean/<ISO>/``; whole (with the high-frequency checks and report when ``quality``) or
    in batches of whole PSUs."""
    from dhsurvey.ingest.store import read_raw
    from dhsurvey.validate.run import validate_forms, write_validation

    config = study.config(iso)
    per_batch = batches_for(store, iso, batch_households)
    forms = [f for f in study.models if store.has_raw(iso, f)]
    for form in study.models:
        store.clear_accepted(iso, form)
    if per_batch is None:
        raws = {f: read_raw(store.raw(iso), f) for f in forms}
        result = validate_forms(raws, study.models, config=config)
        write_validation(result, store.clean(iso))
        validated = Validated({f: r.reconciliation for f, r in result.forms.items()}, 1, result)
        if quality:
            write_country_quality(store, study, iso, validated)
        return validated
    from dhsurvey.batched import (
        partition_raw,
        psu_batches,
        return_large_blocks,
        validate_batches,
    )

    return_large_blocks()
    models = {f: study.models[f] for f in forms}
    # The grouping does not reach the release (see the module docstring): a fixed seed.
    grouping = psu_batches(store.design(iso), per_batch, np.random.default_rng(0))
    part = partition_raw(store.raw(iso), models, grouping, store.work(iso, "partition"))
    recs = validate_batches(part, models, config, store, iso)
    return Validated(recs, part.batches)


def write_country_quality(store: Store, study: Study, iso: str, validated: Validated) -> None:
    """The high-frequency check tables and the fieldwork report of a country validated whole
    (``clean/<ISO>/``); nothing for one validated in batches (its result is not kept)."""
    from dhsurvey.validate.run import write_quality

    if validated.result is None:
        return
    write_quality(validated.result, study.models, store.quality(iso), config=study.config(iso),
                  expectations=False,
                  design=store.design(iso) if store.design_path(iso).exists() else None)


def morning(store: Store, study: Study, iso: str, *, record: bool = True,
            private_key: bytes | None = None) -> Any:
    """The morning report of a validated country (:mod:`dhsurvey.validate.morning`) against
    its previous run, with the back-checks in ``landing/<ISO>/backcheck/`` compared first
    (their tables in ``clean/<ISO>/backcheck/``); with ``record`` this run joins the
    country's history."""
    from dhsurvey.validate.monitoring import load_thresholds
    from dhsurvey.validate.morning import morning_report

    by_enumerator = None
    plan = study.backcheck_plan
    if plan is not None:
        from dhsurvey.validate.backcheck import country_backcheck

        tables = country_backcheck(store, plan, study.models, iso, study.config(iso),
                                   private_key=private_key)
        if tables is not None:
            by_enumerator = tables["by_enumerator"].rename(columns={plan.enumerator: "enum_id"})
    return morning_report(store, iso, study.models, study.config(iso),
                          load_thresholds(study.instruments), backcheck=by_enumerator,
                          record=record)


# ---------------------------------------------------------------------------- weight


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in instanceID order: what is computed from them does not depend on the order
    (or the batches) validation wrote them in."""
    return frame.sort_values("KEY", kind="stable").reset_index(drop=True)


def weight(store: Store, study: Study, iso: str) -> Any:
    """Household, child and caregiver weights with the child replicate design
    (``clean/<ISO>/weights/``); returns the :class:`~dhsurvey.weight.study.StudyWeights`."""
    from dhsurvey.weight.study import input_columns, study_weights

    columns = input_columns(study.models)
    household, child, caregiver = (_by_key(store.read_accepted(iso, f, columns[f]))
                                   for f in WEIGHTED)
    weights = study_weights(store.design(iso), household, child, caregiver,
                            study.config(iso), dense_replicates=False, models=study.models)
    store.write_weights(iso, weights)
    return weights


# ------------------------------------------------------------------------ indicators


def weighted_tables(store: Store, study: Study, iso: str, also: tuple[str, ...] = ()
                    ) -> dict[str, pd.DataFrame]:
    """The answers the indicators read (and the columns ``also``), joined to their weights
    and design variables, in instanceID order."""
    from dhsurvey.release.indicators import join_weights

    weights, forms = store.read_weights(iso), study.indicator_forms
    return {f: _by_key(t) for f, t in join_weights(
        {f: store.read_accepted(iso, f, list(dict.fromkeys([*study.indicator_columns(f),
                                                            *also])))
         for f in forms},
        {f: getattr(weights, f) for f in forms}).items()}


def write_indicators(folder: Path, table: pd.DataFrame) -> list[Path]:
    """``indicators.parquet`` and ``indicators.csv`` (text cells made spreadsheet-safe;
    numbers to 12 significant digits, enough to check a reproduction to 1e-8)."""
    from dhsurvey.io import neutralise_formulas

    return [atomic_write_parquet(folder / "indicators.parquet", table),
            atomic_write_text(folder / "indicators.csv",
                              neutralise_formulas(table).to_csv(index=False, float_format="%.12g"))]


#: Forms whose weights are raked to the country's margins (household weights are
#: nonresponse-adjusted only).
CALIBRATED = ("child", "caregiver")


def collected_indicators(store: Store, study: Study, iso: str) -> pd.DataFrame:
    """The indicators as the collected (clean, unsuppressed) data give them with the full
    design: what the release's own figures are compared with (the disclosure report's
    "Variance with masked units"), never published as the release's figures."""
    from dhsurvey.release.indicators import compute_indicators, form_margins, release_variables

    declared, domains = study.indicators
    margins = study.config(iso).margins
    tables = {f: release_variables(t, f, declared, domains) for f, t in
              weighted_tables(store, study, iso).items()}
    table = compute_indicators(tables, declared, domains, psu="cluster",
                               margins=form_margins(tables, margins, CALIBRATED))
    table.insert(0, "country", iso)
    return table


def file_indicators(folder: Path, study: Study, margins: Mapping[str, Mapping[str, float]],
                    label: str) -> pd.DataFrame:
    """Every declared indicator estimated from a release folder's own files (indicator and
    domain variables, weights raked to ``margins``, ``stratum`` and ``psu``), overall and
    by domain: what R gives on those files with the folder's ``svydesign.R``."""
    from dhsurvey.release.indicators import compute_indicators, file_tables, form_margins

    declared, domains = study.indicators
    tables = file_tables(folder, declared, domains, list(margins))
    table = compute_indicators(tables, declared, domains,
                               margins=form_margins(tables, margins, CALIBRATED))
    table.insert(0, "country", label)
    return table


def indicators(store: Store, study: Study, iso: str) -> pd.DataFrame:
    """The country's published indicators (``release/<ISO>/indicators.*``, the public-use
    files' estimates, which :func:`release` computes from those files)."""
    path = store.release(iso) / "indicators.parquet"
    if not path.exists():
        raise DhsurveyError(f"{iso} has no release yet: its indicators come from the released "
                            "files", code="release-missing", country=iso)
    return pd.read_parquet(path)


# --------------------------------------------------------------------------- release


def release_rng(key: bytes, iso: str, label: str) -> np.random.Generator:
    """Release IDs: fresh for each release label, identical when a release is rebuilt."""
    digest = hmac.new(key, f"release-ids\x00{iso}\x00{label}".encode(), hashlib.sha256)
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


class Numbering:
    """Record numbers standing in for instanceIDs while a release is planned: each form's
    records numbered in instanceID order, forms one after the other, so a number names one
    record of the country whatever the batches. (A million instanceIDs as Python strings
    take more memory than all their keys.)"""

    def __init__(self, store: Store, iso: str, forms: list[str]) -> None:
        self.starts: dict[str, int] = {}
        self.keys: dict[str, pd.Index] = {}
        n = 0
        for form in forms:
            keys = np.sort(store.read_accepted(iso, form, ["KEY"])["KEY"].to_numpy(object))
            self.starts[form], self.keys[form] = n, pd.Index(keys)
            n += len(keys)

    def number(self, form: str, keys: Any) -> np.ndarray:
        found = self.keys[form].get_indexer(pd.Index(list(keys)))
        if (found < 0).any():
            raise DhsurveyError("a record the plan does not know", code="release-records",
                                form=form)
        return self.starts[form] + found

    def numbered(self, form: str, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with KEY replaced by record numbers, in record-number order."""
        numbers = self.number(form, frame["KEY"])
        order = np.argsort(numbers, kind="stable")
        out = frame.iloc[order].reset_index(drop=True)
        out["KEY"] = pd.array(numbers[order], dtype="Int64")
        return out

    def instance_ids(self) -> np.ndarray:
        """instanceID of every record number."""
        parts = [k.to_numpy(object) for k in self.keys.values()]
        return np.concatenate(parts) if parts else np.array([], dtype=object)


class _PlanInputs(Mapping[str, pd.DataFrame]):
    """Some columns of each form's accepted rows, numbered and in record order; read when
    asked for and not kept (the anonymisation holds one form's input at a time)."""

    def __init__(self, store: Store, iso: str, columns: dict[str, list[str]],
                 numbering: Numbering) -> None:
        self.store, self.iso, self.columns, self.numbering = store, iso, columns, numbering

    def __getitem__(self, form: str) -> pd.DataFrame:
        return self.numbering.numbered(form, self.store.read_accepted(
            self.iso, form, self.columns[form]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


@dataclass
class CountryRelease:
    """What a country's release holds and what the disclosure gate decided."""

    folder: Path
    rows: dict[str, int]
    report: dict[str, Any]
    gate: Any  # GateResult
    findings: list[dict[str, Any]]
    replicates: dict[str, Any] | None
    manifest: Path
    warnings: list[str] = field(default_factory=list)
    tier: str = "public"
    merged_codes: dict[str, Any] = field(default_factory=dict)
    #: The tier's indicators, estimated from its own files.
    indicators: pd.DataFrame | None = None
    #: Every tier's release by name (set on the public one by :func:`release`).
    tiers: dict[str, CountryRelease] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        from dhsurvey.anonymise.release import release_files

        return release_files(self.folder)


def restricted_values(store: Store, iso: str, study: Study) -> list[str]:
    """What must never appear in a release: the canaries, every instanceID and every value of
    every direct identifier the country's raw data hold
    (:func:`dhsurvey.anonymise.restricted.restricted_values`)."""
    from dhsurvey.anonymise.restricted import restricted_values as values

    return values(store, iso, study.models)


def replicate_info(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The weights summary's replicate description per weighted form (method, scale,
    multipliers), or None when the weights were made without replicates."""
    infos = summary.get("replicates_by_form") or {"child": summary.get("replicates")}
    out = {f: i for f, i in infos.items() if isinstance(i, dict) and i.get("rscales")}
    return out or None


def _write_form(store: Store, iso: str, form: str, plan: Any, numbering: Numbering,
                replicates: Callable[[Any], pd.DataFrame] | None, appender: Any,
                tier: str = "public") -> None:
    """A form's released rows in plan order, :data:`RELEASE_ROWS` at a time.

    One part holds all the rows: they go straight in. Otherwise each accepted part's released
    rows are dealt to the slices of the plan order they fall in (scratch files in the
    restricted zone), and each slice is then sorted and appended: every part is read once.
    """
    positions = plan.positions[form]
    slices = range(0, len(positions), RELEASE_ROWS)
    parts = store.accepted_parts(iso, form)
    if len(parts) == 1 and len(slices) <= 1:
        batch = read_parquet(parts[0])
        if len(batch):
            appender.write(plan.rows(form, numbering.numbered(form, batch), replicates))
        return
    scratch = store.work(iso, f"release-{tier}-{form}")
    for p, path in enumerate(parts):
        batch = read_parquet(path)
        numbers = numbering.number(form, batch["KEY"])
        found = positions.get_indexer(numbers)
        kept = found >= 0
        if not kept.any():
            continue
        batch = batch[kept].assign(KEY=pd.array(numbers[kept], dtype="Int64"))
        rows = plan.rows(form, batch, replicates)  # in plan order
        where = np.sort(found[kept])
        rows.insert(0, "__position", where)
        bounds = np.searchsorted(where, [*slices, len(positions)])
        for i in range(len(slices)):
            if bounds[i + 1] > bounds[i]:
                rows.iloc[bounds[i]:bounds[i + 1]].to_pickle(
                    scratch / f"slice-{i:05d}-part-{p:05d}.pickle")
        del batch, rows
    for i in range(len(slices)):
        pieces = [pd.read_pickle(f) for f in sorted(scratch.glob(f"slice-{i:05d}-*.pickle"))]
        if pieces:
            frame = pd.concat(pieces, ignore_index=True).sort_values("__position")
            appender.write(frame.drop(columns="__position").reset_index(drop=True))
    shutil.rmtree(scratch, ignore_errors=True)


def release(store: Store, study: Study, iso: str, *, key: bytes, k: int | None = None,
            max_global_risk: float | None = None) -> CountryRelease:
    """Anonymise and release a country in every tier of the disclosure rules: the public-use
    files to ``release/<ISO>/``, the scientific-use files to ``licensed/<ISO>/``, each with
    its data files in every format, codebook, design set-ups, disclosure report, the scan of
    every file, its gate and manifest; restricted mappings to
    ``clean/<ISO>/restricted/<tier>/``. Returns the public tier (its ``tiers`` hold all);
    the country's gate passes only if every tier's does. ``k`` and ``max_global_risk``
    override the rules'.
    """
    from dataclasses import replace as replaced

    rules = study.disclosure
    if k is not None:
        rules = replaced(rules, k=k)
    if max_global_risk is not None:
        rules = replaced(rules, max_global_risk=max_global_risk)
    country = _ReleaseInputs.of(store, study, iso)
    # The tiers read the same inputs and write apart, so they are made side by side unless
    # memory must follow one tier.
    whole = all(len(store.accepted_parts(iso, f)) <= 1 for f in country.forms)
    tiers = _each_tier(rules, partial(_release_tier, store, study, iso, key, rules,
                                     country=country),
                       side_by_side=tiers_side_by_side(store, iso, whole=whole))
    store.write_gate(iso, {
        "passed": all(t.gate.passed for t in tiers.values()),
        "reasons": [f"{name}: {r}" for name, t in tiers.items() for r in t.gate.reasons],
        "tiers": {name: {"passed": t.gate.passed, "reasons": list(t.gate.reasons),
                         "folder": str(t.folder), "merged_codes": t.merged_codes,
                         "levels": {f: r.get("levels", {}) for f, r in t.report.items()}}
                  for name, t in tiers.items()},
        "merged_codes": tiers["public"].merged_codes})
    public = tiers["public"]
    public.tiers = tiers
    return public


def tiers_side_by_side(store: Store, iso: str, *, whole: bool) -> bool:
    """Whether a country's tiers are made side by side: always for a country validated whole;
    for one validated in batches (a large one) when the memory available now holds two tiers
    of its size (:data:`TIER_BYTES_PER_HOUSEHOLD`), else they take turns and memory follows
    one tier. The files are the same either way."""
    from dhsurvey.parallel import available_memory

    if whole:
        return True
    return available_memory() >= 2 * TIER_BYTES_PER_HOUSEHOLD * len(store.design(iso))


_Made = TypeVar("_Made")


def _each_tier(rules: Any, make: Callable[[str], _Made], *, side_by_side: bool = True
              ) -> dict[str, _Made]:
    """``make(name)`` for every tier of the disclosure ``rules``, in the rules' order.

    A tier with replicate weights is several times one without: it is made here, where its
    own pools (formats, scan) still spread over every core once the others are done, and
    each other tier in a process beside it (:func:`~dhsurvey.parallel.beside`; as two pieces
    of one pool, the large tier would use one core only), or after it here when not
    ``side_by_side``."""
    from dhsurvey.parallel import beside

    large = max(rules.tiers, key=lambda name: rules.tiers[name].design != "masked")
    made: dict[str, _Made] = {}
    with contextlib.ExitStack() as stack:
        others = {name: stack.enter_context(beside(partial(make, name))) if side_by_side
                  else partial(make, name) for name in rules.tiers if name != large}
        made[large] = make(large)
        made.update({name: result() for name, result in others.items()})
    return {name: made[name] for name in rules.tiers}


@dataclass
class _ReleaseInputs:
    """What every tier of a country's release reads alike, read once: the forms released,
    the record numbering, the weights on record numbers, each form's accepted columns, and
    the values the scan looks for."""

    forms: list[str]
    numbering: Numbering
    weights: Any  # StudyWeights, KEYs as record numbers
    columns: dict[str, list[str]]
    restricted: list[str]

    @classmethod
    def of(cls, store: Store, study: Study, iso: str) -> _ReleaseInputs:
        forms = [f for f in study.models if store.has_accepted(iso, f)]
        numbering = Numbering(store, iso, forms)
        weights = store.read_weights(iso)
        # Weights joined on record numbers, as the plan's inputs are.
        weights = replace(weights, **{w: getattr(weights, w).assign(KEY=pd.array(
            numbering.number(w, getattr(weights, w)["KEY"]), dtype="Int64"))
            for w in WEIGHTED})
        return cls(forms, numbering, weights,
                   {f: store.accepted_columns(iso, f) for f in forms},
                   restricted_values(store, iso, study))


def _tier_folder(store: Store, tier: Any, iso: str) -> Path:
    """Where a tier's files go: ``release/<ISO>`` (public) or ``licensed/<ISO>``."""
    return store.release(iso) if tier.folder == "release" else store.licensed(iso)


def masked_variance(collected: pd.DataFrame, files: pd.DataFrame) -> str:
    """The report's section comparing the headline indicators (overall) as the collected data
    give them with the full design (strata, PSUs, exact weights) and as a masked tier's files
    give them (pseudo-strata, pseudo-PSUs, rounded weights, suppressed keys): what masking
    costs."""
    keep = ["indicator", "domain", "level", "estimate", "se"]
    full = collected.loc[collected["domain"] == "all", keep]
    both = full.merge(files.loc[files["domain"] == "all", keep],
                      on=["indicator", "domain", "level"], suffixes=("_full", "_pub"))
    if both.empty:
        return ""
    lines = ["", "## Variance with masked units", "",
             "Headline indicators as the collected data give them with the full design "
             "(strata, PSUs, exact weights) and as these files give them (pseudo-strata, "
             "pseudo-PSUs, rounded weights raked again, suppressed keys), both by Taylor "
             "linearisation with calibration. The published `indicators.csv` is the second.",
             "", "| Indicator | Estimate (full) | Estimate (files) | SE (full) | SE (files) | "
             "SE ratio |", "|---|---:|---:|---:|---:|---:|"]
    for row in both.to_dict("records"):
        se_full, se_pub = float(row["se_full"]), float(row["se_pub"])
        ratio = se_pub / se_full if se_full else float("nan")
        lines.append(f"| `{row['indicator']}` | {float(row['estimate_full']):.4f} | "
                     f"{float(row['estimate_pub']):.4f} | {se_full:.4f} | {se_pub:.4f} | "
                     f"{ratio:.3f} |")
    return "\n".join(lines) + "\n"


def _release_tier(store: Store, study: Study, iso: str, key: bytes, rules: Any,
                  name: str, country: _ReleaseInputs) -> CountryRelease:
    """One tier of a country's release (see :func:`release`)."""
    from dhsurvey.anonymise.release import (
        ReleasePlan,
        anonymise_country,
        gate,
        plan_columns,
        release_files,
        scan_release,
    )
    from dhsurvey.batched import release_memory, restore_keys, return_large_blocks
    from dhsurvey.io import atomic_write_json
    from dhsurvey.release.design import (
        masked_text,
        variance_text,
        write_design,
        write_margins,
        write_masked,
    )
    from dhsurvey.release.formats.parquet import ParquetTable
    from dhsurvey.release.labels import for_countries, with_merged_codes, with_zones
    from dhsurvey.release.manifest import write_manifest
    from dhsurvey.release.methods import methods_note, write_methods
    from dhsurvey.release.stream import ParquetAppender, write_from_parquet
    return_large_blocks()
    tier = rules.tiers[name]
    masked = tier.design == "masked"
    config, models = study.config(iso), study.models
    forms, numbering, weights, columns = (country.forms, country.numbering, country.weights,
                                          country.columns)
    out = _tier_folder(store, tier, iso)
    restricted = store.restricted(iso) / name
    restricted.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Forms of a household are planned on the columns whose release depends on the whole
    # sample and applied to the accepted parts; the others (frontline workers) whole.
    planned = [f for f in forms if models[f].household_id]
    inputs = _PlanInputs(store, iso, {f: plan_columns(models[f], columns[f], rules)
                                      if f in planned else columns[f] for f in forms},
                         numbering)
    def anonymise(tables: Mapping[str, pd.DataFrame]) -> Any:
        # Each tier draws its own IDs: a public and a licensed file cannot be joined by them.
        return anonymise_country(inputs, tables, models, config, key=key, numeric_ids=True,
                                 rules=rules, tier=name, rng=release_rng(
                                     key, iso, f"{store.release_label}\x00{name}"))

    notes: list[str] = []
    anonymised = _protected(anonymise, {f: getattr(weights, f) for f in WEIGHTED}, config,
                            rules, notes)
    plan = ReleasePlan(anonymised, models, config, columns)
    for table_name, table in anonymised.restricted.items():
        atomic_write_parquet(restricted / f"{table_name}.parquet", table)
    anonymised.restricted = {}
    restore_keys(restricted / "records.parquet", numbering.instance_ids())
    for form in planned:
        sensitive = plan.sensitive(form)
        for i in range(0, len(sensitive), SENSITIVE_AT_ONCE):
            plan.diversity(form, numbering.numbered(form, store.read_accepted(
                iso, form, ["KEY", *sensitive[i:i + SENSITIVE_AT_ONCE]])))
    release_memory()

    declared, domains = study.indicators
    left_out = _unreproducible(store, iso, study, plan, numbering, planned)
    derive = _Derived(study, [i for i in declared if i.id not in left_out],
                      {f: [d for d in ds if d.name not in left_out]
                       for f, ds in domains.items()})
    labelled = with_merged_codes(with_zones(for_countries(models, [config.code]), [config]),
                                 anonymised.merged_codes)
    labelled = derive.labelled(labelled, _margin_labels(study, config))
    language = config.release_language
    warnings: list[str] = [*notes, *(f"{name} is not released in this tier: {why}"
                                     for name, why in left_out.items())]
    for form in forms:
        with ParquetAppender(out / f"{form}.parquet", labelled[form],
                             language=language) as appender:
            if form in planned:
                _write_form(store, iso, form, plan, numbering,
                            None if masked or form not in WEIGHTED else
                            partial(weights.replicates_for, form), derive.sink(form, appender),
                            name)
            else:
                derive.sink(form, appender).write(plan.table(form))
    release_memory()
    replicates = None if masked else replicate_info(weights.summary)
    variance = masked_text() if masked else variance_text(replicates) if replicates else None
    # The codebook reads the Parquet files a column at a time, never loaded whole.
    with _codebook_beside(lambda: {f: ParquetTable(out / f"{f}.parquet") for f in forms},
                          labelled, out, language, variance):
        for form in forms:
            width = len(columns[form]) + 200  # data and at most ~200 replicate columns
            write_from_parquet(out / f"{form}.parquet", labelled[form], out,
                               language=language, notes=warnings,
                               batch_rows=max(500, WRITE_CELLS // width))
        release_memory()
    tables = {f: ParquetTable(out / f"{f}.parquet") for f in forms}  # for the manifest
    if masked:
        write_masked(out)
    elif replicates:
        write_design(out, replicates)
    table = file_indicators(out, study, config.margins, iso)
    write_indicators(out, table)
    write_margins(out, {config.code: config.margins})
    write_methods(out, methods_note(config, weights.summary, anonymised.tier, variance,
                                    release=store.release_label, indicators=declared,
                                    notes=warnings))
    report_md = anonymised.markdown()
    if masked:
        report_md += masked_variance(collected_indicators(store, study, iso), table)
    atomic_write_text(out / "disclosure_risk.md", report_md)
    findings = scan_release(release_files(out), country.restricted)
    verdict = gate(anonymised, findings, k=rules.k, max_global_risk=rules.max_global_risk)
    # Written after the scan: file names, checksums and form versions, no data values.
    manifest = write_manifest(out, tables, models, {
        "release": store.release_label, "country": iso, "tier": name,
        "disclosure_gate": "passed" if verdict.passed else "failed"})
    atomic_write_json(restricted / "release-report.json",
                      {"tier": anonymised.tier, "files": anonymised.report})
    return CountryRelease(out, {f: len(t) for f, t in tables.items()}, anonymised.report,
                          verdict, findings, replicates, manifest, warnings, name,
                          anonymised.merged_codes, indicators=table)


@contextlib.contextmanager
def _codebook_beside(tables: Callable[[], Mapping[str, Any]], labelled: Mapping[str, Any],
                     out: Path, language: str | None, variance: str | None) -> Iterator[None]:
    """The codebook of the release folder ``out`` made and written in a process beside the
    block, which writes the data files (their pools take every core, the codebook one); its
    tables are those ``tables()`` gives in that process. Done when the block is."""
    from dhsurvey.parallel import beside
    from dhsurvey.release.codebook import build_codebook, write_codebook

    def codebook() -> None:
        write_codebook(build_codebook(tables(), labelled,
                                      weights={f: "weight" for f in WEIGHTED},
                                      language=language, variance=variance), out)

    with beside(codebook) as written:
        yield
        written()


def _protected(anonymise: Callable[[Mapping[str, pd.DataFrame]], Any],
               weighted: Mapping[str, pd.DataFrame], config: CountryConfig, rules: Any,
               notes: list[str]) -> Any:
    """The tier's forms anonymised, without the margin variables when only that protects it.

    The margin variables are never suppressed: a cell of stratum x sex x age group with
    fewer than k respondents cannot be protected while they are released. The tier is then
    released without them, if that protects it (no raking again, no margin domains;
    methods.md says so, from the note added to ``notes``)."""
    from dhsurvey.anonymise.release import gate

    anonymised = anonymise(weighted)
    passes = {"k": rules.k, "max_global_risk": rules.max_global_risk}
    if gate(anonymised, [], **passes).passed:
        return anonymised
    bare = anonymise({f: t.drop(columns=list(config.margins), errors="ignore")
                      for f, t in weighted.items()})
    if not gate(bare, [], **passes).passed:
        return anonymised
    notes.append(
        f"the margin variables ({', '.join(config.margins)}) are withheld from this "
        "tier: some cell of stratum x margins held fewer than "
        f"{rules.k} respondents, which no suppression of other keys could protect. "
        "indicators.csv here uses the weights as released (not raked again; SEs "
        "without the raking residuals) and has no margin domains")
    return bare


@dataclass
class _Adding:
    """An appender that passes each block of rows through ``add`` first."""

    appender: Any
    add: Callable[[pd.DataFrame], pd.DataFrame]

    def write(self, rows: pd.DataFrame) -> None:
        self.appender.write(self.add(rows))


class _Derived:
    """The variables the release adds to a form's released rows: the indicator and derived
    domain variables (from the released values) and each select_multiple's 0/1 dummies."""

    def __init__(self, study: Study, declared: list[Any], domains: dict[str, list[Any]]
                 ) -> None:
        self.study, self.declared, self.domains = study, declared, domains

    def rows(self, form: str, rows: pd.DataFrame) -> pd.DataFrame:
        from dhsurvey.release.indicators import release_variables
        from dhsurvey.release.labels import select_multiple_dummies

        rows = select_multiple_dummies(rows, self.study.models[form])
        return release_variables(rows, form, self.declared, self.domains)

    def sink(self, form: str, appender: Any) -> _Adding:
        """``appender`` whose ``write`` adds the variables first."""
        return _Adding(appender, partial(self.rows, form))

    def labelled(self, models: Mapping[str, FormModel], margins: Mapping[str, Any]
                 ) -> dict[str, FormModel]:
        """Copies of the labelled models that also label the added variables."""
        from dhsurvey.release.indicators import labelled_variables

        return {f: labelled_variables(m, f, self.declared, self.domains.get(f, []),
                                      margins if f in CALIBRATED else {})
                for f, m in models.items()}


def _margin_labels(study: Study, config: CountryConfig) -> dict[str, dict[str, str]]:
    """Code → label of each margin variable: a margin domain's labels, else the labels of
    the household form's field of that name (urban/rural), else the codes."""
    from dhsurvey.release.labels import choice_labels

    _, domains = study.indicators
    household = study.models.get("household")
    out = {}
    for margin, levels in config.margins.items():
        labels = next((dict(d.labels) for ds in domains.values() for d in ds
                       if d.margin == margin), None)
        if labels is None and household is not None and margin in household:
            labels = {str(k): v for k, v in choice_labels(
                household, household[margin], config.release_language).items()}
        out[margin] = {str(k): (labels or {}).get(str(k), str(k)) for k in levels}
    return out


def _unreproducible(store: Store, iso: str, study: Study, plan: Any, numbering: Numbering,
                    planned: list[str]) -> dict[str, str]:
    """Indicator and domain variables the tier cannot release: those reading a field the
    tier leaves out, and those its recoded, suppressed keys do not give as the collected
    values do (:func:`~dhsurvey.release.indicators.unreproducible`), with the reason."""
    from dhsurvey.release.indicators import reads, unreproducible, variable

    declared, domains = study.indicators
    out: dict[str, str] = {}
    for form in planned:
        released = plan.release.tables[form]
        items = [*[i for i in declared if i.form == form],
                 *[d for d in domains.get(form, []) if d.derived]]
        for item in items:
            gone = [r for r in reads(item) if r in study.models[form]
                    and plan.reasons[form].get(r, ("drop", ""))[0] == "drop"]
            if gone:
                out[variable(item)] = (f"it reads {gone}, left out of this tier by "
                                       "disclosure control (disclosure_risk.md)")
        items = [i for i in items if set(reads(i)) <= set(released.columns)]
        if not items:
            continue
        needed = list(dict.fromkeys(r for i in items for r in reads(i)))
        original = numbering.numbered(form, store.read_accepted(iso, form, ["KEY", *needed]))
        original = original.set_index("KEY").reindex(plan.positions[form]).reset_index(drop=True)
        out.update(unreproducible(released[needed].reset_index(drop=True), original, items))
    return out


# ------------------------------------------------------------------------------ pool


@dataclass
class Pooled:
    """The pooled release: countries in it, those left out and why, and its files."""

    countries: list[str]
    left_out: dict[str, str]
    folder: Path
    rows: dict[str, int]
    replicates: int
    notes: list[str]
    findings: list[dict[str, Any]]
    indicators: pd.DataFrame
    manifest: Path
    #: Every tier's pool by name (set on the public one by :func:`pool`).
    tiers: dict[str, Pooled] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(not t.findings for t in (self.tiers.values() or [self]))


def released_countries(store: Store, study: Study) -> tuple[list[str], dict[str, str]]:
    """Countries whose latest release passed the disclosure gate, and why the others are out."""
    included, left_out = [], {}
    for iso in study.countries:
        verdict = store.gate(iso)
        if verdict is None:
            left_out[iso] = "not released yet"
        elif not verdict["passed"]:
            left_out[iso] = "its disclosure gate failed"
        else:
            included.append(iso)
    return included, left_out


def _merged_codes(store: Store, isos: list[str], tier: str = "public"
                  ) -> dict[str, dict[str, dict]]:
    """The countries' merged levels of one tier, per form and column, united for the pooled
    labels."""
    out: dict[str, dict[str, dict]] = {}
    for iso in isos:
        verdict = store.gate(iso) or {}
        merged = verdict.get("tiers", {}).get(tier, {}).get("merged_codes",
                                                            verdict.get("merged_codes", {}))
        for form, cols in merged.items():
            for column, merge in cols.items():
                into = out.setdefault(form, {}).setdefault(column, {"levels": [],
                                                                    "into": merge["into"]})
                into["levels"] = sorted({*map(str, into["levels"]), *map(str, merge["levels"])})
    return out


def pooled_indicators(tables: Mapping[str, pd.DataFrame], study: Study, isos: list[str]
                      ) -> pd.DataFrame:
    """Indicators of a pooled release from its own tables (population-weighted over the
    countries), overall, by the indicator file's domains and by country: strata and PSUs
    distinct per country, weights raked within each country to its margins."""
    from dhsurvey.release.indicators import (
        Domain,
        compute_indicators,
        estimate_columns,
        pooled_margins,
    )

    declared, domains = study.indicators
    configs = {iso: study.config(iso) for iso in isos}
    names = list(dict.fromkeys(m for c in configs.values() for m in c.margins))
    frames = {form: tables[form][estimate_columns(form, list(tables[form].columns), declared,
                                                  domains, names, ["country"])].copy()
              for form in dict.fromkeys(i.form for i in declared) if form in tables}
    margins = pooled_margins(frames, {str(c.code): c.margins for c in configs.values()},
                             CALIBRATED)
    labels = {str(c.code): c.name for c in study.countries.values()}
    by_country = {form: [*domains.get(form, []), Domain("country", "${country}", labels)]
                  for form in frames}
    table = compute_indicators(frames, declared, by_country, margins=margins)
    table.insert(0, "country", "+".join(isos))
    return table


def pool(store: Store, study: Study) -> Pooled:
    """Every country whose gate passed, pooled per tier: ``release/pooled/`` (public) and
    ``licensed/pooled/``, one file per table, the same formats and codebook, the pooled
    indicators (public), and a scan of every pooled file. Returns the public pool (its
    ``tiers`` hold all)."""
    isos, left_out = released_countries(store, study)
    if len(isos) < 2:
        raise DhsurveyError(f"a pooled release needs two released countries; have {isos}, "
                            f"left out: {left_out}", code="pooled-countries")
    rules = study.disclosure
    restricted: list[str] = []
    for iso in isos:
        restricted += restricted_values(store, iso, study)
    tiers = _each_tier(rules, lambda name: _pool_tier(store, study, isos, left_out,
                                                     rules.tiers[name], restricted))
    public = tiers["public"]
    public.tiers = tiers
    return public


def _pool_tier(store: Store, study: Study, isos: list[str], left_out: dict[str, str],
               tier: Any, restricted: list[str]) -> Pooled:
    """One tier's pooled release (see :func:`pool`)."""
    from dhsurvey.anonymise.ladder import harmonise
    from dhsurvey.anonymise.release import release_files, scan_release
    from dhsurvey.release.design import (
        masked_text,
        variance_text,
        write_design,
        write_margins,
        write_masked,
    )
    from dhsurvey.release.labels import for_countries, with_merged_codes, with_zones
    from dhsurvey.release.manifest import write_manifest
    from dhsurvey.release.methods import methods_note, write_methods
    from dhsurvey.release.pooled import pool_release
    from dhsurvey.release.writers import write_release

    masked = tier.design == "masked"
    out = _tier_folder(store, tier, POOLED)
    tables, replicates = {}, {}
    for iso in isos:
        tables[iso] = {p.stem: pd.read_parquet(p) for p in sorted(
            _tier_folder(store, tier, iso).glob("*.parquet")) if p.stem != "indicators"}
        replicates[iso] = None if masked else replicate_info(store.weights_summary(iso))
    merged = _merged_codes(store, isos, tier.name)
    levels = {iso: (store.gate(iso) or {}).get("tiers", {}).get(tier.name, {}).get(
        "levels", {}) for iso in isos}
    tables, recoded = harmonise(tables, levels, study.disclosure, merged)
    margins = list(dict.fromkeys(m for iso in isos for m in study.config(iso).margins))
    pooled = pool_release(tables, replicates, margins)
    pooled.notes.extend(recoded)
    language = study.config(isos[0]).release_language
    configs = [study.config(iso) for iso in isos]
    labelled = with_merged_codes(
        with_zones(for_countries(study.models, [c.code for c in configs]), configs), merged)
    declared, domains = study.indicators
    labelled = _Derived(study, declared, domains).labelled(
        labelled, _margin_labels(study, study.config(isos[0])))
    variance = masked_text() if masked else \
        variance_text(pooled.replicates) if pooled.replicates else None
    with _codebook_beside(lambda: pooled.tables, labelled, out, language, variance):
        written = write_release(pooled.tables, labelled, out, language=language)
    if masked:
        write_masked(out)
    elif pooled.replicates:
        write_design(out, pooled.replicates)
    rules = study.disclosure
    write_methods(out, methods_note(None, None, {
        "tier": tier.name, "folder": tier.folder, "scenario": tier.scenario, "k": rules.k,
        "l_group": rules.l_group, "suppression_budget": rules.suppression_budget,
        "linked": all("hh_id" in t.columns for n, t in pooled.tables.items()
                      if n in ("household", "child", "caregiver"))},
        variance, release=store.release_label, countries=isos, indicators=declared))
    table = pooled_indicators(pooled.tables, study, isos)
    write_indicators(out, table)
    write_margins(out, {study.config(iso).code: study.config(iso).margins for iso in isos})
    findings = scan_release(release_files(out), restricted)
    manifest = write_manifest(out, pooled.tables, study.models, {
        "release": store.release_label, "tier": tier.name, "countries": isos,
        "left_out": left_out, "pooled_scan": "passed" if not findings else "failed"})
    notes = [n for n in pooled.notes if not masked or "replicate" not in n]
    return Pooled(isos, left_out, out, {n: len(t) for n, t in pooled.tables.items()},
                  pooled.replicates["child"]["count"] if pooled.replicates and
                  "child" in pooled.replicates else 0,
                  [*notes, *written.warnings], findings, table, manifest)


# ------------------------------------------------------------------------------- run


@dataclass
class CountryRun:
    ingested: dict[str, Ingested]
    validated: Validated
    weights: Any
    indicators: pd.DataFrame
    release: CountryRelease


def run_country(store: Store, study: Study, iso: str, *, key: bytes,
                private_key: bytes | None = None, batch_households: int | None = None,
                on_step: Callable[[str], None] | None = None) -> CountryRun:
    """A country from ``landing/<ISO>`` to ``release/<ISO>``, stage by stage."""
    def step(name: str) -> None:
        if on_step is not None:
            on_step(name)

    from dhsurvey.parallel import beside

    ingested = ingest(store, study, iso, private_key=private_key)
    step("ingest")
    validated = validate(store, study, iso, batch_households=batch_households, quality=False)
    step("validate")
    # Nothing after validation reads the fieldwork report, and the release leaves a core idle
    # part of the time: the report is written beside weighting and the release, in the time
    # the release's tiers leave (the licensed tier, the longest, keeps a core to itself).
    with beside(partial(write_country_quality, store, study, iso, validated),
                nice=QUALITY_NICENESS) as quality:
        weights = weight(store, study, iso)
        step("weight")
        released = release(store, study, iso, key=key)
        step("release")
        table = indicators(store, study, iso)
        step("indicators")
        quality()
        step("quality")
    return CountryRun(ingested, validated, weights, table, released)


def run_countries(store: Store, study: Study, isos: list[str], *, key: bytes,
                  private_key: bytes | None = None, batch_households: int | None = None,
                  workers: int | None = None) -> Iterator[tuple[str, CountryRun]]:
    """:func:`run_country` for several countries at once, in ``workers`` forked processes
    (default: :func:`~dhsurvey.parallel.workers_for_countries`): (ISO, run) as each country
    finishes.

    Countries share nothing until they are pooled, so they run side by side. What comes back
    from a worker is the run's outcome — reconciliation, release, gate, indicators — not its
    tables (the raw tables, the validation result and the weights stay in the store)."""
    from dhsurvey.parallel import forked_map, workers_for_countries

    def one(iso: str) -> CountryRun:
        run = run_country(store, study, iso, key=key, private_key=private_key,
                          batch_households=batch_households)
        return replace(run, ingested={}, weights=None,
                       validated=replace(run.validated, result=None))

    yield from forked_map(one, isos, workers=workers_for_countries(len(isos), workers),
                          as_done=True, size=lambda iso: study.config(iso).households)


__all__ = [
    "BATCH_HOUSEHOLDS", "RELEASE_ROWS", "TIER_BYTES_PER_HOUSEHOLD", "WHOLE_UP_TO",
    "CountryRelease", "CountryRun", "Ingested", "Numbering", "Pooled", "Study", "Validated",
    "CALIBRATED", "batches_for", "collected_indicators", "fetch_central", "file_indicators",
    "indicators", "ingest", "ingest_form", "masked_variance",
    "pool", "pooled_indicators", "release", "release_rng", "released_countries",
    "replicate_info",
    "restricted_values", "run_countries", "run_country", "tiers_side_by_side", "validate",
    "weight",
    "weighted_tables",
]
