"""lfr match service."""
