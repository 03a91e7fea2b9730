"""The numbers a release's report compares at each stage: global risk, distinct l, changes.

Why a module of their own: the per-file report, the release plan and the profiles of linked
files measure the same things (sdcMicro's global risk, distinct l-diversity, values changed)
at several stages; these wrappers over :mod:`~dhsurvey.anonymise.risk` give them one
definition, including what an empty table or a form without keys reports. (Records below k
are counted as the intruder counts them, in :mod:`~dhsurvey.anonymise.linked`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.risk import _cells, _encode, cell_diversity, check_keys, global_risk


def risk_summary(df: pd.DataFrame, keys: list[str], weight: str | None) -> dict[str, float]:
    """Global risk and expected re-identifications (0 for no keys or no rows)."""
    if not keys or df.empty:
        return {"risk": 0.0, "expected_reidentifications": 0.0}
    g = global_risk(df, keys, weight)
    return {"risk": g.risk, "expected_reidentifications": g.expected_reidentifications}


def distinct_l(df: pd.DataFrame, keys: list[str], sensitive: str) -> dict[str, Any]:
    """Distinct l over the keys: smallest l and records whose group shows a single answer
    (an intruder who places a record in its group learns that answer)."""
    return distinct_ls(df, keys, [sensitive])[sensitive]


def distinct_ls(df: pd.DataFrame, keys: list[str], sensitive: Sequence[str]
                ) -> dict[str, dict[str, Any]]:
    """:func:`distinct_l` of several sensitive columns of ``df``, the keys coded once (a
    form's report measures every sensitive answer over the same keys)."""
    out: dict[str, dict[str, Any]] = {}
    cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for name in sensitive:
        col = df[name]
        if not keys or col.notna().sum() == 0:
            out[name] = {"min_l": None, "records_l1": 0, "share_l1": 0.0}
            continue
        if not isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object).where(col.notna(), None)  # type: ignore[call-overload]
        if cells is None:
            codes, cards = _encode(df, check_keys(df, keys))
            cells = (*_cells(codes, cards), cards)
        cell_of_row, cell_codes, cards = cells
        ell = cell_diversity(cell_of_row, cell_codes, cards, col, "distinct")[cell_of_row]
        seen = ell[ell > 0]
        ones = int((seen == 1).sum())
        out[name] = {"min_l": int(seen.min()) if len(seen) else None, "records_l1": ones,
                     "share_l1": ones / len(seen) if len(seen) else 0.0}
    return out


def changed(before: pd.Series, after: pd.Series) -> int:
    """Observed values that recoding or suppression altered (the information lost)."""
    b = before.astype(object).where(before.notna(), None)  # type: ignore[call-overload]
    a = after.astype(object).where(after.notna(), None)  # type: ignore[call-overload]
    return int(sum(1 for x, y in zip(b, a, strict=True) if x is not None and x != y))
