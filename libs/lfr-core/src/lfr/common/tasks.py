"""Helpers for the background loops every service runs."""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Stop the current task if it was asked to.

    On Python 3.11 a cancel can be swallowed inside a library call (``asyncio.wait_for``
    finishing at the same moment, redis-py while it connects); it still shows in
    ``Task.cancelling()``. A loop that must end on cancel calls this after each such call, or it
    would run for ever and keep the server's shutdown waiting.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
