"""The tracker: one track per person across frames, best shot, probe timing, re-probes."""

from __future__ import annotations

from lfr.inference.types import FaceQuality
from lfr_ingest.tracker import Tracker, TrackerConfig, displacement, iou
from tests.unit.ingest_fakes import face, person, walk

CFG = TrackerConfig(
    iou=0.3,
    max_displacement=1.5,
    min_similarity=0.8,
    ttl_s=1.0,
    best_shot_window_s=0.4,
    reprobe_interval_s=5.0,
    max_tracks=8,
)


def test_geometry() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9
    assert displacement((0, 0, 10, 10), (20, 0, 30, 10)) == 2.0


def test_a_walking_person_is_one_track() -> None:
    tracker = Tracker(CFG)
    alice = person(1)
    for i, box in enumerate(walk((0, 0), (30, 5), 10)):
        tracks, _ = tracker.update([face(box, alice, seed=i)], [True], i * 0.2)
        assert tracks[0].track_id == 1
    assert tracker.started == 1 and tracker.tracks[1].frames == 10


def test_a_big_jump_continues_only_when_the_embedding_agrees() -> None:
    tracker = Tracker(CFG)
    alice, bob = person(1), person(2)
    tracker.update([face((0, 0, 100, 100), alice)], [True], 0.0)
    # 120 px: no overlap, 1.2 face widths: continues for the same person...
    tracks, _ = tracker.update([face((120, 0, 220, 100), alice, seed=1)], [True], 0.2)
    assert tracks[0].track_id == 1
    # ...but a different person there starts a new track.
    tracks, _ = tracker.update([face((240, 0, 340, 100), bob)], [True], 0.4)
    assert tracks[0].track_id == 2
    # Too far even for the same person.
    tracks, _ = tracker.update([face((1000, 0, 1100, 100), alice, seed=2)], [True], 0.6)
    assert tracks[0].track_id == 3


def test_two_people_crossing_keep_their_tracks() -> None:
    tracker = Tracker(CFG)
    alice, bob = person(1), person(2)
    a_path = walk((0, 0), (60, 0), 8)
    b_path = walk((420, 10), (-60, 0), 8)
    ids: dict[str, set[int]] = {"alice": set(), "bob": set()}
    for i in range(8):
        faces = [face(a_path[i], alice, seed=i), face(b_path[i], bob, seed=100 + i)]
        tracks, _ = tracker.update(faces, [True, True], i * 0.2)
        ids["alice"].add(tracks[0].track_id)
        ids["bob"].add(tracks[1].track_id)
    assert ids == {"alice": {1}, "bob": {2}}


def test_position_only_when_similarity_is_off() -> None:
    tracker = Tracker(TrackerConfig(min_similarity=0.0, max_displacement=1.5))
    tracker.update([face((0, 0, 100, 100), person(1))], [True], 0.0)
    tracks, _ = tracker.update([face((120, 0, 220, 100), person(2))], [True], 0.2)
    assert tracks[0].track_id == 1


def test_tracks_end_after_the_ttl() -> None:
    tracker = Tracker(CFG)
    tracker.update([face((0, 0, 100, 100), person(1))], [True], 0.0)
    assert tracker.expire(0.9) == []
    lost = tracker.expire(1.01)
    assert [t.track_id for t in lost] == [1] and not tracker.tracks
    tracks, _ = tracker.update([face((0, 0, 100, 100), person(1))], [True], 1.1)
    assert tracks[0].track_id == 2


def test_best_shot_is_the_highest_quality_and_probe_waits_for_the_window() -> None:
    tracker = Tracker(CFG)
    alice = person(1)
    qualities = [
        FaceQuality(60, 80, 20, 0.5),
        FaceQuality(130, 250, 2, 1.5),  # the best
        FaceQuality(90, 120, 10, 1.0),
    ]
    best_chip = None
    for i, (q, box) in enumerate(zip(qualities, walk((0, 0), (10, 0), 3), strict=True)):
        f = face(box, alice, q, seed=i)
        if i == 1:
            best_chip = f.chip
        tracker.update([f], [True], i * 0.15)
        if i < 2:
            assert tracker.due(i * 0.15) == []  # window 0.4 s not over yet
    due = tracker.due(0.45)
    assert [t.track_id for t in due] == [1]
    shot = Tracker.take_shot(due[0])
    assert shot is not None and shot.chip is best_chip and shot.quality == qualities[1]
    assert due[0].best is None


