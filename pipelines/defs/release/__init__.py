"""Stage 6: the labelled, anonymised release and its headline indicators."""
