"""A new country, the forms' attached files, and what lint says of both.

`dhsurvey country new` writes a file that loads with every key present; `country media`
adds the country to countries.csv, regions.csv, schools.csv and education.csv; a country file
edited without rewriting them is refused by every loader and reported by lint; a language no
country fields need not be complete, one a country fields must be.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.errors import ConfigError
from dhsurvey.fieldwork.config import COUNTRY_KEYS, load_countries
from dhsurvey.forms.lint import ERROR, INFO, lint_form

INSTRUMENTS = Path(__file__).parents[2] / "instruments"


@pytest.fixture
def instruments(tmp_path: Path) -> Path:
    folder = tmp_path / "instruments"
    shutil.copytree(INSTRUMENTS, folder)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_new_country_is_scaffolded_and_joins_the_attachments(instruments: Path) -> None:
    result = CliRunner().invoke(app, [
        "country", "new", "lao", "--name", "Lao PDR", "--code", "418",
        "--language", "English (en)", "--instruments", str(instruments)])
    assert result.exit_code == 0, result.output
    path = instruments / "countries" / "LAO.yaml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert set(data) <= COUNTRY_KEYS and {"regions", "schools", "education", "helpline",
                                          "platforms", "margins", "strata"} <= set(data)
    # Every key is explained where it is written.
    for key in ("languages", "admin1", "regions", "strata", "helpline", "schools", "education"):
        line = next(line for line in text.splitlines() if line.startswith(f"{key}:"))
        assert "#" in line, key
    configs = load_countries(instruments)  # the attachments were rewritten: nothing stale
    lao = next(c for c in configs if c.iso == "LAO")
    assert [r.code for r in lao.divisions] == [41801, 41802]
    assert {lv.isced for lv in lao.schools} == {1, 2, 3, 4, 9}
    assert [r["iso"] for r in _rows(instruments / "countries.csv")].count("LAO") == 1
    assert {r["name"] for r in _rows(instruments / "regions.csv")
            if r["country"] == "418"} == {"41801", "41802"}
    again = CliRunner().invoke(app, [
        "country", "new", "LAO", "--name", "Lao PDR", "--code", "418",
        "--language", "English (en)", "--instruments", str(instruments)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_country_file_edited_without_its_attachments_is_refused(instruments: Path) -> None:
    path = instruments / "countries" / "KEN.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        'number: "116"', 'number: "1195"', 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_countries(instruments)
    assert info.value.code == "attachment-stale"
    assert "countries.csv" in str(info.value) and "dhsurvey country media" in str(info.value)
    lint = CliRunner().invoke(app, ["lint", str(instruments / "countries" / "KEN.yaml"),
                                    "--no-summary"])
    assert lint.exit_code == 1 and "attachment-stale" in lint.output
    assert CliRunner().invoke(app, ["country", "media", "--instruments",
                                    str(instruments)]).exit_code == 0
    kenya = next(r for r in _rows(instruments / "countries.csv") if r["iso"] == "KEN")
    assert kenya["helpline"] == "1195"
    assert len(load_countries(instruments)) == 13


def test_only_fielded_languages_must_be_complete(instruments: Path) -> None:
    """A Thai label removed: an error while Thailand fields Thai, information once no country
    does (and always information for a language the workbook marks as a draft)."""
    import openpyxl

    book = instruments / "household.xlsx"
    wb = openpyxl.load_workbook(book)
    ws = wb["survey"]
    header = [c.value for c in ws[1]]
    row = next(r for r in range(2, ws.max_row + 1)
               if ws.cell(r, header.index("name") + 1).value == "hh_number")
    ws.cell(row, header.index("label::Thai (th)") + 1).value = None
    settings = wb["settings"]
    columns = [c.value for c in settings[1]]
    settings.cell(2, columns.index("draft_languages") + 1, "am")  # Thai no longer a draft
    wb.save(book)

    def thai(fielded: set[str] | None) -> set[str]:
        return {f.severity for f in lint_form(book, compile=False, fielded=fielded)
                if f.rule == "translation-missing" and "Thai" in (f.column or "")}

    assert thai(None) == {ERROR}
    assert thai({"en", "sw", "th"}) == {ERROR}
    assert thai({"en", "sw"}) == {INFO}
