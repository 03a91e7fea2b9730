"""The release scan: restricted values and identifier patterns in written files, read in chunks.

What must hold: a restricted value is found wherever it sits in a cell (alone, inside free
text, in any case), in Parquet, CSV, Stata and SPSS files alike and in whichever chunk it
falls, with its first row and how often it occurs; never inside a longer word or number;
the longest value at a position wins, as one regex over all values would give; and
``phonenumbers`` never sees a hex release ID.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise import identifiers, scan
from dhsurvey.anonymise.identifiers import PHONE_MIN_DIGITS, PHONE_REGIONS, RestrictedValues
from dhsurvey.anonymise.scan import scan_release

INSTANCE_IDS = [f"uuid:{uuid.UUID(int=i * 7919 + 13)}" for i in range(5000)]
GPS = "-1.825933 37.043138 1234.5 5.0"


def _restricted(found: list[dict]) -> set[tuple[str, object, int]]:
    return {(Path(f["file"]).suffix, f["column"], f["restricted_index"]) for f in found
            if f["kind"] == "restricted"}


def test_a_value_inside_free_text_is_found(tmp_path: Path) -> None:
    leak = INSTANCE_IDS[4321]
    hex_ids = [f"{v:016x}" for v in np.random.default_rng(1).integers(0, 2**62, 2000)]
    notes = [f"child uses phone {i % 7} hours" for i in range(2000)]
    notes[1500] = f"see form {leak.upper()} again"  # case folded, inside a sentence
    notes[1700] = f"met at ({GPS}), near the school"  # a value holding spaces
    table = pd.DataFrame({"record_id": hex_ids, "note": notes})
    table.to_parquet(tmp_path / "t.parquet")
    table.to_csv(tmp_path / "t.csv", index=False)
    restricted = [*INSTANCE_IDS, GPS]
    found = scan_release([tmp_path / "t.parquet", tmp_path / "t.csv"], restricted)
    assert _restricted(found) == {(s, "note", i) for s in (".parquet", ".csv")
                                  for i in (4321, len(INSTANCE_IDS))}
    rows = {(Path(f["file"]).suffix, f["restricted_index"]): f["row"] for f in found}
    assert rows[(".parquet", 4321)] == 1500 and rows[(".csv", 4321)] == 1501  # + header
    assert all(leak not in f["excerpt"] for f in found)
    # The same text without the leak: nothing.
    table["note"] = [f"child uses phone {i % 7} hours" for i in range(2000)]
    table.to_parquet(tmp_path / "t.parquet")
    assert scan_release([tmp_path / "t.parquet"], restricted) == []


def test_whole_tokens_and_the_longest_value_first() -> None:
    values = RestrictedValues(["Zawadi", "Zawadi Canary-4321", "ab", "4321"])
    assert values.find("hi zawadi canary-4321!") == [("zawadi canary-4321", 1)]
    assert values.find("zawadi canary-43210") == [("zawadi", 0)]
    assert values.find("xzawadi 4321x 14321") == []
    assert values.find("ab zawadi") == [("zawadi", 0)]  # under 3 characters: ignored


def test_matches_are_those_of_one_regex_over_all_values() -> None:
    """On random text (binary-like runs, non-ASCII letters, "ß" that case folds to "ss"),
    the token index finds what one alternation of all values, longest first, finds."""
    import re

    rng = np.random.default_rng(7)
    values = ["zawadi", "canary-4821", "ss12", "uuid:00ab", "4821", "xéy", "--*--"]
    pattern = re.compile("|".join(
        rf"(?<![0-9a-z]){re.escape(v)}(?![0-9a-z])" for v in sorted(values, key=len,
                                                                     reverse=True)))
    alphabet = list("az09 -:*éß\n\x00") + ["zawadi", "canary-4821", "4821",
                                                    "uuid:00ab", "ss12", "xéy", "--*--"]
    index = RestrictedValues(values)
    for _ in range(400):
        text = "".join(rng.choice(alphabet, int(rng.integers(1, 30)))).casefold()
        expected = [(m.group(), values.index(m.group())) for m in pattern.finditer(text)]
        assert index.find(text) == expected, text


@pytest.mark.parametrize("suffix", [".dta", ".sav"])
def test_a_value_in_a_stata_or_spss_file_is_found_in_any_chunk(
        tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "CHUNK_ROWS", 7)  # the rows below span several chunks
    leak = INSTANCE_IDS[17]
    names = [f"household {i}" for i in range(40)]
    names[23] = names[31] = f"was {leak}"
    frame = pd.DataFrame({"n": np.arange(40, dtype=float), "text": names})
    path = tmp_path / f"t{suffix}"
    if suffix == ".dta":
        frame.to_stata(path, write_index=False, version=118)
    else:
        import pyreadstat

        pyreadstat.write_sav(frame, str(path))
    found = scan_release([path], INSTANCE_IDS)
    cells = [f for f in found if f["where"] == suffix[1:] and f["kind"] == "restricted"]
    assert [(f["column"], f["row"], f["restricted_index"], f["count"]) for f in cells] == \
        [("text", 23, 17, 2)]
    assert any(f["where"] == f"{suffix[1:]}:bytes" for f in found)  # the raw bytes too


def test_labels_of_a_spss_file_are_scanned(tmp_path: Path) -> None:
    import pyreadstat

    frame = pd.DataFrame({"q": [1.0, 2.0]})
    pyreadstat.write_sav(frame, str(tmp_path / "t.sav"), column_labels={"q": GPS},
                         variable_value_labels={"q": {1.0: "yes", 2.0: INSTANCE_IDS[3]}})
    found = scan_release([tmp_path / "t.sav"], [GPS, *INSTANCE_IDS])
    wheres = {(f["where"], f["restricted_index"]) for f in found}
    assert {("sav:variable-labels", 0), ("sav:value-labels", 4)} <= wheres


def test_phone_numbers_are_parsed_only_where_one_may_be(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    phones = identifiers.phones

    def spy(text: str) -> list[str]:
        parsed.append(text)
        return phones(text)

    monkeypatch.setattr(identifiers, "phones", spy)
    rng = np.random.default_rng(3)
    hex_ids = [f"{v:016x}" for v in rng.integers(0, 2**62, 3000)]
    table = pd.DataFrame({"record_id": hex_ids,
                          "note": ["call 0712 345 678", *["ok"] * 2999]})
    table.to_parquet(tmp_path / "t.parquet")
    table.to_csv(tmp_path / "t.csv", index=False)
    found = scan_release([tmp_path / "t.parquet", tmp_path / "t.csv"], [])
    assert {(f["kind"], f["column"]) for f in found} == {("phone", "note")}
    assert parsed == ["0712 345 678"]  # the number's stretch alone, once for both files


@pytest.mark.parametrize("text", [
    "0712 345 678", "+254 712 34 5678", "tel:+44 20 7946 0958", "(020) 7946 0958 x",
    "x/ 0712 345 678", "0712 345 678/0723 456 789", "call\u00a00712\u00a0345678"])
def test_the_phone_prefilter_keeps_every_number_phonenumbers_finds(text: str) -> None:
    import pyarrow as pa

    assert identifiers.phones(text)
    assert identifiers.may_hold_phone(text)
    assert identifiers.may_hold(pa.array([text]), RestrictedValues([]))[0]
    # Parsing only the stretches that may be a number finds what parsing the text finds.
    assert [m for kind, m in identifiers.pattern_hits(text) if kind == "phone"] == \
        identifiers.phones(text)


def test_the_arrow_prefilter_keeps_every_text_a_pattern_is_found_in() -> None:
    """``may_hold`` (Arrow, ASCII digit classes) is true of every text in which
    ``pattern_hits`` finds an e-mail, UUID, coordinate pair or phone number: ASCII texts by
    the patterns, others (Unicode digits, accents, non-breaking spaces) always."""
    import pyarrow as pa

    rng = np.random.default_rng(11)
    pieces = ["0712 345 678", "+254 712 34 5678", "-1.2921, 36.8219", "ana@example.org",
              "9f1c2d3e-4b5a-6789-abcd-ef0123456789", "١٢٣٤٥٦٧٨٩٠", "\u0660712 345 678",
              "call\u00a00712\u00a0345678", "-0.35 32.58 1200 5", "1.2345 6.7890", "x", "é",
              " ", "12", ".", "-", "@", "ok", "(020) 7946 0958", "3f8a921234567b0c"]
    texts = ["".join(rng.choice(pieces, size=int(rng.integers(1, 4)))) for _ in range(3000)]
    texts += pieces
    kept = identifiers.may_hold(pa.array(texts), RestrictedValues([]))
    found = [i for i, text in enumerate(texts) if identifiers.pattern_hits(text)]
    assert len(found) > 1000 and all(kept[i] for i in found)
    # and it still leaves out most of what holds nothing
    hit = set(found)
    clean = [i for i, text in enumerate(texts) if text.isascii() and i not in hit]
    assert clean and sum(not kept[i] for i in clean) > len(clean) / 2


@pytest.mark.parametrize("text", ["3f8a921234567b0c", "ab0712345678", "0712345678cd",
                                  "1234567", "2026-02", "13393.492854"])
def test_no_phone_is_looked_for_in_ids_months_or_numbers(text: str) -> None:
    assert not identifiers.pattern_hits(text)
    assert not identifiers.phones(text)


def test_the_shortest_valid_number_has_phone_min_digits() -> None:
    from phonenumbers import PhoneMetadata

    shortest = min(min(PhoneMetadata.metadata_for_region(r).general_desc.possible_length)
                   for r in PHONE_REGIONS)
    assert PHONE_MIN_DIGITS <= shortest


def test_an_xlsx_is_read_cell_by_cell_only_when_its_texts_hold_something(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first pass over the package's texts finds a value split over rich-text runs, in a
    sheet name or in a plain cell; a workbook with none is not walked cell by cell."""
    import openpyxl
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    leak = INSTANCE_IDS[7]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "labels"
    sheet.append(["code", "label"])
    sheet.append([1, "Yes"])
    book.save(tmp_path / "clean.xlsx")
    sheet["B3"] = CellRichText([TextBlock(InlineFont(b=True), leak[:12]),
                                TextBlock(InlineFont(i=True), leak[12:])])
    book.save(tmp_path / "runs.xlsx")
    book.remove(sheet)
    book.create_sheet("x zawadi-4821").append(["plain"])
    book.save(tmp_path / "title.xlsx")
    walked: list[str] = []
    load = openpyxl.load_workbook
    monkeypatch.setattr(openpyxl, "load_workbook",
                        lambda path, **kw: walked.append(Path(path).name) or load(path, **kw))
    assert scan_release([tmp_path / "clean.xlsx"], INSTANCE_IDS) == []
    assert walked == []
    runs = scan_release([tmp_path / "runs.xlsx"], INSTANCE_IDS)
    assert [(f["where"], f["row"], f["restricted_index"]) for f in runs
            if f["kind"] == "restricted"] == [("xlsx:labels", 3, 7)]
    title = scan_release([tmp_path / "title.xlsx"], [*INSTANCE_IDS, "Zawadi-4821"])
    assert [(f["where"], f["restricted_index"]) for f in title] == [
        ("xlsx:sheet", len(INSTANCE_IDS))]
    assert walked == ["runs.xlsx", "title.xlsx"]


