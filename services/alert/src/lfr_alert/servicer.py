"""RPC methods of lfr.v1.AlertService."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from lfr.common.audit import ALERT_ADJUDICATED, ALERT_LEGAL_HOLD, ALERT_RAISED
from lfr.common.errors import InvalidArgument, NotFound, ResourceExhausted
from lfr.common.logging import get_logger
from lfr.common.timeutil import is_set
from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2
from lfr_alert.alerts import (
    STATE_BY_DECISION,
    cursor_after,
    decision_name,
    matches,
    ms_timestamp,
    new_alert,
    normalise_cursor,
    timestamp_ms,
    validate_filter,
)
from lfr_alert.audit_log import AuditLog
from lfr_alert.fanout import AlertHub, Overflowed, Subscription
from lfr_alert.routing import Router
from lfr_alert.settings import AlertSettings
from lfr_alert.store import AlertStore, NewAlert

log = get_logger("lfr.alert")

ACTOR = "lfr-alert"
MAX_ID_CHARS = 128
MAX_REASON_CHARS = 1000
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: Stream entries examined per ListAlerts call when the filter skips most of them.
MAX_LIST_SCAN = 20_000
_HISTORY_PAGE = 500

#: Initial metadata of Subscribe: the cursor the live part starts after, and the subscriber's
#: last acked cursor (a client that lost its own can resume from it).
START_CURSOR_KEY = "lfr-start-cursor"
ACKED_CURSOR_KEY = "lfr-acked-cursor"


def _require_id(value: str, name: str) -> None:
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise InvalidArgument(f"{name} must be at most {MAX_ID_CHARS} printable characters")


def _check_score(value: float, name: str) -> None:
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise InvalidArgument(f"{name} {value} is outside the score scale [-1, 1]")


def _ms(ts: Any) -> int:
    return timestamp_ms(ts) if is_set(ts) else 0


class AlertServicer(alert_pb2_grpc.AlertServiceServicer):
    def __init__(
        self,
        settings: AlertSettings,
        store: AlertStore,
        router: Router,
        hub: AlertHub,
        *,
        clock: Callable[[], float] = time.time,
        ids: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._settings = settings
        self._store = store
        self._router = router
        self._hub = hub
        self._clock = clock
        self._ids = ids
        self.audit = AuditLog(store, ids)

    # --- Publish --------------------------------------------------------------------------

    def _validate_event(self, event: alert_pb2.MatchEvent) -> None:
        _require_id(event.event_id, "event_id")
        _require_id(event.deployment_id, "deployment_id")
        _require_id(event.camera_id, "camera_id")
        if not event.entry_id and not event.subject_ref:
            raise InvalidArgument("entry_id or subject_ref is required (who matched)")
        for name in ("entry_id", "subject_ref", "watchlist_id", "location", "model_version"):
            if len(getattr(event, name)) > MAX_ID_CHARS:
                raise InvalidArgument(f"{name} must be at most {MAX_ID_CHARS} characters")
        if event.category == 0 or event.category not in common_pb2.Category.values():
            raise InvalidArgument(f"category {event.category} is not a watch-list category")
        _check_score(event.score, "score")
        _check_score(event.threshold, "threshold")
        if event.score < event.threshold:
            # No scores in the message: it reaches the RPC log line, and a non-match's score
            # is data of a face that did not match (DESIGN §1.2).
            raise InvalidArgument(
                "score is below the threshold: not a match, so not an alert",
                reason="NOT_A_MATCH",
            )
        if len(event.crop_jpeg) > self._settings.max_crop_bytes:
            raise InvalidArgument(
                f"crop_jpeg is {len(event.crop_jpeg)} bytes; at most "
                f"{self._settings.max_crop_bytes} are accepted",
                reason="CROP_TOO_LARGE",
            )

    async def Publish(
        self, request: alert_pb2.MatchEvent, context: Any
    ) -> alert_pb2.PublishResponse:
        self._validate_event(request)
        route = self._router.route(request)
        alert_id = self._ids()
        raised_s = self._clock()
        expires_s = raised_s + self._settings.retention_s
        alert = new_alert(
            alert_id=alert_id,
            event=request,
            channels=route.channels,
            severity=route.severity,
            raised_s=raised_s,
            expires_s=expires_s,
        )
        subject = request.entry_id or f"subject:{request.subject_ref}"
        dedup_key = json.dumps(
            [request.deployment_id, request.watchlist_id, subject, request.camera_id]
        )
        severity = common_pb2.Severity.Name(route.severity).removeprefix("SEVERITY_")  # type: ignore[arg-type]
        audit = self.audit.entry(
            ALERT_RAISED,
            ACTOR,
            {
                "alert_id": alert_id,
                "event_id": request.event_id,
                "deployment_id": request.deployment_id,
                "camera_id": request.camera_id,
                "watchlist_id": request.watchlist_id,
                "entry_id": request.entry_id,
                "score": f"{request.score:.4f}",
                "threshold": f"{request.threshold:.4f}",
                "severity": severity,
                "channels": ",".join(route.channels),
            },
        )
        outcome = await self._store.publish(
            NewAlert(
                alert_id=alert_id,
                event_id=request.event_id,
                dedup_key=dedup_key,
                cooldown_ms=int(self._settings.cooldown_s * 1000),
                expires_ms=int(expires_s * 1000),
                pb=alert.SerializeToString(),
                audit=audit,
            )
        )
        if outcome.cursor:
            log.info(
                "alert raised",
                alert_id=outcome.alert_id,
                camera_id=request.camera_id,
                severity=severity,
                channels=list(route.channels),
            )
        return alert_pb2.PublishResponse(
            alert_id=outcome.alert_id,
            replayed=outcome.replayed,
            deduplicated=outcome.deduplicated,
        )

    # --- Subscribe / Ack ------------------------------------------------------------------

    async def Subscribe(
        self, request: alert_pb2.SubscribeRequest, context: Any
    ) -> AsyncIterator[alert_pb2.Alert]:
        _require_id(request.subscriber_id, "subscriber_id")
        validate_filter(request.filter)
        resume = request.resume_cursor
        after = normalise_cursor(resume) if resume else ""
        sub = Subscription(
            request.subscriber_id, request.filter, self._settings.subscriber_queue_size
        )
        await self._hub.wait_ready(self._settings.subscribe_ready_timeout_s)
        self._hub.check_capacity()  # before replaying history, not after
        acked = await self._store.acked_cursor(request.subscriber_id)
        registered = False
        scanned = after

        async def history(until: str) -> AsyncIterator[alert_pb2.Alert]:
            nonlocal scanned
            while True:
                batch = await self._store.read_after(scanned, _HISTORY_PAGE, until=until)
                for alert in batch.alerts:
                    if matches(alert, request.filter):
                        yield alert
                scanned = batch.last
                if batch.exhausted:
                    return

        try:
            if not after:  # new alerts only: live from the hub's position
                after = self._hub.register(sub)
                registered = True
            await context.send_initial_metadata(
                ((START_CURSOR_KEY, after), (ACKED_CURSOR_KEY, acked))
            )
            delivered = scanned = after
            if not registered:
                # History first, without a live queue (a long replay must not overflow it) ...
                async for alert in history(until=""):
                    yield alert
                    delivered = alert.cursor
                # ... then join the live feed and read what arrived in the meantime.
                position = self._hub.register(sub)
                registered = True
                if cursor_after(position, scanned):
                    async for alert in history(until=position):
                        yield alert
                        delivered = alert.cursor
                # The hub may lag behind what history already gave: skip up to the later one.
                after = position if cursor_after(position, scanned) else scanned
            while True:
                try:
                    alert = await sub.next()
                except Overflowed:
                    raise ResourceExhausted(
                        f"subscriber {request.subscriber_id} fell more than "
                        f"{sub.capacity} alerts behind and was cut off; resume from cursor "
                        f"{delivered}",
                        reason="SUBSCRIBER_TOO_SLOW",
                    ) from None
                if cursor_after(alert.cursor, after):  # never twice, never backwards
                    yield alert
                    delivered = after = alert.cursor
        finally:
            if registered:
                self._hub.unregister(sub)

    async def Ack(self, request: alert_pb2.AckRequest, context: Any) -> alert_pb2.AckResponse:
        _require_id(request.subscriber_id, "subscriber_id")
        _require_id(request.alert_id, "alert_id")
        cursor = await self._store.ack(
            request.subscriber_id, request.alert_id, int(self._clock() * 1000)
        )
        if cursor is None:
            raise NotFound(f"alert {request.alert_id} not found")
        return alert_pb2.AckResponse()

    # --- Alerts ---------------------------------------------------------------------------

    async def Adjudicate(
        self, request: alert_pb2.AdjudicateRequest, context: Any
    ) -> alert_pb2.Alert:
        _require_id(request.alert_id, "alert_id")
        _require_id(request.officer_id, "officer_id")
        if request.decision not in STATE_BY_DECISION:
            raise InvalidArgument("decision must be DECISION_CONFIRM or DECISION_REJECT")
        if len(request.reason) > MAX_REASON_CHARS:
            raise InvalidArgument(f"reason must be at most {MAX_REASON_CHARS} characters")
        adjudication = alert_pb2.Adjudication(
            officer_id=request.officer_id,
            decision=request.decision,
            reason=request.reason,
            decided_at=ms_timestamp(int(self._clock() * 1000)),
        )
        audit = self.audit.entry(
            ALERT_ADJUDICATED,
            request.officer_id,
            {
                "alert_id": request.alert_id,
                "officer_id": request.officer_id,
                "decision": decision_name(request.decision),
                "reason": request.reason,
            },
        )
        return await self._store.adjudicate(
            request.alert_id, adjudication, STATE_BY_DECISION[request.decision], audit
        )

    async def GetAlert(self, request: alert_pb2.GetAlertRequest, context: Any) -> alert_pb2.Alert:
        _require_id(request.alert_id, "alert_id")
        alert = await self._store.get(request.alert_id)
        if alert is None:
            raise NotFound(
                f"alert {request.alert_id} not found (never raised, or deleted by retention)"
            )
        return alert

    async def ListAlerts(
        self, request: alert_pb2.ListAlertsRequest, context: Any
    ) -> alert_pb2.ListAlertsResponse:
        """Newest first. A page may be short when the filter skips many alerts; continue with
        ``next_page_token`` until it is empty."""
        validate_filter(request.filter)
        if request.state not in alert_pb2.AlertState.values():
            raise InvalidArgument(f"state {request.state} is not an alert state")
        position = normalise_cursor(request.page_token) if request.page_token else ""
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        out: list[alert_pb2.Alert] = []
        scanned = 0
        while scanned < MAX_LIST_SCAN:
            batch = await self._store.read_before(position, max(size - len(out), 50))
            scanned += 1 + len(batch.alerts)
            for alert in batch.alerts:
                if matches(alert, request.filter) and (
                    not request.state or alert.state == request.state
                ):
                    out.append(alert)
                    if len(out) == size:
                        return alert_pb2.ListAlertsResponse(
                            alerts=out, next_page_token=alert.cursor
                        )
            position = batch.last
            if batch.exhausted:
                return alert_pb2.ListAlertsResponse(alerts=out)
        return alert_pb2.ListAlertsResponse(alerts=out, next_page_token=position)

    async def SetLegalHold(
        self, request: alert_pb2.SetLegalHoldRequest, context: Any
    ) -> alert_pb2.Alert:
        _require_id(request.alert_id, "alert_id")
        _require_id(request.officer_id, "officer_id")
        if not request.reason or len(request.reason) > MAX_REASON_CHARS:
            raise InvalidArgument(
                f"reason is required (the legal basis), at most {MAX_REASON_CHARS} characters"
            )
        audit = self.audit.entry(
            ALERT_LEGAL_HOLD,
            request.officer_id,
            {
                "alert_id": request.alert_id,
                "legal_hold": "true" if request.legal_hold else "false",
                "officer_id": request.officer_id,
                "reason": request.reason,
            },
        )
        alert, _changed = await self._store.set_legal_hold(
            request.alert_id, request.legal_hold, audit
        )
        return alert

    # --- Audit ----------------------------------------------------------------------------

    async def AppendAudit(
        self, request: alert_pb2.AppendAuditRequest, context: Any
    ) -> alert_pb2.AuditRecord:
        return await self.audit.append(request.action, request.actor, dict(request.details))

    async def GetAuditLog(
        self, request: alert_pb2.GetAuditLogRequest, context: Any
    ) -> alert_pb2.GetAuditLogResponse:
        records, token = await self.audit.page(
            action_prefix=request.action_prefix,
            since_ms=_ms(request.since),
            until_ms=_ms(request.until),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return alert_pb2.GetAuditLogResponse(records=records, next_page_token=token)

    async def VerifyAuditLog(
        self, request: alert_pb2.VerifyAuditLogRequest, context: Any
    ) -> alert_pb2.VerifyAuditLogResponse:
        result = await self.audit.verify()
        if not result.ok:
            log.error(
                "audit log verification failed",
                seq=result.first_broken_seq,
                record_id=result.first_broken_record_id,
                problem=result.problem,
            )
        return result.to_proto()
