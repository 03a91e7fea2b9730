"""Lint XLSForm workbooks: DIME ``ietestform`` rules, the study's own rules, and the compiler.

A designer runs one command and sees everything that is wrong with a workbook — what pyxform and
ODK Validate would reject, what DIME's checklist flags, and what this study requires (consent
gates, refusal options on sensitive items, PII classes, complete translations). Each finding
names the file, sheet, row, column and rule so it can be fixed in Excel directly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dhsurvey.errors import DhsurveyError, FormError
from dhsurvey.forms.expressions import (
    BinaryOp,
    Current,
    ExpressionError,
    Negate,
    Node,
    Number,
    Ref,
    String,
    comparisons,
    conjuncts,
    parse,
    references,
)
from dhsurvey.forms.model import (
    GATE_NAME_RE,
    PII_CLASSES,
    REF_RE,
    STATA,
    SURVEY_COLUMNS,
    FormModel,
    Item,
    expression_errors,
    load_form,
    split_header,
)
from dhsurvey.forms.translate import PYXFORM_FILLER, Entry

ERROR, WARNING, INFO = "error", "warning", "info"
#: Choice codes every sensitive item must offer.
REFUSAL_CODE = "99"
NAME_LIMIT = 32
LABEL_LIMIT = 80
#: Characters Stata adds when a repeat is reshaped wide (``_10``).
REPEAT_SUFFIX = 3
#: The consent-gate names of a workbook that declares no ``consent_gates`` (kept for callers
#: that match column names; a form's gates are :attr:`FormModel.consent_gates`).
CONSENT_RE = GATE_NAME_RE


@dataclass(frozen=True)
class Finding:
    """One problem in one cell (or sheet, or file)."""

    file: str
    sheet: str | None
    row: int | None
    column: str | None
    rule: str
    severity: str
    message: str

    def location(self) -> str:
        parts = [self.file]
        if self.sheet:
            parts.append(self.sheet)
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(self.column)
        return ":".join(parts)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: Rule id → (severity, what it checks). The README lists these; tests cover each.
RULES: dict[str, tuple[str, str]] = {
    # compile and parse
    "form": (ERROR, "the workbook cannot be read or parsed (missing sheet, unknown type, …)"),
    "pyxform": (ERROR, "pyxform rejects the workbook"),
    "pyxform-warning": (WARNING, "pyxform warns about the workbook"),
    "odk-validate": (ERROR, "ODK Validate rejects the compiled XForm"),
    "expression-syntax": (ERROR, "an XPath expression does not parse"),
    # DIME ietestform
    "encryption-key-missing": (WARNING, "settings has no public_key: submissions not encrypted"),
    "recommended-column-missing": (WARNING, "no hint / constraint_message / required_message "
                                   "column"),
    "stata-label-missing": (WARNING, "no label::stata column, or a field or choice without one"),
    "label-too-long": (WARNING, "Stata label longer than 80 characters"),
    "choice-list-unused": (WARNING, "a choice list no question uses"),
    "choice-name-not-numeric": (ERROR, "choice names must be integers (Stata/SPSS value labels)"),
    "choice-name-duplicate": (ERROR, "the same choice name twice in a list"),
    "choice-label-missing": (ERROR, "a choice without a label"),
    "choice-label-duplicate": (ERROR, "the same label twice in a list"),
    "whitespace": (WARNING, "leading or trailing spaces in a cell"),
    "outdated-syntax": (WARNING, "position( or jr:choice-name( (outdated XLSForm syntax)"),
    "not-required": (WARNING, "an input question that is not required"),
    "required-note": (ERROR, "a note marked required (cannot be completed)"),
    "label-missing": (ERROR, "a question, note or group without a label"),
    "end-name-missing": (WARNING, "end group / end repeat without the name it closes"),
    "end-name-mismatch": (WARNING, "end group / end repeat naming another block than it closes"),
    "survey-empty": (WARNING, "a survey sheet with a header but no questions"),
    "name-too-long": (ERROR, "field name longer than 32 characters (with repeat suffix)"),
    "repeat-name-conflict": (ERROR, "a name that clashes with a repeat field reshaped wide"),
    "constraint-message-missing": (WARNING, "a constraint without a message"),
    "required-message-missing": (WARNING, "a required question without a required message"),
    "column-unknown": (WARNING, "a survey column XLSForm does not know (typo?)"),
    # the study's own rules
    "sensitive-no-refusal": (ERROR, "a sensitive select without 99 'prefer not to say'"),
    "consent-ungated": (ERROR, "a question after consent that does not depend on it"),
    "pii-missing": (ERROR, "a field holding data (question, metadata, calculation) without a "
                    "pii class"),
    "pii-invalid": (ERROR, "a pii value outside direct, quasi, sensitive, free_text, none"),
    "pii-inherited": (ERROR, "a calculation of a direct or free_text field classed weaker "
                      "without a pii_reason"),
    "translation-missing": (ERROR, "a label, hint or message missing in a language"),
    "translation-stale": (WARNING, "a translation imported from a source text that has changed "
                          "since (translate import records what it translated)"),
    # skip logic
    "relevant-later": (ERROR, "a relevance, constraint or choice filter uses a question asked "
                       "later (directly or through a calculation): it is still empty then"),
    "select-multiple-equals": (ERROR, "= or != compares a select_multiple with a code: use "
                               "selected()"),
    "code-not-in-list": (ERROR, "a code compared with a select (or in selected()) that its "
                         "choice list does not have"),
    "constraint-impossible": (ERROR, "a constraint no value can satisfy (. > 17 and . < 12)"),
    "random-as-text": (WARNING, "a random() draw kept as a calculation's text and used as a "
                       "number: ODK writes a draw below 0.001 as '5.5E-5', which number() "
                       "reads as NaN (keep int(random() * 1000000) instead)"),
}

#: Rules that need more than the workbook: the simulator (``--simulate``), or the study's
#: country and indicator files, which lint checks against the forms (the CLI wires both, as
#: the forms stage imports neither the simulator nor the later stages that read those files).
STUDY_RULES: dict[str, tuple[str, str]] = {
    "unreachable": (WARNING, "a question, note or group relevant in none of N simulated "
                    "interviews (choices drawn evenly, then steered towards it): its skip "
                    "logic may never show it"),
    "simulation-failed": (WARNING, "the workbook could not be simulated, so reachability was "
                          "not checked"),
    "draft-language-unknown": (WARNING, "--draft names a language the workbook does not have"),
    "country-invalid": (ERROR, "a country file the loader rejects (first problem of the file)"),
    "country-key-unknown": (WARNING, "a key of a country file the loader does not read "
                            "(typo?)"),
    "country-rate-invalid": (ERROR, "a simulation rate outside 0 to 1"),
    "attachment-stale": (ERROR, "a form attachment (countries.csv, regions.csv, schools.csv, "
                         "education.csv) that is not what the country files give: "
                         "`dhsurvey country media` writes it again"),
    "indicator-invalid": (ERROR, "an indicator file the loader rejects (unknown form or "
                          "field, syntax, missing definition; first problem of the file)"),
    "indicator-code-not-in-list": (ERROR, "an indicator or domain expression compares a "
                                   "select with a code its list does not have, or a "
                                   "select_multiple with = / !="),
    "domain-label-unknown": (WARNING, "a domain label for a level that is not a code of the "
                             "field's list"),
    "domain-margin-unknown": (ERROR, "a domain naming a margin no country file calibrates to"),
}
SEVERITY = {rule: severity for rule, (severity, _) in {**RULES, **STUDY_RULES}.items()}
#: Rules whose findings in a draft language (``--draft``) are information, not problems.
DRAFT_RULES = ("translation-missing", "choice-label-missing")

#: A finding of the key rule says nothing more than one of these rules on the same cell
#: (a choice label missing in Kiswahili is choice-label-missing, not also translation-missing).
SUBSUMED: dict[str, tuple[str, ...]] = {
    "translation-missing": ("label-missing", "choice-label-missing"),
}


def _finding(model: FormModel, rule: str, message: str, *, sheet: str | None = "survey",
             row: int | None = None, column: str | None = None) -> Finding:
    return Finding(str(model.path), sheet, row, column, rule, SEVERITY[rule], message)


def file_finding(path: str | Path, key: str | None, rule: str, message: str,
                 row: int | None = None) -> Finding:
    """A finding in a study file (YAML): ``key`` is the key path (``strata[2].psus``), ``row``
    its line."""
    return Finding(str(path), None, row, key, rule, SEVERITY[rule], message)


Check = Callable[[FormModel], Iterator[Finding]]
CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


# -- DIME ietestform --------------------------------------------------------------------------


@check
def encryption_key(model: FormModel) -> Iterator[Finding]:
    if not model.settings.get("public_key"):
        yield _finding(model, "encryption-key-missing",
                       "no public_key in settings: pass --public-key to build, or add one",
                       sheet="settings", column="public_key")


#: A calculation whose stored text is a bare draw: random() or once(random()).
_BARE_RANDOM = re.compile(r"^\s*(once\(\s*)?random\(\s*\)(\s*\))?\s*$")


@check
def random_as_text(model: FormModel) -> Iterator[Finding]:
    """A field holding random()'s text, used in another expression: JavaRosa prints a double
    below 0.001 in exponent notation and its number() does not read that back."""
    draws = {i.name for i in model.fields
             if _BARE_RANDOM.match(str(i.get("calculation") or ""))}
    for item in model.items:
        for column, text in item.expressions().items():
            used = draws & set(REF_RE.findall(text))
            for name in sorted(used):
                yield _finding(model, "random-as-text",
                               f"'{item.name}' computes with ${{{name}}}, a random() draw kept "
                               "as text: a draw below 0.001 is written '5.5E-5' and read as "
                               "NaN; store int(random() * 1000000) and divide", row=item.row,
                               column=column)


@check
def survey_empty(model: FormModel) -> Iterator[Finding]:
    if not model.items:
        yield _finding(model, "survey-empty", "the survey sheet has a header but no questions")


@check
def recommended_columns(model: FormModel) -> Iterator[Finding]:
    bases = {split_header(h, "::" in h)[0] for h in model.survey_headers}
    for col in ("hint", "constraint_message", "required_message"):
        if col not in bases:
            yield _finding(model, "recommended-column-missing", f"no '{col}' column",
                           row=1, column=col)


@check
def stata_labels(model: FormModel) -> Iterator[Finding]:
    stata_col = f"label::{STATA}"
    if not any(h.lower().replace(" ", "") == stata_col for h in model.survey_headers):
        yield _finding(model, "stata-label-missing", f"survey sheet has no '{stata_col}' column",
                       row=1, column=stata_col)
        return
    for item in model.fields:
        if item.type in ("calculate", "hidden") or item.holds_data is False:
            continue
        text = item.labels.get(STATA, "")
        if item.is_input and not text:
            yield _finding(model, "stata-label-missing", f"'{item.name}' has no Stata label",
                           row=item.row, column=stata_col)
        if len(text) > LABEL_LIMIT:
            yield _finding(model, "label-too-long",
                           f"Stata label of '{item.name}' has {len(text)} characters",
                           row=item.row, column=stata_col)
    used = _used_lists(model)
    for lst in model.choice_lists.values():
        if lst.name not in used:
            continue
        for ch in lst.choices:
            text = ch.labels.get(STATA, "")
            if not text:
                yield _finding(model, "stata-label-missing",
                               f"choice {ch.name} of '{lst.name}' has no Stata label",
                               sheet="choices", row=ch.row, column=stata_col)
            elif len(text) > LABEL_LIMIT:
                yield _finding(model, "label-too-long",
                               f"Stata label of choice {ch.name} in '{lst.name}' has "
                               f"{len(text)} characters", sheet="choices", row=ch.row,
                               column=stata_col)


def _used_lists(model: FormModel) -> set[str]:
    return {i.list_name for i in model.items if i.list_name}


@check
def choice_lists(model: FormModel) -> Iterator[Finding]:
    used = _used_lists(model)
    for lst in model.choice_lists.values():
        if lst.name not in used:
            yield _finding(model, "choice-list-unused", f"list '{lst.name}' is not used",
                           sheet="choices", row=lst.row, column="list_name")
        names: Counter[str] = Counter()
        labels: dict[tuple[str, str], int] = {}
        for ch in lst.choices:
            names[ch.name] += 1
            if not re.fullmatch(r"-?\d+", ch.name.strip()):
                yield _finding(model, "choice-name-not-numeric",
                               f"choice name '{ch.name}' in '{lst.name}' is not an integer",
                               sheet="choices", row=ch.row, column="name")
            if names[ch.name] == 2:
                yield _finding(model, "choice-name-duplicate",
                               f"choice name '{ch.name}' appears twice in '{lst.name}'",
                               sheet="choices", row=ch.row, column="name")
            for lang in model.languages:
                text = ch.labels.get(lang, "").strip()
                column = f"label::{lang}" if lang != "default" else "label"
                if not text:
                    yield _finding(model, "choice-label-missing",
                                   f"choice {ch.name} of '{lst.name}' has no label in {lang}",
                                   sheet="choices", row=ch.row, column=column)
                    continue
                key = (lang, text.lower())
                if key in labels:
                    yield _finding(model, "choice-label-duplicate",
                                   f"label '{text}' is used twice in '{lst.name}' "
                                   f"(rows {labels[key]} and {ch.row})",
                                   sheet="choices", row=ch.row, column=column)
                labels.setdefault(key, ch.row)


@check
def whitespace(model: FormModel) -> Iterator[Finding]:
    for item in model.items:
        for column, text in item.cells.items():
            if text != text.strip():
                yield _finding(model, "whitespace", f"'{text}' has leading/trailing spaces",
                               row=item.row, column=column)
    for lst in model.choice_lists.values():
        for ch in lst.choices:
            for column, text in ch.cells.items():
                if text != text.strip():
                    yield _finding(model, "whitespace", f"'{text}' has leading/trailing spaces",
                                   sheet="choices", row=ch.row, column=column)


@check
def outdated_syntax(model: FormModel) -> Iterator[Finding]:
    for item in model.items:
        for column, text in item.expressions().items():
            for token in ("position(", "jr:choice-name("):
                if token in text.replace(" ", ""):
                    yield _finding(model, "outdated-syntax",
                                   f"'{token}' is outdated XLSForm syntax",
                                   row=item.row, column=column)


@check
def required_and_labels(model: FormModel) -> Iterator[Finding]:
    default = model.default_language
    for item in model.items:
        if item.type == "note" and item.required:
            yield _finding(model, "required-note", f"note '{item.name}' is required",
                           row=item.row, column="required")
        if item.is_input and not item.required and item.type != "acknowledge":
            yield _finding(model, "not-required", f"'{item.name}' is not required",
                           row=item.row, column="required")
        if item.is_input and item.required and not item.required_messages:
            yield _finding(model, "required-message-missing",
                           f"'{item.name}' is required but has no required message",
                           row=item.row, column="required_message")
        if item.constraint and not item.constraint_messages:
            yield _finding(model, "constraint-message-missing",
                           f"'{item.name}' has a constraint but no message",
                           row=item.row, column="constraint_message")
        needs_label = item.is_input or item.type == "note" or item.is_repeat
        if needs_label and not (item.labels.get(default) or item.labels.get("default")):
            yield _finding(model, "label-missing", f"'{item.name}' has no label",
                           row=item.row, column=f"label::{default}")


@check
def end_names(model: FormModel) -> Iterator[Finding]:
    # The model drops end rows; re-read their cells from the sheet to see their names, and
    # pair each end with its begin as the model does (block_edge: any spelling, loops too).
    from dhsurvey.forms.model import block_edge, read_sheets

    rows = read_sheets(model.path).get("survey", [])
    if not rows:
        return
    header = [h.strip().lower() for h in rows[0][1]]
    if "type" not in header or "name" not in header:
        return
    t, n = header.index("type"), header.index("name")
    opened: list[tuple[str, int]] = []  # names of the open groups and repeats, with their rows
    for number, cells in rows[1:]:
        edge = block_edge(cells[t]) if t < len(cells) else None
        name = cells[n].strip() if n < len(cells) else ""
        if edge is None:
            continue
        if edge[0] == "begin":
            opened.append((name, number))
            continue
        begin = opened.pop() if opened else None
        if not name:
            yield _finding(model, "end-name-missing",
                           f"'{cells[t].strip()}' does not name what it closes",
                           row=number, column="name")
        elif begin is not None and begin[0] and name != begin[0]:
            yield _finding(model, "end-name-mismatch",
                           f"'{cells[t].strip()}' named '{name}' closes '{begin[0]}' opened at "
                           f"row {begin[1]}", row=number, column="name")


@check
def names(model: FormModel) -> Iterator[Finding]:
    repeat_fields = {i.name for i in model.fields if i.repeat}
    for item in model.items:
        limit = NAME_LIMIT - (REPEAT_SUFFIX if item.repeat else 0)
        if len(item.name) > limit:
            extra = " with the repeat suffix" if item.repeat else ""
            yield _finding(model, "name-too-long",
                           f"'{item.name}' has {len(item.name)} characters{extra} "
                           f"(limit {limit})", row=item.row, column="name")
        stem = re.sub(r"_\d+$", "", item.name)
        if not item.repeat and stem != item.name and stem in repeat_fields:
            yield _finding(model, "repeat-name-conflict",
                           f"'{item.name}' clashes with repeat field '{stem}' reshaped wide",
                           row=item.row, column="name")


@check
def unknown_columns(model: FormModel) -> Iterator[Finding]:
    double = any("::" in h for h in model.survey_headers)
    for header in model.survey_headers:
        base = split_header(header, double)[0]
        if header and base not in SURVEY_COLUMNS and not base.startswith(("body::", "bind::",
                                                                         "instance::")):
            yield _finding(model, "column-unknown",
                           f"column '{header}' is not an XLSForm column (pyxform ignores it)",
                           row=1, column=header)


# -- the study's rules -------------------------------------------------------------------------


@check
def sensitive_refusal(model: FormModel) -> Iterator[Finding]:
    for item in model.by_pii("sensitive"):
        lst = model.choices_for(item)
        if lst is not None and REFUSAL_CODE not in lst.codes():
            yield _finding(model, "sensitive-no-refusal",
                           f"sensitive '{item.name}' uses list '{item.list_name}' without "
                           f"{REFUSAL_CODE} (prefer not to say)", row=item.row, column="type")


def _depends_on(model: FormModel) -> Callable[[str], set[str]]:
    """Names an expression depends on, following calculations transitively."""
    cache: dict[str, set[str]] = {}

    def deps(name: str) -> set[str]:
        if name in cache:
            return cache[name]
        cache[name] = {name}
        item = model.by_name.get(name)
        if item is not None and item.type == "calculate":
            for ref in REF_RE.findall(item.calculation):
                cache[name] |= deps(ref)
        return cache[name]

    return deps


@check
def consent_gate(model: FormModel) -> Iterator[Finding]:
    gates = [model[name] for name in model.consent_gates]
    if not gates:
        return
    first = gates[0]
    gate_names = {g.name for g in gates}
    deps = _depends_on(model)
    after = False
    for item in model.items:
        if item is first:
            after = True
            continue
        if not after or not item.is_input or item.name in gate_names:
            continue
        refs: set[str] = set()
        for expr in model.relevance(item):
            for ref in REF_RE.findall(expr):
                refs |= deps(ref)
        if not refs & gate_names:
            yield _finding(model, "consent-ungated",
                           f"'{item.name}' comes after '{first.name}' but its relevance does "
                           f"not depend on {', '.join(sorted(gate_names))}",
                           row=item.row, column="relevant")


@check
def pii_classes(model: FormModel) -> Iterator[Finding]:
    """Every field that holds data is classed, and no calculation is classed weaker than what
    it copies: what a release may carry is decided from these cells (an unclassed calculation
    is as unreviewed as an unclassed question)."""
    inheritance = model.pii_inheritance
    for item in model.fields:
        value = item.pii
        got = inheritance.get(item.name)
        if value and value not in PII_CLASSES:
            yield _finding(model, "pii-invalid",
                           f"pii '{value}' of '{item.name}' is not one of "
                           f"{', '.join(PII_CLASSES)}", row=item.row, column="pii")
        elif not value:
            hint = (f" (it references {got.pii} field '{got.source}': class it {got.pii})"
                    if got is not None else "")
            yield _finding(model, "pii-missing",
                           f"{item.type} '{item.name}' has no pii class{hint}", row=item.row,
                           column="pii")
        elif got is not None and model.effective_pii(item.name) != value:
            via = " → ".join((got.column, *got.via))
            yield _finding(model, "pii-inherited",
                           f"'{item.name}' references {got.pii} field '{got.source}' "
                           f"(via {via}) but is classed '{value}'; class it {got.pii} or give "
                           "a pii_reason", row=item.row, column="pii")


def untranslated(model: FormModel) -> Iterator[Finding]:
    """Every translatable cell present in one interview language and missing in another."""
    langs = [lang for lang in model.languages if lang != "default"]
    if len(langs) < 2:
        return
    for item in model.items:
        for base, texts in (("label", item.labels), ("hint", item.hints),
                            ("constraint_message", item.constraint_messages),
                            ("required_message", item.required_messages)):
            yield from _missing_languages(model, langs, base, texts, "survey", item.row,
                                          f"'{item.name}'")
    for lst in model.choice_lists.values():
        for ch in lst.choices:
            yield from _missing_languages(model, langs, "label", ch.labels, "choices", ch.row,
                                          f"choice {ch.name} of '{lst.name}'")


def _missing_languages(model: FormModel, langs: list[str], base: str, texts: dict[str, str],
                       sheet: str, row: int, what: str) -> Iterator[Finding]:
    present = {lang for lang in langs
               if texts.get(lang, "").strip() not in ("", PYXFORM_FILLER)}
    if not present:
        return
    for lang in langs:
        if lang not in present:
            yield _finding(model, "translation-missing", f"{base} of {what} missing in {lang}",
                           sheet=sheet, row=row, column=f"{base}::{lang}")


check(untranslated)


def _stale(model: FormModel) -> Iterator[tuple[str, Entry]]:
    """(source language, entry) of each translation ``translate import`` wrote whose source
    text has changed since, while the translation is still the one imported (see
    :mod:`dhsurvey.forms.translate`)."""
    from dhsurvey.forms.translate import entries, recorded_sources, text_hash

    recorded = recorded_sources(model.path)
    pairs = {(split_header(column, True)[1], rec.source_language)
             for (_, _, column), rec in recorded.items()}
    for language, source in sorted(pairs):
        if language not in model.languages or source not in model.languages:
            continue
        for e in entries(model, language, source):
            rec = recorded.get((e.sheet, e.key, e.column))
            if (rec is None or rec.source_language != source
                    or rec.translation_hash != text_hash(e.current)
                    or rec.source_hash == text_hash(e.source)):
                continue
            yield source, e


@check
def stale_translations(model: FormModel) -> Iterator[Finding]:
    for source, e in _stale(model):
        yield _finding(model, "translation-stale",
                       f"{e.column} of {e.context} was translated from a {source} text "
                       f"that has changed since: check it ('{e.source}' now)",
                       sheet=e.sheet, row=e.row, column=e.column)


# -- translation progress per language ---------------------------------------------------------

#: What the per-language summary counts: survey columns by base, and choice labels.
SUMMARY_KINDS = ("labels", "hints", "messages", "choices")


@dataclass(frozen=True)
class LanguageSummary:
    """How far one language of one workbook is translated, per kind of text: (translated,
    missing, stale) against the texts of the form's default language."""

    file: str
    language: str
    draft: bool
    counts: dict[str, tuple[int, int, int]]

    def total(self) -> tuple[int, int, int]:
        t, m, s = zip(*self.counts.values(), strict=True) if self.counts else ((), (), ())
        return sum(t), sum(m), sum(s)


