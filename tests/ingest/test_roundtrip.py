"""Write → read through every export route gives back the same canonical content.

One synthetic RawForm per instrument (non-relevant fields None, select_multiple, geopoint,
Kiswahili text with commas, quotes and line breaks, 0–4 roster rows per household) goes through
the Central zip, Kobo JSON and instance-XML writers and back through the readers. The helpers
here (``synthetic_raw`` …) are shared by the other ingest tests.
"""

from __future__ import annotations

import random
import re
import uuid
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from workbooks import EN, YES_NO, c, q, write_workbook

from dhsurvey.fieldwork.exports import write_central_zip, write_kobo_json, write_xml_folder
from dhsurvey.forms.frames import PARENT
from dhsurvey.forms.model import FormModel, Item, load_form
from dhsurvey.ingest.canonical import (
    META,
    REPEAT_META,
    RawForm,
    assert_same_content,
    field_columns,
    repeat_key,
)
from dhsurvey.ingest.central import read_central_zip
from dhsurvey.ingest.kobo import read_kobo_json
from dhsurvey.ingest.read import ROOT_RULES, read_export
from dhsurvey.ingest.xmlfolder import read_xml_folder

ROOT = Path(__file__).resolve().parents[2]
INSTRUMENTS = sorted((ROOT / "instruments").glob("*.xlsx"))
ROUTES = ("central", "kobo", "xml")
#: What a device's XML cannot carry: who submitted it and the server's review state.
NOT_IN_XML = ("submitter", "review_state")

TEXTS = [
    'Amina, "Mama" wa Wanjiru',
    "Nyumba ya udongo;\nhakuna umeme",
    "Mtoto anasema: «Sijui»",
    "Baba — anafanya kazi Mombasa, 3 km",
    "Shule & <darasa> la saba",
    "Ñandú ẞ 😀 emoji",
    "tab\there, line\r\nbreak",
    "Ndiyo",
]


# --------------------------------------------------------------------------- synthetic data


def _value(model: FormModel, item: Item, rnd: random.Random) -> str:
    t = item.type
    if t in ("start", "end"):
        return f"2026-03-0{rnd.randint(1, 9)}T{rnd.randint(7, 18):02d}:{rnd.randint(0, 59):02d}" \
               ":00.000+03:00"
    if t in ("today", "date"):
        return f"2026-02-{rnd.randint(1, 28):02d}"
    if t == "deviceid":
        return f"collect:{rnd.getrandbits(64):016x}"
    if t == "geopoint":
        return (f"{rnd.uniform(-4.5, 4.5):.6f} {rnd.uniform(34, 41):.6f} "
                f"{rnd.uniform(0, 2500):.1f} {rnd.uniform(2, 15):.1f}")
    choices = model.choices_for(item)
    if t == "select_one" and choices:
        return rnd.choice(choices.codes())
    if t == "select_multiple" and choices:
        codes = choices.codes()
        picked = set(rnd.sample(codes, rnd.randint(1, min(3, len(codes)))))
        return " ".join(code for code in codes if code in picked)
    if t == "integer":
        return str(rnd.randint(0, 95))
    if t == "decimal":
        return f"{rnd.uniform(0, 100):.2f}"
    if t == "text":
        return rnd.choice(TEXTS)
    return str(rnd.randint(0, 9))  # calculate and anything else


def _answers(model: FormModel, level: str | None, off: set[str],
             rnd: random.Random) -> dict[str, str | None]:
    """Answers of one row; fields under a switched-off group or with a relevance may be None."""
    out: dict[str, str | None] = {}
    for item in model.fields_in(level):
        if any(g in off for g in item.path) or (item.relevant and rnd.random() < 0.3):
            out[item.name] = None
        else:
            out[item.name] = _value(model, item, rnd)
    return out


def synthetic_raw(model: FormModel, n: int = 12, seed: int = 1) -> RawForm:
    """Plausible canonical tables for ``model``: n submissions with 0–4 rows per repeat."""
    rnd = random.Random(f"{model.form_id}-{seed}")
    roots: list[dict] = []
    repeats: dict[str, list[dict]] = {r.name: [] for r in model.repeats}

    def fill(level: str | None, parent_key: str, off: set[str]) -> None:
        for rep in (r for r in model.repeats if r.repeat == level):
            if any(g in off for g in rep.path):
                continue
            for pos in range(1, rnd.randint(0, 4) + 1):
                key = repeat_key(parent_key, model, rep.name, pos)
                row = {"KEY": key, PARENT: parent_key, **_answers(model, rep.name, off, rnd)}
                repeats[rep.name].append(row)
                fill(rep.name, key, off)

    for i in range(n):
        off = {g.name for g in model.groups if g.relevant and rnd.random() < 0.25}
        key = f"uuid:{uuid.UUID(int=rnd.getrandbits(128), version=4)}"
        roots.append({
            "KEY": key,
            "form_id": model.form_id,
            "form_version": model.version if i % 5 else "2025120101",
            "submission_time": f"2026-03-{1 + i % 28:02d}T{rnd.randint(5, 20):02d}:"
                               f"{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}.000Z",
            "submitter": rnd.choice(["enum_07", "Wanjiru Kamau", None]),
            # Every review state among the first four submissions, whatever the draws.
            "review_state": [None, "approved", "hasIssues", "rejected"][i % 4],
            "deprecated_id": None,
            "source_format": "synthetic",
            "source_file": "synthetic",
            **_answers(model, None, off, rnd),
        })
        fill(None, key, off)
    root = pd.DataFrame(roots, columns=META + field_columns(model), dtype=object)
    tables = {name: pd.DataFrame(rows, columns=REPEAT_META + field_columns(model, name),
                                 dtype=object) for name, rows in repeats.items()}
    return RawForm(model.form_id, root, tables)


