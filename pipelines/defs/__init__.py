"""One package per pipeline stage, in data order: forms, ingest, validate."""
