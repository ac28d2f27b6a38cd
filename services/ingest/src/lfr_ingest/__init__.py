"""lfr ingest service."""
