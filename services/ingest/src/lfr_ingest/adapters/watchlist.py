"""DeploymentResolver over the watchlist service's ResolveCamera."""

from __future__ import annotations

import grpc
from grpc import aio

from lfr.common.errors import NotFound, from_rpc_error
from lfr.common.timeutil import is_set, to_epoch
from lfr.v1 import watchlist_pb2, watchlist_pb2_grpc
from lfr_ingest.adapters.health import is_serving
from lfr_ingest.ports import ActiveDeployment

WATCHLIST_SERVICE = "lfr.v1.WatchlistService"


class GrpcDeploymentResolver:
    def __init__(self, channel: aio.Channel, *, timeout_s: float) -> None:
        self._channel = channel
        self._stub = watchlist_pb2_grpc.WatchlistServiceStub(channel)
        self._timeout_s = timeout_s

    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        request = watchlist_pb2.ResolveCameraRequest(camera_id=camera_id)
        try:
            reply = await self._stub.ResolveCamera(request, timeout=self._timeout_s)
        except grpc.RpcError as err:
            error = from_rpc_error(err, what="watchlist ResolveCamera")
            if isinstance(error, NotFound):
                raise NotFound(
                    f"camera {camera_id!r} is in no deployment", reason="UNKNOWN_CAMERA"
                ) from None
            raise error from None
        if not reply.active:
            return None
        deployment = reply.deployment
        end = to_epoch(deployment.end_time) if is_set(deployment.end_time) else None
        return ActiveDeployment(deployment_id=deployment.deployment_id, end_epoch=end)

    async def ready(self) -> bool:
        return await is_serving(self._channel, WATCHLIST_SERVICE, timeout_s=self._timeout_s)
