"""XLSForms as found in the wild: whatever pyxform compiles, ``load_form`` loads.

Each workbook here is written on the spot (no third-party workbook is committed) and shows one
trait of real public forms that once stopped dhsurvey: language columns without a code,
headers in other spellings, empty or missing sheets, non-ASCII names, Excel booleans, literal
defaults that look like text, deeply nested expressions, sheets that declare a million rows.
Every test first asks pyxform whether it accepts the workbook, then checks what the model says.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyxform.xls2xform import convert

from dhsurvey.errors import FormError
from dhsurvey.forms.expressions import ExpressionError, evaluate, parse
from dhsurvey.forms.frames import FormData
from dhsurvey.forms.model import FormModel, load_form

Row = list[Any]


def _book(path: Path, survey: list[Row], choices: list[Row] | None = None,
          settings: list[Row] | None = None, *, extra_sheets: tuple[str, ...] = ()) -> Path:
    """An .xlsx with these rows (the first row of each sheet is its header row as written).

    ``choices``/``settings`` None leave the sheet out; ``[]`` writes it empty.
    """
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in (("survey", survey), ("choices", choices), ("settings", settings)):
        if rows is not None:
            ws = book.create_sheet(name)
            for row in rows:
                ws.append(row)
    for name in extra_sheets:
        book.create_sheet(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def _accepted(path: Path) -> FormModel:
    """pyxform compiles the workbook and dhsurvey loads it."""
    result = convert(xlsform=str(path), validate=False)
    assert "<h:html" in result.xform
    return load_form(path)


def test_language_names_without_a_code(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "langs.xlsx",
        [["type", "name", "label::English", "label::Français", "hint::Français"],
         ["select_one yn", "ok", "OK?", "D'accord ?", "Choisissez"],
         ["text", "why", "Why?", "Pourquoi ?", None]],
        [["list_name", "name", "label::English", "label::Français"],
         ["yn", "1", "Yes", "Oui"], ["yn", "0", "No", "Non"]],
    )
    model = _accepted(path)
    assert model.languages == ["English", "Français"]
    assert model["ok"].labels == {"English": "OK?", "Français": "D'accord ?"}
    assert model["ok"].hints == {"Français": "Choisissez"}
    assert model.choice_lists["yn"].label("1", "Français") == "Oui"
    assert model.default_language == "English"


def test_headers_in_other_spellings_and_pyxform_aliases(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "headers.xlsx",
        [["Type", " Name ", "Label::English (en)", "Relevance", "calculate", "Required"],
         ["integer", "n", "How many?", None, None, "yes"],
         ["select_one colours", "fav", "Favourite?", "${n} > 0", None, None],
         ["calculate", "twice", None, None, "${n} * 2", None]],
        [["list name", "Name", "Label::English (en)", "Region"],
         ["colours", "r", "Red", "north"], ["colours", "g", "Green", "south"]],
        [["Form_Title", "form_id"], ["Spellings", "spellings"]],
    )
    model = _accepted(path)
    assert [i.name for i in model.items] == ["n", "fav", "twice"]
    assert model["fav"].relevant == "${n} > 0"
    assert model["twice"].calculation == "${n} * 2"
    assert model["n"].required == "yes"
    assert model.choice_lists["colours"].codes() == ["r", "g"]
    assert model.choice_lists["colours"].choices[0].extra["Region"] == "north"
    assert model.languages == ["English (en)"]
    assert model.form_id == "spellings" and model.title == "Spellings"


def test_list_name_with_underscore_and_mixed_case(tmp_path: Path) -> None:
    path = _book(tmp_path / "list_name.xlsx",
                 [["type", "name", "label"], ["select_multiple fruit", "fruit", "Fruit"]],
                 [["List_Name", "name", "label"], ["fruit", "apple", "Apple"]])
    model = _accepted(path)
    assert model.choices_for(model["fruit"]).codes() == ["apple"]  # type: ignore[union-attr]
    assert model.languages == ["default"]


def test_pyxform_type_spellings(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "types.xlsx",
        [["type", "name", "label"],
         ["imei", "device", None],
         ["uri:deviceid", "device2", None],
         ["add text prompt", "comment", "Comment"],
         ["select one from yn", "ok", "OK?"],
         ["select all that apply from yn", "both", "Both?"],
         ["select_one yn or specify other", "other_ok", "OK, or other?"]],
        [["list_name", "name", "label"], ["yn", "1", "Yes"], ["yn", "0", "No"]],
    )
    model = _accepted(path)
    assert [(i.type, i.list_name, i.or_other) for i in model.items] == [
        ("deviceid", None, False), ("deviceid", None, False), ("text", None, False),
        ("select_one", "yn", False),
        ("select_multiple", "yn", False), ("select_one", "yn", True)]


def test_pyxform_row_rules(tmp_path: Path) -> None:
    """Smart quotes read as quotes; a note may have no name; a row with no type, name or label
    is a comment."""
    path = _book(
        tmp_path / "rules.xlsx",
        [["type", "name", "label", "relevant", "hint"],
         ["select_one yn", "ok", "OK?", None, None],
         ["note", None, "Thank you", "${ok} = \u20181\u2019", None],
         [None, None, None, None, "a designer's comment"],
         ["text", "why", "Why?", "${ok} = \u201c0\u201d", None]],
        [["list_name", "name", "label"], ["yn", "1", "Yes"], ["yn", "0", "No"]],
    )
    model = _accepted(path)
    assert [i.name for i in model.items] == ["ok", "generated_note_name_3", "why"]
    assert model["generated_note_name_3"].relevant == "${ok} = '1'"
    assert model["why"].relevant == '${ok} = "0"'


def test_a_lone_sheet_is_the_survey(tmp_path: Path) -> None:
    import openpyxl

    path = tmp_path / "lone.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "Sheet1"
    book.active.append(["type", "name", "label"])
    book.active.append(["integer", "age", "Age"])
    book.save(path)
    assert [i.name for i in _accepted(path).items] == ["age"]


def test_select_one_external(tmp_path: Path) -> None:
    import openpyxl

    path = _book(tmp_path / "external.xlsx",
                 [["type", "name", "label", "choice_filter"],
                  ["select_one counties", "county", "County", None],
                  ["select_one_external cities", "city", "City", "county=${county}"]],
                 [["list_name", "name", "label"], ["counties", "a", "A"], ["counties", "b", "B"]])
    book = openpyxl.load_workbook(path)
    sheet = book.create_sheet("external_choices")
    for row in [["list_name", "name", "label", "county"], ["cities", "x", "X", "a"]]:
        sheet.append(row)
    book.save(path)
    model = _accepted(path)
    city = model["city"]
    assert (city.type, city.list_name, city.is_select) == ("select_one_external", "cities", True)
    assert model.choices_for(city) is None  # its choices live outside the form, on devices


@pytest.mark.parametrize("choices,settings,extra", [
    ([], [], ()),  # empty choices and settings sheets
    (None, None, ()),  # survey only
    ([["list_name", "name", "label"]], [["form_title"]], ("notes",)),  # headers only
], ids=["empty-sheets", "survey-only", "headers-only"])
def test_empty_and_missing_optional_sheets(tmp_path: Path, choices: list[Row] | None,
                                           settings: list[Row] | None,
                                           extra: tuple[str, ...]) -> None:
    path = _book(tmp_path / "sheets.xlsx",
                 [["type", "name", "label"], ["text", "name_q", "Your name?"]],
                 choices, settings, extra_sheets=extra)
    model = _accepted(path)
    assert [i.name for i in model.items] == ["name_q"]
    assert model.choice_lists == {}
    assert model.form_id == "sheets"


def test_non_ascii_question_and_choice_names(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "names.xlsx",
        [["type", "name", "label", "relevant"],
         ["integer", "âge", "Âge", None],
         ["select_one sí_no", "dépistage", "Dépistage ?", "${âge} >= 15"],
         ["calculate", "年龄", None, None]],
        [["list_name", "name", "label"], ["sí_no", "sí", "Sí"], ["sí_no", "não", "Não"]],
    )
    # The calculate row needs its calculation: written after the header to keep rows short.
    import openpyxl

    book = openpyxl.load_workbook(path)
    book["survey"]["E1"] = "calculation"
    book["survey"]["E4"] = "${âge} + 1"
    book.save(path)
    model = _accepted(path)
    assert [i.name for i in model.items] == ["âge", "dépistage", "年龄"]
    assert model.choice_lists["sí_no"].codes() == ["sí", "não"]
    frame = pd.DataFrame({"âge": [10.0, 20.0]})
    assert evaluate(model["dépistage"].relevant, frame).tolist() == [False, True]
    assert evaluate(model["年龄"].calculation, frame).tolist() == [11.0, 21.0]


def test_excel_booleans_in_bind_columns(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "booleans.xlsx",
        [["type", "name", "label", "required", "read_only", "relevant"],
         ["text", "a", "A", True, False, None],
         ["text", "b", "B", "TRUE", "yes", "yes"],
         ["text", "c", "C", "true()", None, "FALSE"],
         ["text", "d", "D", "No", None, "${a} != ''"]],
    )
    model = _accepted(path)
    assert [model[n].required for n in "abcd"] == ["yes", "yes", "yes", ""]
    assert model["a"].cells["read_only"] == "FALSE"
    assert model["b"].relevant == "true()" and model["c"].relevant == "false()"
    data = FormData(model, pd.DataFrame({"a": ["x", ""], "b": ["y", "y"], "c": [None, None],
                                         "d": [None, None]}))
    assert data.relevant(model["b"]).tolist() == [True, True]
    assert data.relevant(model["c"]).tolist() == [False, False]
    assert data.relevant(model["d"]).tolist() == [True, False]


def test_static_defaults_are_literals(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "defaults.xlsx",
        [["type", "name", "label", "default"],
         ["text", "status", "Status", "N/A (none)"],
         ["date", "visit", "Visit", "2024-01-31"],
         ["integer", "n", "N", "3"],
         ["integer", "m", "M", "${n} + 1"],
         ["date", "later", "Later", "today()"]],
    )
    model = _accepted(path)
    assert model["status"].default == "N/A (none)"
    assert not model["status"].dynamic_default and "default" not in model["status"].expressions()
    assert not model["visit"].dynamic_default and not model["n"].dynamic_default
    assert model["m"].expressions()["default"] == "${n} + 1"
    assert model["later"].dynamic_default


def test_odk_math_functions(tmp_path: Path) -> None:
    path = _book(tmp_path / "math.xlsx",
                 [["type", "name", "label", "calculation"],
                  ["decimal", "x", "X", None],
                  ["calculate", "y", None, "round(sqrt(${x}) + log10(100) + cos(0) + pi() - pi()"
                                           " + atan2(0, 1) + exp(0) + sin(0), 3)"]])
    model = _accepted(path)
    data = FormData(model, pd.DataFrame({"x": [4.0, 9.0]}))
    assert data.evaluate(model["y"], model["y"].calculation).tolist() == [6.0, 7.0]


def _nested_if(depth: int) -> str:
    """``if(${x} = 1, 10, if(${x} = 2, 20, … 0))``: ``${x}`` = k gives 10·k up to ``depth``."""
    text = "0"
    for level in range(depth, 0, -1):
        text = f"if(${{x}} = {level}, {level * 10}, {text})"
    return text


def test_thousand_deep_nested_if_parses_and_evaluates(tmp_path: Path) -> None:
    expression = _nested_if(1000)
    path = _book(tmp_path / "deep.xlsx",
                 [["type", "name", "label", "calculation"],
                  ["integer", "x", "X", None],
                  ["calculate", "y", None, expression]])
    started = time.perf_counter()
    model = _accepted(path)
    print(f"1,000-deep if(): compiled and loaded in {time.perf_counter() - started:.2f} s")
    assert model["y"].calculation == expression
    data = FormData(model, pd.DataFrame({"x": [1.0, 82.0, 500.0, 1000.0, 1001.0, None]}))
    values = data.evaluate(model["y"], model["y"].calculation)
    assert values.tolist() == [10.0, 820.0, 5000.0, 10000.0, 0.0, 0.0]
    assert parse(expression).source == expression


def test_deep_parse_error_names_its_cell(tmp_path: Path) -> None:
    broken = _nested_if(300)[:-1]  # one ')' short
    path = _book(tmp_path / "deep_broken.xlsx",
                 [["type", "name", "label", "calculation"],
                  ["integer", "x", "X", None],
                  ["calculate", "y", None, broken]])
    with pytest.raises(FormError) as info:
        load_form(path)
    error = info.value
    assert error.code == "expression-syntax"
    assert error.context["row"] == 3 and error.context["column"] == "calculation"
    assert "missing ')'" in str(error)


def test_absurdly_deep_nesting_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("(" * 40_000 + "1" + ")" * 40_000)


def _declare_a_million_rows(path: Path) -> None:
    """Format the last cells of the sheet, as Excel does for whole formatted columns: the
    sheet then declares ``A1:XFD1048576``."""
    import openpyxl
    from openpyxl.styles import Font

    book = openpyxl.load_workbook(path)
    for sheet in ("survey", "choices"):
        ws = book[sheet]
        ws.cell(row=1_048_576, column=1).font = Font(bold=True)
        ws.cell(row=1_048_576, column=16_384).font = Font(bold=True)
        ws.cell(row=1, column=16_384).font = Font(bold=True)
    book.save(path)


def test_sheet_declaring_a_million_rows_reads_its_content(tmp_path: Path) -> None:
    path = _book(
        tmp_path / "million.xlsx",
        [["type", "name", "label"], ["select_one yn", "ok", "OK?"], ["text", "why", "Why?"]],
        [["list_name", "name", "label"], ["yn", "1", "Yes"], ["yn", "0", "No"]],
    )
    _declare_a_million_rows(path)
    import openpyxl

    assert openpyxl.load_workbook(path, read_only=True)["survey"].max_row == 1_048_576
    started = time.perf_counter()
    model = _accepted(path)
    print(f"million-row sheet: compiled and loaded in {time.perf_counter() - started:.2f} s")
    assert [i.name for i in model.items] == ["ok", "why"]
    assert model.choice_lists["yn"].codes() == ["1", "0"]


def test_rows_after_a_long_blank_run_are_not_part_of_the_form(tmp_path: Path) -> None:
    """pyxform stops reading a sheet after 60 empty rows; so does the model."""
    survey: list[Row] = [["type", "name", "label"], ["text", "a", "A"],
                         *[[None] * 3] * 10, ["text", "b", "B"],
                         *[[None] * 3] * 100, ["text", "c", "C"]]
    path = _book(tmp_path / "gap.xlsx", survey)
    result = convert(xlsform=str(path), validate=False)
    assert "/b" in result.xform and "/c" not in result.xform
    model = load_form(path)
    assert [i.name for i in model.items] == ["a", "b"]


# -- loops and names that repeat ----------------------------------------------------------------


def _xpaths(path: Path) -> set[tuple[str, ...]]:
    """The elements pyxform's form has below its root, as written-name paths."""
    from pyxform.builder import create_survey_from_xls
    from pyxform.question import Question
    from pyxform.section import Section

    survey = create_survey_from_xls(str(path))
    root = f"/{survey.name}/"
    paths = {tuple(e.get_xpath()[len(root):].split("/"))
             for e in survey.iter_descendants(lambda e: isinstance(e, Question | Section))
             if e.get_xpath().startswith(root)}
    return {p for p in paths if p[0] != "meta"}


