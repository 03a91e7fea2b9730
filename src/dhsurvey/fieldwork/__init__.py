"""Fieldwork: country configuration, sample design, simulated fieldwork and its exports."""
