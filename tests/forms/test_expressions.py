"""Tests for the vectorised XLSForm/XPath evaluator (dhsurvey.forms.expressions)."""

from __future__ import annotations

import datetime as dt
import math
import re
import time

import numpy as np
import pandas as pd
import pytest

from dhsurvey.forms.expressions import (
    ExpressionError,
    RepeatData,
    evaluate,
    evaluate_bool,
    functions,
    names_read,
    parse,
    references,
)

TODAY = dt.date(2024, 3, 1)


def ev(expression: str, frame: pd.DataFrame | None = None, **kwargs) -> list:
    frame = pd.DataFrame(index=range(1)) if frame is None else frame
    return evaluate(expression, frame, today=TODAY, **kwargs).tolist()


def evb(expression: str, frame: pd.DataFrame | None = None, **kwargs) -> list[bool]:
    frame = pd.DataFrame(index=range(1)) if frame is None else frame
    return evaluate_bool(expression, frame, today=TODAY, **kwargs).tolist()


def one(expression: str, **kwargs):
    return ev(expression, **kwargs)[0]


# ---------------------------------------------------------------------------------------------
# Empty strings, numbers vs strings, typed vs raw columns
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [None, np.nan, ""])
def test_missing_answer_equals_empty_string(missing):
    frame = pd.DataFrame({"x": ["a", missing]}, dtype=object)
    assert evb("${x} = ''", frame) == [False, True]
    assert evb("${x} != ''", frame) == [True, False]
    assert ev("string-length(${x})", frame) == [1.0, 0.0]


def test_missing_number_is_empty_string_and_nan():
    frame = pd.DataFrame({"age": [15.0, np.nan]})
    assert evb("${age} = ''", frame) == [False, True]
    assert evb("${age} >= 12", frame) == [True, False]
    assert evb("${age} < 12", frame) == [False, False]  # NaN compares false both ways
    assert evb("${age} != 12", frame) == [True, True]
    assert math.isnan(ev("${age} + 1", frame)[1])


def test_number_of_empty_or_text_is_nan():
    assert math.isnan(one("number('')"))
    assert math.isnan(one("number('abc')"))
    assert one("number(' 7 ')") == 7.0
    assert one("number('-2.5')") == -2.5
    assert one("number(true())") == 1.0


def test_string_column_compares_numerically_with_number():
    frame = pd.DataFrame({"s": ["12", "12.0", "012", "abc", ""]}, dtype=object)
    # A number on either side of '=' makes it a numeric comparison (XPath 1.0).
    assert evb("${s} = 12", frame) == [True, True, True, False, False]
    # Two strings compare as strings.
    assert evb("${s} = '12'", frame) == [True, False, False, False, False]
    # '<' and '>' are always numeric.
    assert evb("${s} > 11", frame) == [True, True, True, False, False]
    assert evb("'abc' = 'abc'") == [True]
    assert evb("'10' < '9'") == [False]


TYPED = pd.DataFrame(
    {
        "age": [15.0, np.nan, 8.0, 12.0],
        "consent": pd.array([1, 0, None, 1], dtype="Int64"),
        "q": [1.0, 2.0, np.nan, 96.0],
        "dob": pd.to_datetime(["2010-05-01", None, "2016-01-31", "2012-02-29"]),
        "name": ["Asha", None, "", "Juma"],
    }
)
RAW = pd.DataFrame(
    {
        "age": ["15", "", "8", "12"],
        "consent": ["1", "0", None, "1"],
        "q": ["1", "2", "", "96"],
        "dob": ["2010-05-01", "", "2016-01-31", "2012-02-29"],
        "name": ["Asha", "", None, "Juma"],
    },
    dtype=object,
)


