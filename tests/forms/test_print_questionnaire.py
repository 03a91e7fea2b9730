"""The printed questionnaire (HTML and PDF per form) and the Markdown change log."""

from __future__ import annotations

import os
import re
import shutil
from html import escape as _e
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import EN, INSTRUMENTS, SW, YES_NO, c, q, valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.expressions import ExpressionError, parse
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.forms.printing import (
    ALOUD,
    INSTRUCTION,
    INTERVIEWER_LABEL,
    SELF,
    SELF_COMPLETION_NAME,
    TYPE_WORDS,
    in_words,
    pdf_destinations,
    print_form,
    questionnaire_html,
    reader,
    recorded_by_interviewer,
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


KENYA = "404"


@pytest.fixture(scope="module")
def pages() -> dict[str, tuple[FormModel, Page]]:
    out = {}
    for name in FORMS:
        form = load_form(INSTRUMENTS / f"{name}.xlsx")
        # As for Kenya's ethics board: its languages, its regions and school levels.
        out[name] = (form, Page(questionnaire_html(form, None, [EN, SW], KENYA)))
    return out


@pytest.mark.parametrize("name", FORMS)
def test_every_question_with_both_labels_and_codes(pages, name: str) -> None:
    form, page = pages[name]
    assert {EN, SW} <= set(form.languages)
    assert page.html_lang == "en"
    for item in form.questions:
        row = page.rows[item.name]
        assert item.name in row["meta"]
        for lang, code in ((EN, "en"), (SW, "sw")):
            assert _squash(item.labels[lang]) in _squash(row[code]), (item.name, lang)
        choices = form.choices_for(item)
        if choices is not None:
            codes = choices.codes() if item.list_name not in form.attached_lists else [
                c.name for c in choices.choices if KENYA in (c.extra.get("country"), c.name)]
            assert page.codes[item.name] == codes


def test_a_country_print_lists_its_own_levels_in_its_script() -> None:
    """Cambodia's questionnaire: English and Khmer side by side, the Khmer column marked as a
    draft for professional review, and Cambodia's school levels (from its country file,
    through schools.csv) in Khmer, no other country's."""
    form = load_form(INSTRUMENTS / "child.xlsx")
    khmer = "Khmer (km)"
    html = questionnaire_html(form, None, [EN, khmer], "116")
    page = Page(html)
    assert '<th lang="km">Khmer (km)<br><span class="draft">draft translation, for ' \
        'professional review</span></th>' in html
    assert '<th lang="sw">' not in html and '<th lang="en">English (en)</th>' in html
    levels = [c for c in form.choices_for(form["school_level"]).choices
              if c.extra["country"] == "116"]
    assert levels and page.codes["school_level"] == [c.name for c in levels]
    assert all(_squash(c.labels[khmer]) in _squash(page.rows["school_level"]["km"])
               for c in levels)
    # Printed without a country, the attached lists are named, not listed.
    whole = questionnaire_html(form, None, [EN])
    assert "Options from the file schools.csv" in whole


@pytest.mark.parametrize("name", FORMS)
def test_every_condition_in_words(pages, name: str) -> None:
    """Each question's type, relevance and constraint are printed as in_words puts them
    (read from the form, so that the test holds whatever the instruments ask)."""
    form, page = pages[name]
    for item in form.questions:
        meta = _squash(page.rows[item.name]["meta"])
        assert TYPE_WORDS[item.type] in meta, item.name
        for words, expression in (("Asked if", item.relevant), ("Accepted if", item.constraint)):
            if expression:
                wording = in_words(expression, form, item)
                assert f"{words} {_squash(wording.text)}." in meta, (item.name, words)


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
    """Self-completion sections (named sc_… or self…) have one banner where they start; what is
    inside is read by the respondent, but for "INTERVIEWER: …" rows; the consent gates are read
    aloud. The rule is read from the form, not from what the instruments ask."""
    form, page = pages["child"]
    first = form.languages[0]
    starts = [g.name for g in form.groups if SELF_COMPLETION_NAME.match(g.name)
              and not any(SELF_COMPLETION_NAME.match(p) for p in g.path)]
    assert starts and page.banners == starts
    assert all(page.sections[name] == "self" for name in starts)
    inside = [i for i in form.items if any(p in starts for p in i.path)
              and not i.is_group and i.type != "calculate"]
    assert len(inside) > 30
    for item in inside:
        expected = INSTRUCTION if INTERVIEWER_LABEL.match(item.labels[first]) else SELF
        assert reader(form, item) == expected and page.who[item.name] == expected, item.name
    for other in FORMS:
        other_form, other_page = pages[other]
        for gate in other_form.consent_gates:
            if not INTERVIEWER_LABEL.match(other_form[gate].labels[first]):
                assert other_page.who[gate] == ALOUD, (other, gate)
        for item in other_form.items:
            if item.name in other_page.who and INTERVIEWER_LABEL.match(item.labels[first]):
                assert other_page.who[item.name] == INSTRUCTION, (other, item.name)
        if other != "child":
            assert SELF not in other_page.who.values()
            assert "self" not in other_page.sections.values()


def test_repeat_is_a_section(pages) -> None:
    _, page = pages["household"]
    assert page.sections["roster"] == "group"
    text = questionnaire_html(pages["household"][0])
    form = pages["household"][0]
    roster, label = form["roster"], form["roster"].labels[EN].lower()
    count = in_words(roster.repeat_count, form).text
    assert f"Repeated for each {_e(label)} — {_e(count)} times." in text


@needs_chromium
def test_cli_lists_what_it_wrote_a_pdf_of_several_pages(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["print", "frontline_worker", "--out", str(tmp_path),
                                      "--instruments", str(INSTRUMENTS)])
    assert result.exit_code == 0, result.output
    for suffix in ("html", "pdf"):
        path = tmp_path / f"frontline_worker.{suffix}"
        assert path.stat().st_size > 0
        assert str(path) in result.output.replace("\n", "")
    data = (tmp_path / "frontline_worker.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data)) > 1


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


# -- contents, calculations, who records: synthetic forms ----------------------------------------


def _sections_form(tmp_path: Path) -> FormModel:
    """Identification before the consent gate, a section with a self-completion part and a
    repeat, calculations of every kind, and a final result recorded by the interviewer."""
    survey = [
        q("start", "start"),
        q("begin_group", "ident", "Identification", "Utambulisho"),
        q("integer", "cluster", "Cluster", constraint=". >= 1 and . <= 99", message="1 to 99."),
        q("geopoint", "spot", "Location"),
        q("end_group", "ident"),
        q("note", "intro", "Hello, we are doing a study."),
        q("select_one yes_no", "home", "Is the respondent at home?"),
        q("select_one yes_no", "consent", "Do you agree?", relevant="${home} = 1"),
        q("begin_group", "main", "Main part", relevant="${consent} = 1"),
        q("select_one yes_no", "talk", "Were you asked to talk?"),
        q("select_one yes_no", "image", "Were you asked for an image?"),
        q("calculate", "n_yes", "Number of experiences answered yes",
          calculation="if(${talk} = 1, 1, 0) + if(${image} = 1, 1, 0)"),
        q("begin_group", "sc_private", "Private questions"),
        q("select_one yes_no", "secret", "Did you tell anyone?"),
        q("begin_group", "sc_more", "More private questions"),
        q("select_one yes_no", "secret_2", "Did it happen again?"),
        q("end_group", "sc_more"),
        q("end_group", "sc_private"),
        q("begin_repeat", "kids", "Children"),
        q("text", "kid_name", "Name", pii="direct"),
        q("calculate", "kid_line", "Line of the child", calculation="position(..)"),
        q("end_repeat", "kids"),
        q("calculate", "first_kid", "First child named",
          calculation="indexed-repeat(${kid_name}, ${kids}, 1)", pii="direct"),
        q("calculate", "picked", "Child on line 1", calculation="${kids}[kid_line = 1]/kid_name",
          pii="direct"),
        q("calculate", "label_id", "Label", calculation="concat(${cluster}, '-', ${talk})"),
        q("calculate", "step", "Next step",
          calculation="if(${n_yes} > 1, 2, if(${talk} = 1, 1, 0)) + 10"),
        q("end_group", "main"),
        q("select_one result", "result", "Final result"),
        q("text", "result_oth", "Describe the other result", relevant="${result} = 96"),
    ]
    choices = [*YES_NO, {**c("result", "1", "Complete"), "aapor": "I"},
               {**c("result", "96", "Other"), "aapor": "O"}]
    return load_form(write_workbook(tmp_path / "sections.xlsx", survey, choices))


class Links(HTMLParser):
    """The contents' links (href, text) in order, every element id, and the outline's text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.in_nav = False
        self.href = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.ids.add(values["id"])
        self.in_nav |= tag == "nav"
        if tag == "a" and self.in_nav:
            self.href = values["href"]
            self.links.append((self.href, ""))

    def handle_endtag(self, tag: str) -> None:
        self.in_nav &= tag != "nav"
        if tag == "a":
            self.href = ""

    def handle_data(self, data: str) -> None:
        if self.href:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)


def test_contents_list_every_section_and_link_to_it(tmp_path: Path) -> None:
    form = _sections_form(tmp_path)
    text = questionnaire_html(form)
    links = Links(text)
    assert [href for href, _ in links.links] == [
        "#ident", "#q-intro", "#main", "#sc_private", "#sc_more", "#kids", "#q-result"]
    assert all(href[1:] in links.ids for href, _ in links.links)
    titles = dict(links.links)
    assert _squash(titles["#ident"]) == "Identification / Utambulisho [ident]"
    assert titles["#q-intro"] == "Outside any section: intro, home, consent"
    assert titles["#q-result"] == "Outside any section: result, result_oth"
    nav = text[text.index("<nav"):text.index("</nav>")]
    assert nav.count("self-completion") == 1 and 'class="page"' not in nav  # where it starts
    assert nav.count("<ol>") == 3  # sections, main's groups, sc_private's group
    printed = questionnaire_html(form, {"ident": 1, "main": 2})
    nav = printed[printed.index("<nav"):printed.index("</nav>")]
    assert '<span class="page">2</span>' in nav and nav.count('class="page"') == 7


def test_calculations_in_words(tmp_path: Path) -> None:
    form = _sections_form(tmp_path)
    page = Page(questionnaire_html(form))
    rows = {name: _squash(page.rows[name]["meta"])
            for name in ("n_yes", "kid_line", "first_kid", "picked", "step", "label_id")}
    assert rows["n_yes"].startswith(
        "n_yes calculated — Number of experiences answered yes: counts how many of these "
        "hold: talk is 1 (Yes); image is 1 (Yes)")
    assert rows["n_yes"].endswith("Formula: if(${talk} = 1, 1, 0) + if(${image} = 1, 1, 0)")
    assert "the position of this entry in kids (1 for the first)" in rows["kid_line"]
    assert "kid_name of the kids entry whose position is 1" in rows["first_kid"]
    assert "Child on line 1: kid_name of the kids entries where kid_line is 1" in rows["picked"]
    assert rows["label_id"] == ("label_id calculated — Label: concat(${cluster}, '-', ${talk}) "
                                "(formula as written: not put into words)")
    assert ("(if n_yes > 1 then 2, else if talk is 1 (Yes) then 1, otherwise 0) + 10"
            in rows["step"])


def test_expressions_read_unambiguously(tmp_path: Path) -> None:
    form = _sections_form(tmp_path)
    cases = {
        "${talk} = 1 and ${image} = 1 or ${cluster} > 5":
            "(talk is 1 (Yes) and image is 1 (Yes)) or cluster > 5",
        "${talk} = 1 or ${image} = 1 and ${cluster} > 5":
            "talk is 1 (Yes) or (image is 1 (Yes) and cluster > 5)",
        "if(${talk} = 1, 1, 0)": "1 if talk is 1 (Yes), otherwise 0",
        "coalesce(${talk}, coalesce(${image}, ${secret}))":
            "the first of talk, image, secret that is answered",
        "count(${kids})": "the number of kids entries",
        "string-length(${result_oth}) > 0": "result_oth is answered",
        "if(${talk} = 1, 1, '')": "if talk is 1 (Yes) then 1, otherwise empty",
        "int(${cluster} div 2) + 1": "(the whole-number part of (cluster ÷ 2)) + 1",
        "once(random())": "a random number between 0 and 1, set once and then kept",
        "${kids}[kid_line = 1][position() = ${cluster}]/kid_name":
            "kid_name of entry number cluster among the kids entries where kid_line is 1",
        "string-length(${result_oth}) >= 2 and string-length(${result_oth}) <= 9":
            "the length of result_oth is from 2 to 9",
    }
    for expression, words in cases.items():
        assert in_words(expression, form).text == words, expression
    assert in_words("country = ${cluster}", form, choice_filter=True).text == (
        "the option's country is cluster")
    for unworded in ("indexed-repeat(${talk}, ${main}, 1)",  # main is a group, not a repeat
                     "${kids}[position() = 1][kid_line = 1]/kid_name"):  # the first, if …
        assert not in_words(unworded, form).in_words, unworded


def test_who_reads_what_the_interviewer_records(tmp_path: Path) -> None:
    """Before the consent gate nobody is asked; the final result, locations and a follow-up of
    the interviewer's own answer are recorded, not read aloud; a consent gate is read aloud
    even when asked on an answer the interviewer recorded."""
    form = _sections_form(tmp_path)
    expected = {"cluster": INSTRUCTION, "spot": INSTRUCTION, "intro": ALOUD,
                "home": INSTRUCTION, "consent": ALOUD,
                "talk": ALOUD, "secret": SELF, "kid_name": ALOUD, "result": INSTRUCTION,
                "result_oth": INSTRUCTION}
    page = Page(questionnaire_html(form))
    for name, who in expected.items():
        assert reader(form, form[name]) == who and page.who[name] == who, name
    assert recorded_by_interviewer(form) == {"cluster", "spot", "home", "result", "result_oth"}


def test_loops_and_shared_names_print(tmp_path: Path) -> None:
    survey = [q("begin_group", "g1", "First"), q("integer", "n", "How many?"),
              q("end_group", "g1"), q("begin_group", "g2", "Second"),
              q("integer", "n", "How many now?", relevant="${m} > 0"),
              q("end_group", "g2"), q("integer", "m", "M")]
    form = load_form(write_workbook(tmp_path / "shared.xlsx", survey))
    page = Page(questionnaire_html(form))
    assert {"g1/n", "g2/n"} <= set(page.rows)
    assert "Asked if m > 0." in _squash(page.rows["g2/n"]["meta"])


@needs_chromium
def test_pdf_has_outline_links_and_page_numbers(tmp_path: Path) -> None:
    form = _sections_form(tmp_path)
    printed = print_form(form, tmp_path / "out")
    assert printed.pdf is not None, printed.note
    data = printed.pdf.read_bytes()
    assert re.search(rb"/Type\s*/Outlines", data)
    for title in (b"Identification / Utambulisho [ident]",
                  rb"Main part / Main part \(sw\) [main]",  # a PDF string escapes brackets
                  rb"Private questions / Private questions \(sw\) [sc_private]"):
        assert b"/Title (" + title + b")" in data, title
    assert re.search(rb"/Dest\s*/main\b", data)  # the contents link to the section
    pages = pdf_destinations(data)
    anchors = ["ident", "q-intro", "main", "sc_private", "kids", "q-result"]
    assert set(anchors) <= set(pages)
    assert [pages[a] for a in anchors] == sorted(pages[a] for a in anchors)
    html = printed.html.read_text(encoding="utf-8")
    assert 'class="page"' not in html  # the screen page has no page numbers


def test_what_the_device_does_with_an_answer(tmp_path: Path) -> None:
    """Pre-filled values, values that cannot be changed, "or other" and options that do not come
    from the choices sheet are printed, so that nothing the device does is left out."""
    survey = [
        q("begin_repeat", "people", "People"), q("text", "pname", "Name"),
        q("end_repeat", "people"),
        q("select_one yes_no", "go_on", "Go on?", default="1"),
        q("integer", "twice", "Twice", default="${go_on} * 2", read_only="yes"),
        q("select_one yes_no or_other", "fav", "Favourite?"),
        q("select_one ${people}", "who", "Who?"),
        q("select_one_from_file places.csv", "place", "Place?"),
    ]
    form = load_form(write_workbook(tmp_path / "device.xlsx", survey))
    page = Page(questionnaire_html(form))
    meta = {name: _squash(page.rows[name]["meta"]) for name in ("go_on", "twice", "fav")}
    assert "Pre-filled with 1 (Yes)." in meta["go_on"]
    assert "Pre-filled with go_on × 2." in meta["twice"]
    assert "Shown but cannot be changed." in meta["twice"]
    assert "If “Other”: written in fav_other." in meta["fav"]
    assert page.codes["fav"] == ["1", "0", "other"]
    assert "Options: the entries of people given earlier." in page.rows["who"]["en"]
    assert "Options from the file places.csv." in page.rows["place"]["en"]


def test_choice_name_in_words(tmp_path: Path) -> None:
    """``jr:choice-name`` reads as the chosen option's label once the parser knows it; until
    then it is shown as written, marked so."""
    form = _sections_form(tmp_path)
    expression = "jr:choice-name(${result}, '${result}')"
    wording = in_words(expression, form)
    try:
        parse(expression)
    except ExpressionError:
        assert (wording.text, wording.in_words) == (expression, False)
    else:
        assert wording.text == "the label of the option chosen in result"


def test_calculated_codes_read_with_their_labels(tmp_path: Path) -> None:
    """A calculation the form names as a code of a list (jr:choice-name), or that copies one of
    several answers from one list, is printed with that list's labels."""
    survey = [
        q("select_one outcome", "v1", "First visit"), q("select_one outcome", "v2", "Second"),
        q("calculate", "last", "Last outcome", calculation="coalesce(${v2}, ${v1})"),
        q("calculate", "auto", "Suggested result",
          calculation="if(${last} = 1, 1, if(${last} = 2, 96, ''))"),
        q("calculate", "auto_label", "Its label",
          calculation="jr:choice-name(${auto}, '${result}')"),
        q("select_one result", "result", "Final result", default="${auto}"),
    ]
    choices = [c("outcome", "1", "Met"), c("outcome", "2", "Away"),
               {**c("result", "1", "Complete"), "aapor": "I"},
               {**c("result", "96", "Other"), "aapor": "O"}]
    form = load_form(write_workbook(tmp_path / "codes.xlsx", survey, choices),
                     check_expressions=False)  # jr:choice-name need not parse for this
    auto = form["auto"]
    assert in_words(auto.calculation, form, auto).text == (
        "if last is 1 (Met) then 1 (Complete), else if last is 2 (Away) then 96 (Other), "
        "otherwise empty")
    assert in_words("${last} = 2", form).text == "last is 2 (Away)"
