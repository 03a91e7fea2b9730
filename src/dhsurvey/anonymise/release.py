"""Study-level anonymisation: accepted, weighted tables in, public release tables out.

Why a study layer on top of the generic engine (:mod:`~dhsurvey.anonymise.risk`,
:mod:`~dhsurvey.anonymise.suppress`, :mod:`~dhsurvey.anonymise.pseudonym`, ...): the engine
knows k-anonymity, not this survey. Which column is a name, which is an interviewer, which
counts need a top-code and which age an analyst cannot do without are decisions about these
instruments; they are made once here, from each field's ``pii`` class in the form model, so
a new question is classified by its workbook row and never by someone remembering a list.

The release of one country (:func:`anonymise_country`) does, in this order:

1. **Classify and drop** (:func:`classify`): direct identifiers, free text (unless allowed;
   then scrubbed), device and server metadata, interviewer codes, the ID fields of each
   form's ``instance_name`` and roster line pointers never leave the restricted zone. Dates
   become months. Columns not in the form model are dropped: unknown means unreviewed.
2. **Design and links**: only records with a weight are released (non-respondents carry no
   answers); ``stratum`` and ``psu`` get fresh random codes, household links a fresh random
   ``hh_id`` and every record a fresh random ``record_id`` (so two releases cannot be joined
   record by record); the keyed HMAC pseudonym of the household and the code mappings go to
   ``restricted`` only: ``records`` (form, KEY, record_id, hh_id), ``households``
   (hh_pseudonym, hh_id), ``strata`` and ``psu``. Rows are shuffled, since file order
   follows cluster and visit order.
3. **Global recoding** (``recode=True``, see :data:`FIXED_TOPCODES`, :data:`BANDS`, ...).
4. **Local suppression** to k-anonymity, first per form, then on the *linked household
   profile* (every household's keys from every form that carries ``hh_id``, joined: an
   intruder holding the release can join them too, and no child may be identifiable "by
   combining answers"). Suppression only adds wildcards, so the second pass never undoes the
   first; it adds only what joining the files requires (on KEN dev data: n_eligible for
   about 110 households).
5. **Report**: keys, k, violations before/after recoding and after suppression, weighted
   global risk (sdcMicro semantics), household risk, l-diversity of sensitive variables,
   suppressions and the share of values changed, as a dict and as Markdown.

Choices worth knowing:

- ``stratum`` (region x urban/rural) is a key in every weighted file, most important (never
  blanked in practice: a record blank on everything else hides in its whole stratum; the
  gate blocks a release if it ever is). ``psu`` is not a key: its code is random per
  release, carries no geography, and making it one would blank most answers in a
  20-household cluster; the residual cluster-level risk is the one DHS accepts.
- Dates become months and identifiers are dropped even with ``recode=False``: that switch
  exists to show what global recoding buys on the keys, not to release exact dates.
- Unweighted files (frontline workers) get risk 1/f_k with the sample as population.

:func:`scan_release` then reads the written files back and looks for restricted values and
identifier patterns; :func:`gate` turns the report and the scan into a release decision.
:func:`plant_canaries` seeds fake identifiers into restricted fields so tests can prove none
of them reaches a release file.

Errors are :class:`~dhsurvey.errors.DhsurveyError` with codes ``release-bad-argument``,
``release-weights`` and ``release-scan``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.pseudonym import id_text, numbered, pseudonym
from dhsurvey.anonymise.risk import (
    frequencies,
    global_risk,
    household_risk,
    l_diversity,
)
from dhsurvey.anonymise.suppress import local_suppression
from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.model import REF_RE, FormModel
from dhsurvey.ingest.canonical import META
from dhsurvey.weight.study import REPLICATE

# ------------------------------------------------------------------------------ constants

ACTIONS = ("drop", "month", "key", "sensitive", "keep")

#: HMAC purpose of the household pseudonym in the restricted mapping.
HOUSEHOLD_PURPOSE = "release-household"

#: Server and provenance metadata: who submitted, when to the second, from which file.
META_DROP = {
    "KEY": "instanceID: replaced by a fresh random record_id",
    "submitter": "server account of the interviewer",
    "review_state": "server workflow state, not data",
    "source_format": "provenance, not data",
    "source_file": "provenance (file path), not data",
    "submission_time": "exact upload time: narrows interview day and place",
}

#: Metadata and input types that identify a device, a person or a place, or hold media.
DROP_TYPES = {
    "deviceid": "device identifier",
    "username": "device user name",
    "phonenumber": "phone number",
    "email": "e-mail address",
    "simserial": "SIM serial number",
    "subscriberid": "SIM subscriber id",
    "audit": "audit log (timings and positions)",
    "start-geopoint": "GPS position",
    "background-audio": "audio recording",
    "geopoint": "GPS coordinates: no coordinates in any release",
    "geotrace": "GPS coordinates: no coordinates in any release",
    "geoshape": "GPS coordinates: no coordinates in any release",
    "image": "media attachment",
    "audio": "media attachment",
    "video": "media attachment",
    "file": "media attachment",
    "barcode": "scanned code (usually an ID)",
}

MONTH_TYPES = {"start", "end", "today", "date", "datetime"}

#: Study decisions on single fields, with the reason the report gives.
FIELD_DROP = {
    "enum_id": "interviewer code: not needed for analysis and it narrows location (teams "
    "work in fixed regions)",
    # Duplicates of a released key: a value blanked by local suppression would be recoverable.
    "hh_size": "duplicate of n_members (roster count), which is released top-coded",
    "child_age": "duplicate of age_now (the analysis age)",
    "age_self": "input to age_now (the analysis age)",
    "sel_age": "the selected child's age: released as age_now in the child file (linked by "
    "hh_id)",
    "sel_sex": "the selected child's sex: released as child_sex in the child file (linked by "
    "hh_id)",
}

#: Roster line pointers (``line``, ``sel_line``, ``caregiver_line``, ...): only meaningful
#: with the roster, which is never released.
LINE_POINTER = re.compile(r"(^|_)line$")

#: Top-codes (value = "this many or more"): household size as DHS does, phones at 6.
FIXED_TOPCODES = {"hh_size": 10, "n_members": 10, "hh_phones": 6, "hh_smartphones": 6}

#: Counts top-coded at their 99th percentile, floored to two significant digits: the largest
#: caseloads single out the one big agency in a region.
PERCENTILE_TOPCODE = re.compile(r"^(caseload|cases_\w+)$")
TOPCODE_QUANTILE = 0.99

#: Bands coded by their lower bound, so the column keeps its integer type (Stata, SPSS).
BANDS: dict[str, tuple[int, ...]] = {
    "cg_age": (18, 25, 35, 45, 55),  # 18-24, 25-34, 35-44, 45-54, 55+
    "years_service": (0, 5, 10, 20),  # 0-4, 5-9, 10-19, 20+
}

#: Keys never merged by the rare-category rule: region is a design domain analysts tabulate
#: by; age_now in single years 12-17 is what analysts need (local suppression handles it).
NO_MERGE = {"region", "stratum", "age_now"}

#: Code given to merged rare levels of an integer-coded select_one (string lists: "rare").
RARE_CODE = 995
RARE_LABEL = "rare"

#: Design variables added to the released tables.
DESIGN = ["stratum", "psu"]
WEIGHT_COLUMNS = ["weight", "weight_norm"]

#: Default importance per form, most important first (least important is suppressed first).
#: Keys a form has but this list does not name are appended (suppressed before all listed).
DEFAULT_IMPORTANCE: dict[str, list[str]] = {
    "household": ["stratum", "region", "urban_rural", "n_members", "n_eligible"],
    "child": ["stratum", "region", "age_now", "child_sex", "in_school", "school_level"],
    "caregiver": ["stratum", "region", "cg_sex", "cg_relation", "cg_age", "cg_educ"],
    # Frontline workers: a purposive sample analysed by agency and role, not by region.
    "frontline_worker": ["org_type", "role", "region", "years_service"],
}
LINKED = "linked"


# ----------------------------------------------------------------------- classification


def _instance_id_fields(model: FormModel) -> set[str]:
    """Fields an instance name is built from, except choice-coded ones (country, region)."""
    refs = set(REF_RE.findall(model.settings.get("instance_name", "")))
    return {r for r in refs if r in model and not model[r].is_select}


def classify_with_reasons(model: FormModel) -> dict[str, tuple[str, str]]:
    """Column -> (action, reason) for the META columns and every data field of ``model``."""
    out: dict[str, tuple[str, str]] = {}
    for col in META:
        out[col] = ("drop", META_DROP[col]) if col in META_DROP else ("keep", "form metadata")
    ids = _instance_id_fields(model)
    for item in model.fields:
        name = item.name
        if item.type in DROP_TYPES:
            out[name] = ("drop", DROP_TYPES[item.type])
        elif item.pii == "direct":
            out[name] = ("drop", "direct identifier")
        elif item.pii == "free_text":
            out[name] = ("drop", "free text (not in allowed_free_text)")
        elif name in ids:
            out[name] = ("drop", "record ID field (instance name): replaced by release IDs")
        elif name in FIELD_DROP:
            out[name] = ("drop", FIELD_DROP[name])
        elif LINE_POINTER.search(name):
            out[name] = ("drop", "roster line pointer: the roster is not released")
        elif item.type in MONTH_TYPES or name.endswith("_date"):
            out[name] = ("month", "date: released as YYYY-MM")
        elif item.pii == "quasi":
            out[name] = ("key", "quasi-identifier")
        elif item.pii == "sensitive":
            out[name] = ("sensitive", "sensitive answer")
        else:
            out[name] = ("keep", "")
    return out


def classify(model: FormModel) -> dict[str, str]:
    """Column -> action: ``drop``, ``month``, ``key``, ``sensitive`` or ``keep``.

    Rules (first match wins): META KEY/submitter/review_state/source_*/submission_time drop;
    device, phone, e-mail, audit, GPS and media types drop; ``pii`` direct and free_text
    drop (free text may be allowed and scrubbed per release); the non-choice fields of the
    form's ``instance_name`` (cluster, hh_number, child_line, cg_line, worker_no) drop;
    :data:`FIELD_DROP` (enum_id, duplicates of released keys) and roster line pointers drop;
    start/end/today/date/datetime and ``*_date`` become months; ``pii`` quasi are keys,
    sensitive stay sensitive; everything else is kept.
    """
    return {col: action for col, (action, _) in classify_with_reasons(model).items()}


# -------------------------------------------------------------------------- the release


@dataclass
class AnonymisedRelease:
    """Public tables, the restricted mappings that undo the release IDs, and the report.

    ``restricted`` must never leave the restricted zone: it joins the release back to
    instanceIDs, household pseudonyms, cluster numbers and strata.
    """

    tables: dict[str, pd.DataFrame]
    restricted: dict[str, pd.DataFrame]
    report: dict[str, dict[str, Any]]
    report_md: dict[str, str]

    @property
    def merged_codes(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per form and column, the rare levels merged into a new code (for its labels)."""
        return {form: {col: {"levels": m["levels"], "into": m["into"]}
                       for col, m in rep.get("rare_merged", {}).items()}
                for form, rep in self.report.items() if rep.get("rare_merged")}

    def markdown(self) -> str:
        """The whole report as one Markdown document (linked profile last)."""
        parts = ["# Disclosure control report", ""]
        parts += [self.report_md[name] for name in self.report_md]
        return "\n".join(parts)