def _kind(entry: Entry) -> str:
    if entry.sheet == "choices":
        return "choices"
    base = split_header(entry.column, True)[0]
    return {"label": "labels", "hint": "hints"}.get(base, "messages")


def translation_summary(model: FormModel, drafts: Sequence[str] = ()) -> list[LanguageSummary]:
    """Per language other than the default (Stata labels included): translated, missing and
    stale labels, hints, messages and choice labels — what a translator has left to do."""
    from dhsurvey.forms.translate import entries

    stale = {(e.sheet, e.key, e.column) for _, e in _stale(model)}
    draft = set(draft_languages(model, drafts))
    out = []
    for language in [*model.languages, STATA]:
        if language in (model.default_language, "default") or (
                language == STATA and not any(h.lower().replace(" ", "") == f"label::{STATA}"
                                              for h in model.survey_headers)):
            continue
        # Stata labels are variable and value labels: no hints or messages.
        kinds = ("labels", "choices") if language == STATA else SUMMARY_KINDS
        counts = {kind: [0, 0, 0] for kind in kinds}
        for e in entries(model, language):
            if _kind(e) not in counts:
                continue
            c = counts[_kind(e)]
            missing = e.current.strip() in ("", PYXFORM_FILLER)
            c[1 if missing else 0] += 1
            c[2] += (e.sheet, e.key, e.column) in stale
        out.append(LanguageSummary(str(model.path), language, language in draft,
                                   {k: (v[0], v[1], v[2]) for k, v in counts.items()}))
    return out


