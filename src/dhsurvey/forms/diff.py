"""Semantic differences between two versions of an instrument.

A designer reviewing a questionnaire change cares about fields added, removed or moved, wording,
answer options and skip logic — not about which Excel cells moved. This compares two form models
and lists exactly those changes, in form order.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.forms.model import FormModel, Item, load_form

LOGIC = ("relevant", "constraint", "calculation", "choice_filter", "repeat_count", "required",
         "default", "appearance")


@dataclass(frozen=True)
class Change:
    """One reviewable change."""

    kind: str  # added, removed, moved, type, label, hint, logic, choices, pii, settings
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<9} {self.name}: {self.detail}"


def _where(item: Item) -> str:
    return "/".join(item.path) or "(top)"


def diff_models(old: FormModel, new: FormModel) -> list[Change]:
    """Changes from ``old`` to ``new``, settings first, then fields in the new form's order."""
    changes: list[Change] = []
    for key in sorted(set(old.settings) | set(new.settings)):
        a, b = old.settings.get(key, ""), new.settings.get(key, "")
        if a != b:
            changes.append(Change("settings", key, f"'{a}' → '{b}'"))

    old_names = [i.name for i in old.items]
    new_names = [i.name for i in new.items]
    common = [n for n in new_names if n in old.by_name]
    old_common = [n for n in old_names if n in new.by_name]
    matcher = difflib.SequenceMatcher(a=old_common, b=common, autojunk=False)
    in_place = {common[j] for block in matcher.get_matching_blocks()
                for j in range(block.b, block.b + block.size)}

    for item in new.items:
        if item.name not in old.by_name:
            changes.append(Change("added", item.name, f"{item.type} in {_where(item)} "
                                  f"(row {item.row})"))
            continue
        changes += _item_changes(old.by_name[item.name], item, in_place=item.name in in_place)
    for item in old.items:
        if item.name not in new.by_name:
            changes.append(Change("removed", item.name, f"{item.type} from {_where(item)}"))
    changes += _choice_changes(old, new)
    return changes


def _item_changes(before: Item, item: Item, *, in_place: bool) -> list[Change]:
    """Changes of a field in both forms: place, type, texts, logic, PII. ``in_place``: the
    field keeps its order among the fields both forms have."""
    changes: list[Change] = []
    if before.path != item.path:
        changes.append(Change("moved", item.name, f"from {_where(before)} to {_where(item)}"))
    elif not in_place:
        changes.append(Change("moved", item.name, f"reordered (row {before.row} → {item.row})"))
    if (before.type, before.list_name) != (item.type, item.list_name):
        changes.append(Change("type", item.name, f"{_type(before)} → {_type(item)}"))
    changes += _text_changes(item.name, "label", before.labels, item.labels)
    changes += _text_changes(item.name, "hint", before.hints, item.hints)
    changes += _text_changes(item.name, "message", before.constraint_messages,
                             item.constraint_messages)
    for col in LOGIC:
        a, b = before.get(col), item.get(col)
        if a != b:
            changes.append(Change("logic", item.name, f"{col}: '{a}' → '{b}'"))
    if before.pii != item.pii:
        changes.append(Change("pii", item.name, f"'{before.pii}' → '{item.pii}'"))
    return changes


def _type(item: Item) -> str:
    return f"{item.type} {item.list_name}" if item.list_name else item.type


def _text_changes(name: str, kind: str, old: dict[str, str], new: dict[str, str]) -> list[Change]:
    out = []
    for lang in sorted(set(old) | set(new)):
        a, b = old.get(lang, ""), new.get(lang, "")
        if a != b:
            out.append(Change(kind, name, f"[{lang}] '{a}' → '{b}'"))
    return out


def _choice_changes(old: FormModel, new: FormModel) -> list[Change]:
    out: list[Change] = []
    for list_name in sorted(set(old.choice_lists) | set(new.choice_lists)):
        a = old.choice_lists.get(list_name)
        b = new.choice_lists.get(list_name)
        if a is None or b is None:
            out.append(Change("choices", list_name, "list added" if a is None else
                              "list removed"))
            continue
        a_by = {c.name: c for c in a.choices}
        b_by = {c.name: c for c in b.choices}
        for code in b_by.keys() - a_by.keys():
            out.append(Change("choices", list_name, f"option {code} added "
                              f"('{next(iter(b_by[code].labels.values()), '')}')"))
        for code in a_by.keys() - b_by.keys():
            out.append(Change("choices", list_name, f"option {code} removed"))
        for code in a_by.keys() & b_by.keys():
            for ch in _text_changes(f"{list_name}/{code}", "choices", a_by[code].labels,
                                    b_by[code].labels):
                out.append(ch)
            if a_by[code].extra != b_by[code].extra:
                out.append(Change("choices", f"{list_name}/{code}",
                                  f"filter columns {a_by[code].extra} → {b_by[code].extra}"))
        if [c for c in a.codes() if c in b_by] != [c for c in b.codes() if c in a_by]:
            out.append(Change("choices", list_name, "options reordered"))
    return sorted(out, key=lambda c: (c.name, c.detail))


def diff_files(old: str | Path, new: str | Path) -> list[Change]:
    return diff_models(load_form(old), load_form(new))