@pytest.mark.parametrize(
    "expression",
    [
        "${age} >= 12",
        "${age} = ''",
        "${age} != ''",
        "${age} = 15",
        "${consent} = 1 and ${age} >= 12",
        "${consent} = '1'",
        "${q} = '96'",
        "${q} != 96",
        "${name} = ''",
        "string-length(${name}) > 0",
        "${dob} < date('2012-01-01')",
        "${dob} = ''",
        "${dob} = '2016-01-31'",
        "today() - ${dob} > 3000",
        "if(${age} = '', 'missing', string(${age} * 2))",
        "coalesce(${age}, -1) >= 0",
        "concat(${q}, '|', ${age})",
        "int(${age} div 5)",
        "format-date(${dob}, '%d/%m/%Y')",
    ],
)
def test_typed_and_raw_string_columns_give_same_answers(expression):
    typed, raw = ev(expression, TYPED), ev(expression, RAW)
    assert [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in typed] == [
        ("nan" if isinstance(v, float) and math.isnan(v) else v) for v in raw
    ]


def test_boolean_conversions():
    assert evb("boolean(0)") == [False]
    assert evb("boolean(0.5)") == [True]
    assert evb("boolean(number(''))") == [False]
    assert evb("boolean('0')") == [True]  # non-empty string
    assert evb("boolean('')") == [False]
    frame = pd.DataFrame({"n": [0.0, 2.0, np.nan], "s": ["0", "", None]})
    assert evb("${n}", frame) == [False, True, False]
    assert evb("${s}", frame) == [True, False, False]


def test_number_to_string_formatting():
    assert one("string(3.0)") == "3"
    assert one("string(0.5)") == "0.5"
    assert one("string(1 div 0)") == "Infinity"
    assert one("string(number(''))") == "NaN"
    assert one("concat(1 = 1, '/', 2 > 3)") == "true/false"


# ---------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------


def test_selected_count_selected_selected_at():
    frame = pd.DataFrame({"m": ["1 2 3", "12", "2", "", None, "3  2 ", "21 22"]}, dtype=object)
    assert evb("selected(${m}, '2')", frame) == [True, False, True, False, False, True, False]
    assert evb("selected(${m}, ' 12 ')", frame) == [False, True, False, False, False, False,
                                                     False]
    assert ev("count-selected(${m})", frame) == [3.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0]
    assert ev("selected-at(${m}, 1)", frame) == ["2", "", "", "", "", "2", "22"]
    assert ev("selected-at(${m}, 5)", frame)[0] == ""


def test_string_functions_agree_on_small_and_large_columns():
    """Large low-cardinality columns are evaluated once per distinct value; same answers."""
    rng = np.random.default_rng(3)
    values = np.array(["1 2", "2", "12", "", "3 22 2", "abc1"], dtype=object)
    low = pd.DataFrame({"s": rng.choice(values, 30_000)})
    high = pd.DataFrame({"s": [f"{v} {i}" for i, v in enumerate(low["s"])]})
    for frame in (low, high):
        for expression in ("selected(${s}, '2')", "regex(${s}, '[a-z]+[0-9].*')",
                           "string-length(${s})", "substr(${s}, 1, 3)"):
            expected = evaluate(expression, frame.iloc[:50]).tolist()  # small: plain loop
            assert evaluate(expression, frame).iloc[:50].tolist() == expected


def test_selected_on_numeric_select_one_column():
    frame = pd.DataFrame({"q": [2.0, 12.0, np.nan]})
    assert evb("selected(${q}, '2')", frame) == [True, False, False]


def test_if_and_coalesce():
    frame = pd.DataFrame({"a": [np.nan, 3.0, 5.0], "b": ["x", "", None]}, dtype=object)
    assert ev("if(${a} > 4, 'big', 'small')", frame) == ["small", "small", "big"]
    assert ev("if(true(), 1, 2)", frame) == [1.0, 1.0, 1.0]
    assert ev("coalesce(${b}, 'none')", frame) == ["x", "none", "none"]
    assert ev("coalesce(${a}, coalesce(${b}, 'z'))", frame) == ["x", 3.0, 5.0]
    with pytest.raises(ExpressionError, match=r"coalesce\(\) takes 2 argument"):
        parse("coalesce(${a}, ${b}, 'z')")  # JavaRosa's coalesce() takes exactly two
    assert ev("coalesce(${a}, 0) + 1", frame) == [1.0, 4.0, 6.0]
    # A missing answer chosen by if() is still '' (not 'NaN').
    assert evb("if(true(), ${a}, 1) = ''", frame) == [True, False, False]