def draft_languages(model: FormModel, drafts: Sequence[str]) -> list[str]:
    """The workbook's languages ``drafts`` names, and those its settings mark as drafts."""
    return model.languages_named([*drafts, *model.draft_languages])


def _as_draft(model: FormModel, findings: list[Finding], drafts: Sequence[str],
              fielded: Collection[str] | None = None) -> list[Finding]:
    """Missing texts in a draft language, or in one no country fields (``fielded``: the codes
    of the languages the study's countries interview and release in), become information; a
    draft naming no language of the workbook is reported."""
    languages = draft_languages(model, drafts)
    if fielded is not None:
        used = set(model.languages_named(fielded))
        languages += [lang for lang in model.languages
                      if lang != model.default_language and lang not in used]
    out = list(findings)
    for d in drafts:
        if not model.languages_named([d]):
            out.append(_finding(model, "draft-language-unknown",
                                f"--draft '{d}' is not a language of the workbook "
                                f"({', '.join(model.languages)})", sheet=None))
    columns = {f"{base}::{lang}" for lang in languages
               for base in ("label", "hint", "constraint_message", "required_message")}
    return [replace(f, severity=INFO) if f.rule in DRAFT_RULES and f.column in columns else f
            for f in out]


@check
def expression_syntax(model: FormModel) -> Iterator[Finding]:
    for item, column, error in expression_errors(model):
        yield _finding(model, "expression-syntax", str(error), row=item.row, column=column)


