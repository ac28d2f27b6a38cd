"""lfr command line."""
