"""Subcommands of ``lfr``, one module each, found automatically.

To add ``lfr <name>``, drop a module into this package that defines::

    def add_parser(subparsers: Subparsers) -> None:
        parser = subparsers.add_parser("name", help="...")
        parser.add_argument(...)
        parser.set_defaults(handler=run)   # run(args: argparse.Namespace) -> int

``run`` returns the exit code and raises :class:`lfr.common.errors.LfrError` for anything the
user must fix (``lfr`` prints it as one line and exits 2). No central list to edit.
An optional module-level ``ORDER: int`` (default 100) places its commands in ``lfr --help``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers: TypeAlias = argparse._SubParsersAction

__all__ = ["Subparsers", "command_modules"]


def command_modules() -> list[ModuleType]:
    """Every module of this package that has ``add_parser``, by ``ORDER`` then name.

    A module that fails to import is reported on stderr and skipped, so one broken command
    never takes ``lfr up``/``lfr down`` with it.
    """
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        name = f"{__name__}.{info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            print(f"lfr: warning: command module {name} not loaded: {exc}", file=sys.stderr)
            continue
        if callable(getattr(module, "add_parser", None)):
            found.append(module)
    return sorted(found, key=lambda m: (int(getattr(m, "ORDER", 100)), m.__name__))
