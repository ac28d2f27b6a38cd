"""Which deployment covers a camera, asked of the watchlist service and remembered briefly, so a
camera streaming at 25 frames/s costs one ResolveCamera call every ``ttl_s``, not 25 a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from lfr.common.errors import NotFound
from lfr_ingest.ports import ActiveDeployment, DeploymentResolver


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    deployment: ActiveDeployment | None
    not_found: NotFound | None = None


class CachedResolver:
    """Caches answers (an active deployment, none, or an unknown camera) for ``ttl_s``; failures
    to answer are not cached. Concurrent misses for one camera share one call."""

    def __init__(
        self,
        inner: DeploymentResolver,
        ttl_s: float,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}

    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        entry = self._cache.get(camera_id)
        if entry is None or entry.expires <= self._clock():
            task = self._inflight.get(camera_id)
            if task is None:
                task = asyncio.create_task(self._fetch(camera_id))
                self._inflight[camera_id] = task
                task.add_done_callback(lambda _t: self._inflight.pop(camera_id, None))
            entry = await asyncio.shield(task)
        if entry.not_found is not None:
            raise entry.not_found
        return entry.deployment

    def invalidate(self, camera_id: str | None = None) -> None:
        if camera_id is None:
            self._cache.clear()
        else:
            self._cache.pop(camera_id, None)

    async def _fetch(self, camera_id: str) -> _Entry:
        try:
            entry = _Entry(self._clock() + self._ttl_s, await self._inner.resolve(camera_id))
        except NotFound as exc:
            entry = _Entry(self._clock() + self._ttl_s, None, exc)
        if self._ttl_s > 0:
            self._store(camera_id, entry)
        return entry

    def _store(self, camera_id: str, entry: _Entry) -> None:
        if len(self._cache) >= self._max_entries:
            now = self._clock()
            for key in [k for k, e in self._cache.items() if e.expires <= now]:
                del self._cache[key]
            while len(self._cache) >= self._max_entries:
                del self._cache[next(iter(self._cache))]
        self._cache.pop(camera_id, None)
        self._cache[camera_id] = entry
