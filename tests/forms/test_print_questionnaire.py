"""The printed questionnaire (HTML and PDF per form) and the Markdown change log."""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import EN, INSTRUMENTS, SW, q, valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.forms.printing import (
    ALOUD,
    INSTRUCTION,
    SELF,
    in_words,
    print_form,
    questionnaire_html,
    reader,
)

FORMS = ("household", "child", "caregiver", "frontline_worker")
VOID = {"meta", "br", "link", "img", "hr", "input", "col", "wbr"}
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian chromium is not installed (.ci/run installs it)")


def _squash(text: str) -> str:
    return " ".join(text.split())


class Page(HTMLParser):
    """What a test needs from a printed page: text per row and language, badges, codes;
    fails on unbalanced tags."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, dict[str, str]] = {}  # row id → {lang or "meta": text}
        self.codes: dict[str, list[str]] = {}
        self.who: dict[str, str] = {}
        self.sections: dict[str, str] = {}  # section id → class
        self.banners: list[str] = []  # the section id each self-completion banner is in
        self.html_lang = ""
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed tags: {[t for t, _ in self.stack]}"

    def _attr(self, name: str) -> str:
        for _, attrs in reversed(self.stack):
            if name in attrs:
                return attrs[name]
        return ""

    def _row(self) -> str:
        for _, attrs in reversed(self.stack):
            if attrs.get("id", "").startswith("q-"):
                return attrs["id"][2:]
        return ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.html_lang = values.get("lang", "")
        if tag == "section":
            self.sections[values["id"]] = values.get("class", "")
        if tag not in VOID:
            self.stack.append((tag, values))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack and self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        row, classes = self._row(), self._attr("class").split()
        if "self-banner" in classes:
            section = next(a["id"] for t, a in reversed(self.stack) if t == "section")
            self.banners.append(section)
        if not row:
            return
        cell = self.rows.setdefault(row, {})
        cell_attrs = next(a for t, a in reversed(self.stack) if t == "td")
        key = cell_attrs.get("lang") or "meta"
        cell[key] = cell.get(key, "") + data
        if "code" in classes and key == "en":
            self.codes.setdefault(row, []).append(data)
        if "who" in classes:
            self.who[row] = next(c for c in classes if c != "who")


@pytest.fixture(scope="module")
def pages() -> dict[str, tuple[FormModel, Page]]:
    out = {}
    for name in FORMS:
        form = load_form(INSTRUMENTS / f"{name}.xlsx")
        out[name] = (form, Page(questionnaire_html(form)))
    return out


@pytest.mark.parametrize("name", FORMS)
def test_every_question_with_both_labels_and_codes(pages, name: str) -> None:
    form, page = pages[name]
    assert form.languages == [EN, SW]
    assert page.html_lang == "en"
    for item in form.questions:
        row = page.rows[item.name]
        assert item.name in row["meta"]
        for lang, code in ((EN, "en"), (SW, "sw")):
            assert _squash(item.labels[lang]) in _squash(row[code]), (item.name, lang)
        choices = form.choices_for(item)
        if choices is not None:
            assert page.codes[item.name] == choices.codes()


def test_child_conditions_in_words(pages) -> None:
    _, page = pages["child"]
    assert "Asked if age_confirm is 0 (No)." in _squash(page.rows["age_self"]["meta"])
    assert "Accepted if the answer is from 12 to 17." in _squash(page.rows["age_self"]["meta"])
    assert ("Asked if talk_told includes 1 (Nobody)."
            in _squash(page.rows["talk_why_not"]["meta"]))
    assert "integer" in page.rows["age_self"]["meta"]
    assert "select all that apply" in page.rows["talk_told"]["meta"]


def test_expressions_in_words(tmp_path: Path) -> None:
    survey = [*valid_survey(), q("select_multiple told", "told", "Who?", "Nani?"),
              q("text", "told_oth", "Who else?", relevant="selected(${told}, '3')")]
    told = [{"list_name": "told", "name": code, f"label::{EN}": label, f"label::{SW}": label,
             "label::stata": label} for code, label in (("1", "Nobody"), ("3", "Friend"))]
    form = load_form(write_workbook(tmp_path / "f.xlsx", survey, [
        *[{"list_name": "yes_no", "name": "1", f"label::{EN}": "Yes", f"label::{SW}": "Ndiyo",
           "label::stata": "Yes"},
          {"list_name": "yes_no", "name": "0", f"label::{EN}": "No", f"label::{SW}": "Hapana",
           "label::stata": "No"}], *told]))
    assert in_words("${age} >= 12 and ${consent} = 1", form).text == (
        "age ≥ 12 and consent is 1 (Yes)")
    assert in_words("selected(${told}, '3')", form).text == "told includes 3 (Friend)"
    assert in_words("(${age} > 1 or ${age} < 0) and ${consent} != 0", form).text == (
        "(age > 1 or age < 0) and consent is not 0 (No)")
    unworded = in_words("indexed-repeat(${age}, ${main}, 1) > 2", form)
    assert (unworded.text, unworded.in_words) == ("indexed-repeat(${age}, ${main}, 1) > 2", False)


def test_self_completion_marked(pages) -> None:
    form, page = pages["child"]
    assert page.sections["self_completion"] == "self"
    assert page.banners == ["self_completion"]
    inside = [i for i in form.items if "self_completion" in i.path and i.type != "calculate"]
    assert len(inside) > 30
    for item in inside:
        expected = INSTRUCTION if item.name == "sc_handover" else SELF
        assert reader(form, item) == expected and page.who[item.name] == expected, item.name
    for name in ("caregiver_permission", "assent", "age_confirm", "know_helpline"):
        assert page.who[name] == ALOUD, name
    for name in ("sens_intro", "privacy", "distress_1", "distress_2", "referral_note"):
        assert page.who[name] == INSTRUCTION, name  # "INTERVIEWER: …" labels
    for other in ("household", "caregiver", "frontline_worker"):
        assert SELF not in pages[other][1].who.values()
        assert "self" not in pages[other][1].sections.values()


def test_repeat_is_a_section(pages) -> None:
    _, page = pages["household"]
    assert page.sections["roster"] == "group"
    text = questionnaire_html(pages["household"][0])
    assert "Repeated for each household member — hh_size times." in text


@needs_chromium
def test_pdf_has_several_pages(tmp_path: Path) -> None:
    printed = print_form(load_form(INSTRUMENTS / "child.xlsx"), tmp_path)
    assert printed.pdf is not None, printed.note
    data = printed.pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data)) > 1


@needs_chromium
def test_cli_lists_what_it_wrote(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["print", "frontline_worker", "--out", str(tmp_path),
                                      "--instruments", str(INSTRUMENTS)])
    assert result.exit_code == 0, result.output
    for suffix in ("html", "pdf"):
        path = tmp_path / f"frontline_worker.{suffix}"
        assert path.stat().st_size > 0
        assert str(path) in result.output.replace("\n", "")


def test_cli_without_chromium_writes_html_and_says_so(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHSURVEY_CHROMIUM", str(tmp_path / "no-such-chromium"))
    workbook = INSTRUMENTS / "caregiver.xlsx"
    result = CliRunner().invoke(app, ["print", str(workbook), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "caregiver.html").exists()
    assert not (tmp_path / "o" / "caregiver.pdf").exists()
    assert "the PDF needs Chromium" in result.output
    assert "Traceback" not in result.output
    unknown = CliRunner().invoke(app, ["print", "nope", "--out", str(tmp_path),
                                       "--instruments", str(INSTRUMENTS)])
    assert unknown.exit_code == 2 and "no form 'nope'" in unknown.output


def test_diff_markdown(tmp_path: Path) -> None:
    old = write_workbook(tmp_path / "old.xlsx")
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{EN}": "Age at last birthday"}
    survey[5] = {**survey[5], "relevant": "${age} >= 10"}
    survey.insert(6, q("select_one yes_no", "phone", "Own a phone?", "Una simu?",
                       relevant="${consent} = 1"))
    new = write_workbook(tmp_path / "new.xlsx", survey)
    result = CliRunner().invoke(app, ["diff", str(old), str(new), "--format", "md"])
    assert result.exit_code == 0, result.output
    md = result.output
    assert md.startswith("# Changes to Test form")
    added = md.split("## Questions added")[1].split("##")[0]
    assert "`phone`" in added and "“Own a phone?”" in added and "“Una simu?”" in added
    assert "consent is 1 (Yes)" in added
    changed = md.split("## Questions changed")[1]
    assert ("wording [English (en)]: “Age in years” → “Age at last birthday”"
            in changed)
    assert "Asked if: age ≥ 12 → age ≥ 10" in changed
    plain = CliRunner().invoke(app, ["diff", str(old), str(new)])
    assert "added     phone" in plain.output and "#" not in plain.output
    bad = CliRunner().invoke(app, ["diff", str(old), str(new), "--format", "pdf"])
    assert bad.exit_code == 2