@pytest.mark.parametrize("block", [7, 64, 1 << 22])
def test_raw_bytes_findings_name_the_line_in_any_block(tmp_path: Path, block: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Restricted values in a binary file's bytes are found in whichever block they fall,
    never across a line break, on the line :meth:`str.splitlines` gives (every Latin-1
    break, ``\\r\\n`` once, one split between blocks included)."""
    monkeypatch.setattr(scan, "BYTES_BLOCK", block)
    rng = np.random.default_rng(3)
    breaks = [b"\n", b"\r", b"\r\n", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85"]
    lines = [bytes(rng.integers(33, 127, int(rng.integers(0, 20)), dtype=np.uint8))
             for _ in range(300)]
    planted = {17: INSTANCE_IDS[5].upper(), 140: INSTANCE_IDS[9], 299: INSTANCE_IDS[5]}
    for at, value in planted.items():
        lines[at] = b"\x00" + value.encode() + b"\xff" + lines[at]
    lines[200] = INSTANCE_IDS[9][:20].encode() + b"\n" + INSTANCE_IDS[9][20:].encode()
    data = b"".join(line + breaks[i % len(breaks)] for i, line in enumerate(lines))
    path = tmp_path / "t.bin"
    path.write_bytes(data)
    findings = scan._Findings(path, RestrictedValues(INSTANCE_IDS))
    scan._scan_bytes(findings, path, "bytes")
    text_lines = data.decode("latin-1").splitlines()
    expected = {(i, n + 1) for n, line in enumerate(text_lines) for i in (5, 9)
                if INSTANCE_IDS[i] in line.casefold()}
    assert {(f["restricted_index"], f["row"]) for f in findings.result()} == \
        {(5, min(n for i, n in expected if i == 5)), (9, min(n for i, n in expected if i == 9))}
    assert sorted(expected) == [(5, 18), (5, 301), (9, 141)]
    assert {f["restricted_index"]: f["count"] for f in findings.result()} == {5: 2, 9: 1}



@pytest.mark.parametrize("chunk", [1000, scan.CHUNK_ROWS])
def test_a_long_text_file_is_sifted_without_losing_a_hit(tmp_path: Path, chunk: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A text file of many lines (a codebook) is sifted in Arrow before lines are searched one
    by one; every restricted value and pattern is still found on its line, as a search of
    every line gives, non-ASCII lines and lines past the first chunk included."""
    monkeypatch.setattr(scan, "CHUNK_ROWS", chunk)
    rng = np.random.default_rng(5)
    lines = [f"| `q{i}` | Label {i} | {rng.integers(0, 500)} / {rng.integers(0, 99)} |"
             for i in range(3000)]
    lines[10] = f"- **Note:** seen {INSTANCE_IDS[7].upper()} here"
    lines[900] = "write to zawadi.canary@example.org"
    lines[1800] = "Kiswahili: ndiyo — call +254 712 345 678"
    lines[2500] = f"Ümlaut line {INSTANCE_IDS[8]}"
    lines[2999] = f"at ({GPS})"
    path = tmp_path / "codebook.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    restricted = RestrictedValues([*INSTANCE_IDS, GPS])
    found = scan_release([path], [*INSTANCE_IDS, GPS])
    # The same file searched line by line, without the sift.
    everyone = scan._Findings(path, restricted)
    for n, line in enumerate(lines, start=1):
        everyone.add(everyone.hits(line), "md", None, n, (n,))
    assert found == everyone.result()
    assert {(f["kind"], f["row"]) for f in found} >= {
        ("restricted", 11), ("email", 901), ("phone", 1801), ("restricted", 2501),
        ("restricted", 3000)}


def test_raw_bytes_fold_as_str_casefold() -> None:
    """The raw-bytes scan folds case on the bytes; the text is the one ``str.casefold`` gives
    of their Latin-1 decoding (ß → ss and µ → μ included), byte by byte and in random runs."""
    for c in range(256):
        assert scan._casefold_latin1(bytes([c])) == bytes([c]).decode("latin-1").casefold()
    rng = np.random.default_rng(11)
    for n in (0, 1, 17, 4096):
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        assert scan._casefold_latin1(data) == data.decode("latin-1").casefold()


def test_a_block_of_raw_bytes_is_decoded_whenever_its_text_holds_a_value() -> None:
    """The raw-bytes scan decodes a block only when its byte runs may hold a restricted
    value; on random blocks (upper case, Latin-1 letters, ß that folds to "ss", values split
    by a break) every block whose decoded text holds one is decoded, and the bytes' line
    breaks are counted as in their decoded text."""
    values = ["zawadi", "strasse", "canary-4821", "UUID:00ab", "4821x"]
    restricted = RestrictedValues(values)
    pieces = [b"ZAWADI", b"Zawadi", b"STRA\xdfE", b"stra\xdfe", b"CANARY-4821", b"uuid:00AB",
              b"4821X", b"\xc0\xdf", b"\r\n", b"\x85", b"\x00", b"a", b"7", b" ", b"\xff"]
    rng = np.random.default_rng(12)
    decoded = 0
    for _ in range(2000):
        data = b"".join(pieces[i] for i in rng.integers(0, len(pieces), int(rng.integers(0, 12))))
        found = restricted.spans(scan._casefold_latin1(data), lines=True)
        if found:
            decoded += 1
            assert scan._may_hold_restricted(restricted, data), data
        end = int(rng.integers(0, len(data) + 1))
        assert scan._breaks(data, end) == scan._breaks(data.decode("latin-1"), end)
    assert decoded > 500
    assert scan._may_hold_restricted(restricted, b"\x00\x01STRA\xdfE\xff")  # ß folds to ss
    assert not scan._may_hold_restricted(restricted, b"\x00\x01STRA\xdf\xff")
    assert not scan._may_hold_restricted(restricted, bytes(range(1, 48)) * 50)


def test_a_large_release_scanned_on_every_core_gives_the_same_findings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files spread over forked processes (each with its own memo) give the findings of one
    process reading them in turn, file by file in the order given."""
    rng = np.random.default_rng(8)
    notes = [f"line {i} of the notes" for i in range(3000)]
    notes[10], notes[2900] = INSTANCE_IDS[3], f"call 0712 345 678 re {INSTANCE_IDS[4]}"
    table = pd.DataFrame({"note": notes, "w": rng.random(3000).astype(str)})
    for i in range(3):
        table.to_parquet(tmp_path / f"t{i}.parquet")
        table.iloc[i * 500:].to_csv(tmp_path / f"t{i}.csv", index=False)
    (tmp_path / "notes.md").write_text("\n".join(notes[::-1]), encoding="utf-8")
    files = sorted(tmp_path.iterdir())
    monkeypatch.setattr(scan, "PARALLEL_BYTES", 1 << 60)
    alone = scan_release(files, INSTANCE_IDS)
    monkeypatch.setattr(scan, "PARALLEL_BYTES", 0)
    spread = scan_release(files, INSTANCE_IDS)
    assert spread == alone
    assert {Path(f["file"]).name for f in alone} == {f.name for f in files}


def _tricky_csv_rows(rng: np.random.Generator) -> list[list[str]]:
    """Rows a release CSV may hold: quoted commas, quotes, line ends inside cells, empty
    cells, "NA", non-ASCII, identifiers in any row (past the first Arrow block included)."""
    rows = [["record_id", "note", "w", "na"]]
    for i in range(4000):
        rows.append([f"r{i}", f"note {rng.integers(0, 50)}", repr(float(rng.random())),
                     ["NA", "", "null", "x"][i % 4]])
    rows[5][1] = f'he said "{INSTANCE_IDS[1]}", then left'
    rows[77][1] = "two\nlines, \r\nand a lone \r return; mail zawadi.canary@example.org"
    rows[1500][1] = f"Ümlaut {INSTANCE_IDS[2].upper()}"
    rows[3999][3] = "call +254 712 345 678"
    rows[2][0] = INSTANCE_IDS[3]
    return rows


@pytest.mark.parametrize("block", [1 << 10, scan.CSV_BLOCK])
def test_a_csv_read_in_arrow_gives_the_findings_of_pythons_csv(
        tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV is parsed and counted in Arrow; its findings (row, column, count, order) are
    those of reading it with Python's csv, in small blocks as in one."""
    import csv

    path = tmp_path / "child.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(_tricky_csv_rows(np.random.default_rng(2)))
    monkeypatch.setattr(scan, "CSV_BLOCK", block)
    read, real = [], scan._scan_csv_arrow
    monkeypatch.setattr(scan, "_scan_csv_arrow", lambda f, p: (real(f, p), read.append(p)))
    arrow = scan_release([path], INSTANCE_IDS)
    assert read == [path]  # read in Arrow, not by the fallback

    def not_arrow(findings: object, path: Path) -> None:
        raise scan._NotArrow(path)

    monkeypatch.setattr(scan, "_scan_csv_arrow", not_arrow)
    assert arrow == scan_release([path], INSTANCE_IDS)
    assert {(f["kind"], f["row"], f["column"]) for f in arrow} >= {
        ("restricted", 2, "record_id"), ("restricted", 5, "note"), ("email", 77, "note"),
        ("restricted", 1500, "note"), ("phone", 3999, "na")}


@pytest.mark.parametrize("content", [
    b"\xef\xbb\xbfid,note\r\n1,uuid:x\r\n",  # a byte-order mark, kept in the first cell
    b"id,note\n1\n2,three,four\n",  # ragged rows
    b"id,note\n\n1,caf\xe9\n",  # a blank line, and Latin-1
    b"\nid,note\n",  # a blank first line
])
def test_a_csv_arrow_reads_otherwise_is_read_by_pythons_csv(tmp_path: Path, content: bytes,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(content + f"9,{INSTANCE_IDS[0]}\n".encode())
    found = scan_release([path], INSTANCE_IDS)
    monkeypatch.setattr(scan, "_scan_csv_arrow", lambda *a: (_ for _ in ()).throw(
        scan._NotArrow(path)))
    assert found == scan_release([path], INSTANCE_IDS)
    assert [f["restricted_index"] for f in found if f["kind"] == "restricted"] == [0]
