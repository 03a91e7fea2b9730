"""A Markdown change log from one version of a form to the next.

Why this exists: an ethics amendment lists what changed in the questionnaire — questions added
or removed, wording in each language, answer options, when a question is asked. The changes
themselves come from :func:`dhsurvey.forms.diff.diff_models` (the one definition of a change);
this only writes them as a document: conditions in words (:func:`dhsurvey.forms.printing.
in_words`), labels quoted per language, one section per kind of change.
"""

from __future__ import annotations

import re
from pathlib import Path

from dhsurvey.forms.diff import Change, diff_models
from dhsurvey.forms.model import FormModel, Item, load_form
from dhsurvey.forms.printing import TYPE_WORDS, in_words

_TEXT_KINDS = {"label": "labels", "hint": "hints", "message": "constraint_messages"}
_LOGIC_WORDS = {"relevant": "Asked if", "constraint": "Accepted if", "required": "Required"}


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell or list item."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
            .replace("*", "\\*"))


def _quote(text: str) -> str:
    return f"“{_md(text)}”" if text else "(none)"


def _kind(item: Item) -> str:
    words = TYPE_WORDS.get(item.type, item.type.replace("_", " "))
    return f"{words} ({item.list_name})" if item.list_name else words


def _condition(form: FormModel, item: Item, column: str) -> str:
    expression = item.get(column) if column != "required" else item.required
    if not expression:
        return "(none)"
    if column == "required" and expression == "yes":
        return "yes"
    wording = in_words(expression, form, item)
    return _md(wording.text) if wording.in_words else f"`{wording.text}`"


def _text_line(change: Change, old: FormModel, new: FormModel) -> str:
    match = re.match(r"\[(.*?)\] ", change.detail)
    lang = match.group(1) if match else ""
    attr = _TEXT_KINDS[change.kind]
    before = getattr(old.by_name[change.name], attr).get(lang, "")
    after = getattr(new.by_name[change.name], attr).get(lang, "")
    what = {"label": "wording", "hint": "hint", "message": "error message"}[change.kind]
    return f"{what} [{_md(lang)}]: {_quote(before)} → {_quote(after)}"


def _logic_line(change: Change, old: FormModel, new: FormModel) -> str:
    column = change.detail.split(":", 1)[0]
    if column in _LOGIC_WORDS:
        before = _condition(old, old.by_name[change.name], column)
        after = _condition(new, new.by_name[change.name], column)
        return f"{_LOGIC_WORDS[column]}: {before} → {after}"
    return f"{column}: {_md(change.detail.split(': ', 1)[-1])}"


def _labels(form: FormModel, item: Item) -> str:
    return " / ".join(f"[{_md(lang)}] {_quote(item.labels.get(lang, ''))}"
                      for lang in form.languages)


def changelog_markdown(old: FormModel, new: FormModel) -> str:  # noqa: C901 - one branch a kind
    """The changes from ``old`` to ``new`` as a Markdown document (an amendment appendix)."""
    changes = diff_models(old, new)
    lines = [f"# Changes to {_md(new.title)} (`{new.form_id}`)", "",
             f"From version `{old.version}` ({_md(old.path.name)}) to version `{new.version}` "
             f"({_md(new.path.name)}): {len(changes)} change(s).", ""]
    added = [c for c in changes if c.kind == "added"]
    removed = [c for c in changes if c.kind == "removed"]
    choices = [c for c in changes if c.kind == "choices"]
    settings = [c for c in changes if c.kind == "settings"]
    changed: dict[str, list[str]] = {}
    for change in changes:
        if change.kind in _TEXT_KINDS:
            line = _text_line(change, old, new)
        elif change.kind == "logic":
            line = _logic_line(change, old, new)
        elif change.kind in ("moved", "type", "pii"):
            line = f"{ {'pii': 'PII class'}.get(change.kind, change.kind)}: {_md(change.detail)}"
        else:
            continue
        changed.setdefault(change.name, []).append(line)
    if not changes:
        lines.append("No changes.")
    if added:
        lines += ["## Questions added", "", "| variable | type | section | wording | asked if |",
                  "|---|---|---|---|---|"]
        for change in added:
            item = new.by_name[change.name]
            lines.append(f"| `{item.name}` | {_md(_kind(item))} | {_md('/'.join(item.path))} | "
                         f"{_labels(new, item)} | {_condition(new, item, 'relevant')} |")
        lines.append("")
    if removed:
        lines += ["## Questions removed", ""]
        for change in removed:
            item = old.by_name[change.name]
            lines.append(f"- `{item.name}` ({_md(_kind(item))}): {_labels(old, item)}")
        lines.append("")
    if changed:
        lines += ["## Questions changed", ""]
        for name, details in changed.items():
            lines.append(f"- `{name}`")
            lines += [f"  - {detail}" for detail in details]
        lines.append("")
    if choices:
        lines += ["## Answer options", ""]
        lines += [f"- `{c.name}`: {_md(c.detail)}" for c in choices]
        lines.append("")
    if settings:
        lines += ["## Form settings", ""]
        lines += [f"- `{c.name}`: {_md(c.detail)}" for c in settings]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def changelog_files(old: str | Path, new: str | Path) -> str:
    return changelog_markdown(load_form(old), load_form(new))
