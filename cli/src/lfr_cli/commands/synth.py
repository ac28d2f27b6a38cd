"""``lfr synth``: the synthetic stream harness (see :mod:`lfr_cli.synth`)."""

from __future__ import annotations

from lfr_cli.commands import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    from lfr_cli.synth.cli import add_arguments

    parser = subparsers.add_parser(
        "synth",
        help="synthetic camera streams: drive them through the suite and report, or render them",
        description="Synthetic camera streams built from face photos, with ground truth.",
    )
    add_arguments(parser)
