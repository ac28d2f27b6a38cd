"""``lfr evaluate``: implemented in :mod:`lfr_cli.evaluate`."""

from lfr_cli.evaluate.cli import add_parser as add_parser
