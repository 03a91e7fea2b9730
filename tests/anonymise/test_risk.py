"""Risk measures: reference check points, wildcard matching, household/global risk,
l-diversity and SUDA2 on hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise.risk import (
    compatible_sums,
    frequencies,
    global_risk,
    household_risk,
    individual_risk,
    k_anonymity_violations,
    l_diversity,
    suda2,
)
from dhsurvey.errors import DhsurveyError


def test_reference_check_points() -> None:
    # One key group per check point: (f, F) = (1, 215), (2, 360), (3, 108), (1, 45.5).
    df = pd.DataFrame(
        {
            "key": ["a", "b", "b", "c", "c", "c", "d"],
            "w": [215.0, 180.0, 180.0, 36.0, 36.0, 36.0, 45.5],
        }
    )
    freq = frequencies(df, ["key"], "w")
    assert freq["fk"].tolist() == [1, 2, 2, 3, 3, 3, 1]
    assert freq["Fk"].tolist() == pytest.approx([215, 360, 360, 108, 108, 108, 45.5])
    r = individual_risk(df, ["key"], "w")
    expected = [0.025096439, 0.005424520, 0.005424520, 0.01369863, 0.01369863, 0.01369863,
                0.08579129]
    np.testing.assert_allclose(r.to_numpy(), expected, rtol=0, atol=1e-8)


def test_unweighted_risk_is_inverse_frequency() -> None:
    df = pd.DataFrame({"key": [1, 1, 2, 3, 3, 3]})
    assert individual_risk(df, ["key"]).tolist() == pytest.approx([0.5, 0.5, 1, 1 / 3, 1 / 3,
                                                                     1 / 3])
    # Weights that do not exceed the sample counts: the sample is the population.
    assert individual_risk(df, ["key"], np.ones(6)).tolist() == pytest.approx(
        [0.5, 0.5, 1, 1 / 3, 1 / 3, 1 / 3]
    )


def _survey() -> pd.DataFrame:
    return pd.DataFrame(
        {"region": ["N", "N", "N", "S"], "age": [10, 10, 11, 10], "w": [10.0, 20.0, 30.0, 40.0]},
        index=[101, 102, 103, 104],
    )


def test_missing_value_is_a_wildcard() -> None:
    df = _survey()
    assert frequencies(df, ["region", "age"])["fk"].tolist() == [2, 2, 1, 1]

    # Blank the age of the unique (N, 11): it now matches both (N, 10) and they match it.
    df.loc[103, "age"] = np.nan
    freq = frequencies(df, ["region", "age"], "w")
    assert freq["fk"].tolist() == [3, 3, 3, 1]
    assert freq["Fk"].tolist() == pytest.approx([60, 60, 60, 40])

    # Blank the region of (S, 10): it matches every age-10 record and the blank-age record.
    df.loc[104, "region"] = np.nan
    freq = frequencies(df, ["region", "age"], "w")
    assert freq["fk"].tolist() == [4, 4, 4, 4]
    assert freq.index.tolist() == [101, 102, 103, 104]


def test_record_with_every_key_missing_matches_all() -> None:
    df = pd.DataFrame({"a": [1, 2, None, 3], "b": ["x", "y", None, "z"]})
    assert frequencies(df, ["a", "b"])["fk"].tolist() == [2, 2, 4, 2]


@pytest.mark.parametrize(("card", "n_keys"), [(3, 4), (400, 3), (2000, 7), (4, 9)])
def test_wildcard_frequencies_match_brute_force(card: int, n_keys: int) -> None:
    # Covers the dense and sparse matching paths and int64 overflow of combined codes.
    rng = np.random.default_rng(card + n_keys)
    n = 300
    df = pd.DataFrame({f"k{j}": rng.integers(0, card, n).astype(float) for j in range(n_keys)})
    df.iloc[n // 2:] = df.iloc[: n - n // 2].to_numpy()  # make matches likely
    for col in df.columns:
        df.loc[rng.random(n) < 0.3, col] = np.nan
    w = rng.uniform(1, 9, n)
    x = df.to_numpy()
    nan = np.isnan(x)
    match = (nan[:, None, :] | nan[None, :, :] | (x[:, None, :] == x[None, :, :])).all(axis=2)
    freq = frequencies(df, list(df.columns), w)
    np.testing.assert_array_equal(freq["fk"].to_numpy(), match.sum(axis=1))
    np.testing.assert_allclose(freq["Fk"].to_numpy(), match @ w)


@pytest.mark.parametrize(("card", "n_keys"), [(3, 4), (400, 3), (2000, 7), (4, 9), (5, 0)])
def test_compatible_sums_match_brute_force(card: int, n_keys: int) -> None:
    # One way: each truth row sums the released rows compatible with it (equal, or missing
    # on either side), over the dense, sparse and overflowing paths.
    rng = np.random.default_rng(card * 7 + n_keys)
    n, m = 250, 180
    truth = rng.integers(0, card, (n, n_keys))
    released = np.vstack([truth[:m // 2], rng.integers(0, card, (m - m // 2, n_keys))])
    truth[rng.random((n, n_keys)) < 0.1] = -1
    released[rng.random((m, n_keys)) < 0.3] = -1
    values = np.column_stack([np.ones(m), rng.integers(0, 2, m)])
    missing_t, missing_r = truth[:, None, :] < 0, released[None, :, :] < 0
    match = (missing_t | missing_r | (truth[:, None, :] == released[None, :, :])).all(axis=2)
    cards = np.full(n_keys, card, dtype=np.int64)
    np.testing.assert_array_equal(compatible_sums(truth, released, cards, values),
                                  match @ values)


def test_categorical_and_string_keys() -> None:
    df = pd.DataFrame(
        {"sex": pd.Categorical(["f", "m", "f", None], categories=["f", "m", "x"]),
         "area": ["u", "u", "u", "r"]}
    )
    assert frequencies(df, ["sex", "area"])["fk"].tolist() == [2, 1, 2, 1]


def test_k_anonymity_violations() -> None:
    df = _survey()
    assert k_anonymity_violations(df, ["region", "age"], 2).tolist() == [False, False, True,
                                                                          True]
    assert not k_anonymity_violations(df, ["region", "age"], 1).any()


def test_household_risk() -> None:
    # Unweighted, so r = 1/fk: key x has fk 2, y has fk 4, z has fk 1.
    df = pd.DataFrame(
        {"key": ["x", "x", "y", "y", "y", "y", "z"], "hh": [1, 2, 1, 3, 3, 4, 4]}
    )
    hr = household_risk(df, ["key"], None, "hh")
    h1 = 1 - (1 - 1 / 2) * (1 - 1 / 4)  # 0.625
    h2 = 1 / 2
    h3 = 1 - (1 - 1 / 4) ** 2  # 0.4375
    h4 = 1.0  # a member with risk 1 makes the household certain
    assert hr.tolist() == pytest.approx([h1, h2, h1, h3, h3, h4, h4])


def test_household_id_must_be_present() -> None:
    df = pd.DataFrame({"key": [1, 2], "hh": [1, None]})
    with pytest.raises(DhsurveyError) as err:
        household_risk(df, ["key"], None, "hh")
    assert err.value.code == "sdc-missing-household"


def test_global_risk() -> None:
    df = pd.DataFrame({"key": ["a", "b", "b", "c", "c", "c", "d"],
                       "w": [215.0, 180.0, 180.0, 36.0, 36.0, 36.0, 45.5]})
    g = global_risk(df, ["key"], "w")
    total = 0.025096439 + 2 * 0.005424520 + 3 * 0.01369863 + 0.08579129
    assert g.n == 7
    assert g.expected_reidentifications == pytest.approx(total, abs=1e-8)
    assert g.risk == pytest.approx(total / 7, abs=1e-8)
    unweighted = global_risk(df, ["key"])
    assert unweighted.expected_reidentifications == pytest.approx(4.0)  # one per key group


def _diverse() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "area": ["a"] * 6 + ["b"] * 3,
            "abuse": ["x", "x", "x", "y", "z", None, "y", "y", None],
        }
    )


def test_l_diversity_distinct() -> None:
    l_dist = l_diversity(_diverse(), ["area"], "abuse", "distinct")
    # Missing sensitive values add no diversity.
    assert l_dist.tolist() == [3] * 6 + [1] * 3


def test_l_diversity_entropy() -> None:
    l_ent = l_diversity(_diverse(), ["area"], "abuse", "entropy")
    expected_a = math.exp(-(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2)))  # ~2.5508
    assert l_ent.tolist() == pytest.approx([expected_a] * 6 + [1.0] * 3)


def test_l_diversity_recursive() -> None:
    df = _diverse()
    # Group a counts (3, 1, 1): c=2 -> 3 < 2*5 and 3 < 2*2, not 3 < 2*1 -> l = 2.
    assert l_diversity(df, ["area"], "abuse", "recursive").tolist() == [2] * 6 + [1] * 3
    # c=1: 3 < 5 but not 3 < 2 -> l = 1.
    assert l_diversity(df, ["area"], "abuse", "recursive", c=1).tolist() == [1] * 9
    # c=4: 3 < 4*1 holds even for l = 3.
    assert l_diversity(df, ["area"], "abuse", "recursive", c=4).tolist() == [3] * 6 + [1] * 3


def test_l_diversity_uses_wildcard_matches() -> None:
    df = pd.DataFrame({"area": ["a", "a", "b", None], "abuse": ["x", "x", "y", "z"]})
    # The blank-area record matches everyone; it sees x, y, z; a-records see x and z.
    assert l_diversity(df, ["area"], "abuse").tolist() == [2, 2, 2, 3]


def test_l_diversity_rejects_unknown_kind() -> None:
    with pytest.raises(DhsurveyError):
        l_diversity(_diverse(), ["area"], "abuse", "bogus")  # type: ignore[arg-type]


def _suda_data() -> pd.DataFrame:
    # Worked by hand (ATT = 4). MSUs: row 0 {a,b,c}; row 1 {a,c}, {b,c};
    # row 2 {a,b}, {b,c}; row 5 {a}; rows 3 and 4 are identical, so none.
    return pd.DataFrame(
        {
            "a": [1, 1, 1, 2, 2, 3],
            "b": [1, 1, 2, 2, 2, 1],
            "c": [1, 2, 1, 2, 2, 1],
            "d": [1, 1, 1, 1, 1, 1],
        }
    )


def test_suda2_scores_by_hand() -> None:
    res = suda2(_suda_data(), ["a", "b", "c", "d"])
    # Size-k MSU scores prod_{i=k}^{3}(4 - i): k=1 -> 6, k=2 -> 2, k=3 -> 1.
    assert res["score"].tolist() == [1, 4, 4, 0, 0, 6]
    assert res["n_msu"].tolist() == [1, 2, 2, 0, 0, 1]
    assert res["min_msu_size"].tolist() == [3, 2, 2, 0, 0, 1]

    # DIS: 4 full-key uniques, 2 records in a pair, f = 0.01, Q = 1 + (8 - 4)/20.
    dis = 4 * 0.01 / (4 * 0.01 + 2 * 0.99)
    q = 1.2
    scores = np.array([1.0, 4.0, 4.0, 6.0])
    adj = float(np.sum(scores**-q))
    expected = 1 / (1 + (4 / dis - 4) / (scores**q * adj))
    np.testing.assert_allclose(res["dis_score"].to_numpy()[[0, 1, 2, 5]], expected)
    assert res["dis_score"].iloc[3] == 0


def test_suda2_max_k_limits_the_search() -> None:
    res = suda2(_suda_data(), ["a", "b", "c", "d"], max_k=2)
    # prod_{i=k}^{2}(4 - i): k=1 -> 3*2 = 6, k=2 -> 2; the size-3 MSU of row 0 is not sought.
    assert res["score"].tolist() == [0, 4, 4, 0, 0, 6]


def test_suda2_missing_values_are_not_items() -> None:
    df = _suda_data()
    df.loc[5, "a"] = -999
    res = suda2(df, ["a", "b", "c", "d"], missing_value=-999)
    # Row 5 loses its only MSU {a}; {b,c} = (1,1) is shared with row 0. Others unchanged.
    assert res["score"].tolist() == [1, 4, 4, 0, 0, 0]
    res_nan = suda2(df.replace(-999, np.nan), ["a", "b", "c", "d"])
    assert res_nan["score"].tolist() == [1, 4, 4, 0, 0, 0]


def test_bad_arguments() -> None:
    df = _survey()
    with pytest.raises(DhsurveyError) as err:
        frequencies(df, ["nope"])
    assert err.value.code == "sdc-column-missing"
    with pytest.raises(DhsurveyError) as err:
        frequencies(df, [])
    assert err.value.code == "sdc-no-keys"
    with pytest.raises(DhsurveyError) as err:
        individual_risk(df, ["region"], np.array([1.0, 0.0, 1.0, 1.0]))
    assert err.value.code == "sdc-bad-weight"


def test_distinct_ls_measures_each_answer_as_l_diversity_does() -> None:
    from dhsurvey.anonymise.measure import distinct_l, distinct_ls

    df = pd.DataFrame({"region": [1, 1, 1, 2, 2, None], "age": [12, 12, 13, 12, 12, 13],
                       "hurt": [1, 1, 0, 1, None, 1], "told": ["y", "n", "y", None, None, None],
                       "none": [None] * 6})
    found = distinct_ls(df, ["region", "age"], ["hurt", "told", "none"])
    for col in ("hurt", "told", "none"):
        assert found[col] == distinct_l(df, ["region", "age"], col)
        ell = l_diversity(df.assign(none=df["none"].astype(object)), ["region", "age"], col)
        seen = ell[ell > 0]
        assert found[col]["records_l1"] == int((seen == 1).sum())
    assert found["none"] == {"min_l": None, "records_l1": 0, "share_l1": 0.0}
    assert found["hurt"]["min_l"] == 1