# -- skip logic: conditions that silently hide a question or accept no answer ------------------

#: Columns evaluated when a question is reached, when a value asked later is still empty.
ORDER_COLUMNS = ("relevant", "constraint", "choice_filter")
_EFFECT = {"relevant": "never asked", "constraint": "checked against an empty value",
           "choice_filter": "offered choices filtered on an empty value"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}


def _tree(expression: str) -> Node | None:
    """The parsed expression; None when empty or unparsable (expression-syntax reports it)."""
    if not expression.strip():
        return None
    try:
        return parse(expression)
    except ExpressionError:
        return None


def _number(node: Node) -> float | None:
    if isinstance(node, Negate):
        inner = _number(node.operand)
        return None if inner is None else -inner
    return node.value if isinstance(node, Number) else None


def _code(node: Node) -> str | None:
    """The choice name a literal stands for (``3``, ``'3'`` and ``3.0`` are ``'3'``); None for
    anything else and for ``''`` (a test for an empty answer, which is fine)."""
    if isinstance(node, String):
        return node.value.strip() or None
    value = _number(node)
    if value is None:
        return None
    return str(int(value)) if value.is_integer() else str(value)


def _inputs_behind(model: FormModel) -> Callable[[str], dict[str, tuple[str, ...]]]:
    """name → the input questions its value comes from, each with the calculations between.
    Collect recomputes calculations whenever a value changes, so where a calculation stands
    does not matter, only the questions behind it."""
    cache: dict[str, dict[str, tuple[str, ...]]] = {}

    def inputs(name: str) -> dict[str, tuple[str, ...]]:
        if name in cache:
            return cache[name]
        cache[name] = {}
        item = model.by_name.get(name)
        if item is not None and item.is_input:
            cache[name] = {name: ()}
        elif item is not None and item.type == "calculate":
            tree = _tree(item.calculation)
            found: dict[str, tuple[str, ...]] = {}
            for ref in references(tree) if tree is not None else []:
                for source, via in inputs(ref).items():
                    found.setdefault(source, (name, *via))
            cache[name] = found
        return cache[name]

    return inputs


