"""RPC methods of lfr.v1.IngestService."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from lfr.v1 import ingest_pb2, ingest_pb2_grpc
from lfr_ingest.ingest import Ingest
from lfr_ingest.pipeline import FrameResult
from lfr_ingest.sources import SourceManager


class IngestServiceServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, ingest: Ingest, sources: SourceManager) -> None:
        self.ingest = ingest
        self.sources = sources

    async def StreamFrames(
        self,
        request_iterator: AsyncIterator[ingest_pb2.Frame],
        context: grpc.aio.ServicerContext[ingest_pb2.Frame, FrameResult],
    ) -> AsyncIterator[FrameResult]:
        """Results go back in the order frames came. Frames that will not be processed are
        answered at once, but wait their turn behind earlier frames; when the stream owes
        ``max_pending_results`` results it stops reading, so HTTP/2 flow control slows the
        sender instead of memory growing."""
        owed: asyncio.Queue[asyncio.Future[FrameResult] | BaseException | None] = asyncio.Queue(
            self.ingest.settings.max_pending_results
        )

        async def read() -> None:
            try:
                async for frame in request_iterator:
                    await owed.put(await self.ingest.submit(frame))
            except Exception as exc:  # the stream broke: answer what is owed, then fail
                await owed.put(exc)
                return
            await owed.put(None)

        reader = asyncio.create_task(read(), name="ingest-stream-reader")
        try:
            while (item := await owed.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield await item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def AddSource(
        self,
        request: ingest_pb2.AddSourceRequest,
        context: grpc.aio.ServicerContext[ingest_pb2.AddSourceRequest, ingest_pb2.Source],
    ) -> ingest_pb2.Source:
        return await self.sources.add(request)

    async def RemoveSource(
        self,
        request: ingest_pb2.RemoveSourceRequest,
        context: grpc.aio.ServicerContext[
            ingest_pb2.RemoveSourceRequest, ingest_pb2.RemoveSourceResponse
        ],
    ) -> ingest_pb2.RemoveSourceResponse:
        return ingest_pb2.RemoveSourceResponse(source=await self.sources.remove(request.camera_id))

    async def ListSources(
        self,
        request: ingest_pb2.ListSourcesRequest,
        context: grpc.aio.ServicerContext[
            ingest_pb2.ListSourcesRequest, ingest_pb2.ListSourcesResponse
        ],
    ) -> ingest_pb2.ListSourcesResponse:
        return ingest_pb2.ListSourcesResponse(sources=self.sources.list())

    async def GetStats(
        self,
        request: ingest_pb2.GetIngestStatsRequest,
        context: grpc.aio.ServicerContext[ingest_pb2.GetIngestStatsRequest, ingest_pb2.IngestStats],
    ) -> ingest_pb2.IngestStats:
        return ingest_pb2.IngestStats(cameras=self.ingest.stats(request.camera_id))