def test_regex_is_a_full_match_like_javarosa():
    frame = pd.DataFrame({"phone": ["0712345678", "712345678", "x0712345678", ""]})
    assert evb("regex(${phone}, '0[0-9]{9}')", frame) == [True, False, False, False]
    assert evb("regex('abc', 'b')") == [False]
    assert evb("regex('abc', '.*b.*')") == [True]
    with pytest.raises(ExpressionError, match="invalid regular expression"):
        evaluate("regex(${phone}, '[')", frame)


def test_string_functions():
    frame = pd.DataFrame({"s": ["Hello world", "", None]})
    assert ev("concat(${s}, '!', 1 + 1)", frame) == ["Hello world!2", "!2", "!2"]
    assert ev("substr(${s}, 0, 5)", frame) == ["Hello", "", ""]
    assert ev("substr(${s}, 6)", frame) == ["world", "", ""]
    assert one("substr('abcdef', -2)") == "ef"
    assert one("substr('abcdef', 2, 100)") == "cdef"
    assert evb("contains(${s}, 'lo w')", frame) == [True, False, False]
    assert evb("starts-with(${s}, 'Hell')", frame) == [True, False, False]
    assert evb("ends-with(${s}, 'world')", frame) == [True, False, False]
    assert one("normalize-space('  a   b ')") == "a b"
    assert one("string-length('héllo')") == 5.0


def test_constraint_with_current_value():
    frame = pd.DataFrame({"age": [5.0, 130.0, np.nan], "hh_size": [3.0, 3.0, 3.0]})
    expected = [True, False, False]
    assert evb(". >= 0 and . <= 120", frame, current="age") == expected
    assert evb(". >= 0 and . <= 120", frame, current=frame["age"]) == expected
    assert evb("string-length(.) = 0", frame, current="age") == [False, False, True]
    with pytest.raises(ExpressionError, match="current="):
        evaluate(". > 1", frame)


def test_int_truncates_toward_zero():
    assert ev("int(-2.7)") == [-2.0]
    assert ev("int(2.7)") == [2.0]
    assert ev("int('-3.9')") == [-3.0]
    frame = pd.DataFrame({"x": [-7.5, 7.5, np.nan]})
    values = ev("int(${x})", frame)
    assert values[:2] == [-7.0, 7.0] and math.isnan(values[2])


def test_round_half_up_and_negatives_half_toward_zero_like_javarosa():
    assert one("round(2.5)") == 3.0
    assert one("round(-2.5)") == -2.0  # JavaRosa: BigDecimal ROUND_HALF_DOWN for negatives
    assert one("round(0.5)") == 1.0
    assert one("round(1.4)") == 1.0
    assert one("round(2.675, 2)") == 2.68  # decimal value, not the binary 2.67499999...
    assert one("round(-1.005, 2)") == -1.0
    assert one("round(1234.5, -2)") == 1200.0
    assert one("round(-33.33, -1)") == -20.0  # JavaRosa truncates x/10 + 0.5
    assert math.isnan(one("round(5, 31)"))
    assert math.isnan(one("round(number(''))"))
    frame = pd.DataFrame({"x": [2.5, -2.5, 2.675, np.nan]})
    got = ev("round(${x}, 0) + round(${x}, 2)", frame)
    assert got[:3] == [5.5, -4.5, 5.68] and math.isnan(got[3])


def test_numeric_functions():
    for missing in ("floor(-1.5)", "ceiling(1.2)", "last()"):  # not in JavaRosa
        with pytest.raises(ExpressionError, match="unknown function"):
            parse(missing)
    assert one("abs(-3)") == 3.0
    assert one("pow(2, 10)") == 1024.0
    assert evb("true() and not(false())") == [True]
    assert one("once(42)") == 42.0


def test_min_max_with_several_arguments_skip_nan():
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": [5.0, 2.0]})
    assert ev("max(${a}, ${b}, 3)", frame) == [5.0, 3.0]
    assert ev("min(${a}, ${b})", frame) == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------


def test_arithmetic_precedence_and_associativity():
    assert one("1 + 2 * 3") == 7.0
    assert one("(1 + 2) * 3") == 9.0
    assert one("10 - 4 - 3") == 3.0
    assert one("8 div 2 div 2") == 2.0
    assert one("2 + 3 mod 2") == 3.0
    assert evb("1 + 1 = 2 and 3 > 2 * 1") == [True]


