"""The form's own rules checked on every submission: what ODK Collect enforces on a device.

Submissions can break the form's logic although the device enforced it: an outdated form
version, edits on the server, a corrections log, a bug, fabricated data. Every rule here is read
from the form model and evaluated vectorised on whole tables, so the same rules the simulator
obeys are the rules the validator checks.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from dhsurvey.forms.frames import FormData, format_values
from dhsurvey.forms.model import FormModel, Item

VIOLATION_COLUMNS = ["KEY", "rule", "column", "value", "message"]
#: No violation (shared: a field walk checks a hundred rules, most of which find nothing).
_NONE = pd.DataFrame(columns=VIOLATION_COLUMNS)

#: rule id → what it means (quarantine and reports use these ids)
RULES = {
    "required": "a required question is unanswered where it is relevant",
    "not-relevant": "an answer to a question the skip logic hides",
    "constraint": "an answer breaks the question's constraint",
    "choice": "a value that is not one of the question's choices",
    "choice-filter": "a choice the question's choice filter does not offer here",
    "calculation": "a stored calculation differs from the form's formula",
}


#: The order of one field's rules in :func:`check_logic`'s output (rows then in table order).
RULE_ORDER = ("not-relevant", "required", "constraint", "choice", "choice-filter", "calculation")


def _rows(keys: pd.Index, mask, rule: str, item: Item, values: pd.Series,
          message: str) -> pd.DataFrame:
    if isinstance(mask, np.ndarray) and mask.dtype == bool:
        hit = mask  # already one flag per row of keys
    elif isinstance(mask, pd.Series) and mask.dtype == bool and mask.index.equals(keys):
        # The usual case: aligned, no NA to fill.
        hit = mask.to_numpy()
    else:
        hit = pd.Series(mask, index=keys).fillna(False).astype(bool).to_numpy()
    if not hit.any():
        return _NONE
    return pd.DataFrame({"KEY": keys[hit], "rule": rule, "column": item.name,
                         "value": values[hit].to_numpy(), "message": message})


def check_logic(data: FormData, *, recompute_calculations: bool = False,
                fields: Collection[str] | None = None) -> pd.DataFrame:
    """Every violation of relevance, required, constraint and choice rules, one row each.

    ``KEY`` is the row's key in its own table (a repeat instance's KEY for repeat fields).
    Calculations are not recomputed by default: ``random()``/``now()`` make some of them
    unrepeatable, and a stored value is what the device computed. ``fields``: only these
    fields' rules (a caller that knows the others' results cannot have changed).
    """
    model: FormModel = data.model
    out: list[pd.DataFrame] = []
    # Each level's frame (a repeat's joins its parents' columns) and each group's relevance
    # are built once for the whole walk: they do not change while fields are checked.
    frames: dict[str | None, pd.DataFrame] = {}
    groups: dict[str, pd.Series] = {}
    for item in model.fields:
        if fields is not None and item.name not in fields:
            continue
        if item.repeat is not None and item.repeat not in data.repeats:
            continue
        table = data.table(item.repeat)
        if item.name not in table.columns:
            continue
        if item.repeat not in frames:
            frames[item.repeat] = data.level_frame(item.repeat)
        frame = frames[item.repeat]
        keys = table.index
        values = table[item.name]
        answered, relevant = _masks(_answered(values),
                                    data.relevant(item, frame=frame, cache=groups), keys)
        if item.is_input or item.type in ("calculate", "hidden"):
            out.append(_rows(keys, answered & ~relevant, "not-relevant", item, values,
                             f"'{item.name}' is answered but not relevant"
                             f" ({' and '.join(model.relevance(item)) or 'parent group'})"))
        if item.is_input and item.required == "yes":
            out.append(_rows(keys, relevant & ~answered, "required", item, values,
                             f"'{item.name}' is required but empty"))
        check = _series(relevant & answered, keys)
        if item.constraint and item.is_input and check.any():
            ok = data.evaluate_bool(item, item.constraint, frame=frame)
            out.append(_rows(keys, check & ~ok, "constraint", item, values,
                             f"breaks '{item.constraint}'"))
        if (item.is_select_one or item.is_select_multiple) and check.any():
            out += _choice_rows(data, item, values, check)
        if recompute_calculations and item.type == "calculate" and "random(" not in \
                item.calculation and "now(" not in item.calculation:
            expected = format_values(data.evaluate(item, item.calculation))
            differs = _series(relevant, keys) & (
                expected.fillna("") != values.fillna("").astype(str))
            out.append(_rows(keys, differs, "calculation", item, values,
                             f"differs from '{item.calculation}'"))
    out = [o for o in out if len(o)]
    if not out:
        return pd.DataFrame(columns=VIOLATION_COLUMNS)
    return pd.concat(out, ignore_index=True)


def _masks(answered: pd.Series, relevant: pd.Series, keys: pd.Index
           ) -> tuple[pd.Series | np.ndarray, pd.Series | np.ndarray]:
    """The masks as arrays when both are aligned with ``keys`` and without NA (the usual
    case: array operations are far cheaper), else as they are (pandas aligns them)."""
    if relevant.dtype == bool and relevant.index.equals(keys) and answered.index.equals(keys):
        return answered.to_numpy(), relevant.to_numpy()
    return answered, relevant


def _series(mask: pd.Series | np.ndarray, keys: pd.Index) -> pd.Series:
    return pd.Series(mask, index=keys) if isinstance(mask, np.ndarray) else mask


def _answered(values: pd.Series) -> pd.Series:
    """Whether each value is an answer: present and not the empty string."""
    if values.dtype != object:
        return values.notna() & (values.astype(str) != "")
    # Text as received: compared as it is (a str of a value is empty only for '').
    raw = values.to_numpy()
    out = pd.notna(raw)
    out[out] = raw[out] != ""
    return pd.Series(out, index=values.index, name=values.name)


def _choice_rows(data: FormData, item: Item, values: pd.Series, check: pd.Series
                 ) -> list[pd.DataFrame]:
    """A select's answers (where ``check``: relevant and answered) that are not codes of its
    list, and, under a choice filter, codes the filter did not offer."""
    lst = data.model.choices_for(item)
    if lst is None:
        return []
    keys = values.index
    codes = set(lst.codes())
    if item.is_select_one:
        bad = check & ~values.isin(codes)
    else:
        bad = check & ~values.fillna("").astype(str).str.split().map(
            lambda tokens: bool(tokens) and set(tokens) <= codes)
    out = [_rows(keys, bad, "choice", item, values, f"not a choice of list '{lst.name}'")]
    if item.choice_filter:
        offered = pd.Series(True, index=keys)
        if item.is_select_one:
            mask = data.choice_mask(item)
            column = mask.columns.get_indexer(pd.Index(values.fillna("").astype(str)))
            picked = mask.to_numpy()[np.arange(len(mask)), np.maximum(column, 0)]
            offered[:] = np.where(column >= 0, picked, True)
        out.append(_rows(keys, check & ~bad & ~offered, "choice-filter", item, values,
                         f"not offered by '{item.choice_filter}'"))
    return out
