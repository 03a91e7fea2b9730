"""Ask JavaRosa (ODK Collect's form engine) what every case of cases.yaml evaluates to.

Run ``.venv/bin/python tests/javarosa/make_answers.py`` after adding cases: it writes
``answers.json``, which tests/forms/test_javarosa_agreement.py compares dhsurvey's evaluator
with. Each group of cases with the same fields becomes a tiny XForm (the fields as instance
nodes with their XLSForm types, select questions with their choices, the CSVs of media/ as
secondary instances), and EvalXPath.java evaluates each expression in it with the engine inside
ODK Validate's jar, the one pyxform ships.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import yaml

HERE = Path(__file__).parent
CASES = HERE / "cases.yaml"
ANSWERS = HERE / "answers.json"
MEDIA = HERE / "media"
SOURCE = HERE / "EvalXPath.java"
SHIM = HERE / "SHA256Digest.java"  # a class ODK Validate's jar leaves out
JVM_FLAGS = ["-Duser.timezone=UTC", "-Duser.language=en", "-Duser.country=US",
             "-Dfile.encoding=UTF-8"]

#: XLSForm type -> XForm bind type.
BIND_TYPES = {"int": "int", "decimal": "decimal", "string": "string", "date": "date",
              "dateTime": "dateTime", "time": "time", "geopoint": "geopoint",
              "geoshape": "geoshape", "geotrace": "geotrace", "select_one": "string",
              "select_multiple": "string"}


@dataclass(frozen=True)
class Case:
    """One expression with the fields it sees."""

    key: str  # what answers.json is keyed by: the expression, plus any fields/tz of its own
    section: str
    expr: str
    own: dict[str, Any]  # the case's own fields and tz (empty for most)
    out_of_scope: str = ""

    @property
    def tz(self) -> str:
        return str(self.own.get("tz", "UTC"))


@dataclass(frozen=True)
class Corpus:
    """cases.yaml: shared fields, repeat and choice lists, and the cases."""

    fields: dict[str, list[str]]
    repeats: dict[str, list[dict[str, list[str]]]]
    choices: dict[str, list[list[str]]]
    cases: list[Case]

    def fields_of(self, case: Case) -> dict[str, list[str]]:
        return {**self.fields, **case.own.get("fields", {})}


def case_key(expr: str, own: dict[str, Any]) -> str:
    return expr if not own else f"{expr}  {json.dumps(own, sort_keys=True, ensure_ascii=False)}"


def load_corpus(path: Path = CASES) -> Corpus:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases = []
    for section, entries in data["cases"].items():
        for entry in entries:
            spec = {"expr": entry} if isinstance(entry, str) else dict(entry)
            expr = str(spec.pop("expr"))
            reason = str(spec.pop("out_of_scope", ""))
            cases.append(Case(case_key(expr, spec), section, expr, spec, reason))
    keys = [c.key for c in cases]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"cases.yaml repeats cases: {duplicates}")
    return Corpus(data["fields"], data.get("repeats", {}), data.get("choices", {}), cases)


def _type(spec: list[str]) -> tuple[str, str | None]:
    """('select_one', 'colors') for 'select_one colors'."""
    kind, _, list_name = spec[0].partition(" ")
    return kind, list_name or None


def xpath(expr: str, fields: dict[str, list[str]], repeats: dict[str, Any]) -> str:
    """The expression as pyxform writes it: ${name} becomes ' /data/…/name ' everywhere."""
    paths = {name: f"/data/{name}" for name in fields}
    for repeat, rows in repeats.items():
        paths[repeat] = f"/data/{repeat}"
        for row in rows:
            paths.update({name: f"/data/{repeat}/{name}" for name in row})
    return re.sub(r"\$\{([^}]+)\}", lambda m: f" {paths[m.group(1)]} ", expr)


def _items(choices: list[list[str]]) -> str:
    return "".join(f"<item><label>{escape(label)}</label><value>{escape(name)}</value></item>"
                   for name, label in choices)


def xform(fields: dict[str, list[str]], corpus: Corpus) -> str:
    """A form whose primary instance holds the fields' values, with their types and choices."""
    nodes, binds, body = [], [], []
    for name, spec in fields.items():
        kind, list_name = _type(spec)
        nodes.append(f"<{name}>{escape(spec[1])}</{name}>")
        binds.append(f'<bind nodeset="/data/{name}" type="{BIND_TYPES[kind]}"/>')
        if list_name:
            control = "select1" if kind == "select_one" else "select"
            body.append(f'<{control} ref="/data/{name}"><label>{name}</label>'
                        f"{_items(corpus.choices[list_name])}</{control}>")
    for repeat, rows in corpus.repeats.items():
        for row in rows:
            nodes.append(f"<{repeat}>" + "".join(
                f"<{n}>{escape(v[1])}</{n}>" for n, v in row.items()) + f"</{repeat}>")
        for name, spec in rows[0].items():
            binds.append(f'<bind nodeset="/data/{repeat}/{name}" type="{BIND_TYPES[spec[0]]}"/>')
        inputs = "".join(f'<input ref="/data/{repeat}/{n}"/>' for n in rows[0])
        body.append(f'<group ref="/data/{repeat}"><label>{repeat}</label>'
                    f'<repeat nodeset="/data/{repeat}">{inputs}</repeat></group>')
    secondary = [f'<instance id={quoteattr(p.stem)} src="jr://file-csv/{p.name}"/>'
                 for p in sorted(MEDIA.glob("*.csv"))]
    # JavaRosa loads only the secondary instances the form's own expressions use.
    names = [p.stem for p in sorted(MEDIA.glob("*.csv"))] + list(corpus.choices)
    uses = " and ".join(f"count(instance('{n}')/root/item) > 0" for n in names)
    binds.append(f'<bind nodeset="/data/meta/uses" type="string" readonly={quoteattr(uses)}/>')
    for list_name, choices in corpus.choices.items():
        items = "".join(f"<item><name>{escape(n)}</name><label>{escape(lab)}</label></item>"
                        for n, lab in choices)
        secondary.append(f"<instance id={quoteattr(list_name)}><root>{items}</root></instance>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" '
        'xmlns:jr="http://openrosa.org/javarosa" xmlns:odk="http://www.opendatakit.org/xforms">'
        '<h:head><h:title>eval</h:title><model odk:xforms-version="1.0.0">'
        f'<instance><data id="eval">{"".join(nodes)}<meta><instanceID/><uses/></meta></data>'
        '</instance>'
        f'{"".join(secondary)}{"".join(binds)}</model></h:head>'
        f'<h:body>{"".join(body)}</h:body></h:html>\n'
    )


