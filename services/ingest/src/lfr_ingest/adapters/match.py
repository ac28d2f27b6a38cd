"""MatchClient over one long-lived MatchStream: probes from every camera share the stream, each
answer is paired with its probe by ``request_id``.

When the stream breaks, every probe waiting on it fails with ``Unavailable`` and the next probe
opens a new stream; a probe whose stream broke is retried once, with the same ``request_id``, so
match publishes at most one alert for it. The stream carries a deadline
(``stream_max_age_s``) like every outbound call, and is renewed before that while idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import grpc
from grpc import aio

from lfr.common.errors import DeadlineExceeded, LfrError, Unavailable, from_rpc_error
from lfr.common.logging import get_logger
from lfr.v1 import match_pb2, match_pb2_grpc
from lfr_ingest.adapters.health import is_serving

log = get_logger("lfr.ingest.match")
MATCH_SERVICE = "lfr.v1.MatchService"


@dataclass(eq=False)
class _Stream:
    call: aio.StreamStreamCall[match_pb2.MatchRequest, match_pb2.MatchResponse]
    opened: float
    pending: dict[str, asyncio.Future[match_pb2.MatchResponse]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    broken: bool = False


class StreamingMatchClient:
    def __init__(
        self, channel: aio.Channel, *, timeout_s: float, stream_max_age_s: float = 600.0
    ) -> None:
        self._channel = channel
        self._stub = match_pb2_grpc.MatchServiceStub(channel)
        self._timeout_s = timeout_s
        self._max_age_s = stream_max_age_s
        self._stream: _Stream | None = None
        self._lock = asyncio.Lock()

    async def match(self, request: match_pb2.MatchRequest) -> match_pb2.MatchResponse:
        try:
            return await self._once(request)
        except Unavailable:
            return await self._once(request)  # the stream broke: once more on a fresh one

    async def _once(self, request: match_pb2.MatchRequest) -> match_pb2.MatchResponse:
        future: asyncio.Future[match_pb2.MatchResponse] = asyncio.get_running_loop().create_future()
        async with self._lock:  # one writer at a time on the stream
            stream = self._current()
            stream.pending[request.request_id] = future
            try:
                await stream.call.write(request)
            except (grpc.RpcError, asyncio.InvalidStateError) as err:
                stream.pending.pop(request.request_id, None)
                self._break(stream)
                raise Unavailable(f"match stream: {_describe(err)}") from None
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"match gave no decision within {self._timeout_s:g} s") from None
        finally:
            stream.pending.pop(request.request_id, None)

    def _current(self) -> _Stream:
        stream = self._stream
        if stream is not None and not stream.broken:
            age = time.monotonic() - stream.opened
            if age < self._max_age_s / 2 or (stream.pending and age < self._max_age_s * 0.9):
                return stream
            self._retire(stream)
        # No request iterator: requests are written as probes come (call.write).
        call = self._stub.MatchStream(timeout=self._max_age_s)  # type: ignore[call-arg]
        stream = _Stream(call=call, opened=time.monotonic())
        stream.reader = asyncio.create_task(self._read(stream), name="ingest-match-reader")
        self._stream = stream
        return stream

    async def _read(self, stream: _Stream) -> None:
        error: LfrError
        try:
            while True:
                reply = await stream.call.read()
                if reply is aio.EOF:  # type: ignore[attr-defined]
                    error = Unavailable("match stream ended")
                    break
                assert isinstance(reply, match_pb2.MatchResponse)
                future = stream.pending.get(reply.request_id)
                if future is not None and not future.done():
                    future.set_result(reply)
        except grpc.RpcError as err:
            error = from_rpc_error(err, what="match stream")
            if not isinstance(error, Unavailable):
                log.warning("match stream failed", error=error.message, reason=error.reason)
        except asyncio.CancelledError:
            error = Unavailable("match client closed")
        self._break(stream)
        for future in stream.pending.values():
            if not future.done():
                future.set_exception(error)

    def _break(self, stream: _Stream) -> None:
        stream.broken = True
        if self._stream is stream:
            self._stream = None

    def _retire(self, stream: _Stream) -> None:
        """Old and idle: finish it; its reader ends when the server closes its side."""
        self._break(stream)
        task = asyncio.ensure_future(stream.call.done_writing())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def ready(self) -> bool:
        return await is_serving(self._channel, MATCH_SERVICE, timeout_s=self._timeout_s)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()
            if stream.reader is not None:
                stream.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await stream.reader


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.RpcError) and hasattr(err, "details"):
        return str(err.details())
    return type(err).__name__
