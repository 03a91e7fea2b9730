"""Scrub direct identifiers from free-text answers with presidio, fully offline.

Why presidio with a *blank* spaCy pipeline: no spaCy model package can be installed here (they
are not on the package registry), and nothing may be downloaded at run time. presidio only
needs the pipeline for tokens; its pattern recognisers work on the raw text. So the NLP engine
is built from ``spacy.blank("en")`` and only regex/rule recognisers are registered: e-mail,
phone (the ``phonenumbers`` library, for the survey countries' formats), URL, IP address,
dates, UUIDs and household codes ``HH-<digits>``, plus any ``extra_patterns``.
Each finding is replaced by ``<TYPE>`` (``<EMAIL_ADDRESS>``, ``<PHONE_NUMBER>``, ...).

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

#: Regions whose national phone formats are recognised (survey countries first).
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("KE", "TZ", "UG", "GB", "US")

#: Custom identifiers, entity name -> regex (case-insensitive, as presidio compiles them).
CUSTOM_PATTERNS: dict[str, str] = {
    "HOUSEHOLD_ID": r"\bHH-\d+(?:-\d+)*\b",
    # Any 8-4-4-4-12 hex string (ODK instance IDs included), whatever its version nibble.
    "UUID": r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
}

_ENTITY_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@lru_cache(maxsize=8)
def _engines(extra: tuple[tuple[str, str], ...], phone_regions: tuple[str, ...]) -> Any:
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
            self.nlp = {"en": spacy.blank("en")}

    nlp_engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    nlp_engine.load()
    recognizers = [
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=phone_regions),
        UrlRecognizer(),
        IpRecognizer(),
        DateRecognizer(),
    ]
    for entity, regex in (*CUSTOM_PATTERNS.items(), *extra):
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
    extra_patterns: Mapping[str, str] | None = None,
    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
) -> pd.Series:
    """Replace e-mails, phones, URLs, IPs, dates, UUIDs and household IDs with ``<TYPE>``.

    ``extra_patterns`` maps further entity names (``"CHILD_ID"``) to regexes, matched case
    insensitively. Missing values stay missing; other values are converted to ``str``.
    Names are **not** detected (see the module docstring).
    """
    from presidio_anonymizer.entities import OperatorConfig

    analyzer, anonymizer = _engines(_check_extra(extra_patterns), tuple(phone_regions))
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
