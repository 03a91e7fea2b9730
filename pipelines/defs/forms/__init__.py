"""Stage 1: compiled instruments."""

from pipelines.defs.forms import assets

__all__ = ["assets"]
