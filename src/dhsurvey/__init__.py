"""dhsurvey."""
