"""Local suppression to k-anonymity: blank the fewest, least useful key values.

Why greedy on the least important variable: after global recoding, the remaining unsafe
records are usually unique on one detailed variable (age in years, household size); blanking
that value turns it into a wildcard (see :mod:`dhsurvey.anonymise.risk`), so the record then
hides among every record that agrees on the other keys.

The loop: while some record has ``fk < k``, each such record loses its least important key
value that is still observed; frequencies are then recomputed with the wildcard rule.
Suppression only ever adds wildcards, so ``fk`` never decreases and a record that became safe
stays safe. Each round removes one value from every unsafe record, hence at most K rounds
(K = number of keys). A record with every key blank matches the whole file, so the result is
k-anonymous whenever the file has at least ``k`` records; otherwise the loop stops with
``k_anonymous=False`` rather than spin.

This batch rule can blank both records of a unique pair where blanking one would do;
it trades a little information for K recomputations instead of one per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dhsurvey.anonymise.risk import GlobalRisk, Weight, check_keys, frequencies, global_risk
from dhsurvey.errors import DhsurveyError


@dataclass(frozen=True)
class SuppressionResult:
    """The suppressed data and an account of what was done to it."""

    data: pd.DataFrame
    suppressions: dict[str, int]  # values set to missing, per key
    iterations: int
    k_anonymous: bool
    risk_before: GlobalRisk
    risk_after: GlobalRisk

    @property
    def total_suppressions(self) -> int:
        return sum(self.suppressions.values())


def _suppression_order(df: pd.DataFrame, keys: list[str], importance: list[str] | None
                       ) -> list[str]:
    """Keys from first-to-suppress to last."""
    if importance is None:
        # Most distinct values first: they carry most of the identifying detail.
        distinct = {key: df[key].nunique(dropna=True) for key in keys}
        return sorted(keys, key=lambda key: (-distinct[key], keys.index(key)))
    if sorted(importance) != sorted(keys):
        raise DhsurveyError(
            "importance must list every key exactly once (most important first)",
            code="sdc-bad-argument",
        )
    return list(reversed(importance))


def local_suppression(
    df: pd.DataFrame,
    keys: Sequence[str],
    k: int,
    importance: list[str] | None = None,
    weight: Weight = None,
) -> SuppressionResult:
    """Make ``df`` k-anonymous on ``keys`` by setting key values to missing.

    ``importance`` lists the keys from most to least important; the least important observed
    value of an unsafe record is blanked first. Default order: the key with most distinct
    values is blanked first. ``weight`` only feeds the before/after global risk reported.
    The input frame is not modified.
    """
    keys = check_keys(df, keys)
    if k < 1:
        raise DhsurveyError("k must be at least 1", code="sdc-bad-argument")
    order = _suppression_order(df, keys, importance)
    # A new frame over the same columns: a key is copied when a value of it is first
    # blanked, the other columns (IDs, weights, row numbers) are never copied.
    out = df.copy(deep=False)
    owned: set[str] = set()
    for key in keys:
        # Integer and boolean columns cannot hold a missing value: widen them once.
        if out[key].dtype.kind in "biu":
            out[key] = out[key].astype("Float64" if out[key].dtype.kind != "b" else "boolean")
            owned.add(key)
    counts = dict.fromkeys(keys, 0)
    risk_before = global_risk(df, keys, weight)
    iterations = 0
    k_anonymous = True
    while True:
        unsafe = frequencies(out, keys)["fk"].to_numpy() < k
        if not unsafe.any():
            break
        observed = out[order].notna().to_numpy()
        candidates = unsafe & observed.any(axis=1)
        if not candidates.any():  # only fully blank records left: fewer than k rows
            k_anonymous = False
            break
        iterations += 1
        # First observed key in suppression order, per unsafe record.
        choice = np.argmax(observed, axis=1)
        for j, key in enumerate(order):
            rows = candidates & (choice == j)
            if rows.any():
                if key not in owned:
                    out[key] = out[key].copy()
                    owned.add(key)
                out.loc[rows, key] = None
                counts[key] += int(rows.sum())
    return SuppressionResult(
        data=out,
        suppressions=counts,
        iterations=iterations,
        k_anonymous=k_anonymous,
        risk_before=risk_before,
        risk_after=global_risk(out, keys, weight),
    )