def test_loop_over_a_choice_list_is_a_group_per_choice(tmp_path: Path) -> None:
    """``begin loop over <list>``: a group per choice (none left out), ``%(name)s`` and
    ``%(label)s`` filled in per language; a list an or_other select uses gains ``other``."""
    path = _book(
        tmp_path / "loop.xlsx",
        [["type", "name", "label::English", "label::Français", "relevant"],
         ["select_multiple toilet or_other", "has", "Which toilets?", "Quelles toilettes ?",
          None],
         ["begin loop over toilet", "per_toilet", "Toilets", "Toilettes", None],
         ["integer", "number", "How many %(label)s?", "Combien de %(label)s ?",
          "selected(${has}, '%(name)s')"],
         ["begin group", "details", "Details", "Détails", None],
         ["text", "note", "Left as written: %(name)s", "Tel quel", None],
         ["end group", None, None, None, None],
         ["end loop", None, None, None, None]],
        [["list_name", "name", "label::English", "label::Français"],
         ["toilet", "pit", "pit latrines", "latrines"], ["toilet", "flush", "flush toilets",
                                                         "chasses d'eau"],
         ["toilet", "none", "None", "Aucune"]],
    )
    model = _accepted(path)
    expected = {("has",), ("per_toilet",)}
    for code in ("pit", "flush", "other"):
        expected |= {("per_toilet", code), ("per_toilet", code, "number"),
                     ("per_toilet", code, "details"),
                     ("per_toilet", code, "details", "note")}
    # pyxform's own text field for the or_other answer is not an item of the model.
    assert {i.xml_path for i in model.items} == expected == _xpaths(path) - {("has_other",)}
    assert model["per_toilet/pit/details/note"].labels["English"] == "Left as written: %(name)s"
    number = model["per_toilet/flush/number"]
    assert number.xml_name == "number" and number.path == ("per_toilet", "flush")
    assert number.labels == {"English": "How many flush toilets?",
                             "Français": "Combien de chasses d'eau ?"}
    assert number.relevant == "selected(${has}, 'flush')"
    assert model["per_toilet/other/number"].labels["English"] == "How many Other?"
    assert model["pit"].labels == {"English": "pit latrines", "Français": "latrines"}
    assert model["pit"].type == "begin_group" and model["pit"].path == ("per_toilet",)
    data = FormData(model, pd.DataFrame({"has": ["pit flush", "pit"]}))
    assert data.relevant(model["per_toilet/flush/number"]).tolist() == [True, False]
    with pytest.raises(KeyError, match="3 fields are named 'number'"):
        model["number"]


