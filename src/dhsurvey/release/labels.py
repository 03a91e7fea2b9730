"""Variable labels, value labels and missing-value codes for release files, from the form model.

Stata and SPSS users see a release through its labels, so they come from the same XLSForm the
interviews ran on rather than from a second hand-kept list. The pseudo-language ``stata`` is the
short (≤ 80 characters) label column meant for these files; other languages give translated
releases. A label missing in the chosen language falls back to English, so no variable is left
unlabelled, and only a label that is still too long is cut (with an ellipsis).

Reserved codes (docs/instruments.md): 98 don't know and 99 prefer not to say / refused are
answers that analysis treats as missing (Stata ``.d``/``.r``, SPSS user-missing); 96 "other" is a
real answer and stays a value.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.config import CountryConfig
from dhsurvey.forms.model import STATA, Choice, ChoiceList, FormModel, Item, language_code
from dhsurvey.validate.types import dtype_for
from dhsurvey.weight.study import REPLICATE

#: Stata's limit on variable (and, here, value) labels; SPSS allows more.
LABEL_LIMIT = 80
#: Stata's limit on variable names (SPSS allows 64 bytes; the stricter one wins).
NAME_LIMIT = 32
OTHER, DONT_KNOW, REFUSED = 96, 98, 99
#: Reserved codes that analysis treats as missing, with their Stata extended-missing letter.
MISSING_TAGS: dict[int, str] = {DONT_KNOW: "d", REFUSED: "r"}
ELLIPSIS = "…"

#: Labels for the columns every canonical table carries (ingest.canonical.META, PARENT_KEY).
META_LABELS = {
    "KEY": "Submission key (instance ID)",
    "PARENT_KEY": "Key of the parent record",
    "form_id": "Form ID",
    "form_version": "Form version",
    "submission_time": "Time the server received the submission (UTC)",
    "submitter": "Server account that submitted",
    "review_state": "Review state on the server",
    "deprecated_id": "Instance ID of the submission this one edits",
    "source_format": "Export route the record was read from",
    "source_file": "File the record was read from",
    # Columns the release adds: identifiers, design variables and weights.
    "record_id": "Record ID (random, this release only)",
    "hh_id": "Household ID (random, this release only; links the household's records)",
    "stratum": "Variance stratum (region x urban/rural, code scrambled)",
    "psu": "Primary sampling unit (cluster, code scrambled)",
    "weight": "Survey weight (expands to the population)",
    "weight_norm": "Normalised survey weight (mean 1 within the country)",
}

# Words Stata or SPSS refuse as variable names (readstat enforces them; we name the column).
_STATA_RESERVED = {
    "_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int", "long", "_n",
    "_N", "_pi", "_pred", "_rc", "_se", "_skip", "strL", "using", "with",
}
_SPSS_RESERVED = {"all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to",
                  "with"}
_NAME_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TAG = re.compile(r"<[^>]+>")
_REF = re.compile(r"\$\{([^}]*)\}")


class ReleaseError(DhsurveyError):
    """A table cannot be written as a release file (bad names, unknown language, …)."""

    code = "release"


# -- languages -----------------------------------------------------------------------------------


def resolve_language(model: FormModel, language: str | None) -> str:
    """The model's spelling of ``language`` ('stata', a full name or its code; None: default)."""
    if language is None:
        return model.default_language
    if language.lower() == STATA:
        return STATA
    for lang in model.languages:
        if language in (lang, language_code(lang)) or language.lower() == lang.lower():
            return lang
    raise ReleaseError(
        f"language {language!r} is not in the form (languages: "
        f"{', '.join([*model.languages, STATA])})",
        code="release-language", form=model.form_id,
    )


def english(model: FormModel) -> str:
    """The English label language (the fallback for every other one)."""
    for lang in model.languages:
        if language_code(lang).lower() == "en" or lang.lower().startswith("english"):
            return lang
    return model.default_language


def clean_label(text: str) -> str:
    """One line of plain text: HTML tags dropped, ``${name}`` shown as ``[name]``."""
    text = _REF.sub(r"[\1]", _TAG.sub("", text)).replace("**", "")
    return " ".join(text.split())


