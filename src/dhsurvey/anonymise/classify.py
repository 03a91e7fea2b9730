"""What each column of a form becomes in a release: dropped, a month, a key, sensitive or kept.

Why from the form model: which column is a name, which is an interviewer and which date
narrows a visit are decisions about these instruments, made once here from each field's
``pii`` class and type, so a new question is classified by its workbook row and never by
someone remembering a list. The per-value actions (dates to months, allowed free text
scrubbed) are applied here too (:func:`released_column`): they need one value at a time,
so a release in batches applies them batch by batch.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.facts import Models, StudyFacts
from dhsurvey.forms.model import REF_RE, FormModel, Item
from dhsurvey.ingest.canonical import META

ACTIONS = ("drop", "month", "key", "sensitive", "keep")

#: Server and provenance metadata: who submitted, when to the second, from which file.
META_DROP = {
    "KEY": "instanceID: replaced by a fresh random record_id",
    "submitter": "server account of the interviewer",
    "review_state": "server workflow state, not data",
    "deprecated_id": "instanceID of the edited submission",
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

#: Why a per-record draw (``random()``, ``uuid()``) and whatever is computed from it never
#: leave: the value is unique to the record, so two releases carrying it could be joined.
RANDOM_DRAW = "random draw: would link two releases"

#: A calculation that looks a value up in the country table (``instance('countries')``, keyed
#: by ``${country}`` alone: the helpline, platform examples, interview languages) holds the
#: same value in every record of a country; the country file publishes it.
COUNTRY_CONSTANT = "the country's own setting (from its country file), not an answer"
_COUNTRY_TABLE = re.compile(r"instance\(\s*['\"]countries['\"]\s*\)")

#: Roster line pointers (``line``, ``sel_line``, ``caregiver_line``, ...): only meaningful
#: with the roster, which is never released.
LINE_POINTER = re.compile(r"(^|_)line$")


def _instance_id_fields(model: FormModel) -> set[str]:
    """Fields that identify an interview (:attr:`FormModel.instance_fields`), except
    choice-coded ones (country, region)."""
    return {r for r in model.instance_fields if r in model and not model[r].is_select}


def classify_with_reasons(model: FormModel) -> dict[str, tuple[str, str]]:
    """Column -> (action, reason) for the META columns and every data field of ``model``.

    The reason is what the disclosure report prints next to each column not released. Classes
    are the effective ones (:attr:`FormModel.pii_classes`): a calculation copying a name is
    dropped as a direct identifier even when its ``pii`` cell says otherwise without a
    ``pii_reason``. The model caches what this reads, so a release per country costs a loop.
    """
    out: dict[str, tuple[str, str]] = {}
    for col in META:
        out[col] = ("drop", META_DROP[col]) if col in META_DROP else ("keep", "form metadata")
    ids = _instance_id_fields(model)
    classes = model.pii_classes
    for item in model.fields:
        name = item.name
        pii = classes[name]
        dropped = _drop_reason(model, item, pii, ids)
        if dropped:
            out[name] = ("drop", dropped)
        elif item.type in MONTH_TYPES or name.endswith("_date"):
            out[name] = ("month", "date: released as YYYY-MM")
        elif pii == "quasi":
            out[name] = ("key", "quasi-identifier")
        elif pii == "sensitive":
            out[name] = ("sensitive", "sensitive answer")
        else:
            out[name] = ("keep", "")
    return out


def _drop_reason(model: FormModel, item: Item, pii: str, ids: set[str]) -> str:
    """Why ``item`` (of effective class ``pii``) never leaves, or '' when it may."""
    name = item.name
    if item.type in DROP_TYPES:
        return DROP_TYPES[item.type]
    if pii == "direct":
        return "direct identifier"
    if pii == "free_text":
        return "free text (not in allowed_free_text)"
    if name in ids:
        return "record ID field (instance name): replaced by release IDs"
    if name in FIELD_DROP:
        return FIELD_DROP[name]
    if LINE_POINTER.search(name):
        return "roster line pointer: the roster is not released"
    if name in model.random_draws:
        return RANDOM_DRAW
    calculation = str(item.get("calculation") or "")
    if _COUNTRY_TABLE.search(calculation) and set(REF_RE.findall(calculation)) <= {"country"}:
        return COUNTRY_CONSTANT
    return ""


def classify(model: FormModel) -> dict[str, str]:
    """Column -> action: ``drop``, ``month``, ``key``, ``sensitive`` or ``keep``.

    Rules (first match wins): META KEY/submitter/review_state/source_*/submission_time drop;
    device, phone, e-mail, audit, GPS and media types drop; effective ``pii`` direct and
    free_text drop (free text may be allowed and scrubbed per release); the non-choice fields
    of the form's ``instance_name`` (cluster, hh_number, child_line, cg_line, worker_no) drop;
    :data:`FIELD_DROP` (enum_id, duplicates of released keys) and roster line pointers drop;
    values computed from ``random()``/``uuid()`` (:attr:`FormModel.random_draws`) drop;
    start/end/today/date/datetime and ``*_date`` become months; ``pii`` quasi are keys,
    sensitive stay sensitive; everything else is kept.
    """
    return {col: action for col, (action, _) in classify_with_reasons(model).items()}


def column_reasons(form: str, columns: Iterable[str], model: FormModel,
                   allowed: Sequence[str]) -> dict[str, tuple[str, str]]:
    """:func:`classify_with_reasons` for a table's columns: unknown columns drop (unknown
    means unreviewed), allowed free text is scrubbed (action ``scrub``)."""
    reasons = classify_with_reasons(model)
    for col in columns:
        if col not in reasons:
            reasons[col] = ("drop", "not in the form model: unreviewed column")
    for col in allowed:
        if col not in model or model.effective_pii(col) != "free_text":
            raise DhsurveyError(f"allowed_free_text names {col!r}, not a free_text field",
                                code="release-bad-argument", form=form)
        reasons[col] = ("scrub", "free text allowed for this release: scrubbed")
    return reasons


# ------------------------------------------------------------- actions on single values


def local_tz(offset: str) -> dt.timezone:
    """``+03:00`` -> a fixed offset; months follow the local calendar of fieldwork."""
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", str(offset).strip())
    if not m:
        return dt.UTC
    sign = -1 if m.group(1) == "-" else 1
    delta = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
    return dt.timezone(sign * delta)


def to_month(values: pd.Series, tz: dt.tzinfo) -> pd.Series:
    """YYYY-MM strings; missing stays missing. Tz-aware stamps are read in local time, so an
    interview just after midnight falls in the month the respondent lived it."""
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


def released_column(values: pd.Series, action: str, tz: dt.tzinfo,
                    models: Models | StudyFacts | None = None) -> pd.Series:
    """One column as released, for the actions that look at a single value at a time
    (``month``, ``scrub``; anything else passes unchanged). ``models``: the study's forms,
    for what a household code in free text looks like (default: the study's instruments)."""
    if action == "month":
        return to_month(values, tz)
    if action == "scrub":
        from dhsurvey.anonymise.text import scrub

        return scrub(values, models=models).astype("string")
    return values
