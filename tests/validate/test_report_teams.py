"""The fieldwork quality report names each PSU's and enumerator's team, marks the enumerators
whose interviews were quarantined, and fits its tables to the page.

Simulated Kenyan fieldwork (every fault kind planted) lands with its sample design; three
household interviews are made by enumerator 1036, an ID outside the form's range (quarantined:
``constraint`` on ``enum_id``) and in no team of the country file. One PSU's team in the design
differs from the one its region would give, so the report must follow the design when there is
one; without a design (``dhsurvey validate`` on an export folder) the teams come from the
country file.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from dhsurvey import study as study_module
from dhsurvey.fieldwork.config import Team
from dhsurvey.fieldwork.exports import write_central_zip
from dhsurvey.fieldwork.faults import KINDS, inject_faults
from dhsurvey.fieldwork.run import write_design
from dhsurvey.fieldwork.simulate import seeded_rng, simulate_country
from dhsurvey.store import REPORT, Store
from dhsurvey.validate.aapor import latest
from dhsurvey.validate.disclosure import listed
from dhsurvey.validate.quality import enumerator_teams, run_checks
from dhsurvey.validate.report import QUARANTINED_LABEL, chart_durations, render

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
STRANGER = 1036  # an enumerator ID the form rejects and no team lists
MOVED = 1  # the cluster the design gives to another team than its region's


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    study = study_module.Study.load(INSTRUMENTS)
    config = study.config("KEN")
    sim = simulate_country(config, study.models, seed=3, households=300)
    inject_faults(sim, study.models, list(KINDS), seeded_rng(3, "KEN", "faults"), per_kind=3)
    household = sim.forms["household"].root
    stranger = household.index[[5, 17, 40]]
    household.loc[stranger, "enum_id"] = str(STRANGER)
    design = sim.sample.households
    by_region = {r: t.id for t in config.teams for r in t.regions}
    other = next(t.id for t in config.teams
                 if t.id != design.loc[design["cluster"] == MOVED, "team"].iloc[0])
    design.loc[design["cluster"] == MOVED, "team"] = other
    data = tmp_path_factory.mktemp("data")
    folder = data / "landing" / "KEN"
    for form, raw in sim.forms.items():
        write_central_zip(raw, study.models[form], folder / "central" / f"{form}.csv.zip")
    write_design(sim, folder)
    store = Store(data)
    study_module.ingest(store, study, "KEN")
    validated = study_module.validate(store, study, "KEN")
    return study, config, store, validated.result, by_region, other


def _checks(run, **kwargs) -> dict[str, pd.DataFrame]:
    study, config, _, result, *_ = run
    return run_checks({f: r.typed for f, r in result.forms.items()}, study.models,
                      config=config, **kwargs)


# -- teams -------------------------------------------------------------------------------------


def test_every_psu_has_the_design_team(run) -> None:
    _, config, store, _, by_region, other = run
    psu = store.quality_table("KEN", "progress_psu")
    design = store.design("KEN")
    assert psu["team"].dtype == "Int64" and psu["team"].notna().all()
    assert set(psu["cluster"]) == set(design["cluster"])
    expected = design.groupby("cluster")["team"].first()
    assert psu.set_index("cluster")["team"].astype(int).to_dict() == expected.to_dict()
    assert psu.set_index("cluster").loc[MOVED, "team"] == other  # the design, not the region
    regions = design.groupby("cluster")["region"].first()
    rest = psu[psu["cluster"] != MOVED]
    assert (rest["team"].astype(int) == rest["cluster"].map(regions).map(by_region)).all()
    assert {t.id for t in config.teams} == set(psu["team"])


def test_without_a_design_the_team_comes_from_the_regions_in_the_country_file(run) -> None:
    _, config, _, result, by_region, _ = run
    psu = _checks(run, issues=result.issues())["progress_psu"]
    assert psu["team"].dtype == "Int64" and psu["team"].notna().all()
    household = result.forms["household"].typed
    regions = household.groupby("cluster")["region"].agg(lambda s: s.mode().iloc[0])
    expected = {int(c): by_region[int(r)] for c, r in regions.items()}
    assert psu.set_index("cluster")["team"].astype(int).to_dict() == expected


def test_without_regions_the_team_is_that_of_who_visited_most_households(run) -> None:
    study, config, _, result, *_ = run
    teamless = dataclasses.replace(config, teams=tuple(Team(t.id, t.enumerators)
                                                       for t in config.teams))
    tables = {f: r.typed for f, r in result.forms.items()}
    psu = run_checks(tables, study.models, config=teamless)["progress_psu"]
    assert psu["team"].notna().all()
    team_of = enumerator_teams(config)
    household = latest(tables["household"], ["cluster", "hh_number"])
    known = household[household["enum_id"].isin(list(team_of))]
    visits = known.groupby(["cluster", "enum_id"]).size().rename("n").reset_index()
    top = (visits.sort_values(["cluster", "n", "enum_id"], ascending=[True, False, True])
           .drop_duplicates("cluster").set_index("cluster")["enum_id"])
    expected = top.astype(int).map(team_of)
    assert psu.set_index("cluster")["team"].astype(int).to_dict() == expected.to_dict()


def test_enumerator_dashboard_names_each_enumerators_team(run) -> None:
    _, config, store, *_ = run
    dash = store.quality_table("KEN", "enumerator_dashboard")
    assert dash["team"].dtype == "Int64"
    team_of = enumerator_teams(config)
    known = dash[dash["enum_id"].isin(list(team_of))]
    assert len(known) and (known["team"] == known["enum_id"].map(team_of)).all()
    assert dash.loc[dash["enum_id"] == STRANGER, "team"].isna().all()
    assert (dash["enum_id"] == STRANGER).any()


# -- quarantined interviews --------------------------------------------------------------------


def _quarantined(result, form: str) -> pd.Series:
    """Submissions of each enumerator of ``form`` in its quarantine (from the validation)."""
    r = result.forms[form]
    keys = set(r.quarantine["instanceID"])
    typed = r.typed.drop_duplicates("KEY")
    return typed[typed["KEY"].isin(keys)].groupby("enum_id")["KEY"].nunique()


def test_enumerator_dashboard_counts_quarantined_submissions_and_why(run) -> None:
    _, _, store, result, *_ = run
    dash = store.quality_table("KEN", "enumerator_dashboard")
    assert dash["quarantined"].dtype == "Int64" and dash["quarantined"].notna().all()
    assert dash["quarantine_reasons"].dtype == "string"
    for form in result.forms:
        mine = dash[dash["form"] == form].set_index("enum_id")
        expected = _quarantined(result, form)
        got = mine["quarantined"][mine["quarantined"] > 0]
        assert got.astype(int).to_dict() == expected.astype(int).to_dict(), form
        assert mine.loc[mine["quarantined"] == 0, "quarantine_reasons"].isna().all()
        assert mine.loc[mine["quarantined"] > 0, "quarantine_reasons"].notna().all()
    stranger = dash[(dash["form"] == "household") & (dash["enum_id"] == STRANGER)].iloc[0]
    assert stranger["quarantined"] >= 3
    assert re.search(r"(^|; )constraint \(enum_id\) [34]\b", stranger["quarantine_reasons"])
    # counts, rule and question names only: nothing that lists a submission
    assert not listed(dash)
    assert "uuid:" not in dash.to_csv(index=False)


def test_without_issues_the_quarantine_is_unknown(run) -> None:
    dash = _checks(run)["enumerator_dashboard"]
    assert dash["quarantined"].isna().all() and dash["quarantine_reasons"].isna().all()
    assert dash["team"].notna().any()


# -- the report --------------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Each <table>'s enclosing element (tag, class)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.parents: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("wbr", "meta", "br", "img"):
            return
        if tag == "table":
            self.parents.append(self.stack[-1] if self.stack else ("", ""))
        self.stack.append((tag, dict(attrs).get("class") or ""))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass


def test_every_table_of_the_report_scrolls_within_the_page(run) -> None:
    _, _, store, *_ = run
    text = (store.quality("KEN") / REPORT).read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(text)
    assert len(parser.parents) > 10
    assert all(p == ("div", "scroll") for p in parser.parents), parser.parents
    css = text[text.index("<style>"):text.index("</style>")]
    assert re.search(r"\.scroll\{overflow-x:auto", css)
    assert "@media print" in css and "size:A4 landscape" in css
    assert re.search(r"td\.num\{[^}]*\}", css) and "th.num,td.num{text-align:right}" in css
    assert re.search(r"thead th\{[^}]*white-space:normal", css)
    # header cells may wrap after an underscore; numbers are right-aligned
    assert "median_<wbr>duration" in text and '<td class="num">' in text


def test_report_marks_the_enumerators_with_quarantined_interviews(run) -> None:
    _, _, store, *_ = run
    text = (store.quality("KEN") / REPORT).read_text(encoding="utf-8")
    section = re.search(r'<section id="sec-enumerator-dashboard">.*?</section>', text, re.S)
    assert section
    rows = re.findall(r'<tr class="marked">(.*?)</tr>', section.group(0))
    assert any(f'<td class="num">{STRANGER}</td>' in r for r in rows)
    note = re.search(r"Highlighted: enumerators with quarantined interviews \((.*?)\)",
                     section.group(0))
    assert note and str(STRANGER) in note.group(1)
    charts = text[text.index('<section id="charts">'):]
    assert QUARANTINED_LABEL in charts[:charts.index("</section>")]


def test_duration_chart_legend_only_when_someone_is_marked(run) -> None:
    checks = _checks(run, issues=run[3].issues())
    assert QUARANTINED_LABEL in (chart_durations(checks) or "")
    dash = checks["enumerator_dashboard"].assign(quarantined=0)
    clean = chart_durations({**checks, "enumerator_dashboard": dash})
    assert clean and QUARANTINED_LABEL not in clean
    html = render({**checks, "enumerator_dashboard": dash}, title="KEN")
    assert '<tr class="marked">' not in html and "Highlighted:" not in html
