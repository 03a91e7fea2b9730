"""Workbooks read once: the cell texts of a workbook's bytes come back from the cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from workbooks import q, valid_survey, write_workbook

from dhsurvey.forms import model as model_module
from dhsurvey.forms.model import CACHE_ENV, load_form, read_sheets


def test_a_workbook_read_before_comes_from_the_cache(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = write_workbook(tmp_path / "t.xlsx")
    first = read_sheets(path)
    model_module._READ.clear()  # as a new process would start
    opened: list[Path] = []
    real = model_module._read_sheets
    monkeypatch.setattr(model_module, "_read_sheets",
                        lambda p: opened.append(p) or real(p))
    assert read_sheets(path) == first and opened == []
    assert load_form(path).content_hash == load_form(path).content_hash
    # Other bytes: read again, and the new content is what the model holds.
    write_workbook(path, survey=[*valid_survey(), q("text", "extra")])
    assert "extra" in load_form(path) and opened == [path]
    # A damaged cache entry is read around, never an error.
    for entry in (tmp_path / "cache" / "sheets").glob("*.json"):
        entry.write_text("{not json")
    model_module._READ.clear()
    assert read_sheets(path)["survey"] and opened == [path, path]
