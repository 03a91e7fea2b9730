"""Answers the skip logic hides: blanked before the data are accepted, every one logged.

An answer to a question whose ``relevant`` is false (ODK Collect would never have sent it: an
outdated form, a server edit, a bug) must not reach the release, where it would break the
question's universe. What happens to it depends on the case:

1. **Interview past its consent gates** — the value is *blanked* (set to missing) before the
   answers are typed, so it never reaches ``accepted.parquet``. Each blanked value is one
   automatic entry in the form's corrections log (``corrections.parquet``: instanceID, the
   row's KEY, field, old value, new value empty, rule ``non-relevant-blanked``, source
   ``automatic``) and stays a ``not-relevant`` flag (a warning: the submission is kept).
2. **A hidden value that gates other questions** — blanked in dependency order until nothing
   hidden is left, as Collect clears a question that turns non-relevant and re-evaluates what
   depends on it. A hidden answer is blanked only when nothing its relevance (transitively)
   reads is itself hidden in the same submission; the rest are re-evaluated once those are
   blank. Blanking may make another question relevant: left unanswered where it is required,
   the submission is quarantined by the ``required`` rule, checked on the blanked answers.
   Stored calculations are not recomputed (the device's values stand; see
   :func:`~dhsurvey.validate.logic.check_logic`).
3. **Refused (or never given) consent or assent** — nothing is blanked: the answers are the
   evidence for ``beyond-consent``, an error that quarantines the submission.
4. **An identifier** (a field of the form's ``instance_name`` or ``household_id``) — never
   blanked, since linkage and duplicate detection read it: error ``not-relevant-identifier``.
5. **A repeat instance the form hides as a whole** (its repeat, or a group around it, not
   relevant): the device would have held no such row and its answers cannot be made
   consistent by blanking; error ``non-relevant-repeat``. Single hidden answers inside a
   relevant repeat instance (a roster member's) are blanked as in case 1, logged with the
   instance's KEY.

Relevance is the form model's own (:meth:`~dhsurvey.forms.frames.FormData.relevant`), the same
the simulator obeys and :mod:`dhsurvey.validate.logic` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dhsurvey.forms.expressions import ExpressionError, functions, names_read, references
from dhsurvey.forms.facts import gates_passed
from dhsurvey.forms.frames import PARENT, FormData
from dhsurvey.forms.model import FormModel
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.validate.corrections import REPORT_COLUMNS
from dhsurvey.validate.logic import RULE_ORDER, VIOLATION_COLUMNS, check_logic

#: The corrections-log rule of a value blanked because the skip logic hides it.
BLANKED = "non-relevant-blanked"
#: Who made an automatic correction (the log's ``author``).
AUTHOR = "dhsurvey validate"
NOT_RELEVANT = "not-relevant"
#: Error rules for hidden answers that are not blanked (cases 4 and 5 above).
ERRORS = {
    "not-relevant-identifier": "an identifier answered although not relevant (not blanked: "
                               "linkage and duplicates read it)",
    "non-relevant-repeat": "a repeat instance the form hides as a whole",
}


def root_key(key: str) -> str:
    """The instanceID a row's KEY starts with (a repeat instance's submission)."""
    return str(key).split("/", 1)[0]


@dataclass
class Blanked:
    """The raw form with hidden answers blanked, what was done, and the logic checked on it."""

    raw: RawForm
    log: pd.DataFrame  # one automatic correction per blanked value (REPORT_COLUMNS)
    issues: pd.DataFrame  # not-relevant flags of blanked values; errors of kept ones
    logic: pd.DataFrame  # check_logic on the blanked answers (hidden answers kept: refused)


def _depends(model: FormModel) -> dict[str, frozenset[str]]:
    """Field → every field its relevance reads, transitively through those fields' own
    relevance: the answers whose blanking could change whether it is asked."""
    direct = {i.name: {r for expr in model.relevance(i) for r in references(expr)}
              for i in model.fields}
    out: dict[str, frozenset[str]] = {}
    for name in direct:
        seen: set[str] = set()
        todo = list(direct[name])
        while todo:
            ref = todo.pop()
            if ref not in seen:
                seen.add(ref)
                todo.extend(direct.get(ref, ()))
        out[name] = frozenset(seen - {name})
    return out


#: Functions whose value does not follow from the answers: a field using one is always
#: checked again.
_UNSTABLE = frozenset({"random", "once", "uuid", "now"})


def _readers(model: FormModel) -> dict[str, frozenset[str] | None]:
    """Field → every name its rules in :func:`check_logic` read (its own and its groups'
    relevance, its constraint and choice filter), None when that is not known (an unstable
    function or an expression that does not parse: such a field is always checked again)."""
    out: dict[str, frozenset[str] | None] = {}
    for item in model.fields:
        texts = [t for t in (*model.relevance(item), item.constraint, item.choice_filter) if t]
        try:
            stable = not any(functions(t) & _UNSTABLE for t in texts)
            names = frozenset(n for t in texts for n in names_read(t))
        except ExpressionError:
            stable = False
        out[item.name] = names if stable else None
    return out


def _recheck(view: FormData, before: pd.DataFrame, blanked: set[str],
             readers: dict[str, frozenset[str] | None]) -> pd.DataFrame:
    """``check_logic(view)``, with ``before`` its violations before the ``blanked`` fields
    were blanked in these submissions: only the fields whose rules read a blanked field (or
    that were blanked) are checked again, the others' violations stand. The rows come in
    check_logic's own order (field, rule, row of the field's table)."""
    tables = [view.root, *view.repeats.values()]
    if not all(t.index.is_unique for t in tables):  # no row order to rebuild: check all
        return check_logic(view)
    fields = {name for name, reads in readers.items()
              if name in blanked or reads is None or reads & blanked}
    again = check_logic(view, fields=fields)
    kept = before[~before["column"].isin(fields)]
    if kept.empty:
        return again
    rows = _concat([kept, again]) if len(again) else kept
    model = view.model
    order = {item.name: n for n, item in enumerate(model.fields)}
    row = np.empty(len(rows), dtype=np.int64)
    levels = rows["column"].map(lambda c: model[c].repeat).to_numpy()
    for level in set(levels):
        at = levels == level
        row[at] = view.table(level).index.get_indexer(rows["KEY"].to_numpy()[at])
    rank = rows["rule"].map({r: n for n, r in enumerate(RULE_ORDER)}).to_numpy()
    return rows.iloc[np.lexsort((row, rank, rows["column"].map(order).to_numpy()))] \
        .reset_index(drop=True)


def _subset(data: FormData, keys: set[str]) -> FormData:
    """The submissions ``keys`` only (their root rows and repeat rows)."""
    root = data.root[data.root.index.isin(list(keys))]
    repeats = {name: t[t.index.map(root_key).isin(keys)] for name, t in data.repeats.items()}
    return FormData(data.model, root, repeats)


def _hidden_instances(data: FormData, hidden: pd.DataFrame) -> pd.Series:
    """Per row of ``hidden`` (not-relevant violations): whether its repeat instance as a whole
    is hidden (the repeat, with the groups around it, not relevant for its parent row)."""
    out = pd.Series(False, index=hidden.index)
    model = data.model
    level = hidden["column"].map(lambda c: model[c].repeat if c in model else None)
    for name in data.repeats:
        rows = level == name
        if not rows.any():
            continue
        asked = data.relevant(model[name])  # at the parent's level
        parent = data.repeats[name][PARENT]
        out[rows] = hidden.loc[rows, "KEY"].map(parent).map(asked).eq(False)
    return out


def _ready(hidden: pd.DataFrame, depends: dict[str, frozenset[str]]) -> pd.Series:
    """Hidden answers that can be blanked now: nothing their relevance reads is hidden in
    the same submission (else wait for that to be blanked and look again)."""
    owner = hidden["KEY"].map(root_key)
    pending = hidden.groupby(owner)["column"].agg(frozenset)
    ready = pd.Series([not (depends.get(c, frozenset()) & pending[o])
                       for c, o in zip(hidden["column"], owner, strict=True)],
                      index=hidden.index, dtype=bool)
    if not ready.any():  # a cycle of relevance (a broken form): blank what is hidden now
        return pd.Series(True, index=hidden.index)
    return ready


def _blank(tables: dict[str | None, pd.DataFrame], rows: pd.DataFrame,
           model: FormModel) -> None:
    """Set the values of ``rows`` (KEY, column) to missing in the level tables (by KEY)."""
    for column, group in rows.groupby("column"):
        level = model[str(column)].repeat
        table = tables[level]
        table.loc[table["KEY"].isin(set(group["KEY"])), column] = None


def blank_non_relevant(raw: RawForm, model: FormModel, *, identifiers: set[str]) -> Blanked:
    """Blank every answer the skip logic hides in interviews past their consent gates (see
    the module docstring for each case); ``identifiers``: fields never blanked."""
    view = raw.to_form_data(model)
    logic = check_logic(view)
    gates = {g: v for g, v in model.consent_given.items() if g in view.root.columns}
    refused = set(view.root.index[~gates_passed(view.root, gates).to_numpy()])
    tables: dict[str | None, pd.DataFrame] = {None: raw.root.copy(),
                                              **{n: t.copy() for n, t in raw.repeats.items()}}
    depends = _depends(model)
    readers = _readers(model)
    blanked: list[pd.DataFrame] = []
    kept: list[pd.DataFrame] = []
    # Rows of no submission received (orphans: the reader quarantines them) are left alone.
    asked = set(view.root.index) - refused
    hidden = logic[(logic["rule"] == NOT_RELEVANT) & logic["KEY"].map(root_key).isin(asked)]
    # Each round blanks at least one answer per submission still holding hidden ones.
    for _ in range(len(model.fields) + 1):
        held = hidden["column"].isin(identifiers)
        whole = _hidden_instances(view, hidden) & ~held
        kept += [hidden[held].assign(rule="not-relevant-identifier"),
                 hidden[whole].assign(rule="non-relevant-repeat")]
        hidden = hidden[~held & ~whole]
        if hidden.empty:
            break
        now = hidden[_ready(hidden, depends)]
        _blank(tables, now, model)
        blanked.append(now)
        changed = set(now["KEY"].map(root_key))
        view = _subset(FormData(model, *_indexed(tables)), changed)
        # The rules look at one submission at a time: only the changed ones are checked again,
        # and in them only the fields the blanked answers can affect.
        mine = logic["KEY"].map(root_key).isin(changed)
        again = _recheck(view, logic[mine], set(now["column"]), readers)
        logic = _concat([logic[~mine], again])
        hidden = again[(again["rule"] == NOT_RELEVANT) & ~_in(again, kept)]
    done = _concat(blanked) if blanked else pd.DataFrame(columns=VIOLATION_COLUMNS)
    out = RawForm(raw.form_id, tables[None], {n: t for n, t in tables.items() if n is not None},
                  raw.quarantine)
    # Hidden answers left are reported by _issues, except those after a refused consent.
    final = logic[(logic["rule"] != NOT_RELEVANT) | logic["KEY"].map(root_key).isin(refused)]
    return Blanked(out, _log(done, model), _issues(done, kept), final.reset_index(drop=True))


def _in(rows: pd.DataFrame, kept: list[pd.DataFrame]) -> pd.Series:
    """Which of ``rows`` (KEY, column) are among the hidden answers ``kept`` unblanked."""
    kept = [k for k in kept if len(k)]
    if not kept:
        return pd.Series(False, index=rows.index)
    known = pd.MultiIndex.from_frame(pd.concat(kept)[["KEY", "column"]])
    return pd.Series(pd.MultiIndex.from_frame(rows[["KEY", "column"]]).isin(known),
                     index=rows.index)


def _indexed(tables: dict[str | None, pd.DataFrame]
             ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Level tables indexed by KEY, as FormData takes them."""
    return (tables[None].set_index("KEY", drop=False),
            {n: t.set_index("KEY", drop=False) for n, t in tables.items() if n is not None})


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Violations in one table (the columns kept when every part is empty)."""
    full = [p for p in parts if len(p)]
    return pd.concat(full, ignore_index=True) if full else parts[0].iloc[0:0]


def _log(done: pd.DataFrame, model: FormModel) -> pd.DataFrame:
    """One automatic correction per blanked value."""
    if done.empty:
        return pd.DataFrame(columns=REPORT_COLUMNS)
    return pd.DataFrame({
        "instanceID": done["KEY"].map(root_key).to_numpy(), "KEY": done["KEY"].to_numpy(),
        "field": done["column"].to_numpy(),
        "old_value": done["value"].map(lambda v: None if pd.isna(v) else str(v)).to_numpy(),
        "new_value": None, "reason": done["message"].to_numpy(), "author": AUTHOR,
        "form": model.form_id, "status": "applied", "rule": BLANKED, "source": "automatic",
    }, columns=REPORT_COLUMNS)


def _issues(done: pd.DataFrame, kept: list[pd.DataFrame]) -> pd.DataFrame:
    """The not-relevant flags of blanked values (old value) and the errors of kept ones."""
    flagged = done.assign(message=done["message"] + " (blanked in the accepted data)")
    errors = [k.assign(message=k["rule"].map(ERRORS) + ": " + k["message"])
              for k in kept if len(k)]
    parts = [p for p in (flagged, *errors) if len(p)]
    if not parts:
        return pd.DataFrame(columns=VIOLATION_COLUMNS)
    return pd.concat(parts, ignore_index=True)[VIOLATION_COLUMNS].drop_duplicates()

