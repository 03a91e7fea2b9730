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
import pytest

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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_neighbours_are_picked_group_by_group(seed: int) -> None:
    # The round's blanks, written out one neighbourhood at a time: per group of records
    # agreeing on the other keys (a blank agrees with a blank), enough donors to make k
    # blanks there, harmless ones first, and one more where a record to protect is harmful.
    from dhsurvey.anonymise.suppression import _with_neighbours

    rng = np.random.default_rng(seed)
    n, k = 400, 3
    codes = rng.integers(0, 3, (n, 4))
    codes[rng.random((n, 4)) < 0.2] = -1
    cards = np.full(4, 3, dtype=np.int64)
    rows, can = rng.random(n) < 0.1, rng.random(n) < 0.7
    blank, harmful = rng.random(n) < 0.1, rng.random(n) < 0.3
    others = codes[:, [0, 2, 3]]
    expected = rows.copy()
    for member in np.flatnonzero(rows):
        members = (others == others[member]).all(axis=1)
        need = k - int((members & (blank | rows)).sum())
        mixing = bool((rows & members & harmful).any())
        donors = np.flatnonzero(members & can & ~rows)
        donors = donors[np.argsort(harmful[donors], kind="stable")]
        expected[donors[:max(need, 1 if mixing else 0)]] = True
    got = _with_neighbours(codes, cards, 1, rows, can, blank, harmful, k)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("absent", "value", "blanks"),
                         [(np.inf, 5.0, [False, True, True, False]),
                          ("\x00not asked", "x", [False] * 4)])
def test_donors_for_a_record_not_asked(absent: object, value: object,
                                       blanks: list[bool]) -> None:
    # Record 0 was not asked `a`. On a numeric key the records answering it are still
    # blanked for it (they then match its "not asked"); on a text key it is not looked for.
    from dhsurvey.anonymise.linked import Profile, Respondents, encode_keys, is_absent
    from dhsurvey.anonymise.suppression import _donate

    frame = pd.DataFrame({"a": np.array([absent, value, value, value],
                                        dtype=float if value == 5.0 else object),
                          "b": [1.0, 1.0, 1.0, 2.0]})
    keys = ["a", "b"]
    profile = Profile(frame, keys, {c: [("f", c)] for c in keys}, {"f": np.ones(4, bool)},
                      {"f": np.arange(4)}, {"f": None}, {"f": {}})
    (truth,), cards = encode_keys([frame], keys)
    codes = truth.copy()
    absent_cells = np.column_stack([is_absent(frame[c].to_numpy()) for c in keys])
    text = absent_cells & np.array([frame[c].dtype.kind != "f" for c in keys])
    blanked = [np.zeros(4, dtype=bool)]
    _donate(Respondents(profile, truth, cards), truth, codes, absent_cells, text, [0], 3,
            np.zeros(4, dtype=bool), blanked)
    assert blanked[0].tolist() == blanks
    assert (codes[:, 0] == -1).tolist() == blanks


@pytest.mark.parametrize("seed", range(6))
def test_donors_found_by_blocks_are_those_of_comparing_every_record(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The donor search looks only at records holding the record's value (or a blank) on one
    # of its two most selective keys; it blanks exactly what comparing every record blanks,
    # blanks made along the way included.
    from dhsurvey.anonymise import suppression
    from dhsurvey.anonymise.linked import Profile, Respondents, encode_keys, is_absent
    from dhsurvey.anonymise.suppression import _donate

    rng = np.random.default_rng(seed)
    n, keys = 600, ["a", "b", "c", "d", "e"]
    frame = pd.DataFrame({c: rng.integers(0, card, n).astype(float)
                          for c, card in zip(keys, (2, 3, 4, 9, 25), strict=True)})
    frame = frame.mask(rng.random(frame.shape) < 0.08)  # missing: a wildcard
    frame.loc[rng.random(n) < 0.05, "c"] = np.inf  # not asked
    harmful = rng.random(n) < 0.2
    profile = Profile(frame, keys, {c: [("f", c)] for c in keys}, {"f": np.ones(n, bool)},
                      {"f": np.arange(n)}, {"f": None}, {"f": {"h": harmful}})
    (truth,), cards = encode_keys([frame], keys)
    absent = np.column_stack([is_absent(frame[c].to_numpy()) for c in keys])
    text = np.zeros_like(absent)
    start = truth.copy()
    start[rng.random(truth.shape) < 0.1] = -1  # blanked in earlier rounds
    first = [4, 3, 1, 2, 0]
    results = []
    for looked_up in (True, False):  # False: every record compared, as specified
        if not looked_up:
            monkeypatch.setattr(suppression._Blocks, "near",
                                lambda self, target: np.arange(len(self.codes)))
        codes, blanked = start.copy(), [np.zeros(n, dtype=bool) for _ in first]
        progress = _donate(Respondents(profile, truth, cards), truth, codes, absent, text,
                           first, 4, harmful, blanked)
        results.append((progress, codes, blanked))
    (p1, codes1, blanked1), (p2, codes2, blanked2) = results
    assert p1 == p2 and p1
    np.testing.assert_array_equal(codes1, codes2)
    for a, b in zip(blanked1, blanked2, strict=True):
        np.testing.assert_array_equal(a, b)


def test_records_known_alike_share_their_donors() -> None:
    # Records 0 and 1 are known alike and lack one compatible record each (k=3): one donor
    # serves both, so one blank is made, not one per copy.
    from dhsurvey.anonymise.linked import Profile, Respondents, encode_keys
    from dhsurvey.anonymise.suppression import _donate

    frame = pd.DataFrame({"a": [1.0, 1.0, 2.0, 2.0, 2.0], "b": [1.0] * 5})
    keys = ["a", "b"]
    profile = Profile(frame, keys, {c: [("f", c)] for c in keys}, {"f": np.ones(5, bool)},
                      {"f": np.arange(5)}, {"f": None}, {"f": {}})
    (truth,), cards = encode_keys([frame], keys)
    codes, blanked = truth.copy(), [np.zeros(5, dtype=bool)]
    none = np.zeros((5, 2), dtype=bool)
    assert _donate(Respondents(profile, truth, cards), truth, codes, none, none, [0], 3,
                   np.zeros(5, dtype=bool), blanked)
    assert blanked[0].tolist() == [False, False, True, False, False]
    assert Respondents(profile, truth, cards).unsafe(codes, 3)[:2].tolist() == [False, False]
