"""End to end: the synthetic harness drives all four services (real processes), the real Triton
and a real Redis. Grace Hopper is on the watch list and walks past twice; the astronaut and the
cameraman walk past once each.

* Hopper raises exactly one alert per pass, the strangers none (alert cool-down 5 s: shorter
  than the gap between Hopper's passes, longer than a pass).
* Privacy (DESIGN §1, invariant 2) holds for the whole run: Redis holds only watch-list,
  deployment, alert (matches only) and audit keys, and neither they, the AOF, SLOWLOG (every
  command logged), Redis' log nor any service log (debug level) holds a vector computed from a
  frame, or a stranger's face crop; no service writes a file besides its log.

Every face's embedding and crop is recomputed here from the exact bytes pushed (ingest hands
them to Triton as they are, and the models are deterministic), and positive controls show the
same search finds Hopper's enrolment vector and her alert's crop, where they must be.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from lfr.common.channels import open_channel
from lfr.inference import TritonFaceAnalyzer
from lfr.v1 import (
    alert_pb2,
    alert_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
)
from lfr_cli.synth.audit import AuditSummary, fetch_audit, summarise_audit
from lfr_cli.synth.driver import DriveOptions, SynthDriver, encode_frame
from lfr_cli.synth.harness import operator
from lfr_cli.synth.photos import load_sample_identities
from lfr_cli.synth.record import RunRecord
from lfr_cli.synth.report import Report, compute_report, format_report
from lfr_cli.synth.scene import Renderer, StreamConfig, walk_past
from lfr_cli.synth.truth import GroundTruth, iou
from tests.e2e.conftest import Suite
from tests.integration.match_support import LeakDetector

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HOPPER = "grace_hopper"
WALKERS = (HOPPER, "astronaut", "cameraman", HOPPER)
#: Keys the suite may hold: watch lists and their entries, deployments, cameras, the watchlist's
#: audit outbox, alerts (matches only) and the audit log. Nothing else — no probe, no temp key.
ALLOWED_KEY = re.compile(rb"^lfr:(wl|wls|dep|deps|cameras|watchlist|alert|audit)(:|$)")


@dataclass
class Face:
    identity: str | None  #: per the ground truth (None: the detector found a non-face)
    embedding: np.ndarray[Any, np.dtype[np.float32]]
    crop: bytes  #: JPEG of the chip, as ingest encodes a probe's crop

    @property
    def crop_sample(self) -> bytes:
        """64 bytes from the middle of the crop's compressed pixels (its headers are the same in
        every JPEG of that quality, so they would prove nothing)."""
        start = self.crop.index(b"\xff\xda")
        start += 2 + int.from_bytes(self.crop[start + 2 : start + 4], "big")
        middle = (start + len(self.crop)) // 2
        return self.crop[middle : middle + 64]


@dataclass
class Run:
    truth: GroundTruth
    record: RunRecord
    report: Report
    faces: list[Face]
    enrolment_vector: np.ndarray[Any, np.dtype[np.float32]]
    match_stats: match_pb2.MatchStats
    audit: AuditSummary
    audit_verified: alert_pb2.VerifyAuditLogResponse
    ingest_faces_detected: int
    keys: dict[bytes, bytes]  #: every key → its content, flattened
    aof: bytes
    slowlog: bytes
    redis_log: bytes
    logs: dict[str, bytes]
    open_for_writing: dict[str, set[str]]
    workdir_files: dict[str, list[str]]
    tmpdir_files: dict[str, list[str]]


def _key_content(client: Any, key: bytes) -> bytes:
    """A key's content, whatever its type, as one blob (``client``: redis-py, bytes replies)."""
    kind = client.type(key)
    parts: list[bytes] = []
    if kind == b"string":
        parts.append(client.get(key) or b"")
    elif kind == b"hash":
        for field, value in client.hgetall(key).items():
            parts += [field, value]
    elif kind == b"list":
        parts += client.lrange(key, 0, -1)
    elif kind == b"set":
        parts += sorted(client.smembers(key))
    elif kind == b"zset":
        parts += client.zrange(key, 0, -1)
    elif kind == b"stream":
        for _id, fields in client.xrange(key):
            for field, value in fields.items():
                parts += [field, value]
    else:
        parts.append(client.dump(key) or b"")
    return b"\x00".join(parts)


