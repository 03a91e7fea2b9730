"""A broken expression is a library error: a code, the cell it is written in, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner
from workbooks import valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.exports import write_central_zip
from dhsurvey.forms.expressions import ExpressionError, evaluate, parse
from dhsurvey.forms.frames import FormData
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import META, RawForm, field_columns

ROOT = Path(__file__).resolve().parents[2]
BROKEN = "regex(., '[')"  # parses; fails on data (the pattern is not a regular expression)
AGE_ROW = 6  # Excel row of 'age' in valid_survey()


def _broken_workbook(folder: Path) -> Path:
    survey = valid_survey()
    survey[AGE_ROW - 2] = {**survey[AGE_ROW - 2], "constraint": BROKEN}
    return write_workbook(folder / "f.xlsx", survey)


def test_expression_error_is_a_library_error_and_a_value_error() -> None:
    with pytest.raises(ExpressionError) as syntax:
        parse("${a} >> 3")
    assert isinstance(syntax.value, DhsurveyError) and isinstance(syntax.value, ValueError)
    assert syntax.value.code == "expression-syntax"
    assert str(syntax.value) == "unexpected '>' at position 6 in '${a} >> 3'"
    assert syntax.value.context == {"expression": "${a} >> 3", "position": 6}
    with pytest.raises(ExpressionError) as evaluation:
        evaluate("${missing} = 1", pd.DataFrame({"a": [1]}))
    assert evaluation.value.code == "expression-evaluation"


def test_form_data_names_the_cell(tmp_path: Path) -> None:
    model = load_form(_broken_workbook(tmp_path))
    data = FormData(model, pd.DataFrame({"age": ["12"]}, index=["uuid:1"]))
    with pytest.raises(ExpressionError, match="invalid regular expression") as info:
        data.evaluate_bool(model["age"], model["age"].constraint)
    assert info.value.context == {
        "file": model.path, "sheet": "survey", "row": AGE_ROW, "column": "constraint",
        "form": model.form_id, "field": "age", "expression": BROKEN, "position": 0,
    }
    assert str(info.value).startswith(f"{model.path}, sheet 'survey', row {AGE_ROW}, column "
                                      "'constraint', form 'test_form', field 'age': invalid")


def test_cli_prints_one_block_for_a_broken_expression(tmp_path: Path) -> None:
    instruments = tmp_path / "instruments"
    model = load_form(_broken_workbook(instruments))
    (instruments / "countries").mkdir()
    shutil.copy(ROOT / "instruments" / "countries" / "KEN.yaml", instruments / "countries")
    row = dict.fromkeys(META + field_columns(model))
    row.update(KEY="uuid:1", form_id=model.form_id, form_version=model.version, consent="1",
               age="12", uses_internet="1")
    export = write_central_zip(RawForm(model.form_id, pd.DataFrame([row], dtype=object)), model,
                               tmp_path / "export.zip")
    result = CliRunner().invoke(app, ["validate", str(export), "--out", str(tmp_path / "out"),
                                      "--instruments", str(instruments)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("error [expression-evaluation] invalid regular expression '['")
    assert [line.split()[0] for line in lines[1:]] == [
        "file", "sheet", "row", "column", "form", "field", "expression", "position"]
    assert f"row      {AGE_ROW}" in result.output and BROKEN in result.output
