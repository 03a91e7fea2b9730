"""Tests of dhsurvey.anonymise."""