@pytest.mark.parametrize("survey,choices,code", [
    ([["begin loop over nowhere", "l", "L"], ["text", "t", "T"], ["end loop", None, None]],
     None, "choice-list-missing"),
    ([["begin loop", "l", "L"], ["text", "t", "T"], ["end loop", None, None]],
     [["list_name", "name", "label"], ["c", "a", "A"]], "choice-list-missing"),
    ([["begin loop over c", "l", "L"], ["text", "t", "50% of %(label)s"],
      ["end loop", None, None]],
     [["list_name", "name", "label"], ["c", "a", "A"]], "loop-substitution"),
    ([["begin loop over c", "l", "L"], ["text", "t", "T"]],
     [["list_name", "name", "label"], ["c", "a", "A"]], "unmatched-begin"),
    ([["begin loop over c", "l", "L"], ["begin group", "g", "G"], ["end loop", None, None],
      ["end group", None, None]],
     [["list_name", "name", "label"], ["c", "a", "A"]], "unmatched-end"),
], ids=["unknown-list", "no-list", "stray-percent", "never-closed", "crossed-blocks"])
def test_broken_loops_are_located_errors(tmp_path: Path, survey: list[Row],
                                         choices: list[Row] | None, code: str) -> None:
    path = _book(tmp_path / "loop.xlsx", [["type", "name", "label"], *survey], choices)
    with pytest.raises(Exception):  # noqa: B017 - pyxform rejects each with its own error
        convert(xlsform=str(path), validate=False)
    with pytest.raises(FormError) as info:
        load_form(path)
    assert info.value.code == code
    assert info.value.context["sheet"] == "survey" and info.value.context["row"] >= 2


