"""Import hygiene of the library: no Dagster, no cycles, and data flows one way through stages.

Every module of ``src/dhsurvey`` is parsed with :mod:`ast` (nothing is imported, so this runs in
a fraction of a second). Module-level and function-level imports count alike; ``from x import
y`` counts as importing the module ``x.y`` when that is a module, else ``x``.

The stage order is the order the data flows in::

    forms → configuration → ingest → validate → weight → anonymise → release

A module may import modules of its own stage or of an earlier one, and the shared
infrastructure; never a later stage. Where each module belongs:

- **forms**: ``dhsurvey.forms.*`` — the instrument model, its expressions and their evaluation
  on tables (``forms.frames``), compiling and linting workbooks. Everything reads forms.
- **configuration**: ``dhsurvey.fieldwork.config``, ``.scaffold`` and ``.design`` (the
  country files and the sample design, which every later stage reads) and the
  ``dhsurvey.fieldwork`` package itself (every importer of the configuration runs it).
- **ingest**, **validate**, **weight**, **anonymise**, **release**: their packages, whole.
  ``validate.backcheck`` reads exports through ingest, ``ingest.central_api`` publishes
  compiled forms, ``release.pooled`` pools anonymised releases: each sits in its package and
  only looks back.
- **simulator** (outside the order, a side branch that produces what ingest reads):
  ``fieldwork.simulate``, ``.answers``, ``.faults``, ``.exports``, ``.run``, ``.canaries``. It
  may import forms, configuration and ingest (the export writers are the exact inverses of the
  readers and take the layouts — headers, table names, encryption — from the reader modules so
  the two cannot drift), but no later stage; and no stage may import the simulator (validation
  checks the form's rules from ``forms``, not from the simulator that obeys them).
- **shared**: ``dhsurvey`` (the package), ``dhsurvey.errors``, ``dhsurvey.io``,
  ``dhsurvey.parallel``, ``dhsurvey.store`` — infrastructure every module may import; it
  imports only shared modules.
- **orchestration**: ``dhsurvey.cli``, ``.demo``, ``.batched``, ``.study`` — run the stages
  end to end; they may import anything in the library, and only orchestration imports them.

A module that fits none of these fails :func:`test_every_module_has_a_place` until it is given
one here.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "dhsurvey"

STAGES = ("forms", "configuration", "ingest", "validate", "weight", "anonymise", "release")
SIMULATOR = "simulator"
SHARED = "shared"
ORCHESTRATION = "orchestration"

CONFIGURATION_MODULES = {"dhsurvey.fieldwork", "dhsurvey.fieldwork.config",
                         "dhsurvey.fieldwork.design", "dhsurvey.fieldwork.scaffold"}
SIMULATOR_MODULES = {f"dhsurvey.fieldwork.{name}" for name in
                     ("simulate", "answers", "faults", "exports", "run", "canaries")}
SHARED_MODULES = {"dhsurvey", "dhsurvey.errors", "dhsurvey.io", "dhsurvey.parallel",
                  "dhsurvey.store"}
ORCHESTRATION_MODULES = {"dhsurvey.cli", "dhsurvey.demo", "dhsurvey.batched", "dhsurvey.study",
                         "dhsurvey.study_files"}
#: What the simulator may import besides itself and the shared modules.
SIMULATOR_MAY_IMPORT = {"forms", "configuration", "ingest"}
#: Top-level packages the library must not import (the Dagster code location and Dagster).
FORBIDDEN_ROOTS = ("pipelines", "dagster")

# Known violations in modules being rewritten right now; being removed — empty these when done.
#: (importing module, imported module)
KNOWN_FORBIDDEN_IMPORTS: set[tuple[str, str]] = set()
KNOWN_LAYER_VIOLATIONS: set[tuple[str, str]] = set()


# --------------------------------------------------------------------------- the import graph


def _module_name(path: Path) -> tuple[str, bool]:
    """``src/dhsurvey/forms/model.py`` → (``dhsurvey.forms.model``, is a package)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import …`` inside ``importer``."""
    if not level:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(tree: ast.AST, importer: str, is_package: bool,
               modules: Iterable[str]) -> set[str]:
    """Every module ``tree`` imports, anywhere in the file (functions included)."""
    known = set(modules)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, importer, is_package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                out.add(candidate if candidate in known else base)
    return out


@functools.cache
def import_graph() -> dict[str, frozenset[str]]:
    """Module → every module it imports (library or not), for all of ``src/dhsurvey``."""
    files = {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}
    names = {name for name, _ in files}
    return {name: frozenset(imports_of(ast.parse(path.read_bytes(), str(path)), name, package,
                                       names))
            for (name, package), path in files.items()}


def library_graph() -> dict[str, set[str]]:
    graph = import_graph()
    return {m: {i for i in imported if i in graph} for m, imported in graph.items()}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, …, a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


# --------------------------------------------------------------------------- places


def place(module: str) -> str | None:
    """The stage (or side group) a module belongs to; None when it has no place yet."""
    if module in SHARED_MODULES:
        return SHARED
    if module in ORCHESTRATION_MODULES:
        return ORCHESTRATION
    if module in CONFIGURATION_MODULES:
        return "configuration"
    if module in SIMULATOR_MODULES:
        return SIMULATOR
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in STAGES and parts[1] != "configuration":
        return parts[1]
    return None


def may_import(importer: str, imported: str) -> bool:
    """Whether the stage order lets ``importer`` import ``imported`` (both placed)."""
    a, b = place(importer), place(imported)
    if a == ORCHESTRATION or b == SHARED:
        return True
    if a == SHARED:
        return False  # (shared → shared returned above)
    if b == ORCHESTRATION:
        return False
    if a == SIMULATOR:
        return b == SIMULATOR or b in SIMULATOR_MAY_IMPORT
    if b == SIMULATOR:
        return False
    return STAGES.index(b) <= STAGES.index(a)


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    return sorted((m, i) for m, imported in graph.items() for i in imported
                  if place(m) and place(i) and not may_import(m, i))


# --------------------------------------------------------------------------- the rules


def test_library_imports_no_pipelines_or_dagster() -> None:
    found = sorted((m, i) for m, imported in import_graph().items() for i in imported
                   if i.split(".")[0] in FORBIDDEN_ROOTS or i.startswith("dagster_"))
    unexpected = [f"{m} imports {i}" for m, i in found if (m, i) not in KNOWN_FORBIDDEN_IMPORTS]
    assert not unexpected, "the library must not import the Dagster code:\n" + \
        "\n".join(unexpected)


def test_no_import_cycle() -> None:
    cycle = find_cycle(library_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_every_module_has_a_place() -> None:
    unplaced = sorted(m for m in import_graph() if place(m) is None)
    assert not unplaced, ("give these modules a place in tests/test_architecture.py: "
                          + ", ".join(unplaced))


def test_no_stage_imports_a_later_one() -> None:
    found = layer_violations(library_graph())
    unexpected = [f"{m} ({place(m)}) imports {i} ({place(i)})" for m, i in found
                  if (m, i) not in KNOWN_LAYER_VIOLATIONS]
    assert not unexpected, ("imports against the stage order " + " → ".join(STAGES)
                            + " (see this test's docstring):\n" + "\n".join(unexpected))


def test_known_violations_are_still_there() -> None:
    """An entry of the allow-lists that no longer happens is deleted, not kept around."""
    graph = import_graph()
    gone = sorted((m, i) for m, i in KNOWN_FORBIDDEN_IMPORTS | KNOWN_LAYER_VIOLATIONS
                  if i not in graph.get(m, ()))
    assert not gone, f"remove from the allow-lists (no longer imported): {gone}"


# --------------------------------------------------------------------------- the checker itself


def test_imports_are_resolved_to_modules() -> None:
    source = ("import dhsurvey.io\n"
              "from dhsurvey.forms import model, FORMS\n"
              "from . import canonical\n"
              "from ..errors import DhsurveyError\n"
              "def f():\n"
              "    from pipelines.demo import run\n")
    modules = {"dhsurvey.io", "dhsurvey.forms", "dhsurvey.forms.model",
               "dhsurvey.ingest.canonical", "dhsurvey.errors"}
    found = imports_of(ast.parse(source), "dhsurvey.ingest.read", False, modules)
    assert found == {"dhsurvey.io", "dhsurvey.forms.model", "dhsurvey.forms",
                     "dhsurvey.ingest.canonical", "dhsurvey.errors", "pipelines.demo"}


@pytest.mark.parametrize(("graph", "cycle"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b", "x"}, "b": {"b"}}, ["b", "b"]),
])
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


@pytest.mark.parametrize(("importer", "imported", "allowed"), [
    ("dhsurvey.validate.logic", "dhsurvey.forms.frames", True),
    ("dhsurvey.validate.logic", "dhsurvey.fieldwork.answers", False),
    ("dhsurvey.ingest.run", "dhsurvey.fieldwork.config", True),
    ("dhsurvey.forms.model", "dhsurvey.fieldwork.config", False),
    ("dhsurvey.weight.study", "dhsurvey.release.labels", False),
    ("dhsurvey.fieldwork.exports", "dhsurvey.ingest.central", True),
    ("dhsurvey.fieldwork.simulate", "dhsurvey.anonymise.release", False),
    ("dhsurvey.errors", "dhsurvey.forms.model", False),
    ("dhsurvey.cli", "dhsurvey.release.writers", True),
    ("dhsurvey.release.writers", "dhsurvey.cli", False),
])
def test_stage_order(importer: str, imported: str, allowed: bool) -> None:
    assert may_import(importer, imported) is allowed