def _in_scope(item: Item, target: Item) -> bool:
    """Whether ``target`` has one value where ``item`` is evaluated: at the root, or in the
    same repeat instance. A field of another repeat is read by position (indexed-repeat,
    count, sum), not in form order."""
    return target.repeat is None or target.repeat == item.repeat or target.repeat in item.path


@check
def relevant_later(model: FormModel) -> Iterator[Finding]:
    inputs = _inputs_behind(model)
    position = {id(i): n for n, i in enumerate(model.items)}
    for item in model.items:
        for column in ORDER_COLUMNS:
            tree = _tree(item.get(column))
            if tree is None:
                continue
            later: dict[str, str] = {}
            for ref in references(tree):
                for source, via in inputs(ref).items():
                    target = model.by_name[source]
                    if position[id(target)] > position[id(item)] and _in_scope(item, target):
                        how = f" (through {' → '.join(via)})" if via else ""
                        later.setdefault(source, f"'{source}' (row {target.row}){how}")
            if later:
                yield _finding(model, "relevant-later",
                               f"{column} of '{item.name}' uses {', '.join(later.values())}, "
                               f"asked later: empty here, so '{item.name}' is "
                               f"{_EFFECT[column]}", row=item.row, column=column)


def _compared_codes(tree: Node, current: str) -> Iterator[tuple[str, str, str]]:
    """(operator or 'selected', field name, code) for each comparison of a field with a code;
    ``.`` is the field ``current``."""
    for op, field, literal in comparisons(tree):
        name = field.name if isinstance(field, Ref) else (
            current if isinstance(field, Current) else None)
        code = _code(literal)
        if name and code is not None:
            yield op, name, code