def test_same_name_in_different_groups(tmp_path: Path) -> None:
    """pyxform allows a name again in another group or repeat: those fields are keyed by
    their path, unique names stay as they are, and their data columns do not collide."""
    path = _book(
        tmp_path / "shared.xlsx",
        [["type", "name", "label", "relevant", "calculation"],
         ["text", "name", "Your name", None, None],
         ["integer", "age", "Your age", None, None],
         ["integer", "adults", "Adults", None, None],
         ["begin repeat", "child", "Children", None, None],
         ["text", "name", "Child's name", None, None],
         ["begin group", "about", "About", "${adults} > 1", None],
         ["integer", "age", "Child's age", None, None],
         ["calculate", "more", None, None, "${adults} + 1"],
         ["end group", None, None, None, None],
         ["end repeat", None, None, None, None],
         ["begin repeat", "gps", "Places", None, None],
         ["geopoint", "gps", "Place", None, None],
         ["end repeat", None, None, None, None]],
    )
    model = _accepted(path)
    assert [i.name for i in model.items] == [
        "name", "age", "adults", "child", "child/name", "about", "child/about/age", "more",
        "gps", "gps/gps"]
    assert {i.xml_path for i in model.items} == _xpaths(path)
    inner = model["child/about/age"]
    assert (inner.xml_name, inner.path, inner.repeat) == ("age", ("child", "about"), "child")
    assert model["gps/gps"].repeat == "gps" and model["gps"].repeat is None
    assert model.xml_path_in(inner, "child") == ("about", "age")  # Central's about-age column
    assert model.xml_path_in(inner) == ("child", "about", "age")  # Kobo's child/about/age
    with pytest.raises(ValueError):
        model.xml_path_in(inner, "gps")
    assert [f.name for f in model.fields_in("child")] == ["child/name", "child/about/age",
                                                          "more"]
    assert [a.name for a in model.ancestors(model["more"])] == ["child", "about"]
    root = pd.DataFrame({"name": ["A", "B"], "age": [30.0, 40.0], "adults": [2.0, 1.0]},
                        index=["r1", "r2"])
    child = pd.DataFrame({"PARENT_KEY": ["r1", "r2"], "child/name": ["c", "d"],
                          "child/about/age": [3.0, 4.0]}, index=["k1", "k2"])
    data = FormData(model, root, {"child": child})
    assert data.relevant(model["child/about/age"]).tolist() == [True, False]
    assert data.evaluate(model["more"], model["more"].calculation).tolist() == [3.0, 2.0]
    frame = data.level_frame("child")
    assert frame.loc["k1", "name"] == "A" and frame.loc["k1", "child/name"] == "c"