def _open_for_writing(pid: int) -> set[str]:
    """Regular files the process holds open for writing."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except FileNotFoundError:
            continue
        flags = int(
            next(line.split()[1] for line in info.splitlines() if line.startswith("flags:")), 8
        )
        if target.startswith("/") and not target.startswith("/dev/") and flags & 0o3:
            found.add(target)
    return found


async def _faces_of_the_run(
    suite: Suite, renderer: Renderer, truth: GroundTruth
) -> tuple[list[Face], np.ndarray[Any, np.dtype[np.float32]]]:
    """Every face of every frame that held one, as ingest's Triton call saw it; and Hopper's
    enrolment vector, as the watchlist service's did."""
    analyzer = TritonFaceAnalyzer(suite.triton.url, timeout_s=60.0)
    faces: list[Face] = []
    try:
        hopper_photo = load_sample_identities([HOPPER])[0].photos[0]
        (enrolled,) = await analyzer.analyze(hopper_photo.encoded())
        for cam in truth.camera_ids:
            for frame, truths in enumerate(truth.frames[cam]):
                if not truths:
                    continue
                data = encode_frame(renderer.render(cam, frame))
                for face in await analyzer.analyze(data):
                    best = max(truths, key=lambda t: iou(t.box, face.box))
                    identity = best.identity if iou(best.box, face.box) >= 0.3 else None
                    ok, crop = cv2.imencode(
                        ".jpg",
                        np.ascontiguousarray(face.chip[:, :, ::-1]),
                        [cv2.IMWRITE_JPEG_QUALITY, 90],
                    )
                    assert ok
                    faces.append(Face(identity, face.embedding, bytes(crop)))
    finally:
        await analyzer.close()
    return faces, enrolled.embedding


async def _drive(suite: Suite, renderer: Renderer, truth: GroundTruth) -> RunRecord:
    hopper = load_sample_identities([HOPPER])[0]
    driver = SynthDriver(
        suite.endpoints,
        renderer,
        {HOPPER: list(hopper.photos)},
        # Keep the entry: its vector in Redis is the positive control of the leak search.
        DriveOptions(settle_s=8.0, cleanup=False, actor="lfr-e2e"),
    )
    driver.decide = operator(truth, lambda: driver.record)
    return await driver.run()


async def _services_view(
    suite: Suite, record: RunRecord
) -> tuple[match_pb2.MatchStats, AuditSummary, alert_pb2.VerifyAuditLogResponse, int]:
    channels = [open_channel(suite.services[n].addr) for n in ("match", "alert", "ingest")]
    try:
        match = match_pb2_grpc.MatchServiceStub(channels[0])
        alerts = alert_pb2_grpc.AlertServiceStub(channels[1])
        ingest = ingest_pb2_grpc.IngestServiceStub(channels[2])
        stats = await match.GetStats(match_pb2.GetMatchStatsRequest(), timeout=10)
        cams = await ingest.GetStats(ingest_pb2.GetIngestStatsRequest(), timeout=10)
        detected = sum(c.faces_detected for c in cams.cameras if c.camera_id in record.camera_ids)
        # Ingest writes faces-seen counts every 2 s: wait until they account for every face.
        summary = AuditSummary()
        for _ in range(40):
            records = await fetch_audit(alerts)
            summary = summarise_audit(
                records, camera_ids=record.camera_ids, deployment_id=record.deployment_id
            )
            if summary.faces_seen >= detected:
                break
            await asyncio.sleep(0.5)
        verified = await alerts.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest(), timeout=30)
        return stats, summary, verified, detected
    finally:
        for channel in channels:
            await channel.close(None)


@pytest.fixture(scope="module")
def run(suite: Suite) -> Iterator[Run]:
    identities = load_sample_identities()
    config = StreamConfig(
        width=480,
        height=270,
        fps=3.0,
        camera_prefix="e2e-cam-",
        face_px=(64.0, 96.0),
        blur_sigma=(0.0, 0.6),
        seed=11,
    )
    scenario = walk_past(WALKERS, config, pass_s=3.0, gap_s=1.5)
    renderer = Renderer(scenario, identities)
    truth = GroundTruth.from_scenario(scenario, renderer)

    record = asyncio.run(_drive(suite, renderer, truth))
    report = compute_report(truth, record)
    print(format_report(report))
    match_stats, audit, verified, detected = asyncio.run(_services_view(suite, record))
    open_for_writing = {
        name: _open_for_writing(s.pid) for name, s in suite.services.items() if s.pid
    }

    # Stop the services first, so their logs hold everything up to their shutdown.
    for name in reversed(list(suite.services)):
        suite.services[name].terminate()
    with suite.redis.client() as client:
        keys = {key: _key_content(client, key) for key in client.scan_iter(count=1000)}
        slowlog = b"\n".join(b" ".join(e["command"].split()) for e in client.slowlog_get(100_000))
    faces, enrolment_vector = asyncio.run(_faces_of_the_run(suite, renderer, truth))
    yield Run(
        truth=truth,
        record=record,
        report=report,
        faces=faces,
        enrolment_vector=enrolment_vector,
        match_stats=match_stats,
        audit=audit,
        audit_verified=verified,
        ingest_faces_detected=detected,
        keys=keys,
        aof=suite.redis.aof_bytes(),
        slowlog=slowlog,
        redis_log=suite.redis.log_text().encode(),
        logs={n: s.log_path.read_bytes() for n, s in suite.services.items()},
        open_for_writing=open_for_writing,
        workdir_files={n: sorted(p.name for p in d.iterdir()) for n, d in suite.workdirs.items()},
        tmpdir_files={n: sorted(p.name for p in d.iterdir()) for n, d in suite.tmpdirs.items()},
    )


