"""Scrub direct identifiers from free-text answers with presidio, fully offline.

Why presidio with a *blank* spaCy pipeline: no spaCy model package can be installed here (they
are not on the package registry), and nothing may be downloaded at run time. presidio only
needs the pipeline for tokens; its pattern recognisers work on the raw text. So the NLP engine
is built from ``spacy.blank("en")`` and only regex/rule recognisers are registered: e-mail,
phone (the ``phonenumbers`` library, for the survey countries' formats), URL, IP address,
dates, UUIDs and household codes, plus any ``extra_patterns``.
Each finding is replaced by ``<TYPE>`` (``<EMAIL_ADDRESS>``, ``<PHONE_NUMBER>``, ...).

What a household code looks like is read from the household form (:func:`code_pattern`):
the text its ``instance_name`` starts with and the parts that follow (``HH-404-12-7`` for
``concat('HH-', ${country}, '-', ${cluster}, '-', ${hh_number})``), so a change of the
instrument changes what is scrubbed.

**Names, places and schools are not found**: that needs a statistical NER model. Scrubbed text
is therefore still not safe to release on its own; children's open answers about abuse are
dropped or hand-reviewed, never released automatically (REFERENCE.md). Use ``scrub`` to make
that review faster and to clean low-risk text fields, not as the last line of defence.

presidio's e-mail recogniser validates the domain with ``tldextract``, which by default
fetches the public-suffix list from the internet; here it is replaced by an extractor that
uses the snapshot bundled with ``tldextract`` and never touches the network.

Errors are :class:`~dhsurvey.errors.DhsurveyError` with code ``text-bad-pattern``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import pandas as pd

from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.expressions import Call, ExpressionError, Node, Ref, String, parse
from dhsurvey.forms.facts import Models, StudyFacts, study_facts
from dhsurvey.forms.model import FormModel

#: Regions whose national phone formats are recognised (survey countries first).
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("KE", "TZ", "UG", "GB", "US")

#: Custom identifiers, entity name -> regex (case-insensitive, as presidio compiles them).
CUSTOM_PATTERNS: dict[str, str] = {
    # Any 8-4-4-4-12 hex string (ODK instance IDs included), whatever its version nibble.
    "UUID": r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
}
#: The entity of a household code (its pattern: :func:`household_code_pattern`).
HOUSEHOLD_ENTITY = "HOUSEHOLD_ID"

_ENTITY_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def _numeric(model: FormModel, name: str) -> bool:
    """Whether the field's answers are whole numbers (an integer, or choices coded 1, 2...)."""
    item = model.by_name.get(name)
    if item is None:
        return False
    choices = model.choices_for(item)
    if item.is_select and choices is not None:
        return bool(choices.codes()) and all(code.isdigit() for code in choices.codes())
    return item.type == "integer"


def code_pattern(model: FormModel) -> str | None:
    r"""The regex of the form's interview ID as people write it in free text, from its
    ``instance_name``: the text it starts with, then one or more parts separated by the text
    between its fields. ``concat('HH-', ${country}, '-', ${cluster}, '-', ${hh_number})``
    gives ``\bHH\-\d+(?:\-\d+)*\b``: any number of parts, so a code written short
    (``hh-77``, ``HH-0123-04``) is found too (presidio matches without regard to case).

    Parts are numbers when every field is (integers, choices coded by numbers), else runs of
    letters and digits. None when the instance name does not start with text that has a
    letter: a bare number is no code.
    """
    try:
        root = parse(model.settings.get("instance_name", ""))
    except ExpressionError:
        return None
    args = root.args if isinstance(root, Call) and root.name == "concat" else (root,)
    prefix = ""
    parts: list[Node] = []  # the fields (and any other expression) after the prefix
    after: list[str] = []  # the text after each part
    for arg in args:
        if isinstance(arg, String):
            if parts:
                after[-1] += arg.value
            else:
                prefix += arg.value
        else:
            parts.append(arg)
            after.append("")
    if not parts or not re.search(r"[^\W\d_]", prefix):
        return None
    numbers = all(isinstance(a, Ref) and _numeric(model, a.name) for a in parts)
    part = r"\d+" if numbers else r"[^\W_]+"
    # The text after the last part ends the ID; the others separate its parts.
    separators = sorted({re.escape(text) for text in after[:-1] if text})
    lead = r"\b" if re.match(r"\w", prefix) else ""
    if not separators:
        return rf"{lead}{re.escape(prefix)}{part}\b"
    sep = separators[0] if len(separators) == 1 else f"(?:{'|'.join(separators)})"
    return rf"{lead}{re.escape(prefix)}{part}(?:{sep}{part})*\b"


