"""The watchlist service as its own process (``python -m lfr_watchlist``) with the real Redis,
Triton and alert service: health, enrolment, and audit records arriving in the alert service's
hash-chained log — also those written while the alert service was down."""

from __future__ import annotations

import time
from datetime import timedelta

import grpc
import pytest
import redis

from lfr.common import audit
from lfr.common.timeutil import now, to_timestamp
from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2, watchlist_pb2, watchlist_pb2_grpc
from lfr_cli.testing import RedisInstance, ServiceStarter, TritonInstance

from .watchlist_support import hopper

pytestmark = pytest.mark.integration


def audit_log(alert: alert_pb2_grpc.AlertServiceStub) -> list[alert_pb2.AuditRecord]:
    records: list[alert_pb2.AuditRecord] = []
    token = ""
    while True:
        page = alert.GetAuditLog(
            alert_pb2.GetAuditLogRequest(page_size=500, page_token=token), timeout=10
        )
        records.extend(page.records)
        token = page.next_page_token
        if not token:
            return records


def wait_for_actions(
    alert: alert_pb2_grpc.AlertServiceStub, wanted: list[str], timeout_s: float = 15
) -> list[alert_pb2.AuditRecord]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = audit_log(alert)
        actions = [r.action for r in records]
        if all(a in actions for a in wanted) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_audit_reaches_the_alert_service_even_across_its_outage(
    redis_client: redis.Redis,
    redis_server: RedisInstance,
    triton_server: TritonInstance,
    start_service: ServiceStarter,
) -> None:
    alert_service = start_service("alert", {"REDIS_URL": redis_server.url})
    watchlist_service = start_service(
        "watchlist",
        {
            "REDIS_URL": redis_server.url,
            "TRITON_URL": triton_server.url,
            "ALERT_ADDR": alert_service.addr,
            "AUDIT_RETRY_INTERVAL_S": "0.2",
        },
    )  # returns once its health is SERVING: Redis and Triton answered
    with (
        grpc.insecure_channel(watchlist_service.addr) as wl_channel,
        grpc.insecure_channel(alert_service.addr) as alert_channel,
    ):
        watchlists = watchlist_pb2_grpc.WatchlistServiceStub(wl_channel)
        alert = alert_pb2_grpc.AlertServiceStub(alert_channel)
        watchlists.CreateWatchlist(
            watchlist_pb2.CreateWatchlistRequest(watchlist_id="wanted", created_by="Sgt. Lewis"),
            timeout=10,
        )
        governance = watchlist_pb2.Governance(
            category=common_pb2.CATEGORY_WANTED_BY_COURTS,
            legal_basis_ref="warrant 1",
            image_source="portrait",
            approver="Insp. Morse",
            expires_at=to_timestamp(now() + timedelta(days=1)),
        )
        entry = watchlists.Enrol(
            watchlist_pb2.EnrolRequest(
                watchlist_id="wanted", images=[hopper()], governance=governance
            ),
            timeout=30,
        )
        records = wait_for_actions(alert, [audit.WATCHLIST_CREATED, audit.ENTRY_ENROLLED])
        enrolled = [r for r in records if r.action == audit.ENTRY_ENROLLED]
        assert [r.details["entry_id"] for r in enrolled] == [entry.entry_id]
        assert enrolled[0].actor == "Insp. Morse"

        # The alert service goes down: the watchlist service keeps working, and what it does
        # meanwhile reaches the log once the alert service is back.
        alert_service.terminate()
        removed = watchlists.RemoveEntry(
            watchlist_pb2.RemoveEntryRequest(
                watchlist_id="wanted", entry_id=entry.entry_id, requested_by="Sgt. Lewis"
            ),
            timeout=10,
        )
        assert removed.entry_id == entry.entry_id
        alert_service.restart()
        records = wait_for_actions(alert, [audit.ENTRY_REMOVED])
        actions = [r.action for r in records if r.action.startswith(("watchlist.", "entry."))]
        assert actions == [audit.WATCHLIST_CREATED, audit.ENTRY_ENROLLED, audit.ENTRY_REMOVED]
        verified = alert.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest(), timeout=10)
        assert verified.ok
