"""The child form's derived fields: n_ocsea_yes and referral_flag.

``n_ocsea_yes`` counts the Yes answers to the six experiences of the self-completion block
and is blank (as ODK leaves a non-relevant calculate) for a child who was never asked the
block: not available, no caregiver permission or assent, not aged 12 to 17, no private space,
or distress_1 = 3 (stop). ``referral_flag`` is 1 whenever the distress checks call for a
referral (2 or 3 at either check) or the child asked the support team to get in touch, and
nothing else: what a child reported is not passed on unless they ask (as the assent
promises); 0 for a child who answered the referral question otherwise and showed no
distress; blank otherwise. The referral information is shown to every child who reaches the
block, whatever they answered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.fieldwork.answers import Presets, answer_form
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.frames import FormData
from dhsurvey.forms.model import load_form
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.validate.logic import check_logic
from dhsurvey.validate.run import validate_forms

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
OCSEA = ["ocsea_talk", "ocsea_image_req", "ocsea_offer_img", "ocsea_offer_meet", "ocsea_threat",
         "ocsea_shared"]
DERIVED = ["n_ocsea_yes", "referral_flag"]


@pytest.fixture(scope="module")
def models():
    return {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}


@pytest.fixture(scope="module")
def uganda(models):
    """A small simulated Uganda (about 360 child interviews, about 1 s)."""
    config = load_country(INSTRUMENTS / "countries" / "UGA.yaml")
    sim = simulate_country(config, models, seed=5, households=1500)
    return config, sim


def _is(values: pd.Series, code: str) -> np.ndarray:
    """Whether each answer is ``code`` (answers as the server holds them: strings or None)."""
    return values.astype("string").eq(code).fillna(False).to_numpy(dtype=bool)


def _expected(child: pd.DataFrame) -> tuple[np.ndarray, pd.Series, pd.Series]:
    """(asked, expected n_ocsea_yes, expected referral_flag) from the raw answers, by the rule
    written out independently of the form's expressions (NaN: missing)."""
    interviewed = _is(child["caregiver_permission"], "1") & _is(child["assent"], "1")
    age = pd.to_numeric(child["age_now"], errors="coerce")
    asked = interviewed & age.between(12, 17).to_numpy() & _is(child["privacy"], "1") & \
        ~_is(child["distress_1"], "3")
    yes = sum(_is(child[q], "1").astype(int) for q in OCSEA)
    n = pd.Series(np.where(asked, yes, np.nan), index=child.index)
    distress = np.zeros(len(child), dtype=bool)
    for check in ("distress_1", "distress_2"):
        distress |= _is(child[check], "2") | _is(child[check], "3")
    accepted = _is(child["ref_accept"], "1")
    answered = child["ref_accept"].notna().to_numpy()
    flag = np.where(distress | accepted, 1.0, np.where(answered, 0.0, np.nan))
    return asked, n, pd.Series(flag, index=child.index)


def _numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype(float)


def _assert_derived(child: pd.DataFrame) -> np.ndarray:
    asked, n, flag = _expected(child)
    stored_n, stored_flag = _numbers(child["n_ocsea_yes"]), _numbers(child["referral_flag"])
    # Missing is None (never "" or "NaN"), and present values are whole numbers as text.
    for column in DERIVED:
        present = child[column].dropna()
        assert present.map(lambda v: isinstance(v, str) and v.isdigit()).all(), column
    assert (stored_n.isna().to_numpy() == ~asked).all()
    pd.testing.assert_series_equal(stored_n, n, check_names=False)
    pd.testing.assert_series_equal(stored_flag, flag, check_names=False)
    return asked


def test_simulated_children_have_the_derived_fields_by_the_rule(models, uganda) -> None:
    _, sim = uganda
    child = sim.forms["child"].root
    asked = _assert_derived(child)
    interviewed = _is(child["caregiver_permission"], "1") & _is(child["assent"], "1")
    # The simulation has children of every kind the rule tells apart.
    assert (~interviewed).sum() > 0 and (interviewed & ~asked).sum() > 0
    flag = _numbers(child["referral_flag"])
    assert (asked & (flag == 1)).sum() > 0 and (asked & (flag == 0)).sum() > 0
    assert flag[~interviewed].isna().all()
    # The form's own logic holds: no calculate stored where it is not relevant, and every
    # stored calculate equals the form's formula.
    data = sim.forms["child"].to_form_data(models["child"])
    violations = check_logic(data, recompute_calculations=True)
    assert violations.empty, violations.head().to_string()
    # The referral information shows to every child asked the block, flagged or not.
    info = data.relevant(models["child"]["ref_info"]).to_numpy()
    assert (info == asked).all()


