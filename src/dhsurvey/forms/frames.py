"""Submissions of one form as tables, and the form's own logic evaluated on them.

A form's data is one root table (a row per submission) plus a table per repeat (a row per
instance, ``PARENT_KEY`` pointing to the owning row). The simulator answers questions and the
validator checks them through this one class, so relevance, constraints, calculations and choice
filters mean the same thing everywhere — the meaning the form itself gives them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.expressions import (
    ExpressionError,
    Node,
    RepeatData,
    evaluate,
    evaluate_bool,
    references,
)
from dhsurvey.forms.model import FormModel, Item

PARENT = "PARENT_KEY"


def format_values(values: pd.Series) -> pd.Series:
    """Values as the strings a device writes: ``12`` not ``12.0``, dates ISO, missing None."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: "true" if v else "false").astype(object)
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.map(lambda v: None if pd.isna(v) else v.date().isoformat()).astype(object)
    return values.map(_format_one).astype(object)


def _format_one(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value) or np.isinf(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


@dataclass
class FormData:
    """One form's submissions: ``root`` plus ``repeats[name]`` (with a ``PARENT_KEY`` column).

    Column names are field names (not group paths). Index labels are the row keys; a repeat's
    ``PARENT_KEY`` holds index labels of the enclosing repeat, or of ``root``.
    """

    model: FormModel
    root: pd.DataFrame
    repeats: dict[str, pd.DataFrame] = field(default_factory=dict)
    today: dt.date | None = None
    now: dt.datetime | None = None

    # -- levels -------------------------------------------------------------------------------
    def table(self, repeat: str | None) -> pd.DataFrame:
        return self.root if repeat is None else self.repeats[repeat]

    def _parent_repeat(self, repeat: str) -> str | None:
        return self.model[repeat].repeat

    def level_frame(self, repeat: str | None) -> pd.DataFrame:
        """The rows of a level with every enclosing level's columns joined in.

        Inside a repeat, ``${field}`` may name a field of the submission (or of an enclosing
        repeat); joining those columns makes every reference a plain column lookup.
        """
        if repeat is None:
            return self.root
        frame = self.repeats[repeat]
        parent_level = self._parent_repeat(repeat)
        outer = self.level_frame(parent_level)
        extra = [c for c in outer.columns if c not in frame.columns]
        joined = outer.reindex(frame[PARENT].to_numpy())[extra]
        joined.index = frame.index
        return pd.concat([frame, joined], axis=1)

    def position(self, repeat: str) -> pd.Series:
        """1-based position of each instance within its parent, in table order."""
        frame = self.repeats[repeat]
        return frame.groupby(PARENT, sort=False).cumcount() + 1

    def child_repeats(self, level: str | None) -> dict[str, RepeatData]:
        """Repeats directly inside ``level``, as the evaluator's node-sets."""
        out = {}
        for rep in self.model.repeats:
            if rep.repeat == level and rep.name in self.repeats:
                frame = self.repeats[rep.name]
                out[rep.name] = RepeatData(frame=frame, parent=frame[PARENT])
        return out

    # -- evaluation ---------------------------------------------------------------------------
    def _context(self, level: str | None, rng: np.random.Generator | None) -> dict:
        return {
            "repeats": self.child_repeats(level),
            "position": self.position(level) if level is not None else None,
            "rng": rng,
            "today": self.today,
            "now": self.now,
        }

    @contextmanager
    def located(self, item: Item, expression: str | Node) -> Iterator[None]:
        """An :class:`ExpressionError` inside names the workbook cell of ``expression``.

        File, form and field always; sheet, row and column when ``expression`` is one of the
        item's own cells (relevant, constraint, calculation, choice_filter, …).
        """
        try:
            yield
        except ExpressionError as exc:
            exc.located(**self._where(item, expression))
            raise

    def _where(self, item: Item, expression: str | Node) -> dict[str, Any]:
        text = expression if isinstance(expression, str) else expression.source
        column = next((c for c, t in item.expressions().items() if t == text), None)
        cell = {"sheet": "survey", "row": item.row, "column": column} if column else {}
        return {"file": self.model.path, **cell, "form": self.model.form_id, "field": item.name}

    def evaluate(self, item: Item, expression: str | Node, *,
                 current: pd.Series | None = None,
                 rng: np.random.Generator | None = None,
                 frame: pd.DataFrame | None = None) -> pd.Series:
        """Value of ``expression`` at ``item``'s level (``.`` is the item's own value)."""
        frame = self.level_frame(item.repeat) if frame is None else frame
        if current is None and item.name in frame.columns:
            current = frame[item.name]
        with self.located(item, expression):
            return evaluate(expression, frame, current=current,
                            **self._context(item.repeat, rng))

    def evaluate_bool(self, item: Item, expression: str, *, current: pd.Series | None = None,
                      frame: pd.DataFrame | None = None) -> pd.Series:
        frame = self.level_frame(item.repeat) if frame is None else frame
        if current is None and item.name in frame.columns:
            current = frame[item.name]
        with self.located(item, expression):
            return evaluate_bool(expression, frame, current=current,
                                 **self._context(item.repeat, None))

    def relevant(self, item: Item, frame: pd.DataFrame | None = None,
                 cache: dict[str, pd.Series] | None = None) -> pd.Series:
        """Whether ``item`` is asked: its own relevance and every enclosing group's.

        ``cache`` (group name → its own relevance at its level) lets a caller walking every
        field evaluate each group's relevance once, not once per field inside it.
        """
        frame = self.level_frame(item.repeat) if frame is None else frame
        mask = pd.Series(True, index=frame.index)
        for group in [*self.model.ancestors(item), item]:
            if not group.relevant:
                continue
            level_item = group if group.repeat == item.repeat else None
            if level_item is None:
                # An enclosing repeat's (or outer group's) relevance at its own level,
                # broadcast to this level's rows through the parent links.
                outer = self.relevant(group, cache=cache)
                mask &= self._broadcast(outer, group.repeat, item.repeat, frame.index)
            elif cache is not None and group is not item:
                if group.name not in cache:
                    cache[group.name] = self.evaluate_bool(group, group.relevant, frame=frame)
                mask &= cache[group.name]
            else:
                mask &= self.evaluate_bool(group, group.relevant, frame=frame)
        return mask

    def _broadcast(self, values: pd.Series, source: str | None, target: str | None,
                   index: pd.Index) -> pd.Series:
        """Carry a per-row value from an outer level down to ``target``'s rows."""
        if source == target:
            return values.reindex(index).eq(True)
        if target is None:
            raise ValueError("cannot broadcast from an inner level to the root")
        parents = self.repeats[target][PARENT]
        up = self._broadcast(values, source, self._parent_repeat(target),
                             self.table(self._parent_repeat(target)).index)
        out = up.reindex(parents.to_numpy()).eq(True)
        out.index = parents.index
        return out.reindex(index)

    def choice_mask(self, item: Item) -> pd.DataFrame:
        """Which choices of ``item`` its ``choice_filter`` lets through, per row (rows × codes).

        The filter is evaluated on a cross join of rows and choices: bare names refer to the
        choices sheet's columns (``country = ${country}``), ``${…}`` to the row's answers.
        """
        lst = self.model.choices_for(item)
        frame = self.level_frame(item.repeat)
        if lst is None:
            raise ValueError(f"'{item.name}' has no choice list")
        codes = lst.codes()
        if not item.choice_filter:
            return pd.DataFrame(True, index=frame.index, columns=codes)
        choices = pd.DataFrame([{"name": c.name, **c.extra} for c in lst.choices])
        n, m = len(frame), len(choices)
        # Only the answers the filter names are crossed with the choices (rows × m copies).
        with self.located(item, item.choice_filter):
            used = [c for c in references(item.choice_filter) if c in frame.columns]
        rows = frame[used].iloc[np.repeat(np.arange(n), m)].reset_index(drop=True)
        relative = choices.iloc[np.tile(np.arange(m), n)].reset_index(drop=True)
        context = self._context(item.repeat, None)
        if context["position"] is not None:
            context["position"] = pd.Series(np.repeat(context["position"].to_numpy(), m))
        context["repeats"] = {}
        with self.located(item, item.choice_filter):
            mask = evaluate_bool(item.choice_filter, rows, relative=relative, **context)
        return pd.DataFrame(mask.to_numpy().reshape(n, m), index=frame.index, columns=codes)
