"""Submissions of one form as tables, and the form's own logic evaluated on them.

A form's data is one root table (a row per submission) plus a table per repeat (a row per
instance, ``PARENT_KEY`` pointing to the owning row). The simulator answers questions and the
validator checks them through this one class, so relevance, constraints, calculations and choice
filters mean the same thing everywhere — the meaning the form itself gives them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.forms.expressions import (
    ExpressionError,
    Node,
    RepeatData,
    evaluate,
    evaluate_bool,
    functions,
    references,
)
from dhsurvey.forms.model import ChoiceList, FormModel, Item, media_folders

PARENT = "PARENT_KEY"


class SecondaryInstances(Mapping[str, pd.DataFrame]):
    """A form's secondary instances by name, each a table with one row per item, read when
    first used: the CSV files attached to the form (all values text, as on the device) and the
    choice lists (name, label in the default language, and the lists' other columns)."""

    def __init__(self, model: FormModel) -> None:
        self.model = model
        self._files = {p.stem: p for folder in reversed(media_folders(Path(model.path)))
                       if folder.is_dir() for p in sorted(folder.glob("*.csv"))}
        self._loaded: dict[str, pd.DataFrame] = {}

    def _names(self) -> list[str]:
        return list(dict.fromkeys([*self._files, *self.model.choice_lists]))

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._loaded:
            if name in self._files:
                self._loaded[name] = pd.read_csv(self._files[name], dtype=str,
                                                 keep_default_na=False)
            elif name in self.model.choice_lists:
                self._loaded[name] = _choice_table(self.model.choice_lists[name],
                                                   self.model.default_language)
            else:
                raise KeyError(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _label(labels: dict[str, str], language: str) -> str:
    return labels.get(language) or next(iter(labels.values()), "")


def _choice_table(choices: ChoiceList, language: str) -> pd.DataFrame:
    return pd.DataFrame([{"name": c.name, "label": _label(c.labels, language), **c.extra}
                         for c in choices.choices], dtype=object)


class ChoiceLabels(Mapping[str, Mapping[str, str]]):
    """Select field → {choice name: label}, what jr:choice-name() reads: the choices sheet's
    labels in the default language, or an attached file's name/label columns."""

    def __init__(self, model: FormModel, instances: Mapping[str, pd.DataFrame]) -> None:
        self.model = model
        self.instances = instances
        self._selects = {i.name: i for i in model.items if i.is_select and i.list_name}
        self._labels: dict[str, dict[str, str]] = {}

    def __getitem__(self, name: str) -> Mapping[str, str]:
        if name not in self._labels:
            item = self._selects[name]
            listed = self.model.choices_for(item)
            if listed is not None:
                language = self.model.default_language
                self._labels[name] = {c.name: _label(c.labels, language)
                                      for c in listed.choices}
            else:
                table = self.instances.get(Path(item.list_name or "").stem)
                ok = table is not None and {"name", "label"} <= set(table.columns)
                self._labels[name] = dict(zip(table["name"], table["label"], strict=True)) \
                    if ok and table is not None else {}
        return self._labels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._selects)

    def __len__(self) -> int:
        return len(self._selects)


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


def _all_of(parts: list[pd.Series], index: pd.Index) -> pd.Series:
    """Rows of ``index`` where every part holds: as arrays when all are aligned booleans
    without NA (the usual case, far cheaper), else as pandas aligns them."""
    if all(p.dtype == bool and p.index.equals(index) for p in parts):
        mask = np.ones(len(index), dtype=bool)
        for part in parts:
            mask &= part.to_numpy()
        return pd.Series(mask, index=index)
    out = pd.Series(True, index=index)
    for part in parts:  # aligned to the rows first, as ``&`` would align them
        out &= part if part.index.equals(index) else part.reindex(index)
    return out


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
    @cached_property
    def instances(self) -> SecondaryInstances:
        """The form's secondary instances, for instance() and pulldata()."""
        return SecondaryInstances(self.model)

    @cached_property
    def choice_labels(self) -> ChoiceLabels:
        """Choice labels of every select field, for jr:choice-name()."""
        return ChoiceLabels(self.model, self.instances)

    def _context(self, level: str | None, rng: np.random.Generator | None) -> dict:
        return {
            "repeats": self.child_repeats(level),
            "position": self.position(level) if level is not None else None,
            "rng": rng,
            "today": self.today,
            "now": self.now,
            "instances": self.instances,
            "choice_labels": self.choice_labels,
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
        parts: list[pd.Series] = []
        for group in [*self.model.ancestors(item), item]:
            if not group.relevant:
                continue
            level_item = group if group.repeat == item.repeat else None
            if level_item is None:
                # An enclosing repeat's (or outer group's) relevance at its own level,
                # broadcast to this level's rows through the parent links.
                outer = self.relevant(group, cache=cache)
                parts.append(self._broadcast(outer, group.repeat, item.repeat, frame.index))
            elif cache is not None and group is not item:
                if group.name not in cache:
                    cache[group.name] = self.evaluate_bool(group, group.relevant, frame=frame)
                parts.append(cache[group.name])
            else:
                parts.append(self.evaluate_bool(group, group.relevant, frame=frame))
        return _all_of(parts, frame.index)

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
        m = len(choices)
        # Only the answers the filter names are crossed with the choices (rows × m copies),
        # and only one row of each distinct combination of them (a filter on the country
        # reads one value for all rows): its result is copied to the rows that share it.
        with self.located(item, item.choice_filter):
            used = [c for c in references(item.choice_filter) if c in frame.columns]
            stable = not functions(item.choice_filter) & _UNSTABLE
        context = self._context(item.repeat, None)
        first, inverse = _distinct_rows([frame[c].to_numpy() for c in used] + (
            [] if context["position"] is None else [context["position"].to_numpy()]),
            len(frame), stable)
        n = len(first)
        rows = frame[used].iloc[np.repeat(first, m)].reset_index(drop=True)
        relative = choices.iloc[np.tile(np.arange(m), n)].reset_index(drop=True)
        if context["position"] is not None:
            context["position"] = pd.Series(np.repeat(context["position"].to_numpy()[first], m))
        context["repeats"] = {}
        with self.located(item, item.choice_filter):
            mask = evaluate_bool(item.choice_filter, rows, relative=relative, **context)
        return pd.DataFrame(mask.to_numpy().reshape(n, m)[inverse], index=frame.index,
                            columns=codes)


#: Functions whose value does not follow from the row: a choice filter using one is
#: evaluated on every row.
_UNSTABLE = frozenset({"random", "once", "uuid", "now"})


def _distinct_rows(columns: list[np.ndarray], n: int, dedupe: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct combination of ``columns``' values, each row's
    combination): values are the same only with the same type and repr, so a combination
    evaluates as each of its rows does. Without ``dedupe`` every row is its own."""
    if not dedupe:
        return np.arange(n), np.arange(n)
    ids: dict[tuple, int] = {}
    inverse = np.fromiter((ids.setdefault(tuple((type(v), repr(v)) for v in row), len(ids))
                           for row in zip(*columns, strict=True)) if columns
                          else (0 for _ in range(n)), dtype=np.int64, count=n)
    return np.unique(inverse, return_index=True)[1], inverse