@pytest.mark.parametrize("survey,code", [
    ([["text", "a", "A"], ["begin group", "g", "G"], ["text", "a", "A again"],
      ["end group", None, None], ["text", "b", "${a}"]], "reference-ambiguous"),
    ([["begin group", "g", "G"], ["text", "a", "A"], ["integer", "a", "A again"],
      ["end group", None, None]], "name-duplicate"),
    ([["begin repeat", "r", "R"], ["text", "a", "A"], ["end repeat", None, None],
      ["begin group", "g", "G"], ["begin repeat", "r", "R"], ["text", "b", "B"],
      ["end repeat", None, None], ["end group", None, None]], "name-duplicate"),
    ([["begin repeat", "data", "R"], ["text", "a", "A"], ["end repeat", None, None]],
     "name-duplicate"),
    ([["text", "meta", "M"]], "name-reserved"),
], ids=["reference-to-shared-name", "same-group", "repeat-twice", "repeat-named-like-root",
        "meta"])
def test_names_pyxform_refuses(tmp_path: Path, survey: list[Row], code: str) -> None:
    """Where pyxform draws the line: unique within the enclosing group, repeats unique in the
    form, and a reference must name one field."""
    path = _book(tmp_path / "names.xlsx", [["type", "name", "label"], *survey])
    with pytest.raises(Exception):  # noqa: B017 - pyxform rejects each with its own error
        convert(xlsform=str(path), validate=False)
    with pytest.raises(FormError) as info:
        load_form(path)
    assert info.value.code == code
    assert info.value.context["sheet"] == "survey" and info.value.context["row"] >= 2


