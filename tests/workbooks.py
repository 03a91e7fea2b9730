"""Build small XLSForm workbooks for tests: each fixture is a readable table in the test."""

from __future__ import annotations

from pathlib import Path

#: The study's own instruments.
INSTRUMENTS = Path(__file__).parents[1] / "instruments"

EN = "English (en)"
SW = "Kiswahili (sw)"

SURVEY_HEADER = [
    "type", "name", f"label::{EN}", f"label::{SW}", "label::stata", f"hint::{EN}", f"hint::{SW}",
    "required", f"required_message::{EN}", f"required_message::{SW}", "relevant", "constraint",
    f"constraint_message::{EN}", f"constraint_message::{SW}", "calculation", "pii",
]
CHOICES_HEADER = ["list_name", "name", f"label::{EN}", f"label::{SW}", "label::stata"]
SETTINGS = {"form_title": "Test form", "form_id": "test_form", "default_language": EN}


def q(type_: str, name: str, en: str = "", sw: str = "", **cells: str) -> dict[str, str]:
    """One survey row; a question gets complete labels, hints and messages unless overridden."""
    row = {"type": type_, "name": name}
    data_type = type_.split()[0] not in ("begin_group", "end_group", "begin_repeat",
                                         "end_repeat", "calculate", "note")
    if en:
        row[f"label::{EN}"] = en
        row[f"label::{SW}"] = sw or f"{en} (sw)"
        row["label::stata"] = en[:80]
    if data_type and type_ not in ("start", "end", "today", "deviceid"):
        row.update({
            f"hint::{EN}": "A hint.", f"hint::{SW}": "Dokezo.", "required": "yes",
            f"required_message::{EN}": "Required.", f"required_message::{SW}": "Inahitajika.",
        })
    if type_ in ("start", "end", "today", "deviceid", "calculate") or data_type:
        row["pii"] = "none"
    message = cells.pop("message", None)
    if message is not None:
        row[f"constraint_message::{EN}"] = message
        row[f"constraint_message::{SW}"] = message + " (sw)"
    row.update(cells)
    return {k: v for k, v in row.items() if v is not None}


def c(list_name: str, name: str, en: str, sw: str = "") -> dict[str, str]:
    return {"list_name": list_name, "name": name, f"label::{EN}": en,
            f"label::{SW}": sw or f"{en} (sw)", "label::stata": en}


YES_NO = [c("yes_no", "1", "Yes", "Ndiyo"), c("yes_no", "0", "No", "Hapana")]


def valid_survey() -> list[dict[str, str]]:
    """A small form that lints clean: consent gate, a group, a select and an integer."""
    return [
        q("start", "start"),
        q("end", "end"),
        q("select_one yes_no", "consent", "Do you agree to take part?", "Unakubali kushiriki?"),
        q("begin_group", "main", "Main", "Kuu", relevant="${consent} = 1"),
        q("integer", "age", "Age in years", "Umri kwa miaka", constraint=". >= 0 and . <= 110",
          message="0 to 110.", pii="quasi"),
        q("select_one yes_no", "uses_internet", "Uses the internet?", "Anatumia intaneti?",
          relevant="${age} >= 12", pii="quasi"),
        q("end_group", "main"),
    ]


def write_workbook(
    path: Path,
    survey: list[dict[str, str]] | None = None,
    choices: list[dict[str, str]] | None = None,
    settings: dict[str, str] | None = None,
    *,
    survey_header: list[str] | None = None,
    choices_header: list[str] | None = None,
    sheets: tuple[str, ...] = ("survey", "choices", "settings"),
) -> Path:
    """Write an .xlsx with the given rows; headers default to the project's conventions."""
    import openpyxl

    survey = valid_survey() if survey is None else survey
    choices = YES_NO if choices is None else choices
    settings = SETTINGS if settings is None else settings
    book = openpyxl.Workbook()
    book.remove(book.active)
    tables = {
        "survey": (survey_header or _header(SURVEY_HEADER, survey), survey),
        "choices": (choices_header or _header(CHOICES_HEADER, choices), choices),
        "settings": (list(settings), [settings]),
    }
    for sheet in sheets:
        header, rows = tables[sheet]
        ws = book.create_sheet(sheet)
        ws.append(header)
        for row in rows:
            ws.append([row.get(h, None) for h in header])
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def _header(base: list[str], rows: list[dict[str, str]]) -> list[str]:
    extra = [k for r in rows for k in r if k not in base]
    return base + list(dict.fromkeys(extra))


def instruments_with_budget(folder: Path, budget: float) -> Path:
    """A copy of the study's instruments in ``folder`` whose disclosure rules allow local
    suppression of ``budget`` of a variable: a test country of a few hundred households has
    too few children per stratum for the study's 5 % (the gate rightly blocks it), and the
    tests that use this copy are about something else (batches, the demo's wiring, R's
    reproduction of the files). ``budget`` 1.0 relaxes the thresholds too (k = 1, no answer
    declared harmful, any global risk): a few hundred households leave
    cells of region × urban/rural × sex × age group (the margin variables every record keeps)
    with fewer than three children, which no suppression can protect. test_intruder.py
    releases full samples under the study's own rules."""
    import shutil

    import yaml

    shutil.copytree(INSTRUMENTS, folder, dirs_exist_ok=True)
    path = folder / "disclosure.yaml"
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert rules["suppression_budget"] == 0.05
    rules["suppression_budget"] = budget
    if budget >= 1.0:
        rules.update(k=1, max_global_risk=1.0)
        rules["l_diversity"]["sensitive"] = {}
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return folder


def code_location_instruments() -> Path:
    """The instruments the Dagster code location reads (``DHSURVEY_INSTRUMENTS``; the
    pipeline tests point it at a copy, tests/pipelines/conftest.py)."""
    import os

    return Path(os.environ["DHSURVEY_INSTRUMENTS"])
