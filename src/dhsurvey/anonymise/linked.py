"""The linked household profile: every household's keys from every file, and its risk.

Why: an intruder holding the release can join the household, child and caregiver files on
``hh_id``, and a child may be identifiable "by combining answers" that are each common in
their own file. The profile is that join, one row per household; it is measured at each
stage like a file and made k-anonymous after the per-file pass. Suppression only adds
wildcards, so this second pass never undoes the first; it adds only what joining the files
requires (on KEN dev data: n_eligible for about 110 households).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.measure import risk_summary, violations
from dhsurvey.anonymise.suppress import local_suppression
from dhsurvey.anonymise.suppression import linked_importance, restore_dtypes
from dhsurvey.anonymise.working import WorkingForm
from dhsurvey.errors import DhsurveyError


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


def linked_frame(forms: dict[str, WorkingForm], source: str = "table"
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
        frame[key] = value.where(value.notna(), None)  # type: ignore[call-overload]
    keys = list(targets)
    wcols = sorted((c for c in frame.columns if c.startswith("_w:")),
                   key=lambda c: (c != "_w:household", c))
    weight = pd.Series(np.nan, index=frame.index)
    for col in wcols:  # the household's weight, else a member's
        weight = weight.fillna(frame[col].astype(float))
    frame["_weight"] = weight
    return frame, keys, targets


def suppress_linked(forms: dict[str, WorkingForm], k: int, preferred: Sequence[str] | None,
                    suppress: bool) -> dict[str, Any] | None:
    """Make the household profile k-anonymous; write blanked values back into each form.

    Runs after the per-form pass, so it only adds what joining the files requires. Returns
    the profile's report (keys, importance, violations and risk at each stage,
    suppressions), or None when fewer than two forms carry ``hh_id``.
    """
    if sum("hh_id" in f.table.columns for f in forms.values()) < 2:
        return None
    report: dict[str, Any] = {"violations": {}, "global_risk": {}, "suppressions": {}}
    # One household profile at a time: each is as large as the household file. The
    # current one (last) is kept for suppression.
    for stage, source in (("before_recoding", "before"), ("after_recoding", "after_recode"),
                          ("after_form_suppression", "table")):
        frame, keys, targets = linked_frame(forms, source)
        weight = "_weight" if frame["_weight"].notna().all() else None
        report["violations"][stage] = violations(frame, keys, k)[0]
        report["global_risk"][stage] = risk_summary(frame, keys, weight)
        if source != "table":
            del frame
    order = linked_importance(forms, keys, preferred)
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
                    restore_dtypes(t, original, [key])
                    forms[form_name].suppressed[key] = forms[form_name].suppressed.get(key, 0) + n
                    counts[f"{form_name}:{key}"] = n
        report["suppressions"] = counts
        del frame, result
        frame, _, _ = linked_frame(forms, "table")
    found, min_fk = violations(frame, keys, k)
    report["violations"]["after_suppression"] = found
    report["global_risk"]["after_suppression"] = risk_summary(frame, keys, weight)
    report["min_fk"] = min_fk
    return report
