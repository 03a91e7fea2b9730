"""Corrupt exports, each built here from a valid one: a clear error or accounted quarantine.

Every fixture either raises a DhsurveyError naming the file (and row/column where one applies)
or reads with each damaged submission in quarantine under a rule. For every fixture that reads,
input submissions = root rows + root-level quarantine rows: nothing disappears.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from test_roundtrip import accounted, as_known_to_xml, rsa_pair, synthetic_raw

from dhsurvey.errors import DhsurveyError
from dhsurvey.fieldwork.exports import write_central_zip, write_kobo_json, write_xml_folder
from dhsurvey.forms.model import FormModel, load_form
from dhsurvey.ingest.canonical import RawForm, assert_same_content
from dhsurvey.ingest.central import read_central_zip
from dhsurvey.ingest.kobo import read_kobo_json
from dhsurvey.ingest.read import read_export
from dhsurvey.ingest.xmlfolder import read_xml_folder

ROOT = Path(__file__).resolve().parents[2]
N = 10  # submissions in every valid export


@dataclass
class Base:
    model: FormModel
    models: dict[str, FormModel]
    raw: RawForm
    zip: Path
    json: Path
    xml: Path
    enc: Path
    private: bytes
    public: bytes


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    where = tmp_path_factory.mktemp("valid")
    models = {m.form_id: m for m in map(load_form, sorted((ROOT / "instruments").glob("*.xlsx")))}
    model = models["household"]
    raw = synthetic_raw(model, n=N, seed=5)
    private, public = rsa_pair()
    write_xml_folder(raw, model, where / "xml")
    write_xml_folder(raw, model, where / "enc", public_key_pem=public,
                     rng=random.Random(1).randbytes)
    return Base(model, models, raw, write_central_zip(raw, model, where / "hh.zip"),
                write_kobo_json(raw, model, where / "hh.json")[0], where / "xml", where / "enc",
                private, public)


def assert_accounted(read: RawForm, n_in: int = N) -> None:
    assert accounted(read) == n_in, read.quarantine.to_dict("records")


def quarantined(read: RawForm, rule: str) -> pd.DataFrame:
    q = read.quarantine[read.quarantine["rule"] == rule]
    assert len(q), f"no '{rule}' quarantine rows: {read.quarantine.to_dict('records')}"
    assert q["message"].str.len().gt(0).all()
    return q


# --------------------------------------------------------------------------- Central zip


def rezip(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], dict[str, bytes]]) -> Path:
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in edit(members).items():
            zf.writestr(name, data)
    return dst


def edit_csv(member: str, fn: Callable[[str], str]) -> Callable[[dict[str, bytes]], dict]:
    def edit(members: dict[str, bytes]) -> dict[str, bytes]:
        return {**members, member: fn(members[member].decode("utf-8")).encode("utf-8")}
    return edit


def root_lines(text: str) -> list[list[str]]:
    import csv
    import io
    return list(csv.reader(io.StringIO(text, newline="")))


def to_csv(rows: list[list[str]]) -> str:
    import csv
    import io
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def edit_column(text: str, column: str, fn: Callable[[int, list[str], int], None]) -> str:
    rows = root_lines(text)
    idx = rows[0].index(column)
    for n, row in enumerate(rows[1:], start=1):
        fn(n, row, idx)
    return to_csv(rows)


ROOT_CSV, ROSTER_CSV = "household.csv", "household-roster.csv"


def error_of(fn: Callable[[], object]) -> DhsurveyError:
    with pytest.raises(DhsurveyError) as info:
        fn()
    return info.value


def test_truncated_zip(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "cut.zip"
    data = base.zip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-unreadable" and err.context["file"] == str(path)


def test_damaged_member(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(base.zip) as zf:
        info = zf.getinfo(ROOT_CSV)
    data = bytearray(base.zip.read_bytes())
    start = info.header_offset + 30 + len(ROOT_CSV) + 40
    data[start:start + 20] = bytes(20)
    path.write_bytes(bytes(data))
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code in ("export-unreadable", "export-encoding", "export-malformed")
    assert err.context["file"].startswith(str(path))


def test_empty_zip_file(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    path.write_bytes(b"")
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-unreadable" and err.context["file"] == str(path)


def test_empty_root_table(base: Base, tmp_path: Path) -> None:
    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROOT_CSV, lambda t: ""))
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-empty" and err.context["file"] == f"{path}/{ROOT_CSV}"


def test_missing_repeat_table(base: Base, tmp_path: Path) -> None:
    path = rezip(base.zip, tmp_path / "x.zip",
                 lambda m: {k: v for k, v in m.items() if k != ROSTER_CSV})
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-missing-table" and ROSTER_CSV in err.message
    assert err.context["file"] == str(path)


def test_missing_column(base: Base, tmp_path: Path) -> None:
    def drop(text: str) -> str:
        rows = root_lines(text)
        idx = rows[0].index("hh_id-cluster")
        return to_csv([r[:idx] + r[idx + 1:] for r in rows])

    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROOT_CSV, drop))
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-missing-column"
    assert err.context == {"file": f"{path}/{ROOT_CSV}", "row": 1, "column": "hh_id-cluster"}


def test_extra_unknown_column_is_ignored(base: Base, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    def add(text: str) -> str:
        rows = root_lines(text)
        return to_csv([[*r[:3], "note_col" if i == 0 else "x", *r[3:]]
                       for i, r in enumerate(rows)])

    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROOT_CSV, add))
    with caplog.at_level(logging.WARNING):
        read = read_central_zip(path, base.model)
    assert "note_col" in caplog.text
    assert_same_content(base.raw, read)
    assert_accounted(read)


def test_utf8_bom(base: Base, tmp_path: Path) -> None:
    path = rezip(base.zip, tmp_path / "x.zip",
                 lambda m: {k: b"\xef\xbb\xbf" + v for k, v in m.items()})
    read = read_central_zip(path, base.model)
    assert_same_content(base.raw, read)
    assert_accounted(read)


def test_crlf_line_endings(base: Base, tmp_path: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    # as unix2dos or a Windows editor converts it: every "\n" not already after "\r"
    path = rezip(base.zip, tmp_path / "x.zip",
                 lambda m: {k: re.sub(rb"(?<!\r)\n", b"\r\n", v) for k, v in m.items()})
    assert b"\r\n" in zipfile.ZipFile(path).read(ROOT_CSV)
    with caplog.at_level(logging.WARNING):
        read = read_central_zip(path, base.model)
    assert not caplog.text  # nothing to warn about in a complete export
    # In a CRLF file an in-cell "\r\n" cannot be told from a converted "\n"; the reader takes
    # "\n" (what devices write), so only answers that had "\r\n" come back different.
    expected = RawForm(base.raw.form_id, base.raw.root.map(
        lambda v: v.replace("\r\n", "\n") if isinstance(v, str) else v),
        {n: t.map(lambda v: v.replace("\r\n", "\n") if isinstance(v, str) else v)
         for n, t in base.raw.repeats.items()})
    assert_same_content(expected, read)
    assert_accounted(read)


def test_latin1_text_is_an_error_naming_the_line(base: Base, tmp_path: Path) -> None:
    text = zipfile.ZipFile(base.zip).read(ROSTER_CSV).decode("utf-8")
    data = text.encode("latin-1", errors="replace")
    first = next(i for i, b in enumerate(data) if b >= 0x80)
    line = data.count(b"\n", 0, first) + 1
    path = rezip(base.zip, tmp_path / "x.zip", lambda m: {**m, ROSTER_CSV: data})
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-encoding"
    assert err.context == {"file": f"{path}/{ROSTER_CSV}", "line": line}
    assert f"line {line}" in err.message


def test_ragged_row(base: Base, tmp_path: Path) -> None:
    def cut(text: str) -> str:
        rows = root_lines(text)
        rows[3] = rows[3][:5]
        return to_csv(rows)

    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROOT_CSV, cut))
    err = error_of(lambda: read_central_zip(path, base.model))
    assert err.code == "export-malformed" and err.context["row"] == 4


def test_duplicated_key(base: Base, tmp_path: Path) -> None:
    def dup(text: str) -> str:
        rows = root_lines(text)
        copy = list(rows[2])
        copy[rows[0].index("hh_id-cluster")] = "999"  # a later, different copy
        return to_csv([*rows, copy])

    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROOT_CSV, dup))
    read = read_central_zip(path, base.model)
    q = quarantined(read, "duplicate-key")
    assert len(q) == 1 and q.iloc[0]["row"] == N + 2
    assert q.iloc[0]["KEY"] == base.raw.root.iloc[1]["KEY"]
    assert_same_content(base.raw, read)  # the first copy is kept
    assert_accounted(read, N + 1)


def test_orphan_repeat_rows(base: Base, tmp_path: Path) -> None:
    def orphan(text: str) -> str:
        rows = root_lines(text)
        ghost = ["1", "Juma", "1", "40", "1", "", "0", "uuid:not-here",
                 "uuid:not-here/hh_interview/roster[1]"]
        return to_csv([*rows, ghost])

    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROSTER_CSV, orphan))
    read = read_central_zip(path, base.model)
    q = quarantined(read, "orphan-repeat")
    assert list(q["value"]) == ["uuid:not-here"] and list(q["column"]) == ["PARENT_KEY"]
    assert q.iloc[0]["source_file"] == f"{path}/{ROSTER_CSV}"
    assert_same_content(base.raw, read)
    assert_accounted(read)


def test_non_numeric_integer_is_kept_as_text(base: Base, tmp_path: Path) -> None:
    def word(n: int, row: list[str], idx: int) -> None:
        if n == 1:
            row[idx] = "kumi na mbili"

    path = rezip(base.zip, tmp_path / "x.zip",
                 edit_csv(ROOT_CSV, lambda t: edit_column(t, "hh_id-cluster", word)))
    read = read_central_zip(path, base.model)
    assert read.root.iloc[0]["cluster"] == "kumi na mbili"  # validation types it later
    assert read.quarantine.empty
    assert_accounted(read)


def test_unknown_form_version_is_recorded(base: Base, tmp_path: Path) -> None:
    def old(n: int, row: list[str], idx: int) -> None:
        row[idx] = "1999010101"

    path = rezip(base.zip, tmp_path / "x.zip",
                 edit_csv(ROOT_CSV, lambda t: edit_column(t, "FormVersion", old)))
    read = read_central_zip(path, base.model)
    assert set(read.root["form_version"]) == {"1999010101"}
    assert read.quarantine.empty
    assert_accounted(read)


def test_central_not_decrypted_rows(base: Base, tmp_path: Path) -> None:
    def blank(text: str) -> str:
        rows = root_lines(text)
        header = rows[0]
        keep = {"SubmissionDate", "KEY", "SubmitterID", "SubmitterName", "FormVersion",
                "AttachmentsPresent", "AttachmentsExpected", "Edits"}
        for n, status in ((1, "not decrypted"), (2, "missing encrypted form data")):
            rows[n] = [v if h in keep else "" for h, v in zip(header, rows[n], strict=True)]
            rows[n][header.index("Status")] = status
        return to_csv(rows)

    keys = list(base.raw.root["KEY"][:2])
    path = rezip(base.zip, tmp_path / "x.zip", edit_csv(ROOT_CSV, blank))
    path = rezip(path, tmp_path / "y.zip", edit_csv(ROSTER_CSV, lambda t: to_csv(
        [r for r in root_lines(t) if r[-2] not in keys])))
    read = read_central_zip(path, base.model)
    q = quarantined(read, "not-decrypted")
    assert list(q["KEY"]) == keys and list(q["value"]) == ["not decrypted",
                                                            "missing encrypted form data"]
    assert len(read.root) == N - 2
    assert_accounted(read)


# --------------------------------------------------------------------------- Kobo JSON


def test_json_not_kobo_shape(base: Base, tmp_path: Path) -> None:
    for i, doc in enumerate(([{"a": 1}], {"data": []}, {"results": [1, 2]})):
        path = tmp_path / f"odd{i}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        err = error_of(lambda p=path: read_kobo_json(p, base.model))
        assert err.code == "export-shape" and err.context["file"] == str(path)


def test_json_broken(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = base.json.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    err = error_of(lambda: read_kobo_json(path, base.model))
    assert err.code == "export-unreadable" and err.context["line"] > 1


def test_json_empty(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    err = error_of(lambda: read_kobo_json(path, base.model))
    assert err.code == "export-empty" and err.context["file"] == str(path)


def test_json_latin1(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes(base.json.read_text(encoding="utf-8").encode("latin-1", "replace"))
    err = error_of(lambda: read_kobo_json(path, base.model))
    assert err.code == "export-encoding" and err.context["line"] > 1


def test_json_bom(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + base.json.read_bytes())
    read = read_kobo_json(path, base.model)
    assert_same_content(base.raw, read)
    assert_accounted(read)


def test_json_duplicate_across_pages(base: Base, tmp_path: Path) -> None:
    doc = json.loads(base.json.read_text(encoding="utf-8"))
    with_roster = next(r for r in doc["results"] if r.get("hh_interview/roster"))
    extra = dict(with_roster, **{"hh_interview/roster": with_roster["hh_interview/roster"] * 2})
    page2 = tmp_path / "p2.json"
    page2.write_text(json.dumps({"count": N + 1, "next": None, "previous": "x",
                                 "results": [extra]}), encoding="utf-8")
    read = read_kobo_json([base.json, page2], base.model)
    q = quarantined(read, "duplicate-key")
    assert list(q["KEY"]) == [with_roster["meta/instanceID"]]
    assert q.iloc[0]["source_file"] == str(page2) and q.iloc[0]["row"] == 1
    assert len(quarantined(read, "parent-quarantined")) == 2 * len(
        with_roster["hh_interview/roster"])
    assert_same_content(base.raw, read)  # the later copy's roster did not leak in
    assert_accounted(read, N + 1)


def test_json_result_of_another_form(base: Base, tmp_path: Path) -> None:
    doc = json.loads(base.json.read_text(encoding="utf-8"))
    doc["results"][0]["_xform_id_string"] = "caregiver"
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    read = read_kobo_json(path, base.model)
    assert list(quarantined(read, "wrong-form")["value"]) == ["caregiver"]
    assert_accounted(read)


# --------------------------------------------------------------------------- instance XML


def copy_tree(src: Path, dst: Path) -> tuple[Path, list[Path]]:
    shutil.copytree(src, dst)
    return dst, sorted(p for p in dst.iterdir() if p.is_dir())


def test_xml_not_xml(base: Base, tmp_path: Path) -> None:
    folder, insts = copy_tree(base.xml, tmp_path / "x")
    (insts[0] / "submission.xml").write_bytes(b"PK\x03\x04 this is not xml")
    (insts[1] / "submission.xml").write_bytes(b"")
    read = read_xml_folder(folder, base.model)
    q = quarantined(read, "xml-unreadable")
    assert len(q) == 2 and q.iloc[0]["source_file"] == str(insts[0] / "submission.xml")
    assert_accounted(read)


def test_xml_wrong_root_id(base: Base, tmp_path: Path) -> None:
    folder, insts = copy_tree(base.xml, tmp_path / "x")
    sub = insts[0] / "submission.xml"
    sub.write_bytes(sub.read_bytes().replace(b'id="household"', b'id="caregiver"'))
    other = insts[1] / "submission.xml"
    other.write_bytes(b'<?xml version="1.0"?><html><body>Not found</body></html>')
    read = read_xml_folder(folder, base.model)
    q = quarantined(read, "wrong-form")
    assert list(q["value"]) == ["caregiver", None]
    assert_accounted(read)


def test_xml_missing_submission(base: Base, tmp_path: Path) -> None:
    folder, insts = copy_tree(base.xml, tmp_path / "x")
    (insts[0] / "submission.xml").rename(insts[0] / "submission.xml.bak")
    read = read_xml_folder(folder, base.model)
    assert len(quarantined(read, "xml-missing")) == 1
    assert_accounted(read)


def test_encrypted_without_key(base: Base) -> None:
    read = read_xml_folder(base.enc, base.model)
    q = quarantined(read, "not-decrypted")
    assert len(q) == N and set(q["value"]) == {"no-private-key"}
    assert set(q["KEY"]) == set(base.raw.root["KEY"])  # identified, not dropped
    assert read.root.empty
    assert_accounted(read)


def test_encrypted_with_wrong_key(base: Base) -> None:
    wrong, _ = rsa_pair()
    read = read_xml_folder(base.enc, base.model, private_key_pem=wrong)
    q = quarantined(read, "not-decrypted")
    assert len(q) == N and set(q["value"]) == {"decrypt-wrong-key"}
    assert_accounted(read)


def test_encrypted_truncated_file(base: Base, tmp_path: Path) -> None:
    folder, insts = copy_tree(base.enc, tmp_path / "x")
    enc = insts[2] / "submission.xml.enc"
    enc.write_bytes(enc.read_bytes()[:-5])
    read = read_xml_folder(folder, base.model, private_key_pem=base.private)
    q = quarantined(read, "not-decrypted")
    assert list(q["value"]) == ["decrypt-truncated"]
    assert len(read.root) == N - 1
    assert_accounted(read)
    kept = as_known_to_xml(base.raw)
    kept.root = kept.root[kept.root["KEY"].isin(read.root["KEY"])]
    kept.repeats = {n: t[t["PARENT_KEY"].isin(read.root["KEY"])]
                    for n, t in kept.repeats.items()}
    assert_same_content(kept, read)


# --------------------------------------------------------------------------- read_export


def test_read_export_unknown_form_names_the_file(base: Base, tmp_path: Path) -> None:
    path = rezip(base.zip, tmp_path / "x.zip",
                 lambda m: {k.replace("household", "census"): v for k, v in m.items()})
    err = error_of(lambda: read_export(path, base.models))
    assert err.code == "export-unknown-form" and err.context["file"] == str(path)
    doc = json.loads(base.json.read_text(encoding="utf-8"))
    for r in doc["results"]:
        r["_xform_id_string"] = "census"
    jpath = tmp_path / "x.json"
    jpath.write_text(json.dumps(doc), encoding="utf-8")
    err = error_of(lambda: read_export(jpath, base.models))
    assert err.code == "export-unknown-form" and err.context["form"] == "census"
    folder, insts = copy_tree(base.xml, tmp_path / "f")
    for inst in insts:
        sub = inst / "submission.xml"
        sub.write_bytes(sub.read_bytes().replace(b'id="household"', b'id="census"'))
    err = error_of(lambda: read_export(folder, base.models))
    assert err.code == "export-unknown-form" and err.context["file"] == str(folder)


def test_read_export_unknown_format(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "household.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    err = error_of(lambda: read_export(path, base.models))
    assert err.code == "export-unknown-format" and err.context["file"] == str(path)
    err = error_of(lambda: read_export(tmp_path / "nothing.zip", base.models))
    assert err.code == "export-missing"


# --------------------------------------------------------------------------- every route


@pytest.mark.parametrize("route", ["central", "kobo", "xml"])
def test_missing_and_duplicated_instance_ids_on_every_route(route: str, base: Base,
                                                            tmp_path: Path) -> None:
    """Broken tables written through a route: a row without instanceID, a second copy."""
    from test_roundtrip import read_route, write_route

    root = base.raw.root.copy()
    root.loc[0, "KEY"] = None
    copy = root.iloc[[3]].copy()
    copy["cluster"] = "999"
    broken = RawForm(base.raw.form_id, pd.concat([root, copy], ignore_index=True),
                     base.raw.repeats)
    read = read_route(route, write_route(route, broken, base.model, tmp_path), base.model)
    assert len(quarantined(read, "missing-key")) == 1
    assert list(quarantined(read, "duplicate-key")["KEY"]) == [root.iloc[3]["KEY"]]
    assert len(read.root) == N - 1
    assert_accounted(read, N + 1)


@pytest.mark.parametrize("export", ["zip", "json"])
def test_an_export_still_being_copied_says_so(base: Base, tmp_path: Path, export: str) -> None:
    """A half-copied export is named as one, not as an unknown form or a parser's complaint."""
    whole = getattr(base, export).read_bytes()
    part = tmp_path / f"household.{export}"
    part.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DhsurveyError) as caught:
        read_export(part, base.models)
    assert caught.value.code == "export-unreadable"
    assert "still being copied, or damaged" in caught.value.message
    assert caught.value.context["file"] == str(part)
