"""Stage 2: exports in the landing zone → canonical raw tables per country and form."""