def as_known_to_xml(raw: RawForm) -> RawForm:
    """The content an instance-XML route can carry (no submitter, no review state)."""
    root = raw.root.copy()
    for col in NOT_IN_XML:
        root[col] = None
    return RawForm(raw.form_id, root, raw.repeats, raw.quarantine)


def write_route(route: str, raw: RawForm, model: FormModel, where: Path, **kw) -> Path:
    """Write ``raw`` through one route; return the path to read back."""
    if route == "central":
        return write_central_zip(raw, model, where / f"{model.form_id}.zip")
    if route == "kobo":
        return write_kobo_json(raw, model, where / f"{model.form_id}.json")[0]
    folder = where / f"{model.form_id}-instances"
    write_xml_folder(raw, model, folder, **kw)
    return folder


def read_route(route: str, path: Path, model: FormModel, **kw) -> RawForm:
    if route == "central":
        return read_central_zip(path, model)
    if route == "kobo":
        return read_kobo_json(path, model)
    return read_xml_folder(path, model, **kw)


def expected_for(route: str, raw: RawForm) -> RawForm:
    return as_known_to_xml(raw) if route == "xml" else raw


def accounted(raw: RawForm) -> int:
    """Submissions a read accounts for: root rows plus root-level quarantine rows."""
    return len(raw.root) + int(raw.quarantine["rule"].isin(ROOT_RULES).sum())


def rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="session")
def models() -> dict[str, FormModel]:
    loaded = [load_form(p) for p in INSTRUMENTS]
    return {m.form_id: m for m in loaded}


@pytest.fixture(scope="session")
def keys() -> tuple[bytes, bytes]:
    return rsa_pair()


# --------------------------------------------------------------------------- tests


def test_synthetic_data_exercises_the_hard_cases(models: dict[str, FormModel]) -> None:
    hh = models["household"]
    raw = synthetic_raw(hh, n=20)
    roster = raw.repeats["roster"]
    per_hh = roster.groupby(PARENT).size()
    assert per_hh.max() <= 4 and (len(per_hh) < len(raw.root))  # some households have none
    assert raw.root["gps"].notna().any() and raw.root.isna().any().any()
    texts = pd.concat([raw.root["v1_outcome_oth"], roster["first_name"]]).dropna()
    assert texts.str.contains(",").any() and texts.str.contains('"').any()
    assert texts.str.contains("\n").any()
    child = synthetic_raw(models["child"])
    assert child.root["devices"].str.contains(" ").any()  # select_multiple


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("form_path", INSTRUMENTS, ids=lambda p: p.stem)
def test_round_trip(route: str, form_path: Path, models: dict[str, FormModel],
                    tmp_path: Path) -> None:
    model = models[form_path.stem]
    raw = synthetic_raw(model)
    path = write_route(route, raw, model, tmp_path)
    back = read_route(route, path, model)
    assert back.quarantine.empty, back.quarantine.to_dict("records")
    assert_same_content(expected_for(route, raw), back)
    assert set(back.root["source_format"]) == {
        {"central": "central-csv", "kobo": "kobo-json", "xml": "xml"}[route]}
    # read_export recognises format and form by itself
    assert_same_content(back, read_export(path, models))


@pytest.mark.parametrize("form_id", ["household", "child"])
def test_encrypted_xml_round_trip(form_id: str, models: dict[str, FormModel],
                                  keys: tuple[bytes, bytes], tmp_path: Path) -> None:
    private, public = keys
    model = models[form_id]
    raw = synthetic_raw(model, n=6)
    folder = write_route("xml", raw, model, tmp_path, public_key_pem=public,
                         rng=random.Random(7).randbytes)
    inst = sorted(p for p in folder.iterdir())[0]
    assert sorted(p.name for p in inst.iterdir()) == ["submission.xml", "submission.xml.enc"]
    assert b'encrypted="yes"' in (inst / "submission.xml").read_bytes()
    back = read_xml_folder(folder, model, private_key_pem=private)
    assert back.quarantine.empty
    assert_same_content(as_known_to_xml(raw), back)
    assert_same_content(back, read_export(folder, models, private_key_pem=private))