@dataclass
class _Form:
    """One form while it is being anonymised."""

    name: str
    model: FormModel
    reasons: dict[str, tuple[str, str]]
    table: pd.DataFrame  # released columns (and IDs), one row per released record
    keys: list[str]
    weighted: bool
    accepted_rows: int
    scrubbed: list[str] = field(default_factory=list)
    months: list[str] = field(default_factory=list)
    before: pd.DataFrame | None = None  # table before recoding
    recodes: dict[str, str] = field(default_factory=dict)
    rare: dict[str, dict[str, Any]] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    after_recode: pd.DataFrame | None = None


def _local_tz(offset: str) -> dt.timezone:
    """``+03:00`` -> a fixed offset; months follow the local calendar of fieldwork."""
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", str(offset).strip())
    if not m:
        return dt.UTC
    sign = -1 if m.group(1) == "-" else 1
    delta = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
    return dt.timezone(sign * delta)


def _to_month(values: pd.Series, tz: dt.tzinfo) -> pd.Series:
    """YYYY-MM strings; missing stays missing. Tz-aware stamps are read in local time."""
    stamps = values
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert(tz).dt.tz_localize(None)  # local wall time
    # Formatted once per distinct month, not once per row (strftime is per element).
    months = stamps.dt.to_period("M")
    codes, uniques = pd.factorize(months)
    labels = np.array([p.strftime("%Y-%m") for p in uniques] + [None], dtype=object)
    return pd.Series(labels[codes], index=values.index, dtype="string")


