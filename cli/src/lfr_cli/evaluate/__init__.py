"""``lfr evaluate``: open-set identification accuracy through the real services.

* :mod:`.dataset` — reads a folder of labelled photos (who is enrolled, who is a probe)
* :mod:`.run` — enrols and searches through injected adapters (Protocols; fakes in unit tests)
* :mod:`.adapters` — the real ones: the watchlist service's gRPC API, match's Redis KNN
* :mod:`.metrics` — TPIR, FNIR, mis-identifications, FPIR, FMR, threshold for a target FPIR
* :mod:`.report` — JSON, terminal table, DET plot
* :mod:`.suite` — a private suite to run against, or the one ``lfr up`` started
* :mod:`.cli` — the ``lfr evaluate`` subcommand

Kept light on import (no heavy modules here): ``lfr`` imports the command at start-up.
"""