# -- what the harness saw ---------------------------------------------------------------------


def test_every_frame_was_processed(run: Run) -> None:
    frames = run.record.frames
    assert len(frames) == run.truth.frame_count("e2e-cam-1")
    assert {f.status for f in frames} == {"PROCESSED"}  # no sampling, a deep queue: all of them
    assert run.report.frames_processed == len(frames)
    assert sum(f.faces_found for f in frames) == run.ingest_faces_detected > 0


def test_enrolled_subject_raises_exactly_one_alert_per_pass(run: Run) -> None:
    hopper_passes = [p for p in run.report.passes if p.identity == HOPPER]
    assert len(hopper_passes) == 2
    assert [len(p.alert_ids) for p in hopper_passes] == [1, 1]
    assert run.report.true_alerts == 2 and run.report.duplicate_alerts == 0
    for alert in run.record.alerts:
        assert alert.identity == HOPPER and alert.score >= run.record.threshold
        assert alert.decision == "CONFIRM"  # the simulated operator agreed, and it was recorded
        assert 0 < alert.latency_ms < 10_000


def test_strangers_raise_none(run: Run) -> None:
    strangers = [p for p in run.report.passes if p.identity != HOPPER]
    assert [p.identity for p in strangers] == ["astronaut", "cameraman"]
    assert all(not p.alert_ids for p in strangers)
    assert run.report.false_alerts == 0
    assert all(a.on_screen == HOPPER for a in run.report.alerts)
    # Not vacuous: match did see probes that matched nobody (the astronaut at least).
    assert run.match_stats.non_matches >= 1
    assert run.match_stats.matches >= 2
    assert any(f.identity == "astronaut" for f in run.faces)


def test_audit_log_counts_faces_alerts_and_decisions(run: Run) -> None:
    assert run.audit_verified.ok, run.audit_verified.problem
    assert run.audit.faces_seen == run.ingest_faces_detected > 0
    assert run.audit.alerts_raised == 2
    assert run.audit.decisions == {"CONFIRM": 2}
    for action in ("deployment.authorised", "deployment.started", "entry.enrolled"):
        assert run.audit.actions[action] >= 1, action


# -- privacy: non-matches leave no trace --------------------------------------------------------


@pytest.fixture(scope="module")
def frame_vectors(run: Run) -> LeakDetector:
    """Every embedding computed from a frame (strangers', and Hopper's probes too: no vector
    of a frame is ever stored; only enrolment vectors are)."""
    assert len(run.faces) >= 10
    return LeakDetector(np.stack([f.embedding for f in run.faces]))


def test_the_searches_find_what_must_be_there(run: Run) -> None:
    everything = b"\x00".join(run.keys.values())
    assert LeakDetector(run.enrolment_vector[None, :]).in_bytes(everything) > 0
    hopper_crops = [f.crop_sample for f in run.faces if f.identity == HOPPER]
    assert any(crop in everything for crop in hopper_crops), "no alert crop found in Redis"


def test_redis_holds_only_allowed_keys(run: Run) -> None:
    unexpected = [k for k in run.keys if not ALLOWED_KEY.match(k)]
    assert unexpected == []
    alert_hashes = {
        k.removeprefix(b"lfr:alert:a:").decode()
        for k in run.keys
        if k.startswith(b"lfr:alert:a:") and not k.endswith(b":events")
    }
    assert alert_hashes == {a.alert_id for a in run.record.alerts}  # matches only
    assert not [k for k in run.keys if b":image:" in k]  # enrolment photos not kept


def test_redis_aof_and_slowlog_hold_no_probe_data(run: Run, frame_vectors: LeakDetector) -> None:
    everything = b"\x00".join(run.keys.values())
    assert run.slowlog, "SLOWLOG logged nothing: the check would be empty"
    for name, blob in (
        ("keys", everything),
        ("aof", run.aof),
        ("slowlog", run.slowlog),
        ("redis log", run.redis_log),
    ):
        assert frame_vectors.anywhere(blob) == [], name
        stranger_crops = [f.crop_sample for f in run.faces if f.identity != HOPPER]
        assert not any(crop in blob for crop in stranger_crops), name


def test_service_logs_hold_no_probe_data(run: Run, frame_vectors: LeakDetector) -> None:
    for name, log in run.logs.items():
        assert len(log.splitlines()) > 5, f"{name} logged almost nothing"
        assert frame_vectors.anywhere(log) == [], name
        for face in run.faces:
            if face.identity != HOPPER:
                assert face.crop_sample not in log, name


def test_services_write_no_files_besides_their_logs(run: Run, suite: Suite) -> None:
    for name, service in suite.services.items():
        assert run.workdir_files[name] == [service.log_path.name], name
        assert run.tmpdir_files[name] == [], name
        assert run.open_for_writing[name] <= {str(service.log_path)}, name