def household_code_pattern(models: Models | StudyFacts | None = None) -> str | None:
    """:func:`code_pattern` of the study's household form (the one recording the final
    disposition): the one among ``models``, else that of the study's instruments (a form
    released on its own still has household codes in its free text); None without one."""
    facts = study_facts(models)
    if facts.household_form is None and models is not None:
        facts = study_facts()
    form = facts.household_form
    return code_pattern(facts.models[form]) if form is not None else None


@lru_cache(maxsize=8)
def _engines(patterns: tuple[tuple[str, str], ...], phone_regions: tuple[str, ...]) -> Any:
    """(analyzer, anonymizer) for one configuration, built once: imports take seconds."""
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        DateRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine

    # presidio warns about every unmapped NER label and missing model; none apply here.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        """presidio's e-mail recogniser, validating domains against the bundled suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            return offline_tld(pattern_text).fqdn != ""

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        """A spaCy engine on ``spacy.blank``: tokens only, no model to load or download."""

        def load(self) -> None:
            # presidio sets ``self.nlp = None`` in __init__ and never annotates it, so its
            # inferred type is None although its own load() fills it with a dict like this.
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    nlp_engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    nlp_engine.load()
    recognizers = [
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=phone_regions),
        UrlRecognizer(),
        IpRecognizer(),
        DateRecognizer(),
    ]
    for entity, regex in patterns:
        recognizers.append(
            PatternRecognizer(
                supported_entity=entity,
                patterns=[Pattern(entity.lower(), regex, 0.9)],
                name=f"{entity.title()}Recognizer",
            )
        )
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    analyzer = AnalyzerEngine(
        nlp_engine=nlp_engine, registry=registry, supported_languages=["en"]
    )
    return analyzer, AnonymizerEngine()


def _check_extra(extra_patterns: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    items = []
    for entity, regex in (extra_patterns or {}).items():
        if not _ENTITY_NAME.fullmatch(entity):
            raise DhsurveyError(
                f"entity names are upper case letters, digits and _: {entity!r}",
                code="text-bad-pattern",
            )
        try:
            re.compile(regex)
        except re.error as exc:
            raise DhsurveyError(
                f"pattern for {entity} is not a valid regex: {exc}", code="text-bad-pattern"
            ) from None
        items.append((entity, regex))
    return tuple(items)


def scrub(
    texts: pd.Series,
    *,
    models: Models | StudyFacts | None = None,
    extra_patterns: Mapping[str, str] | None = None,
    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
) -> pd.Series:
    """Replace e-mails, phones, URLs, IPs, dates, UUIDs and household IDs with ``<TYPE>``.

    ``models``: the study's forms, whose household form says what a household code looks
    like (:func:`household_code_pattern`; default: the study's instruments).
    ``extra_patterns`` maps further entity names (``"CHILD_ID"``) to regexes, matched case
    insensitively. Missing values stay missing; other values are converted to ``str``.
    Names are **not** detected (see the module docstring).
    """
    from presidio_anonymizer.entities import OperatorConfig

    household = household_code_pattern(models)
    patterns = (*([(HOUSEHOLD_ENTITY, household)] if household else []),
                *CUSTOM_PATTERNS.items(), *_check_extra(extra_patterns))
    analyzer, anonymizer = _engines(patterns, tuple(phone_regions))
    cache: dict[str, str] = {}

    def one(value: Any) -> Any:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return value
        text = str(value)
        if text not in cache:
            findings = analyzer.analyze(text=text, language="en")
            operators = {
                f.entity_type: OperatorConfig("replace", {"new_value": f"<{f.entity_type}>"})
                for f in findings
            }
            cache[text] = anonymizer.anonymize(
                text=text, analyzer_results=findings, operators=operators
            ).text
        return cache[text]

    return texts.map(one)
