"""Free-text scrubbing with presidio on a blank spaCy pipeline (offline, regex recognisers)."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise import text
from dhsurvey.anonymise.text import scrub
from dhsurvey.errors import DhsurveyError


def test_works_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("scrub tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    text._engines.cache_clear()  # build the engines under the ban
    out = scrub(pd.Series(["mail ann@school.ac.ke now"]))
    assert out.iloc[0] == "mail <EMAIL_ADDRESS> now"


def test_identifiers_are_replaced_and_words_kept() -> None:
    texts = pd.Series(
        [
            "He wrote to jo.bloggs@example.com and asked for photos",
            "Call me on +44 20 7946 0958 or 0712 345 678 after school",
            "The link was https://www.example.org/chat?id=7 and also badsite.co.ke",
            "Household HH-0123-04 and hh-77, record 3f2b8c1e-9a4d-4e2f-8b1c-7d6e5f4a3b2c",
            "It happened on 12/03/2024 from 10.0.0.1",
            "I was 12 years old and my friend sent me a message in 2023",
        ],
        index=list("abcdef"),
    )
    out = scrub(texts)
    assert out.index.tolist() == list("abcdef")
    assert out["a"] == "He wrote to <EMAIL_ADDRESS> and asked for photos"
    assert out["b"] == "Call me on <PHONE_NUMBER> or <PHONE_NUMBER> after school"
    assert out["c"] == "The link was <URL> and also <URL>"
    assert out["d"] == "Household <HOUSEHOLD_ID> and <HOUSEHOLD_ID>, record <UUID>"
    assert out["e"] == "It happened on <DATE_TIME> from <IP_ADDRESS>"
    # Ordinary words, ages and a bare year are kept.
    assert out["f"] == texts["f"]


def test_survey_country_phone_formats() -> None:
    out = scrub(pd.Series(["namba yangu ni 0754 123 456", "piga +256 772 123456 sasa"]))
    assert out.tolist() == ["namba yangu ni <PHONE_NUMBER>", "piga <PHONE_NUMBER> sasa"]


def test_names_are_not_found_with_a_blank_pipeline() -> None:
    # Documented limitation: no NER model offline, so names pass through.
    assert scrub(pd.Series(["John Kamau told me"])).iloc[0] == "John Kamau told me"


def test_extra_patterns_and_missing_values() -> None:
    texts = pd.Series(["child CH-0042 said hello", None, np.nan, "nothing here"])
    out = scrub(texts, extra_patterns={"CHILD_ID": r"\bCH-\d{4}\b"})
    assert out.iloc[0] == "child <CHILD_ID> said hello"
    assert out.iloc[1] is None and pd.isna(out.iloc[2])
    assert out.iloc[3] == "nothing here"


def test_bad_extra_pattern() -> None:
    with pytest.raises(DhsurveyError) as err:
        scrub(pd.Series(["x"]), extra_patterns={"CHILD_ID": "(unclosed"})
    assert err.value.code == "text-bad-pattern"
    with pytest.raises(DhsurveyError):
        scrub(pd.Series(["x"]), extra_patterns={"child id": "x"})
