"""RPC methods of lfr.v1.AlertService."""

from __future__ import annotations

from lfr.v1 import alert_pb2_grpc


class AlertServiceServicer(alert_pb2_grpc.AlertServiceServicer):
    """Every RPC answers UNIMPLEMENTED until its issue lands (the generated base raises
    NotImplementedError, which the shared interceptor maps to UNIMPLEMENTED)."""
