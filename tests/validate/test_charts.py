"""The report's charts are SVG written as text: well-formed, escaped, deterministic, and
drawing what the check tables say (bar heights, marked enumerators, target and threshold).

The check tables are small and synthetic, with only the columns the charts read."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from dhsurvey.validate import charts
from dhsurvey.validate.report import (
    CHARTS,
    QUARANTINED_COLOUR,
    QUARANTINED_LABEL,
    chart_dk_refusal,
    chart_durations,
    chart_progress,
    chart_response,
    render,
)

NS = {"s": "http://www.w3.org/2000/svg"}
FORMS = ("household", "child")
MARKED = ("E02", "E05")


def _checks(enumerators: int = 8, marked: tuple[str, ...] = MARKED, strata: int = 4,
            days: int = 6, ids: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Check tables of two forms: enumerators E01…, strata S1…, consecutive days."""
    ids = ids or [f"E{i:02d}" for i in range(1, enumerators + 1)]
    rng = np.random.default_rng(1)
    enum = pd.DataFrame([
        {"form": form, "enum_id": e, "submissions": 10,
         "quarantined": 2 if e in marked and form == "child" else 0,
         "median_duration": float(10 + 3 * i + (5 if form == "child" else 0))}
        for form in FORMS for i, e in enumerate(ids)])
    dates = pd.date_range("2026-01-12", periods=days, freq="D")
    dash = pd.DataFrame([
        {"form": form, "date": d, "submissions": 5, "completed": 4,
         "cumulative": 5 * (k + 1), "cumulative_completed": 4 * (k + 1)}
        for form in FORMS for k, d in enumerate(dates)])
    rr = pd.DataFrame([
        {"interview": form, "level": level, "stratum": "all" if level == "country" else f"S{s}",
         "RR1": 0.8, "RR3": 0.85, "COOP1": 0.9}
        for form in FORMS for level in ("country", "stratum")
        for s in (range(1) if level == "country" else range(1, strata + 1))])
    return {
        "survey_dashboard": dash,
        "progress_country": pd.DataFrame({"form": list(FORMS), "target": [40, 30]}),
        "enumerator_dashboard": enum,
        "durations": pd.DataFrame({"form": list(FORMS), "speeder_threshold": [6.0, 8.0]}),
        "dk_refusal": pd.DataFrame({
            "form": "child", "enum_id": ids, "dk_base": 100, "dk": rng.integers(0, 9, len(ids)),
            "refusal_base": 100, "refused": rng.integers(0, 5, len(ids))}),
        "aapor": rr,
    }


def _parse(svg: str | None) -> ET.Element:
    assert svg is not None
    return ET.fromstring(svg)


def _panels(root: ET.Element) -> list[ET.Element]:
    return root.findall("s:g[@class='chart-panel']", NS)


def _bars(panel: ET.Element) -> list[ET.Element]:
    return sorted(panel.findall("s:rect[@class='chart-bar']", NS), key=lambda r: float(r.get("x")))


def _xticks(panel: ET.Element) -> list[ET.Element]:
    return panel.findall("s:text[@class='chart-xtick']", NS)


def _label(text: ET.Element) -> str:
    return "".join(text.itertext()) if text.find("s:title", NS) is None else text[0].tail or ""


def _y_of(panel: ET.Element, cls: str) -> float:
    line = panel.find(f"s:line[@class='{cls}']", NS)
    assert line is not None and line.get("y1") == line.get("y2")
    return float(line.get("y1"))


def _scale(panel: ET.Element) -> tuple[float, float]:
    """(baseline y, pixels per unit), read from the grid lines and their tick labels."""
    grid = panel.findall("s:line[@class='chart-grid']", NS)
    labels = panel.findall("s:text[@class='chart-ytick']", NS)
    values = [float(t.text.replace(",", "")) for t in labels]
    ys = [float(g.get("y1")) for g in grid]
    per = (ys[0] - ys[-1]) / (values[-1] - values[0])
    return ys[0] + values[0] * per, per