def _escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


def _unescape(value: str) -> str:
    """EvalXPath's escapes undone (\\uXXXX: a lone half of a surrogate pair)."""
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        return {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(2), m.group(2))

    return re.sub(r"\\(?:u([0-9a-f]{4})|(.))", one, value)


def jar() -> Path:
    import pyxform

    return (Path(pyxform.__file__).parent / "validators" / "odk_validate" / "bin"
            / "ODK_Validate.jar")


def javarosa_version() -> str:
    import zipfile

    with zipfile.ZipFile(jar()) as z:
        props = z.read("META-INF/maven/org.getodk/javarosa/pom.properties").decode()
    return re.search(r"version=(\S+)", props).group(1)  # type: ignore[union-attr]


def run_javarosa(corpus: Corpus, cases: list[Case], work: Path) -> tuple[str, dict[str, dict]]:
    """(today's date in the engine, {case key: {"kind", "value"}}) for ``cases``."""
    if shutil.which("javac") is None:
        raise RuntimeError("javac is missing: scripts/system-deps.sh installs a JDK (Java 17)")
    classes = work / "classes"
    subprocess.run(["javac", "-d", str(classes), "-cp", str(jar()), str(SOURCE), str(SHIM)],
                   check=True, capture_output=True)
    groups: dict[str, list[Case]] = {}
    for case in cases:  # one form per distinct set of fields and time zone
        groups.setdefault(json.dumps(case.own.get("fields", {}), sort_keys=True)
                          + case.tz, []).append(case)
    lines = [f"MEDIA {MEDIA.resolve()}"]
    ids: dict[str, str] = {}
    for n, members in enumerate(groups.values()):
        fields = corpus.fields_of(members[0])
        form = work / f"form{n}.xml"
        form.write_text(xform(fields, corpus), encoding="utf-8")
        lines += [f"TZ {members[0].tz}", f"FORM {form}"]
        for case in members:
            ids[str(len(ids))] = case.key
            lines.append(f"EVAL {len(ids) - 1}\t"
                         f"{_escape(xpath(case.expr, fields, corpus.repeats))}")
    job = work / "job.txt"
    job.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(["java", *JVM_FLAGS, "-cp", f"{classes}:{jar()}", "EvalXPath",
                           str(job)], capture_output=True, check=False)
    out = done.stdout.decode("utf-8")
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-3000:])
    answers: dict[str, dict] = {}
    today = ""
    for line in out.splitlines():
        if line.startswith("TODAY "):
            today = line.split(" ", 1)[1]
            continue
        number, kind, value = (line.split("\t", 2) + [""])[:3]
        answers[ids[number]] = {"kind": kind, "value": _unescape(value)}
    return today, answers


def main() -> int:
    corpus = load_corpus()
    with tempfile.TemporaryDirectory(prefix="javarosa-") as tmp:
        today, answers = run_javarosa(corpus, corpus.cases, Path(tmp))
    payload = {"javarosa": javarosa_version(), "today": today, "timezone": "UTC",
               "answers": {c.key: answers[c.key] for c in corpus.cases}}
    ANSWERS.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    kinds: dict[str, int] = {}
    for a in answers.values():
        kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    print(f"{len(answers)} answers from JavaRosa {payload['javarosa']} ({kinds}) -> {ANSWERS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
