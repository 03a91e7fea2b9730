"""Compile XLSForm workbooks to XForms with pyxform and the ODK Validate bundled in its wheel.

The compiled version is derived from the workbook's content (see :attr:`FormModel.version`), so
the same workbook always compiles to the same bytes and any edit yields a new version that ODK
Central and KoboToolbox accept as a new form definition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dhsurvey.errors import FormError
from dhsurvey.forms.model import STATA, FormModel, load_form
from dhsurvey.io import atomic_write_bytes, atomic_write_json


@dataclass(frozen=True)
class CompiledForm:
    """One XForm and where it came from."""

    model: FormModel
    xform: str
    warnings: tuple[str, ...]
    encrypted: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.xform.encode()).hexdigest()

    #: Whether ODK Validate checked this XForm (its warnings are in ``warnings``).
    validated: bool = False
    #: SHA-256 of the public key the form encrypts with ('' when not encrypted).
    key_sha256: str = ""

    def manifest_entry(self) -> dict[str, object]:
        m = self.model
        return {
            "form_id": m.form_id,
            "title": m.title,
            "version": m.version,
            "content_hash": m.content_hash,
            "xform_sha256": self.sha256,
            "source": m.path.name,
            "languages": m.languages,
            "fields": len(m.fields),
            "repeats": [r.name for r in m.repeats],
            "encrypted": self.encrypted,
            "public_key_sha256": self.key_sha256,
            "validated": self.validated,
            "warnings": list(self.warnings),
        }


def _pyxform_error(exc: Exception, model: FormModel) -> FormError:
    """Turn a pyxform error into a FormError naming sheet, row and column where known."""
    context = dict(getattr(exc, "context", {}) or {})
    message = str(exc)
    row = context.get("row")
    column = context.get("column")
    sheet = context.get("sheet", "survey")
    if row is None:
        # pyxform names the row in the text for some errors ("[row : 12]").
        found = re.search(r"\[row\s*:\s*(\d+)\]", message)
        if found:
            row = int(found.group(1))
    if row is None:
        item = _item_named_in(message, model)
        if item is not None:
            row = item.row
    return FormError(message.strip(), code="pyxform", file=model.path, sheet=sheet, row=row,
                     column=column)


def _item_named_in(message: str, model: FormModel):
    """The survey row whose XPath (``/form/group/name``) or name a validator message mentions."""
    for path in re.findall(r"/[\w/.\-]+", message):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name in model:
            return model[name]
    for name in re.findall(r"'([\w.\-]+)'", message):
        if name in model:
            return model[name]
    return None


def _is_stata(header: str) -> bool:
    return header.replace(" ", "").lower().rsplit(":", 1)[-1] == STATA and ":" in header


#: XForms this process compiled, by (workbook, content hash, key): lint compiles a form to
#: check it and the build compiles it again (pyxform takes about a second per form).
_COMPILED: dict[tuple[str, str, str | None], tuple[str, tuple[str, ...], bool]] = {}


def to_xform(model: FormModel, public_key: str | None = None) -> CompiledForm:
    """Convert a workbook to XForm XML (no external validation), with the derived version.

    A workbook of the same content compiled before in this process is not compiled again."""
    memo = (str(model.path.resolve()), model.content_hash, public_key)
    if memo not in _COMPILED:
        if len(_COMPILED) >= 16:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[memo] = _pyxform(model, public_key)
    xform, warnings, encrypted = _COMPILED[memo]
    return CompiledForm(model, xform, warnings, encrypted, key_sha256=_key_sha256(public_key))


def _pyxform(model: FormModel, public_key: str | None) -> tuple[str, tuple[str, ...], bool]:
    from pyxform.builder import create_survey_element_from_dict
    from pyxform.errors import PyXFormError
    from pyxform.xls2json import workbook_to_json
    from pyxform.xls2xform import get_xlsform

    warnings: list[str] = []
    try:
        book = get_xlsform(xlsform=str(model.path))
        # Stata short labels are release metadata, not an interview language on devices.
        for sheet in ("survey", "choices"):
            for attr in (sheet, f"{sheet}_header"):
                rows = getattr(book, attr)
                if rows:
                    setattr(book, attr, [{k: v for k, v in r.items() if not _is_stata(k)}
                                         for r in rows])
        settings = dict(book.settings[0]) if book.settings else {}
        settings["version"] = model.version
        if public_key:
            settings["public_key"] = public_key
        book.settings = [settings]
        if book.settings_header:
            header = dict(book.settings_header[0])
            for key in settings:
                header.setdefault(key, None)
            book.settings_header = [header]
        data = workbook_to_json(workbook_dict=book, fallback_form_name=book.fallback_form_name,
                                warnings=warnings)
        survey = create_survey_element_from_dict(data)
        xform = survey.to_xml(validate=False, pretty_print=True, warnings=warnings)
    except PyXFormError as exc:
        raise _pyxform_error(exc, model) from None
    except Exception as exc:  # pyxform raises plain exceptions for some sheet errors
        raise _pyxform_error(exc, model) from None
    return xform, tuple(warnings), "public_key" in settings


def _key_sha256(public_key: str | None) -> str:
    return hashlib.sha256(public_key.encode()).hexdigest() if public_key else ""


def odk_validate(compiled: CompiledForm, workdir: Path) -> list[str]:
    """Run ODK Validate (Java) on a compiled form; returns its warnings, raises on errors."""
    from pyxform.validators import odk_validate as ov

    path = workdir / f"{compiled.model.form_id}.xml"
    path.write_text(compiled.xform, encoding="utf-8")
    try:
        return list(ov.check_xform(str(path)) or [])
    except ov.ODKValidateError as exc:
        message = str(exc).strip()
        item = _item_named_in(message, compiled.model)
        raise FormError(
            "ODK Validate rejected the form: " + message, code="odk-validate",
            file=compiled.model.path, sheet="survey" if item else None,
            row=item.row if item else None,
        ) from None
    except OSError as exc:  # Java missing
        raise FormError(str(exc), code="java-missing", file=compiled.model.path) from None


def compile_forms(
    paths: list[Path], *, validate: bool = True, public_key: str | None = None
) -> list[CompiledForm]:
    """Load and compile several workbooks; ODK Validate runs in parallel (about 2 s a form)."""
    return _compile_models([load_form(p) for p in paths], validate, public_key)


def _compile_models(models: list[FormModel], validate: bool, public_key: str | None
                    ) -> list[CompiledForm]:
    import tempfile

    compiled = [to_xform(m, public_key=public_key) for m in models]
    if validate:
        with tempfile.TemporaryDirectory(prefix="dhsurvey-validate-") as tmp:
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(pool.map(lambda c: odk_validate(c, Path(tmp)), compiled))
        compiled = [dataclasses.replace(c, warnings=c.warnings + tuple(w), validated=True)
                    for c, w in zip(compiled, results, strict=True)]
    return compiled


def _compiler() -> str:
    """What made an XForm besides its workbook: the compiler's version."""
    from importlib.metadata import version

    return f"pyxform {version('pyxform')}"


