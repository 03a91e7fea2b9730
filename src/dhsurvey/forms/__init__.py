"""Instruments: the form model, compiler, linter, translation and diff tools."""
