"""lfr alert service."""
