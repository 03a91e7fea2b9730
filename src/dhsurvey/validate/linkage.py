"""Linkage between the household screener and the child and caregiver interviews.

A child interview is only valid for the child the household form selected at random: the same
household (the fields the forms declare as ``household_id``), the selected roster line, and
the roster's sex and age (±1 year, a birthday may fall between visits). One child and one
caregiver interview per selected household; anything else would bias the sample towards
easy-to-reach children.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dhsurvey.forms.facts import study_facts
from dhsurvey.validate.schema import ISSUE_COLUMNS

AGE_TOLERANCE = 1


def _household_id(household_id: Sequence[str] | None) -> list[str]:
    """The household ID given, else the one the study's instruments declare."""
    ids = list(study_facts().household_id if household_id is None else household_id)
    if not ids:
        raise ValueError("no household ID: the forms declare no household_id")
    return ids


def _issue(frame: pd.DataFrame, rule: str, column: str, message: str) -> pd.DataFrame:
    return pd.DataFrame({"KEY": frame["KEY"].to_numpy(), "rule": rule, "column": column,
                         "value": frame[column].astype("string").to_numpy()
                         if column in frame else None, "message": message},
                        columns=ISSUE_COLUMNS)


def _text(series: pd.Series) -> pd.Series:
    """Trimmed strings with None for missing (object dtype, so comparisons stay boolean)."""
    text = series.astype("string").str.strip()
    # The stubs reject other=None, which pandas accepts.
    return text.astype(object).where(text.notna(), None)  # type: ignore[call-overload]


def link_interviews(household: pd.DataFrame, interviews: pd.DataFrame, *, form: str,
                    line: str, household_id: Sequence[str] | None = None) -> pd.DataFrame:
    """Issues linking ``interviews`` (child or caregiver root rows) to accepted households.

    ``household`` holds the household rows received (raw strings, duplicates dropped);
    ``line`` is the column of the interview that names the selected child's roster line;
    ``household_id`` the fields both identify a household by (default: the instruments').
    """
    if interviews.empty:
        return pd.DataFrame(columns=ISSUE_COLUMNS)
    keys = _household_id(household_id)
    hh = household.assign(**{c: _text(household[c]) for c in keys})
    hh = hh.drop_duplicates(keys, keep="first").set_index(keys)
    ids = pd.MultiIndex.from_arrays([_text(interviews[c]) for c in keys])
    found = ids.isin(hh.index)
    issues = [_issue(interviews[~found], "orphan", keys[-1],
                     f"no household with this cluster and number for the {form}")]
    linked = interviews[found]
    if linked.empty:
        return pd.concat(issues, ignore_index=True)
    target = hh.reindex(pd.MultiIndex.from_arrays([_text(linked[c]) for c in keys]))
    selected = _text(target["sel_line"]).to_numpy()
    no_selection = pd.isna(selected)
    issues.append(_issue(linked[no_selection], "no-selected-child", keys[-1],
                         "the household has no selected child (no eligible child or no "
                         "completed screener)"))
    mismatch = ~no_selection & (_text(linked[line]).to_numpy() != selected)
    issues.append(_issue(linked[mismatch], "not-selected-child", line,
                         "roster line differs from the child the household form selected"))
    if form == "child":
        sex_bad = ~no_selection & (_text(linked["child_sex"]).to_numpy()
                                   != _text(target["sel_sex"]).to_numpy())
        issues.append(_issue(linked[sex_bad & ~mismatch], "child-sex-mismatch", "child_sex",
                             "sex differs from the selected child's roster entry"))
        age = pd.to_numeric(linked["child_age"], errors="coerce").to_numpy()
        roster_age = pd.to_numeric(target["sel_age"], errors="coerce").to_numpy()
        age_bad = ~no_selection & ~mismatch & ~(abs(age - roster_age) <= AGE_TOLERANCE)
        issues.append(_issue(linked[age_bad], "child-age-mismatch", "child_age",
                             f"age differs by more than {AGE_TOLERANCE} year from the roster"))
    else:
        cg_line = _text(target["caregiver_line"]).to_numpy()
        cg_bad = ~no_selection & (_text(linked["cg_line"]).to_numpy() != cg_line)
        issues.append(_issue(linked[cg_bad], "not-selected-caregiver", "cg_line",
                             "caregiver line differs from the household form's caregiver"))
    out = [i for i in issues if len(i)]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=ISSUE_COLUMNS)


def one_per_household(interviews: pd.DataFrame, *, form: str,
                      household_id: Sequence[str] | None = None) -> pd.DataFrame:
    """Second and later interviews of the same household (the earliest one stays)."""
    if interviews.empty:
        return pd.DataFrame(columns=ISSUE_COLUMNS)
    keys = _household_id(household_id)
    order = interviews.sort_values(["submission_time", "KEY"], na_position="last")
    extra = order[order.duplicated(keys, keep="first")]
    return _issue(extra, f"second-{form}", keys[-1],
                  f"another {form} interview of this household came first")