def test_the_validator_accepts_them_and_keeps_them_missing(models, uganda) -> None:
    config, sim = uganda
    result = validate_forms(sim.forms, models, config=config).forms["child"]
    for table in (result.quarantine, result.flags):
        assert not table["column"].isin(DERIVED).any(), table.to_string()
    accepted = result.accepted.set_index("KEY")
    raw = sim.forms["child"].root.set_index("KEY").loc[accepted.index]
    _, n, flag = _expected(raw)
    pd.testing.assert_series_equal(accepted["n_ocsea_yes"].astype(float), n,
                                   check_names=False)
    pd.testing.assert_series_equal(accepted["referral_flag"].astype(float), flag,
                                   check_names=False)


def test_a_stored_zero_for_a_child_never_asked_is_caught(models, uganda) -> None:
    """The old form stored 0 for children who never got the block: the validator now reads
    it as an answer to a calculate the form leaves blank (not-relevant)."""
    _, sim = uganda
    child = sim.forms["child"].root.copy()
    not_asked = np.flatnonzero(child["n_ocsea_yes"].isna().to_numpy())
    child.loc[child.index[not_asked[:2]], "n_ocsea_yes"] = "0"
    raw = sim.forms["child"]
    data = RawForm(raw.form_id, child, raw.repeats).to_form_data(models["child"])
    violations = check_logic(data)
    hits = violations[violations["column"] == "n_ocsea_yes"]
    assert list(hits["rule"]) == ["not-relevant", "not-relevant"]


# One child per path through the form: (caregiver_permission, assent, privacy, distress_1,
# distress_2, the six experiences, ref_accept) → (n_ocsea_yes, referral_flag); None: missing.
PATHS = {
    "no_permission": (("0", "1", "1", "1", "1", "111111", "0"), (None, None)),
    "no_assent": (("1", "0", "1", "1", "1", "111111", "0"), (None, None)),
    "no_privacy_calm": (("1", "1", "0", "1", "1", "111111", "0"), (None, None)),
    "no_privacy_pause": (("1", "1", "0", "2", "1", "000000", "0"), (None, "1")),
    "no_privacy_stop": (("1", "1", "0", "3", "1", "000000", "0"), (None, "1")),
    "stopped_before_block": (("1", "1", "1", "3", "1", "111111", "0"), (None, "1")),
    "nothing_reported": (("1", "1", "1", "1", "1", "000000", "0"), ("0", "0")),
    "asked_for_help": (("1", "1", "1", "1", "1", "000000", "1"), ("0", "1")),
    "not_sure_about_help": (("1", "1", "1", "1", "1", "000000", "98"), ("0", "0")),
    "prefers_not_to_say": (("1", "1", "1", "1", "1", "999999", "99"), ("0", "0")),
    "paused_before": (("1", "1", "1", "2", "1", "000000", "0"), ("0", "1")),
    "paused_after": (("1", "1", "1", "1", "2", "000000", "0"), ("0", "1")),
    "stopped_after": (("1", "1", "1", "1", "3", "000000", "0"), ("0", "1")),
    "two_experiences": (("1", "1", "1", "1", "1", "100100", "0"), ("2", "0")),
    "all_six": (("1", "1", "1", "1", "1", "111111", "0"), ("6", "0")),
    "all_six_asked_for_help": (("1", "1", "1", "1", "1", "111111", "1"), ("6", "1")),
    "yes_and_refusals": (("1", "1", "1", "1", "1", "999199", "0"), ("1", "0")),
}


def test_every_path_through_the_form(models) -> None:
    model = models["child"]
    keys = pd.Index([f"uuid:{name}" for name in PATHS])
    columns = ["caregiver_permission", "assent", "privacy", "distress_1", "distress_2"]
    paths = [given for given, _ in PATHS.values()]
    answers = {c: [given[i] for given in paths] for i, c in enumerate(columns)}
    answers |= {q: [given[5][j] for given in paths] for j, q in enumerate(OCSEA)}
    answers |= {"ref_accept": [given[6] for given in paths],
                "ch_avail": ["1"] * len(paths), "age_confirm": ["1"] * len(paths),
                "child_age": ["14"] * len(paths)}
    presets = Presets({k: pd.Series(v, index=keys, dtype=object) for k, v in answers.items()})
    data: FormData = answer_form(model, keys, presets, np.random.default_rng(0))
    got = data.root[DERIVED]
    expected = pd.DataFrame([want for _, want in PATHS.values()], index=keys, columns=DERIVED,
                            dtype=object)
    assert got.astype(object).where(got.notna(), None).equals(expected), pd.concat(
        {"got": got, "expected": expected}, axis=1).to_string()
    asked = _assert_derived(data.root)
    info = data.relevant(model["ref_info"]).to_numpy()
    assert (info == asked).all()
