"""Dagster code location for dhsurvey: wires library calls into assets and checks."""
