"""The audit log as the service uses it: append (also as an in-process ``AuditSink``), read
pages, and verify the hash chain. Storage and the atomic append are the store's job."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

from lfr.common.errors import InvalidArgument
from lfr.v1 import alert_pb2
from lfr_alert.alerts import parse_cursor
from lfr_alert.audit_chain import Verification, validate_append, verify
from lfr_alert.store import AlertStore, AuditEntry

#: The detail that makes AppendAudit idempotent (per actor).
IDEMPOTENCY_DETAIL = "event_id"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: Records examined per GetAuditLog call when a prefix filter skips most of them; the caller
#: continues with the page token.
MAX_SCAN = 20_000
_READ_CHUNK = 500


def new_record_id() -> str:
    return uuid.uuid4().hex


class AuditLog:
    """Implements :class:`lfr.common.audit.AuditSink` for the alert service's own use."""

    def __init__(self, store: AlertStore, ids: Callable[[], str] = new_record_id) -> None:
        self._store = store
        self._ids = ids

    def entry(self, action: str, actor: str, details: Mapping[str, str]) -> AuditEntry:
        return AuditEntry(record_id=self._ids(), actor=actor, action=action, details=details)

    async def append(
        self, action: str, actor: str, details: Mapping[str, str]
    ) -> alert_pb2.AuditRecord:
        """Append a record. A sender that retries (its first attempt may have been stored
        before the reply was lost) names the event in ``details["event_id"]``: a repeat of the
        same actor and event id returns the first record instead of appending a duplicate."""
        validate_append(actor, action, details)
        event_id = details.get(IDEMPOTENCY_DETAIL, "")
        key = json.dumps([actor, event_id]) if event_id else ""
        return await self._store.append_audit(self.entry(action, actor, details), key)

    async def record(self, action: str, actor: str, details: dict[str, str]) -> None:
        await self.append(action, actor, details)

    async def page(
        self,
        *,
        action_prefix: str,
        since_ms: int,
        until_ms: int,
        page_size: int,
        page_token: str,
    ) -> tuple[list[alert_pb2.AuditRecord], str]:
        """Records in log order; returns them with the token for the next page ("" at the
        end). A page may hold fewer than ``page_size`` records when the filter skips many."""
        if page_token:
            parse_cursor(page_token)  # tokens are positions; refuse anything else early
        if since_ms and until_ms and since_ms > until_ms:
            raise InvalidArgument("since is after until")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        out: list[alert_pb2.AuditRecord] = []
        position, scanned = page_token, 0
        while scanned < MAX_SCAN:
            chunk = max(size - len(out), _READ_CHUNK) if action_prefix else size - len(out)
            entries = await self._store.read_audit(
                position, chunk, since_ms=since_ms, until_ms=until_ms
            )
            scanned += len(entries)
            for entry_position, record in entries:
                position = entry_position
                if record.action.startswith(action_prefix):
                    out.append(record)
                    if len(out) == size:
                        return out, position
            if len(entries) < chunk:
                return out, ""
        return out, position

    async def _all(self, head_seq: int) -> AsyncIterator[alert_pb2.AuditRecord]:
        position = ""
        while True:
            entries = await self._store.read_audit(position, _READ_CHUNK)
            for entry_position, record in entries:
                yield record
                if record.seq >= head_seq:
                    return
                position = entry_position
            if len(entries) < _READ_CHUNK:
                return

    async def verify(self) -> Verification:
        """Recompute the chain up to the head as it is now (appends during the check are left
        for the next one)."""
        head = await self._store.audit_head()
        return await verify(self._all(head[0] if head else 0), head)
