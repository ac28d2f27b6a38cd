"""Adapters to what ingest talks to: the match and watchlist services over gRPC, and video
sources through OpenCV. The pipeline sees them only through ``lfr_ingest.ports``."""