@pytest.mark.parametrize("draw", [draw for _, draw in CHARTS], ids=lambda d: d.__name__)
def test_each_chart_is_well_formed_svg_that_names_itself(draw) -> None:
    svg = draw(_checks())
    root = _parse(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img" and root.get("aria-label")
    assert root.find("s:title", NS).text == root.get("aria-label")
    width, height = root.get("width"), root.get("height")
    assert root.get("viewBox") == f"0 0 {width} {height}" and float(height) > 100
    assert not svg.startswith("<?xml") and "<path" not in svg  # text is text
    assert draw(_checks()) == svg  # same checks, same bytes


def test_one_bar_per_enumerator_with_heights_proportional_to_the_medians() -> None:
    checks = _checks()
    root = _parse(chart_durations(checks))
    panels = _panels(root)
    assert len(panels) == len(FORMS)
    for form, panel in zip(FORMS, panels, strict=True):
        enum = checks["enumerator_dashboard"]
        expected = enum[enum["form"] == form].sort_values("enum_id")
        bars = _bars(panel)
        assert len(bars) == len(expected)
        heights = np.array([float(b.get("height")) for b in bars])
        ratio = heights / expected["median_duration"].to_numpy()
        assert np.allclose(ratio, ratio[0], atol=0.02)
        base, per = _scale(panel)
        assert ratio[0] == pytest.approx(per, abs=0.02)
        assert all(float(b.get("y")) + float(b.get("height")) == pytest.approx(base, abs=0.15)
                   for b in bars)
        assert [_label(t) for t in _xticks(panel)] == list(expected["enum_id"])


def test_exactly_the_quarantined_enumerators_are_hatched_and_bold() -> None:
    root = _parse(chart_durations(_checks()))
    pattern = root.find(".//s:pattern", NS)
    assert pattern is not None
    fill = f"url(#{pattern.get('id')})"
    household, child = _panels(root)
    for panel, marked in ((household, set()), (child, set(MARKED))):
        ids = [_label(t) for t in _xticks(panel)]
        hatched = {e for e, b in zip(ids, _bars(panel), strict=True) if b.get("fill") == fill}
        assert hatched == marked
        plain = {b.get("fill") for e, b in zip(ids, _bars(panel), strict=True) if e not in marked}
        assert plain == {"#5b8db8"}
        bold = {_label(t) for t in _xticks(panel) if t.get("font-weight") == "bold"}
        assert bold == marked
        assert {t.get("fill") for t in _xticks(panel) if _label(t) in marked} <= {
            QUARANTINED_COLOUR}
    assert pattern.find("s:rect", NS).get("fill") == QUARANTINED_COLOUR


def _legend(panel: ET.Element) -> list[str]:
    return [t.text for t in panel.findall(
        "s:g[@class='chart-legend']/s:text[@class='chart-legend-text']", NS)]


def test_the_quarantine_legend_only_when_someone_is_marked() -> None:
    marked = _parse(chart_durations(_checks()))
    household, child = _panels(marked)
    assert QUARANTINED_LABEL in _legend(child) and QUARANTINED_LABEL not in _legend(household)
    clean = chart_durations(_checks(marked=()))
    assert clean and QUARANTINED_LABEL not in clean and "<pattern" not in clean
    assert all(_legend(p) == ["speeder threshold"] for p in _panels(_parse(clean)))
    bare = _checks(marked=())
    del bare["durations"]
    assert all(not _legend(p) for p in _panels(_parse(chart_durations(bare))))


def test_the_threshold_and_target_lines_are_at_their_values() -> None:
    checks = _checks()
    for form, panel in zip(FORMS, _panels(_parse(chart_durations(checks))), strict=True):
        base, per = _scale(panel)
        threshold = {"household": 6.0, "child": 8.0}[form]
        assert _y_of(panel, "chart-rule") == pytest.approx(base - threshold * per, abs=0.15)
        top = max(float(b.get("height")) for b in _bars(panel)) / per
        grid = panel.findall("s:line[@class='chart-grid']", NS)
        assert base - float(grid[-1].get("y1")) >= 1.3 * top * per - 0.2  # room for the legend
    for form, panel in zip(FORMS, _panels(_parse(chart_progress(checks))), strict=True):
        base, per = _scale(panel)
        target = {"household": 40, "child": 30}[form]
        assert _y_of(panel, "chart-rule") == pytest.approx(base - target * per, abs=0.15)
        assert _legend(panel) == [f"target {target}"]
        points = panel.find("s:polyline[@class='chart-line']", NS).get("points").split()
        ys = [float(p.split(",")[1]) for p in points]
        step = 5 if form == "household" else 4
        assert ys == pytest.approx([base - step * (k + 1) * per for k in range(6)], abs=0.15)
    no_target = _checks()
    del no_target["progress_country"]
    assert "chart-rule" not in (chart_progress(no_target) or "")


def test_labels_from_data_are_escaped() -> None:
    ids = ['<b>&"1"</b>', "O'Brien & co", "E03"]
    checks = _checks(ids=ids, marked=(ids[0],))
    checks["aapor"]["stratum"] = checks["aapor"]["stratum"].replace("S1", "<S&1>")
    checks["enumerator_dashboard"]["form"] = checks["enumerator_dashboard"]["form"].replace(
        "child", 'child <"x">')
    for draw in (chart_durations, chart_dk_refusal, chart_response):
        svg = draw(checks)
        root = _parse(svg)  # escaped well enough to parse
        assert "<b>" not in svg and "<S&1>" not in svg
        texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
        if draw is chart_response:
            assert "<S&1>" in texts
        else:
            assert set(ids) <= texts
    titles = [t.text for t in _parse(chart_durations(checks)).iter(
        "{http://www.w3.org/2000/svg}text") if t.get("class") == "chart-title"]
    assert 'child <"x">: median minutes' in titles


def test_nothing_to_draw_gives_none_and_zeros_give_an_axis() -> None:
    assert all(draw({}) is None for _, draw in CHARTS)
    checks = _checks()
    assert chart_durations({"enumerator_dashboard": checks["enumerator_dashboard"].iloc[:0]}) \
        is None
    dk = checks["dk_refusal"].assign(dk_base=0, refusal_base=0)
    assert chart_dk_refusal({"dk_refusal": dk}) is None
    zero = checks["enumerator_dashboard"].assign(median_duration=np.nan, quarantined=0)
    root = _parse(chart_durations({"enumerator_dashboard": zero}))
    for panel in _panels(root):
        assert [float(b.get("height")) for b in _bars(panel)] == [0.0] * 8
        assert [t.text for t in panel.findall("s:text[@class='chart-ytick']", NS)][-1] == "1.0"
    none = checks["dk_refusal"].assign(dk=0, refused=0)
    assert all(b.get("height") == "0" for b in _bars(_panels(_parse(
        chart_dk_refusal({"dk_refusal": none})))[0]))
    empty = checks["aapor"].assign(RR1=np.nan, RR3=np.nan, COOP1=np.nan)
    assert _parse(chart_response({"aapor": empty})) is not None
    one_day = checks["survey_dashboard"].iloc[[0]]
    assert len(_panels(_parse(chart_progress({"survey_dashboard": one_day})))) == 1


def _extent(text: ET.Element) -> tuple[float, float, float]:
    """(x, y of the anchor, estimated length) of a rotated tick label."""
    x, y = map(float, re.match(r"translate\(([-\d.]+),([-\d.]+)\)",
                               text.get("transform")).groups())
    return x, y, charts.text_width(_label(text), float(text.get("font-size")))


@pytest.mark.parametrize("count", [60, 200])
def test_many_enumerators_fit_and_marked_ones_stay_labelled(count: int) -> None:
    ids = [f"enumerator-{i:03d}" for i in range(count)]
    marked = tuple(ids[3::7])
    root = _parse(chart_durations(_checks(ids=ids, marked=marked)))
    height = float(root.get("height"))
    width = float(root.get("width"))
    for form, panel in zip(FORMS, _panels(root), strict=True):
        assert len(_bars(panel)) == count
        ticks = _xticks(panel)
        spots = [_extent(t) for t in ticks]
        assert all(0 <= x <= width and y + length <= height for x, y, length in spots)
        xs = sorted(x for x, _, _ in spots)
        size = float(ticks[0].get("font-size"))
        assert size >= charts.MIN_XTICK_SIZE
        assert min(np.diff(xs)) >= size  # no two labels on top of each other
        shown = {_label(t) for t in ticks}
        assert len(shown) == count if count == 60 else len(shown) < count
        if form == "child":
            assert set(marked) <= shown


def test_long_labels_are_cut_with_the_whole_text_as_tooltip() -> None:
    long = "an enumerator code far longer than any real one"
    root = _parse(chart_durations(_checks(ids=[long, "E02"], marked=())))
    tick = next(t for t in _xticks(_panels(root)[0]) if t.find("s:title", NS) is not None)
    assert tick.find("s:title", NS).text == long
    assert _label(tick).endswith("…") and len(_label(tick)) == charts.MAX_LABEL


def test_the_charts_of_one_report_use_unique_ids() -> None:
    page = render(_checks(), title="Synthetic")
    section = page[page.index('<section id="charts">'):]
    section = section[:section.index("</section>")]
    assert section.count("<svg") == len(CHARTS)
    ids = re.findall(r'\bid="([^"]+)"', section)
    assert ids and len(ids) == len(set(ids))
    assert set(re.findall(r"url\(#([^)]+)\)", section)) <= set(ids)
    assert render(_checks(), title="Synthetic") == page
    # Two charts of one page that both hatch bars name their patterns apart.
    xlim, ticks = charts.categories(["a"])
    hatched = charts.Panel(title="", xlim=xlim, ticks=ticks,
                           bars=[charts.Bars([1.0], "#000", hatch=True)])
    one, two = (re.findall(r'\bid="([^"]+)"', charts.chart_svg([hatched], name=n, label=n))
                for n in ("one", "two"))
    assert one and two and not set(one) & set(two)


def test_ticks_are_round_and_cover_the_values() -> None:
    assert charts.nice_ticks(0, 1159) == [0, 200, 400, 600, 800, 1000, 1200]
    assert charts.nice_ticks(0, 31.8) == [0, 10, 20, 30, 40]
    assert charts.nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts.nice_ticks(0, 0.037) == [0, 0.01, 0.02, 0.03, 0.04]
    for hi in (0.3, 7, 99, 101, 4230, 1e6):
        ticks = charts.nice_ticks(0, hi)
        step = ticks[1] - ticks[0]
        assert ticks[0] == 0 and ticks[-1] >= hi and len(ticks) <= 7
        assert step / 10 ** np.floor(np.log10(step)) in (1, 2, 5)
