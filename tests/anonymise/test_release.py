"""Study-level anonymisation on simulated KEN data with canaries planted in restricted fields.

What must hold for every release: no direct identifier, free text, GPS or record ID column;
dates as months; fresh release IDs that only the restricted mapping joins back; child and
caregiver linked by hh_id; k-anonymity on the keys (per file and for the joined household
profile); no planted canary in any written file; and a gate that passes this release and
blocks one without recoding or suppression.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise.pseudonym import pseudonym
from dhsurvey.anonymise.release import (
    BANDS,
    FIXED_TOPCODES,
    HOUSEHOLD_PURPOSE,
    AnonymisedRelease,
    anonymise_country,
    anonymise_form,
    classify,
    gate,
    plan_columns,
    scan_release,
)
from dhsurvey.anonymise.risk import frequencies, k_anonymity_violations
from dhsurvey.anonymise.scenario import load_rules
from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.canaries import canary_values, plant_canaries
from dhsurvey.fieldwork.config import CountryConfig, load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import META
from dhsurvey.validate.run import validate_forms
from dhsurvey.weight.study import study_weights

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
KEY = bytes(range(32))
MONTH = re.compile(r"^\d{4}-\d{2}$")
LINKED_FORMS = ("household", "child", "caregiver")


@dataclass
class Study:
    models: dict[str, FormModel]
    config: CountryConfig
    accepted: dict[str, pd.DataFrame]  # with canaries planted
    weights: dict[str, pd.DataFrame]
    planted: list[str]
    restricted: list[str]  # canaries, instanceIDs, GPS strings, names


@pytest.fixture(scope="module")
def study() -> Study:
    models = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
    config = load_country(INSTRUMENTS / "countries" / "KEN.yaml")
    sim = simulate_country(config, models, seed=1)  # the design size: every PSU of the frame
    res = validate_forms(sim.forms, models, config=config)
    acc = {f: r.accepted for f, r in res.forms.items()}
    w = study_weights(sim.sample.households, acc["household"], acc["child"], acc["caregiver"],
                      config)
    weights = {"household": w.household, "child": w.child, "caregiver": w.caregiver}
    tables = {f: t.copy() for f, t in acc.items()}
    planted = plant_canaries(tables, models, np.random.default_rng(11), per_field=6)
    restricted = list(planted)
    for t in tables.values():
        restricted += t["KEY"].astype(str).tolist()
    hh = tables["household"]
    for col in ("gps", "sel_name", "cg_name"):
        restricted += hh[col].dropna().astype(str).tolist()
    return Study(models, config, tables, weights, planted, restricted)


# The study's rules (a country's full sample: every cell of region x urban/rural x sex x age
# group, which no record's suppression touches, holds k children), with the budget widened
# and the licensed files always linked.
_RULES = load_rules(INSTRUMENTS / "disclosure.yaml")
RULES = replace(_RULES, suppression_budget=0.3, tiers={
    **_RULES.tiers, "licensed": replace(_RULES.tiers["licensed"], link=True)})


def _release(study: Study, seed: int = 1, **options: object) -> AnonymisedRelease:
    """The licensed tier: linked files (hh_id), the narrower declared scenario."""
    options = {"rules": RULES, "tier": "licensed", **options}
    return anonymise_country(study.accepted, study.weights, study.models, study.config,
                             key=KEY, rng=np.random.default_rng(seed), **options)


@pytest.fixture(scope="module")
def release(study: Study) -> AnonymisedRelease:
    return _release(study)


def _write(rel: AnonymisedRelease, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for form, table in rel.tables.items():
        table.to_parquet(folder / f"{form}.parquet")
        table.to_csv(folder / f"{form}.csv", index=False)
        paths += [folder / f"{form}.parquet", folder / f"{form}.csv"]
    (folder / "report.md").write_text(rel.markdown(), encoding="utf-8")
    return [*paths, folder / "report.md"]


# ----------------------------------------------------------------------- classification


def test_classify_rules(study: Study) -> None:
    hh, child, cg, fw = (classify(study.models[f]) for f in FORMS)
    assert set(META) <= set(hh)
    for col in ("KEY", "submitter", "review_state", "source_format", "source_file",
                "submission_time"):
        assert hh[col] == "drop"
    assert hh["form_id"] == hh["form_version"] == "keep"
    # direct identifiers, GPS, device, interviewer, instance-name IDs, roster pointers
    for col in ("gps", "first_name", "sel_name", "cg_name", "deviceid", "enum_id", "cluster",
                "hh_number", "sel_line", "caregiver_line", "line", "disposition_oth"):
        assert hh[col] == "drop", col
    assert child["child_line"] == cg["cg_line"] == cg["child_line"] == fw["worker_no"] == "drop"
    assert child["devices_oth"] == "drop" and child["talk_who_oth"] == "drop"  # free text
    # the country's own settings looked up from countries.csv: not answers
    assert child["helpline"] == child["eg_games"] == child["country_langs"] == "drop"
    # duplicates of released keys: a suppressed age would otherwise be recoverable
    assert child["child_age"] == child["age_self"] == hh["hh_size"] == hh["sel_age"] == "drop"
    for col in ("start", "end", "today", "v1_date"):
        assert hh[col] == "month"
    assert hh["country"] == "keep"  # choice-coded field of the instance name
    assert {c for c, a in child.items() if a == "key"} == {
        "region", "age_now", "child_sex", "in_school", "school_level", "school_isced"}
    assert child["ocsea_talk"] == child["talk_who"] == "sensitive"
    assert set(hh.values()) <= {"drop", "month", "key", "sensitive", "keep"}


# ------------------------------------------------------------------------------ canaries


def test_canary_values_are_unique_and_realistic() -> None:
    values = canary_values(40, np.random.default_rng(3))
    assert len(set(values)) == 40
    assert re.fullmatch(r"[A-Z][a-z]+ Canary-\d{4}", values[0])
    assert re.fullmatch(r"\+254 7\d{2} \d{2} \d{4}", values[1])
    assert re.fullmatch(r"canary\.\d{4}@example\.org", values[2])
    lat, lon, alt, acc = map(float, values[3].split())
    assert -5 < lat < 5 and 33 < lon < 42 and alt >= 0 and acc > 0


def test_canaries_planted_in_restricted_fields_only(study: Study) -> None:
    assert len(study.planted) >= 50
    found = set()
    for form, table in study.accepted.items():
        model = study.models[form]
        for col in table.columns:
            hits = set(table[col].astype(str)) & set(study.planted)
            if hits:
                assert model[col].pii in ("direct", "free_text"), col
                found |= hits
    assert found == set(study.planted)
    assert any(re.fullmatch(r"-?\d+\.\d{6} \d+\.\d{6} .*", v) for v in
               study.accepted["household"]["gps"].dropna() if v in found)


# ------------------------------------------------------------------------- the release


def test_no_direct_identifier_column_in_any_table(release: AnonymisedRelease,
                                                  study: Study) -> None:
    for form, table in release.tables.items():
        model = study.models[form]
        actions = classify(model)
        for col in table.columns:
            assert actions.get(col) != "drop", (form, col)
            if col in model:
                assert model[col].pii not in ("direct", "free_text"), (form, col)
        assert not set(table.columns) & {"KEY", "submitter", "submission_time", "gps",
                                         "cluster", "hh_number", "enum_id", "deviceid",
                                         "first_name", "sel_name", "cg_name", "worker_no"}
        extra = set(table.columns) - set(actions)
        assert extra <= {"record_id", "hh_id", "stratum", "psu", "weight", "weight_norm",
                         *(study.config.margins if study.weights.get(form) is not None
                           else ())} | {c for c in table.columns
                                        if re.fullmatch(r"rep_\d{3}", c)}


def test_dates_are_months(release: AnonymisedRelease, study: Study) -> None:
    checked = 0
    for form, table in release.tables.items():
        for col, action in classify(study.models[form]).items():
            if action == "month" and col in table.columns:
                values = table[col].dropna()
                assert values.map(lambda v: bool(MONTH.match(v))).all(), (form, col)
                checked += len(values)
        assert "2026" in set(table["start"].str[:4])
    assert checked > 1000


def test_design_variables_and_weights_are_joined(release: AnonymisedRelease,
                                                 study: Study) -> None:
    for form in LINKED_FORMS:
        table = release.tables[form]
        assert len(table) == len(study.weights[form])  # respondents only
        for col in ("stratum", "psu"):
            assert table[col].dtype == "Int64" and table[col].notna().all()
        assert (table["weight"] > 0).all()
        assert table.groupby("psu")["stratum"].nunique().max() == 1  # PSUs nest in strata
    assert release.tables["child"].filter(regex=r"^rep_\d{3}$").shape[1] > 10
    fw = release.tables["frontline_worker"]
    assert not {"stratum", "psu", "weight", "hh_id"} & set(fw.columns)
    assert fw["record_id"].notna().all()
    assert release.report["frontline_worker"]["weighted"] is False


def test_release_ids_are_fresh_and_the_restricted_mapping_joins_back(
        release: AnonymisedRelease, study: Study) -> None:
    other = _release(study, seed=2)
    for form in FORMS:
        assert not set(release.tables[form]["record_id"]) & set(other.tables[form]["record_id"])
    assert not set(release.tables["child"]["hh_id"]) & set(other.tables["child"]["hh_id"])
    a, b = release.restricted["households"], other.restricted["households"]
    assert set(a["hh_pseudonym"]) == set(b["hh_pseudonym"])  # same key, same pseudonyms
    # Join release 1 to release 2 through the pseudonym: the same child comes out.
    bridge = a.merge(b, on="hh_pseudonym", suffixes=("_1", "_2"))
    c1 = release.tables["child"].merge(bridge, left_on="hh_id", right_on="hh_id_1")
    c2 = other.tables["child"][["hh_id", "record_id"]].rename(
        columns={"hh_id": "hh_id_2", "record_id": "record_id_2"})
    joined = c1.merge(c2, on="hh_id_2")
    assert len(joined) == len(release.tables["child"])
    rec1 = release.restricted["records"].set_index("record_id")["KEY"]
    rec2 = other.restricted["records"].set_index("record_id")["KEY"]
    assert (joined["record_id"].map(rec1).to_numpy() ==
            joined["record_id_2"].map(rec2).to_numpy()).all()
    # The pseudonym is the keyed HMAC of the household ID, never the ID itself.
    assert a["hh_pseudonym"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert not release.restricted["psu"]["psu"].equals(other.restricted["psu"]["psu"])


def test_households_are_identified_by_the_household_id_the_forms_declare(
        release: AnonymisedRelease, study: Study) -> None:
    assert {study.models[f].household_id for f in LINKED_FORMS} == {("cluster", "hh_number")}
    # The pseudonym is the keyed HMAC of HH-<country>-<the household ID fields, in order>.
    records = release.restricted["records"]
    households = release.restricted["households"].set_index("hh_id")["hh_pseudonym"]
    hh = study.accepted["household"].set_index("KEY")
    rows = records[records["form"] == "household"].join(hh[["cluster", "hh_number"]], on="KEY")
    expected = [pseudonym(KEY, HOUSEHOLD_PURPOSE,
                          f"HH-{study.config.code}-{int(c)}-{int(n)}")
                for c, n in zip(rows["cluster"], rows["hh_number"], strict=True)]
    assert rows["hh_id"].map(households).tolist() == expected
    # Forms that declare the household ID in the other order: the same households, whose
    # pseudonyms name the fields in that order.
    swapped = {f: replace(m, settings={**m.settings, "household_id": "hh_number cluster"})
               if m.household_id else m for f, m in study.models.items()}
    rel = anonymise_country(study.accepted, study.weights, swapped, study.config, key=KEY,
                            rng=np.random.default_rng(3), recode=False, suppress=False)
    assert len(rel.restricted["households"]) == len(release.restricted["households"])
    assert set(rel.restricted["households"]["hh_pseudonym"]) == {
        pseudonym(KEY, HOUSEHOLD_PURPOSE, f"HH-{study.config.code}-{int(n)}-{int(c)}")
        for c, n in zip(rows["cluster"], rows["hh_number"], strict=True)}
    # The plan of a release in batches reads the household ID fields the form declares.
    only_cluster = replace(study.models["child"],
                           settings={**study.models["child"].settings, "household_id": "cluster"})
    columns = study.accepted["child"].columns
    assert {"KEY", "cluster", "hh_number"} <= set(plan_columns(study.models["child"], columns))
    assert "hh_number" not in plan_columns(only_cluster, columns)
    # A form of households whose table lacks a field of the household ID is refused.
    with pytest.raises(DhsurveyError) as err:
        anonymise_form(study.accepted["child"].drop(columns="hh_number"),
                       study.models["child"], study.config, study.weights["child"], key=KEY,
                       rng=np.random.default_rng(4))
    assert err.value.code == "release-bad-argument" and "hh_number" in str(err.value)


def test_child_and_caregiver_of_a_household_share_hh_id(release: AnonymisedRelease,
                                                        study: Study) -> None:
    records = release.restricted["records"]
    key_to_hh = {}
    for form in ("child", "caregiver"):
        acc = study.accepted[form].set_index("KEY")
        key_to_hh[form] = acc[["cluster", "hh_number"]]
    # The restricted records name each record's household as the release does.
    ch = release.tables["child"][["record_id", "hh_id"]].merge(records,
                                                               on=["record_id", "hh_id"])
    cg = release.tables["caregiver"][["record_id", "hh_id"]].merge(records,
                                                                   on=["record_id", "hh_id"])
    assert len(ch) == len(release.tables["child"])
    assert len(cg) == len(release.tables["caregiver"])
    ch = ch.join(key_to_hh["child"], on="KEY")
    cg = cg.join(key_to_hh["caregiver"], on="KEY")
    pairs = ch.merge(cg, on=["cluster", "hh_number"], suffixes=("_ch", "_cg"))
    assert len(pairs) > 400
    assert (pairs["hh_id_ch"] == pairs["hh_id_cg"]).all()
    shared = set(release.tables["child"]["hh_id"]) & set(release.tables["caregiver"]["hh_id"])
    assert len(shared) == len(pairs)
    assert shared <= set(release.tables["household"]["hh_id"])


def _intruder_view(release: AnonymisedRelease, plain: AnonymisedRelease,
                   forms: tuple[str, ...]) -> pd.DataFrame:
    """The licensed intruder's join, rebuilt from the released tables alone: one row per
    household, each file's keys (a value missing in the unsuppressed release too was not
    asked: a category; a value suppressed is a wildcard; a household without a record in a
    file matches anything, as this scenario declares), and which files have a record."""
    joined = None
    for form in forms:
        t, p = release.tables[form], plain.tables[form].set_index("record_id")
        part = pd.DataFrame({"hh_id": t["hh_id"], f"in:{form}": True})
        for key in release.report[form]["keys"]:
            before = p.loc[t["record_id"], key].to_numpy()
            value = t[key].astype(object).where(t[key].notna(), None)
            value[pd.isna(before)] = "not asked"
            part[key if key in ("stratum", "region") else f"{form}:{key}"] = value.to_numpy()
        if joined is None:
            joined = part
        else:
            shared = [c for c in ("stratum", "region") if c in part and c in joined]
            joined = joined.merge(part, on="hh_id", how="outer", suffixes=("", "_r"))
            for c in shared:
                joined[c] = joined[c].where(joined[c].notna(), joined[f"{c}_r"])
                joined = joined.drop(columns=f"{c}_r")
    assert joined is not None
    return joined


def test_k_anonymity_holds_after_suppression(release: AnonymisedRelease,
                                             study: Study) -> None:
    for form, table in release.tables.items():
        rep = release.report[form]
        keys = rep["keys"]
        expected = {c for c in table.columns if c in rep["importance"]}
        assert set(keys) == expected
        if form in LINKED_FORMS:
            assert keys[0] == "stratum"
        assert not k_anonymity_violations(table, keys, 3).any() if keys else True, form
        assert rep["min_fk"] is None or rep["min_fk"] >= 3
        assert rep["violations"]["after_suppression"] == 0
    assert release.report["child"]["violations"]["before_recoding"] > 0  # work to do
    # Every linked file's respondents, counted on everything the intruder can join.
    plain = _release(study, seed=1, suppress=False)
    view = _intruder_view(release, plain, LINKED_FORMS)
    keys = [c for c in view.columns if c != "hh_id" and not c.startswith("in:")]
    fk = frequencies(view, keys)["fk"]
    for form in LINKED_FORMS:
        present = view[f"in:{form}"].astype("boolean").fillna(False).astype(bool)
        assert frequencies(view[present], keys)["fk"].min() >= 3, form
        assert release.report[form]["linked_keys"] == release.report["child"]["linked_keys"]
    assert fk.min() >= 3


def test_suppression_counts_match_the_blanked_values(release: AnonymisedRelease,
                                                     study: Study) -> None:
    plain = _release(study, seed=1, suppress=False)  # same seed: same rows, same order
    total = 0
    for form, table in release.tables.items():
        assert table["record_id"].equals(plain.tables[form]["record_id"])
        rep = release.report[form]
        for key in rep["keys"]:
            if key not in plain.tables[form]:
                continue
            blanked = int((table[key].isna() & plain.tables[form][key].notna()).sum())
            assert blanked == rep["suppressions"][key], (form, key)
            assert rep["changed_by_suppression"][key] == pytest.approx(blanked / len(table))
            assert rep["suppression_share"][key] <= RULES.suppression_budget
            total += blanked
    assert total > 0


def test_recodes(release: AnonymisedRelease, study: Study) -> None:
    hh, cg, ch = (release.tables[f] for f in ("household", "caregiver", "child"))
    assert hh["n_members"].max() <= FIXED_TOPCODES["n_members"]
    assert hh["hh_phones"].max() <= FIXED_TOPCODES["hh_phones"]
    assert set(cg["cg_age"].dropna()) <= set(BANDS["cg_age"])
    assert cg["cg_age"].dtype == "Int64"
    assert study.accepted["household"]["hh_phones"].max() > 6  # the top-code did something
    ages = set(ch["age_now"].dropna())
    banded = "bands" in release.report["child"]["recodes"].get("age_now", "")
    assert ages == ({12, 15} if banded else set(range(12, 18)))
    assert "region" in release.tables["child"] and "psu" in release.tables["child"]
    fw = release.report["frontline_worker"]
    caseload = study.accepted["frontline_worker"]["caseload"]
    assert release.tables["frontline_worker"]["caseload"].max() < caseload.max()
    assert "99th percentile" in fw["recodes"]["caseload"]
    for col, merged in fw["rare_merged"].items():  # rare levels merged into one >= k level
        if "codes " in fw["recodes"].get(col, ""):
            continue  # a recoding step of the rules merged common levels too
        counts = study.accepted["frontline_worker"][col].value_counts()
        assert min(counts[lvl] for lvl in merged["levels"]) < 3 <= merged["records"]
        assert merged["records"] >= 3
    assert fw["changed_by_recoding"]["years_service"] > 0


# ------------------------------------------------------------------------------ scanning


def test_scan_finds_no_canary_in_the_written_release(release: AnonymisedRelease,
                                                     study: Study, tmp_path: Path) -> None:
    paths = _write(release, tmp_path / "release")
    assert scan_release(paths, study.restricted) == []


def test_scan_finds_a_leaked_canary(release: AnonymisedRelease, study: Study,
                                    tmp_path: Path) -> None:
    # Without anonymisation the planted canaries reach the files (they sit in released rows).
    raw = study.accepted["household"].merge(study.weights["household"][["KEY"]], on="KEY")
    raw.to_parquet(tmp_path / "raw.parquet")
    found = scan_release([tmp_path / "raw.parquet"], study.planted)
    assert {f["restricted_index"] for f in found if f["kind"] == "restricted"}
    # A deliberate leak into one cell of the anonymised child table, in both formats.
    leaked = study.planted[0]
    table = release.tables["child"].copy()
    table.loc[5, "devices"] = leaked
    table.to_parquet(tmp_path / "child.parquet")
    table.to_csv(tmp_path / "child.csv", index=False)
    findings = scan_release([tmp_path / "child.parquet", tmp_path / "child.csv"],
                            study.restricted)
    hits = [f for f in findings if f["kind"] == "restricted"]
    assert {Path(f["file"]).name for f in hits} == {"child.parquet", "child.csv"}
    assert {f["restricted_index"] for f in hits} == {0}
    assert all(f["column"] == "devices" for f in hits)
    assert all(leaked not in f["excerpt"] for f in findings)  # findings never echo values


def test_scan_patterns_in_string_cells_and_other_formats(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "note": ["write to a.b@mail.example.com", "call 0712 345 678", "ok",
                 "uuid:80438f5f-d63e-44ed-9403-99e453ba3720", "-1.825933 37.043138"],
        "codes": ["1 2 3 4 5 6 7 8 9", "96 98 99", "2026-02", "13393.492854", "3"],
        "weight": [13393.492854, 1.5, 2.0, 3.0, 4.0],
    })
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        kinds = {(f["kind"], f["column"]) for f in scan_release([tmp_path / name], [])}
        assert kinds == {("email", "note"), ("phone", "note"), ("uuid", "note"),
                         ("coordinates", "note")}, name
    leak = "Zawadi Canary-4321"
    small = pd.DataFrame({"a": ["x", leak], "b": [1, 2]})
    small.to_excel(tmp_path / "t.xlsx", index=False)
    small.to_stata(tmp_path / "t.dta", write_index=False, version=118)
    import pyreadstat

    pyreadstat.write_sav(small, str(tmp_path / "t.sav"))
    (tmp_path / "t.md").write_text(f"| a |\n|---|\n| {leak.upper()} |\n", encoding="utf-8")
    for name in ("t.xlsx", "t.dta", "t.sav", "t.md"):
        found = scan_release([tmp_path / name], ["nobody", leak])
        assert any(f["restricted_index"] == 1 for f in found), name
    # Whole tokens only: a restricted value inside a longer word or number is not a hit.
    (tmp_path / "u.md").write_text("Zawadi Canary-43210 and xZawadi Canary-4321\n")
    assert scan_release([tmp_path / "u.md"], [leak]) == []
    with pytest.raises(DhsurveyError):
        scan_release([tmp_path / "missing.csv"], [])


def test_allowed_free_text_is_scrubbed_but_names_still_block(study: Study,
                                                             tmp_path: Path) -> None:
    child = study.accepted["child"].copy()
    respondents = child["KEY"].isin(study.weights["child"]["KEY"])
    row = child.index[respondents][0]
    child["devices_oth"] = child["devices_oth"].astype("string")
    child.loc[row, "devices_oth"] = "call +254 712 34 5678 or canary.9@example.org, Amani " \
        "Canary-9999"
    rel = anonymise_form(child, study.models["child"], study.config,
                         study.weights["child"], key=KEY, rng=np.random.default_rng(4),
                         allowed_free_text={"child": ["devices_oth"]})
    text = rel.tables["child"]["devices_oth"].dropna()
    leaked = text[text.str.contains("Canary-9999")]
    assert len(leaked) == 1
    assert "<PHONE_NUMBER>" in leaked.iloc[0] and "<EMAIL_ADDRESS>" in leaked.iloc[0]
    assert rel.report["child"]["free_text_scrubbed"] == ["devices_oth"]
    paths = _write(rel, tmp_path)
    findings = scan_release(paths, ["Amani Canary-9999", "+254 712 34 5678"])
    assert [f["restricted_index"] for f in findings if f["kind"] == "restricted"] == [0, 0]
    assert not gate(rel.report, findings).passed
    with pytest.raises(DhsurveyError):
        anonymise_form(child, study.models["child"], study.config, study.weights["child"],
                       key=KEY, rng=np.random.default_rng(4),
                       allowed_free_text={"child": ["age_now"]})


# ---------------------------------------------------------------------------------- gate


def test_gate_passes_the_recoded_release(release: AnonymisedRelease, study: Study,
                                         tmp_path: Path) -> None:
    findings = scan_release(_write(release, tmp_path), study.restricted)
    result = gate(release.report, findings, k=3, max_global_risk=0.01)
    assert result.passed, result.reasons
    assert result.reasons == []
    assert any("frontline_worker" in n and "unweighted" in n for n in result.notes)
    assert gate(release, findings).passed  # the release object is accepted too


def test_gate_blocks_without_recoding_and_suppression(study: Study, tmp_path: Path) -> None:
    raw = _release(study, recode=False, suppress=False)
    findings = scan_release(_write(raw, tmp_path), study.restricted)
    assert findings == []  # identifiers are still dropped: only k-anonymity fails
    result = gate(raw.report, findings, k=3)
    assert not result.passed
    for form in ("child", "caregiver"):
        assert any(r.startswith(f"{form}:") and "f_k" in r for r in result.reasons), form
    assert raw.report["child"]["violations"]["after_suppression"] == \
        raw.report["child"]["violations"]["before_recoding"] > 0


def test_gate_at_k5_blocks_an_unrecoded_k3_release(study: Study) -> None:
    rel = _release(study, recode=False, k=3)
    assert gate(rel.report, [], k=3).passed
    blocked = gate(rel.report, [], k=5)
    assert not blocked.passed
    assert any("< k = 5" in r for r in blocked.reasons)
    assert all(rep["recodes"] == {} for rep in rel.report.values())


def test_gate_blocks_on_risk_and_findings(release: AnonymisedRelease) -> None:
    assert not gate(release.report, [], max_global_risk=1e-9).passed
    finding = {"file": "child.csv", "kind": "restricted", "count": 2}
    result = gate(release.report, [finding])
    assert not result.passed and result.reasons == ["scan: 2 restricted finding(s) in child.csv"]


# -------------------------------------------------------------------------------- report


def _g(x: float) -> str:
    return f"{x:.4g}"


def test_report_markdown_contains_the_numbers(release: AnonymisedRelease) -> None:
    for form in FORMS:
        rep, md = release.report[form], release.report_md[form]
        assert md.startswith(f"## {form}")
        for stage in ("before_recoding", "after_recoding", "after_suppression"):
            risk = rep["global_risk"][stage]
            assert f"| {rep['violations'][stage]} | {_g(risk['risk'])} | " \
                   f"{_g(risk['expected_reidentifications'])} |" in md, (form, stage)
        for key, n in rep["suppressions"].items():
            assert f"| `{key}` | {n} |" in md
        assert f"k = {rep['k']}" in md and str(rep["min_fk"]) in md
        for col in rep["recodes"]:
            assert f"| `{col}` |" in md
    child = release.report["child"]
    assert child["household_risk"]["max"] >= child["global_risk"]["after_suppression"]["risk"]
    ld = child["l_diversity"]["ocsea_talk"]
    assert f"| `ocsea_talk` | {ld['min_l']} | {ld['records_l1']} " in release.report_md["child"]
    assert "`gps` | GPS coordinates" in release.report_md["household"]
    json.dumps(release.report)  # plain Python: can be written next to the release
    json.dumps(release.tier)
    doc = release.markdown()
    assert doc.count("\n## ") >= 5 and "## Tier: licensed (`licensed/`)" in doc
    assert RULES.tiers["licensed"].scenario in doc
    assert "share `hh_id`" in doc
