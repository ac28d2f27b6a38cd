"""RPC methods of lfr.v1.IngestService."""

from __future__ import annotations

from lfr.v1 import ingest_pb2_grpc


class IngestServiceServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Every RPC answers UNIMPLEMENTED until its issue lands (the generated base raises
    NotImplementedError, which the shared interceptor maps to UNIMPLEMENTED)."""
