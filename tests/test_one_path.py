"""One path through a country: whole or in batches of PSUs, the same release byte for byte.

Simulated KEN fieldwork (every fault kind planted) goes from landing/ to release/ twice:
through the ``dhsurvey run`` command (validated whole, the tiers made side by side, the rows
released at once) and through the library in batches of 150 households (the tiers taking
turns, the rows released in slices). Every file of both tiers — data in four formats,
codebook, indicators, design set-ups, disclosure report — has the same SHA-256 both times, and
the gate (with the file scan) ran.

After the batched run the restricted zones are owner-only: every file under landing/, raw/ and
clean/ (accepted parts, work files, weights, the restricted mappings of release IDs) is either
owner-only (no group or other permission bits) or sits below folders that are all owner-only
from the zone down, and the zone folders themselves are 0700.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import instruments_with_budget

from dhsurvey import study as study_module
from dhsurvey.fieldwork.faults import KINDS
from dhsurvey.fieldwork.run import simulate_to
from dhsurvey.store import Store
from dhsurvey.study import Study, run_country

INSTRUMENTS = Path(__file__).parents[1] / "instruments"
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def instruments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 12 children per stratum: too few for the licensed tier's real strata at the
    study's 5 % budget (the gate rightly blocks it); batch identity is what is tested here,
    so local suppression is unbounded."""
    return instruments_with_budget(tmp_path_factory.mktemp("instruments"), 1.0)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory, instruments: Path) -> tuple[Study, Path]:
    study = Study.load(instruments)
    data = tmp_path_factory.mktemp("data")
    simulate_to(data / "landing", [study.config("KEN")], study.models, seed=5,
                households=700, faults=list(KINDS), formats=("central",))
    return study, data


def _manifest(data: Path) -> dict[str, str]:
    """Every file of both tiers (public release/, scientific-use licensed/) by checksum."""
    out = {}
    for folder in ("release", "licensed"):
        manifest = json.loads((data / folder / "KEN" / "manifest.json").read_text())
        assert manifest["disclosure_gate"] == "passed", folder
        out |= {f"{folder}/{f['file']}": f["sha256"] for f in manifest["files"]}
    return out