def test_boolean_precedence():
    frame = pd.DataFrame(
        {"a": [1, 1, 0, 0, 1], "b": [1, 0, 1, 0, 0], "c": [0, 0, 0, 1, 1]}, dtype=float
    )
    # not() binds to its argument only: (not a) and b
    assert evb("not(${a} = 1) and ${b} = 1", frame) == [False, False, True, False, False]
    # and binds tighter than or: a or (b and c)
    assert evb("${a} = 1 or ${b} = 1 and ${c} = 1", frame) == [True, True, False, False, True]
    assert evb("(${a} = 1 or ${b} = 1) and ${c} = 1", frame) == [False, False, False, False, True]


def test_div_and_mod():
    assert one("7 div 2") == 3.5
    assert one("7 mod 3") == 1.0
    assert one("-7 mod 3") == -1.0  # sign of the dividend, like Java's %
    assert one("7.5 mod 2") == 1.5
    assert one("1 div 0") == math.inf
    assert one("-1 div 0") == -math.inf
    assert math.isnan(one("0 div 0"))
    assert math.isnan(one("5 mod 0"))
    frame = pd.DataFrame({"x": [4.0, 0.0]})
    assert ev("10 div ${x}", frame) == [2.5, math.inf]


def test_unary_minus():
    frame = pd.DataFrame({"x": [3.0, -2.0]})
    assert ev("-${x}", frame) == [-3.0, 2.0]
    assert ev("2 - -${x}", frame) == [5.0, 0.0]
    assert one("-2 * 3") == -6.0
    assert one("- - 4") == 4.0
    assert ev("${x}-1", frame) == [2.0, -3.0]


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------


def test_date_literals_and_arithmetic():
    out = evaluate("date('2024-01-31')", pd.DataFrame(index=[0]))
    assert out.dtype == "datetime64[ns]" and out[0] == pd.Timestamp("2024-01-31")
    assert one("date('2024-03-01') - date('2024-01-31')") == 30.0  # leap February
    assert one("today() - date('2024-02-01')") == 29.0
    assert one("decimal-date-time('1970-01-02T12:00:00')") == 1.5
    assert one("decimal-date-time(date('1970-01-11'))") == 10.0
    assert evb("date('2024-01-31') < date('2024-02-01')") == [True]
    assert evb("date('2024-01-31') = '2024-01-31'") == [True]
    assert one("string(date('2024-01-31'))") == "2024-01-31"
    assert one("string(date(0))") == "1970-01-01"


def test_date_columns_typed_and_strings():
    typed = pd.DataFrame({"dob": pd.to_datetime(["2020-02-28", None])})
    strings = pd.DataFrame({"dob": ["2020-02-28T10:00:00.000+03:00", ""]})
    for frame in (typed, strings):
        assert evb("${dob} < today()", frame) == [True, False]
        assert evb("${dob} = ''", frame) == [False, True]
        assert ev("int((today() - ${dob}) div 365.25)", frame)[0] == 4.0
        assert ev("format-date(${dob}, '%Y-%m-%d')", frame) == ["2020-02-28", ""]


def test_format_date_tokens():
    expected = "Y=2024 y=24 m=01 n=1 b=Jan d=05 e=5 a=Fri H=09 h=9 M=07 S=03 %"
    got = one(
        "format-date-time('2024-01-05T09:07:03', "
        "'Y=%Y y=%y m=%m n=%n b=%b d=%d e=%e a=%a H=%H h=%h M=%M S=%S %%')"
    )
    assert got == expected
    with pytest.raises(ExpressionError, match="unrecognized format letter %Q"):
        evaluate("format-date(today(), '%Q')", pd.DataFrame(index=[0]))
    assert one("format-date('', '%Q')") == ""  # no date: JavaRosa never reads the format


