"""Every value that must never appear in a release, gathered from a country's restricted zones.

Why every value of every identifying field: the release scan
(:func:`~dhsurvey.anonymise.scan.scan_release`) is the last line of defence, and it only finds
what it is told to look for. A household member's name released under a wrong class, a
name carried into a calculate (``sel_name``, ``cg_name``), a phone number or an e-mail typed
into a form, or the instanceID of a submission validation set aside must each be found in any
release file. So the values come from every field classed ``direct`` (its effective class,
inheritance through calculations included: :meth:`FormModel.effective_pii`) and every field of
an identifying type (:data:`IDENTIFYING_TYPES`), in the root table and every repeat table
(the household roster is a repeat), of every submission the store holds for the country:
the raw zone (accepted, quarantined and duplicate submissions alike, as ingest combined
them), the ingest quarantine, the accepted parts and accepted repeats of validation (the
values as typed, which is what a release is written from) and validation's issue tables.
The planted canaries come first, as they are.

Why some values are left out (:func:`identifying`): the scan matches a value as a whole
token sequence, case-insensitively, anywhere in a file. A value that is only a code would
be found in every file and make the gate fail on every release, so a value is kept only if
it could identify someone without context:

- at least :data:`MIN_CHARS` characters once stripped (as
  :class:`~dhsurvey.anonymise.identifiers.RestrictedValues` requires too);
- a value without letters (a roster line, an age, a count, a code, a small decimal) only with
  at least :data:`MIN_DIGITS` digits, the fewest a phone number has: phone numbers, GPS
  strings and long ID numbers stay, ``3`` or ``1036`` does not;
- not a phrase of the questionnaire's own published text (:func:`questionnaire_words`: field
  and choice names, labels and hints in every language, the form titles), which the codebook
  and the value labels carry into every release. Finding such a value proves nothing
  (``Zawadi`` is a first name and the Swahili word for a gift in the questions about offers
  of money or gifts); the other names of the same column still reveal a leak.

Read in batches: a country can hold a million records, so every table is read a record
batch (:data:`READ_ROWS`) and a few columns at a time, and only each batch's distinct values
are turned into Python strings; the values are de-duplicated case-insensitively as they come.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dhsurvey.anonymise.identifiers import PHONE_MIN_DIGITS, TOKEN_RE
from dhsurvey.forms.model import FormModel
from dhsurvey.io import parquet_file
from dhsurvey.store import (
    ISSUES,
    RAW_QUARANTINE,
    Store,
    accepted_repeat,
    issue_table,
    raw_table,
)

#: Field types whose every value identifies a person, a device or a place.
IDENTIFYING_TYPES = frozenset({
    "geopoint", "geotrace", "geoshape", "start-geopoint",  # positions
    "phonenumber", "email",  # contacts
    "deviceid", "simserial", "subscriberid", "username",  # device and its user
})
#: Fewest characters of a kept value (shorter ones are codes).
MIN_CHARS = 3
#: Fewest digits of a kept value without letters: the shortest phone number's.
MIN_DIGITS = PHONE_MIN_DIGITS
#: Rows of a table read at a time.
READ_ROWS = 200_000
#: Columns of validation's issue tables that name a submission by its instanceID.
ISSUE_KEYS = ("instanceID", "duplicate_of")
#: A letter (of any script); whitespace other than single spaces.
_LETTER = re.compile(r"[^\W\d_]")
_LOOSE_SPACE = re.compile(r"\s\s|[^\S ]")


def restricted_values(store: Store, iso: str, models: Mapping[str, FormModel]) -> list[str]:
    """What must never appear in a release of ``iso``, de-duplicated (case-insensitively):
    the planted canaries; the instanceID of every submission the store holds (accepted,
    quarantined, duplicate); every value of every ``direct`` field (by its effective class)
    and of every field of :data:`IDENTIFYING_TYPES`, root and repeat tables alike, except
    values too short to identify anyone (see the module docstring and :func:`identifying`).
    """
    texts = _published_text(models)
    out = _Collected(_Published(frozenset(t for text in texts
                                          for t in TOKEN_RE.findall(text.casefold())), texts))
    for canary in store.faults(iso).get("canaries", []):
        out.add(str(canary), check=False)
    raw = store.raw(iso)
    for form, model in models.items():
        columns = identifying_columns(model)
        folder = store.form_dir(iso, form)
        out.update(_distinct(raw / raw_table(form), ["KEY", *columns.get(None, [])]))
        for repeat, names in columns.items():
            if repeat is not None:
                out.update(_distinct(raw / raw_table(form, repeat), names))
                out.update(_distinct(folder / accepted_repeat(repeat), names))
        # A repeat row's KEY starts with its submission's: the submission is what counts.
        out.update(_roots(_distinct(raw / raw_table(form, RAW_QUARANTINE), ["KEY"])))
        for part in store.accepted_parts(iso, form):
            out.update(_distinct(part, ["KEY", *columns.get(None, [])]))
        for name in ISSUES:
            out.update(_roots(_distinct(folder / issue_table(name), list(ISSUE_KEYS))))
    return out.values


def identifying_columns(model: FormModel) -> dict[str | None, list[str]]:
    """Table (None: the submission root; else the repeat) → the form's fields in it whose
    values are restricted: effective class ``direct``, or a type of :data:`IDENTIFYING_TYPES`."""
    out: dict[str | None, list[str]] = {}
    for item in model.fields:
        if model.effective_pii(item.name) == "direct" or item.type in IDENTIFYING_TYPES:
            out.setdefault(item.repeat, []).append(item.name)
    return out


def identifying(value: str, published: Callable[[str], bool] | None = None) -> bool:
    """Whether stripped ``value`` could identify someone on its own (the module docstring):
    :data:`MIN_CHARS` characters; :data:`MIN_DIGITS` digits when it holds no letter; not
    a phrase of the questionnaire's published text (``published`` says whether the text
    holds a case-folded value as whole tokens)."""
    if len(value) < MIN_CHARS:
        return False
    if not _LETTER.search(value):
        return sum(map(str.isdigit, value)) >= MIN_DIGITS
    return published is None or not published(value.casefold())


def questionnaire_words(models: Mapping[str, FormModel]) -> frozenset[str]:
    """Every token (:data:`~dhsurvey.anonymise.identifiers.TOKEN_RE`, case folded) of what the
    release publishes from the questionnaires: form titles, field and choice names, labels
    and hints in every language."""
    return frozenset(t for text in _published_text(models)
                     for t in TOKEN_RE.findall(text.casefold()))


def _published_text(models: Mapping[str, FormModel]) -> list[str]:
    texts: list[str] = []
    for model in models.values():
        texts += [model.title, model.form_id]
        for item in model.items:
            texts += [item.name, *item.labels.values(), *item.hints.values()]
        for choices in (*model.choice_lists.values(), *model.attached_lists.values()):
            texts.append(choices.name)
            for choice in choices.choices:
                texts += [choice.name, *choice.labels.values()]
    return texts


class _Published:
    """The questionnaire's published text, asked whether it holds a value as whole tokens."""

    def __init__(self, words: frozenset[str], texts: list[str]) -> None:
        self.words = words
        self._texts = texts
        self._joined: str | None = None

    def holds(self, folded: str) -> bool:
        tokens = 0
        for m in TOKEN_RE.finditer(folded):  # stops at the first token that is no word:
            if m.group() not in self.words:  # the usual answer (an instanceID, most names)
                return False
            tokens += 1
        if not tokens:
            return False
        if folded in self.words:  # one word
            return True
        if self._joined is None:
            self._joined = "\n".join(t.casefold() for t in self._texts)
        return re.search(rf"(?<![0-9a-z]){re.escape(folded)}(?![0-9a-z])",
                         self._joined) is not None