def _code_problems(model: FormModel, current: str, tree: Node) -> tuple[list[str], list[str]]:
    """(select_multiple compared with =/!=, codes not in the list) in one expression;
    ``current`` is the field ``.`` stands for."""
    equals: list[str] = []
    missing: list[str] = []
    for op, name, code in _compared_codes(tree, current):
        target = model.by_name.get(name)
        if target is None or not (target.is_select_one or target.is_select_multiple):
            continue
        if target.is_select_multiple and op != "selected":
            equals.append(f"${{{name}}} {op} '{code}' (write selected(${{{name}}}, '{code}'))")
            continue
        lst = model.choices_for(target)
        codes = {c.strip() for c in lst.codes()} if lst is not None else None
        if codes is not None and code not in codes and not (target.or_other
                                                            and code == "other"):
            missing.append(f"{code} for '{name}' (list '{lst.name}' has "  # type: ignore[union-attr]
                           f"{', '.join(sorted(codes, key=_code_order))})")
    return equals, missing


def _code_order(code: str) -> tuple[int, float | str]:
    try:
        return 0, float(code)
    except ValueError:
        return 1, code


@check
def select_codes(model: FormModel) -> Iterator[Finding]:
    for item in model.items:
        for column, text in item.expressions().items():
            tree = _tree(text)
            if tree is None:
                continue
            equals, missing = _code_problems(model, item.name, tree)
            if equals:
                yield _finding(model, "select-multiple-equals",
                               f"{column} of '{item.name}' compares a select_multiple with a "
                               f"code: {'; '.join(equals)}", row=item.row, column=column)
            if missing:
                yield _finding(model, "code-not-in-list",
                               f"{column} of '{item.name}' uses code {'; '.join(missing)}",
                               row=item.row, column=column)