def test_pyxform_reads_blank_cells_lists_and_block_spellings(tmp_path: Path) -> None:
    """A cell of spaces is empty (pyxform strips cells); a choices row with neither list nor
    name is skipped; ``begin lgroup`` is a repeat and a list after ``begin group`` is ignored;
    an ``osm`` question uploads a file."""
    path = _book(
        tmp_path / "blank.xlsx",
        [["type", "name", "label", "relevant"],
         ["begin group things", "g", "G", "  "],
         ["osm building_tags", "building", "Building", None],
         ["end group", None, None, None],
         ["begin lgroup", "r", "R", None],
         ["select_one yn", "ok", "OK?", " "],
         ["end lgroup", None, None, None]],
        [["list_name", "name", "label"], ["yn", "1", "Yes"], [None, None, "stray label"],
         ["yn", "0", "No"]],
    )
    model = _accepted(path)
    assert [(i.name, i.type) for i in model.items] == [
        ("g", "begin_group"), ("building", "file"), ("r", "begin_repeat"),
        ("ok", "select_one")]
    assert model["g"].relevant == "" and model["ok"].relevant == ""
    assert model["ok"].repeat == "r"
    assert model.choice_lists["yn"].codes() == ["1", "0"]


def test_a_template_with_no_questions_loads_empty(tmp_path: Path) -> None:
    """A survey sheet with its header only compiles in pyxform: it loads with no items, and
    lint says so."""
    from dhsurvey.forms.lint import lint_form

    path = _book(tmp_path / "template.xlsx", [["type", "name", "label"]])
    model = _accepted(path)
    assert model.items == [] and model.fields == []
    rules = {f.rule for f in lint_form(path, compile=False, validate=False)}
    assert "survey-empty" in rules