def test_today_and_now_come_from_arguments():
    frame = pd.DataFrame(index=[0, 1])
    now = dt.datetime(2024, 3, 1, 18, 0)
    assert evaluate("today()", frame, today=TODAY).tolist() == [pd.Timestamp(TODAY)] * 2
    assert evaluate("now()", frame, now=now).tolist() == [pd.Timestamp(now)] * 2
    assert evaluate("decimal-date-time(now()) - decimal-date-time(today())", frame,
                    today=TODAY, now=now).tolist() == [0.75, 0.75]


# ---------------------------------------------------------------------------------------------
# Repeats
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def households():
    """3 households with 0, 1 and 4 members."""
    frame = pd.DataFrame(
        {"hh_id": ["h1", "h2", "h3"], "sel_idx": [1.0, 1.0, 2.0], "min_age": [0.0, 30.0, 18.0]},
        index=pd.Index([10, 11, 12], name="submission"),
    )
    roster = pd.DataFrame(
        {
            "line": [1.0, 1.0, 2.0, 3.0, 4.0],
            "member_name": ["Ali", "Bea", "Cyd", "Dan", "Eve"],
            "age": [40.0, 35.0, 16.0, 70.0, np.nan],
            "eligible": [1.0, 0.0, 1.0, 0.0, 1.0],
        },
        index=pd.RangeIndex(100, 105),
    )
    parent = pd.Series([11, 12, 12, 12, 12], index=roster.index)
    return frame, {"roster": RepeatData(roster, parent)}


def test_repeat_aggregates(households):
    frame, repeats = households
    assert ev("count(${roster})", frame, repeats=repeats) == [0.0, 1.0, 4.0]
    assert ev("sum(${age})", frame, repeats=repeats) == [0.0, 40.0, 121.0]  # NaN skipped
    maxima = ev("max(${age})", frame, repeats=repeats)
    assert math.isnan(maxima[0]) and maxima[1:] == [40.0, 70.0]
    assert ev("min(${age})", frame, repeats=repeats)[1:] == [40.0, 16.0]
    assert ev("count(${roster}[age >= 18])", frame, repeats=repeats) == [0.0, 1.0, 2.0]
    assert ev("count-non-empty(${age})", frame, repeats=repeats) == [0.0, 1.0, 3.0]
    assert evb("count(${roster}) > 0", frame, repeats=repeats) == [False, True, True]


def test_outer_reference_inside_predicate_is_aligned_to_parent(households):
    frame, repeats = households
    # min_age is a column of the outer frame: 0 for h1, 30 for h2, 18 for h3.
    assert ev("count(${roster}[age > ${min_age}])", frame, repeats=repeats) == [0.0, 1.0, 2.0]


def test_indexed_repeat(households):
    frame, repeats = households
    got = ev("indexed-repeat(${member_name}, ${roster}, 2)", frame, repeats=repeats)
    assert [v if isinstance(v, str) else "" for v in got] == ["", "", "Cyd"]
    assert evb("indexed-repeat(${member_name}, ${roster}, 2) = ''", frame,
               repeats=repeats) == [True, True, False]
    # h3 has sel_idx = 2 -> 3rd member (Dan, 70); h2 has one member, so its 2nd is missing.
    got = ev("indexed-repeat(${age}, ${roster}, ${sel_idx} + 1)", frame, repeats=repeats)
    assert math.isnan(got[0]) and math.isnan(got[1]) and got[2] == 70.0


def test_selection_path_renumbers_after_each_predicate(households):
    frame, repeats = households
    expression = "${roster}[eligible = 1][position() = ${sel_idx}]/line"
    # h3's eligible members are lines 2 and 4; sel_idx = 2 picks the 2nd of THOSE: line 4.
    assert evb(f"{expression} = ''", frame, repeats=repeats) == [True, False, False]
    assert ev(f"number({expression})", frame, repeats=repeats)[1:] == [1.0, 4.0]
    got = ev("${roster}[position() = 2]/member_name", frame, repeats=repeats)
    assert got[2] == "Cyd"
    # JavaRosa keeps only nodes whose predicate is the boolean true: [2] keeps none.
    assert ev("count(${roster}[2])", frame, repeats=repeats) == [0.0, 0.0, 0.0]
    # A value from a node-set: "" when empty, an error when several nodes could be meant.
    assert ev("concat('', ${roster}[age > 60]/member_name)", frame,
              repeats=repeats) == ["", "", "Dan"]
    with pytest.raises(ExpressionError, match="4 nodes where one value is expected"):
        evaluate("concat('', ${roster}/member_name)", frame, repeats=repeats)
    # boolean() of one node is its value's, as in JavaRosa (not "the node exists").
    assert evb("${roster}[age > 60]/member_name", frame, repeats=repeats) == [
        False, False, True]
    assert evb("${roster}[age > 60]", frame, repeats=repeats) == [False, False, False]