def expression_code_problems(model: FormModel, expression: str) -> list[str]:
    """What rules ``select-multiple-equals`` and ``code-not-in-list`` find in an expression
    over ``model``'s fields written outside the workbook (an indicator, a domain)."""
    tree = _tree(expression)
    if tree is None:
        return []
    equals, missing = _code_problems(model, "", tree)
    return ([f"compares a select_multiple with a code: {e}" for e in equals]
            + [f"uses code {m}" for m in missing])


def _bound(part: Node) -> tuple[str, float] | None:
    """``. op number`` (either way round) as (op, number); None for anything else."""
    if not isinstance(part, BinaryOp) or part.op not in _FLIP:
        return None
    if isinstance(part.left, Current) and _number(part.right) is not None:
        return part.op, _number(part.right)  # type: ignore[return-value]
    if isinstance(part.right, Current) and _number(part.left) is not None:
        return _FLIP[part.op], _number(part.left)  # type: ignore[return-value]
    return None


def _satisfiable(tree: Node) -> bool:
    """False when the numeric bounds the constraint's ``and`` parts put on ``.`` exclude every
    value; anything it cannot read counts as satisfiable."""
    low, high = (-float("inf"), False), (float("inf"), False)  # (value, strict)
    for part in conjuncts(tree):
        bound = _bound(part)
        if bound is None:
            continue
        op, value = bound
        if op in (">", ">=", "="):
            low = max(low, (value, op == ">"))
        if op in ("<", "<=", "="):
            high = min(high, (value, op == "<"), key=lambda b: (b[0], not b[1]))
    return low[0] < high[0] or (low[0] == high[0] and not (low[1] or high[1]))


@check
def impossible_constraints(model: FormModel) -> Iterator[Finding]:
    for item in model.items:
        tree = _tree(item.constraint)
        if tree is not None and not _satisfiable(tree):
            yield _finding(model, "constraint-impossible",
                           f"no value satisfies the constraint of '{item.name}' "
                           f"({item.constraint}): every answer is rejected",
                           row=item.row, column="constraint")


# -- reachability: questions no simulated interview shows -------------------------------------

#: The simulator's answer to "in how many of ``n`` interviews was each item relevant":
#: (n, item name → interviews). Given by the caller (the CLI wires the fieldwork simulator).
Reach = Callable[[FormModel], tuple[int, Mapping[str, int]]]


