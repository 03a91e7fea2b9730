"""The Dagster UI in a real browser: asset graph, a check page, and the data manager's morning
view of one country after a pipeline run: the demo's run of the session (tests/demo_run.py),
its data read in place, its DAGSTER_HOME copied (the UI writes into its own).

Starts the UI as a data manager does (``dhsurvey ui``: ``dagster dev`` on 127.0.0.1 with its
own DAGSTER_HOME, nux and telemetry off, and the quality reports served beside it), renders
the pages in headless Chromium (Debian ``chromium``, installed by ``.ci/run``; driven through
Playwright where a page needs a click) and keeps the screenshots under ``tests/artifacts/``
for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from demo_run import DemoRun, free_port
from workbooks import code_location_instruments

from pipelines.cli import group_members
from pipelines.study import countries

ROOT = Path(__file__).parents[2]

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (.ci/run installs it)")


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory, demo_run: DemoRun):
    run = demo_run.checked()
    assert run.reads_like(code_location_instruments())
    base = tmp_path_factory.mktemp("ui")
    # The UI and its daemon write into DAGSTER_HOME: a copy of the run's. The data root is
    # read in place (the sensors that would write there are stopped by default); its raw and
    # clean zones are encrypted at rest with the demo's key, which the UI gets as a data
    # manager's would, with the demo's other keys.
    home = base / "dagster_home"
    shutil.copytree(run.home, home)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DHSURVEY_DATA": str(run.data),
           "DHSURVEY_INSTRUMENTS": str(run.instruments), **run.key_env()}
    # As a data manager starts it (the README's `make ui`): `dhsurvey ui`, which runs
    # `dagster dev` in a process group of its own. Started as from the background of a script
    # (or under nohup): SIGINT ignored, which its children would inherit.
    dhsurvey = Path(sys.executable).with_name("dhsurvey")
    # The reports where the run's metadata links to them (chosen before the run).
    proc = subprocess.Popen([str(dhsurvey), "ui", "--port", str(port), "--reports-port",
                             str(run.reports_port), "--workspace",
                             str(ROOT / "workspace.yaml")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        _wait(f"http://127.0.0.1:{port}/server_info", 120)
        yield f"http://127.0.0.1:{port}", base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _showing(page, url: str, texts: tuple[str, ...]) -> str:
    """The DOM of ``url`` once every one of ``texts`` is in it (the UI fills its pages from
    GraphQL after the first paint)."""
    page.goto(url)
    page.wait_for_function("texts => texts.every(t => document.documentElement.outerHTML"
                           ".includes(t))", arg=list(texts))
    return page.content()


def test_asset_graph_lists_the_pipeline(dagster_ui, browser) -> None:
    url, _, _ = dagster_ui
    ARTIFACTS.mkdir(exist_ok=True)
    names = ("compiled_forms", "raw_household", "accepted_child", "weights", "indicators",
             "release", "pooled_release")
    dom = _showing(browser, f"{url}/assets", names)
    assert all(name in dom for name in names)
    # The lineage of the asset groups, each listed and drawn, landing to release.
    browser.goto(f"{url}/asset-groups")
    groups = ["instruments", "raw", "clean", "weights", "release"]
    browser.wait_for_function("groups => { const words = document.body.innerText.split('\\n')"
                              ".map(w => w.trim()); return groups.every(g => words.filter("
                              "w => w === g).length >= 2); }", arg=groups)
    browser.screenshot(path=str(ARTIFACTS / "asset-graph.png"))
    assert (ARTIFACTS / "asset-graph.png").stat().st_size > 10_000


def test_check_page_shows_a_passed_check(dagster_ui, browser) -> None:
    url, _, _ = dagster_ui
    dom = _showing(browser, f"{url}/assets/accepted_child?view=checks", ("reconciliation",))
    assert "reconciliation" in dom
    browser.get_by_text("Passed").or_(browser.get_by_text("Succeeded")).first.wait_for()
    assert "Passed" in browser.content() or "Succeeded" in browser.content()
    browser.screenshot(path=str(ARTIFACTS / "check-page.png"))
    assert (ARTIFACTS / "check-page.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the Debian one) driven by Playwright, for pages that need a click."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                            "--disable-dev-shm-usage"])
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        chromium.close()


def test_morning_view_shows_the_country_by_enumerator(dagster_ui, browser) -> None:
    """The data manager opens UGA's fieldwork_day and reads its report by enumerator."""
    url, _, _ = dagster_ui
    page = browser
    page.goto(f"{url}/assets/fieldwork_day?view=partitions&partition=UGA")
    row = page.locator("tr", has_text="by enumerator").last
    row.wait_for()
    # The UI shows short Markdown in place and long Markdown behind a button.
    button = row.get_by_text("[Show Markdown]")
    if button.count():
        button.click()
        view = page.get_by_role("dialog")
    else:
        view = row
    view.get_by_text("quarantine reasons").wait_for()
    table = view.locator("table").first
    header = table.locator("th").all_inner_texts()
    assert header[:4] == ["team", "enumerator", "received", "quarantined"]
    config = next(c for c in countries() if c.iso == "UGA")
    shown = {int(t) for t in table.locator("tbody tr td:nth-child(2)").all_inner_texts()}
    assert shown >= set(config.enumerators)  # every enumerator of the country file
    teams = {t.strip() for t in table.locator("tbody tr td:nth-child(1)").all_inner_texts()}
    assert teams >= {str(t.id) for t in config.teams}
    ARTIFACTS.mkdir(exist_ok=True)
    view.screenshot(path=str(ARTIFACTS / "morning-view-enumerators.png"))
    page.keyboard.press("Escape")
    page.locator("tr", has_text="morning report").last.get_by_text("[Show Markdown]").click()
    report = page.get_by_role("dialog")
    report.get_by_text("progress against targets by team").wait_for()
    for section in ("new submissions by team and enumerator", "flagged enumerators",
                    "response rates by stratum", "this country's runs"):
        assert report.get_by_text(section, exact=True).count() == 1, section
    page.screenshot(path=str(ARTIFACTS / "morning-view-report.png"))
    page.keyboard.press("Escape")


