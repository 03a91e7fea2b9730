"""The simulator answers forms as found in the wild: an integer with no constraint, a select
whose choices are the answers given in a repeat (``select_one ${name}``), a literal default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pyxform.xls2xform import convert

from dhsurvey.fieldwork.answers import Presets, answer_form
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import load_form


def _workbook(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "survey"
    for row in [
        ["type", "name", "label", "default", "repeat_count"],
        ["integer", "members", "How many people?", None, None],
        ["text", "status", "Status", "N/A (none)", None],
        ["begin_repeat", "roster", "Person", None, "3"],
        ["text", "member_name", "Name", None, None],
        ["end_repeat", "roster", None, None, None],
        ["select_one ${member_name}", "head", "Who is the head?", None, None],
    ]:
        ws.append(row)
    book.save(path)
    return path


def test_simulator_answers_forms_from_the_wild(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "wild_roster.xlsx")
    assert "<h:html" in convert(xlsform=str(path), validate=False).xform
    model = load_form(path)
    keys = pd.Index([f"uuid:{i}" for i in range(20)])
    data = answer_form(model, keys, Presets(), np.random.default_rng(7))
    root, roster = data.root, data.repeats["roster"]
    assert pd.to_numeric(root["members"]).between(0, 20).all()
    assert (root["status"] == "N/A (none)").all()
    names = roster.groupby(PARENT)["member_name"].apply(set)
    assert len(roster) == 60
    for key in keys:
        assert root.loc[key, "head"] in names[key]