def unreachable(model: FormModel, n: int, reached: Mapping[str, int]) -> Iterator[Finding]:
    """Questions, notes and groups relevant in none of ``n`` simulated interviews; a group
    is reported once, not again for what it holds. An item the simulator did not count (its
    relevance could not be evaluated) is not reported."""
    silent: set[str] = set()
    for item in model.items:
        shown = item.is_input or item.type == "note" or item.is_group
        if not shown or reached.get(item.name, 1) > 0 or silent & set(item.path):
            continue
        silent.add(item.name)
        what = item.type.replace("begin_", "")
        inside = (f" (holding {sum(1 for i in model.items if item.name in i.path)} rows)"
                  if item.is_group else "")
        yield _finding(model, "unreachable",
                       f"{what} '{item.name}'{inside} is relevant in none of {n} simulated "
                       "interviews, nor when answers are steered towards it: check its "
                       "relevance and those of its groups "
                       f"({' and '.join(model.relevance(item)) or 'none'})",
                       row=item.row, column="relevant")


def _reachability(model: FormModel, reach: Reach) -> list[Finding]:
    try:
        n, reached = reach(model)
    except (DhsurveyError, ValueError, KeyError, TypeError, IndexError) as exc:
        return [_finding(model, "simulation-failed", f"reachability not checked: {exc}",
                         sheet=None)]
    return list(unreachable(model, n, reached))


# -- running -----------------------------------------------------------------------------------


def _from_error(path: Path, exc: FormError) -> Finding:
    rule = exc.code if exc.code in RULES else "form"
    if exc.code == "odk-validate":
        rule = "odk-validate"
    return Finding(str(exc.context.get("file", path)), exc.context.get("sheet"),
                   exc.context.get("row"), exc.context.get("column"), rule, ERROR,
                   f"[{exc.code}] {exc.message}")


def lint_form(path: str | Path, *, compile: bool = True, validate: bool = True,
              public_key: str | None = None, reach: Reach | None = None,
              drafts: Sequence[str] = (),
              fielded: Collection[str] | None = None) -> list[Finding]:
    """All findings for one workbook, sorted by sheet and row.

    ``compile`` runs pyxform; ``validate`` also runs ODK Validate (about 2 s, needs Java).
    ``public_key`` is the key ``build`` will inject, which satisfies the encryption rule.
    ``reach`` simulates interviews to find questions never shown (rule ``unreachable``);
    ``drafts`` are languages still being translated (with those the workbook's
    ``draft_languages`` setting names) and ``fielded`` the codes of the languages the
    countries interview and release in (None: all): missing texts in any other language are
    information, not errors.
    """
    path = Path(path)
    try:
        model = load_form(path, check_expressions=False)
    except FormError as exc:
        return [_from_error(path, exc)]
    if public_key:
        model.settings["public_key"] = public_key
    findings = [f for fn in CHECKS for f in fn(model)]
    has_syntax_errors = any(f.rule == "expression-syntax" for f in findings)
    if reach is not None and not has_syntax_errors:
        findings += _reachability(model, reach)
    findings = _as_draft(model, findings, drafts, fielded)
    if compile:
        from dhsurvey.forms.compile import odk_validate, to_xform

        try:
            compiled = to_xform(model, public_key=public_key)
            findings += [_finding(model, "pyxform-warning", w, sheet=None)
                         for w in compiled.warnings]
            if validate and not has_syntax_errors:
                import tempfile

                with tempfile.TemporaryDirectory(prefix="dhsurvey-lint-") as tmp:
                    odk_validate(compiled, Path(tmp))
        except FormError as exc:
            findings.append(_from_error(path, exc))
    order = {"settings": 0, "survey": 1, "choices": 2, None: 3}
    return _one_per_cell(sorted(set(findings), key=lambda f: (
        f.file, order.get(f.sheet, 4), f.row or 0, f.rule, f.column or "", f.message)))


def _one_per_cell(findings: list[Finding]) -> list[Finding]:
    """Each (file, sheet, row, column, rule) once, and no finding a more specific rule on the
    same cell already makes (see SUBSUMED)."""
    cells = {(f.file, f.sheet, f.row, f.column, f.rule) for f in findings}
    seen: set[tuple[str, str | None, int | None, str | None, str]] = set()
    kept: list[Finding] = []
    for f in findings:
        key = (f.file, f.sheet, f.row, f.column, f.rule)
        covered = any((f.file, f.sheet, f.row, f.column, rule) in cells
                      for rule in SUBSUMED.get(f.rule, ()))
        if key not in seen and not covered:
            seen.add(key)
            kept.append(f)
    return kept


def lint_paths(paths: list[str | Path], **options: object) -> list[Finding]:
    """Lint workbooks and folders of workbooks."""
    from dhsurvey.forms.compile import instrument_paths

    findings: list[Finding] = []
    for p in paths:
        try:
            files = instrument_paths(p)
        except FormError as exc:
            findings.append(_from_error(Path(p), exc))
            continue
        for f in files:
            findings += lint_form(f, **options)  # type: ignore[arg-type]
    return findings