def truncate(text: str, limit: int = LABEL_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def truncate_bytes(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes on a character boundary (SPSS counts bytes)."""
    if len(text.encode("utf-8")) <= limit:
        return text
    budget = limit - len(ELLIPSIS.encode("utf-8"))
    cut = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip()
    return cut + ELLIPSIS


def pick_label(labels: dict[str, str], language: str, model: FormModel) -> str:
    """The label in ``language``, else English, else the default language, else any."""
    for lang in (language, english(model), model.default_language, *labels):
        text = clean_label(labels.get(lang, ""))
        if text:
            return text
    return ""


# -- labels --------------------------------------------------------------------------------------


def variable_labels(model: FormModel, language: str | None = None) -> dict[str, str]:
    """Label (≤ 80 characters) of every data field, in ``language`` ('stata': short labels)."""
    lang = resolve_language(model, language)
    return {item.name: truncate(pick_label(item.labels, lang, model)) for item in model.fields}


def is_coded(item: Item, model: FormModel) -> bool:
    """Whether a field holds integer choice codes (and so takes value labels)."""
    return item.is_select_one and dtype_for(item, model) == "Int64"


def choice_labels(model: FormModel, item: Item, language: str | None = None,
                  limit: int | None = LABEL_LIMIT) -> dict[str, str]:
    """Choice name → label for any select field, in list order ({} without a choice list)."""
    lang = resolve_language(model, language)
    choices = model.choices_for(item)
    if choices is None:
        return {}
    out = {}
    for choice in choices.choices:
        text = pick_label(choice.labels, lang, model)
        out[choice.name] = truncate(text, limit) if limit else text
    return out


def value_labels(model: FormModel, language: str | None = None) -> dict[str, dict[int, str]]:
    """Code → label (≤ 80 characters) for every integer-coded select_one, reserved codes too."""
    return {
        item.name: {int(code): text for code, text in choice_labels(model, item, language).items()}
        for item in model.fields if is_coded(item, model)
    }


def missing_codes(model: FormModel) -> dict[str, dict[int, str]]:
    """Per coded field, the reserved codes its list offers that count as missing.

    98 (don't know) → ``'d'`` and 99 (refused / prefer not to say) → ``'r'``: the Stata
    extended-missing letters; SPSS declares the same codes user-missing. 96 (other) is an answer.
    """
    out: dict[str, dict[int, str]] = {}
    for item in model.fields:
        if not is_coded(item, model):
            continue
        choices = model.choices_for(item)
        assert choices is not None  # is_coded implies an integer-coded list
        codes = {int(c) for c in choices.codes()}
        tags = {code: tag for code, tag in MISSING_TAGS.items() if code in codes}
        if tags:
            out[item.name] = tags
    return out


# -- select_multiple dummies ---------------------------------------------------------------------


def dummy_name(name: str, code: str) -> str:
    """``devices`` + ``96`` → ``devices_96``, the field name cut so the result fits 32 chars."""
    suffix = f"_{code}"
    return name[: NAME_LIMIT - len(suffix)] + suffix


def dummy_columns(model: FormModel) -> dict[str, tuple[Item, Choice]]:
    """Every possible dummy column → (select_multiple field, choice), in form order.

    Derived from the model alone, so writers and the codebook recognise dummy columns in any
    table without extra metadata travelling with the DataFrame.
    """
    taken = {item.name for item in model.fields}
    out: dict[str, tuple[Item, Choice]] = {}
    for item in model.fields:
        choices = model.choices_for(item)
        if not item.is_select_multiple or choices is None:
            continue
        for choice in choices.choices:
            column = dummy_name(item.name, choice.name)
            if column in taken or column in out:
                raise ReleaseError(
                    f"dummy column {column!r} for {item.name!r} = {choice.name!r} clashes with "
                    "another column", code="release-name", form=model.form_id, field=item.name,
                )
            out[column] = (item, choice)
    return out


def dummy_labels(model: FormModel, language: str | None = None) -> dict[str, str]:
    """``name: choice label`` (≤ 80 characters) for every dummy column."""
    lang = resolve_language(model, language)
    return {
        column: truncate(f"{item.name}: {pick_label(choice.labels, lang, model)}")
        for column, (item, choice) in dummy_columns(model).items()
    }


def select_multiple_dummies(df: pd.DataFrame, model: FormModel, *,
                            drop_original: bool = False) -> pd.DataFrame:
    """Add one 0/1 column per choice after each select_multiple column (``name_code``).

    Analysts tabulate dummies far more easily than space-separated code strings. A dummy is 1
    when the choice was selected, 0 when the question was answered without it, and missing when
    the question was not answered (not asked), so its mean is a share of those asked.
    """
    by_field: dict[str, list[tuple[str, str]]] = {}
    for column, (item, choice) in dummy_columns(model).items():
        by_field.setdefault(item.name, []).append((column, choice.name))
    parts: list[pd.Series] = []
    for column in df.columns:
        if column not in by_field:
            parts.append(df[column])
            continue
        if not drop_original:
            parts.append(df[column])
        text = df[column].astype("string")
        unanswered = (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool)
        # Each answer's codes are looked at once, not once per choice.
        at: dict[str, list[int]] = {}
        for j, (_, code) in enumerate(by_field[column]):
            at.setdefault(code, []).append(j)
        flags = np.zeros((len(text), len(by_field[column])), dtype=np.int64)
        for i, codes in enumerate(text.fillna("").str.split().tolist()):
            for code in codes:
                flags[i, at.get(code, [])] = 1
        for j, (dummy, _) in enumerate(by_field[column]):  # NA where unanswered
            parts.append(pd.Series(pd.arrays.IntegerArray(flags[:, j].copy(),
                                                          unanswered.copy()),
                                   index=df.index, name=dummy))
    return pd.concat(parts, axis=1) if parts else df.copy()


# -- names and labels of a table's columns -------------------------------------------------------


def field_for(model: FormModel, column: str) -> Item | None:
    """The form field behind a release column (a dummy's select_multiple), None for meta."""
    if column in model.by_name and model[column].holds_data:
        return model[column]
    dummy = dummy_columns(model).get(column)
    return dummy[0] if dummy else None


def fields_for(model: FormModel, columns: Iterable[str]) -> dict[str, Item | None]:
    """:func:`field_for` of every column, the model's dummy columns listed once (when a
    column is not a field)."""
    dummies: dict[str, tuple[Item, Choice]] | None = None
    out: dict[str, Item | None] = {}
    for column in columns:
        if column in model.by_name and model[column].holds_data:
            out[column] = model[column]
            continue
        if dummies is None:
            dummies = dummy_columns(model)
        dummy = dummies.get(column)
        out[column] = dummy[0] if dummy else None
    return out


def column_labels(columns: Iterable[str], model: FormModel,
                  language: str | None = None) -> dict[str, str]:
    """Label of each column of a release table: form fields, dummies and canonical meta."""
    known = {**META_LABELS, **dummy_labels(model, language), **variable_labels(model, language)}
    out = {}
    for column in columns:
        replicate = REPLICATE.match(column)
        out[column] = known.get(column, f"Replicate weight {int(replicate[1])} (JKn)"
                                if replicate else "")
    return out


def file_labels(columns: Iterable[str], model: FormModel,
                language: str | None = None) -> dict[str, str]:
    """Variable labels of a Stata or SPSS file: a field's ``label::stata`` (the short English
    label its workbook writes for these files) where it has one, else its label in
    ``language`` (:func:`column_labels`). A release in another language than English keeps
    its own labels (the stata column is English). Value labels follow the language."""
    out = column_labels(columns, model, language)
    if resolve_language(model, language) not in (STATA, english(model)):
        return out
    for column in out:
        if column in model.by_name:
            short = clean_label(model[column].labels.get(STATA, ""))
            if short:
                out[column] = truncate(short)
    return out


#: A choice filter that keeps a country's own choices: ``<column> = ${country}``.
_COUNTRY_FILTER = re.compile(r"^\s*(\w+)\s*=\s*\$\{country\}\s*$")


def _with_lists(model: FormModel, lists: Mapping[str, list[Choice]]) -> FormModel:
    """A new model whose choice lists ``lists`` (by their key in the model) hold these
    choices; every other list, item and setting is shared with ``model``, which is not
    changed. Cheaper than a deep copy of the whole model, and the new model's cached lookups
    start empty."""
    def replaced(of: dict[str, ChoiceList]) -> dict[str, ChoiceList]:
        return {name: (ChoiceList(lst.name, list(lists[name]), lst.row) if name in lists
                       else lst) for name, lst in of.items()}
    return dataclasses.replace(model, choice_lists=replaced(model.choice_lists),
                               attached_lists=replaced(model.attached_lists))


def for_countries(models: Mapping[str, FormModel], codes: Iterable[str | int]
                  ) -> dict[str, FormModel]:
    """Copies of the models whose choice lists filtered by country (``choice_filter``
    ``country = ${country}``, as the region list) keep only the choices of the countries
    ``codes`` (ISO numeric, as the forms' ``country`` field): a country's files label its own
    regions, not every country's. The originals are not changed."""
    wanted = {str(c) for c in codes}
    out = dict(models)
    for form, model in models.items():
        lists: dict[str, list[Choice]] = {}
        for item in model.fields:
            match = _COUNTRY_FILTER.match(str(item.get("choice_filter") or ""))
            lst = model.choices_for(item) if match else None
            if match and lst is not None:
                column = match.group(1)
                name = str(item.list_name)  # the list's key in the model
                kept = lists.get(name, lst.choices)
                lists[name] = [c for c in kept if str(c.extra.get(column, "")) in wanted
                                   or column not in c.extra]
        if lists:
            out[form] = _with_lists(model, lists)
    return out


def with_zones(models: Mapping[str, FormModel], configs: Iterable[CountryConfig]
               ) -> dict[str, FormModel]:
    """Copies of the models whose ``region`` list labels the release zones of the countries
    with zones (their released files hold a zone, not a region; see
    :attr:`~dhsurvey.fieldwork.config.CountryConfig.released_regions`). The originals are
    not changed."""
    zoned = [c for c in configs if c.zones]
    out = dict(models)
    for form, model in models.items():
        item = model.by_name.get("region")
        lst = model.choices_for(item) if item is not None else None
        if not zoned or item is None or lst is None:
            continue
        dropped = {str(r.code) for c in zoned for r in c.divisions}
        choices = [ch for ch in lst.choices if ch.name not in dropped]
        release = {c.code: c.release_language for c in zoned}
        for config in zoned:
            languages = {language_code(x): x for x in (*config.languages,
                                                       config.release_language)}
            for zone in config.zones:
                labels = {release[config.code]: zone.name, STATA: f"{config.iso}: {zone.name}"}
                labels |= {languages[k]: v for k, v in zone.names.items() if k in languages}
                choices.append(Choice(lst.name, str(config.zone_code(zone.code)),
                                      labels, {"country": str(config.code)}, -1))
        out[form] = _with_lists(model, {str(item.list_name): choices})
    return out


def with_merged_codes(models: Mapping[str, FormModel],
                      merges: Mapping[str, Mapping[str, Mapping[str, Any]]]
                      ) -> dict[str, FormModel]:
    """Copies of the models whose choice lists also label the codes recoding introduced.

    ``merges[form][column] = {"levels": [...], "into": code}`` (the anonymisation report's
    ``rare_merged``). A merged code gets the merged levels' labels joined with " / " in every
    language of the list (so no translation is invented), e.g. ``995`` → "Non-governmental
    organisation (NGO) / Other"; a code merged from different levels in several columns of
    one list gets all of them. The originals are not changed.
    """
    out = dict(models)
    for form, columns in merges.items():
        if form not in models or not columns:
            continue
        model = models[form]
        lists: dict[str, list[Choice]] = {}
        for column, merge in columns.items():
            if column not in model.by_name:
                continue
            lst = model.choices_for(model[column])
            if lst is None:
                continue
            choices = lists.setdefault(str(model[column].list_name), list(lst.choices))
            code = str(merge["into"])
            levels = [c for c in choices if c.name in {str(v) for v in merge["levels"]}]
            existing = next((c for c in choices if c.name == code), None)
            if existing is not None and existing.row >= 0:
                continue  # a code the form itself defines keeps its own label
            if existing is not None:  # merged before, in another column: name all levels
                names = {c.name for c in levels} | set(existing.cells["merged"].split("\x00"))
                levels = [c for c in choices if c.name in names]
                choices.remove(existing)
            keys = dict.fromkeys(k for c in levels for k in c.labels)
            choices.append(Choice(
                list_name=lst.name, name=code, row=-1, extra={},
                labels={k: " / ".join(c.labels.get(k, c.name) for c in levels) for k in keys},
                cells={"merged": "\x00".join(c.name for c in levels)}))
        out[form] = _with_lists(model, lists) if lists else model
    return out


def check_names(columns: Iterable[str], form: str) -> None:
    """Refuse names Stata or SPSS cannot take, rather than renaming behind the analyst's back.

    A name must start with a letter, use letters, digits and ``_`` only, have ≤ 32 characters,
    not be a reserved word in either package and be unique ignoring case (SPSS ignores case).
    """
    problems = []
    seen: dict[str, str] = {}
    for name in columns:
        name = str(name)
        if len(name) > NAME_LIMIT:
            problems.append(f"{name!r} is longer than {NAME_LIMIT} characters")
        elif not _NAME_OK.match(name):
            problems.append(f"{name!r} must start with a letter and use only letters, digits, _")
        elif name in _STATA_RESERVED or name.lower() in _SPSS_RESERVED or re.fullmatch(
                r"str\d+", name):
            problems.append(f"{name!r} is a reserved word in Stata or SPSS")
        if name.lower() in seen:
            problems.append(f"{name!r} and {seen[name.lower()]!r} differ only in case")
        seen[name.lower()] = name
    if problems:
        raise ReleaseError("column names unfit for Stata/SPSS: " + "; ".join(problems),
                           code="release-name", form=form)
