"""lfr watchlist service."""
