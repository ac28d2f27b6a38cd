"""RPC methods of lfr.v1.MatchService."""

from __future__ import annotations

from lfr.v1 import match_pb2_grpc


class MatchServiceServicer(match_pb2_grpc.MatchServiceServicer):
    """Every RPC answers UNIMPLEMENTED until its issue lands (the generated base raises
    NotImplementedError, which the shared interceptor maps to UNIMPLEMENTED)."""
