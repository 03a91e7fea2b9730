"""One package per pipeline stage, in data order."""

from pipelines.defs import forms

__all__ = ["forms"]
