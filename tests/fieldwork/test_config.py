"""Country configurations: the three shipped ones load; bad ones fail naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.config import load_countries, load_country
from dhsurvey.forms.model import load_form

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
FORMS = [load_form(INSTRUMENTS / f"{f}.xlsx") for f in ("household", "child")]


WAVE = ["ETH", "IDN", "KEN", "KHM", "MOZ", "MYS", "NAM", "PHL", "THA", "TZA", "UGA", "VNM",
        "ZAF"]


def test_shipped_countries_load_against_the_instruments() -> None:
    configs = load_countries(INSTRUMENTS, FORMS)
    assert [c.iso for c in configs] == WAVE
    for c in configs:
        assert c.psus > 0 and len(c.enumerators) == len(set(c.enumerators))
        assert c.fieldwork_start < c.fieldwork_end
        totals = {round(sum(v.values())) for v in c.margins.values()}
        assert len(totals) == 1
        assert c.margins_source
        assert c.max_replicates == 200
        # Country content: every division stratified urban and rural, ISCED-mapped levels,
        # a helpline, platform examples, and the interview languages' labels.
        assert {s.region for s in c.strata} == {r.code for r in c.divisions}
        assert len(c.divisions) <= len(c.strata) <= 2 * len(c.divisions)
        assert {c.released_regions[r.code] for r in c.divisions} == {
            c.zone_code(z.code) for z in c.zones}  # every zone holds a region
        assert c.helpline is not None and c.helpline.number.isdigit()
        assert all(c.platforms[k] for k in ("social", "messaging", "games", "video"))
        for levels in (c.schools, c.education):
            assert levels and {lv.isced for lv in levels} <= set(range(10))
            assert all(set(c.language_codes) <= set(lv.labels) for lv in levels)
        assert c.targets["households"] == c.psus * c.households_per_psu

def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((INSTRUMENTS / "countries" / "KEN.yaml").read_text())
    edit(data)
    path = tmp_path / "KEN.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


KEN = yaml.safe_load((INSTRUMENTS / "countries" / "KEN.yaml").read_text())

CASES = {
    "missing name": (lambda d: d.pop("name"), "name"),
    "bad date": (lambda d: d["fieldwork"].update(start="2026-02-30"), "fieldwork.start"),
    "end before start": (lambda d: d["fieldwork"].update(end="2025-01-01"), "fieldwork.end"),
    "more PSUs than EAs": (lambda d: d["strata"][0].update(psus=10_000), "strata[0].psus"),
    "urban_rural code": (lambda d: d["strata"][0].update(urban_rural=3),
                         "strata[0].urban_rural"),
    "duplicate stratum": (lambda d: d["strata"].append(dict(d["strata"][0])),
                          f"strata[{len(KEN['strata'])}].region"),
    "enumerator in two teams": (lambda d: d["teams"][1]["enumerators"].append(101),
                                "teams[1].enumerators"),
    "margins disagree": (lambda d: d["margins"]["totals"]["sex"].update({1: 1}),
                         "margins.totals"),
    "not a number": (lambda d: d.update(households_per_psu="twenty"), "households_per_psu"),
    "one replicate": (lambda d: d.update(max_replicates=1), "max_replicates"),
    "unknown simulation key": (lambda d: d["simulation"].update(vacnt=0.1), "simulation"),
    "region not listed": (lambda d: d["strata"][1].update(region=83401), "strata[1].region"),
    "region of another country": (lambda d: d["regions"][0].update(code=83401),
                                  "regions[0].code"),
    "school label missing": (lambda d: d["schools"][0]["label"].pop("sw"), "schools[0].label"),
    "ISCED level": (lambda d: d["education"][1].update(isced=11), "education[1].isced"),
    "platform kind": (lambda d: d["platforms"].update(forums=["x"]), "platforms"),
    "language not in forms": (lambda d: d.update(languages=["French (fr)"]), "languages"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_config_names_the_key(tmp_path: Path, name: str) -> None:
    edit, key = CASES[name]
    path = _variant(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_country(path, FORMS)
    assert info.value.context["file"] == path
    assert info.value.context.get("field") == key, str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "KEN.yaml"
    path.write_text("iso: KEN\nname: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_country(path)
    assert info.value.context["row"] >= 2


def test_file_name_must_match_iso(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: None).rename(tmp_path / "TZA.yaml")
    with pytest.raises(ConfigError, match="named after"):
        load_country(path)
