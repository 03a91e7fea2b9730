"""AAPOR outcome rates against hand computations from the Standard Definitions formulas."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dhsurvey.validate.aapor import child_dispositions, child_rates, latest, rates

# 10 complete, 4 no eligible child (both I), 2 partial, 3 refusals, 2 non-contacts, 1 other,
# 3 vacant (NE), one case without a disposition yet.
CODES = [1] * 10 + [5] * 4 + [2] * 2 + [3] * 3 + [4] * 2 + [7] + [6] * 3 + [None]


def _row(table: pd.DataFrame, group: str = "all") -> pd.Series:
    return table.set_index(table.columns[0]).loc[group]


def test_household_rates_match_hand_computation() -> None:
    out = _row(rates(pd.Series(CODES, dtype="Int64")))
    i, p, r, nc, o, uh, uo, ne = 14, 2, 3, 2, 1, 0, 0, 3
    assert (out["I"], out["P"], out["R"], out["NC"], out["O"], out["UH"], out["NE"]) == (
        i, p, r, nc, o, uh, ne)
    assert out["unmapped"] == 1 and out["n"] == len(CODES)
    e = (i + p + r + nc + o) / (i + p + r + nc + o + ne)  # 22/25: eligible among known
    assert out["e"] == pytest.approx(e)
    expected = {
        "RR1": i / ((i + p) + (r + nc + o) + (uh + uo)),  # 14/22
        "RR2": (i + p) / ((i + p) + (r + nc + o) + (uh + uo)),  # 16/22
        "RR3": i / ((i + p) + (r + nc + o) + e * (uh + uo)),
        "RR5": i / ((i + p) + (r + nc + o)),
        "RR6": (i + p) / ((i + p) + (r + nc + o)),
        "COOP1": i / ((i + p) + r + o),  # 14/20
        "COOP2": (i + p) / ((i + p) + r + o),  # 16/20
        "COOP3": i / ((i + p) + r),  # 14/19
        "COOP4": (i + p) / ((i + p) + r),  # 16/19
        "REF1": r / ((i + p) + (r + nc + o) + (uh + uo)),  # 3/22
        "REF3": r / ((i + p) + (r + nc + o)),
        "CON1": ((i + p) + r + o) / ((i + p) + (r + nc + o) + (uh + uo)),  # 20/22
        "CON3": ((i + p) + r + o) / ((i + p) + (r + nc + o)),
    }
    for name, value in expected.items():
        assert out[name] == pytest.approx(value), name
    assert out["RR1"] == pytest.approx(14 / 22) and out["COOP3"] == pytest.approx(14 / 19)


def test_unknown_eligibility_uses_e() -> None:
    codes = pd.Series(CODES[:-1] + [8, 8])  # 8 = dwelling never found: unknown eligibility
    mapping = {1: "I", 2: "P", 3: "R", 4: "NC", 5: "I", 6: "NE", 7: "O", 8: "UH"}
    out = _row(rates(codes, mapping=mapping))
    i, p, r, nc, o, uh, ne = 14, 2, 3, 2, 1, 2, 3
    e = 22 / 25
    assert out["UH"] == uh and out["e"] == pytest.approx(e)
    assert out["RR1"] == pytest.approx(i / (22 + uh))  # 14/24
    assert out["RR3"] == pytest.approx(i / (22 + e * uh))  # 14/23.76
    assert out["RR4"] == pytest.approx((i + p) / (22 + e * uh))
    assert out["RR5"] == pytest.approx(i / 22)
    assert out["REF2"] == pytest.approx(r / (22 + e * uh))
    assert out["CON2"] == pytest.approx(((i + p) + r + o) / (22 + e * uh))
    assert ne == out["NE"] and nc == out["NC"]
    # A given e replaces the estimate.
    fixed = _row(rates(codes, mapping=mapping, e=0.5))
    assert fixed["e"] == 0.5 and fixed["RR3"] == pytest.approx(i / (22 + 0.5 * uh))


def test_rates_by_group_use_the_overall_e() -> None:
    codes = pd.Series([1, 1, 3, 6, 1, 4, 4, 8])
    strata = pd.Series(["A", "A", "A", "A", "B", "B", "B", "B"], name="stratum")
    mapping = {1: "I", 3: "R", 4: "NC", 6: "NE", 8: "UH"}
    out = rates(codes, by=strata, mapping=mapping)
    assert list(out["stratum"]) == ["all", "A", "B"]
    e = 6 / 7  # eligible 6 (I 3, R 1, NC 2) among 7 of known eligibility
    assert out["e"].tolist() == pytest.approx([e] * 3)
    a, b = _row(out, "A"), _row(out, "B")
    assert a["RR1"] == pytest.approx(2 / 3) and a["NE"] == 1
    assert b["RR1"] == pytest.approx(1 / 4)  # I 1 / (I 1 + NC 2 + UH 1)
    assert b["RR3"] == pytest.approx(1 / (3 + e))
    assert b["CON1"] == pytest.approx(1 / 4)


def test_empty_denominator_is_nan() -> None:
    out = _row(rates(pd.Series([6, 6])))
    assert math.isnan(out["RR1"]) and out["NE"] == 2 and out["e"] == 0


def test_child_rates_among_selected_children() -> None:
    households = pd.DataFrame({
        "cluster": [1, 1, 1, 1, 1, 1],
        "hh_number": [1, 2, 3, 4, 5, 6],
        "region": [1, 1, 1, 2, 2, 2], "urban_rural": [1, 1, 1, 2, 2, 2],
        "sel_line": [3, 2, 4, 3, 5, None],  # household 6: no eligible child
    })
    children = pd.DataFrame({
        "cluster": [1, 1, 1, 1, 1],
        "hh_number": [1, 2, 3, 4, 999],  # household 5's child never interviewed; 999 orphan
        "caregiver_permission": [1, 0, 1, 1, 1],
        "assent": [1, None, 0, 1, 1],
        "stop_int": [0, None, None, 1, 0],
    })
    cats = child_dispositions(households, children)
    assert cats.tolist() == ["I", "R", "R", "P", "NC"]
    by = pd.Series(["A", "A", "A", "B", "B", "B"], name="stratum")
    out = child_rates(households, children, by=by)
    overall = _row(out)
    i, p, r, nc, o = 1, 1, 2, 1, 0
    assert (overall["I"], overall["P"], overall["R"], overall["NC"]) == (i, p, r, nc)
    assert overall["RR1"] == pytest.approx(i / ((i + p) + (r + nc + o)))  # 1/5
    assert overall["RR2"] == pytest.approx((i + p) / 5)
    assert overall["COOP1"] == pytest.approx(i / ((i + p) + r + o))  # 1/4
    assert overall["CON1"] == pytest.approx(((i + p) + r + o) / 5)  # 4/5
    assert _row(out, "A")["RR1"] == pytest.approx(1 / 3)
    assert _row(out, "B")["RR2"] == pytest.approx(1 / 2)


def test_child_rates_read_the_recorded_result() -> None:
    """Where the child form records the interview's result, its AAPOR column decides: a child
    not at home is a non-contact, a child found not aged 12-17 is not eligible and leaves the
    denominators."""
    households = pd.DataFrame({"cluster": [1] * 5, "hh_number": [1, 2, 3, 4, 5],
                               "sel_line": [3, 2, 4, 3, 5]})
    children = pd.DataFrame({
        "cluster": [1] * 5, "hh_number": [1, 2, 3, 4, 5],
        "ch_avail": [1, 2, 1, 1, 3],
        "caregiver_permission": [1, None, 1, 1, None],
        "assent": [1, None, 1, 0, None],
        "ch_result": [1, 5, 7, 4, 6],
    })
    cats = child_dispositions(households, children)
    assert cats.tolist() == ["I", "NC", "NE", "R", "O"]
    overall = _row(child_rates(households, children))
    assert overall["NE"] == 1
    assert overall["RR1"] == pytest.approx(1 / 4)  # the ineligible child is out


def test_the_last_submission_per_unit_is_kept_whole_in_index_order() -> None:
    table = pd.DataFrame({
        "cluster": [1, 1, 2, 1, 2], "hh": [1, 1, 1, 2, 1], "result": [3, 1, 4, 1, 2],
        "submission_time": pd.to_datetime(["2026-03-02", "2026-03-03", None, "2026-03-01",
                                           "2026-03-01"], utc=True)},
        index=[10, 11, 12, 13, 14])
    out = latest(table, ["cluster", "hh"])
    assert list(out.index) == [11, 13, 14] and list(out["result"]) == [1, 1, 2]
    pd.testing.assert_frame_equal(out, table.loc[[11, 13, 14]])
    # Without submission times the table order decides: the later row of unit (2, 1) now.
    assert list(latest(table.drop(columns="submission_time"), ["cluster", "hh"])["result"]) \
        == [1, 1, 2]
    assert list(latest(table.iloc[::-1], ["cluster", "hh"]).index) == [11, 13, 14]
    assert latest(table, ["missing"]) is table
