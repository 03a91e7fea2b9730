"""The form model: one parsed object per XLSForm workbook.

This module is the only place that reads the instrument workbooks. Compiler, linter, simulator,
validator, codebook and anonymisation all take a :class:`FormModel`, so no part of the package
keeps a second list of columns. Rows keep their Excel row numbers so every error and lint
finding can point a designer at the cell to fix.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from dhsurvey.errors import FormError

SHEETS = ("survey", "choices", "settings")

#: Columns that carry one value per language.
TRANSLATABLE = {
    "label",
    "hint",
    "guidance_hint",
    "constraint_message",
    "required_message",
    "image",
    "big-image",
    "audio",
    "video",
}
SURVEY_COLUMNS = TRANSLATABLE | {
    "type",
    "name",
    "required",
    "relevant",
    "constraint",
    "calculation",
    "choice_filter",
    "appearance",
    "repeat_count",
    "default",
    "parameters",
    "read_only",
    "readonly",
    "trigger",
    "body::accuracyThreshold",
    "pii",
    "pii_reason",
    "note",
}
PII_CLASSES = ("direct", "quasi", "sensitive", "free_text", "none")
#: The classes a value carries into whatever is computed from it, weakest first: a calculation
#: that copies (part of) a name is as identifying as the name, one that copies free text as
#: revealing as the text. The other classes describe an answer, not what is computed from it
#: (a count of sensitive answers may be classed ``quasi``), so they are not inherited.
INHERITED_PII = ("free_text", "direct")
#: Functions whose value is drawn anew for every record: a released draw would be a key
#: shared by every release that carries it.
RANDOM_FUNCTIONS = frozenset({"random", "uuid"})
_RANDOM_CALL = re.compile(r"(?<![\w:.-])(?:random|uuid)\s*\(")
#: The short-label column used for Stata/SPSS; a pseudo-language, not an interview language.
STATA = "stata"
#: instance('name') in an expression: a secondary instance (attached file or choice list).
INSTANCE_RE = re.compile(r"instance\(\s*['\"]([^'\"]+)['\"]\s*\)")
#: Settings column naming the languages whose translation is a draft for professional review.
DRAFT_SETTING = "draft_languages"

# XLSForm type spellings (pyxform aliases) → one canonical name.
_TYPE_ALIASES = {
    "int": "integer",
    "string": "text",
    "select one": "select_one",
    "select1": "select_one",
    "select all that apply": "select_multiple",
    "select multiple": "select_multiple",
    "select one from file": "select_one_from_file",
    "select multiple from file": "select_multiple_from_file",
    "begin group": "begin_group",
    "end group": "end_group",
    "begin repeat": "begin_repeat",
    "end repeat": "end_repeat",
    "date time": "datetime",
    "dateTime": "datetime",
    "location": "geopoint",
    "gps": "geopoint",
    "photo": "image",
    "device id": "deviceid",
    "phone number": "phonenumber",
    "trigger": "acknowledge",
    # pyxform's older spellings of the device metadata
    "uri:deviceid": "deviceid",
    "uri:subscriberid": "subscriberid",
    "uri:phonenumber": "phonenumber",
    "uri:simserial": "simserial",
    "uri:username": "username",
    "uri:email": "email",
}
INPUT_TYPES = {
    "integer",
    "decimal",
    "text",
    "select_one",
    "select_multiple",
    "select_one_from_file",
    "select_multiple_from_file",
    "select_one_external",  # choices on the external_choices sheet (itemsets.csv on devices)
    "rank",
    "range",
    "geopoint",
    "geotrace",
    "geoshape",
    "date",
    "datetime",
    "time",
    "image",
    "audio",
    "video",
    "file",
    "barcode",
    "acknowledge",
}
METADATA_TYPES = {
    "start",
    "end",
    "today",
    "deviceid",
    "username",
    "phonenumber",
    "email",
    "simserial",
    "subscriberid",
    "audit",
    "start-geopoint",
    "background-audio",
}
#: Row types whose value a submission carries.
_DATA_TYPES = frozenset(INPUT_TYPES | METADATA_TYPES | {"calculate", "hidden"})
OTHER_TYPES = {"note", "calculate", "hidden", "xml-external", "csv-external"}
STRUCTURE_TYPES = {"begin_group", "end_group", "begin_repeat", "end_repeat"}
KNOWN_TYPES = INPUT_TYPES | METADATA_TYPES | OTHER_TYPES | STRUCTURE_TYPES
SELECT_TYPES = {"select_one", "select_multiple", "rank"}
#: The columns whose expression sets a field's value.
VALUE_COLUMNS = ("calculation", "default")
#: A name ODK accepts: an XML name (pyxform's own test, so non-ASCII letters are names too).
NAME_RE = re.compile(r"^[^\W\d][\w.\-]*$")
REF_RE = re.compile(r"\$\{([^}]*)\}")

# Study facts a workbook declares (pyxform and ODK ignore these settings and the extra choices
# column; see the FormModel accessors and dhsurvey.forms.facts).
#: Settings: the fields that identify the household an interview belongs to.
HOUSEHOLD_ID_SETTING = "household_id"
#: Settings: the consent gates (permission, assent, consent questions), in any order.
CONSENT_GATES_SETTING = "consent_gates"
#: Choices column: the AAPOR category of each final disposition code.
AAPOR_COLUMN = "aapor"
#: AAPOR Standard Definitions categories: complete, partial, refusal and break-off,
#: non-contact, other, unknown if household, unknown other, not eligible.
AAPOR_CATEGORIES = ("I", "P", "R", "NC", "O", "UH", "UO", "NE")
#: The consent gates of a workbook that declares none: select_one questions named like these.
GATE_NAME_RE = re.compile(r"^(consent|assent|\w+_consent|\w+_permission)$")


@dataclass(frozen=True)
class Choice:
    """One row of the choices sheet."""

    list_name: str
    name: str
    labels: dict[str, str]
    extra: dict[str, str]
    row: int
    cells: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class ChoiceList:
    """A named list of choices, in sheet order."""

    name: str
    choices: list[Choice]
    row: int

    def codes(self) -> list[str]:
        return [c.name for c in self.choices]

    def label(self, code: str, language: str) -> str:
        for c in self.choices:
            if c.name == code:
                return c.labels.get(language, "")
        raise KeyError(code)


@dataclass(frozen=True)
class Disposition:
    """One final disposition code of the household form and what it means."""

    code: str
    label: str  # in the form's default language
    aapor: str  # AAPOR category (see AAPOR_CATEGORIES)
    row: int  # on the choices sheet


@dataclass(frozen=True)
class PiiInheritance:
    """The class a computed field inherits from a field its value references, and how.

    ``path`` runs from the field the value expression references to the field that holds the
    class by its own ``pii`` cell (``("first_name",)`` for a direct reference; ``("sel_name",
    "first_name")`` through another calculation).
    """

    pii: str  # one of INHERITED_PII
    path: tuple[str, ...]
    column: str  # the value column (calculation or default) that references path[0]

    @property
    def source(self) -> str:
        """The field that holds the class by its own ``pii`` cell."""
        return self.path[-1]

    @property
    def via(self) -> tuple[str, ...]:
        """The computed fields between the referencing field and the source, nearest first."""
        return self.path[:-1]


@dataclass
class Item:
    """One survey row: a question, note, calculation, metadata field or group boundary.

    ``name`` is the field's key in the model and its column in data tables: the name as
    written, unless pyxform's rules let other fields share that name (in other groups, or in
    the groups a ``begin loop`` makes), then the path of written names from the root joined
    by ``/`` (``household/name``), which no written name can spell. ``path`` and ``repeat``
    hold such keys too; ``xml_path`` holds the written names, as the submission's XML nests
    them.
    """

    name: str
    type: str  # canonical type (see KNOWN_TYPES)
    row: int
    path: tuple[str, ...]  # enclosing group/repeat keys, outermost first
    repeat: str | None  # innermost enclosing repeat (its key)
    cells: dict[str, str]  # every non-empty cell, keyed by header
    list_name: str | None = None
    or_other: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    constraint_messages: dict[str, str] = field(default_factory=dict)
    required_messages: dict[str, str] = field(default_factory=dict)
    end_row: int | None = None  # for groups and repeats
    #: The written names of the enclosing groups and of the item, outermost first.
    xml_path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.xml_path:
            self.xml_path = (*self.path, self.name)

    @property
    def xml_name(self) -> str:
        """The name as written: the element's tag in a submission."""
        return self.xml_path[-1]

    def get(self, column: str) -> str:
        """A non-translatable cell value ('' if empty)."""
        return self.cells.get(column, "")

    def bind(self, column: str) -> str:
        """A bind cell as pyxform writes it: ``TRUE``/``yes``/``no``… become ``true()`` or
        ``false()`` (pyxform's ``BINDING_CONVERSIONS``), anything else stays as written."""
        value = self.get(column)
        return _pyxform().binding_conversions.get(value.strip(), value)

    @property
    def relevant(self) -> str:
        return self.bind("relevant")

    @property
    def constraint(self) -> str:
        return self.bind("constraint")

    @property
    def calculation(self) -> str:
        return self.bind("calculation")

    @property
    def choice_filter(self) -> str:
        return self.get("choice_filter")

    @property
    def repeat_count(self) -> str:
        return self.get("repeat_count")

    @property
    def appearance(self) -> str:
        return self.get("appearance")

    @property
    def default(self) -> str:
        return self.get("default")

    @property
    def pii(self) -> str:
        """The ``pii`` cell as written; :meth:`FormModel.effective_pii` is what counts."""
        return self.get("pii")

    @property
    def pii_reason(self) -> str:
        """Why this field may be classed weaker than the class it inherits ('' if none)."""
        return self.get("pii_reason").strip()

    @property
    def required(self) -> str:
        """'' (not required), 'yes', or an XPath expression."""
        value = self.get("required").strip()
        return "yes" if value.lower() in ("yes", "true", "true()", "1") else (
            "" if value.lower() in ("", "no", "false", "false()", "0") else value
        )

    @property
    def is_group(self) -> bool:
        return self.type in ("begin_group", "begin_repeat")

    @property
    def is_repeat(self) -> bool:
        return self.type == "begin_repeat"

    @property
    def is_input(self) -> bool:
        """A question the respondent or interviewer answers."""
        return self.type in INPUT_TYPES

    @property
    def is_select(self) -> bool:
        return (self.type in SELECT_TYPES or self.type.endswith("_from_file")
                or self.type == "select_one_external")

    @property
    def is_select_one(self) -> bool:
        """One answer from a list: the choices sheet's, an attached file's, or external."""
        return self.type in ("select_one", "select_one_from_file", "select_one_external")

    @property
    def is_select_multiple(self) -> bool:
        """Answers from a list, space-separated: the choices sheet's or an attached file's."""
        return self.type in ("select_multiple", "select_multiple_from_file")

    @property
    def holds_data(self) -> bool:
        """Whether a submission carries a value for this row."""
        return self.type in _DATA_TYPES

    @property
    def dynamic_default(self) -> bool:
        """Whether ``default`` is an expression evaluated on the device (pyxform's own rule,
        ``default_is_dynamic``: an operator, a ``${…}``, a predicate or a function call);
        otherwise it is a literal value, e.g. ``N/A (none)`` or ``2024-01-31``."""
        return _default_is_dynamic(self.default, self.type)

    def expressions(self) -> dict[str, str]:
        """The XPath expressions in this row, by column (bind cells as :meth:`bind` reads
        them; ``default`` only when it is dynamic)."""
        out: dict[str, str] = {}
        for col in ("relevant", "constraint", "calculation", "choice_filter",
                    "repeat_count", "required", "default"):
            if col not in self.cells:
                continue
            if col == "required" and self.required in ("", "yes"):
                continue
            if col == "default" and not self.dynamic_default:
                continue
            out[col] = self.bind(col) if col in _BIND_COLUMNS else self.cells[col]
        return out

    def value_expressions(self) -> dict[str, str]:
        """The expressions that set this row's value, by column: its calculation and a default
        that is an expression. Relevance and constraints decide whether a value exists or is
        accepted, not what it is, so they carry no class and no draw into it."""
        exprs = self.expressions()
        return {col: exprs[col] for col in VALUE_COLUMNS if col in exprs}


