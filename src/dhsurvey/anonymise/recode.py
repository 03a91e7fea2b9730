"""Global recoding: top-codes, bands, rare levels merged, extreme values of keys pooled.

Why before local suppression: a recode changes every record the same way and an analyst
can read it off the codebook ("10 or more"), whereas suppression blanks single values. Each
recode removes rare key combinations in bulk, so suppression has less left to blank (the
report shows violations before and after recoding). The rules follow sdcMicro's
``globalRecode`` and ``topBotCoding``: counts capped where DHS caps them
(:data:`FIXED_TOPCODES`), large caseloads at a percentile, ages in bands, and levels of
a key with fewer than k records merged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.working import WorkingForm

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


def _nice_floor(value: float) -> int:
    """Floor to two significant digits (487 -> 480, 1234 -> 1200, 7 -> 7)."""
    if value < 10:
        return int(math.floor(value))
    step = 10 ** (int(math.floor(math.log10(value))) - 1)
    return int(math.floor(value / step) * step)


def _plain(value: Any) -> Any:
    """numpy scalars to Python for the JSON-able report."""
    return value.item() if hasattr(value, "item") else value


def _num(value: Any) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def merge_rare(values: pd.Series, k: int, code: Any) -> tuple[pd.Series, list[Any]]:
    """Levels with fewer than ``k`` records merged into ``code`` (grown until it has k).

    Returns the recoded values and the merged levels (none when one rare level alone would
    only be renamed).
    """
    counts = values.value_counts(dropna=True).sort_values(kind="stable")
    rare = [lvl for lvl, n in counts.items() if n < k]
    if not rare:
        return values, []
    total = int(counts[rare].sum())  # type: ignore[index]
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


def tail_merge(values: pd.Series, k: int) -> tuple[pd.Series, str]:
    """Top- and bottom-code a numeric key so its extreme levels hold at least ``k`` records.

    Returns the recoded values and the note the report gives ("" when nothing changed).
    """
    x = pd.to_numeric(values, errors="coerce")
    levels = x.value_counts(dropna=True).sort_index()
    if levels.sum() < k or len(levels) < 2:
        return values, ""
    notes = []
    above = levels[::-1].cumsum()[::-1]  # records >= level
    top = levels.index[-1]
    if levels.iloc[-1] < k:
        top = max(lvl for lvl, n in above.items() if n >= k)  # type: ignore[type-var]
        notes.append(f"top-coded at {_num(top)} (= {_num(top)} or more)")
    below = levels.cumsum()  # records <= level
    bottom = levels.index[0]
    if levels.iloc[0] < k:
        bottom = min(lvl for lvl, n in below.items() if n >= k)  # type: ignore[type-var]
        if bottom >= top:
            return values, ""
        notes.append(f"bottom-coded at {_num(bottom)} (= {_num(bottom)} or less)")
    if not notes:
        return values, ""
    out = x.clip(lower=bottom, upper=top).astype(values.dtype)
    return out, "; ".join(notes)


def band(values: pd.Series, lows: Sequence[int]) -> pd.Series:
    """Each value replaced by the lower bound of its band (below the first: first band), so
    the column keeps its integer type in Stata and SPSS."""
    x = pd.to_numeric(values, errors="coerce").astype("Float64")
    edges = np.asarray(lows, dtype=float)
    idx = np.searchsorted(edges, x.fillna(edges[0]).to_numpy(dtype=float), side="right") - 1
    coded = edges[np.maximum(idx, 0)]
    out = pd.Series(coded, index=values.index).where(x.notna().to_numpy())
    return out.astype("Int64") if values.dtype == "Int64" else out.astype(values.dtype)


def _band_text(lows: Sequence[int]) -> str:
    parts = [f"{a}-{b - 1}" for a, b in zip(lows, lows[1:], strict=False)] + [f"{lows[-1]}+"]
    return "bands " + ", ".join(parts) + " (coded by lower bound)"


def recodable(column: Any) -> bool:
    """A count :func:`recode_form` top-codes or bands (keys are recoded too: rare levels), so its
    release depends on the whole sample."""
    return column in FIXED_TOPCODES or column in BANDS or bool(
        PERCENTILE_TOPCODE.match(str(column)))


def _top_code(form: WorkingForm) -> None:
    """Fixed top-codes, then counts capped at their 99th percentile (floored)."""
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


def _merge_choices(form: WorkingForm, col: str, k: int) -> None:
    """Rare levels of a select_one key merged into a code its list does not use."""
    t = form.table
    numeric = pd.api.types.is_numeric_dtype(t[col])
    code: Any = RARE_CODE if numeric else RARE_LABEL
    lst = form.model.choices_for(form.model[col])
    if numeric and lst is not None:
        taken = {c for c in lst.codes()}
        while str(code) in taken:
            code = code * 10 + 5
    merged, levels = merge_rare(t[col], k, code)
    if levels:
        t[col] = merged
        form.rare[col] = {"levels": [_plain(v) for v in levels], "into": _plain(code),
                          "records": int(merged.eq(code).sum())}
        form.recodes[col] = (f"levels {', '.join(map(str, form.rare[col]['levels']))} "
                             f"(< {k} records) merged into {code}")


def recode_form(form: WorkingForm, k: int) -> None:
    """Global recoding of one form, in place, recorded in ``form.recodes`` and ``form.rare``:
    top-codes, bands, then each key's rare levels (choices) or extreme values (numbers)."""
    t = form.table
    _top_code(form)
    for col, lows in BANDS.items():
        if col in t.columns and pd.api.types.is_numeric_dtype(t[col]):
            t[col] = band(t[col], lows)
            form.recodes[col] = _band_text(lows)
    for col in form.keys:
        if col in NO_MERGE or col not in form.model:
            continue
        if form.model[col].is_select_one:
            _merge_choices(form, col, k)
        elif pd.api.types.is_numeric_dtype(t[col]):
            merged, note = tail_merge(t[col], k)
            if note:
                t[col] = merged
                form.recodes[col] = "; ".join(x for x in (form.recodes.get(col), note) if x)