def test_predicates_on_fields_and_relative_steps(households):
    frame, repeats = households
    assert ev("sum(${age}[. >= 18])", frame, repeats=repeats) == [0.0, 40.0, 105.0]
    assert ev("count(${roster}[./eligible = 1])", frame, repeats=repeats) == [0.0, 1.0, 2.0]


def test_repeat_parent_labels_must_match_frame_index(households):
    frame, repeats = households
    roster = repeats["roster"]
    wrong = RepeatData(roster.frame, roster.parent.astype(str))  # '11' is not 11
    with pytest.raises(ExpressionError, match="parent label"):
        evaluate("count(${roster})", frame, repeats={"roster": wrong})


def test_empty_frame():
    frame = pd.DataFrame({"a": pd.Series([], dtype=float), "s": pd.Series([], dtype=object)})
    assert evaluate_bool("${a} > 1 and selected(${s}, '1')", frame).tolist() == []
    assert evaluate("concat(${s}, 'x')", frame).tolist() == []


def test_position_inside_a_repeat(households):
    _, repeats = households
    instances = repeats["roster"].frame
    position = pd.Series([1.0, 1.0, 2.0, 3.0, 4.0], index=instances.index)
    assert evb("position(..) = 1", instances, position=position) == [
        True, True, False, False, False
    ]
    assert ev("position(..) - 1", instances, position=position) == [0.0, 0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ExpressionError, match="position="):
        evaluate("position(..) > 1", instances)


def test_repeat_errors(households):
    frame, repeats = households
    with pytest.raises(ExpressionError, match="no field 'nope'"):
        evaluate("count(${roster}[nope = 1])", frame, repeats=repeats)
    with pytest.raises(ExpressionError, match="nodes where one value is expected"):
        evaluate("${roster}", frame, repeats=repeats)
    with pytest.raises(ExpressionError, match="predicates"):
        evaluate("${hh_id}[1]", frame, repeats=repeats)


# ---------------------------------------------------------------------------------------------
# Choice filters, random, uuid
# ---------------------------------------------------------------------------------------------


def test_choice_filter_over_cross_join():
    submissions = pd.DataFrame({"country": [404, 834]}, index=["s1", "s2"])
    choices = pd.DataFrame(
        {"name": [1, 2, 3, 4], "country": [404, 404, 834, 800]}, index=["c1", "c2", "c3", "c4"]
    )
    cross = submissions.reset_index(names="sub").merge(
        choices.reset_index(names="choice"), how="cross", suffixes=("", "_choice")
    )
    frame = cross[["sub", "country"]]
    relative = cross[["choice", "name", "country_choice"]].rename(
        columns={"country_choice": "country"}
    )
    keep = evaluate_bool("country = ${country}", frame, relative=relative)
    allowed = cross.loc[keep, ["sub", "name"]].groupby("sub")["name"].apply(list).to_dict()
    assert allowed == {"s1": [1, 2], "s2": [3]}
    with pytest.raises(ExpressionError, match="relative"):
        evaluate("country = ${country}", frame)


def test_random_is_reproducible_with_seeded_generator():
    frame = pd.DataFrame(index=range(1000))
    a = evaluate("random()", frame, rng=np.random.default_rng(7))
    b = evaluate("random()", frame, rng=np.random.default_rng(7))
    c = evaluate("random()", frame, rng=np.random.default_rng(8))
    assert a.equals(b) and not a.equals(c)
    assert a.between(0, 1, inclusive="left").all() and a.nunique() == 1000
    with pytest.raises(ExpressionError, match="rng="):
        evaluate("random() < 0.5", frame)


