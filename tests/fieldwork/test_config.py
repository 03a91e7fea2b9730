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


def test_shipped_countries_load_against_the_instruments() -> None:
    configs = load_countries(INSTRUMENTS, FORMS)
    assert [c.iso for c in configs] == ["KEN", "TZA", "UGA"]
    for c in configs:
        assert c.psus > 0 and len(c.enumerators) == len(set(c.enumerators))
        assert c.fieldwork_start < c.fieldwork_end
        totals = {round(sum(v.values())) for v in c.margins.values()}
        assert len(totals) == 1
        assert c.margins_source
        assert c.max_replicates == 200


def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((INSTRUMENTS / "countries" / "KEN.yaml").read_text())
    edit(data)
    path = tmp_path / "KEN.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CASES = {
    "missing name": (lambda d: d.pop("name"), "name"),
    "bad date": (lambda d: d["fieldwork"].update(start="2026-02-30"), "fieldwork.start"),
    "end before start": (lambda d: d["fieldwork"].update(end="2025-01-01"), "fieldwork.end"),
    "more PSUs than EAs": (lambda d: d["strata"][0].update(psus=10_000), "strata[0].psus"),
    "urban_rural code": (lambda d: d["strata"][0].update(urban_rural=3),
                         "strata[0].urban_rural"),
    "duplicate stratum": (lambda d: d["strata"].append(dict(d["strata"][0])), "strata[16].region"),
    "enumerator in two teams": (lambda d: d["teams"][1]["enumerators"].append(101),
                                "teams[1].enumerators"),
    "margins disagree": (lambda d: d["margins"]["totals"]["sex"].update({1: 1}),
                         "margins.totals"),
    "not a number": (lambda d: d.update(households_per_psu="twenty"), "households_per_psu"),
    "one replicate": (lambda d: d.update(max_replicates=1), "max_replicates"),
    "unknown simulation key": (lambda d: d["simulation"].update(vacnt=0.1), "simulation"),
    "region of another country": (lambda d: d["strata"][0].update(region=83401), "strata"),
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