def test_routes_agree_with_each_other(models: dict[str, FormModel], tmp_path: Path) -> None:
    model = models["household"]
    raw = synthetic_raw(model, n=15, seed=3)
    reads = {r: read_route(r, write_route(r, raw, model, tmp_path), model) for r in ROUTES}
    assert_same_content(reads["central"], reads["kobo"])
    assert_same_content(as_known_to_xml(reads["central"]), reads["xml"])


@pytest.mark.parametrize("route", ROUTES)
def test_reread_of_a_read_is_stable(route: str, models: dict[str, FormModel],
                                    tmp_path: Path) -> None:
    """A read written again and read again is unchanged (readers and writers are inverses)."""
    model = models["household"]
    first = read_route(route, write_route(route, synthetic_raw(model), model, tmp_path / "a"),
                       model)
    second = read_route(route, write_route(route, first, model, tmp_path / "b"), model)
    assert_same_content(first, second)


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# RSA-OAEP draws its own seed: an encrypted manifest's wrapped key and signature change per run.
_RSA_VALUES = re.compile(rb"<(base64EncryptedKey|base64EncryptedElementSignature)>[^<]+</\1>")


def test_writers_are_deterministic(models: dict[str, FormModel], keys: tuple[bytes, bytes],
                                   tmp_path: Path) -> None:
    """Same tables, same bytes; encrypted, the same bytes but for the two RSA-OAEP values (the
    .enc files too: the AES key comes from the seeded rng), and the same tables decrypted."""
    model = models["household"]
    private, public = keys
    outputs, wrapped, decrypted = [], [], []
    for run in ("a", "b"):
        raw = synthetic_raw(model, n=5)
        where = tmp_path / run
        zip_path = write_central_zip(raw, model, where / "x.zip")
        json_path = write_kobo_json(raw, model, where / "x.json")[0]
        plain = write_route("xml", raw, model, where / "plain")
        enc = write_route("xml", raw, model, where / "enc", public_key_pem=public,
                          rng=random.Random(11).randbytes)
        enc_files = _tree_bytes(enc)
        wrapped.append({k: [m.group() for m in _RSA_VALUES.finditer(v)]
                        for k, v in enc_files.items()})
        outputs.append((zip_path.read_bytes(), json_path.read_bytes(), _tree_bytes(plain),
                        {k: _RSA_VALUES.sub(rb"<\1/>", v) for k, v in enc_files.items()}))
        decrypted.append(read_xml_folder(enc, model, private_key_pem=private))
    assert outputs[0] == outputs[1]
    manifests = [k for k in wrapped[0] if k.endswith("/submission.xml")]
    assert len(manifests) == 5 and all(len(wrapped[0][k]) == 2 for k in manifests)
    assert all(wrapped[0][k] != wrapped[1][k] for k in manifests)
    assert decrypted[0].quarantine.empty
    assert_same_content(decrypted[0], decrypted[1])


def test_kobo_pages_read_together(models: dict[str, FormModel], tmp_path: Path) -> None:
    model = models["household"]
    raw = synthetic_raw(model, n=10)
    pages = write_kobo_json(raw, model, tmp_path / "hh.json", page_size=4)
    assert [p.name for p in pages] == ["hh.json", "hh-2.json", "hh-3.json"]
    back = read_kobo_json(pages, model)
    assert_same_content(raw, back)
    assert_same_content(back, read_export(pages, models))


def test_nested_repeats_round_trip(tmp_path: Path) -> None:
    """A repeat inside a group inside a repeat: KEYs, PARENT_KEYs and paths on every route."""
    survey = [
        q("start", "start"),
        q("geopoint", "gps", "Location"),
        q("begin_group", "hh", "Household"),
        q("begin_repeat", "member", "Member"),
        q("text", "name", "Name", pii="direct"),
        q("begin_group", "details", "Details"),
        q("integer", "age", "Age"),
        q("select_multiple yes_no", "flags", "Flags"),
        q("begin_repeat", "phone", "Phone"),
        q("text", "brand", "Brand"),
        q("end_repeat", "phone"),
        q("end_group", "details"),
        q("end_repeat", "member"),
        q("end_group", "hh"),
    ]
    choices = [*YES_NO, c("unused", "1", "x")]
    model = load_form(write_workbook(tmp_path / "nested.xlsx", survey, choices,
                                     {"form_id": "nested", "default_language": EN}))
    raw = synthetic_raw(model, n=8)
    phones = raw.repeats["phone"]
    assert len(phones) and phones["KEY"].str.contains(r"/member\[\d+\]/details/phone\[").all()
    for route in ROUTES:
        back = read_route(route, write_route(route, raw, model, tmp_path / route), model)
        assert back.quarantine.empty
        assert_same_content(expected_for(route, raw), back)
        assert accounted(back) == len(raw.root)