def test_faces_failing_quality_are_tracked_but_never_probed() -> None:
    tracker = Tracker(CFG)
    for i, box in enumerate(walk((0, 0), (10, 0), 5)):
        tracker.update([face(box, person(1), seed=i)], [False], i * 0.2)
    assert tracker.started == 1
    assert tracker.due(1.0) == [] and tracker.tracks[1].best is None


def test_reprobe_after_the_interval_with_the_best_shot_since() -> None:
    tracker = Tracker(CFG)
    alice = person(1)
    t = 0.0
    tracker.update([face((0, 0, 100, 100), alice)], [True], t)
    track = tracker.tracks[1]
    t = 0.5
    tracker.update([face((5, 0, 105, 100), alice)], [True], t)
    assert tracker.due(t) == [track]
    Tracker.take_shot(track)
    Tracker.probed(track, t, matched=False)
    for i in range(1, 30):
        t = 0.5 + i * 0.2
        tracker.update([face((5 + i, 0, 105 + i, 100), alice, seed=i)], [True], t)
        due = tracker.due(t)
        if t - 0.5 < 5.0:
            assert due == []
        else:
            assert due == [track]
            break
    else:
        raise AssertionError("never re-probed")


def test_no_reprobe_once_matched_and_no_shots_kept() -> None:
    tracker = Tracker(CFG)
    tracker.update([face((0, 0, 100, 100), person(1))], [True], 0.0)
    track = tracker.tracks[1]
    Tracker.take_shot(track)
    Tracker.probed(track, 0.5, matched=True)
    for i in range(1, 40):
        tracker.update([face((i, 0, 100 + i, 100), person(1), seed=i)], [True], 0.5 + i * 0.2)
        assert track.best is None  # a matched track keeps no face data
    assert tracker.due(9.0) == []


def test_reprobe_interval_zero_means_once_per_track() -> None:
    tracker = Tracker(TrackerConfig(best_shot_window_s=0.0, reprobe_interval_s=0.0))
    tracker.update([face((0, 0, 100, 100), person(1))], [True], 0.0)
    track = tracker.tracks[1]
    assert tracker.due(0.0) == [track]
    Tracker.take_shot(track)
    Tracker.probed(track, 0.0, matched=False)
    for i in range(1, 50):
        tracker.update([face((i, 0, 100 + i, 100), person(1), seed=i)], [True], i * 0.5)
        assert tracker.due(i * 0.5) == []


def test_retry_later_keeps_the_better_shot() -> None:
    tracker = Tracker(CFG)
    tracker.update([face((0, 0, 100, 100), person(1), FaceQuality(60, 60, 20, 0.5))], [True], 0)
    track = tracker.tracks[1]
    shot = Tracker.take_shot(track)
    assert shot is not None
    tracker.update([face((1, 0, 101, 100), person(1), FaceQuality(150, 300, 0, 2.0))], [True], 1)
    better = track.best
    Tracker.retry_later(track, shot)
    assert track.best is better
    worse_gone = Tracker.take_shot(track)
    Tracker.retry_later(track, shot)
    assert track.best is shot and worse_gone is better


def test_max_tracks_evicts_the_stalest() -> None:
    tracker = Tracker(TrackerConfig(max_tracks=2, ttl_s=10))
    tracker.update([face((0, 0, 50, 50), person(1))], [True], 0.0)
    tracker.update([face((500, 0, 550, 50), person(2))], [True], 0.1)
    _, evicted = tracker.update([face((1000, 0, 1050, 50), person(3))], [True], 0.2)
    assert [t.track_id for t in evicted] == [1]
    assert sorted(tracker.tracks) == [2, 3]


def test_repr_shows_no_face_data() -> None:
    tracker = Tracker(CFG)
    tracker.update([face((0, 0, 100, 100), person(1))], [True], 0.0)
    text = repr(tracker.tracks[1])
    assert "embedding" not in text and "Shot(<face data not shown>)" not in text
    shot = tracker.tracks[1].best
    assert repr(shot) == "Shot(<face data not shown>)"


def test_overlap_with_a_clearly_different_face_starts_a_new_track() -> None:
    tracker = Tracker(CFG)
    tracker.update([face((0, 0, 100, 100), person(1))], [True], 0.0)
    tracks, _ = tracker.update([face((10, 0, 110, 100), person(2))], [True], 0.2)
    assert tracks[0].track_id == 2


def test_position_only_tracking_keeps_no_embedding() -> None:
    tracker = Tracker(TrackerConfig(min_similarity=0.0))
    tracker.update([face((0, 0, 100, 100), person(1))], [False], 0.0)
    assert tracker.tracks[1].embedding is None and tracker.tracks[1].best is None
