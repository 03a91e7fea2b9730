"""Recoding chosen by the suppression budget: the fewest coarsening steps that let local
suppression reach k-anonymity and l-diversity while blanking at most the budget of any key.

Why search, not fixed recodes: a fixed recode is either too coarse for a large country or
too fine for a small one, and local suppression then does the work recoding should (blanking
caregiver education for most caregivers). The rules list, per variable, steps from fine to
coarse (``disclosure.yaml``: bands, top-codes, merged codes, and ``drop`` as the last
resort). Starting from none, each round takes the one step that leaves the fewest unsafe
records before suppression (steps that leave a variable out only when nothing else is left),
then runs local suppression and checks the budget: the release takes the first combination
that meets it, or fails naming the variable and the key that broke it.

Why "auto" linking: the household, child and caregiver files of a tier share ``hh_id`` only if
they can be protected together; otherwise each is protected, and released, on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.anonymise.linked import build_profile, code_text, harmful_flags, unsafe_rows
from dhsurvey.anonymise.recode import RARE_CODE, band
from dhsurvey.anonymise.scenario import Rules, Step
from dhsurvey.anonymise.suppression import (
    blanked_cells,
    form_importance,
    profile_importance,
    protect,
    write_back,
)
from dhsurvey.anonymise.working import WorkingForm


def apply_step(values: pd.Series, step: Step, into: Any = None) -> pd.Series:
    """One recoding step on a column (``drop`` is the caller's: it removes the column).
    ``into``: the code merged levels take (the column's existing merged code, if any)."""
    if step.kind == "bands":
        return band(values, step.value)
    if step.kind == "top":
        return values.clip(upper=step.value)
    if step.kind == "merge":
        levels = {str(v) for v in step.value}
        text = code_text(values)
        out = values.copy()
        if isinstance(out.dtype, pd.CategoricalDtype):
            out = out.astype(object)
        out[text.isin(levels).to_numpy()] = RARE_CODE if into is None else into
        return out.astype(values.dtype) if not isinstance(values.dtype, pd.CategoricalDtype) \
            else out
    return values


def merge_code(form: WorkingForm, column: str) -> Any:
    """The code merged levels of a select_one take: its existing merged code, else a code
    its list does not use (995, 9955, ...)."""
    if column in form.rare:
        return form.rare[column]["into"]
    code = RARE_CODE
    lst = form.model.choices_for(form.model[column]) if column in form.model else None
    taken = {c for c in lst.codes()} if lst is not None else set()
    while str(code) in taken:
        code = code * 10 + 5
    return code


@dataclass
class Trial:
    """One combination of steps, after local suppression (on copies)."""

    levels: dict[tuple[str, str], int]
    forms: dict[str, WorkingForm]
    cells: dict[tuple[str, str], np.ndarray]
    unsafe: dict[str, int]  # per form: records left unsafe
    shares: dict[tuple[str, str], float]

    def over_budget(self, budget: float) -> dict[tuple[str, str], float]:
        return {key: share for key, share in self.shares.items() if share > budget + 1e-12}

    def ok(self, budget: float, forms: Sequence[str] | None = None) -> bool:
        """Every record safe and every key within the budget (of ``forms``, default all)."""
        return not any(n for f, n in self.unsafe.items() if forms is None or f in forms) \
            and not [k for k in self.over_budget(budget) if forms is None or k[0] in forms]


Levels = dict[tuple[str, str], int]


class Search:
    """The step search of one tier over its groups of linked forms.

    Steps are applied to light copies (the keys, the household link, the weight), each
    stepped column computed (and its observed values counted) once; a group's result
    depends only on its own forms' steps and is remembered, so a round that tries every
    variable re-evaluates only the group it changes.
    """

    def __init__(self, forms: Mapping[str, WorkingForm], rules: Rules, k: int,
                 preferred: Mapping[str, list[str]], absent_known: bool = True,
                 collapsed: bool = False) -> None:
        self.forms = dict(forms)
        self.collapsed = collapsed
        self.absent_known = absent_known
        self.rules = rules
        self.k = k
        self.preferred = preferred
        self.sensitive = {f: dict(rules.sensitive.get(f, {})) for f in forms}
        self.flags = {n: harmful_flags(f.table, self.sensitive.get(n, {}))
                      for n, f in self.forms.items()}
        self._columns: dict[tuple[str, str, int], pd.Series] = {}
        self._observed: dict[tuple[str, str, int], int] = {}
        self._groups: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._before: dict[tuple[Any, ...], int] = {}

    def _column(self, f: WorkingForm, col: str, n: int) -> pd.Series:
        cached = self._columns.get((f.name, col, n))
        if cached is None:
            if n == 0:
                cached = f.table[col]
            else:
                step = self.rules.ladder(f.name, col)[n - 1]
                cached = apply_step(self._column(f, col, n - 1), step, merge_code(f, col))
            self._columns[(f.name, col, n)] = cached
        return cached

    def _count(self, name: str, col: str, n: int) -> int:
        """Observed values of a column after its first ``n`` steps (the budget's base)."""
        found = self._observed.get((name, col, n))
        if found is None:
            found = int(self._column(self.forms[name], col, n).notna().sum())
            self._observed[(name, col, n)] = found
        return found

    def stepped(self, f: WorkingForm, levels: Mapping[tuple[str, str], int]) -> WorkingForm:
        """A light copy of ``f`` with the steps of ``levels`` applied to its keys."""
        extra = [c for c in ("hh_id", "weight") if c in f.table.columns]
        columns: dict[str, pd.Series] = {}
        keys = []
        for col in f.keys:
            n = levels.get((f.name, col), 0)
            ladder = self.rules.ladder(f.name, col)[:n]
            if any(step.kind == "drop" for step in ladder):
                continue
            keys.append(col)
            columns[col] = self._column(f, col, n)
        for col in extra:
            columns[col] = f.table[col]
        table = pd.DataFrame(columns, copy=False)
        return replace(f, table=table, keys=keys, suppressed_cells={}, suppressed={})

    @staticmethod
    def _own(group: Sequence[str], levels: Mapping[tuple[str, str], int]) -> tuple[Any, ...]:
        return (tuple(group), tuple(sorted((key, n) for key, n in levels.items()
                                           if key[0] in group and n)))

    def _group(self, group: Sequence[str], levels: Levels) -> tuple[Any, ...]:
        memo = self._own(group, levels)
        found = self._groups.get(memo)
        if found is None:
            copies = {n: self.stepped(self.forms[n], levels) for n in group}
            profile = build_profile([copies[n] for n in group], "table", self.sensitive,
                                    flags=self.flags, absent_known=self.absent_known)
            cells: dict[tuple[str, str], np.ndarray] = {}
            unsafe = dict.fromkeys(group, 0)
            if profile.keys:
                blanked, left = protect(profile, profile_importance(profile, self.preferred),
                                        self.k, self.collapsed,
                                        {c for n in group for c in self.forms[n].calibration})
                cells = blanked_cells(profile, blanked, {n: copies[n].table for n in group})
                unsafe = {n: int((left & profile.present[n]).sum()) for n in group}
            found = (copies, cells, unsafe)
            self._groups[memo] = found
        return found

    def trial(self, groups: Sequence[Sequence[str]], levels: Levels) -> Trial:
        copies: dict[str, WorkingForm] = {}
        cells: dict[tuple[str, str], np.ndarray] = {}
        unsafe: dict[str, int] = {}
        for group in groups:
            c, s, u = self._group(group, levels)
            copies.update(c)
            cells.update(s)
            unsafe.update(u)
        observed = {(n, key): self._count(n, key, levels.get((n, key), 0))
                    for n in copies for key in copies[n].keys}
        shares = {key: (int(cells[key].sum()) / observed[key] if key in cells and observed[key]
                        else 0.0) for key in observed}
        return Trial(dict(levels), copies, cells, unsafe, shares)

    def _unsafe_before(self, groups: Sequence[Sequence[str]], levels: Levels) -> int:
        total = 0
        for group in groups:
            memo = self._own(group, levels)
            if memo not in self._before:
                profile = build_profile([self.stepped(self.forms[n], levels) for n in group],
                                        "table", self.sensitive, flags=self.flags,
                                        absent_known=self.absent_known)
                self._before[memo] = int(unsafe_rows(profile, profile.frame, self.k).sum()) \
                    if profile.keys else 0
            total += self._before[memo]
        return total

    def options(self, trial: Trial, groups: Sequence[Sequence[str]],
                strict: Sequence[str] = ()) -> list[tuple[str, str]]:
        """Next steps worth trying: variables of the groups that still have a problem;
        steps that leave a variable out only when no other step is left (never for the
        forms in ``strict``)."""
        over = trial.over_budget(self.rules.suppression_budget)
        troubled = [g for g in groups
                    if any(trial.unsafe.get(n) for n in g) or any(f in g for f, _ in over)]
        found: list[tuple[tuple[str, str], bool]] = []
        for group in troubled:
            for name in group:
                for col in trial.forms[name].keys:
                    ladder = self.rules.ladder(name, col)
                    n = trial.levels.get((name, col), 0)
                    if n < len(ladder):
                        found.append(((name, col), ladder[n].kind == "drop"))
        keep = [o for o, drop in found if not drop]
        return keep or [o for o, _ in found if o[0] not in strict]

    def coarsest(self, groups: Sequence[Sequence[str]]) -> Trial:
        """Every variable of ``groups`` at its last step short of leaving it out."""
        levels = {}
        for group in groups:
            for name in group:
                for col in self.forms[name].keys:
                    ladder = self.rules.ladder(name, col)
                    steps = [s for s in ladder if s.kind != "drop"]
                    if steps:
                        levels[(name, col)] = len(steps)
        return self.trial(groups, levels)

    def search(self, groups: Sequence[Sequence[str]], strict: Sequence[str] = ()) -> Trial:
        """The first combination of steps that meets the rules (or the last one tried);
        no variable of the forms in ``strict`` is left out."""
        levels: Levels = {}
        trial = self.trial(groups, levels)
        budget = self.rules.suppression_budget
        while not trial.ok(budget):
            options = self.options(trial, groups, strict)
            if not options:
                break
            best = self._best(options, groups, levels, trial)
            levels[best] = levels.get(best, 0) + 1
            trial = self.trial(groups, levels)
        return self.prune(groups, trial) if trial.ok(budget) else trial

    def _best(self, options: list[tuple[str, str]], groups: Sequence[Sequence[str]],
              levels: Levels, trial: Trial) -> tuple[str, str]:
        """The step that leaves the fewest unsafe records before suppression (a variable
        over budget first among equals); among steps that leave a variable out, the least
        important variable's."""
        if all(self.rules.ladder(*o)[levels.get(o, 0)].kind == "drop" for o in options):
            def rank(o: tuple[str, str]) -> int:
                order = form_importance(self.forms[o[0]], self.preferred)
                return -order.index(o[1]) if o[1] in order else 0
            return min(options, key=rank)
        over = trial.over_budget(self.rules.suppression_budget)
        scores = {o: (self._unsafe_before(groups, {**levels, o: levels.get(o, 0) + 1}),
                      0 if o in over else 1) for o in options}
        return min(options, key=scores.__getitem__)

    def prune(self, groups: Sequence[Sequence[str]], trial: Trial) -> Trial:
        """Undo, one step at a time and the most important variable's first, every step the
        rules can still be met without: a step taken early may have become needless once a
        later one was taken."""
        levels = dict(trial.levels)

        def rank(key: tuple[str, str]) -> int:  # the most important variable first
            order = form_importance(self.forms[key[0]], self.preferred)
            return order.index(key[1]) if key[1] in order else len(order)

        changed = True
        while changed:
            changed = False
            for key in sorted(levels, key=rank):
                if not levels[key]:
                    continue
                fewer = {**levels, key: levels[key] - 1}
                attempt = self.trial(groups, fewer)
                if attempt.ok(self.rules.suppression_budget):
                    levels, trial, changed = fewer, attempt, True
        return trial


def linked_groups(forms: Mapping[str, WorkingForm], link: bool) -> list[list[str]]:
    """Groups of forms protected (and released) together: the forms carrying ``hh_id`` in one
    group when linked, every form on its own otherwise."""
    households = [n for n, f in forms.items() if "hh_id" in f.table.columns]
    if link and len(households) > 1:
        return [households] + [[n] for n in forms if n not in households]
    return [[n] for n in forms]


def apply_trial(forms: Mapping[str, WorkingForm], trial: Trial, rules: Rules,
                tier: str) -> None:
    """Apply a search's steps and suppressions to the real forms (recorded for the report)."""
    for (name, col), n in trial.levels.items():
        f = forms[name]
        steps = list(rules.ladder(name, col)[:n])
        f.steps[col] = steps
        if any(step.kind == "drop" for step in steps):
            f.keys = [c for c in f.keys if c != col]
            if col in f.table.columns:
                f.table = f.table.drop(columns=[col])
            f.recodes.pop(col, None)
            f.rare.pop(col, None)
            f.reasons[col] = ("drop", f"quasi-identifier left out of the {tier} tier (its "
                              "recoding steps could not protect it within the budget)")
            continue
        for step in steps:
            into = merge_code(f, col)
            before = f.table[col]
            f.table[col] = apply_step(before, step, into)
            if step.kind == "merge":
                levels = list(f.rare.get(col, {}).get("levels", []))
                levels += [v for v in step.value if str(v) not in set(map(str, levels))]
                f.rare[col] = {"levels": sorted(levels, key=lambda v: (len(str(v)), str(v))),
                               "into": into,
                               "records": int(f.table[col].astype(str).eq(str(into)).sum())}
            f.recodes[col] = "; ".join(x for x in (f.recodes.get(col), step.describe()) if x)
    write_back(forms, trial.cells)


def harmonise(tables: Mapping[str, Mapping[str, pd.DataFrame]],
              levels: Mapping[str, Mapping[str, Mapping[str, int]]], rules: Rules,
              merged: Mapping[str, Mapping[str, Mapping[str, Any]]]
              ) -> tuple[dict[str, dict[str, pd.DataFrame]], list[str]]:
    """Countries' released tables recoded alike for pooling: each variable taken to the
    coarsest step any country needed (``levels[iso][form][column]``, steps of the same
    ladder), left out everywhere if any country left it out. Coarsening only merges groups,
    so every country stays as protected as its own release; without it a code would mean
    "12" in one country and "12-14" in another. ``merged``: the pooled merged codes, per
    form and column (the code merged levels take). Returns the tables and notes."""
    top: dict[tuple[str, str], int] = {}
    for per_form in levels.values():
        for form, cols in per_form.items():
            for col, n in cols.items():
                top[(form, col)] = max(top.get((form, col), 0), int(n))
    out = {iso: dict(t) for iso, t in tables.items()}
    notes: list[str] = []
    for (form, col), n in sorted(top.items()):
        ladder = rules.ladder(form, col)[:n]
        if any(step.kind == "drop" for step in ladder):
            for iso in out:
                if form in out[iso] and col in out[iso][form].columns:
                    out[iso][form] = out[iso][form].drop(columns=[col])
            notes.append(f"{form}.{col} left out: a country's release left it out")
            continue
        into = merged.get(form, {}).get(col, {}).get("into", RARE_CODE)
        for iso in out:
            have = int(levels.get(iso, {}).get(form, {}).get(col, 0))
            if have < n and form in out[iso] and col in out[iso][form].columns:
                table = out[iso][form].copy()
                for step in rules.ladder(form, col)[have:n]:
                    table[col] = apply_step(table[col], step, into)
                out[iso][form] = table
                notes.append(f"{form}.{col} of {iso} recoded as the coarsest country's: "
                             + "; ".join(s.describe() for s in ladder[have:]))
    return out, notes


__all__ = ["Search", "Trial", "apply_step", "apply_trial", "harmonise", "linked_groups",
           "merge_code"]
