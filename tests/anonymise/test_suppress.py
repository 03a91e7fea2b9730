"""Local suppression: k-anonymity afterwards, importance order, suppression counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise.risk import frequencies, k_anonymity_violations
from dhsurvey.anonymise.suppress import local_suppression
from dhsurvey.errors import DhsurveyError


def _survey() -> pd.DataFrame:
    return pd.DataFrame({"region": ["N", "N", "N", "S"], "age": [10, 10, 11, 10]})


def test_k_anonymity_holds_after_on_random_data() -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    df = pd.DataFrame(
        {
            "region": rng.integers(1, 9, n),
            "age": rng.integers(0, 18, n),
            "sex": rng.integers(1, 3, n),
            "hhsize": rng.integers(1, 12, n),
            "w": rng.uniform(50, 150, n),
        }
    )
    keys = ["region", "age", "sex", "hhsize"]
    original = df.copy()
    assert k_anonymity_violations(df, keys, 5).any()
    res = local_suppression(df, keys, 5, weight="w")
    assert res.k_anonymous
    assert not k_anonymity_violations(res.data, keys, 5).any()
    assert frequencies(res.data, keys)["fk"].min() >= 5
    pd.testing.assert_frame_equal(df, original)  # input untouched
    # Counts agree with the values actually blanked, and nothing else changed.
    for key in keys:
        assert res.suppressions[key] == int(res.data[key].isna().sum())
        kept = res.data[key].notna()
        assert (res.data.loc[kept, key].astype(int) == df.loc[kept, key]).all()
    assert res.iterations <= len(keys)
    assert res.risk_after.expected_reidentifications < res.risk_before.expected_reidentifications


def test_importance_order_least_important_suppressed_first() -> None:
    # age least important: both unique records lose age; (S, .) is still alone, loses region.
    res = local_suppression(_survey(), ["region", "age"], 2, importance=["region", "age"])
    assert res.suppressions == {"region": 1, "age": 2}
    assert res.iterations == 2
    assert res.data["age"].isna().tolist() == [False, False, True, True]
    assert res.data["region"].isna().tolist() == [False, False, False, True]

    # region least important: (., 10) then joins the age-10 group; (., 11) also loses age.
    res = local_suppression(_survey(), ["region", "age"], 2, importance=["age", "region"])
    assert res.suppressions == {"region": 2, "age": 1}
    assert res.iterations == 2
    assert res.data["region"].isna().tolist() == [False, False, True, True]
    assert res.data["age"].isna().tolist() == [False, False, True, False]


def test_default_order_suppresses_most_detailed_key_first() -> None:
    df = pd.DataFrame({"sex": ["f", "f", "f", "m", "m", "m"], "age": [5, 5, 6, 7, 7, 8]})
    res = local_suppression(df, ["sex", "age"], 2)
    # age has 4 distinct values, sex 2: the two unique ages are blanked and that suffices.
    assert res.suppressions == {"sex": 0, "age": 2}
    assert res.iterations == 1
    assert res.k_anonymous


def test_already_safe_file_is_unchanged() -> None:
    df = pd.DataFrame({"a": [1, 1, 2, 2]})
    res = local_suppression(df, ["a"], 2)
    assert res.iterations == 0 and res.total_suppressions == 0
    pd.testing.assert_frame_equal(res.data, df.astype({"a": "Float64"}), check_dtype=False)


def test_fewer_records_than_k_terminates() -> None:
    res = local_suppression(_survey(), ["region", "age"], 10)
    assert not res.k_anonymous
    assert res.data[["region", "age"]].isna().all().all()
    assert res.iterations == 2


def test_importance_must_name_every_key() -> None:
    with pytest.raises(DhsurveyError) as err:
        local_suppression(_survey(), ["region", "age"], 2, importance=["age"])
    assert err.value.code == "sdc-bad-argument"


def test_float_and_text_keys_are_blanked_in_a_copy_not_in_the_input() -> None:
    # Float and text keys are copied only when a value of theirs is blanked: the input
    # frame (here the stages of a release share its arrays) must never change.
    rng = np.random.default_rng(8)
    n = 400
    df = pd.DataFrame({
        "region": rng.choice(["north", "south", "east", "west"], n).astype(object),
        "age": rng.integers(12, 18, n).astype(float),
        "size": rng.integers(1, 15, n).astype(float),
        "row": np.arange(n),
    })
    df.loc[::50, "age"] = np.nan
    original = df.copy()
    res = local_suppression(df, ["region", "age", "size"], 5, importance=["region", "age",
                                                                           "size"])
    assert sum(res.suppressions.values()) > 0
    pd.testing.assert_frame_equal(df, original)
    assert res.data["size"].isna().sum() == res.suppressions["size"]
    assert not k_anonymity_violations(res.data, ["region", "age", "size"], 5).any()
