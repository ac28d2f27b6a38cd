"""``lfr demo``: the suite end to end on a synthetic clip (see :mod:`lfr_cli.demo`)."""

from __future__ import annotations

from lfr_cli.commands import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    from lfr_cli.demo import add_arguments

    parser = subparsers.add_parser(
        "demo",
        help="start the suite, enrol Grace Hopper, stream a clip, show alerts and the audit log",
        description="Start the embedded suite on free ports, enrol Grace Hopper, stream a clip "
        "in which she, the astronaut and the cameraman walk past, print and adjudicate each "
        "alert, summarise the audit log, and stop everything.",
    )
    add_arguments(parser)