def test_morning_view_links_to_the_served_quality_report(dagster_ui, browser) -> None:
    url, _, _ = dagster_ui
    page = browser
    page.goto(f"{url}/assets/fieldwork_day?view=partitions&partition=UGA")
    link = page.locator("tr", has_text="fieldwork quality report").last.locator("a").first
    href = link.get_attribute("href")
    assert href and href.startswith("http://127.0.0.1:") and href.endswith("/UGA/report.html")
    page.goto(href)
    assert page.title() == "Fieldwork quality — UGA"
    assert page.locator("table").count() > 5
    page.screenshot(path=str(ARTIFACTS / "quality-report.png"))


def test_check_status_is_shown_per_country(dagster_ui, browser) -> None:
    url, _, _ = dagster_ui
    page = browser
    page.goto(f"{url}/assets/fieldwork_day?view=checks&checkDetail=duplicates_jump")
    page.get_by_text("Partition", exact=True).wait_for()
    assert page.locator("text=Partition").first.is_visible()
    page.get_by_role("tab", name="Partitions").last.click()
    page.get_by_text("Passed (3)").wait_for()
    body = page.inner_text("body")
    # The demo's three countries passed; the other ten were not run here.
    assert all(iso in body for iso in ("KEN", "TZA", "UGA")) and "Missing (10)" in body
    page.screenshot(path=str(ARTIFACTS / "check-per-country.png"))


def test_stopping_dhsurvey_ui_stops_the_server(dagster_ui) -> None:
    """A service manager stops `dhsurvey ui` with SIGTERM (to it alone, not its group): the
    UI and its daemon stop with it rather than live on as orphans. Last in this module."""
    import urllib.request

    url, _, proc = dagster_ui
    port = url.rsplit(":", 1)[1]
    # dhsurvey ui was started with SIGINT ignored; dagster dev, which handles SIGTERM as it
    # handles SIGINT, must not have inherited that.
    dev = [pid for pid, words in _processes_naming(port) if "dev" in words]
    assert dev and not any(_ignores(pid, signal.SIGTERM) for pid in dev)
    groups = {os.getpgid(pid) for pid in dev}
    # dagster dev's group: its webserver, daemon, code server and the code server's child.
    assert all(len(group_members(group) or []) >= 4 for group in groups)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/server_info", timeout=5)
    # Nothing that served the UI lives on: neither what names the port (dagster dev, its
    # webserver) nor anything else of dagster dev's process group (its code server).
    assert _processes_naming(port) == []
    assert all(group_members(group) == [] for group in groups)


def _processes_naming(port: str) -> list[tuple[int, list[str]]]:
    """(pid, command line) of this machine's Dagster processes that name ``port``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended meanwhile
            continue
        if port in words and any("dagster" in w for w in words):
            found.append((int(cmdline.parent.name), words))
    return found


def _ignores(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores signal ``signum`` (its SigIgn mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False
