"""One exception family for the whole library.

Every error carries a stable ``code`` (for tests and documentation) and a ``context`` naming
where the problem is (file, sheet, row, column, form, country), so the CLI can print one readable
block and a data manager can find the cell or record without a traceback.
"""

from __future__ import annotations

from typing import Any

#: Context keys in the order a reader looks for them.
_CONTEXT_ORDER = ("file", "sheet", "row", "column", "form", "country", "field", "expression")


class DhsurveyError(Exception):
    """Base class: a message, a short code and where it happened."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.context = {k: v for k, v in context.items() if v is not None}

    def ordered_context(self) -> list[tuple[str, Any]]:
        """Context items, the location ones first in reading order."""
        known = [(k, self.context[k]) for k in _CONTEXT_ORDER if k in self.context]
        return known + [(k, v) for k, v in self.context.items() if k not in _CONTEXT_ORDER]

    def where(self) -> str:
        """``file, sheet 'survey', row 12, column 'relevant'`` — the location in words."""
        parts = []
        for key in _CONTEXT_ORDER:
            if key not in self.context:
                continue
            value = self.context[key]
            if key == "file":
                parts.append(str(value))
            elif key in ("row",):
                parts.append(f"{key} {value}")
            elif key == "expression":
                continue
            else:
                parts.append(f"{key} '{value}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


class FormError(DhsurveyError):
    """A workbook cannot be read, parsed or compiled."""

    code = "form"


class ConfigError(DhsurveyError):
    """A configuration file or setting is missing or invalid."""

    code = "config"
