"""RPC methods of lfr.v1.WatchlistService."""

from __future__ import annotations

from lfr.v1 import watchlist_pb2_grpc


class WatchlistServiceServicer(watchlist_pb2_grpc.WatchlistServiceServicer):
    """Every RPC answers UNIMPLEMENTED until its issue lands (the generated base raises
    NotImplementedError, which the shared interceptor maps to UNIMPLEMENTED)."""