def test_uuid_format_unique_and_reproducible():
    frame = pd.DataFrame(index=range(200))
    a = evaluate("uuid()", frame, rng=np.random.default_rng(1))
    b = evaluate("uuid()", frame, rng=np.random.default_rng(1))
    pattern = re.compile(  # JavaRosa's uuid() has no 'uuid:' prefix (forms concat it)
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    )
    assert all(pattern.fullmatch(u) for u in a)
    assert a.nunique() == 200 and a.equals(b)


# ---------------------------------------------------------------------------------------------
# Parsing, errors, metadata
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "position", "message"),
    [
        ("${a} = = 1", 7, "unexpected '='"),
        ("(${a} + 1", 9, "missing ')'"),
        ("${a} + 1)", 8, "after a complete expression"),
        ("${a", 0, "unterminated"),
        ("'abc", 0, "unterminated string"),
        ("", 0, "empty expression"),
        ("${a} and", 8, "unexpected end"),
        ("${a} # 1", 5, "unexpected character"),
        ("${} = 1", 0, "invalid reference name"),
        ("${roster}[x = 1", 15, "missing ']'"),
        ("/data/x = 1", 0, "absolute paths"),
        ("1 + * 2", 4, "unexpected '*'"),
        ("${a} | ${b}", 5, "union"),
        ("if(${a}, 1)", 0, "takes 3 argument"),
        ("${a} = 1 ${b}", 9, "after a complete expression"),
        ("concat('a',)", 11, "unexpected ')'"),
    ],
)
def test_syntax_errors_report_positions(expression, position, message):
    with pytest.raises(ExpressionError, match=re.escape(message)) as info:
        parse(expression)
    assert info.value.position == position
    assert info.value.expression == expression


def test_unknown_function():
    with pytest.raises(ExpressionError, match=r"unknown function foo\(\)") as info:
        parse("1 + foo(${a})")
    assert info.value.position == 4


def test_unknown_reference():
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(ExpressionError, match=r"unknown reference \$\{missing\}") as info:
        evaluate("${a} = 1 and ${missing} = 2", frame)
    assert info.value.position == 13
    assert isinstance(info.value, ValueError)


def test_references_and_functions():
    expression = "if(selected(${b}, '1'), ${a} + ${b}, count(${roster}[x = ${c}]))"
    assert references(expression) == ["b", "a", "roster", "c"]
    assert functions(expression) == {"if", "selected", "count"}
    assert references("1 + 2") == []
    # Bare names in a predicate read a repeat's column: a change to x changes the count.
    assert names_read(expression) == {"b", "a", "roster", "c", "x"}
    assert names_read("${a}/b + position(..)") == {"a", "b"}
    assert names_read("1 + 2") == set()


def test_parse_is_reusable_and_operator_names_are_contextual():
    tree = parse("${div} div 2")
    frame = pd.DataFrame({"div": [8.0]})
    assert evaluate(tree, frame).tolist() == [4.0]
    assert parse("${a} and ${b}") is parse("${a} and ${b}")  # cached, immutable tree
    assert parse("${and} and ${or} or ${mod} mod 2").op == "or"


def test_result_dtypes_and_index():
    frame = pd.DataFrame({"x": [1.0, 2.0]}, index=["a", "b"])
    assert evaluate("${x} * 2", frame).dtype == np.float64
    assert evaluate("concat(${x})", frame).dtype == object
    assert evaluate("${x} > 1", frame).dtype == bool
    assert evaluate_bool("${x}", frame).dtype == bool
    assert list(evaluate("1", frame).index) == ["a", "b"]


def test_large_frame_relevance_sanity():
    """Correctness at scale (the 1M-row timing is reported separately, not asserted)."""
    n = 200_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "consent": rng.integers(0, 2, n).astype(float),
            "age": np.where(rng.random(n) < 0.05, np.nan, rng.integers(5, 18, n)),
            "devices": rng.choice(np.array(["1", "2", "1 2", "3 4", ""], object), n),
            "region": rng.choice(np.array(["", "r1", "r2"], object), n),
        }
    )
    expression = ("${consent} = 1 and ${age} >= 12 and selected(${devices}, '2') "
                  "and ${region} != ''")
    start = time.perf_counter()
    got = evaluate_bool(expression, frame)
    elapsed = time.perf_counter() - start
    expected = (
        (frame.consent == 1)
        & (frame.age >= 12)
        & frame.devices.isin(["2", "1 2"])
        & (frame.region != "")
    )
    assert got.equals(expected)
    print(f"\n4-clause relevance over {n:,} rows: {elapsed * 1000:.0f} ms")


