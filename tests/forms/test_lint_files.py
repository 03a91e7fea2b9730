"""Lint checks the study files against the forms: each country file as the loader checks it
(reported as a finding naming file, line and key instead of stopping), keys it would ignore and
simulation rates outside 0–1; the indicator file as the release loads it, plus codes its
expressions compare that the fields' lists lack, domain labels for no level, and domains on
margins no country calibrates to."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner
from workbooks import INSTRUMENTS, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.lint import ERROR, WARNING
from dhsurvey.study_files import lint_study_files, lint_targets

COUNTRY = """\
iso: KEN
name: Kenya
code: 404
languages: [English (en), Kiswahili (sw)]
fieldwork: {start: 2026-02-02, end: 2026-04-30}
households_per_psu: 20
strata:
  - {region: 1, urban_rural: 1, eas: 10, psus: 2}
teams:
  - {id: 1, enumerators: [101], regions: [1]}
margins:
  source: synthetic
  totals:
    uses_internet: {1: 10, 0: 10}
"""

INDICATORS = """\
domains:
  test_form:
    internet: {expression: "${uses_internet}", labels: {1: Online, 0: Offline}}
    online: {margin: uses_internet, labels: {1: Online, 0: Offline}}
indicators:
  - id: ind_online
    form: test_form
    label: Online
    value: ${uses_internet} = 1
    universe: ${uses_internet} = 1 or ${uses_internet} = 0
    definition: {numerator: Online, universe: Asked, refusals: None}
"""


def _study(tmp_path: Path, country: str = COUNTRY, indicators: str = INDICATORS) -> Path:
    folder = tmp_path / "instruments"
    write_workbook(folder / "form.xlsx")
    (folder / "countries").mkdir()
    (folder / "countries" / "KEN.yaml").write_text(country, encoding="utf-8")
    (folder / "indicators.yaml").write_text(indicators, encoding="utf-8")
    return folder


def _findings(folder: Path) -> list:
    return lint_study_files(lint_targets([folder])[1])


def test_clean_study_files_have_no_findings(tmp_path: Path) -> None:
    assert _findings(_study(tmp_path)) == []


def test_a_country_file_the_loader_rejects_names_line_and_key(tmp_path: Path) -> None:
    country = COUNTRY.replace("eas: 10, psus: 2", "eas: 10, psus: 12")
    folder = _study(tmp_path, country)
    (hit,) = _findings(folder)
    assert (hit.rule, hit.severity, hit.column, hit.row) == ("country-invalid", ERROR,
                                                            "strata[0].psus", 8)
    assert hit.file == str(folder / "countries" / "KEN.yaml")
    assert "exceeds the frame's EAs" in hit.message


def test_country_levels_are_checked_against_the_forms(tmp_path: Path) -> None:
    (hit,) = _findings(_study(tmp_path, COUNTRY.replace("{1: 10, 0: 10}", "{1: 10, 3: 10}")))
    assert (hit.rule, hit.column) == ("country-invalid", "margins.totals.uses_internet")
    assert hit.row == 14


def test_country_keys_the_loader_ignores_and_rates_outside_0_1(tmp_path: Path) -> None:
    country = COUNTRY.replace("households_per_psu: 20",
                              "households_per_psu: 20\nhousehold_per_psu: 25\n"
                              "simulation: {refusal: 1.5, vacant: 0.1}")
    found = {(f.rule, f.column, f.row, f.severity) for f in _findings(_study(tmp_path, country))}
    assert found == {("country-key-unknown", "household_per_psu", 7, WARNING),
                     ("country-rate-invalid", "simulation.refusal", 8, ERROR)}


def test_a_country_file_that_is_not_yaml(tmp_path: Path) -> None:
    (hit,) = _findings(_study(tmp_path, COUNTRY + "strata: [unclosed\n"))
    assert hit.rule == "country-invalid" and hit.row is not None and "YAML" in hit.message


def test_an_indicator_on_an_unknown_field(tmp_path: Path) -> None:
    indicators = INDICATORS.replace("value: ${uses_internet} = 1", "value: ${online_now} = 1")
    (hit,) = _findings(_study(tmp_path, indicators=indicators))
    assert (hit.rule, hit.column, hit.row) == ("indicator-invalid", "indicators[0]", 6)
    assert "online_now" in hit.message


def test_an_indicator_expression_that_does_not_parse(tmp_path: Path) -> None:
    indicators = INDICATORS.replace("value: ${uses_internet} = 1", "value: ${uses_internet} =")
    (hit,) = _findings(_study(tmp_path, indicators=indicators))
    assert hit.rule == "indicator-invalid" and hit.column == "indicators[0]"


def test_codes_labels_and_margins_of_indicators_and_domains(tmp_path: Path) -> None:
    indicators = (INDICATORS.replace("${uses_internet} = 1 or ${uses_internet} = 0",
                                     "${uses_internet} = 1 or ${uses_internet} = 5")
                  .replace("margin: uses_internet", "margin: online_share")
                  .replace("0: Offline}}\n    online", "0: Offline, 7: Unknown}}\n    online"))
    found = {(f.rule, f.column, f.row): f.message
             for f in _findings(_study(tmp_path, indicators=indicators))}
    assert set(found) == {
        ("indicator-code-not-in-list", "indicators[0].universe", 10),
        ("domain-label-unknown", "domains.test_form.internet.labels", 3),
        ("domain-margin-unknown", "domains.test_form.online.margin", 4),
    }
    assert "5 for 'uses_internet'" in found[("indicator-code-not-in-list",
                                             "indicators[0].universe", 10)]
    assert "['7']" in found[("domain-label-unknown", "domains.test_form.internet.labels", 3)]


def test_cli_lints_the_folder_and_single_yaml_files(tmp_path: Path) -> None:
    folder = _study(tmp_path, COUNTRY.replace("households_per_psu: 20",
                                              "households_per_psu: 20\nteam: 3"))
    runner = CliRunner()
    options = ["--no-validate", "--simulate", "0", "--no-summary"]
    whole = runner.invoke(app, ["lint", str(folder), *options])
    assert "KEN.yaml:row 7:team: warning country-key-unknown" in whole.output
    alone = runner.invoke(app, ["lint", str(folder / "countries" / "KEN.yaml"), *options])
    assert "country-key-unknown" in alone.output
    assert "form.xlsx" not in alone.output  # the workbook itself is not linted then
    assert alone.exit_code == 0
    missing = runner.invoke(app, ["lint", str(folder / "nope.yaml"), *options])
    assert missing.exit_code == 1 and "indicator-invalid: file not found" in missing.output


def test_a_broken_workbook_does_not_produce_false_file_findings(tmp_path: Path) -> None:
    folder = _study(tmp_path)
    (folder / "form.xlsx").write_bytes(b"not a workbook")
    write_workbook(folder / "other.xlsx")
    # The indicators are not checked against an incomplete set of forms (and lint says so);
    # the country file still gets the checks that need no form.
    (hit,) = _findings(folder)
    assert (hit.rule, hit.file) == ("indicator-invalid", str(folder / "indicators.yaml"))
    assert "do not all load" in hit.message


def test_the_study_files_have_no_findings() -> None:
    assert _findings(INSTRUMENTS) == []
