"""Build: XForms plus manifest, ODK Validate passing, versions deterministic in the content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workbooks import EN, q, valid_survey, write_workbook

from dhsurvey.cli import app
from dhsurvey.forms.compile import build
from dhsurvey.forms.model import load_form


def test_build_writes_xform_and_manifest(tmp_path: Path) -> None:
    src = write_workbook(tmp_path / "in" / "test.xlsx")
    (compiled,) = build(tmp_path / "in", tmp_path / "out", validate=True)
    xform = (tmp_path / "out" / "forms" / "test_form.xml").read_text()
    assert f'version="{compiled.model.version}"' in xform
    assert "stata" not in xform  # short labels are release metadata, not a device language
    assert 'lang="Kiswahili (sw)"' in xform
    manifest = json.loads((tmp_path / "out" / "forms" / "manifest.json").read_text())
    (entry,) = manifest["forms"]
    assert entry["form_id"] == "test_form"
    assert entry["version"] == compiled.model.version
    assert entry["content_hash"] == load_form(src).content_hash
    assert entry["encrypted"] is False


def test_build_is_deterministic(tmp_path: Path) -> None:
    write_workbook(tmp_path / "a" / "test.xlsx")
    write_workbook(tmp_path / "b" / "test.xlsx")  # same content, new file (new timestamps)
    build(tmp_path / "a", tmp_path / "out_a", validate=False)
    build(tmp_path / "b", tmp_path / "out_b", validate=False)
    build(tmp_path / "a", tmp_path / "out_a2", validate=False)
    a = (tmp_path / "out_a" / "forms" / "test_form.xml").read_bytes()
    assert a == (tmp_path / "out_b" / "forms" / "test_form.xml").read_bytes()
    assert a == (tmp_path / "out_a2" / "forms" / "test_form.xml").read_bytes()
    assert ((tmp_path / "out_a" / "forms" / "manifest.json").read_bytes()
            == (tmp_path / "out_a2" / "forms" / "manifest.json").read_bytes())


def test_build_reuses_forms_compiled_from_the_same_content(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A second build of unchanged workbooks reads the XForms back instead of running pyxform
    and ODK Validate again; a changed workbook, an edited XForm, a new key or a request for
    validation compiles again."""
    import dhsurvey.forms.compile as compile_module

    write_workbook(tmp_path / "in" / "test.xlsx")
    first = build(tmp_path / "in", tmp_path / "out", validate=False)
    calls: list[str] = []
    real = compile_module.to_xform
    monkeypatch.setattr(compile_module, "to_xform",
                        lambda model, **kw: calls.append(model.form_id) or real(model, **kw))
    again = build(tmp_path / "in", tmp_path / "out", validate=False)
    assert calls == [] and again[0].xform == first[0].xform
    assert again[0].warnings == first[0].warnings
    xml = tmp_path / "out" / "forms" / "test_form.xml"
    xml.write_text(xml.read_text() + "<!-- edited -->")
    build(tmp_path / "in", tmp_path / "out", validate=False)
    assert calls == ["test_form"] and "edited" not in xml.read_text()
    build(tmp_path / "in", tmp_path / "out", validate=True)  # not validated before
    assert calls == ["test_form"] * 2
    build(tmp_path / "in", tmp_path / "out", validate=False)  # validated covers unvalidated
    assert calls == ["test_form"] * 2
    write_workbook(tmp_path / "in" / "test.xlsx", survey=[*valid_survey(), q("text", "extra")])
    build(tmp_path / "in", tmp_path / "out", validate=False)
    assert calls == ["test_form"] * 3
    build(tmp_path / "in", tmp_path / "out", validate=False, force=True)
    assert calls == ["test_form"] * 4


def test_any_change_gives_a_new_version(tmp_path: Path) -> None:
    base = load_form(write_workbook(tmp_path / "base.xlsx")).version
    survey = valid_survey()
    survey[4] = {**survey[4], f"label::{EN}": "Age in completed years"}
    relabelled = load_form(write_workbook(tmp_path / "relabel.xlsx", survey)).version
    added = load_form(write_workbook(tmp_path / "added.xlsx", [
        *valid_survey(), q("note", "bye", "Thank you", "Asante")])).version
    assert len({base, relabelled, added}) == 3


def test_designer_version_is_kept_as_prefix(tmp_path: Path) -> None:
    from workbooks import SETTINGS

    model = load_form(write_workbook(tmp_path / "t.xlsx",
                                     settings={**SETTINGS, "version": "2026-11"}))
    assert model.version.startswith("2026-11-")
    assert model.version.endswith(model.content_hash[:8])


def test_public_key_enables_encryption(tmp_path: Path) -> None:
    write_workbook(tmp_path / "in" / "t.xlsx")
    key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo"
    (compiled,) = build(tmp_path / "in", tmp_path / "out", validate=False, public_key=key)
    assert f'base64RsaPublicKey="{key}"' in compiled.xform
    assert compiled.manifest_entry()["encrypted"] is True


def test_cli_build(tmp_path: Path) -> None:
    write_workbook(tmp_path / "in" / "t.xlsx")
    shutil.copy(tmp_path / "in" / "t.xlsx", tmp_path / "in" / "~$t.xlsx")  # Excel lock file
    result = CliRunner().invoke(app, ["build", "--instruments", str(tmp_path / "in"),
                                      "--out", str(tmp_path / "out"), "--no-validate"])
    assert result.exit_code == 0, result.output
    assert "test_form" in result.output
    assert sorted(p.name for p in (tmp_path / "out" / "forms").iterdir()) == [
        "manifest.json", "test_form.xml"]