def test_whole_and_batched_runs_give_identical_releases(landed, monkeypatch) -> None:
    from dhsurvey.cli import app

    study, data = landed
    monkeypatch.setenv("DHSURVEY_PSEUDONYM_KEY", KEY.hex())
    monkeypatch.delenv("DHSURVEY_PRIVATE_KEY", raising=False)
    result = CliRunner().invoke(app, ["run", "ken", "--data", str(data), "--instruments",
                                      str(study.instruments)])
    assert result.exit_code == 0, result.output
    assert "validated in 1 batch(es)" in result.output
    assert result.output.count("file scan): passed") == 2
    # The run ends with the public-use files' own estimates (indicators.csv).
    assert "KEN: indicators of the public-use files" in result.output
    assert "ind_ocsea_any" in result.output
    whole = _manifest(data)
    # The fieldwork report, written beside the weighting and release, is there at the end.
    assert "Response rates by stratum" in (data / "clean" / "KEN" / "report.html").read_text()
    assert set(Store(data).quality_table("KEN", "aapor")["interview"]) >= {"household", "child"}
    assert {f"release/{name}" for name in (
        "child.parquet", "child.csv", "child.dta", "child.sav", "codebook.xlsx",
            "codebook.md", "indicators.csv", "svydesign.R", "svyset.do",
            "disclosure_risk.md")} <= set(whole)
    assert "licensed/replicates.csv" in whole and "release/replicates.csv" not in whole

    # Released rows assembled in several slices of the plan order, and the tiers taking turns
    # (memory said to be short), where the whole run made them side by side.
    monkeypatch.setattr(study_module, "RELEASE_ROWS", 97)
    monkeypatch.setattr("dhsurvey.parallel.available_memory", lambda: 1 << 40)
    assert study_module.tiers_side_by_side(Store(data), "KEN", whole=False)
    monkeypatch.setattr("dhsurvey.parallel.available_memory", lambda: 0)
    assert not study_module.tiers_side_by_side(Store(data), "KEN", whole=False)
    run = run_country(Store(data), study, "KEN", key=KEY, batch_households=150)
    households = len(Store(data).design("KEN"))  # whole PSUs cut at every 150 households
    assert run.validated.batches == -(-households // 150) > 1
    assert run.release.gate.passed and run.release.findings == []
    assert _manifest(data) == whole
    # Nothing lost: every submission accounted for in the batch layout.
    for rec in run.validated.reconciliation.values():
        assert rec["raw"] == rec["accepted"] + rec["quarantined"] + rec["duplicates"]
    # The restricted mapping names instanceIDs, in the restricted zone only.
    from dhsurvey.io import read_parquet

    for tier in ("public", "licensed"):
        records = read_parquet(data / "clean" / "KEN" / "restricted" / tier / "records.parquet")
        assert records["KEY"].str.startswith("uuid:").all()
    assert _not_owner_only(data) == []


ZONES = ("landing", "raw", "clean")


def _not_owner_only(data: Path) -> list[str]:
    """What of the restricted zones others may read after a batched run: a zone folder (or
    its country folder) that is not 0700, a file with group or other bits below such a
    folder, a restricted mapping that is not 0600."""
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    def named(path: Path) -> str:
        return f"{path.relative_to(data)} {oct(mode(path))}"

    problems = []
    for name in ZONES:
        zone = data / name
        problems += [named(p) for p in (zone, zone / "KEN") if mode(p) != 0o700]
        for path in sorted(zone.rglob("*")):
            if not path.is_file() or not mode(path) & 0o077:
                continue
            folders = [p for p in path.parents if p == zone or zone in p.parents]
            if any(mode(p) & 0o077 for p in folders):
                problems.append(named(path))
    # The run wrote what this is about: batched parts and the restricted mappings.
    clean = data / "clean" / "KEN"
    if not sorted((clean / "child" / "accepted").glob("batch-*.parquet")):
        problems.append("no batched parts of child were written")
    mappings = sorted((clean / "restricted").rglob("*.parquet"))  # one folder per tier
    for tier in ("public", "licensed"):
        if not {p.name for p in mappings if p.parent.name == tier} >= {
                "records.parquet", "households.parquet"}:
            problems.append(f"restricted mappings of the {tier} tier missing")
    problems += [named(p) for p in mappings if mode(p) != 0o600]
    return problems


def test_run_without_a_pseudonym_key_says_so(landed, monkeypatch) -> None:
    from dhsurvey.cli import app

    _, data = landed
    monkeypatch.delenv("DHSURVEY_PSEUDONYM_KEY", raising=False)
    result = CliRunner().invoke(app, ["run", "KEN", "--data", str(data), "--instruments",
                                      str(INSTRUMENTS)])
    assert result.exit_code == 2 and "DHSURVEY_PSEUDONYM_KEY" in result.output
    unknown = CliRunner().invoke(app, ["run", "XYZ", "--data", str(data), "--instruments",
                                       str(INSTRUMENTS)])
    assert unknown.exit_code == 2 and "XYZ" in unknown.output


def test_every_release_folder_carries_its_methods_note(landed) -> None:
    """methods.md: design, response, weighting with the margins' source and the trimming cap,
    variance estimation for the tier, disclosure control, the frontline-worker caveat; the
    numbers are the weight step's own."""
    study, data = landed
    store = Store(data)
    if not (data / "release" / "KEN" / "methods.md").exists():
        run_country(store, study, "KEN", key=KEY)
    summary = store.weights_summary("KEN")
    config = study.config("KEN")
    for folder, variance in (("release", "masked variance units"), ("licensed", "rep_001")):
        note = (data / folder / "KEN" / "methods.md").read_text(encoding="utf-8")
        assert note.startswith(f"# {config.name}: how these files were made")
        assert f"({folder}/)" in note.replace("`", "")
        assert "not a probability sample" in note
        assert config.margins_source.split(";")[0] in note
        assert f"{summary['trim']['cap']:,.1f}" in note
        hh = summary["households"]
        assert f"| Households | {hh['selected']} | {hh['eligible']} | {hh['respondents']} |" \
            in note
        assert variance in note
        assert study.disclosure.tiers["public" if folder == "release" else "licensed"] \
            .scenario in note
        # The country's files label its own zones only (the list holds every country's
        # regions; a region is released as its zone), and the methods note says so.
        assert "these files name its zone instead (8 zones: Coast, " in note
        import pyreadstat

        _, meta = pyreadstat.read_dta(str(data / folder / "KEN" / "child.dta"), metadataonly=True)
        assert set(meta.variable_value_labels["region"]) == set(config.released_regions.values())
