"""Watch lists and their entries: create, enrol, read, remove, and purge what has expired."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from lfr.common import audit
from lfr.common.errors import AlreadyExists, InvalidArgument, NotFound
from lfr.common.logging import get_logger
from lfr.common.tasks import raise_if_cancelling
from lfr.inference import MODEL_VERSION, FaceAnalyzer
from lfr.v1 import common_pb2
from lfr_watchlist.enrolment import embed_images
from lfr_watchlist.model import (
    Clock,
    EntryRecord,
    Governance,
    WatchlistRecord,
    audit_event,
    new_id,
)
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.store import Store

log = get_logger("lfr.watchlist")

#: Actor of the audit records the service writes on its own.
PURGE_ACTOR = "system:purge"
UNSPECIFIED_ACTOR = "unspecified"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[EntryRecord]
    next_token: str  #: "" on the last page


class WatchlistManager:
    def __init__(
        self,
        store: Store,
        analyzer: FaceAnalyzer,
        settings: WatchlistSettings,
        *,
        clock: Clock,
        audit_written: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._analyzer = analyzer
        self._settings = settings
        self._clock = clock
        self._audit_written = audit_written
        self._model_version: str | None = None

    @property
    def max_entry_ttl(self) -> timedelta:
        return timedelta(days=self._settings.max_entry_ttl_days)

    # --- watch lists ---------------------------------------------------------------------------

    async def create_watchlist(
        self,
        *,
        watchlist_id: str,
        name: str,
        description: str,
        algorithm: str,
        keep_enrolment_images: bool,
        created_by: str,
    ) -> WatchlistRecord:
        now = self._clock()
        record = WatchlistRecord(
            watchlist_id=watchlist_id or new_id("wl"),
            name=name,
            description=description,
            algorithm=algorithm,
            keep_enrolment_images=keep_enrolment_images,
            created_at=now,
            created_by=created_by,
        )
        event = audit_event(
            audit.WATCHLIST_CREATED,
            created_by or UNSPECIFIED_ACTOR,
            now,
            watchlist_id=record.watchlist_id,
            name=name,
            algorithm=algorithm,
            keep_enrolment_images=str(keep_enrolment_images).lower(),
        )
        if not await self._store.create_watchlist(record, event):
            raise AlreadyExists(f"watch list {record.watchlist_id!r} already exists")
        self._audit_written()
        return record

    async def get_watchlist(self, watchlist_id: str) -> WatchlistRecord:
        record = await self._store.get_watchlist(watchlist_id)
        if record is None:
            raise NotFound(f"watch list {watchlist_id!r} not found", reason="WATCHLIST_NOT_FOUND")
        return record

    async def list_watchlists(self) -> list[WatchlistRecord]:
        return await self._store.list_watchlists()

    async def entry_counts(self, watchlist_ids: Sequence[str]) -> list[int]:
        return await self._store.entry_counts(watchlist_ids)

    # --- entries -------------------------------------------------------------------------------

    async def enrol(
        self, watchlist_id: str, images: Sequence[bytes], governance: Governance
    ) -> EntryRecord:
        """All images or nothing: the first bad image fails the request and nothing is stored."""
        if not images:
            raise InvalidArgument("images needs at least one image", reason="MISSING_FIELD")
        limit = self._settings.max_images_per_enrol
        if len(images) > limit:
            raise InvalidArgument(
                f"images holds {len(images)} images; at most {limit} per enrolment",
                reason="INVALID_FIELD",
            )
        watchlist = await self.get_watchlist(watchlist_id)
        embeddings = await embed_images(
            self._analyzer,
            images,
            min_face_px=self._settings.min_face_px,
            timeout_s=self._settings.triton_timeout_s,
        )
        now = self._clock()
        if governance.expires_at <= now:  # validated earlier; the analysis took time since
            raise InvalidArgument("governance.expires_at passed during enrolment")
        entry = EntryRecord(
            entry_id=new_id("e"),
            watchlist_id=watchlist_id,
            governance=governance,
            image_count=len(embeddings),
            enrolled_at=now,
            model_version=await self.model_version(),
        )
        kept = list(images) if watchlist.keep_enrolment_images else []
        event = audit_event(
            audit.ENTRY_ENROLLED,
            governance.approver,
            now,
            watchlist_id=watchlist_id,
            entry_id=entry.entry_id,
            category=common_pb2.Category.Name(governance.category),  # type: ignore[arg-type]
            legal_basis_ref=governance.legal_basis_ref,
            image_source=governance.image_source,
            image_date="" if governance.image_date is None else governance.image_date.isoformat(),
            approver=governance.approver,
            expires_at=governance.expires_at.isoformat(),
            subject_ref=governance.subject_ref,
            image_count=str(entry.image_count),
            images_kept=str(bool(kept)).lower(),
            model_version=entry.model_version,
        )
        await self._store.add_entry(entry, embeddings, kept, event)
        self._audit_written()
        log.info("enrolled", watchlist_id=watchlist_id, entry_id=entry.entry_id, images=len(images))
        return entry

    async def model_version(self) -> str:
        """The embedding space of new entries, as the model server reports it when it can
        (``TritonFaceAnalyzer.model_version``; not part of the FaceAnalyzer Protocol)."""
        if self._model_version is None:
            ask = getattr(self._analyzer, "model_version", None)
            self._model_version = str(await ask()) if callable(ask) else MODEL_VERSION
        return self._model_version

    async def get_entry(self, watchlist_id: str, entry_id: str) -> EntryRecord:
        entry = await self._store.get_entry(watchlist_id, entry_id)
        if entry is None:
            # When the watch list is what is missing, say so.
            await self.get_watchlist(watchlist_id)
            raise NotFound(
                f"entry {entry_id!r} not found in watch list {watchlist_id!r}",
                reason="ENTRY_NOT_FOUND",
            )
        return entry

    async def list_entries(self, watchlist_id: str, *, page_size: int, after: str) -> Page:
        await self.get_watchlist(watchlist_id)
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        found = await self._store.list_entries(watchlist_id, after=after, limit=size + 1)
        if len(found) > size:
            return Page(found[:size], found[size - 1].entry_id)
        return Page(found, "")

    async def remove_entry(
        self, watchlist_id: str, entry_id: str, *, requested_by: str, reason: str
    ) -> None:
        entry = await self.get_entry(watchlist_id, entry_id)
        event = audit_event(
            audit.ENTRY_REMOVED,
            requested_by,
            self._clock(),
            watchlist_id=watchlist_id,
            entry_id=entry_id,
            subject_ref=entry.governance.subject_ref,
            reason=reason,
        )
        if not await self._store.remove_entry(watchlist_id, entry_id, event):
            raise NotFound(
                f"entry {entry_id!r} not found in watch list {watchlist_id!r}",
                reason="ENTRY_NOT_FOUND",
            )
        self._audit_written()

    # --- expiry --------------------------------------------------------------------------------

    async def purge_expired(self, watchlist_id: str = "") -> list[tuple[str, str]]:
        """Remove every entry whose ``expires_at`` has passed; ``(watchlist_id, entry_id)`` of
        each. Each removal is its own transaction with its ``entry.expired`` audit record."""
        if watchlist_id:
            ids = [(await self.get_watchlist(watchlist_id)).watchlist_id]
        else:
            ids = [wl.watchlist_id for wl in await self._store.list_watchlists()]
        purged: list[tuple[str, str]] = []
        for wl_id in ids:
            now = self._clock()
            for entry_id in await self._store.expired_entry_ids(wl_id, now):
                entry = await self._store.get_entry(wl_id, entry_id)
                if entry is None:
                    continue  # removed meanwhile
                event = audit_event(
                    audit.ENTRY_EXPIRED,
                    PURGE_ACTOR,
                    now,
                    watchlist_id=wl_id,
                    entry_id=entry_id,
                    subject_ref=entry.governance.subject_ref,
                    expires_at=entry.governance.expires_at.isoformat(),
                )
                if await self._store.remove_entry(wl_id, entry_id, event):
                    purged.append((wl_id, entry_id))
        if purged:
            self._audit_written()
            log.info("purged expired entries", count=len(purged))
        return purged

    async def run_purge(self) -> None:
        """Background task: purge every ``purge_interval_s``, whatever goes wrong."""
        while True:
            raise_if_cancelling()
            try:
                await self.purge_expired()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: try again next round
                log.warning("purge failed", error=str(exc), error_type=type(exc).__name__)
            await asyncio.sleep(self._settings.purge_interval_s)
