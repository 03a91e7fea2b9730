"""What the release scan looks for: every value of every identifying field, everywhere.

Simulated KEN fieldwork (every fault kind planted) is ingested and validated into a store;
the restricted values must then hold the roster's first names and the names the household
form carries in calculates, the instanceIDs of quarantined and duplicate submissions (also
one the ingest set aside), and make the scan find a caregiver's name in a release column,
while a file of codes, numbers, choice labels and question labels finds nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dhsurvey.anonymise.restricted import questionnaire_words, restricted_values
from dhsurvey.anonymise.scan import scan_release
from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.ingest.canonical import QUARANTINE_COLUMNS
from dhsurvey.store import RAW_QUARANTINE, Store, raw_table
from dhsurvey.study import Study, ingest, validate

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
ISO = "KEN"
#: A submission the ingest quarantined (two exports, one instanceID, different content).
CLASHING = "uuid:0c1a5b1e-0000-4000-8000-00000000c1a5"


@pytest.fixture(scope="module")
def country(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Store, list[str]]:
    study = Study.load(INSTRUMENTS)
    store = Store(tmp_path_factory.mktemp("data"))
    simulate_to(store.landing(), [study.config(ISO)], study.models, seed=5, households=30,
                faults=list(KINDS), formats=("central",))
    ingest(store, study, ISO)
    path = store.raw(ISO) / raw_table("household", RAW_QUARANTINE)
    clash = pd.DataFrame([["central/household.csv.zip", None, CLASHING,
                           "duplicate-key-conflict", "KEY", CLASHING, "two contents"]],
                         columns=QUARANTINE_COLUMNS)
    pd.concat([pd.read_parquet(path), clash], ignore_index=True).astype(object).to_parquet(path)
    validate(store, study, ISO, quality=False)
    return study, store, restricted_values(store, ISO, study.models)


def _raw(store: Store, table: str) -> pd.DataFrame:
    return pd.read_parquet(store.raw(ISO) / table)


def test_names_on_the_roster_and_in_calculates_are_restricted(country) -> None:
    study, store, values = country
    folded = {v.casefold() for v in values}
    words = questionnaire_words(study.models)
    roster = set(_raw(store, raw_table("household", "roster"))["first_name"].dropna())
    household = _raw(store, raw_table("household"))
    carried = set(household["sel_name"].dropna()) | set(household["cg_name"].dropna())
    assert len(roster) > 20 and carried
    # A name that is a word of the questionnaire (Zawadi: "gift" in the Swahili questions)
    # is in every codebook: finding it proves nothing, so it is left out. The only one.
    published = {n for n in roster | carried if n.casefold() in words}
    assert published <= {"Zawadi"}
    assert {n.casefold() for n in (roster | carried) - published} <= folded
    assert all(len(v.strip()) >= 3 for v in values)


def test_quarantined_and_duplicate_submissions_are_restricted(country) -> None:
    _, store, values = country
    found = set(values)
    issues = [pd.read_parquet(store.form_dir(ISO, form) / f"{name}.parquet")["instanceID"]
              for form in ("household", "child") for name in ("quarantine", "duplicates")]
    set_aside = set(pd.concat(issues).dropna())
    assert len(set_aside) >= 10
    assert set_aside <= found
    assert CLASHING in found
    # Every submission of every form the raw zone holds, accepted or not.
    for form in ("household", "child", "caregiver", "frontline_worker"):
        assert set(_raw(store, raw_table(form))["KEY"]) <= found


def test_the_scan_finds_a_caregiver_name_and_nothing_in_codes_and_labels(
        country, tmp_path: Path) -> None:
    study, store, values = country
    words = questionnaire_words(study.models)
    names = _raw(store, raw_table("household"))["cg_name"].dropna()
    name = next(n for n in names if n.casefold() not in words)
    leak = pd.DataFrame({"record_id": ["3f8a92aa41c0e7d1", "9b1e00c2d4f5a6b7"],
                         "region": [1, 2], "caregiver": ["", f"{name.upper()}"]})
    leak.to_csv(tmp_path / "leak.csv", index=False)
    leak.to_parquet(tmp_path / "leak.parquet")
    found = scan_release([tmp_path / "leak.csv", tmp_path / "leak.parquet"], values)
    assert {(Path(f["file"]).suffix, f["column"]) for f in found
            if f["kind"] == "restricted"} == {(".csv", "caregiver"), (".parquet", "caregiver")}

    # Codes, small numbers (roster lines, ages, clusters), choice and question labels in
    # every language: none is restricted.
    # The choice lists include the attached country lists (regions, schools, education).
    languages = sorted({lang for model in study.models.values() for lang in model.languages})
    rows = []
    for form, model in study.models.items():
        for choices in (*model.choice_lists.values(), *model.attached_lists.values()):
            rows += [(form, choices.name, c.name, *(c.labels.get(lang, "") for lang in
                                                    languages)) for c in choices.choices]
        rows += [(form, item.type, item.name, *(item.labels.get(lang, "") for lang in
                                                languages)) for item in model.fields]
    labels = pd.DataFrame(rows, columns=["form", "list", "code",
                                         *(f"label_{i}" for i in range(len(languages)))])
    labels["number"] = [str(i % 1000) for i in range(len(labels))]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    labels.to_parquet(tmp_path / "labels.parquet")
    assert scan_release([tmp_path / "labels.csv", tmp_path / "labels.parquet"], values) == []