class _Collected:
    """Values kept in the order first met, de-duplicated by their case-folded form."""

    def __init__(self, published: _Published) -> None:
        self.published = published
        self.values: list[str] = []
        self._seen: set[str] = set()

    def add(self, value: str, *, check: bool = True) -> None:
        value = value.strip()
        self._add(value, check)
        if _LOOSE_SPACE.search(value):  # also as typed with single spaces
            self._add(" ".join(value.split()), check)

    def _add(self, text: str, check: bool) -> None:
        folded = text.casefold()
        if folded in self._seen or (check and not identifying(text, self.published.holds)):
            return
        # One string object for both when folding changes nothing (an instanceID).
        text = folded if folded == text else text
        self._seen.add(folded)
        self.values.append(text)

    def update(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)


def _roots(values: Iterable[str]) -> Iterator[str]:
    """The submission's instanceID of each KEY (a repeat row's KEY starts with it)."""
    for value in values:
        yield value.split("/", 1)[0]


def _distinct(path: Path, columns: list[str]) -> Iterator[str]:
    """The distinct non-null values of ``columns`` (those the file has) of each record batch
    of the Parquet file at ``path`` (nothing when it does not exist), as text."""
    if not path.exists():
        return
    import pyarrow.compute as pc

    source = parquet_file(path)
    present = [c for c in dict.fromkeys(columns) if c in source.schema_arrow.names]
    if not present:
        return
    for batch in source.iter_batches(batch_size=READ_ROWS, columns=present):
        for array in batch.columns:
            for value in pc.unique(array.drop_null()).to_pylist():
                yield _text(value)


def _text(value: Any) -> str:
    """A value as a release would write it: a whole float without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


__all__ = ["IDENTIFYING_TYPES", "MIN_CHARS", "MIN_DIGITS", "identifying",
           "identifying_columns", "questionnaire_words", "restricted_values"]