def test_an_end_row_naming_another_group_loads(tmp_path: Path) -> None:
    """pyxform ignores the name on an end row; the model closes the innermost group, and
    lint warns of the name."""
    from dhsurvey.forms.lint import lint_form

    path = _book(tmp_path / "ends.xlsx", [
        ["type", "name", "label"],
        ["begin group", "outer", "Outer"],
        ["text", "a", "A"],
        ["end group", "adsaf", ""],
        ["text", "b", "B"],
    ])
    model = _accepted(path)
    assert model["a"].path == ("outer",) and model["b"].path == ()
    hits = [f for f in lint_form(path, compile=False, validate=False)
            if f.rule == "end-name-mismatch"]
    assert [(f.row, f.column) for f in hits] == [(4, "name")]
    assert "closes 'outer' opened at row 2" in hits[0].message


def test_end_names_pair_with_loops(tmp_path: Path) -> None:
    """lint pairs an end row with its begin as the model does: ``begin loop over fruit`` opens
    a block its ``end loop`` closes, with no false end-name-mismatch on the enclosing group."""
    from dhsurvey.forms.lint import lint_form

    path = _book(tmp_path / "loops.xlsx", [
        ["type", "name", "label"],
        ["begin group", "outer", "Outer"],
        ["begin loop over fruit", "each", "Each %(label)s"],
        ["integer", "count", "How many?"],
        ["end loop", "each", ""],
        ["end group", "outer", ""],
    ], [["list_name", "name", "label"], ["fruit", "mango", "Mango"],
        ["fruit", "orange", "Orange"]])
    _accepted(path)
    ends = [f for f in lint_form(path, compile=False, validate=False)
            if f.rule.startswith("end-name")]
    assert ends == []
