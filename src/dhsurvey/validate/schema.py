"""Pandera schemas generated from the form model — one per form and per repeat, never written
by hand.

Each column gets the dtype its XLSForm type implies and the checks the form itself defines:
choice membership (every token of a select_multiple), constraints, required-when-relevant,
answers to non-relevant questions, choice filters — evaluated by the form's expression engine
(:func:`dhsurvey.validate.logic.check_logic`) — plus a unique instanceID and, when the country is
known, timestamps inside the fieldwork window. Failures come back as one row per failing cell
with a rule id, so quarantine and flags can be built from them.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa

from dhsurvey.forms.frames import FormData
from dhsurvey.forms.model import Item
from dhsurvey.validate.logic import check_logic
from dhsurvey.validate.types import dtype_for

ISSUE_COLUMNS = ["KEY", "rule", "column", "value", "message"]


@dataclass(frozen=True)
class Window:
    """The fieldwork window in local time (inclusive days)."""

    start: dt.date
    end: dt.date
    utc_offset: str = "+00:00"

    def bounds(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        lo = pd.Timestamp(f"{self.start.isoformat()}T00:00:00{self.utc_offset}")
        hi = pd.Timestamp(f"{self.end.isoformat()}T23:59:59.999{self.utc_offset}")
        return lo.tz_convert("UTC"), hi.tz_convert("UTC")


@dataclass
class FormSchema:
    """A pandera schema and, per column, what each of its checks means."""

    schema: pa.DataFrameSchema
    meanings: dict[tuple[str, int], tuple[str, str]]  # (column, check number) → (rule, message)

    def failures(self, typed: pd.DataFrame) -> pd.DataFrame:
        """Run the schema lazily; one row per failing value (KEY, rule, column, value, message)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.schema.validate(typed, lazy=True)
            except pa.errors.SchemaErrors as exc:
                return self._rows(exc.failure_cases, typed)
        return pd.DataFrame(columns=ISSUE_COLUMNS)

    def _rows(self, cases: pd.DataFrame, typed: pd.DataFrame) -> pd.DataFrame:
        rows = []
        case: Any  # a row of pandera's failure cases
        for case in cases.itertuples(index=False):
            column = case.column
            if case.check == "field_uniqueness":
                rule, message = "duplicate-key", "instanceID appears more than once"
            elif case.check_number is not None and not pd.isna(case.check_number):
                rule, message = self.meanings.get((column, int(case.check_number)),
                                                  ("schema", str(case.check)))
            else:
                rule, message = "dtype", str(case.check)
            key = case.index if case.index is not None else None
            value = typed.at[key, column] if key is not None and column in typed.columns \
                and key in typed.index else case.failure_case
            rows.append({"KEY": key, "rule": rule, "column": column,
                         "value": None if pd.isna(value) else str(value), "message": message})
        out = pd.DataFrame(rows, columns=ISSUE_COLUMNS)
        return out.drop_duplicates().reset_index(drop=True)


def _flagged(keys: set[str], name: str) -> Callable[[pd.Series], pd.Series]:
    """A pandera check failing exactly the rows whose KEY is in ``keys``."""
    def check(series: pd.Series) -> pd.Series:
        return pd.Series(~series.index.isin(list(keys)), index=series.index)

    check.__name__ = name
    return check


def build_schema(data: FormData, repeat: str | None = None, *,
                 window: Window | None = None, logic: pd.DataFrame | None = None) -> FormSchema:
    """The schema of one table of ``data`` (root or a repeat), with the form's own rules.

    Logic rules are evaluated once on the raw answers (``data``; or given as ``logic``, what
    :func:`check_logic` found on them, so one evaluation serves every table); the schema's
    checks then fail exactly the rows the evaluator found, so the typed table is validated by
    pandera and the meaning of every rule stays the form's.
    """
    model = data.model
    logic = check_logic(data) if logic is None else logic
    by_rule: dict[tuple[str, str], set[str]] = {}
    row: Any  # a row of check_logic's violations
    for row in logic.itertuples(index=False):
        by_rule.setdefault((row.column, row.rule), set()).add(row.KEY)
    columns: dict[str, pa.Column] = {}
    meanings: dict[tuple[str, int], tuple[str, str]] = {}
    for item in model.fields_in(repeat):
        checks: list[pa.Check] = []
        notes: list[tuple[str, str]] = []
        _choice_check(model, item, checks, notes)
        for rule, message in (("constraint", f"breaks '{item.constraint}'"),
                              ("required", "required but empty where relevant"),
                              ("not-relevant", "answered although not relevant"),
                              ("choice-filter", f"not offered by '{item.choice_filter}'")):
            keys = by_rule.get((item.name, rule))
            if keys:
                # ignore_na=False: a missing required answer is itself the failing value.
                checks.append(pa.Check(_flagged(keys, rule), error=rule, ignore_na=False))
                notes.append((rule, message))
        if window is not None and item.type in ("start", "end"):
            lo, hi = window.bounds()
            checks.append(pa.Check(lambda s, lo=lo, hi=hi: s.isna() | s.between(lo, hi),
                                   error="window"))
            notes.append(("outside-window", f"outside the fieldwork window {window.start} to "
                                            f"{window.end}"))
        dtype = dtype_for(item, model)
        columns[item.name] = pa.Column(None if dtype == "calculate" else dtype, checks=checks,
                                       nullable=True, required=False)
        for number, note in enumerate(notes):
            meanings[(item.name, number)] = note
    columns["KEY"] = pa.Column(str, unique=repeat is None, nullable=False)
    name = model.form_id if repeat is None else f"{model.form_id}/{repeat}"
    return FormSchema(pa.DataFrameSchema(columns, name=name, strict=False), meanings)


def _choice_check(model, item: Item, checks: list, notes: list) -> None:
    lst = model.choices_for(item)
    if lst is None or not (item.is_select_one or item.is_select_multiple):
        return
    codes = lst.codes()
    if item.is_select_one:
        typed_codes = [int(c) for c in codes] if dtype_for(item, model) == "Int64" else codes
        checks.append(pa.Check.isin(typed_codes))
    else:
        allowed = set(codes)
        checks.append(pa.Check(lambda s, allowed=allowed: s.isna() | s.astype(str).str.split()
                               .map(lambda t: bool(t) and set(t) <= allowed), error="choice"))
    notes.append(("choice", f"not a choice of list '{lst.name}'"))