def _built(forms_dir: Path, models: list[FormModel], validate: bool,
           public_key: str | None) -> list[CompiledForm] | None:
    """The XForms already in ``forms_dir`` when its manifest says they were compiled from
    these workbooks' content, with the same key and compiler (and validated, if asked), and
    each file is still the one compiled; else None."""
    import json

    try:
        manifest = json.loads((forms_dir / "manifest.json").read_text(encoding="utf-8"))
        entries = {e["form_id"]: e for e in manifest["forms"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if manifest.get("compiler") != _compiler() or \
            sorted(entries) != sorted(m.form_id for m in models):
        return None
    out = []
    for model in models:
        entry = entries[model.form_id]
        if entry.get("content_hash") != model.content_hash or \
                entry.get("source") != model.path.name or \
                entry.get("public_key_sha256", "") != _key_sha256(public_key) or \
                (validate and not entry.get("validated")):
            return None
        try:
            xform = (forms_dir / f"{model.form_id}.xml").read_text(encoding="utf-8")
        except OSError:
            return None
        compiled = CompiledForm(model, xform, tuple(entry.get("warnings", ())),
                                bool(entry.get("encrypted")), bool(entry.get("validated")),
                                _key_sha256(public_key))
        if compiled.sha256 != entry.get("xform_sha256"):
            return None
        out.append(compiled)
    return out


def instrument_paths(directory: str | Path) -> list[Path]:
    """The XLSForm workbooks in a folder (Excel lock files ``~$…`` skipped), sorted."""
    directory = Path(directory)
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise FormError("instrument folder not found", code="file-missing", file=directory)
    paths = sorted(p for p in directory.glob("*.xlsx") if not p.name.startswith("~$"))
    if not paths:
        raise FormError("no .xlsx workbooks in the folder", code="file-missing", file=directory)
    return paths


def build(
    instruments: str | Path, out: str | Path, *, validate: bool = True,
    public_key: str | None = None, force: bool = False,
) -> list[CompiledForm]:
    """Compile every instrument to ``<out>/forms/<form_id>.xml`` plus ``manifest.json``.

    Forms compiled before from the same content (the manifest's content hashes, key and
    compiler version; the XForm files unchanged) are not compiled again: the demo, the CLI
    and the pipeline's ``compiled_forms`` asset each call this, and pyxform with ODK
    Validate takes seconds per form. ``force``: compile anyway."""
    forms_dir = Path(out) / "forms"
    models = [load_form(p) for p in instrument_paths(instruments)]
    compiled = None if force else _built(forms_dir, models, validate, public_key)
    if compiled is not None:
        return compiled
    compiled = _compile_models(models, validate, public_key)
    seen: dict[str, Path] = {}
    for c in compiled:
        if c.model.form_id in seen:
            raise FormError(
                f"form_id '{c.model.form_id}' is also used by {seen[c.model.form_id].name}",
                code="form-id-duplicate", file=c.model.path, sheet="settings", column="form_id",
            )
        seen[c.model.form_id] = c.model.path
    for c in compiled:
        atomic_write_bytes(forms_dir / f"{c.model.form_id}.xml", c.xform.encode("utf-8"))
    atomic_write_json(forms_dir / "manifest.json",
                      {"compiler": _compiler(), "forms": [c.manifest_entry() for c in compiled]})
    return compiled