@dataclass
class FormModel:
    """Everything a workbook says, parsed once."""

    path: Path
    settings: dict[str, str]
    items: list[Item]  # survey rows in order, groups included, end rows excluded
    choice_lists: dict[str, ChoiceList]
    languages: list[str]  # interview languages, in column order (STATA excluded)
    survey_headers: list[str]
    choices_headers: list[str]
    content_hash: str
    #: select_*_from_file lists read from the CSV files attached to the form (by file name).
    attached_lists: dict[str, ChoiceList] = field(default_factory=dict)

    # -- identity ---------------------------------------------------------------------------
    @property
    def form_id(self) -> str:
        return self.settings.get("form_id") or self.path.stem

    @property
    def title(self) -> str:
        return self.settings.get("form_title") or self.form_id

    @property
    def version(self) -> str:
        """The compiled version: deterministic in the workbook's content.

        A designer's own ``version`` is kept as a prefix; the content hash makes any change to
        any cell produce a new version, even when nobody remembered to bump it.
        """
        own = self.settings.get("version", "").strip()
        return f"{own}-{self.content_hash[:8]}" if own else self.content_hash[:10]

    @property
    def default_language(self) -> str:
        lang = self.settings.get("default_language", "")
        if lang:
            return lang
        return self.languages[0] if self.languages else "default"

    def languages_named(self, names: Iterable[str]) -> list[str]:
        """The workbook's languages ``names`` name: by full name (``Kiswahili (sw)``), by
        code (``sw``) or by name alone (``kiswahili``), in any case."""
        wanted = {n.strip().lower() for n in names}
        found = []
        for lang in self.languages:
            aliases = {lang.lower(), re.sub(r"\s*\([^)]*\)\s*$", "", lang).lower(),
                       language_code(lang).lower()}
            if aliases & wanted:
                found.append(lang)
        return found

    @cached_property
    def attachments(self) -> frozenset[str]:
        """The CSV files the form reads: those it selects from, and ``instance('x')`` of an
        expression naming no choice list (``x.csv``)."""
        names = {i.list_name for i in self.items
                 if i.type.endswith("_from_file") and (i.list_name or "").endswith(".csv")}
        for item in self.items:
            for text in item.expressions().values():
                names |= {f"{m}.csv" for m in INSTANCE_RE.findall(text)
                          if m not in self.choice_lists}
        return frozenset(n for n in names if n)

    @property
    def draft_languages(self) -> list[str]:
        """Languages whose translation the workbook marks as a draft for professional review
        (settings column ``draft_languages``: codes or names, spaces or commas between)."""
        return self.languages_named(_setting_names(self.settings.get(DRAFT_SETTING, "")))

    # -- navigation -------------------------------------------------------------------------
    @cached_property
    def by_name(self) -> dict[str, Item]:
        return {item.name: item for item in self.items}

    def __getitem__(self, name: str) -> Item:
        try:
            return self.by_name[name]
        except KeyError:
            shared = [i.name for i in self.items if i.xml_name == name]
            if shared:
                raise KeyError(f"{self.form_id}: {len(shared)} fields are named {name!r} "
                               f"({', '.join(shared)})") from None
            raise KeyError(f"{self.form_id} has no field {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    # Cached: validation, labels and the simulator ask for these per column and per row; the
    # items of a model are not changed after parsing (a model with more fields is a new one,
    # ``dataclasses.replace``). Callers get copies, so a caller's edit cannot leak in.
    @cached_property
    def _fields(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.holds_data)

    @cached_property
    def _fields_by_repeat(self) -> dict[str | None, tuple[Item, ...]]:
        out: dict[str | None, list[Item]] = {}
        for item in self._fields:
            out.setdefault(item.repeat, []).append(item)
        return {k: tuple(v) for k, v in out.items()}

    @property
    def fields(self) -> list[Item]:
        """Every row that holds data in a submission, in form order."""
        return list(self._fields)

    @property
    def questions(self) -> list[Item]:
        return [i for i in self.items if i.is_input]

    @property
    def groups(self) -> list[Item]:
        return [i for i in self.items if i.is_group]

    @property
    def repeats(self) -> list[Item]:
        return [i for i in self.items if i.is_repeat]

    def fields_in(self, repeat: str | None) -> list[Item]:
        """Data fields whose innermost repeat is ``repeat`` (None: the submission root)."""
        return list(self._fields_by_repeat.get(repeat, ()))

    def ancestors(self, item: Item) -> list[Item]:
        """Enclosing groups and repeats, outermost first."""
        return [self.by_name[name] for name in item.path]

    def xml_path_in(self, item: Item, level: str | None = None) -> tuple[str, ...]:
        """The written names from below ``level``'s element (a repeat's key; None: the
        submission root) down to ``item``: where a reader of submissions finds the item in a
        row of that level's table (Central's ``group-name`` columns, Kobo's ``group/name``
        keys). Unlike keys, these name fields that share a name as the XML does."""
        if level is None:
            return item.xml_path
        outer = self[level].xml_path
        if item.xml_path[:len(outer)] != outer:
            raise ValueError(f"{item.name!r} is not inside {level!r}")
        return item.xml_path[len(outer):]

    def relevance(self, item: Item) -> list[str]:
        """Every relevance that must hold for ``item`` to be asked (ancestors first)."""
        return [g.relevant for g in [*self.ancestors(item), item] if g.relevant]

    def choices_for(self, item: Item) -> ChoiceList | None:
        """The item's choices: its list on the choices sheet, or the CSV file it selects from
        when that file is attached (None for a file not at hand)."""
        if not item.list_name:
            return None
        return self.choice_lists.get(item.list_name) or self.attached_lists.get(item.list_name)

    def labels_in(self, language: str) -> dict[str, str]:
        return {i.name: i.labels.get(language, "") for i in self.items}

    def by_pii(self, pii: str) -> list[Item]:
        """The fields whose effective class (:meth:`effective_pii`) is ``pii``."""
        classes = self.pii_classes
        return [i for i in self.fields if classes[i.name] == pii]

    # -- disclosure: what a field's value carries ---------------------------------------------
    # Cached: anonymisation asks for every column of every release; the workbook is read once.

    @cached_property
    def value_references(self) -> dict[str, tuple[str, ...]]:
        """Each data field with a value expression → the data fields that expression names
        (``${x}``, in order; groups and repeats such as ``count(${roster})`` name no value,
        so a count of roster rows inherits nothing from the names on the roster)."""
        fields = {i.name for i in self.fields}
        out: dict[str, tuple[str, ...]] = {}
        for item in self.fields:
            exprs = item.value_expressions()
            if exprs:
                refs = (r for text in exprs.values() for r in REF_RE.findall(text))
                out[item.name] = tuple(dict.fromkeys(r for r in refs
                                                     if r in fields and r != item.name))
        return out

    @cached_property
    def pii_inheritance(self) -> dict[str, PiiInheritance]:
        """Each computed field → the strongest class of :data:`INHERITED_PII` its value
        expression references, directly or through other computed fields.

        A field with a ``pii_reason`` (beside a valid class) is classed by its cell: nothing
        is inherited into it, and what is computed from it inherits its declared class.
        Reference cycles (which ODK rejects, but a workbook being linted may have) end where
        they would repeat.
        """
        refs = {name: names for name, names in self.value_references.items()
                if not _reasoned(self[name])}
        # name → (rank, path): the strongest class the field's value carries; an empty path
        # means the field's own cell gives it.
        carried: dict[str, tuple[int, tuple[str, ...]]] = {
            i.name: (_pii_rank(i.pii), ()) for i in self.fields}
        inherited: dict[str, tuple[int, tuple[str, ...]]] = {}
        changed = True
        while changed:  # ranks only grow (at most twice per field), so this ends
            changed = False
            for name, names in refs.items():
                for ref in names:
                    rank, path = carried[ref]
                    if rank == 0 or name in path or rank <= inherited.get(name, (0, ()))[0]:
                        continue
                    inherited[name] = (rank, (ref, *path))
                    if rank >= carried[name][0]:
                        carried[name] = inherited[name]
                    changed = True
        out: dict[str, PiiInheritance] = {}
        for name, (rank, path) in inherited.items():
            exprs = self[name].value_expressions()
            column = next(col for col, text in exprs.items()
                          if path[0] in REF_RE.findall(text))
            out[name] = PiiInheritance(INHERITED_PII[rank - 1], path, column)
        return out

    @cached_property
    def pii_classes(self) -> dict[str, str]:
        """Each data field → its effective class: the ``pii`` cell, unless the field's value
        inherits a stronger class (:attr:`pii_inheritance`) and no ``pii_reason`` says why
        not. A calculation classed too weakly is therefore still handled as what it copies
        (a name stays out of every release) while lint asks for the cell to be fixed."""
        inheritance = self.pii_inheritance
        out: dict[str, str] = {}
        for item in self.fields:
            got = inheritance.get(item.name)
            stronger = got is not None and _pii_rank(got.pii) > _pii_rank(item.pii)
            out[item.name] = got.pii if got is not None and stronger else item.pii
        return out

    def effective_pii(self, name: str) -> str:
        """The effective class of field ``name`` (:attr:`pii_classes`; '' when unclassed)."""
        self[name]  # KeyError naming the form for a name it does not have
        return self.pii_classes.get(name, "")

    @cached_property
    def random_draws(self) -> frozenset[str]:
        """The fields whose value is a per-record draw: a value expression that calls
        ``random()`` or ``uuid()`` (also inside ``once()``), or that references such a field,
        transitively. Such a value is unique to the record, so two releases that both carry
        it (or anything computed from it) could be joined on it."""
        draws = {i.name for i in self.fields
                 if any(_uses_random(t) for t in i.value_expressions().values())}
        changed = True
        while changed:
            changed = False
            for name, names in self.value_references.items():
                if name not in draws and draws.intersection(names):
                    draws.add(name)
                    changed = True
        return frozenset(draws)

    # -- study facts: what the workbook declares about the study -----------------------------
    # Stages read these (directly or through dhsurvey.forms.facts), never a list of their own.

    @cached_property
    def instance_fields(self) -> tuple[str, ...]:
        """The fields that identify an interview: the ``${…}`` of the settings'
        ``instance_name``, in order (none when the form sets no instance name)."""
        return tuple(dict.fromkeys(REF_RE.findall(self.settings.get("instance_name", ""))))

    @cached_property
    def household_id(self) -> tuple[str, ...]:
        """The fields that identify the household an interview belongs to (settings
        ``household_id``, e.g. ``cluster hh_number``); empty for a form of no household."""
        return _setting_names(self.settings.get(HOUSEHOLD_ID_SETTING, ""))

    @cached_property
    def consent_gates(self) -> tuple[str, ...]:
        """The consent gates in form order: the questions whose answer decides whether the
        interview goes on (settings ``consent_gates``; a workbook that declares none has the
        select_one questions named like :data:`GATE_NAME_RE`)."""
        declared = self.settings.get(CONSENT_GATES_SETTING, "")
        if declared:
            names = set(_setting_names(declared))
            return tuple(i.name for i in self.items if i.name in names)
        return tuple(i.name for i in self.items
                     if GATE_NAME_RE.match(i.name) and i.type == "select_one")

    @cached_property
    def consent_given(self) -> dict[str, str | None]:
        """Each consent gate → the answer that lets the interview go on, read from the form's
        own relevance (``${consent} = 1`` on what follows the gate); None when nothing after
        the gate depends on one answer of it (then no interview passes it)."""
        return {gate: _given(self, self[gate]) for gate in self.consent_gates}

    @cached_property
    def disposition_list(self) -> ChoiceList | None:
        """The final disposition codes: the choice list whose choices declare an AAPOR
        category (choices column ``aapor``); None on a form that records no disposition."""
        return next((lst for lst in self.choice_lists.values()
                     if any(c.extra.get(AAPOR_COLUMN) for c in lst.choices)), None)

    @cached_property
    def disposition_field(self) -> str | None:
        """The question that records the final disposition (it uses :attr:`disposition_list`)."""
        lst = self.disposition_list
        if lst is None:
            return None
        return next((i.name for i in self.items
                     if i.list_name == lst.name and i.type == "select_one"), None)

    @cached_property
    def dispositions(self) -> dict[str, Disposition]:
        """Disposition code → its label and AAPOR category, in list order."""
        lst = self.disposition_list
        if lst is None:
            return {}
        return {c.name: Disposition(c.name, c.labels.get(self.default_language, "")
                                    or next(iter(c.labels.values()), ""),
                                    c.extra.get(AAPOR_COLUMN, ""), c.row)
                for c in lst.choices}

    def disposition_codes(self, *categories: str) -> tuple[str, ...]:
        """The disposition codes of the given AAPOR categories, in list order."""
        unknown = set(categories) - set(AAPOR_CATEGORIES)
        if unknown:
            raise ValueError(f"not AAPOR categories: {sorted(unknown)}")
        return tuple(d.code for d in self.dispositions.values() if d.aapor in categories)


def _pii_rank(pii: str) -> int:
    """0 for a class nothing inherits (or none), else 1 + its place in INHERITED_PII."""
    return INHERITED_PII.index(pii) + 1 if pii in INHERITED_PII else 0


def _reasoned(item: Item) -> bool:
    """Whether the workbook classes ``item`` itself, with a reason: a valid ``pii`` cell and a
    ``pii_reason`` (a reason beside a blank or invalid class justifies nothing)."""
    return bool(item.pii_reason) and item.pii in PII_CLASSES


def _uses_random(expression: str) -> bool:
    """Whether an expression calls one of :data:`RANDOM_FUNCTIONS` (read from its syntax tree;
    an expression that does not parse, which lint reports, is searched as text)."""
    from dhsurvey.forms.expressions import ExpressionError, functions

    try:
        return bool(functions(expression) & RANDOM_FUNCTIONS)
    except ExpressionError:
        return bool(_RANDOM_CALL.search(expression))


def _setting_names(text: str) -> tuple[str, ...]:
    """``"cluster hh_number"`` (spaces or commas) → ("cluster", "hh_number")."""
    return tuple(dict.fromkeys(n for n in re.split(r"[\s,]+", text.strip()) if n))


def _given(model: FormModel, gate: Item) -> str | None:
    """The answer to ``gate`` that the relevance of a later row requires, e.g. the ``1`` of
    ``${consent} = 1`` or ``selected(${consent}, '1')``."""
    ref = re.escape("${" + gate.name + "}")
    pattern = re.compile(
        ref + r"\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|(-?\d+(?:\.\d+)?))"
        r"|selected\(\s*" + ref + r"\s*,\s*(?:'([^']*)'|\"([^\"]*)\")\s*\)")
    for item in model.items:
        if item.row <= gate.row or not item.relevant:
            continue
        found = pattern.search(item.relevant)
        if found:
            return next(g for g in found.groups() if g is not None)
    return None


# -- pyxform's own rules ------------------------------------------------------------------------
# The workbook is read as pyxform reads it (its alias tables and rules, imported, not copied),
# so any XLSForm that pyxform compiles also loads here. pyxform is imported on first use: it
# takes a quarter of a second, and most commands never read a workbook.

#: Our columns whose cell pyxform converts with its BINDING_CONVERSIONS (yes/TRUE → true()).
_BIND_COLUMNS = frozenset({"relevant", "constraint", "calculation", "required", "read_only",
                           "readonly"})
#: Our type names → pyxform's, for ``default_is_dynamic`` (it exempts a '-' in these types).
_PYXFORM_TYPES = {"datetime": "dateTime"}
#: pyxform stops reading a sheet after this many empty rows in a row
#: (``xls2json_backends.get_excel_rows``), so content after such a run is not part of the form.
MAX_EMPTY_ROWS = 60
_CHOICES_COLUMNS = frozenset({"list_name", "name", "label", "image", "big-image", "audio",
                              "video"})


@dataclass(frozen=True)
class _PyxformRules:
    binding_conversions: dict[str, str]
    headers: dict[str, dict[str, str]]  # sheet → header spelling (snake case) → our column
    snake: Any  # pyxform's to_snake_case
    default_is_dynamic: Any
    select_commands: dict[str, str]  # select spelling → our select type, longest first
    type_aliases: dict[str, str]  # another name of a type → our type
    smart_quotes: dict[int, str]  # ‘ ’ “ ” in any cell are read as ' and " (SMART_QUOTES)


@functools.cache
def _pyxform() -> _PyxformRules:
    from pyxform import aliases
    from pyxform.parsing.sheet_headers import SMART_QUOTES, to_snake_case
    from pyxform.question_type_dictionary import QUESTION_TYPE_DICT
    from pyxform.utils import default_is_dynamic

    return _PyxformRules(
        binding_conversions=dict(aliases.BINDING_CONVERSIONS),
        headers={
            "survey": _header_table(aliases.survey_header, SURVEY_COLUMNS | {"type", "name"}),
            "choices": _header_table(aliases.list_header, _CHOICES_COLUMNS),
            "settings": {"set_form_title": "form_title", "set_form_id": "form_id"},
        },
        snake=to_snake_case,
        default_is_dynamic=default_is_dynamic,
        select_commands=_select_commands(aliases),
        type_aliases=_type_aliases(QUESTION_TYPE_DICT),
        smart_quotes=str.maketrans(SMART_QUOTES),
    )


def _default_is_dynamic(default: str, type_: str) -> bool:
    return bool(_pyxform().default_is_dynamic(default, _PYXFORM_TYPES.get(type_, type_)))


def _header_table(pyxform_aliases: dict[str, Any], ours: Any) -> dict[str, str]:
    """Header spelling (snake case) → our column, for every alias pyxform resolves to the
    same element as one of our columns (``calculate`` → ``calculation``, ``list name`` →
    ``list_name``, ``caption`` → ``label``)."""
    target: dict[Any, str] = {}
    for col in sorted(ours):
        target.setdefault(pyxform_aliases.get(col, col), col)
    table = {alias: target[dest] for alias, dest in pyxform_aliases.items()
             if isinstance(dest, (str, tuple)) and dest in target}
    table.update({col: col for col in ours})
    return table


# -- reading ------------------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    """A cell as pyxform reads it (``xlsx_value_to_str``): TRUE/FALSE for booleans, whole
    numbers without ``.0`` (text as written: lint reports stray spaces)."""
    if value is None:
        return ""
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


#: Workbooks read in this process, by (path, size, modification time): lint, build, the
#: study and the pipeline each parse the same workbooks, and reading a 13-language workbook
#: cell by cell with openpyxl takes seconds.
_READ: dict[tuple[str, int, int], dict[str, list[tuple[int, list[str]]]]] = {}
_READ_KEEP = 16


#: Where workbooks read before are kept as the cell texts they hold, by the SHA-256 of their
#: bytes: ``$DHSURVEY_CACHE`` (default ``~/.cache/dhsurvey``), ``sheets/``. Bump the format
#: when what a cell's text is changes (:func:`_cell_text`).
CACHE_ENV = "DHSURVEY_CACHE"
_SHEETS_FORMAT = "sheets-1"


def read_sheets(path: Path) -> dict[str, list[tuple[int, list[str]]]]:
    """Every sheet as (Excel row number, cell texts) rows, blank rows dropped.

    A workbook unchanged since this process last read it (same size and modification time)
    is not read again; callers get their own lists. A workbook whose bytes were read before
    by any process comes from the cache folder (:data:`CACHE_ENV`): openpyxl takes seconds
    for a workbook in thirteen languages, and every command, the study and the pipeline's
    code location read the same workbooks."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns) if stat else None
    if key is None or key not in _READ:
        sheets = _cached_sheets(path) if stat else _read_sheets(path)
        if key is not None:
            if len(_READ) >= _READ_KEEP:
                _READ.pop(next(iter(_READ)))
            _READ[key] = sheets
    else:
        sheets = _READ[key]
    return {name: [(number, list(cells)) for number, cells in rows]
            for name, rows in sheets.items()}


def _cache_dir() -> Path:
    import os

    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dhsurvey") / "sheets"


def _cached_sheets(path: Path) -> dict[str, list[tuple[int, list[str]]]]:
    """The workbook's sheets from the cache folder when its bytes were read before, else read
    and kept there (a cache that cannot be written is skipped, never an error)."""
    try:
        data = path.read_bytes()
    except OSError:
        return _read_sheets(path)
    digest = hashlib.sha256(_SHEETS_FORMAT.encode() + data).hexdigest()
    cached = _cache_dir() / f"{digest}.json"
    try:
        stored = json.loads(cached.read_text(encoding="utf-8"))
        return {name: [(int(n), [str(c) for c in cells]) for n, cells in rows]
                for name, rows in stored.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    sheets = _read_sheets(path)
    try:
        from dhsurvey.io import atomic_write_text

        atomic_write_text(cached, json.dumps(sheets, ensure_ascii=False))
    except OSError:
        pass
    return sheets


def _read_sheets(path: Path) -> dict[str, list[tuple[int, list[str]]]]:
    import openpyxl

    if not path.exists():
        raise FormError("file not found", code="file-missing", file=path)
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        raise FormError(
            f"not an XLSForm workbook (expected .xlsx, got {path.suffix or 'no suffix'})",
            code="file-unreadable",
            file=path,
        )
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise FormError(
            f"cannot read the workbook ({type(exc).__name__}: {exc})",
            code="file-unreadable",
            file=path,
        ) from None
    sheets: dict[str, list[tuple[int, list[str]]]] = {}
    try:
        for ws in book.worksheets:
            sheets[ws.title.strip().lower()] = _sheet_rows(ws)
    finally:
        book.close()
    return sheets


def _sheet_rows(ws: Any) -> list[tuple[int, list[str]]]:
    """A sheet's non-blank rows, read in proportion to its content.

    The declared dimension (``A1:XFD1048576`` after someone formatted whole columns) is
    ignored, so rows are as wide as their cells; reading stops after
    :data:`MAX_EMPTY_ROWS` empty rows in a row, where pyxform stops too.
    """
    if hasattr(ws, "reset_dimensions"):  # read-only worksheets
        ws.reset_dimensions()
    rows: list[tuple[int, list[str]]] = []
    empty = 0
    for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
        cells = [_cell_text(v) for v in values]
        while cells and cells[-1] == "":
            cells.pop()
        if cells:
            rows.append((number, cells))
            empty = 0
        elif rows:
            empty += 1
            if empty > MAX_EMPTY_ROWS:
                break
    return rows


def content_digest(sheets: dict[str, list[tuple[int, list[str]]]]) -> str:
    """SHA-256 over the cell values of the XLSForm sheets (not the .xlsx bytes).

    Excel rewrites timestamps and styles on every save; hashing values means the same content
    always gives the same version and any change to a cell gives a new one.
    """
    payload = {
        name: [cells for _, cells in sheets[name]] for name in sorted(sheets) if name in SHEETS
        or name in ("entities", "external_choices")
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def split_header(header: str, double_colon: bool,
                 sheet: str = "survey") -> tuple[str, str | None]:
    """``label::English (en)`` → ("label", "English (en)"); ``Label::English`` → ("label",
    "English").

    The column is named as pyxform names it, in our spelling: case and runs of spaces do not
    matter (``List Name``, ``list name`` → ``list_name``) and pyxform's aliases of ``sheet``
    resolve (``calculate`` → ``calculation``). A column pyxform does not know keeps its
    spelling, lower-cased.
    """
    sep = "::" if double_colon else ":"
    base, lang = header, None
    if sep in header and not (sep == ":" and header.strip().lower().startswith("jr:")):
        base, _, lang = header.partition(sep)
        lang = lang.strip()
    base = base.strip()
    rules = _pyxform()
    table = rules.headers.get(sheet, rules.headers["survey"])
    snake = rules.snake(base)
    return table.get(snake, table.get(base.lower(), base.lower())), lang


def _headers(rows: list[tuple[int, list[str]]], path: Path, sheet: str) -> list[str]:
    if not rows:
        raise FormError("sheet is empty (no header row)", code="sheet-empty", file=path,
                        sheet=sheet)
    return [h.strip() for h in rows[0][1]]


def _language_columns(
    headers: list[str], path: Path, sheet: str, header_row: int
) -> tuple[dict[int, tuple[str, str | None]], list[str]]:
    """Map column index → (base column, language) and list the languages in order."""
    double = any("::" in h for h in headers)
    columns: dict[int, tuple[str, str | None]] = {}
    languages: list[str] = []
    for idx, header in enumerate(headers):
        if not header:
            continue
        base, lang = split_header(header, double, sheet)
        if lang is not None and base in TRANSLATABLE:
            if not lang:
                raise FormError(
                    f"column '{header}' names no language (write e.g. '{base}::English (en)')",
                    code="bad-language-column", file=path, sheet=sheet, row=header_row,
                    column=header,
                )
            if lang not in languages:
                languages.append(lang)
        columns[idx] = (base, lang)
    return columns, languages


def _records(
    rows: list[tuple[int, list[str]]], columns: dict[int, tuple[str, str | None]],
    headers: list[str],
) -> Iterator[tuple[int, dict[str, str], dict[str, dict[str, str]]]]:
    """Yield (row, plain cells by header, translatable cells {base: {lang: text}})."""
    quotes = _pyxform().smart_quotes
    for number, cells in rows[1:]:
        plain: dict[str, str] = {}
        translated: dict[str, dict[str, str]] = {}
        for idx, text in enumerate(cells):
            if idx not in columns or not text.strip():
                continue  # pyxform strips cells: one of spaces only is empty
            base, lang = columns[idx]
            text = text.translate(quotes)  # as pyxform's clean_text_values does
            if base in TRANSLATABLE:
                translated.setdefault(base, {})[lang or "default"] = text
            plain[headers[idx]] = text
            if lang is None:
                plain[base] = text
        if any(v.strip() for v in plain.values()):
            yield number, plain, translated


def load_form(path: str | Path, *, check_expressions: bool = True) -> FormModel:
    """Parse an XLSForm workbook into a :class:`FormModel`.

    Raises :class:`FormError` naming file, sheet, row and column for anything that makes the
    workbook unusable (missing sheets, unknown types, unbalanced groups, duplicate names,
    undefined references, missing choice lists) and, unless ``check_expressions`` is false
    (the linter reports every one instead of the first), for XPath syntax errors.
    """
    path = Path(path)
    sheets = read_sheets(path)
    if "survey" not in sheets and len(sheets) == 1:
        sheets = {"survey": next(iter(sheets.values()))}  # pyxform's rule for a lone sheet
    if "survey" not in sheets:
        raise FormError(
            f"no 'survey' sheet (sheets: {', '.join(sheets) or 'none'})",
            code="sheet-missing", file=path, sheet="survey",
        )
    survey_rows = sheets["survey"]
    survey_headers = _headers(survey_rows, path, "survey")
    header_row = survey_rows[0][0]
    lowered = [split_header(h, "::" in "".join(survey_headers))[0] for h in survey_headers]
    for required in ("type", "name"):
        if required not in lowered:
            raise FormError(
                f"survey sheet has no '{required}' column", code="column-missing", file=path,
                sheet="survey", row=header_row, column=required,
            )
    columns, languages = _language_columns(survey_headers, path, "survey", header_row)

    settings: dict[str, str] = {}
    if "settings" in sheets and len(sheets["settings"]) >= 2:
        s_headers = [split_header(h, True, "settings")[0] if h.strip() else ""
                     for h in sheets["settings"][0][1]]
        s_values = sheets["settings"][1][1]
        settings = {h: (s_values[i].strip() if i < len(s_values) else "")
                    for i, h in enumerate(s_headers) if h}

    choice_lists, choices_headers, choice_langs = _load_choices(sheets, path)
    for lang in choice_langs:
        if lang not in languages:
            languages.append(lang)

    items = _load_items(survey_rows, columns, survey_headers, path, choice_lists,
                        settings.get("name") or "data")
    # A header with no questions (a template) loads as pyxform compiles it: an empty form,
    # which lint reports (survey-empty). A sheet with no header at all is no form.
    if not items and not any(h for h in survey_headers):
        raise FormError("survey sheet is empty", code="sheet-empty", file=path, sheet="survey")
    interview = [lang for lang in languages if lang.lower() != STATA and lang != "default"]
    model = FormModel(
        path=path,
        settings=settings,
        items=items,
        choice_lists=choice_lists,
        languages=interview or ["default"],
        survey_headers=survey_headers,
        choices_headers=choices_headers,
        content_hash=content_digest(sheets),
    )
    model.attached_lists = _attached_lists(model)
    _check_references(model)
    _check_study_facts(model)
    if check_expressions:
        for item, column, error in expression_errors(model):
            raise FormError(str(error), code="expression-syntax", file=path, sheet="survey",
                            row=item.row, column=column)
    default = settings.get("default_language")
    if default and default not in model.languages and model.languages != ["default"]:
        raise FormError(
            f"default_language '{default}' has no label column "
            f"(languages: {', '.join(model.languages)})",
            code="bad-language-column", file=path, sheet="settings", column="default_language",
        )
    return model


def _load_choices(
    sheets: dict[str, list[tuple[int, list[str]]]], path: Path
) -> tuple[dict[str, ChoiceList], list[str], list[str]]:
    rows = sheets.get("choices", [])
    if len(rows) < 2:  # no sheet, an empty one, or headers only: no lists
        return {}, _headers(rows, path, "choices") if rows else [], []
    headers = _headers(rows, path, "choices")
    header_row = rows[0][0]
    columns, languages = _language_columns(headers, path, "choices", header_row)
    bases = {base for base, _ in columns.values()}
    for required in ("list_name", "name"):
        if required not in bases:
            raise FormError(
                f"choices sheet has no '{required}' column", code="column-missing", file=path,
                sheet="choices", row=header_row, column=required,
            )
    lists: dict[str, ChoiceList] = {}
    for number, plain, translated in _records(rows, columns, headers):
        list_name = plain.get("list_name", "").strip()
        name = plain.get("name", "").strip()
        if not list_name and not name:
            continue  # pyxform groups choices by list_name and skips a row without either
        if not list_name:
            raise FormError("choice has no list_name", code="choice-no-list", file=path,
                            sheet="choices", row=number, column="list_name")
        if not name:
            raise FormError(f"choice in list '{list_name}' has no name", code="choice-no-name",
                            file=path, sheet="choices", row=number, column="name")
        extra = {k: v for k, v in plain.items()
                 if split_header(k, "::" in k, "choices")[0]
                 not in TRANSLATABLE | {"list_name", "name"}}
        choice = Choice(list_name, plain.get("name", ""), translated.get("label", {}), extra,
                        number, plain)
        lists.setdefault(list_name, ChoiceList(list_name, [], number)).choices.append(choice)
    return lists, headers, languages


def language_code(language: str) -> str:
    """A workbook language's code: ``Kiswahili (sw)`` → ``sw`` (the HTML ``lang``, codebook
    column tags, the keys of country files); a name without one, as a lower-case slug."""
    match = re.search(r"\(([^()]+)\)\s*$", language)
    if match:
        return match.group(1).strip()
    return re.sub(r"\W+", "_", language.strip()).strip("_").lower() or "default"


def media_folders(form: Path) -> list[Path]:
    """Where a form's attached files are: beside the workbook (where pyxform looks for
    pulldata() and select_one_from_file CSVs) and its ``<form>-media`` folder (Collect's)."""
    return [form.parent, form.parent / f"{form.stem}-media"]


def attachment(form: Path, name: str) -> Path | None:
    """The attached file ``name`` of the form at ``form`` (the media folder wins)."""
    for folder in reversed(media_folders(form)):
        if (folder / name).is_file():
            return folder / name
    return None


def _attached_lists(model: FormModel) -> dict[str, ChoiceList]:
    """The CSV files the form selects from, as choice lists: ``name`` is the value, ``label``
    the label in the default language, ``label::<language>`` (and ``label::stata``) the
    translations, every other column an extra a choice filter can test. A file not at hand is
    left out (the form still loads; its choices are unknown, as in pyxform)."""
    default = model.settings.get("default_language") or model.languages[0]
    out: dict[str, ChoiceList] = {}
    for item in model.items:
        name = item.list_name or ""
        if not item.type.endswith("_from_file") or not name.endswith(".csv") or name in out:
            continue
        path = attachment(Path(model.path), name)
        if path is not None:
            out[name] = read_attached_list(path, name, default)
    return out


def read_attached_list(path: Path, list_name: str, default_language: str) -> ChoiceList:
    """One attached CSV as a :class:`ChoiceList` (rows numbered as in the file, header 1)."""
    import csv

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FormError(f"cannot read attached file ({exc})", code="file-unreadable",
                        file=path) from None
    lst = ChoiceList(list_name, [], 1)
    for number, row in enumerate(rows, start=2):
        plain = {str(k).strip(): (v or "").strip() for k, v in row.items() if k}
        if "name" not in plain:
            raise FormError("attached choice file has no 'name' column", code="column-missing",
                            file=path, row=1, column="name")
        labels: dict[str, str] = {}
        extra: dict[str, str] = {}
        for key, value in plain.items():
            if key.startswith("label") and not value:
                continue  # no text in that language: the device shows the plain label
            if key == "label":
                labels.setdefault(default_language, value)
            elif key.startswith("label::"):
                language = key.split("::", 1)[1]
                labels[STATA if language.lower() == STATA else language] = value
            elif key != "name":
                extra[key] = value
        lst.choices.append(Choice(list_name, plain["name"], labels, extra, number, plain))
    return lst


_OR_OTHER = (" or_other", " or specify other", " or other")  # pyxform's RE_SELECT
_OSM_RE = re.compile(r"^osm \S+$")  # pyxform's RE_OSM: tags on the osm sheet, data binary


def _canonical_type(raw: str) -> tuple[str, str | None, bool]:
    """``select_one yes_no or_other`` → ("select_one", "yes_no", True); pyxform's spellings
    too (``select one from yes_no``, ``add text prompt``, ``imei``)."""
    text = " ".join(raw.split())
    control = block_edge(text)
    if control is not None and control[1] != "loop":
        return f"{control[0]}_{control[1]}", None, False  # a list after a group is ignored
    if _OSM_RE.match(text):  # an OpenStreetMap feature: pyxform binds it as a file upload
        return "file", None, False
    suffix = next((end for end in _OR_OTHER if text.endswith(end)), "")
    or_other = bool(suffix)
    text = text[: len(text) - len(suffix)]
    rules = _pyxform()
    for prefix in rules.select_commands:
        if text.startswith(prefix + " "):
            return rules.select_commands[prefix], text[len(prefix) + 1:].strip(), or_other
    text = _TYPE_ALIASES.get(text, text)
    if text in _TYPE_ALIASES.values() or text in KNOWN_TYPES:
        return text, None, or_other
    if text in rules.type_aliases:
        return rules.type_aliases[text], None, or_other
    lowered = text.lower().replace(" ", "_")
    return _TYPE_ALIASES.get(lowered, lowered), None, or_other


def _select_commands(aliases: Any) -> dict[str, str]:
    """pyxform's select spellings (``select one from``, ``add select one prompt using``…) →
    our type, longest first so that ``select_one_from_file`` wins over ``select_one``."""
    ours = {"select one": "select_one", "select all that apply": "select_multiple",
            "rank": "rank", "select one external": "select_one_external"}
    table = {alias: ours[dest] for alias, dest in aliases.select.items() if dest in ours}
    for alias, dest in aliases.select_from_file.items():
        table[alias] = ("select_one_from_file" if dest == "select one"
                        else "select_multiple_from_file")
    table["select multiple"] = "select_multiple"
    return dict(sorted(table.items(), key=lambda kv: -len(kv[0])))


def _type_aliases(question_types: dict[str, Any]) -> dict[str, str]:
    """pyxform's other names of a type (``add text prompt``, ``imei``, ``q int``) → our type:
    a name whose definition in pyxform's QUESTION_TYPE_DICT is that of one of ours."""
    ours: dict[str, str] = {}
    for name in sorted(KNOWN_TYPES | set(_TYPE_ALIASES)):
        if name in question_types:
            ours.setdefault(repr(question_types[name]), _TYPE_ALIASES.get(name, name))
    # Select spellings need a list (see _select_commands): pyxform reads them only with one.
    return {name: ours[repr(spec)] for name, spec in question_types.items()
            if repr(spec) in ours and "select" not in name}


#: One survey row as read: (Excel row, plain cells by header, translatable cells by language).
Record = tuple[int, dict[str, str], dict[str, dict[str, str]]]
#: pyxform's block rows (``RE_BEGIN_CONTROL``/``aliases.control``): ``lgroup`` and ``looped
#: group`` are repeats; a group or repeat may name a list, which pyxform ignores.
_CONTROL_RE = re.compile(r"^(?P<edge>begin|end)[ _](?P<kind>group|repeat|loop|lgroup|"
                         r"looped group)(?: (?:over )?(?P<list>\S+))?$", re.IGNORECASE)
_CONTROL_KINDS = {"group": "group", "repeat": "repeat", "loop": "loop", "lgroup": "repeat",
                  "looped group": "repeat"}
#: pyxform reserves these names on the survey sheet (RESERVED_NAMES_SURVEY_SHEET).
_RESERVED_NAMES = frozenset({"meta"})


def block_edge(raw_type: str) -> tuple[str, str, str | None] | None:
    """``begin loop over fruit`` → ("begin", "loop", "fruit"); None for a row that is not a
    block boundary."""
    found = _CONTROL_RE.match(" ".join(raw_type.split()))
    if found is None:
        return None
    return (found["edge"].lower(), _CONTROL_KINDS[found["kind"].lower()],
            found["list"] if found["edge"].lower() == "begin" else None)


def _survey_records(
    rows: list[tuple[int, list[str]]], columns: dict[int, tuple[str, str | None]],
    headers: list[str],
) -> list[Record]:
    """The survey rows pyxform reads: comment rows (no type, name or label) dropped, a note
    without a name named as pyxform names it."""
    out: list[Record] = []
    for number, plain, translated in _records(rows, columns, headers):
        raw_type = plain.get("type", "").strip()
        if not raw_type and not plain.get("name", "").strip() and "label" not in translated:
            continue
        if raw_type == "note" and not plain.get("name", "").strip():
            plain = {**plain, "name": f"generated_note_name_{number}"}
        out.append((number, plain, translated))
    return out


def _expand_loops(records: list[Record], lists: dict[str, ChoiceList],
                  path: Path) -> list[Record]:
    """pyxform's ``begin loop over <list>`` (``builder._create_loop_from_dict``): a group named
    like the loop holding, for each choice but one named ``none``, a group named like the
    choice with a copy of the loop's rows, ``%(name)s`` and ``%(label)s`` in their cells
    replaced by the choice's name and label. The copies share their names, which is why
    items are keyed by path where names repeat (:class:`Item`)."""
    out: list[Record] = []
    index = 0
    while index < len(records):
        record = records[index]
        control = block_edge(record[1].get("type", ""))
        if control is None or control[1] != "loop":
            out.append(record)
            index += 1
            continue
        if control[0] == "end":
            raise FormError("'end loop' closes nothing: no loop is open", code="unmatched-end",
                            file=path, sheet="survey", row=record[0], column="type")
        end = _block_end(records, index, path)
        out.extend(_loop_rows(records[index], control[2], records[index + 1:end],
                              records[end], lists, path))
        index = end + 1
    return out


def _loop_lists(records: list[Record],
                lists: dict[str, ChoiceList]) -> dict[str, ChoiceList]:
    """The lists loops run over: as pyxform appends an ``other`` choice (label ``Other``) to a
    list that an ``or_other`` select uses, a loop over that list has an ``other`` group too."""
    others = set()
    for _, plain, _ in records:
        _, list_name, or_other = _canonical_type(plain.get("type", ""))
        if or_other and list_name in lists:
            others.add(list_name)
    out = dict(lists)
    for name in others:
        lst = lists[name]
        if "other" not in lst.codes():
            languages = {lang for c in lst.choices for lang in c.labels} or {"default"}
            other = Choice(name, "other", dict.fromkeys(sorted(languages), "Other"), {},
                           lst.row)
            out[name] = ChoiceList(name, [*lst.choices, other], lst.row)
    return out


def _block_end(records: list[Record], start: int, path: Path) -> int:
    """The index of the row that closes the block opened at ``start``."""
    open_kinds: list[tuple[str, int]] = []
    for index in range(start, len(records)):
        number, plain, _ = records[index]
        control = block_edge(plain.get("type", ""))
        if control is None:
            continue
        if control[0] == "begin":
            open_kinds.append((control[1], number))
            continue
        kind, opened = open_kinds.pop()
        if kind != control[1]:
            raise FormError(f"'{plain['type'].strip()}' closes the {kind} opened at row "
                            f"{opened}", code="unmatched-end", file=path, sheet="survey",
                            row=number, column="type")
        if not open_kinds:
            return index
    raise FormError("'begin loop' is never closed (add 'end loop')", code="unmatched-begin",
                    file=path, sheet="survey", row=records[start][0], column="type")


def _loop_rows(begin: Record, list_name: str | None, body: list[Record], end: Record,
               lists: dict[str, ChoiceList], path: Path) -> list[Record]:
    """The group rows a loop stands for (see :func:`_expand_loops`)."""
    number, plain, translated = begin
    where: dict[str, Any] = {"file": path, "sheet": "survey", "row": number, "column": "type"}
    if not list_name:
        raise FormError("'begin loop' names no choice list (write 'begin loop over <list>')",
                        code="choice-list-missing", **where)
    if list_name not in lists:
        raise FormError(f"loop over '{list_name}', which is not on the choices sheet",
                        code="choice-list-missing", **where)
    close: Record = (end[0], {**end[1], "type": "end group"}, {})
    out: list[Record] = [(number, {**plain, "type": "begin group"}, translated)]
    for choice in lists[list_name].choices:
        if choice.name == "none":  # pyxform leaves out a select's "none" choice
            continue
        label = {"label": dict(choice.labels)} if choice.labels else {}
        out.append((number, {"type": "begin group", "name": choice.name}, label))
        out.extend(_expand_loops(_substituted(body, choice, path), lists, path))
        out.append((end[0], {"type": "end group"}, {}))
    out.append(close)
    return out


def _substituted(body: list[Record], choice: Choice, path: Path) -> list[Record]:
    """A loop's rows for one choice. As in pyxform, only the loop's own rows are filled in,
    not the rows of a group inside it."""
    out: list[Record] = []
    depth = 0
    for number, plain, translated in body:
        control = block_edge(plain.get("type", ""))
        if control is not None and control[0] == "end":
            depth -= 1
        if depth == 0:
            plain = {header: _fill(text, choice, _header_language(header), path, number, header)
                     for header, text in plain.items()}
            translated = {base: {lang: _fill(text, choice, lang, path, number, base)
                                 for lang, text in texts.items()}
                          for base, texts in translated.items()}
        if control is not None and control[0] == "begin":
            depth += 1
        out.append((number, plain, translated))
    return out


def _header_language(header: str) -> str:
    """The language of a translatable column's header ('default' for any other column)."""
    base, lang = split_header(header, "::" in header)
    return (lang or "default") if base in TRANSLATABLE else "default"


def _fill(text: str, choice: Choice, language: str, path: Path, row: int, column: str) -> str:
    """``How many %(label)s?`` for one choice: Python's %-formatting, as pyxform fills it."""
    if "%" not in text:
        return text
    labels = choice.labels
    label = labels.get(language) or labels.get("default") or next(iter(labels.values()), "")
    try:
        return text % {**choice.extra, "name": choice.name, "label": label}
    except (KeyError, ValueError, TypeError) as exc:
        raise FormError(f"cannot fill in '{text}' for choice '{choice.name}' of a loop "
                        f"({type(exc).__name__}: {exc}); write %% for a percent sign",
                        code="loop-substitution", file=path, sheet="survey", row=row,
                        column=column) from None


def _load_items(
    rows: list[tuple[int, list[str]]], columns: dict[int, tuple[str, str | None]],
    headers: list[str], path: Path, lists: dict[str, ChoiceList], root: str,
) -> list[Item]:
    records = _survey_records(rows, columns, headers)
    records = _expand_loops(records, _loop_lists(records, lists), path)
    builder = _ItemBuilder(path, root)
    for record in records:
        builder.add(*record)
    return builder.finish()


class _ItemBuilder:
    """Survey rows → items, nesting and names checked by pyxform's rules.

    A name must be unique among the children of its group or repeat (pyxform's
    ``validate_question_group_repeat_name``), a repeat's name anywhere in the form
    (``validate_repeat_name``); ``meta`` is reserved.
    """

    def __init__(self, path: Path, root: str) -> None:
        self.path = path
        self.root = root  # the submission's root element (pyxform: settings name or 'data')
        self.items: list[Item] = []
        self.stack: list[Item] = []  # open groups and repeats
        self.siblings: list[dict[str, int]] = [{}]  # per open block: name → row
        self.repeats: dict[str, int] = {}

    def add(self, number: int, plain: dict[str, str],
            translated: dict[str, dict[str, str]]) -> None:
        raw_type = plain.get("type", "").strip()
        name = plain.get("name", "").strip()
        where = {"file": self.path, "sheet": "survey", "row": number}
        if not raw_type:
            raise FormError(f"row has no type (name '{name}')" if name else "row has no type",
                            code="type-missing", column="type", **where)
        type_, list_name, or_other = _canonical_type(raw_type)
        if type_ in ("end_group", "end_repeat"):
            _close(self.stack, type_, raw_type, name, where)
            self.siblings.pop()
            return
        _check_row(type_, list_name, raw_type, name, where)
        self._check_name(name, type_, where)
        parent = self.stack[-1].xml_path if self.stack else ()
        item = Item(
            name=name, type=type_, row=number, path=(), repeat=None, cells=plain,
            list_name=list_name, or_other=or_other,
            labels=translated.get("label", {}), hints=translated.get("hint", {}),
            constraint_messages=translated.get("constraint_message", {}),
            required_messages=translated.get("required_message", {}),
            xml_path=(*parent, name),
        )
        if type_ == "calculate" and not item.calculation and not item.default:
            raise FormError(f"calculate '{name}' has no calculation",
                            code="calculation-missing", column="calculation", **where)
        self.items.append(item)
        if item.is_group:
            self.stack.append(item)
            self.siblings.append({})

    def _check_name(self, name: str, type_: str, where: dict[str, Any]) -> None:
        siblings = self.siblings[-1]
        if name in _RESERVED_NAMES:
            raise FormError(f"the name '{name}' is reserved for form metadata",
                            code="name-reserved", column="name", **where)
        if name in siblings:
            inside = f"'{self.stack[-1].xml_name}'" if self.stack else "the form's top level"
            raise FormError(f"duplicate name '{name}' in {inside} (first at row "
                            f"{siblings[name]}); names may repeat only in different groups",
                            code="name-duplicate", column="name", **where)
        siblings[name] = where["row"]
        if type_ != "begin_repeat":
            return
        if name == self.root:
            raise FormError(f"a repeat may not be named '{name}' like the form's root element",
                            code="name-duplicate", column="name", **where)
        if name in self.repeats:
            raise FormError(f"duplicate repeat name '{name}' (first at row "
                            f"{self.repeats[name]}); a repeat's name must be unique in the form",
                            code="name-duplicate", column="name", **where)
        self.repeats[name] = where["row"]

    def finish(self) -> list[Item]:
        if self.stack:
            top = self.stack[-1]
            raise FormError(
                f"'{top.type.replace('_', ' ')}' '{top.name}' is never closed "
                f"(add 'end {top.type[6:]}')",
                code="unmatched-begin", file=self.path, sheet="survey", row=top.row,
                column="type",
            )
        _assign_keys(self.items)
        return self.items


def _assign_keys(items: list[Item]) -> None:
    """Key each item by its name, or by its path where pyxform let names repeat (see
    :class:`Item`); path and repeat then name the enclosing blocks by their keys."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.name] = counts.get(item.name, 0) + 1
    keys: dict[tuple[str, ...], str] = {}
    repeats: set[tuple[str, ...]] = set()
    for item in items:
        xml = item.xml_path
        item.path = tuple(keys[xml[:depth]] for depth in range(1, len(xml)))
        item.repeat = next((keys[xml[:depth]] for depth in range(len(xml) - 1, 0, -1)
                            if xml[:depth] in repeats), None)
        if counts[item.name] > 1:
            item.name = "/".join(xml)
        keys[xml] = item.name
        if item.is_repeat:
            repeats.add(xml)


def _close(stack: list[Item], type_: str, raw_type: str, name: str,
           where: dict[str, Any]) -> None:
    """An end group / end repeat row: close the innermost open block, which must match."""
    kind = "begin_" + type_[4:]
    if not stack:
        raise FormError(f"'{raw_type}' closes nothing: no group or repeat is open",
                        code="unmatched-end", column="type", **where)
    top = stack.pop()
    if top.type != kind:
        raise FormError(
            f"'{raw_type}' closes '{top.type.replace('_', ' ')}' '{top.name}' "
            f"opened at row {top.row}",
            code="unmatched-end", column="type", **where,
        )
    # pyxform ignores the name of an end row: a different one is lint's end-name-mismatch.
    top.end_row = where["row"]


def _check_row(type_: str, list_name: str | None, raw_type: str, name: str,
               where: dict[str, Any]) -> None:
    """A survey row's type, choice list and name must be usable."""
    if type_ not in KNOWN_TYPES:
        raise FormError(f"unknown question type '{raw_type}'", code="type-unknown",
                        column="type", **where)
    if type_ in SELECT_TYPES and not list_name:
        raise FormError(f"'{raw_type}' names no choice list", code="choice-list-missing",
                        column="type", **where)
    if not name:
        raise FormError(f"'{raw_type}' row has no name", code="name-missing",
                        column="name", **where)
    if not NAME_RE.match(name):
        raise FormError(
            f"name '{name}' is not a valid XML name (letters, digits, _ . -; "
            "not starting with a digit)",
            code="name-invalid", column="name", **where,
        )


def _check_references(model: FormModel) -> None:
    """Every ``${name}`` must name one field and every select must point to a non-empty list.

    As in pyxform, a name that several fields share (in different groups, or in the groups
    of a loop) cannot be referenced: ``${name}`` would not say which one.
    """
    shared = {i.xml_name for i in model.items if i.name != i.xml_name}
    for item in model.items:
        for column, text in item.cells.items():
            for ref in REF_RE.findall(text):
                if ref not in shared and ref in model.by_name \
                        and model.by_name[ref].xml_name == ref:
                    continue
                where = {"file": model.path, "sheet": "survey", "row": item.row,
                         "column": column}
                if ref in shared:
                    keys = [i.name for i in model.items if i.xml_name == ref]
                    raise FormError(f"${{{ref}}} is ambiguous: {len(keys)} fields are named "
                                    f"'{ref}' ({', '.join(keys)})",
                                    code="reference-ambiguous", **where)
                raise FormError(f"${{{ref}}} refers to no field of this form",
                                code="reference-undefined", **where)
        if item.list_name and item.type in SELECT_TYPES:
            if REF_RE.fullmatch(item.list_name):
                continue  # select from a repeat
            if not model.choice_lists:
                raise FormError(
                    f"'{item.name}' uses list '{item.list_name}' but the workbook has no "
                    "'choices' sheet",
                    code="sheet-missing", file=model.path, sheet="survey", row=item.row,
                    column="type",
                )
            if item.list_name not in model.choice_lists:
                raise FormError(
                    f"choice list '{item.list_name}' is not on the choices sheet",
                    code="choice-list-missing", file=model.path, sheet="survey",
                    row=item.row, column="type",
                )


def _check_study_facts(model: FormModel) -> None:
    """What a workbook declares about the study must name its own fields and codes."""
    settings = {"file": model.path, "sheet": "settings"}
    for name in model.household_id:
        item = model.by_name.get(name)
        if item is None or not item.holds_data or item.repeat is not None:
            raise FormError(f"household_id names '{name}', which is no field of the form "
                            "outside repeats", code="household-id-invalid",
                            column=HOUSEHOLD_ID_SETTING, **settings)
        if model.instance_fields and name not in model.instance_fields:
            raise FormError(f"household_id field '{name}' is not part of instance_name, so "
                            "an interview's ID would not name its household",
                            code="household-id-invalid", column=HOUSEHOLD_ID_SETTING,
                            **settings)
    for name in _setting_names(model.settings.get(CONSENT_GATES_SETTING, "")):
        item = model.by_name.get(name)
        if item is None or item.type != "select_one" or item.repeat is not None:
            raise FormError(f"consent_gates names '{name}', which is no select_one question "
                            "of the form outside repeats", code="consent-gate-invalid",
                            column=CONSENT_GATES_SETTING, **settings)
    lists = [lst for lst in model.choice_lists.values()
             if any(c.extra.get(AAPOR_COLUMN) for c in lst.choices)]
    where = {"file": model.path, "sheet": "choices", "column": AAPOR_COLUMN}
    if len(lists) > 1:
        raise FormError(f"more than one choice list declares AAPOR categories "
                        f"({', '.join(lst.name for lst in lists)}): a form records one final "
                        "disposition", code="disposition-invalid", row=lists[1].row, **where)
    for lst in lists:
        for c in lst.choices:
            category = c.extra.get(AAPOR_COLUMN, "")
            if category not in AAPOR_CATEGORIES:
                raise FormError(
                    f"disposition {c.name} of '{lst.name}' has AAPOR category "
                    f"'{category}' (one of {', '.join(AAPOR_CATEGORIES)} expected)",
                    code="disposition-invalid", row=c.row, **where)
        users = [i for i in model.items if i.list_name == lst.name]
        if len(users) != 1 or users[0].type != "select_one" or users[0].repeat is not None:
            raise FormError(f"the disposition list '{lst.name}' must be used by one "
                            "select_one question outside repeats (used by "
                            f"{[i.name for i in users]})", code="disposition-invalid",
                            row=lst.row, **where)


def expression_errors(model: FormModel) -> Iterator[tuple[Item, str, Exception]]:
    """Every relevant/constraint/calculation/choice_filter that does not parse."""
    from dhsurvey.forms.expressions import ExpressionError, parse

    for item in model.items:
        for column, text in item.expressions().items():
            try:
                parse(text)
            except ExpressionError as exc:
                yield item, column, exc