def _household_numbers(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(cluster, hh_number) as whole numbers, NaN when missing: the household's own ID."""
    return tuple(np.trunc(pd.to_numeric(table[c], errors="coerce").astype(float)
                          .to_numpy(dtype=float, na_value=np.nan))
                 for c in ("cluster", "hh_number"))


#: Households whose pseudonyms are computed at once (their text goes to Arrow per block).
_PSEUDONYM_BLOCK = 100_000


def _household_pseudonyms(cluster: np.ndarray, number: np.ndarray, config: CountryConfig,
                          key: bytes) -> pd.api.extensions.ExtensionArray:
    """HMAC pseudonym of ``HH-<country>-<cluster>-<hh_number>`` per household (Arrow text:
    a million pseudonyms as one buffer, not a million Python strings)."""
    import pyarrow as pa

    blocks = [pa.array([pseudonym(key, HOUSEHOLD_PURPOSE, f"HH-{config.code}-{int(c)}-{int(n)}")
                        for c, n in zip(cluster[i:i + _PSEUDONYM_BLOCK],
                                        number[i:i + _PSEUDONYM_BLOCK], strict=True)],
                       type=pa.string())
              for i in range(0, len(cluster), _PSEUDONYM_BLOCK)]
    text = pa.chunked_array(blocks, type=pa.string()).combine_chunks()
    return pd.array(text, dtype="string[pyarrow]")


def _join_weights(form: str, table: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """Inner join on KEY: stratum, cluster, weight, weight_norm and replicate weights."""
    need = ["KEY", "stratum", "cluster", "weight"]
    missing = [c for c in need if c not in weights.columns]
    if missing:
        raise DhsurveyError(f"weights table lacks column(s) {missing}", code="release-weights",
                            form=form)
    if weights["KEY"].duplicated().any():
        raise DhsurveyError("weights table has duplicated KEYs", code="release-weights",
                            form=form)
    cols = need + [c for c in weights.columns if c == "weight_norm" or REPLICATE.match(str(c))]
    w = weights[cols].rename(columns={"cluster": "_cluster", "stratum": "_stratum"})
    return table.merge(w, on="KEY", how="inner", validate="one_to_one")


def _column_reasons(form: str, columns: Iterable[str], model: FormModel,
                    allowed: Sequence[str]) -> dict[str, tuple[str, str]]:
    """:func:`classify_with_reasons` for a table's columns: unknown columns drop, allowed free
    text is scrubbed."""
    reasons = classify_with_reasons(model)
    for col in columns:
        if col not in reasons:
            reasons[col] = ("drop", "not in the form model: unreviewed column")
    for col in allowed:
        if col not in model or model[col].pii != "free_text":
            raise DhsurveyError(f"allowed_free_text names {col!r}, not a free_text field",
                                code="release-bad-argument", form=form)
        reasons[col] = ("scrub", "free text allowed for this release: scrubbed")
    return reasons


def _released_column(values: pd.Series, action: str, tz: dt.tzinfo) -> pd.Series:
    """One column as released, for the actions that look at a single value at a time."""
    if action == "month":
        return _to_month(values, tz)
    if action == "scrub":
        from dhsurvey.anonymise.text import scrub

        return scrub(values).astype("string")
    return values


def _prepare(form: str, table: pd.DataFrame, model: FormModel, weights: pd.DataFrame | None,
             config: CountryConfig, allowed: Sequence[str],
             rng: np.random.Generator) -> tuple[_Form, pd.DataFrame]:
    """Drop, convert dates, join weights, shuffle. Returns the form and its ID frame."""
    reasons = _column_reasons(form, table.columns, model, allowed)
    if "KEY" not in table.columns:
        raise DhsurveyError("accepted table has no KEY column", code="release-bad-argument",
                            form=form)
    accepted_rows = len(table)
    data = table.copy()
    if weights is not None:
        data = _join_weights(form, data, weights)
    data = data.iloc[rng.permutation(len(data))].reset_index(drop=True)

    # Numbered records (a country in batches) keep integer KEYs: no object per row.
    record_keys = data["KEY"] if pd.api.types.is_integer_dtype(data["KEY"]) else \
        data["KEY"].astype(object)
    ids = pd.DataFrame({"form": form, "KEY": record_keys})
    if {"cluster", "hh_number"} <= set(data.columns):
        ids["_hh_cluster"], ids["_hh_number"] = _household_numbers(data)
    if weights is not None:
        ids["cluster"] = data["_cluster"].to_numpy()
        # Each stratum's name once, not once per record.
        strata = data["_stratum"].astype("category")
        ids["stratum"] = strata.cat.rename_categories(
            [str(c) for c in strata.cat.categories]).astype(object).to_numpy()

    tz = _local_tz(config.utc_offset)
    out = pd.DataFrame(index=data.index)
    months: list[str] = []
    scrubbed: list[str] = []
    keys: list[str] = []
    for col in [c for c in table.columns if c in reasons]:
        action = reasons[col][0]
        if action == "drop":
            continue
        out[col] = _released_column(data[col], action, tz)
        {"month": months, "scrub": scrubbed, "key": keys}.get(action, []).append(col)
    if weights is not None:
        # Hundreds of replicate columns: added in one concat, not one insert each.
        wanted = ["weight", *[c for c in data.columns
                              if c == "weight_norm" or REPLICATE.match(str(c))]]
        out = pd.concat([out, data[wanted].astype(float)], axis=1)
    return _Form(form, model, reasons, out, keys, weights is not None, accepted_rows,
                 scrubbed, months), ids


def _id_value(value: Any) -> Any:
    """1.0 -> 1: cluster numbers pass through a float column when a form has none."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def _random_codes(values: Iterable[Any], rng: np.random.Generator) -> dict[Any, int]:
    """A random permutation of 1..n over the distinct values: a fresh code per release."""
    distinct = sorted({_id_value(v) for v in values if not pd.isna(v)},
                      key=lambda v: (not isinstance(v, int), v if isinstance(v, int) else 0,
                                     str(v)))
    codes = rng.permutation(len(distinct)) + 1
    return {v: int(c) for v, c in zip(distinct, codes, strict=True)}


def _coded(values: pd.Series, codes: dict[Any, int]) -> pd.api.extensions.ExtensionArray:
    """Each value's code (Int64), looked up once per distinct value."""
    at, distinct = pd.factorize(values, use_na_sentinel=True)
    table = np.array([codes[_id_value(v)] for v in distinct] + [0], dtype=np.int64)
    return pd.arrays.IntegerArray(table[at], at < 0)


def _household_codes(cluster: np.ndarray, number: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's household (-1 when its ID is missing), households in order of first
    appearance, and each household's cluster and number."""
    valid = ~(np.isnan(cluster) | np.isnan(number))
    cc, cu = pd.factorize(cluster[valid])
    nc, nu = pd.factorize(number[valid])
    at, pairs = pd.factorize(cc.astype(np.int64) * max(len(nu), 1) + nc)
    codes = np.full(len(cluster), -1, dtype=np.int64)
    codes[valid] = at
    return codes, cu[pairs // max(len(nu), 1)], nu[pairs % max(len(nu), 1)]


def _assign_ids(forms: dict[str, _Form], ids: dict[str, pd.DataFrame],
                rng: np.random.Generator, config: CountryConfig, key: bytes
                ) -> dict[str, pd.DataFrame]:
    """record_id, hh_id, stratum and psu codes for every form; the restricted mappings.

    The IDs go into the tables as numbers (UInt64) and are written as text at the end
    (:func:`_text_ids`); the restricted mappings hold their text in Arrow columns.
    """
    names = list(forms)
    all_ids = pd.concat([ids[f] for f in names], ignore_index=True)
    lengths = [len(ids[f]) for f in names]
    starts = np.cumsum([0, *lengths])

    codes, distinct = pd.factorize(all_ids["KEY"], use_na_sentinel=True)
    record, _ = numbered(codes, len(distinct), rng)
    del codes, distinct
    restricted: dict[str, pd.DataFrame] = {}
    records = pd.DataFrame({"form": all_ids["form"].astype("category"), "KEY": all_ids["KEY"],
                            "record_id": id_text(record)})
    if "_hh_cluster" in all_ids.columns:
        # One household per (cluster, hh_number) in order of first appearance, as a
        # factorisation of the pseudonyms would give; one HMAC per household.
        codes, cluster, number = _household_codes(all_ids.pop("_hh_cluster").to_numpy(),
                                                  all_ids.pop("_hh_number").to_numpy())
        hh, numbers = numbered(codes, len(cluster), rng)
        names_ = _household_pseudonyms(cluster, number, config, key)
        restricted["households"] = pd.DataFrame({"hh_pseudonym": names_,
                                                 "hh_id": id_text(numbers)})
        # A record's household by its release ID; the households' mapping gives its
        # pseudonym (one pseudonym per household, not one per record).
        records["hh_id"] = id_text(hh)
        del codes, cluster, number, numbers, names_
    restricted["records"] = records
    if "stratum" in all_ids.columns:
        strata = _random_codes(pd.unique(all_ids["stratum"]), rng)
        psus = _random_codes(pd.unique(all_ids["cluster"]), rng)
        restricted["strata"] = pd.DataFrame({"stratum": list(strata),
                                             "stratum_code": list(strata.values())})
        restricted["psu"] = pd.DataFrame({"cluster": list(psus), "psu": list(psus.values())})
    for i, f in enumerate(names):
        rows = slice(starts[i], starts[i + 1])
        head = pd.DataFrame({"record_id": record[rows]})
        if "_hh_cluster" in ids[f].columns:  # then every form's households were numbered
            head["hh_id"] = hh[rows]
        if forms[f].weighted:
            part = all_ids.iloc[rows]
            head["stratum"] = _coded(part["stratum"], strata)
            head["psu"] = _coded(part["cluster"], psus)
            forms[f].keys = ["stratum", *forms[f].keys]
        forms[f].table = pd.concat([head, forms[f].table.reset_index(drop=True)], axis=1)
    return restricted


def _text_ids(table: pd.DataFrame) -> pd.DataFrame:
    """record_id and hh_id as released: 16 hex digits (pandas ``string``)."""
    for col in ("record_id", "hh_id"):
        if col in table.columns and not pd.api.types.is_string_dtype(table[col]):
            table[col] = pd.array(np.asarray(id_text(table[col].array), dtype=object),
                                  dtype="string")
    return table


# ---------------------------------------------------------------------------- recoding


def _nice_floor(value: float) -> int:
    """Floor to two significant digits (487 -> 480, 1234 -> 1200, 7 -> 7)."""
    if value < 10:
        return int(math.floor(value))
    step = 10 ** (int(math.floor(math.log10(value))) - 1)
    return int(math.floor(value / step) * step)


def _changed(before: pd.Series, after: pd.Series) -> int:
    """Observed values that recoding or suppression altered."""
    b = before.astype(object).where(before.notna(), None)
    a = after.astype(object).where(after.notna(), None)
    return int(sum(1 for x, y in zip(b, a, strict=True) if x is not None and x != y))


def _merge_rare(values: pd.Series, k: int, code: Any) -> tuple[pd.Series, list[Any]]:
    """Levels with fewer than ``k`` records merged into ``code`` (grown until it has k)."""
    counts = values.value_counts(dropna=True).sort_values(kind="stable")
    rare = [lvl for lvl, n in counts.items() if n < k]
    if not rare:
        return values, []
    total = int(counts[rare].sum())
    for lvl, n in counts.items():  # smallest first: grow the merged level to k records
        if total >= k or len(rare) >= len(counts) - 1:
            break
        if lvl not in rare:
            rare.append(lvl)
            total += int(n)
    if len(rare) < 2 and total < k:
        return values, []  # one rare level alone: merging would only rename it
    out = values.copy()
    if isinstance(out.dtype, pd.CategoricalDtype):
        out = out.astype(object)
    out[values.isin(rare)] = code
    return out.astype(values.dtype) if not isinstance(values.dtype, pd.CategoricalDtype) \
        else out, sorted(rare, key=str)


def _tail_merge(values: pd.Series, k: int) -> tuple[pd.Series, str]:
    """Top- and bottom-code a numeric key so its extreme levels hold at least ``k`` records."""
    x = pd.to_numeric(values, errors="coerce")
    levels = x.value_counts(dropna=True).sort_index()
    if levels.sum() < k or len(levels) < 2:
        return values, ""
    notes = []
    above = levels[::-1].cumsum()[::-1]  # records >= level
    top = levels.index[-1]
    if levels.iloc[-1] < k:
        top = max(lvl for lvl, n in above.items() if n >= k)
        notes.append(f"top-coded at {_num(top)} (= {_num(top)} or more)")
    below = levels.cumsum()  # records <= level
    bottom = levels.index[0]
    if levels.iloc[0] < k:
        bottom = min(lvl for lvl, n in below.items() if n >= k)
        if bottom >= top:
            return values, ""
        notes.append(f"bottom-coded at {_num(bottom)} (= {_num(bottom)} or less)")
    if not notes:
        return values, ""
    out = x.clip(lower=bottom, upper=top).astype(values.dtype)
    return out, "; ".join(notes)


def _num(value: Any) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def _band(values: pd.Series, lows: Sequence[int]) -> pd.Series:
    """Each value replaced by the lower bound of its band (below the first: first band)."""
    x = pd.to_numeric(values, errors="coerce").astype("Float64")
    edges = np.asarray(lows, dtype=float)
    idx = np.searchsorted(edges, x.fillna(edges[0]).to_numpy(dtype=float), side="right") - 1
    coded = edges[np.maximum(idx, 0)]
    out = pd.Series(coded, index=values.index).where(x.notna().to_numpy())
    return out.astype("Int64") if values.dtype == "Int64" else out.astype(values.dtype)


def _band_text(lows: Sequence[int]) -> str:
    parts = [f"{a}-{b - 1}" for a, b in zip(lows, lows[1:], strict=False)] + [f"{lows[-1]}+"]
    return "bands " + ", ".join(parts) + " (coded by lower bound)"


def _recodable(column: Any) -> bool:
    """A count :func:`_recode` top-codes or bands (keys are recoded too: rare levels)."""
    return column in FIXED_TOPCODES or column in BANDS or bool(
        PERCENTILE_TOPCODE.match(str(column)))


def _recode(form: _Form, k: int) -> None:
    """Global recoding of one form, recorded in ``form.recodes`` and ``form.rare``."""
    t = form.table
    for col, cap in FIXED_TOPCODES.items():
        if col in t.columns and pd.api.types.is_numeric_dtype(t[col]):
            t[col] = t[col].clip(upper=cap)
            form.recodes[col] = f"top-coded at {cap} (= {cap} or more)"
    for col in list(t.columns):
        if PERCENTILE_TOPCODE.match(col) and pd.api.types.is_numeric_dtype(t[col]):
            x = t[col].dropna()
            if x.empty:
                continue
            cap = _nice_floor(float(np.quantile(x.to_numpy(dtype=float), TOPCODE_QUANTILE)))
            if (x > cap).any():
                t[col] = t[col].clip(upper=cap)
                form.recodes[col] = (f"top-coded at {cap} (99th percentile floored to two "
                                     f"significant digits; = {cap} or more)")
    for col, lows in BANDS.items():
        if col in t.columns and pd.api.types.is_numeric_dtype(t[col]):
            t[col] = _band(t[col], lows)
            form.recodes[col] = _band_text(lows)
    for col in form.keys:
        if col in NO_MERGE or col not in form.model:
            continue
        item = form.model[col]
        if item.type == "select_one":
            numeric = pd.api.types.is_numeric_dtype(t[col])
            code: Any = RARE_CODE if numeric else RARE_LABEL
            lst = form.model.choices_for(item)
            if numeric and lst is not None:
                taken = {c for c in lst.codes()}
                while str(code) in taken:
                    code = code * 10 + 5
            merged, levels = _merge_rare(t[col], k, code)
            if levels:
                t[col] = merged
                form.rare[col] = {"levels": [_plain(v) for v in levels], "into": _plain(code),
                                  "records": int(merged.eq(code).sum())}
                form.recodes[col] = (f"levels {', '.join(map(str, form.rare[col]['levels']))} "
                                     f"(< {k} records) merged into {code}")
        elif pd.api.types.is_numeric_dtype(t[col]):
            merged, note = _tail_merge(t[col], k)
            if note:
                t[col] = merged
                form.recodes[col] = "; ".join(x for x in (form.recodes.get(col), note) if x)


def _stage(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Some columns of ``table`` as a frame over the same arrays (no copy)."""
    return pd.DataFrame({c: table[c] for c in columns}, copy=False)


def _plain(value: Any) -> Any:
    """numpy scalars to Python for the JSON-able report."""
    return value.item() if hasattr(value, "item") else value


# ------------------------------------------------------------------------- suppression


def _importance(keys: list[str], preferred: Sequence[str]) -> list[str]:
    """Keys most important first: ``preferred`` order, unlisted keys after (suppressed first)."""
    listed = [k for k in preferred if k in keys]
    return listed + [k for k in keys if k not in listed]


def _restore_dtypes(table: pd.DataFrame, original: pd.DataFrame, keys: list[str]) -> None:
    """local_suppression widens Int64 to Float64 to hold missing values; narrow them back."""
    for key in keys:
        if original[key].dtype == "Int64" and table[key].dtype != "Int64":
            table[key] = table[key].astype("Float64").round().astype("Int64")


def _plain_values(values: pd.Series) -> np.ndarray:
    """A key's values for the profile: numbers as float64 with NaN for missing (a nullable
    integer column would give an object per value), anything else as objects."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return values.to_numpy()


def _scatter(values: np.ndarray, present: np.ndarray, at: np.ndarray, n: int,
             complete: bool) -> np.ndarray:
    """A form's values on their household's row of the profile; households the form lacks
    get NaN, as an outer merge leaves them (an int column turns float only then)."""
    if complete:
        out = np.empty(n, dtype=values.dtype)
    else:
        out = np.full(n, np.nan, dtype=object if values.dtype == object else np.float64)
    out[at] = values[present]
    return out


def _linked_frame(forms: dict[str, _Form], source: str = "table"
                  ) -> tuple[pd.DataFrame, list[str], dict[str, list[tuple[str, str]]]]:
    """Every household's keys from every form carrying ``hh_id``, one row per household.

    Keys found in several forms (stratum, region) appear once; form-specific keys are named
    ``form:key``. A form without a record for the household leaves its keys missing, i.e.
    wildcards (sdcMicro semantics, as everywhere in the engine); the per-form pass covers
    each file on its own. ``source`` picks the stage: ``before``, ``after_recode`` or
    ``table`` (current). Returns the frame, its keys and, per key column, the (form, key)
    pairs a blanked value is written back to.
    """
    linked = [f for f in forms.values() if "hh_id" in f.table.columns]
    counts: dict[str, int] = {}
    for f in linked:
        for key in f.keys:
            counts[key] = counts.get(key, 0) + 1
    targets: dict[str, list[tuple[str, str]]] = {}
    # One row per household, in the sort order of hh_id (what an outer merge on hh_id
    # gives), each form's columns scattered into it: no merge, whose hash tables on
    # millions of IDs take more memory than the profile itself.
    ids = [getattr(f, source)["hh_id"] for f in linked]
    # The ID numbers sort as their fixed-width text does.
    codes, uniques = pd.factorize(pd.concat(ids, ignore_index=True), sort=True)
    n = len(uniques)
    starts = np.cumsum([0, *map(len, ids)])
    columns: dict[str, Any] = {"hh_id": np.arange(n)}
    for i, f in enumerate(linked):
        t = getattr(f, source)
        code = codes[starts[i]:starts[i + 1]]
        present = code >= 0  # a record without a household takes no part
        at = code[present]
        if len(np.unique(at)) != len(at):
            raise DhsurveyError("two records of one household in a linked file",
                                code="release-bad-argument", form=f.name)
        complete = len(at) == n
        columns[f"_row:{f.name}"] = _scatter(np.asarray(t.index), present, at, n, complete)
        for key in f.keys:
            columns[f"{f.name}:{key}"] = _scatter(_plain_values(t[key]), present, at, n,
                                                  complete)
            targets.setdefault(key if counts[key] > 1 else f"{f.name}:{key}", []).append(
                (f.name, key))
        if f.weighted:
            columns[f"_w:{f.name}"] = _scatter(t["weight"].to_numpy(), present, at, n,
                                               complete)
    frame = pd.DataFrame(columns, copy=False)  # the arrays as they are: no second copy
    del columns
    for key in [key for key, n in counts.items() if n > 1]:
        cols = [f"{f.name}:{key}" for f in linked if key in f.keys]
        numeric = all(frame[c].dtype.kind == "f" for c in cols)
        value = frame[cols[0]] if numeric else frame[cols[0]].astype(object)
        for col in cols[1:]:  # equal for one household; a blank in one form is filled
            value = value.where(value.notna(), frame[col] if numeric
                                else frame[col].astype(object))
        frame = frame.drop(columns=cols)
        frame[key] = value.where(value.notna(), None)
    keys = list(targets)
    wcols = sorted((c for c in frame.columns if c.startswith("_w:")),
                   key=lambda c: (c != "_w:household", c))
    weight = pd.Series(np.nan, index=frame.index)
    for col in wcols:  # the household's weight, else a member's
        weight = weight.fillna(frame[col].astype(float))
    frame["_weight"] = weight
    return frame, keys, targets


#: Round-robin order of the forms in the linked profile: the child's keys first.
LINK_PRIORITY = ("child", "caregiver", "household")


def _linked_importance(forms: dict[str, _Form], keys: list[str],
                       preferred: Sequence[str] | None) -> list[str]:
    """Shared keys (stratum, region), then the forms' own orders interleaved, child first."""
    if preferred is not None:
        return _importance(keys, preferred)
    linked = sorted((f for f in forms.values() if "hh_id" in f.table.columns),
                    key=lambda f: (LINK_PRIORITY.index(f.name) if f.name in LINK_PRIORITY
                                   else len(LINK_PRIORITY), f.name))
    own = {f.name: _importance(f.keys, DEFAULT_IMPORTANCE.get(f.name, [])) for f in linked}
    shared = [k for k in keys if ":" not in k]
    shared.sort(key=lambda k: min(o.index(k) for o in own.values() if k in o))
    orders = [[f"{name}:{k}" for k in o if f"{name}:{k}" in keys] for name, o in own.items()]
    rest: list[str] = []
    for i in range(max((len(o) for o in orders), default=0)):
        rest += [o[i] for o in orders if i < len(o)]
    return _importance(keys, shared + rest)


def _risk(df: pd.DataFrame, keys: list[str], weight: str | None) -> dict[str, float]:
    if not keys or df.empty:
        return {"risk": 0.0, "expected_reidentifications": 0.0}
    g = global_risk(df, keys, weight)
    return {"risk": g.risk, "expected_reidentifications": g.expected_reidentifications}


def _violations(df: pd.DataFrame, keys: list[str], k: int) -> tuple[int, int | None]:
    """(records with f_k < k, smallest f_k)."""
    if not keys or df.empty:
        return 0, None
    fk = frequencies(df, keys)["fk"]
    return int((fk < k).sum()), int(fk.min())


def _suppress_linked(forms: dict[str, _Form], k: int, preferred: Sequence[str] | None,
                     suppress: bool) -> dict[str, Any] | None:
    """Make the household profile k-anonymous; write blanked values back into each form.

    Runs after the per-form pass, so it only adds what joining the files requires.
    """
    if sum("hh_id" in f.table.columns for f in forms.values()) < 2:
        return None
    report: dict[str, Any] = {"violations": {}, "global_risk": {}, "suppressions": {}}
    # One household profile at a time: each is as large as the household file. The
    # current one (last) is kept for suppression.
    for stage, source in (("before_recoding", "before"), ("after_recoding", "after_recode"),
                          ("after_form_suppression", "table")):
        frame, keys, targets = _linked_frame(forms, source)
        weight = "_weight" if frame["_weight"].notna().all() else None
        report["violations"][stage] = _violations(frame, keys, k)[0]
        report["global_risk"][stage] = _risk(frame, keys, weight)
        if source != "table":
            del frame
    order = _linked_importance(forms, keys, preferred)
    report = {"keys": keys, "importance": order, "rows": len(frame),
              "weighted": weight is not None, **report}
    if suppress:
        result = local_suppression(frame, keys, k, importance=order, weight=weight)
        counts: dict[str, int] = {}
        for col, pairs in targets.items():
            blank = result.data[col].isna() & frame[col].notna()
            for form_name, key in pairs:
                rows_col = f"_row:{form_name}"
                rows = frame.loc[blank & frame[rows_col].notna(), rows_col].astype(int)
                t = forms[form_name].table
                hit = t.index.isin(rows.unique()) & t[key].notna().to_numpy()
                n = int(hit.sum())
                if n:
                    original = t[[key]]
                    blanked = t[key].copy()  # a new column: the stages keep the old one
                    blanked[hit] = None
                    t[key] = blanked
                    _restore_dtypes(t, original, [key])
                    forms[form_name].suppressed[key] = forms[form_name].suppressed.get(key, 0) + n
                    counts[f"{form_name}:{key}"] = n
        report["suppressions"] = counts
        del frame, result
        frame, _, _ = _linked_frame(forms, "table")
    violations, min_fk = _violations(frame, keys, k)
    report["violations"]["after_suppression"] = violations
    report["global_risk"]["after_suppression"] = _risk(frame, keys, weight)
    report["min_fk"] = min_fk
    return report


# ---------------------------------------------------------------------------- reporting


def _l_diversity(df: pd.DataFrame, keys: list[str], sensitive: str) -> dict[str, Any]:
    """Distinct l over the keys: smallest l and records whose group shows a single answer."""
    if not keys or df[sensitive].notna().sum() == 0:
        return {"min_l": None, "records_l1": 0, "share_l1": 0.0}
    col = df[sensitive]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object).where(col.notna(), None)
    frame = df[keys].assign(**{"_s": col})
    ell = l_diversity(frame, keys, "_s", "distinct")
    seen = ell[ell > 0]
    ones = int((seen == 1).sum())
    return {"min_l": int(seen.min()) if len(seen) else None, "records_l1": ones,
            "share_l1": ones / len(seen) if len(seen) else 0.0}


def _form_report(form: _Form, k: int, suppress: bool) -> dict[str, Any]:
    """The numbers for one form (see the module docstring)."""
    t, before, mid = form.table, form.before, form.after_recode
    assert before is not None and mid is not None
    weight = "weight" if form.weighted else None
    n = len(t)
    keys = form.keys
    v_before, _ = _violations(before, keys, k)
    v_recode, _ = _violations(mid, keys, k)
    v_after, min_fk = _violations(t, keys, k)
    report: dict[str, Any] = {
        "form": form.name,
        "rows": n,
        "accepted_rows": form.accepted_rows,
        "rows_not_released": form.accepted_rows - n,
        "weighted": form.weighted,
        "k": k,
        "keys": keys,
        "suppression": suppress,
        "violations": {"before_recoding": v_before, "after_recoding": v_recode,
                       "after_suppression": v_after},
        "min_fk": min_fk,
        "k_anonymous": v_after == 0,
        "global_risk": {"before_recoding": _risk(before, keys, weight),
                        "after_recoding": _risk(mid, keys, weight),
                        "after_suppression": _risk(t, keys, weight)},
        "household_risk": None,
        "recodes": dict(form.recodes),
        "rare_merged": dict(form.rare),
        "months": list(form.months),
        "free_text_scrubbed": list(form.scrubbed),
        "dropped": {c: r for c, (a, r) in form.reasons.items() if a == "drop"},
        "suppressions": {key: int(form.suppressed.get(key, 0)) for key in keys},
    }
    report["suppressed_total"] = sum(report["suppressions"].values())
    recoded = [c for c in form.recodes if c in t.columns]
    report["changed_by_recoding"] = {
        c: (_changed(before[c], mid[c]) / n if n else 0.0) for c in recoded}
    report["changed_by_suppression"] = {
        key: (report["suppressions"][key] / n if n else 0.0) for key in keys}
    cells = n * len(keys)
    report["changed_by_recoding_keys_total"] = (
        sum(_changed(before[c], mid[c]) for c in keys if c in recoded) / cells if cells else 0.0)
    report["changed_by_suppression_total"] = report["suppressed_total"] / cells if cells else 0.0
    if "hh_id" in t.columns and keys and n and t["hh_id"].notna().all() and form.weighted:
        hr = household_risk(t, keys, weight, "hh_id")
        report["household_risk"] = {"max": float(hr.max()), "mean": float(hr.mean())}
    report["l_diversity"] = {
        c: _l_diversity(t, keys, c) for c, (a, _) in form.reasons.items()
        if a == "sensitive" and c in t.columns}
    if form.weighted and "stratum" in t.columns and t["stratum"].isna().any():
        report["design_suppressed"] = int(t["stratum"].isna().sum())
    return report


def _g(x: float | None) -> str:
    """Risk figures as they appear in the Markdown report (4 significant digits)."""
    return "–" if x is None else f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _md_form(rep: dict[str, Any]) -> str:
    k = rep["k"]
    lines = [f"## {rep['form']}", ""]
    lines.append(f"Records released: {rep['rows']} of {rep['accepted_rows']} accepted "
                 f"({rep['rows_not_released']} without a weight, i.e. non-respondents, are not "
                 "released).")
    if rep["weighted"]:
        lines.append("Risk is weighted (F_k = sum of final weights; sdcMicro 5.8 "
                     "Benedetti-Franconi).")
    else:
        lines.append("Not a probability sample: no weights, risk computed with the sample as "
                     "population (1/f_k), an upper bound.")
    lines.append(f"Keys (k = {k}): " + (", ".join(f"`{x}`" for x in rep["keys"]) or "none"))
    lines += ["", f"| Stage | Records with f_k < {k} | Global risk | Expected re-identifications |",
              "|---|---:|---:|---:|"]
    for stage, label in (("before_recoding", "before recoding"),
                         ("after_recoding", "after recoding"),
                         ("after_suppression", "after suppression")):
        r = rep["global_risk"][stage]
        lines.append(f"| {label} | {rep['violations'][stage]} | {_g(r['risk'])} | "
                     f"{_g(r['expected_reidentifications'])} |")
    lines.append("")
    lines.append(f"Smallest f_k after suppression: {rep['min_fk']}; k-anonymous: "
                 f"{'yes' if rep['k_anonymous'] else 'no'}.")
    if rep["household_risk"]:
        hr = rep["household_risk"]
        lines.append(f"Household risk (1 - prod(1 - r_j) over the household's records): max "
                     f"{_g(hr['max'])}, mean {_g(hr['mean'])}.")
    if rep.get("design_suppressed"):
        lines.append(f"**Design variable stratum suppressed in {rep['design_suppressed']} "
                     "records.**")
    if rep["recodes"]:
        lines += ["", "### Global recoding", "", "| Variable | Recode | Values changed |",
                  "|---|---|---:|"]
        for col, text in rep["recodes"].items():
            share = rep["changed_by_recoding"].get(col)
            lines.append(f"| `{col}` | {text} | {_pct(share) if share is not None else '–'} |")
    if rep["months"]:
        lines += ["", "Dates released as months (YYYY-MM): "
                  + ", ".join(f"`{c}`" for c in rep["months"]) + "."]
    if rep["free_text_scrubbed"]:
        lines += ["", "Free text released after scrubbing (names are not detected; reviewed "
                  "by hand): " + ", ".join(f"`{c}`" for c in rep["free_text_scrubbed"]) + "."]
    lines += ["", "### Local suppression", "",
              "| Key | Values suppressed | Share of records |", "|---|---:|---:|"]
    for key in rep["keys"]:
        lines.append(f"| `{key}` | {rep['suppressions'][key]} | "
                     f"{_pct(rep['changed_by_suppression'][key])} |")
    lines.append(f"| total | {rep['suppressed_total']} | "
                 f"{_pct(rep['changed_by_suppression_total'])} of key values |")
    if rep["l_diversity"]:
        lines += ["", "### l-diversity (distinct) of sensitive variables over the keys", "",
                  "| Variable | min l | Records in groups with one answer |", "|---|---:|---:|"]
        for col, ld in rep["l_diversity"].items():
            lines.append(f"| `{col}` | {ld['min_l'] if ld['min_l'] is not None else '–'} | "
                         f"{ld['records_l1']} ({_pct(ld['share_l1'])}) |")
    lines += ["", "### Not released", "", "| Column | Reason |", "|---|---|"]
    for col, reason in rep["dropped"].items():
        lines.append(f"| `{col}` | {reason} |")
    return "\n".join(lines) + "\n"


def _md_linked(rep: dict[str, Any], k: int) -> str:
    lines = ["## Linked household profile", "",
             "Every household's keys from every file carrying `hh_id`, joined as an intruder "
             "holding the whole release could join them (a file without a record for the "
             f"household leaves its keys as wildcards). Rows: {rep['rows']}. Keys: "
             + ", ".join(f"`{x}`" for x in rep["keys"]), "",
             f"| Stage | Rows with f_k < {k} | Global risk | Expected re-identifications |",
             "|---|---:|---:|---:|"]
    for stage, label in (("before_recoding", "before recoding"),
                         ("after_recoding", "after recoding"),
                         ("after_form_suppression", "after per-file suppression"),
                         ("after_suppression", "after suppression")):
        r = rep["global_risk"][stage]
        lines.append(f"| {label} | {rep['violations'][stage]} | {_g(r['risk'])} | "
                     f"{_g(r['expected_reidentifications'])} |")
    lines += ["", f"Smallest f_k after suppression: {rep['min_fk']}.", ""]
    if rep["suppressions"]:
        lines += ["| Key | Values suppressed for the linked profile |", "|---|---:|"]
        lines += [f"| `{col}` | {n} |" for col, n in rep["suppressions"].items()]
    else:
        lines.append("No value suppressed for the linked profile.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- public API


def anonymise_country(
    accepted: Mapping[str, pd.DataFrame],
    weights: Mapping[str, pd.DataFrame],
    models: Mapping[str, FormModel],
    config: CountryConfig,
    *,
    key: bytes,
    rng: np.random.Generator,
    recode: bool = True,
    k: int = 3,
    importance: Mapping[str, list[str]] | None = None,
    allowed_free_text: Mapping[str, list[str]] | None = None,
    suppress: bool = True,
    numeric_ids: bool = False,
) -> AnonymisedRelease:
    """Anonymise every form of one country into a release (see the module docstring).

    ``accepted``: typed root tables by form; ``weights``: form -> weights table (KEY, stratum,
    cluster, weight, weight_norm, rep_*), absent for unweighted forms (frontline workers);
    ``key``: the pseudonym key (:func:`~dhsurvey.anonymise.pseudonym.load_key`); ``rng``:
    the source of every release ID and code (never store its seed with a release).
    ``importance``: form -> keys most important first (``"linked"`` for the household
    profile, with ``form:key`` names); unlisted keys are suppressed first. ``recode=False``
    skips global recoding (top-codes, bands, rare merges) but never the drops or the months;
    ``suppress=False`` skips local suppression (both for comparison in reports and tests).
    ``numeric_ids=True`` leaves ``record_id`` and ``hh_id`` as the numbers their text is
    made of (a plan for millions of records, :class:`ReleasePlan`, writes them per batch).
    """
    if k < 1:
        raise DhsurveyError("k must be at least 1", code="release-bad-argument")
    missing = [f for f in accepted if f not in models]
    if missing:
        raise DhsurveyError(f"no form model for {missing}", code="release-bad-argument")
    allowed = dict(allowed_free_text or {})
    importance = dict(importance or {})
    forms: dict[str, _Form] = {}
    ids: dict[str, pd.DataFrame] = {}
    for name, table in accepted.items():
        w = weights.get(name)
        forms[name], ids[name] = _prepare(name, table, models[name], w, config,
                                          allowed.get(name, []), rng)
    restricted = _assign_ids(forms, ids, rng, config, key)
    del ids
    for f in forms.values():
        # The stages the report compares keep what it reads: keys, columns recoding may
        # change, the household link and the weight (not the release IDs). A stage shares
        # the table's arrays: recoding and suppression replace a column, never write into
        # it, so a stage holds its own copy only of the columns changed after it.
        staged = [c for c in f.table.columns if c in f.keys or c in ("hh_id", "weight")
                  or _recodable(c)]
        f.before = _stage(f.table, staged)
        if recode:
            _recode(f, k)
        f.after_recode = _stage(f.table, staged)
    for f in forms.values():
        if not suppress or not f.keys or f.table.empty:
            continue
        order = _importance(f.keys, importance.get(f.name, DEFAULT_IMPORTANCE.get(f.name, [])))
        weight = "weight" if f.weighted else None
        result = local_suppression(f.table, f.keys, k, importance=order, weight=weight)
        _restore_dtypes(result.data, f.table, f.keys)
        for key_col, n in result.suppressions.items():
            if n:
                f.suppressed[key_col] = f.suppressed.get(key_col, 0) + n
        f.table = result.data
    linked_report = _suppress_linked(forms, k, importance.get(LINKED), suppress)
    report: dict[str, dict[str, Any]] = {}
    report_md: dict[str, str] = {}
    for f in forms.values():
        rep = _form_report(f, k, suppress)
        rep["importance"] = _importance(
            f.keys, importance.get(f.name, DEFAULT_IMPORTANCE.get(f.name, [])))
        report[f.name] = rep
        report_md[f.name] = _md_form(rep)
    if linked_report is not None:
        linked_report["k"] = k
        report[LINKED] = linked_report
        report_md[LINKED] = _md_linked(linked_report, k)
    tables = {name: _order_columns(f.table if numeric_ids else _text_ids(f.table))
              for name, f in forms.items()}
    return AnonymisedRelease(tables, restricted, report, report_md)


def _column_order(columns: Sequence[Any]) -> list[Any]:
    """IDs and design first, data in the order given (form order), weights last."""
    head = [c for c in ("record_id", "hh_id", *DESIGN) if c in columns]
    tail = [c for c in columns if c in WEIGHT_COLUMNS or REPLICATE.match(str(c))]
    return head + [c for c in columns if c not in head and c not in tail] + tail


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table[_column_order(list(table.columns))].reset_index(drop=True)


def anonymise_form(
    table: pd.DataFrame,
    model: FormModel,
    config: CountryConfig,
    weights: pd.DataFrame | None = None,
    **options: Any,
) -> AnonymisedRelease:
    """One form on its own (same rules and options as :func:`anonymise_country`).

    No linked household profile is built: use :func:`anonymise_country` for the household,
    child and caregiver files of a release, or the linkage risk is not controlled.
    """
    name = model.form_id
    return anonymise_country({name: table}, {name: weights} if weights is not None else {},
                             {name: model}, config, **options)


# ------------------------------------------------------------------ a release in batches


def plan_columns(model: FormModel, columns: Iterable[str]) -> list[str]:
    """The columns of an accepted table whose release depends on the whole sample.

    KEY, the household ID fields (pseudonyms), keys (frequencies, suppression) and globally
    recoded counts (top-codes at percentiles, bands): :func:`anonymise_country` on these
    columns alone decides every record's release IDs, order and suppressions. Every other
    column is released value by value (:class:`ReleasePlan`), so a country larger than
    memory is anonymised in batches; sensitive answers, of which the report only needs
    l-diversity, are added one column at a time (:meth:`ReleasePlan.diversity`).
    """
    reasons = classify_with_reasons(model)
    wanted = {"KEY", "cluster", "hh_number"}
    return [c for c in columns if c in wanted or _recodable(c)
            or reasons.get(c, ("drop", ""))[0] == "key"]


class ReleasePlan:
    """A release decided on :func:`plan_columns` and applied to batches of whole records.

    ``release`` is :func:`anonymise_country` of the plan columns (all columns for forms
    given whole, e.g. the small frontline-worker file); ``columns`` names every column of
    each form's accepted table, so the report lists all drops, months and scrubbed text.
    :meth:`rows` of every batch, stacked, equal the whole-table release of the same rows
    (the test compares them), in the order the release's shuffle gave.
    """

    def __init__(self, release: AnonymisedRelease, models: Mapping[str, FormModel],
                 config: CountryConfig, columns: Mapping[str, Sequence[str]], *,
                 allowed_free_text: Mapping[str, list[str]] | None = None) -> None:
        self.release = release
        self.tz = _local_tz(config.utc_offset)
        self.columns = {f: list(c) for f, c in columns.items()}
        allowed = dict(allowed_free_text or {})
        self.reasons = {f: _column_reasons(f, cols, models[f], allowed.get(f, []))
                        for f, cols in self.columns.items()}
        records = release.restricted["records"]
        self.positions: dict[str, pd.Index] = {}
        for form, table in release.tables.items():
            keys = records.loc[records["form"] == form, "KEY"]
            if len(keys) != len(table):
                raise DhsurveyError("restricted records do not match the released rows",
                                    code="release-bad-argument", form=form)
            self.positions[form] = pd.Index(keys.tolist())  # int64 for numbered records
        for form, cols in self.columns.items():
            rep = release.report.get(form)
            if rep is None:
                continue
            actions = [(c, self.reasons[form][c]) for c in cols if c in self.reasons[form]]
            rep["dropped"] = {c: r for c, (a, r) in self.reasons[form].items() if a == "drop"}
            rep["months"] = [c for c, (a, _) in actions if a == "month"]
            rep["free_text_scrubbed"] = [c for c, (a, _) in actions if a == "scrub"]
            release.report_md[form] = _md_form(rep)

    def sensitive(self, form: str) -> list[str]:
        """The form's sensitive columns (released unchanged; the plan leaves them out)."""
        return [c for c, (a, _) in self.reasons[form].items()
                if a == "sensitive" and c in self.columns[form]]

    def diversity(self, form: str, values: pd.DataFrame) -> None:
        """Add the l-diversity of sensitive columns to the report: ``values`` holds KEY and
        some of :meth:`sensitive` over the whole sample (a few columns at a time)."""
        rep = self.release.report[form]
        keys = list(rep["keys"])
        rows = values.set_index("KEY").reindex(self.positions[form])
        frame = self.release.tables[form][keys].reset_index(drop=True)
        found = rep.setdefault("l_diversity", {})
        for col in [c for c in values.columns if c != "KEY"]:
            found[col] = _l_diversity(frame.assign(**{col: rows[col].to_numpy()}), keys, col)
        # In the order the whole-table report lists them.
        rep["l_diversity"] = {c: found[c] for c in self.sensitive(form) if c in found}
        self.release.report_md[form] = _md_form(rep)

    def table(self, form: str) -> pd.DataFrame:
        """A form planned with all its columns (given whole), as released."""
        return _text_ids(self.release.tables[form].copy())

    def released_columns(self, form: str, replicates: Sequence[str] = ()) -> list[str]:
        """The released table's columns in release order (IDs, design, data, weights)."""
        data = [c for c in self.columns[form] if self.reasons[form][c][0] != "drop"]
        ids = [c for c in self.release.tables[form].columns if c not in data]
        return _column_order([*ids, *data, *replicates])

    def rows(self, form: str, batch: pd.DataFrame,
             replicates: Any = None) -> pd.DataFrame:
        """The released rows of the accepted records ``batch`` (all columns, KEY included).

        Records the plan does not release (no weight) are left out; ``replicates(keys)``
        gives the replicate weight columns of those KEYs (weighted forms whose weights
        keep replicates in factor form).
        """
        planned = self.release.tables[form]
        found = self.positions[form].get_indexer(pd.Index(batch["KEY"].tolist()))
        take = np.sort(found[found >= 0])
        plan_rows = _text_ids(planned.iloc[take].reset_index(drop=True))
        keys = self.positions[form][take]
        source = batch.set_index("KEY").loc[keys].reset_index(drop=True)
        parts = {c: plan_rows[c] for c in plan_rows.columns}
        for col in source.columns:
            action = self.reasons[form].get(col, ("drop", ""))[0]
            if action != "drop" and col not in parts:
                parts[col] = _released_column(source[col], action, self.tz)
        reps = replicates(keys) if replicates is not None else pd.DataFrame(index=plan_rows.index)
        for col in reps.columns:
            parts[col] = reps[col].astype(float)
        order = self.released_columns(form, list(reps.columns))
        return pd.DataFrame({c: parts[c] for c in order})


# ------------------------------------------------------------------------------ canaries

_CANARY_NAMES = ("Zawadi", "Baraka", "Neema", "Juma", "Imani", "Tumaini", "Amani", "Subira")


def canary_values(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` unique fake identifiers cycling name, phone, e-mail, GPS string.

    Realistic in shape (a Kenyan mobile number in international format, a geopoint as ODK
    writes it) so pattern scanners and humans treat them like the real thing, and tagged
    ("Canary", "canary.") so nobody mistakes one for a respondent.
    """
    if n < 0 or n > 9000:
        raise DhsurveyError("n must be between 0 and 9000", code="release-bad-argument")
    tags = rng.choice(np.arange(1000, 10000), size=n, replace=False)
    out: list[str] = []
    for i, tag in enumerate(tags):
        kind = i % 4
        if kind == 0:
            out.append(f"{_CANARY_NAMES[int(rng.integers(len(_CANARY_NAMES)))]} Canary-{tag}")
        elif kind == 1:
            out.append(f"+254 7{int(rng.integers(10, 30))} {int(rng.integers(10, 100))} "
                       f"{tag:04d}")
        elif kind == 2:
            out.append(f"canary.{tag}@example.org")
        else:
            lat = rng.uniform(-4.5, 4.5)
            lon = rng.uniform(34.0, 41.5)
            alt = rng.uniform(0, 2500)
            acc = rng.uniform(3, 15)
            out.append(f"{lat:.6f} {lon:.6f} {alt:.1f} {acc:.1f}")
    if len(set(out)) != len(out):  # a phone or GPS collision: redraw (vanishingly rare)
        return canary_values(n, rng)
    return out


def _model_for_table(name: str, models: Mapping[str, FormModel]) -> FormModel | None:
    """``household`` or ``household/roster`` (any separator) -> the household model."""
    if name in models:
        return models[name]
    head = re.split(r"[/.:\-]", name, maxsplit=1)[0]
    return models.get(head)


def plant_canaries(tables: dict[str, pd.DataFrame], models: Mapping[str, FormModel],
                   rng: np.random.Generator, per_field: int = 3) -> list[str]:
    """Write canaries into the restricted fields (direct, free_text) of ``tables``, in place.

    Geopoints get GPS canaries, other direct fields (names) name canaries, free-text fields
    phones, e-mails and names in turn. ``per_field`` random rows of each such column are
    overwritten. Returns every planted value, for :func:`scan_release`.
    """
    planted: list[str] = []
    targets: list[tuple[str, str, str]] = []
    for name, table in tables.items():
        model = _model_for_table(name, models)
        if model is None:
            continue
        for col in table.columns:
            if col not in model:
                continue
            item = model[col]
            if item.pii not in ("direct", "free_text"):
                continue
            kind = "gps" if item.type == "geopoint" else (
                "name" if item.pii == "direct" else "text")
            targets.append((name, col, kind))
    pool = iter(canary_values(4 * per_field * max(len(targets), 1) + 4, rng))
    by_kind: dict[str, list[str]] = {"name": [], "phone": [], "email": [], "gps": []}
    kinds = ("name", "phone", "email", "gps")

    def take(kind: str) -> str:
        while not by_kind[kind]:
            for i in range(4):
                by_kind[kinds[i]].append(next(pool))
        return by_kind[kind].pop()

    for name, col, kind in targets:
        table = tables[name]
        if table.empty:
            continue
        if not (pd.api.types.is_string_dtype(table[col]) or table[col].dtype == object):
            table[col] = table[col].astype("string")
        rows = rng.choice(len(table), size=min(per_field, len(table)), replace=False)
        for j, row in enumerate(sorted(rows)):
            if kind == "text":
                value = take(("phone", "email", "name")[j % 3])
            else:
                value = take(kind)
            table.iloc[int(row), table.columns.get_loc(col)] = value
            planted.append(value)
    return planted


# ---------------------------------------------------------------------------------- scan

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
#: Two decimal coordinates in one string, as in an ODK geopoint "lat lon alt acc".
COORD_RE = re.compile(r"(?<![\w.])-?\d{1,2}\.\d{4,}[ ,;]+-?\d{1,3}\.\d{4,}")
_DECIMAL = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
_DIGITS = re.compile(r"\d")
PHONE_REGIONS = ("KE", "TZ", "UG", "GB", "US")
TEXT_SUFFIXES = {".csv", ".md", ".html", ".htm", ".txt", ".json", ".tsv", ".do", ".sps"}


def _restricted_regex(values: Iterable[str]) -> tuple[re.Pattern[str] | None, dict[str, int]]:
    """One trie-shaped regex over every restricted value (case-insensitive, whole tokens).

    A trie, not an alternation of thousands of literals: Python's regex engine would try
    every alternative at every position; the trie shares prefixes, so a scan is one pass.
    """
    index: dict[str, int] = {}
    for i, value in enumerate(values):
        text = str(value).strip().casefold()
        if len(text) >= 3 and text not in index:
            index[text] = i
    if not index:
        return None, index
    trie: dict[str, Any] = {}
    for word in index:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if end else body

    pattern = re.compile(r"(?<![0-9a-z])" + build(trie) + r"(?![0-9a-z])")
    return pattern, index


@dataclass
class _Scanner:
    """Scans strings for restricted values and identifier patterns; collects findings."""

    path: Path
    regex: re.Pattern[str] | None
    index: dict[str, int]
    findings: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[tuple[Any, ...]] = field(default_factory=set)

    def add(self, kind: str, where: str, column: Any, row: Any, text: str,
            restricted: int | None = None) -> None:
        key = (kind, column, restricted, text if restricted is None else None)
        if key in self._seen:
            for f in self.findings:
                if (f["kind"], f["column"], f["restricted_index"]) == key[:3]:
                    f["count"] += 1
                    break
            return
        self._seen.add(key)
        self.findings.append({
            "file": str(self.path), "where": where, "column": column, "row": row,
            "kind": kind, "restricted_index": restricted, "excerpt": _mask(text), "count": 1})

    def restricted(self, text: str, where: str, column: Any, row: Any) -> None:
        if self.regex is None or not text:
            return
        for m in self.regex.finditer(text.casefold()):
            self.add("restricted", where, column, row, m.group(0), self.index.get(m.group(0)))

    def patterns(self, text: str, where: str, column: Any, row: Any) -> None:
        if not text or _DECIMAL.match(text.strip()):
            return
        for m in EMAIL_RE.finditer(text):
            self.add("email", where, column, row, m.group(0))
        for m in UUID_RE.finditer(text):
            self.add("uuid", where, column, row, m.group(0))
        for m in COORD_RE.finditer(text):
            self.add("coordinates", where, column, row, m.group(0))
        if len(_DIGITS.findall(text)) >= 7:
            for phone in _phones(text):
                self.add("phone", where, column, row, phone)

    def cell(self, value: Any, where: str, column: Any, row: Any) -> None:
        if value is None or isinstance(value, bool | int | float | np.number):
            return
        if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
            return
        text = str(value)
        self.restricted(text, where, column, row)
        self.patterns(text, where, column, row)


def _phones(text: str) -> list[str]:
    import phonenumbers

    found = []
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
            raw = m.raw_string
            if _DECIMAL.match(raw) or re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", raw):
                continue
            # Lists of statistics ("0 / 20365 / 117389 / 24149.7") are not phone numbers: a
            # number is written with digits, spaces, dashes, brackets and a leading "+" only.
            if not re.fullmatch(r"\+?[\d\s\-()]+", raw):
                continue
            found.append(raw)
    return sorted(set(found))


def _mask(text: str) -> str:
    """A finding names where, not what: the first characters only, never the value."""
    text = str(text)
    return text[:3] + "…" + f"({len(text)} chars)" if len(text) > 3 else "…"


def _scan_frame(scanner: _Scanner, frame: pd.DataFrame, where: str) -> None:
    for col in frame.columns:
        scanner.restricted(str(col), f"{where}:header", col, None)
        scanner.patterns(str(col), f"{where}:header", col, None)
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series) or \
                pd.api.types.is_datetime64_any_dtype(series):
            continue
        if isinstance(series.dtype, pd.CategoricalDtype):
            for value in series.cat.categories:
                scanner.cell(value, f"{where}:categories", col, None)
            continue
        for row, value in enumerate(series.to_numpy(dtype=object)):
            if value is None or (isinstance(value, float) and math.isnan(value)) or \
                    value is pd.NA:
                continue
            scanner.cell(value, where, col, row)


def _scan_text(scanner: _Scanner, text: str, where: str) -> None:
    for line_no, line in enumerate(text.splitlines(), start=1):
        scanner.restricted(line, where, None, line_no)
        scanner.patterns(line, where, None, line_no)


def _scan_bytes(scanner: _Scanner, data: bytes, where: str) -> None:
    """Raw bytes of a binary file: restricted values only. Patterns (e-mail, phone) would
    match random binary runs ("cz@…"); the file's cells and labels are pattern-scanned."""
    for line_no, line in enumerate(data.decode("latin-1").splitlines(), start=1):
        scanner.restricted(line, where, None, line_no)


def _scan_csv(scanner: _Scanner, text: str) -> None:
    header: list[str] = []
    for row_no, row in enumerate(csv.reader(io.StringIO(text))):
        if row_no == 0:
            header = row
        for col_no, cell in enumerate(row):
            column = header[col_no] if col_no < len(header) else col_no
            where = "csv:header" if row_no == 0 else "csv"
            scanner.restricted(cell, where, column, row_no or None)
            if not _DECIMAL.match(cell.strip()):
                scanner.patterns(cell, where, column, row_no or None)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def scan_release(paths: list[Path], restricted_values: Iterable[str]) -> list[dict[str, Any]]:
    """Every occurrence of a restricted value, and every e-mail, phone, UUID or coordinate
    pair in a string cell, in the release files at ``paths``.

    Parquet and xlsx are read cell by cell (their bytes are compressed), plus their
    metadata; dta and sav cell by cell and value labels, plus their raw bytes decoded; csv
    cell by cell; md, html and other text line by line. Restricted values match case
    insensitively as whole tokens (not inside a longer word or number). Findings say file,
    column, row, kind and the index of the restricted value matched, never the value itself.
    """
    regex, index = _restricted_regex(restricted_values)
    findings: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DhsurveyError("release file not found", code="release-scan", file=path)
        scanner = _Scanner(path, regex, index)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            for k_, v in (table.schema.metadata or {}).items():
                _scan_text(scanner, _decode(k_) + "\n" + _decode(v), "parquet:metadata")
            _scan_frame(scanner, table.to_pandas(), "parquet")
        elif suffix in (".xlsx", ".xlsm"):
            import openpyxl

            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                for ws in book.worksheets:
                    scanner.cell(ws.title, "xlsx:sheet", None, None)
                    for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
                        for c, value in enumerate(values, start=1):
                            scanner.cell(value, f"xlsx:{ws.title}", c, r)
            finally:
                book.close()
        elif suffix == ".dta":
            with pd.io.stata.StataReader(path) as reader:
                frame = reader.read(convert_categoricals=False)
                labels = reader.value_labels()
                var_labels = reader.variable_labels()
            _scan_frame(scanner, frame, "dta")
            for name, mapping in labels.items():
                for value in mapping.values():
                    scanner.cell(value, "dta:value-labels", name, None)
            for name, label in var_labels.items():
                scanner.cell(label, "dta:variable-labels", name, None)
            _scan_bytes(scanner, path.read_bytes(), "dta:bytes")
        elif suffix in (".sav", ".zsav"):
            import pyreadstat

            frame, meta = pyreadstat.read_sav(str(path), apply_value_formats=False)
            _scan_frame(scanner, frame, "sav")
            for name, mapping in (meta.variable_value_labels or {}).items():
                for value in mapping.values():
                    scanner.cell(value, "sav:value-labels", name, None)
            for name, label in zip(meta.column_names, meta.column_labels or [], strict=False):
                scanner.cell(label, "sav:variable-labels", name, None)
            _scan_bytes(scanner, path.read_bytes(), "sav:bytes")
        elif suffix in (".csv", ".tsv"):
            _scan_csv(scanner, _decode(path.read_bytes()))
        else:
            _scan_text(scanner, _decode(path.read_bytes()), suffix.lstrip(".") or "text")
        findings += scanner.findings
    return findings


# ---------------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateResult:
    """Release decision: ``passed`` only when ``reasons`` is empty; ``notes`` inform."""

    passed: bool
    reasons: list[str]
    notes: list[str] = field(default_factory=list)


def gate(report: Mapping[str, Mapping[str, Any]] | AnonymisedRelease,
         findings: Sequence[Mapping[str, Any]], *, k: int = 3,
         max_global_risk: float = 0.01) -> GateResult:
    """Block the release if any key combination has f_k < k after suppression (per form and
    in the linked household profile), if a weighted form's global risk exceeds
    ``max_global_risk``, if a design variable was suppressed, or if the scan found anything.

    Unweighted forms (frontline workers, not a probability sample) have risk 1/f_k with the
    sample taken as the population: with f_k >= k that is at most 1/k and says nothing a
    threshold for weighted risk could judge, so they are gated on k only and a note says so.
    """
    if isinstance(report, AnonymisedRelease):
        report = report.report
    reasons: list[str] = []
    notes: list[str] = []
    for name, rep in report.items():
        min_fk = rep.get("min_fk")
        if min_fk is not None and min_fk < k:
            bad = rep["violations"]["after_suppression"] if rep.get("k", k) == k else None
            extra = f" ({bad} records)" if bad else ""
            reasons.append(f"{name}: a key combination has f_k = {min_fk} < k = {k} after "
                           f"suppression{extra}")
        if rep.get("design_suppressed"):
            reasons.append(f"{name}: stratum suppressed in {rep['design_suppressed']} records")
        risk = rep["global_risk"]["after_suppression"]["risk"]
        if rep.get("weighted", True):
            if risk > max_global_risk:
                reasons.append(f"{name}: global risk {risk:.4g} > {max_global_risk:g}")
        else:
            notes.append(f"{name}: unweighted; risk {risk:.4g} is 1/f_k with the sample as "
                         "population, gated on k only")
    by_file: dict[tuple[str, str], int] = {}
    for f in findings:
        by_file[(str(f.get("file")), str(f.get("kind")))] = \
            by_file.get((str(f.get("file")), str(f.get("kind"))), 0) + int(f.get("count", 1))
    for (file, kind), n in sorted(by_file.items()):
        reasons.append(f"scan: {n} {kind} finding(s) in {Path(file).name}")
    return GateResult(not reasons, reasons, notes)


def release_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder``, sorted: what :func:`scan_release` should read."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())