def test_conjuncts_split_top_level_and_only() -> None:
    from dhsurvey.forms.expressions import BinaryOp, conjuncts

    parts = conjuncts(". >= 0 and . <= ${n} and (${a} = 1 or ${b} = 2)")
    assert [p.op for p in parts] == [">=", "<=", "or"]
    assert all(isinstance(p, BinaryOp) for p in parts)
    assert len(conjuncts("${a} = 1")) == 1


# ---------------------------------------------------------------------------------------------
# Functions that read the form: attached CSVs, choice lists (through FormData)
# ---------------------------------------------------------------------------------------------


def _form_with_media(folder):
    from workbooks import YES_NO, c, q, valid_survey, write_workbook

    survey = [*valid_survey(),
              q("select_one colour", "colour", "Colour?", pii="none"),
              q("text", "fruit", "Fruit?", pii="none"),
              q("calculate", "price", calculation="pulldata('fruits', 'price', 'name', ${fruit})"),
              q("calculate", "colour_name", calculation="jr:choice-name(${colour}, '${colour}')")]
    choices = [*YES_NO, c("colour", "r", "Red", "Nyekundu"), c("colour", "g", "Green", "Kijani")]
    path = write_workbook(folder / "form.xlsx", survey, choices)
    (folder / "fruits.csv").write_text("name,price\napple,1.5\nbanana,0.25\napple,9\n",
                                       encoding="utf-8")
    return path


def test_form_data_reads_attached_csvs_and_choice_labels(tmp_path):
    from dhsurvey.forms.frames import FormData
    from dhsurvey.forms.model import load_form

    model = load_form(_form_with_media(tmp_path))
    root = pd.DataFrame({"consent": ["1"] * 4, "age": [30.0] * 4,
                         "colour": ["g", "r", "", "x"], "fruit": ["apple", "banana", "", "kiwi"]},
                        index=["a", "b", "c", "d"])
    data = FormData(model, root)
    assert data.evaluate(model["price"], model["price"].calculation).tolist() == [
        "1.5", "0.25", "", ""]  # the first matching row; '' when none matches
    assert data.evaluate(model["colour_name"], model["colour_name"].calculation).tolist() == [
        "Green", "Red", "", ""]
    listed = data.evaluate(model["price"], "count(instance('colour')/root/item)")
    assert listed.tolist() == [2.0] * 4
    lookup = "string(instance('fruits')/root/item[name = ${fruit} and price < 5]/price)"
    assert data.evaluate(model["price"], lookup).tolist() == ["1.5", "0.25", "", ""]
    with pytest.raises(ExpressionError, match="2 nodes where one value is expected"):
        data.evaluate(model["price"], "instance('fruits')/root/item[name = 'apple']/price")
    with pytest.raises(ExpressionError, match="no secondary instance 'nope'"):
        data.evaluate(model["price"], "pulldata('nope', 'a', 'b', 'c')")


def test_once_keeps_a_value_already_drawn():
    frame = pd.DataFrame({"own": ["7", "", None]})
    assert ev("once(1 + 1)", frame, current=frame["own"]) == ["7", 2.0, 2.0]


def test_randomize_seeded_order_per_row_matches_javarosa():
    instances = {"fruits": pd.DataFrame({"name": ["apple", "banana", "cherry", "lemon",
                                                  "mango"]})}
    frame = pd.DataFrame({"seed": [42.0, 1.0, np.nan]})
    got = ev("join(' ', randomize(instance('fruits')/root/item/name, ${seed}))", frame,
             instances=instances)
    # 42 and 1 as JavaRosa orders them; an empty seed is the text '' (seed 0).
    assert got == ["apple mango cherry banana lemon", "banana lemon mango apple cherry",
                   "cherry banana mango apple lemon"]
