"""Free-text scrubbing with presidio on a blank spaCy pipeline (offline, regex recognisers)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise import text
from dhsurvey.anonymise.text import code_pattern, household_code_pattern, scrub
from dhsurvey.errors import DhsurveyError
from dhsurvey.forms.model import FormModel, load_form


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


# ----------------------------------------------------------- household codes, from the forms

INSTRUMENTS = Path(__file__).parents[2] / "instruments"


def _household(instance_name: str) -> FormModel:
    model = load_form(INSTRUMENTS / "household.xlsx")
    return replace(model, settings={**model.settings, "instance_name": instance_name})


def test_household_codes_look_like_the_household_forms_instance_name() -> None:
    household = load_form(INSTRUMENTS / "household.xlsx")
    assert household.settings["instance_name"].startswith("concat('HH-', ${country}, '-'")
    assert code_pattern(household) == r"\bHH\-\d+(?:\-\d+)*\b"
    assert household_code_pattern() == code_pattern(household)  # the study's instruments
    # A form released on its own still finds the study's household codes.
    child = load_form(INSTRUMENTS / "child.xlsx")
    assert household_code_pattern([child]) == code_pattern(household)


def test_a_new_household_code_is_scrubbed_and_the_old_one_is_not() -> None:
    kaya = _household("concat('KAYA/', ${country}, '/', ${cluster}, '/', ${hh_number})")
    texts = pd.Series(["visit kaya/404/12/7 today", "old code HH-0123-04"])
    out = scrub(texts, models=[kaya])
    assert out.tolist() == ["visit <HOUSEHOLD_ID> today", "old code HH-0123-04"]


def test_code_patterns_of_other_instance_names() -> None:
    # Parts are numbers only when every field is; several separators are all accepted.
    mixed = _household("concat('HH-', ${country}, '/', ${cluster}, '-', ${start})")
    assert code_pattern(mixed) == r"\bHH\-[^\W_]+(?:(?:/|\-)[^\W_]+)*\b"
    assert code_pattern(_household("concat('hh', ${cluster})")) == r"\bhh\d+\b"
    # No text in front (or none with a letter): a bare number is no household code.
    for name in ("${cluster}", "concat(${cluster}, '-', ${hh_number})", "concat('-', ${cluster})",
                 ""):
        assert code_pattern(_household(name)) is None
