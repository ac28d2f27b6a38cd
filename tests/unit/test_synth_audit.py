"""Counting a run's audit records: faces seen per camera, alerts per deployment, decisions."""

from __future__ import annotations

from lfr.common import audit
from lfr.v1 import alert_pb2
from lfr_cli.synth.audit import summarise_audit


def record(action: str, **details: str) -> alert_pb2.AuditRecord:
    return alert_pb2.AuditRecord(action=action, actor="test", details=details)


def test_summary_counts_only_what_concerns_the_run() -> None:
    records = [
        record(audit.DEPLOYMENT_STARTED, deployment_id="d1"),
        record(audit.FACES_SEEN, camera_id="cam-1", faces_seen="7", frames_processed="20"),
        record(audit.FACES_SEEN, camera_id="cam-1", faces_seen="3", frames_processed="9"),
        record(audit.FACES_SEEN, camera_id="other", faces_seen="100", frames_processed="100"),
        record(audit.FACES_SEEN, camera_id="cam-1", faces_seen="garbled"),
        record(audit.ALERT_RAISED, deployment_id="d1", alert_id="a1"),
        record(audit.ALERT_RAISED, deployment_id="d2", alert_id="a2"),
        record(audit.ALERT_ADJUDICATED, alert_id="a1", decision="CONFIRM"),
        record(audit.ALERT_ADJUDICATED, alert_id="a3", decision="REJECT"),
    ]
    summary = summarise_audit(records, camera_ids=["cam-1"], deployment_id="d1")
    assert (summary.faces_seen, summary.frames_processed) == (10, 29)
    assert summary.alerts_raised == 1
    assert summary.decisions == {"CONFIRM": 1, "REJECT": 1}
    assert summary.records == 9 and summary.actions[audit.FACES_SEEN] == 4
    text = "\n".join(summary.lines())
    assert "faces seen        10 (in 29 frames)" in text
    assert "decisions         2 (confirm 1, reject 1)" in text

    everything = summarise_audit(records)
    assert (everything.faces_seen, everything.alerts_raised) == (110, 2)
