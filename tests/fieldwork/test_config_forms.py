"""Country files against the forms: codes and languages the forms do not know fail at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from workbooks import EN, SETTINGS, YES_NO, c, q, valid_survey, write_workbook

from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.config import load_countries, load_country
from dhsurvey.forms.model import load_form

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
FORMS = {f: load_form(INSTRUMENTS / f"{f}.xlsx")
         for f in ("household", "child", "caregiver", "frontline_worker")}


def _variant(folder: Path, edit) -> Path:
    data = yaml.safe_load((INSTRUMENTS / "countries" / "KEN.yaml").read_text())
    edit(data)
    path = folder / "KEN.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


CASES = {
    "release language not in forms": (lambda d: d.update(release_language="French (fr)"),
                                      "release_language"),
    "margin level not a code": (lambda d: d["margins"]["totals"].update(
        sex={1: d["margins"]["totals"]["sex"][1], 3: d["margins"]["totals"]["sex"][2]}),
        "margins.totals.sex"),
    "team in a region of no stratum": (lambda d: d["teams"][0].update(regions=[40401, 40499]),
                                       "teams[0].regions"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_checked_against_the_forms(tmp_path: Path, name: str) -> None:
    edit, key = CASES[name]
    path = _variant(tmp_path, edit)
    load_country(_variant(tmp_path / "ok", lambda d: None), FORMS)  # the shipped one is fine
    with pytest.raises(ConfigError) as info:
        load_country(path, FORMS)
    assert info.value.context["file"] == path
    assert info.value.context.get("field") == key, str(info.value)


def test_urban_rural_codes_come_from_the_forms(tmp_path: Path) -> None:
    survey = [*valid_survey(), q("select_one urban_rural", "urban_rural", "Area", "Eneo",
                                 pii="quasi")]
    only_urban = load_form(write_workbook(tmp_path / "f.xlsx", survey,
                                          [*YES_NO, c("urban_rural", "1", "Urban")],
                                          {**SETTINGS, "default_language": EN}))
    path = _variant(tmp_path / "countries", lambda d: None)
    with pytest.raises(ConfigError) as info:
        load_country(path, [only_urban])
    strata = yaml.safe_load(path.read_text())["strata"]
    first_rural = next(i for i, s in enumerate(strata) if s["urban_rural"] == 2)
    assert info.value.context.get("field") == f"strata[{first_rural}].urban_rural", \
        str(info.value)


def test_load_countries_checks_against_the_folders_own_forms(tmp_path: Path) -> None:
    shutil.copy(INSTRUMENTS / "household.xlsx", tmp_path / "household.xlsx")
    _variant(tmp_path / "countries", lambda d: d.update(languages=["French (fr)"]))
    with pytest.raises(ConfigError) as info:
        load_countries(tmp_path)  # no forms passed: the folder's workbooks are the forms
    assert info.value.context.get("field") == "languages"
    assert len(load_countries(INSTRUMENTS)) == 13
