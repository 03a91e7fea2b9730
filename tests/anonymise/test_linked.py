"""Risk among a file's own respondents, on everything the intruder can join, by hand.

Each fixture is small enough to count on paper; the expected counts are written out. Under
the old rule (every missing value a wildcard, the linked profile counted over all households,
a record's own blank matching anything) the same fixtures gave larger groups: households
without a child interview padded every child's group, a question not asked matched any
answer, and a suppressed record hid among records the intruder could rule out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dhsurvey.anonymise.gate import gate
from dhsurvey.anonymise.linked import (
    build_profile,
    file_measures,
    intruder_counts,
    unsafe_rows,
)
from dhsurvey.anonymise.scenario import Harmful
from dhsurvey.anonymise.suppression import protect
from dhsurvey.anonymise.working import WorkingForm


def _form(name: str, table: pd.DataFrame, keys: list[str],
          suppressed: dict[str, list[bool]] | None = None) -> WorkingForm:
    return WorkingForm(name, None, {}, table, keys, False, len(table),  # type: ignore[arg-type]
                       suppressed_cells={k: np.array(v) for k, v in (suppressed or {}).items()})


def _households() -> tuple[WorkingForm, WorkingForm]:
    # Six households of one region; two have a child interview, both children aged 12.
    household = pd.DataFrame({"hh_id": ["h1", "h2", "h3", "h4", "h5", "h6"],
                              "region": [1] * 6})
    child = pd.DataFrame({"hh_id": ["h1", "h2"], "region": [1, 1], "age_now": [12, 12]})
    return _form("household", household, ["region"]), _form("child", child,
                                                            ["region", "age_now"])


def test_a_missing_interview_is_a_category_when_the_intruder_knows_who_took_part() -> None:
    household, child = _households()
    profile = build_profile([household, child])
    assert profile.keys == ["region", "child:age_now"]
    fk = {f: m["min_fk"] for f, m in file_measures(profile, k=3).items()}
    # Children: among the 2 children only (not the 6 households): f_k = 2.
    # Households h1, h2 (child aged 12): 2; h3-h6 (no child interview): 4.
    assert fk == {"household": 2, "child": 2}
    measures = file_measures(profile, k=3)
    assert measures["child"]["violations"] == 2 and measures["household"]["violations"] == 2
    # Under the scenario whose intruder does not know who took part, a missing interview
    # matches anything: every household matches the children's households.
    wild = file_measures(build_profile([household, child], absent_known=False), k=3)
    assert wild["household"]["min_fk"] == 6 and wild["child"]["min_fk"] == 2


def test_not_asked_is_a_category_and_only_a_suppressed_value_a_wildcard() -> None:
    table = pd.DataFrame({"age_now": [14, 14, 14, 14],
                          "school_level": pd.array([1, None, None, None], dtype="Int64")})
    # Row 3's school level was blanked by suppression; rows 1 and 2 were never asked.
    child = _form("child", table, ["age_now", "school_level"],
                  {"school_level": [False, False, False, True]})
    profile = build_profile([child])
    sums = file_measures(profile, k=3)["child"]
    assert sums["min_fk"] == 2  # row 0: itself and the wildcard row 3
    from dhsurvey.anonymise.risk import frequencies

    fk = frequencies(profile.frame, profile.keys)["fk"].tolist()
    # row 0 (level 1): rows 0, 3; rows 1, 2 (not asked): rows 1, 2, 3; row 3: all four.
    assert fk == [2, 3, 3, 4]
    # The old rule (every missing value a wildcard) counted 4 for everyone.
    assert frequencies(table, ["age_now", "school_level"])["fk"].tolist() == [4, 4, 4, 4]


def test_a_group_sharing_a_harmful_answer_is_unsafe_and_suppression_mixes_it() -> None:
    # Three children aged 12 who all reported abuse, three aged 13 who did not.
    table = pd.DataFrame({"region": [1] * 6, "age_now": [12, 12, 12, 13, 13, 13],
                          "n_ocsea_yes": [1, 2, 1, 0, 0, 0]})
    child = _form("child", table, ["region", "age_now"])
    harmful = {"child": {"n_ocsea_yes": Harmful(at_least=1)}}
    profile = build_profile([child], sensitive=harmful)
    measures = file_measures(profile, k=3)["child"]
    assert measures["min_fk"] == 3 and measures["violations"] == 0  # k-anonymous...
    assert measures["l_violations"] == {"n_ocsea_yes": 3}  # ...yet all three are exposed
    assert unsafe_rows(profile, profile.frame, 3).tolist() == [True] * 3 + [False] * 3
    blanked, left = protect(profile, ["region", "age_now"], 3)
    # The least important key (age) is blanked in the three and in one neighbour without a
    # harmful answer: an intruder who knows a target is 12 now finds four candidates, one
    # of whom reported nothing.
    assert blanked["age_now"].tolist() == [True] * 4 + [False] * 2
    assert not blanked["region"].any() and not left.any()


def test_the_intruder_still_knows_a_suppressed_value() -> None:
    # Four children of one region; the only 13-year-old's age was suppressed.
    released = pd.DataFrame({"region": [1, 1, 1, 1], "age_now": [12, 12, 12, None]})
    truth = pd.DataFrame({"region": [1, 1, 1, 1], "age_now": [12, 12, 12, 13]})
    from dhsurvey.anonymise.risk import frequencies

    # sdcMicro's count: the blank matches every age, so the record "hides" among four...
    assert frequencies(released, ["region", "age_now"])["fk"].tolist() == [4, 4, 4, 4]
    # ...but the intruder looking for the 13-year-old finds one candidate: the blank.
    counts = intruder_counts(["region", "age_now"], truth, released, np.ones(4))[:, 0]
    assert counts.tolist() == [4, 4, 4, 1]


def test_the_gate_blocks_harmful_groups_and_a_broken_budget() -> None:
    rep = {"child": {"min_fk": 3, "violations": {"after_suppression": 0},
                     "global_risk": {"after_suppression": {"risk": 0.001}},
                     "l_violations": {"n_ocsea_yes": {"after_suppression": 15}}}}
    tier = {"budget_failures": ["child: `cg_educ` suppressed in 96.0% of its values > 5% "
                                "budget, on the keys `stratum`, `cg_educ`"]}
    result = gate(rep, [], tier=tier)
    assert not result.passed
    assert result.reasons[0].startswith("child: `cg_educ` suppressed in 96.0%")
    assert "15 records in groups whose members all share a harmful answer of n_ocsea_yes" \
        in result.reasons[1]
