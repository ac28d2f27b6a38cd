"""``lfr``: the command line. Subcommands live in :mod:`lfr_cli.commands`, one module each."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from lfr.common.errors import LfrError
from lfr_cli.commands import command_modules

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lfr",
        description="lfr — Live Facial Recognition: run and drive the suite.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in command_modules():
        module.add_parser(subparsers)
    return parser


def _raise_interrupt(_sig: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so a half-done `lfr up` stops what it started.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return int(handler(args) or 0)
    except LfrError as exc:
        # Anything the user must fix: one line, what went wrong and what to do.
        print(f"lfr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lfr: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
