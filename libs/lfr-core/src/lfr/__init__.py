"""lfr shared library."""
