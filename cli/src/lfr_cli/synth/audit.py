"""What the audit log says about a run — counts only (faces seen, alerts, decisions), read
through AlertService.GetAuditLog and checked with VerifyAuditLog."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from lfr.common import audit, timeutil
from lfr.v1 import alert_pb2, alert_pb2_grpc

__all__ = ["AuditSummary", "fetch_audit", "summarise_audit"]


@dataclass
class AuditSummary:
    records: int = 0
    faces_seen: int = 0  #: from ingest's aggregate faces.seen records for the cameras
    frames_processed: int = 0
    alerts_raised: int = 0
    decisions: Counter[str] = field(default_factory=Counter)  #: CONFIRM / REJECT → count
    actions: Counter[str] = field(default_factory=Counter)  #: every action → count

    def lines(self) -> list[str]:
        decided = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.decisions.items()))
        actions = ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items()))
        return [
            f"faces seen        {self.faces_seen} (in {self.frames_processed} frames)",
            f"alerts raised     {self.alerts_raised}",
            f"decisions         {sum(self.decisions.values())}"
            + (f" ({decided})" if decided else ""),
            f"audit records     {self.records}: {actions}",
        ]


async def fetch_audit(
    stub: alert_pb2_grpc.AlertServiceAsyncStub,
    *,
    since: datetime | None = None,
    timeout_s: float = 10.0,
    limit: int = 100_000,
) -> list[alert_pb2.AuditRecord]:
    """Every audit record since ``since`` (all pages)."""
    records: list[alert_pb2.AuditRecord] = []
    token = ""
    while len(records) < limit:
        request = alert_pb2.GetAuditLogRequest(page_size=1000, page_token=token)
        if since is not None:
            request.since.CopyFrom(timeutil.to_timestamp(since))
        reply = await stub.GetAuditLog(request, timeout=timeout_s)
        records.extend(reply.records)
        token = reply.next_page_token
        if not token:
            break
    return records


def _count(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def summarise_audit(
    records: Iterable[alert_pb2.AuditRecord],
    *,
    camera_ids: Sequence[str] = (),
    deployment_id: str = "",
) -> AuditSummary:
    """Counts of the records that concern these cameras / this deployment (all when empty)."""
    cameras = set(camera_ids)
    summary = AuditSummary()
    for record in records:
        details = record.details
        summary.records += 1
        summary.actions[record.action] += 1
        if record.action == audit.FACES_SEEN:
            if not cameras or details.get("camera_id") in cameras:
                summary.faces_seen += _count(details.get("faces_seen", "0"))
                summary.frames_processed += _count(details.get("frames_processed", "0"))
        elif record.action == audit.ALERT_RAISED:
            if not deployment_id or details.get("deployment_id") == deployment_id:
                summary.alerts_raised += 1
        elif record.action == audit.ALERT_ADJUDICATED:
            summary.decisions[details.get("decision", "?").removeprefix("DECISION_")] += 1
    return summary
