"""dhsurvey's expression evaluator computes what ODK Collect's engine (JavaRosa) computes.

tests/javarosa/cases.yaml holds the corpus (every XForms function, and the edges where XPath
engines differ: number parsing and printing, dates compared in days, Java's regex dialect,
UTF-16 string length, seeded randomize); tests/javarosa/answers.json holds JavaRosa's answers,
written by tests/javarosa/make_answers.py. Every case must agree, except the few marked
``out_of_scope`` in the corpus — and those must still disagree, so the list stays true. A live
run of the Java harness on a sample proves the stored answers are JavaRosa's current ones.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dhsurvey.forms.expressions import ExpressionError, RepeatData, evaluate

HARNESS = Path(__file__).parents[1] / "javarosa"


def _load_harness() -> Any:
    spec = importlib.util.spec_from_file_location("javarosa_make_answers",
                                                  HARNESS / "make_answers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
CORPUS = harness.load_corpus()
STORED = json.loads(harness.ANSWERS.read_text(encoding="utf-8"))
TODAY = dt.date.fromisoformat(STORED["today"])
NOW = dt.datetime.combine(TODAY, dt.time(12, 0))  # no case depends on the time of day


def _column(spec: list[str]) -> pd.Series:
    """One answer as a typed column, as FormData holds a field of that XLSForm type."""
    kind, value = spec[0].split(" ")[0], spec[1]
    if kind in ("int", "decimal"):
        return pd.Series([float(value) if value else np.nan], dtype="float64")
    if kind in ("date", "dateTime"):
        stamp = pd.Timestamp(value).tz_localize(None) if value else pd.NaT
        return pd.Series([stamp], dtype="datetime64[ns]")
    return pd.Series([value], dtype=object)


def _frame(fields: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame({name: _column(spec) for name, spec in fields.items()})


@cache
def _repeats() -> dict[str, RepeatData]:
    out = {}
    for name, rows in CORPUS.repeats.items():
        frame = pd.concat([_frame(row) for row in rows], ignore_index=True)
        out[name] = RepeatData(frame=frame, parent=pd.Series([0] * len(rows)))
    return out


@cache
def _instances() -> dict[str, pd.DataFrame]:
    """The form's secondary instances: attached CSVs (as text) and the choice lists."""
    out = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False)
           for p in sorted(harness.MEDIA.glob("*.csv"))}
    for name, choices in CORPUS.choices.items():
        out[name] = pd.DataFrame(choices, columns=["name", "label"])
    return out


