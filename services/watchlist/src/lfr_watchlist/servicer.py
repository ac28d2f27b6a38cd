"""RPC methods of lfr.v1.WatchlistService: validate, call the managers, convert the answer."""

from __future__ import annotations

from datetime import timedelta

from grpc import aio

from lfr.common.errors import InvalidArgument
from lfr.common.schema import index_name
from lfr.common.timeutil import is_set, to_datetime, to_timestamp
from lfr.v1 import watchlist_pb2, watchlist_pb2_grpc
from lfr_watchlist.deployments import DeploymentManager
from lfr_watchlist.model import (
    HNSW,
    Clock,
    DeploymentRecord,
    EntryRecord,
    WatchlistRecord,
)
from lfr_watchlist.requests import (
    INVALID_FIELD,
    algorithm_of,
    optional_id,
    optional_text,
    parse_create_deployment,
    parse_governance,
    required_id,
    required_text,
)
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.watchlists import WatchlistManager

Context = aio.ServicerContext[object, object]


def watchlist_pb(record: WatchlistRecord, entry_count: int) -> watchlist_pb2.Watchlist:
    return watchlist_pb2.Watchlist(
        watchlist_id=record.watchlist_id,
        name=record.name,
        description=record.description,
        algorithm=(
            watchlist_pb2.INDEX_ALGORITHM_HNSW
            if record.algorithm == HNSW
            else watchlist_pb2.INDEX_ALGORITHM_FLAT
        ),
        keep_enrolment_images=record.keep_enrolment_images,
        created_at=to_timestamp(record.created_at),
        entry_count=entry_count,
        created_by=record.created_by,
    )


def entry_pb(entry: EntryRecord) -> watchlist_pb2.Entry:
    g = entry.governance
    governance = watchlist_pb2.Governance(
        category=g.category,  # type: ignore[arg-type]
        legal_basis_ref=g.legal_basis_ref,
        image_source=g.image_source,
        approver=g.approver,
        expires_at=to_timestamp(g.expires_at),
        subject_ref=g.subject_ref,
    )
    if g.image_date is not None:
        governance.image_date.CopyFrom(to_timestamp(g.image_date))
    return watchlist_pb2.Entry(
        entry_id=entry.entry_id,
        watchlist_id=entry.watchlist_id,
        governance=governance,
        image_count=entry.image_count,
        enrolled_at=to_timestamp(entry.enrolled_at),
        model_version=entry.model_version,
    )


def deployment_pb(d: DeploymentRecord) -> watchlist_pb2.Deployment:
    message = watchlist_pb2.Deployment(
        deployment_id=d.deployment_id,
        authorising_officer=d.authorising_officer,
        purpose=d.purpose,
        location=d.location,
        camera_ids=list(d.camera_ids),
        watchlist_id=d.watchlist_id,
        threshold=d.threshold,
        start_time=to_timestamp(d.start_time),
        end_time=to_timestamp(d.end_time),
        state=d.state,  # type: ignore[arg-type]
        created_at=to_timestamp(d.created_at),
    )
    if d.started_at is not None:
        message.started_at.CopyFrom(to_timestamp(d.started_at))
    if d.ended_at is not None:
        message.ended_at.CopyFrom(to_timestamp(d.ended_at))
    if d.snapshot is not None:
        message.snapshot.CopyFrom(
            watchlist_pb2.WatchlistSnapshot(
                entry_count=d.snapshot.entry_count,
                content_hash=d.snapshot.content_hash,
                taken_at=to_timestamp(d.snapshot.taken_at),
            )
        )
    return message


