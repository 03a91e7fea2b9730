"""Shared quality outputs print counts and codes, never free text, identifiers or instanceIDs.

Simulated Kenyan fieldwork with every fault kind planted, the simulator's canaries (fake
names, phones, e-mails and GPS strings in direct-identifier and free-text fields) and a
child's own words in every free-text question of the child form — answered where the form
asks it, and where the skip logic hides it, so the words are also the *value* of a logic
issue. Validation, the check tables, the report and the Data Docs are written as a run
writes them; the Data Docs also get accepted tables in which one instanceID came twice (GX
would print the duplicated instanceID). Nothing of this may reach ``report.html``, the
shared check tables or the Data Docs; the restricted listings hold it.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.faults import KINDS, inject_faults
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import load_form
from dhsurvey.store import DATA_DOCS, QUALITY, REPORT
from dhsurvey.validate.disclosure import (
    LISTINGS,
    WITHHELD,
    share_checks,
    withheld_fields,
)
from dhsurvey.validate.expectations import validate_accepted
from dhsurvey.validate.quality import run_checks
from dhsurvey.validate.report import render
from dhsurvey.validate.run import validate_forms, write_quality, write_validation

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
CONFIG = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
INSTANCE_ID = re.compile(r"uuid:[0-9a-f]{8}-")


def _words(n: int) -> str:
    return f"Marker-{n:02d} a man I met online kept asking for my photos"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    sim = simulate_country(CONFIG, MODELS, seed=11, households=300)
    inject_faults(sim, MODELS, list(KINDS), np.random.default_rng(11))
    assert sim.canaries
    child = sim.forms["child"].root
    n = 0
    for item in MODELS["child"].by_pii("free_text"):
        answered = child.index[child[item.name].notna()]
        hidden = child.index[child[item.name].isna()]
        for rows in (answered[:1], hidden[:1]):  # asked, and hidden by the skip logic
            for row in rows:
                child.loc[row, item.name] = _words(n)
                n += 1
    keys = {k for f in FORMS for k in sim.forms[f].root["KEY"]}
    texts = {str(v).strip() for item in MODELS["child"].by_pii("free_text")
             for v in child[item.name].dropna() if str(v).strip()}
    result = validate_forms(sim.forms, MODELS, config=CONFIG)
    out = tmp_path_factory.mktemp("clean") / "KEN"
    write_validation(result, out)
    paths = write_quality(result, MODELS, out, config=CONFIG, expectations=True)
    accepted = {f: r.accepted for f, r in result.forms.items()}
    accepted["child"] = pd.concat([accepted["child"], accepted["child"].head(1)],
                                  ignore_index=True)  # one instanceID twice: KEY not unique
    merged = validate_accepted(accepted, MODELS, out / DATA_DOCS, name="KEN-merged")
    assert "expect_column_values_to_be_unique:KEY" in merged.forms["child"].failed
    return sim, result, out, paths, keys, texts


def _secrets(run) -> tuple[set[str], set[str], set[str]]:
    sim, *_, keys, texts = run
    return set(sim.canaries), keys, texts


def _leaks(text: str, run) -> list[str]:
    canaries, keys, texts = _secrets(run)
    found = [c for c in canaries if c in text] + [t for t in texts if t in text]
    found += INSTANCE_ID.findall(text)
    return found + [k for k in keys if k in text]


def test_the_planted_secrets_are_in_the_checks(run) -> None:
    """The scenario is real: the checks themselves hold canaries, words and instanceIDs."""
    _, result, *_ = run
    checks = run_checks({f: r.typed for f, r in result.forms.items()}, MODELS,
                        config=CONFIG, issues=result.issues())
    words = set(checks["other_specify"]["text"])
    assert {_words(0), _words(1)} <= words
    assert words & set(run[0].canaries)
    assert checks["issues"]["value"].astype(str).str.startswith("Marker-").any()
    assert checks["speeders"]["KEY"].str.startswith("uuid:").all()


def test_report_prints_no_free_text_identifier_or_instance_id(run) -> None:
    *_, out, paths, _, _ = run
    text = (out / REPORT).read_text(encoding="utf-8")
    assert paths["report"] == out / REPORT
    assert _leaks(text, run) == []
    assert "Marker-" not in text and "Canary" not in text and "@example.org" not in text


def test_shared_check_tables_hold_no_free_text_identifier_or_instance_id(run) -> None:
    *_, out, _, _, _ = run
    tables = sorted((out / QUALITY).glob("*.parquet"))
    assert tables
    for path in tables:
        table = pd.read_parquet(path)
        assert "KEY" not in table.columns and "text" not in table.columns, path.name
        assert _leaks(table.to_csv(index=False), run) == [], path.name


def test_data_docs_print_no_value(run) -> None:
    *_, out, paths, _, _ = run
    docs = out / DATA_DOCS
    assert paths["data_docs"].is_file()
    files = [p for p in docs.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".html"]) > len(FORMS)
    for path in files:
        assert _leaks(path.read_text(encoding="utf-8", errors="replace"), run) == [], path


def test_restricted_listings_hold_the_values(run) -> None:
    sim, result, out, paths, keys, texts = run
    folder = out / LISTINGS
    assert paths["listings"] == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    listings = {p.stem: pd.read_parquet(p) for p in folder.glob("*.parquet")}
    assert {"issues", "other_specify", "duplicate_units", "speeders", "outliers"} <= set(
        listings)
    for path in folder.glob("*.parquet"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = listings["other_specify"]
    child_words = set(other.loc[other["form"] == "child", "text"])
    # every answer to a free-text question of the child form (asked or not) is listed
    assert child_words == texts
    in_free_text = {str(v) for f in FORMS for i in MODELS[f].by_pii("free_text")
                    if i.name in sim.forms[f].root for v in sim.forms[f].root[i.name].dropna()}
    planted = set(sim.canaries) & in_free_text  # phones and e-mails in free text
    assert planted and planted <= set(other["text"])
    issues = listings["issues"]
    assert {v for v in issues["value"].dropna() if v.startswith("Marker-")}
    listed_keys = set().union(*(set(t["KEY"].dropna()) for t in listings.values()))
    assert listed_keys and listed_keys <= keys
    assert (listings["issues"]["row"] == range(1, len(issues) + 1)).all()


def test_report_stays_useful(run) -> None:
    *_, out, _, _, texts = run
    text = (out / REPORT).read_text(encoding="utf-8")
    shared = {p.stem: pd.read_parquet(p) for p in (out / QUALITY).glob("*.parquet")}
    listings = {p.stem: pd.read_parquet(p) for p in (out / LISTINGS).glob("*.parquet")}
    # how many, and where the values are
    other = shared["other_specify"]
    assert other["answers"].sum() == len(listings["other_specify"])
    assert f"{len(listings['other_specify']):,} other-specify answers" in text
    assert "restricted/listings/other_specify.parquet" in text
    assert "restricted/listings/issues.parquet" in text
    # counts per enumerator stay, and a listed row names its listing row
    assert other["enum_id"].notna().all()
    assert "Enumerator dashboard" in text and len(shared["enumerator_dashboard"])
    issues, listed = shared["issues"], listings["issues"]
    assert list(issues["row"]) == list(listed["row"])
    same = ["form", "enum_id", "severity", "rule", "column"]
    assert issues[same].astype(str).equals(listed[same].astype(str))
    # coded values of non-identifying fields are shown; free text is not
    ages = issues[issues["column"] == "child_age"]
    assert len(ages) and (ages["value"] != WITHHELD).all()
    assert ages["value"].tolist() == listed.loc[ages.index, "value"].tolist()
    words = listed["value"].isin(texts)
    assert words.any() and (issues.loc[words, "value"] == WITHHELD).all()
    outdated = issues[issues["rule"] == "outdated-version"]
    assert len(outdated) and (outdated["value"] == "2025-pilot").all()
    # the summary counts the hidden answers blanked (the free-text words planted where hidden)
    blanked = sum(run[1].forms["child"].reconciliation["automatic_corrections"].values())
    assert blanked >= 1 and f"{blanked} hidden answers blanked" in text


def test_withheld_fields_come_from_the_instruments() -> None:
    child, household = withheld_fields(MODELS["child"]), withheld_fields(MODELS["household"])
    model = MODELS["child"]
    assert {i.name for i in model.fields if i.type == "text"} <= child
    assert {i.name for i in model.by_pii("sensitive")} <= child
    assert not {"child_age", "enum_id", "consent", "cluster"} & child
    assert {"first_name", "gps", "sel_name", "v1_outcome_oth"} <= household
    assert {i.name for i in MODELS["household"].fields if i.type == "deviceid"} <= household
    assert not {"hh_size", "region", "enum_id"} & household


def test_report_without_models_shows_no_value_of_a_listing(run) -> None:
    _, result, *_ = run
    checks = run_checks({f: r.typed for f, r in result.forms.items()}, MODELS,
                        config=CONFIG, issues=result.issues())
    text = render(checks, title="KEN")
    assert _leaks(text, run) == []
    shared = share_checks(checks)
    assert (shared.tables["issues"]["value"].dropna() == WITHHELD).all()
    again = share_checks(shared.tables, MODELS)  # applying it twice changes nothing
    assert again.listings == {}
    assert all(again.tables[n].equals(shared.tables[n]) for n in shared.tables)