def _choice_labels(fields: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Select field -> {choice name: label}, what jr:choice-name() reads."""
    out = {}
    for name, spec in fields.items():
        kind, _, list_name = spec[0].partition(" ")
        if list_name:
            out[name] = dict(map(tuple, CORPUS.choices[list_name]))
    return out


def dhsurvey_answer(case: Any) -> tuple[str, Any]:
    """("value", the evaluated value) or ("error", the message)."""
    fields = CORPUS.fields_of(case)
    frame = _frame(fields)
    try:
        result = evaluate(case.expr, frame, current=frame["cur"], repeats=_repeats(),
                          instances=_instances(), choice_labels=_choice_labels(fields),
                          today=TODAY, now=NOW, rng=np.random.default_rng(7))
    except ExpressionError as exc:
        return "error", str(exc)
    value = result.iloc[0]
    return "value", value.item() if isinstance(value, np.generic) else value


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or value == "" or (
        isinstance(value, float) and math.isnan(value))


def agrees(expected: dict[str, str], kind: str, value: Any) -> bool:
    """Whether dhsurvey's result is JavaRosa's: same type and value (an empty answer, which
    JavaRosa hands on as "", may be dhsurvey's NaN/NaT of a typed column)."""
    jr_kind, jr_value = expected["kind"], expected["value"]
    if jr_kind == "error" or kind == "error":
        return jr_kind == kind
    if jr_kind == "boolean":
        return isinstance(value, bool) and value == (jr_value == "true")
    if jr_kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        number = float(jr_value)
        if math.isnan(number) or math.isinf(number):
            return (math.isnan(value) and math.isnan(number)) or value == number
        return math.isclose(value, number, rel_tol=1e-12, abs_tol=1e-12)
    if jr_kind == "date":
        return isinstance(value, pd.Timestamp) and not pd.isna(value) and \
            value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}" == jr_value
    if jr_kind == "string":
        if jr_value == "":
            return _missing(value)
        return isinstance(value, str) and value == jr_value
    return False


def _rows_answers(case: Any, rows: int) -> tuple[str, list[Any]]:
    """The case evaluated over ``rows`` identical submissions (each with its own repeat
    instances): the vectorised paths must give every row the one-row answer."""
    fields = CORPUS.fields_of(case)
    frame = pd.concat([_frame(fields)] * rows, ignore_index=True)
    repeats = {}
    for name, data in _repeats().items():
        copies = pd.concat([data.frame] * rows, ignore_index=True)
        parents = pd.Series(np.repeat(np.arange(rows), len(data.frame)))
        repeats[name] = RepeatData(frame=copies, parent=parents)
    try:
        result = evaluate(case.expr, frame, current=frame["cur"], repeats=repeats,
                          instances=_instances(), choice_labels=_choice_labels(fields),
                          today=TODAY, now=NOW, rng=np.random.default_rng(7))
    except ExpressionError as exc:
        return "error", [str(exc)] * rows
    return "value", [v.item() if isinstance(v, np.generic) else v for v in result]


def test_every_row_of_many_agrees() -> None:
    """Three submissions at once give each the answer JavaRosa gives one."""
    wrong = []
    for case in CORPUS.cases:
        if case.out_of_scope:
            continue
        kind, values = _rows_answers(case, 3)
        if not all(agrees(STORED["answers"][case.key], kind, v) for v in values):
            wrong.append((case.key, kind, values))
    assert not wrong


def _case_id(case: Any) -> str:
    return f"{case.section}:{case.expr}" + (f" {case.own}" if case.own else "")


@pytest.mark.parametrize("case", CORPUS.cases, ids=[_case_id(c) for c in CORPUS.cases])
def test_agrees_with_javarosa(case: Any) -> None:
    expected = STORED["answers"][case.key]
    kind, value = dhsurvey_answer(case)
    if case.out_of_scope:
        assert not agrees(expected, kind, value), (
            f"now agrees with JavaRosa: remove out_of_scope ({case.out_of_scope})")
    else:
        assert agrees(expected, kind, value), (
            f"JavaRosa: {expected['kind']} {expected['value']!r}; dhsurvey: {kind} {value!r}")


def test_corpus_covers_every_function() -> None:
    """Every function the evaluator knows is put to JavaRosa at least once."""
    from dhsurvey.forms.expressions import FUNCTIONS

    used = " ".join(c.expr for c in CORPUS.cases)
    missing = sorted(f for f in FUNCTIONS if not re.search(rf"(?<![\w:-]){re.escape(f)}\(",
                                                           used))
    assert not missing
    assert len(CORPUS.cases) >= 500
    assert len([c for c in CORPUS.cases if c.out_of_scope]) <= 10


def test_answers_are_javarosas_own(tmp_path: Path) -> None:
    """The stored answers are what the JavaRosa in pyxform's ODK Validate computes today."""
    clockless = [c for c in CORPUS.cases
                 if not re.search(r"today\(|now\(|random|uuid\(", c.expr)]
    sample = clockless[::7]
    assert len(sample) >= 80
    assert STORED["javarosa"] == harness.javarosa_version()
    _, live = harness.run_javarosa(CORPUS, sample, tmp_path)
    stale = {c.key: (STORED["answers"][c.key], live[c.key]) for c in sample
             if live[c.key] != STORED["answers"][c.key]}
    assert not stale, "answers.json is stale: run tests/javarosa/make_answers.py"
