"""Validation: form-derived rules, linkage, quarantine and fieldwork quality."""