class WatchlistServiceServicer(watchlist_pb2_grpc.WatchlistServiceServicer):
    def __init__(
        self,
        watchlists: WatchlistManager,
        deployments: DeploymentManager,
        settings: WatchlistSettings,
        *,
        clock: Clock,
    ) -> None:
        self._watchlists = watchlists
        self._deployments = deployments
        self._settings = settings
        self._clock = clock

    # --- watch lists ---------------------------------------------------------------------------

    async def CreateWatchlist(
        self, request: watchlist_pb2.CreateWatchlistRequest, context: Context
    ) -> watchlist_pb2.Watchlist:
        record = await self._watchlists.create_watchlist(
            watchlist_id=optional_id(request.watchlist_id, "watchlist_id"),
            name=optional_text(request.name, "name"),
            description=optional_text(request.description, "description"),
            algorithm=algorithm_of(request.algorithm),
            keep_enrolment_images=request.keep_enrolment_images,
            created_by=optional_text(request.created_by, "created_by"),
        )
        return watchlist_pb(record, 0)

    async def GetWatchlist(
        self, request: watchlist_pb2.GetWatchlistRequest, context: Context
    ) -> watchlist_pb2.Watchlist:
        wl_id = required_id(request.watchlist_id, "watchlist_id")
        record = await self._watchlists.get_watchlist(wl_id)
        (count,) = await self._watchlists.entry_counts([wl_id])
        return watchlist_pb(record, count)

    async def ListWatchlists(
        self, request: watchlist_pb2.ListWatchlistsRequest, context: Context
    ) -> watchlist_pb2.ListWatchlistsResponse:
        records = await self._watchlists.list_watchlists()
        counts = await self._watchlists.entry_counts([r.watchlist_id for r in records])
        return watchlist_pb2.ListWatchlistsResponse(
            watchlists=[watchlist_pb(r, n) for r, n in zip(records, counts, strict=True)]
        )

    # --- entries -------------------------------------------------------------------------------

    async def Enrol(
        self, request: watchlist_pb2.EnrolRequest, context: Context
    ) -> watchlist_pb2.Entry:
        wl_id = required_id(request.watchlist_id, "watchlist_id")
        governance = parse_governance(
            request,
            now=self._clock(),
            max_ttl=timedelta(days=self._settings.max_entry_ttl_days),
        )
        entry = await self._watchlists.enrol(wl_id, list(request.images), governance)
        return entry_pb(entry)

    async def GetEntry(
        self, request: watchlist_pb2.GetEntryRequest, context: Context
    ) -> watchlist_pb2.Entry:
        entry = await self._watchlists.get_entry(
            required_id(request.watchlist_id, "watchlist_id"),
            required_id(request.entry_id, "entry_id"),
        )
        return entry_pb(entry)

    async def ListEntries(
        self, request: watchlist_pb2.ListEntriesRequest, context: Context
    ) -> watchlist_pb2.ListEntriesResponse:
        wl_id = required_id(request.watchlist_id, "watchlist_id")
        # The token is the last entry id of the previous page (entry ids sort by enrolment).
        after = optional_id(request.page_token, "page_token")
        page = await self._watchlists.list_entries(wl_id, page_size=request.page_size, after=after)
        return watchlist_pb2.ListEntriesResponse(
            entries=[entry_pb(e) for e in page.entries], next_page_token=page.next_token
        )

    async def RemoveEntry(
        self, request: watchlist_pb2.RemoveEntryRequest, context: Context
    ) -> watchlist_pb2.RemoveEntryResponse:
        wl_id = required_id(request.watchlist_id, "watchlist_id")
        entry_id = required_id(request.entry_id, "entry_id")
        requested_by = required_text(request.requested_by, "requested_by")
        reason = optional_text(request.reason, "reason")
        await self._watchlists.remove_entry(
            wl_id, entry_id, requested_by=requested_by, reason=reason
        )
        return watchlist_pb2.RemoveEntryResponse(entry_id=entry_id)

    async def PurgeExpired(
        self, request: watchlist_pb2.PurgeExpiredRequest, context: Context
    ) -> watchlist_pb2.PurgeExpiredResponse:
        purged = await self._watchlists.purge_expired(
            optional_id(request.watchlist_id, "watchlist_id")
        )
        return watchlist_pb2.PurgeExpiredResponse(purged_entry_ids=[e for _, e in purged])

    # --- deployments ---------------------------------------------------------------------------

    async def CreateDeployment(
        self, request: watchlist_pb2.CreateDeploymentRequest, context: Context
    ) -> watchlist_pb2.Deployment:
        parsed = parse_create_deployment(
            request,
            now=self._clock(),
            default_threshold=self._settings.default_threshold,
            threshold_floor=self._settings.threshold_floor,
            max_duration=timedelta(hours=self._settings.max_deployment_hours),
        )
        return deployment_pb(await self._deployments.create(parsed))

    async def StartDeployment(
        self, request: watchlist_pb2.StartDeploymentRequest, context: Context
    ) -> watchlist_pb2.Deployment:
        record = await self._deployments.start(
            required_id(request.deployment_id, "deployment_id"),
            requested_by=required_text(request.requested_by, "requested_by"),
        )
        return deployment_pb(record)

    async def StopDeployment(
        self, request: watchlist_pb2.StopDeploymentRequest, context: Context
    ) -> watchlist_pb2.Deployment:
        record = await self._deployments.stop(
            required_id(request.deployment_id, "deployment_id"),
            requested_by=required_text(request.requested_by, "requested_by"),
            reason=optional_text(request.reason, "reason"),
        )
        return deployment_pb(record)

    async def GetDeployment(
        self, request: watchlist_pb2.GetDeploymentRequest, context: Context
    ) -> watchlist_pb2.Deployment:
        record = await self._deployments.get(required_id(request.deployment_id, "deployment_id"))
        return deployment_pb(record)

    async def ListDeployments(
        self, request: watchlist_pb2.ListDeploymentsRequest, context: Context
    ) -> watchlist_pb2.ListDeploymentsResponse:
        if request.state not in watchlist_pb2.DeploymentState.values():
            raise InvalidArgument(
                f"state {request.state} is not a DeploymentState", reason=INVALID_FIELD
            )
        records = await self._deployments.list_deployments(request.state)
        return watchlist_pb2.ListDeploymentsResponse(
            deployments=[deployment_pb(r) for r in records]
        )

    async def ResolveCamera(
        self, request: watchlist_pb2.ResolveCameraRequest, context: Context
    ) -> watchlist_pb2.ResolveCameraResponse:
        camera_id = required_text(request.camera_id, "camera_id")
        at = to_datetime(request.at) if request.HasField("at") and is_set(request.at) else None
        record = await self._deployments.resolve(camera_id, at)
        if record is None:
            return watchlist_pb2.ResolveCameraResponse(active=False)
        return watchlist_pb2.ResolveCameraResponse(
            active=True,
            deployment=deployment_pb(record),
            index_name=index_name(record.watchlist_id),
        )
