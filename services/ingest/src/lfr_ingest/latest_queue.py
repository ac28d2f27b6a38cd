"""A bounded queue where the newest item wins: putting into a full queue pushes out the oldest
waiting item and hands it back, so the caller can count (and answer) the drop."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestWinsQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()

    def __len__(self) -> int:
        return len(self._items)

    def put_latest(self, item: T) -> T | None:
        """Enqueue at once; returns the oldest waiting item when it had to make room."""
        dropped = self._items.popleft() if len(self._items) >= self.maxsize else None
        self._items.append(item)
        self._not_empty.set()
        self._update_full()
        return dropped

    async def put_wait(self, item: T) -> None:
        """Enqueue, waiting for room (for sources where waiting loses nothing: files)."""
        while len(self._items) >= self.maxsize:
            await self._not_full.wait()
        self._items.append(item)
        self._not_empty.set()
        self._update_full()

    async def get(self) -> T:
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._items.popleft()
        self._update_full()
        return item

    def drain(self) -> list[T]:
        """Remove and return everything waiting."""
        items = list(self._items)
        self._items.clear()
        self._update_full()
        return items

    def _update_full(self) -> None:
        if len(self._items) < self.maxsize:
            self._not_full.set()
        else:
            self._not_full.clear()
        if not self._items:
            self._not_empty.clear()
