"""Interviews written by ODK's own form engine, stored as ODK Collect stores them, ingest whole.

``tests/javarosa/FillForm.java`` drives JavaRosa (the engine of ODK Collect, bundled in ODK
Validate's jar) through the compiled forms, answering each question it asks with the simulated
interview's answer and keeping the device's random draws as the simulator drew them. The engine
decides what is relevant, computes the calculations and serialises the instance (relevant notes
as empty elements, non-relevant questions left out) into ``instances/<form>_<date>/``. Reading
that device folder must give every interview, nothing quarantined, no element reported as
foreign, and the answers the simulator gave.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dhsurvey.cli import app
from dhsurvey.fieldwork.config import load_country
from dhsurvey.fieldwork.simulate import FORMS, simulate_country
from dhsurvey.forms.compile import to_xform
from dhsurvey.forms.model import RANDOM_FUNCTIONS, FormModel, load_form
from dhsurvey.ingest.canonical import RawForm
from dhsurvey.ingest.read import read_export_forms

ROOT = Path(__file__).parents[2]
INSTRUMENTS = ROOT / "instruments"
MODELS = {f: load_form(INSTRUMENTS / f"{f}.xlsx") for f in FORMS}
SOURCE = ROOT / "tests" / "javarosa" / "FillForm.java"
FORMS_FILLED = ("household", "child", "caregiver")
_POSITION = re.compile(r"([^/\[]+)\[(\d+)\]")


def _jar() -> Path:
    import pyxform

    return Path(pyxform.__file__).parent / "validators" / "odk_validate" / "bin" / \
        "ODK_Validate.jar"


def _escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


def _drawn(model: FormModel) -> list[str]:
    """Root-level calculations a device draws at random: the engine keeps them as drawn."""
    return [i.name for i in model.fields_in(None) if i.calculation and any(
        f"{fn}(" in i.calculation for fn in RANDOM_FUNCTIONS)]


def _key(model: FormModel, name: str, row_key: str | None = None) -> str:
    positions = dict(_POSITION.findall(row_key or ""))
    item = model[name]
    steps = [f"{step}[{positions.get(step, '1') if model[step].is_repeat else '1'}]"
             for step in item.path]
    return "/".join([*steps, name])


def _job(raw: RawForm, model: FormModel, xform: Path, device: Path, limit: int) -> list[str]:
    """FillForm directives for the first ``limit`` interviews of ``raw``."""
    root_name = model.settings.get("name") or "data"
    lines = [f"FORM {xform}"]
    inputs = [i.name for i in model.fields_in(None) if i.is_input]
    for n, rec in enumerate(raw.root.head(limit).to_dict("records")):
        name = f"{model.form_id}_2026-03-01_10-{n:02d}-00"
        lines.append(f"SUB {device / 'instances' / name / f'{name}.xml'}")
        lines.append(f"FORCE /{root_name}/meta/instanceID\t{_escape(rec['KEY'])}")
        for field in _drawn(model):
            if rec.get(field) is not None:
                path = "/".join([root_name, *model[field].path, field])
                lines.append(f"FORCE /{path}\t{_escape(rec[field])}")
        lines += [f"ANSWER {_key(model, f)}\t{_escape(rec[f])}" for f in inputs
                  if rec.get(f) is not None]
        for repeat, table in raw.repeats.items():
            fields = [i.name for i in model.fields_in(repeat) if i.is_input]
            mine = table[table["KEY"].str.startswith(f"{rec['KEY']}/")]
            for row in mine.to_dict("records"):
                lines += [f"ANSWER {_key(model, f, row['KEY'])}\t{_escape(row[f])}"
                          for f in fields if row.get(f) is not None]
        lines.append("END")
    return lines


@pytest.fixture(scope="module")
def engine_device(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, RawForm]]:
    if shutil.which("javac") is None:
        pytest.fail("javac is missing: scripts/system-deps.sh installs a JDK (Java 17)")
    base = tmp_path_factory.mktemp("engine")
    subprocess.run(["javac", "-d", str(base / "classes"), "-cp", str(_jar()), str(SOURCE)],
                   check=True, capture_output=True)
    sim = simulate_country(load_country(INSTRUMENTS / "countries" / "KEN.yaml"), MODELS,
                           seed=8, households=12)
    device = base / "odk"
    jobs: list[str] = []
    for form in FORMS_FILLED:
        xform = base / "forms" / f"{form}.xml"
        xform.parent.mkdir(exist_ok=True)
        xform.write_text(to_xform(MODELS[form]).xform, encoding="utf-8")
        jobs += _job(sim.forms[form], MODELS[form], xform, device, limit=6)
    (base / "job.txt").write_text("\n".join(jobs) + "\n", encoding="utf-8")
    done = subprocess.run(["java", "-cp", f"{base / 'classes'}:{_jar()}", "FillForm",
                           str(base / "job.txt")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    refused = [line for line in done.stdout.splitlines() if not line.endswith("\t0")]
    assert not refused, f"the engine refused answers: {refused}"
    return device, {f: sim.forms[f] for f in FORMS_FILLED}


def _same(a: object, b: object) -> bool:
    """Equal answers, numbers compared as numbers (the engine writes 5.0 for 5)."""
    if a == b:
        return True
    try:
        return [float(x) for x in str(a).split()] == [float(x) for x in str(b).split()]
    except ValueError:
        return False


def test_engine_written_instances_read_whole(engine_device, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    device, sims = engine_device
    caplog.set_level(logging.WARNING)
    tables = {r.form_id: r for r in read_export_forms(device, MODELS)}
    assert set(tables) == set(FORMS_FILLED)
    assert "elements the form does not have" not in caplog.text
    note_names = {i.name for m in MODELS.values() for i in m.items if i.type == "note"}
    notes = sum(len(set(re.findall(r"<(\w+) ?/>", xml.read_text())) & note_names)
                for xml in device.rglob("*.xml"))
    assert notes > 0  # the engine did write note elements, and they were taken as the form's
    for form, raw in tables.items():
        assert raw.quarantine.empty, raw.quarantine.to_dict("records")
        want = sims[form].root.head(6).set_index("KEY")
        got = raw.root.set_index("KEY")
        assert set(got.index) == set(want.index)
        compared = 0
        for field in [i.name for i in MODELS[form].fields_in(None) if i.is_input]:
            for key in want.index:
                a, b = want.at[key, field], got.at[key, field]
                if pd.isna(a) and pd.isna(b):
                    continue
                assert _same(a, b), (form, key, field, a, b)
                compared += 1
        assert compared > 50
        for repeat, table in sims[form].repeats.items():
            mine = table[table["KEY"].str.split("/").str[0].isin(want.index)]
            assert set(raw.repeats[repeat]["KEY"]) == set(mine["KEY"]), repeat


def test_validate_takes_the_engine_device_folder(engine_device,
                                                             tmp_path: Path) -> None:
    device, sims = engine_device
    out = tmp_path / "v"
    result = CliRunner().invoke(app, ["validate", str(device), "--out", str(out), "--country",
                                      "KEN", "--instruments", str(INSTRUMENTS)])
    assert result.exit_code == 0, result.output
    for form in FORMS_FILLED:
        rec = pd.read_json(out / form / "reconciliation.json", typ="series")
        assert rec["balanced"] and rec["raw"] == 6
