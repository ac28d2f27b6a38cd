"""The audit interface every service writes to (DESIGN invariant 6).

The alert service owns the hash-chained log; other services append through :class:`AuditSink`.
Details are ids and counts only, never face data.
"""

from __future__ import annotations

from typing import Protocol

import grpc
from grpc import aio

from lfr.common.channels import DEFAULT_DEADLINE_S
from lfr.common.errors import from_rpc_error
from lfr.v1 import alert_pb2, alert_pb2_grpc

# Actions, one name per thing that matters.
WATCHLIST_CREATED = "watchlist.created"
ENTRY_ENROLLED = "entry.enrolled"
ENTRY_REMOVED = "entry.removed"
ENTRY_EXPIRED = "entry.expired"
DEPLOYMENT_AUTHORISED = "deployment.authorised"
DEPLOYMENT_STARTED = "deployment.started"
DEPLOYMENT_STOPPED = "deployment.stopped"
DEPLOYMENT_ENDED = "deployment.ended"
WATCHLIST_COMPILED = "watchlist.compiled"
THRESHOLD_SET = "threshold.set"
ALERT_RAISED = "alert.raised"
ALERT_ADJUDICATED = "alert.adjudicated"
ALERT_DELETED = "alert.deleted"
ALERT_LEGAL_HOLD = "alert.legal_hold"
FACES_SEEN = "faces.seen"


class AuditSink(Protocol):
    async def record(self, action: str, actor: str, details: dict[str, str]) -> None:
        """Append one record; raises an ``LfrError`` when it could not be stored."""
        ...


class GrpcAuditSink:
    """Appends to the alert service's audit log over gRPC."""

    def __init__(self, channel: aio.Channel, *, timeout_s: float = DEFAULT_DEADLINE_S) -> None:
        self._stub = alert_pb2_grpc.AlertServiceStub(channel)
        self._timeout_s = timeout_s

    async def record(self, action: str, actor: str, details: dict[str, str]) -> None:
        request = alert_pb2.AppendAuditRequest(actor=actor, action=action, details=details)
        try:
            await self._stub.AppendAudit(request, timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise from_rpc_error(err, what=f"audit {action}") from None
