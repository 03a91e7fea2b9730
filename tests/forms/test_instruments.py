"""The study's four instruments: they compile, lint clean, and their logic evaluates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.forms.compile import build
from dhsurvey.forms.frames import PARENT, FormData
from dhsurvey.forms.lint import ERROR, lint_form
from dhsurvey.forms.model import FormModel, Item, load_form

INSTRUMENTS = Path(__file__).parents[2] / "instruments"
FORMS = sorted(INSTRUMENTS.glob("*.xlsx"))
KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"


def test_the_four_instruments_are_there() -> None:
    ids = {load_form(p).form_id for p in FORMS}
    assert ids == {"household", "child", "caregiver", "frontline_worker"}


@pytest.mark.parametrize("path", FORMS, ids=lambda p: p.stem)
def test_lints_without_errors(path: Path) -> None:
    findings = lint_form(path, validate=False, public_key=KEY)
    errors = [f"{f.location()} {f.rule}: {f.message}" for f in findings if f.severity == ERROR]
    assert errors == []


def test_build_all_with_odk_validate(tmp_path: Path) -> None:
    compiled = build(INSTRUMENTS, tmp_path, validate=True)
    assert len(compiled) == 4
    for c in compiled:
        xml = (tmp_path / "forms" / f"{c.model.form_id}.xml").read_text()
        assert f'version="{c.model.version}"' in xml
        assert 'lang="Kiswahili (sw)"' in xml


STUDY_LANGUAGES = {"English (en)", "Kiswahili (sw)", "Amharic (am)", "Portuguese (pt)",
                   "Afrikaans (af)", "isiZulu (zu)", "Luganda (lg)", "Khmer (km)",
                   "Indonesian (id)", "Malay (ms)", "Thai (th)", "Filipino (fil)",
                   "Vietnamese (vi)"}


@pytest.mark.parametrize("path", FORMS, ids=lambda p: p.stem)
def test_languages_and_pii(path: Path) -> None:
    model = load_form(path)
    # Every language a country of the wave interviews in; the eleven added for the wave are
    # drafts marked for professional review.
    assert set(model.languages) == STUDY_LANGUAGES
    assert set(model.draft_languages) == STUDY_LANGUAGES - {"English (en)", "Kiswahili (sw)"}
    assert all(f.pii for f in model.fields), [f.name for f in model.fields if not f.pii]
    if model.form_id == "household":
        direct = {f.name for f in model.by_pii("direct")}
        assert {"gps", "first_name"} <= direct


def _values(model: FormModel, item: Item, n: int, rng: np.random.Generator) -> list:
    """Plausible typed answers for ``item`` (not necessarily consistent with the logic)."""
    lst = model.choices_for(item)
    if item.is_select_one and lst is not None:
        return list(rng.choice(lst.codes(), n))
    if item.is_select_multiple and lst is not None:
        return [" ".join(rng.choice(lst.codes(), 2, replace=False)) for _ in range(n)]
    if item.type in ("integer", "decimal", "calculate"):
        return list(rng.integers(0, 18, n).astype(float))
    if item.type in ("date", "today"):
        return ["2026-03-01"] * n
    if item.type in ("start", "end", "datetime"):
        return ["2026-03-01T10:00:00.000+03:00"] * n
    if item.type == "geopoint":
        return ["-1.28 36.82 1700 5"] * n
    return ["text"] * n


def _synthetic(model: FormModel, n: int = 12) -> FormData:
    rng = np.random.default_rng(5)
    root = pd.DataFrame({f.name: _values(model, f, n, rng) for f in model.fields_in(None)},
                        index=pd.RangeIndex(n, name="KEY"))
    repeats = {}
    for rep in model.repeats:
        sizes = rng.integers(0, 5, n)
        parents = np.repeat(np.arange(n), sizes)
        table = pd.DataFrame({f.name: _values(model, f, len(parents), rng)
                              for f in model.fields_in(rep.name)})
        table[PARENT] = parents
        repeats[rep.name] = table
    return FormData(model, root, repeats)


@pytest.mark.parametrize("path", FORMS, ids=lambda p: p.stem)
def test_every_expression_evaluates(path: Path) -> None:
    model = load_form(path)
    data = _synthetic(model)
    evaluated = 0
    for item in model.items:
        for column, expression in item.expressions().items():
            if column == "choice_filter":
                mask = data.choice_mask(item)
                assert mask.shape[1] == len(model.choices_for(item).codes())
                assert mask.any(axis=1).all(), f"{item.name}: filter leaves no choice"
            else:
                out = data.evaluate(item, expression, rng=np.random.default_rng(0))
                assert len(out) == len(data.table(item.repeat)), (item.name, column)
            evaluated += 1
        data.relevant(item)
    assert evaluated >= 10


def test_household_random_selection_picks_an_eligible_child() -> None:
    model = load_form(INSTRUMENTS / "household.xlsx")
    root = pd.DataFrame({"n_eligible": [2.0, 1.0, 0.0, 2.0], "sel_idx": [2.0, 1.0, np.nan, 1.0],
                         "roster_done": ["1", "1", "1", None]},
                        index=pd.Index(["a", "b", "c", "d"], name="KEY"))
    roster = pd.DataFrame({
        "line": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 1.0, 1.0, 2.0],
        "eligible": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        PARENT: ["a", "a", "a", "a", "b", "b", "c", "d", "d"],
    })
    data = FormData(model, root, {"roster": roster})
    sel_line = model["sel_line"]
    out = data.evaluate(sel_line, sel_line.calculation)
    assert out.iloc[:2].tolist() == [4.0, 1.0]
    assert pd.isna(out.iloc[2]) or out.iloc[2] == ""
    # No selection before the interviewer confirms the roster is complete: once() then keeps
    # the first selection, so an edit of the roster cannot silently pick another child.
    assert pd.isna(out.iloc[3]) or out.iloc[3] == ""
    assert sel_line.calculation.startswith("once(")
