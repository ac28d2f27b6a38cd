"""The evaluation run against fakes of its three adapters (enrolment, face models, KNN).

Fake "images" are bytes that say what they show: ``face:<who>:<variant>`` one face of ``who``,
``noface``, ``two:<who>`` (``who`` large plus a small stranger), ``tiny:<who>`` (a 20 px face),
``garbage`` (undecodable).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from lfr.common.errors import DeadlineExceeded, InvalidArgument, LfrError, Unavailable
from lfr.inference import DetectedFace, FaceDetection, FaceQuality, Float32Array, UInt8Array
from lfr_cli.evaluate.dataset import Dataset, load_dataset
from lfr_cli.evaluate.metrics import operating_point
from lfr_cli.evaluate.run import Candidate, EvaluationRun, RunOptions, run_evaluation

DIM = 128


def _unit(v: Float32Array) -> Float32Array:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _vector(seed_text: str) -> Float32Array:
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    return _unit(rng.normal(size=DIM).astype(np.float32))


def identity_embedding(who: str, variant: str) -> Float32Array:
    # Same person: cosine ~0.99 between variants; different people: ~0 +- 0.1.
    return _unit(_vector(who) + np.float32(0.1) * _vector(f"{who}/{variant}"))


def _face(embedding: Float32Array, size: float) -> DetectedFace:
    return DetectedFace(
        box=(0.0, 0.0, size, size),
        landmarks=np.zeros((5, 2), np.float32),
        quality=FaceQuality(size_px=size, blur=200.0, yaw=0.0, detector_score=1.0),
        embedding=embedding,
        chip=np.zeros((150, 150, 3), np.uint8),
    )


def faces_in(image: bytes) -> list[DetectedFace]:
    text = image.decode(errors="replace")
    kind, _, rest = text.partition(":")
    if kind == "face":
        who, _, variant = rest.partition(":")
        return [_face(identity_embedding(who, variant), 120)]
    if kind == "two":
        return [_face(_vector("bystander"), 50), _face(identity_embedding(rest, "x"), 120)]
    if kind == "tiny":
        return [_face(identity_embedding(rest, "tiny"), 20)]
    if kind == "noface":
        return []
    raise InvalidArgument("cannot decode the image", reason="BAD_IMAGE")


class FakeAnalyzer:
    def __init__(self) -> None:
        self.calls = 0
        self.fail_with: LfrError | None = None
        self.fail_after = 0
        self.deadline_once = False

    async def analyze(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[DetectedFace]:
        assert isinstance(image, bytes) and timeout_s is not None
        self.calls += 1
        if self.fail_with is not None and self.calls > self.fail_after:
            raise self.fail_with
        if self.deadline_once:
            self.deadline_once = False
            raise DeadlineExceeded("slow")
        return faces_in(image)

    async def detect(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[FaceDetection]:
        raise NotImplementedError

    async def embed_chips(
        self, chips: UInt8Array, *, timeout_s: float | None = None
    ) -> Float32Array:
        raise NotImplementedError

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass


class FakeEnroller:
    """Refuses images the way the watchlist service does; keeps entries in memory."""

    def __init__(self) -> None:
        self.entries: dict[str, Float32Array] = {}
        self.subjects: dict[str, str] = {}
        self.removed: list[str] = []
        self.watchlists: list[str] = []
        self.refuse_with: LfrError | None = None

    async def create_watchlist(self, *, name: str, description: str) -> str:
        assert "EVALUATION" in description
        self.watchlists.append(name)
        return f"wl-{len(self.watchlists)}"

    async def enrol(self, watchlist_id: str, image: bytes, *, identity: str, source: str) -> str:
        if self.refuse_with is not None:
            raise self.refuse_with
        faces = faces_in(image)  # BAD_IMAGE raises here
        if not faces:
            raise InvalidArgument(f"{source}: no face", reason="NO_FACE")
        if len(faces) > 1:
            raise InvalidArgument(f"{source}: {len(faces)} faces", reason="MULTIPLE_FACES")
        if faces[0].quality.size_px < 80:
            raise InvalidArgument(f"{source}: face too small", reason="FACE_TOO_SMALL")
        entry_id = f"e{len(self.entries) + len(self.removed)}"
        self.entries[entry_id] = faces[0].embedding
        self.subjects[entry_id] = identity
        return entry_id

    async def remove_entry(self, watchlist_id: str, entry_id: str) -> None:
        del self.entries[entry_id]
        self.removed.append(entry_id)

    async def close(self) -> None:
        pass


class FakeSearch:
    def __init__(self, enroller: FakeEnroller) -> None:
        self.enroller = enroller
        self.prepared = False
        self.ks: list[int] = []

    async def prepare(self) -> None:
        self.prepared = True

    async def search(self, watchlist_id: str, embedding: Float32Array, k: int) -> list[Candidate]:
        assert self.prepared
        self.ks.append(k)
        found = [
            Candidate(entry_id, float(np.dot(vector, embedding)))
            for entry_id, vector in self.enroller.entries.items()
        ]
        return sorted(found, key=lambda c: c.score, reverse=True)[:k]

    async def close(self) -> None:
        pass


def write_images(root: Path, images: dict[str, bytes]) -> None:
    for name, data in images.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


MIXED = {
    "people/Ann/1.jpg": b"face:Ann:1",
    "people/Ann/2.jpg": b"face:Ann:2",
    "people/Ann/3.jpg": b"face:Ann:3",
    "people/Bob/1.jpg": b"noface",  # enrolment falls back to the next photo
    "people/Bob/2.jpg": b"face:Bob:2",
    "people/Bob/3.jpg": b"face:Bob:3",
    "people/Cat/1.jpg": b"garbage",
    "people/Cat/2.jpg": b"face:Cat:2",  # enrolled; nothing left to probe
    "people/Dan/1.jpg": b"noface",  # never enrolled
    "distractors/Eve.jpg": b"face:Eve:1",
    "distractors/Fay.jpg": b"noface",
    "distractors/Gus.jpg": b"garbage",
    "distractors/Hal.jpg": b"two:Hal",
    "distractors/Ian.jpg": b"tiny:Ian",
}


@pytest.fixture
def mixed(tmp_path: Path) -> Dataset:
    write_images(tmp_path, MIXED)
    return load_dataset(tmp_path)


async def evaluate(
    dataset: Dataset, options: RunOptions | None = None
) -> tuple[EvaluationRun, FakeEnroller, FakeAnalyzer, FakeSearch]:
    enroller = FakeEnroller()
    analyzer = FakeAnalyzer()
    search = FakeSearch(enroller)
    run = await run_evaluation(
        dataset, enroller=enroller, analyzer=analyzer, search=search, options=options
    )
    return run, enroller, analyzer, search


async def test_mixed_folder_outcomes(mixed: Dataset) -> None:
    run, enroller, _, search = await evaluate(mixed)

    assert sorted(run.enrolled.values()) == ["Ann", "Bob", "Cat"]
    assert run.enrolment_photos == {
        "Ann": "people/Ann/1.jpg",
        "Bob": "people/Bob/2.jpg",
        "Cat": "people/Cat/2.jpg",
    }
    assert run.not_enrolled == ["Dan"]
    # Mated: Ann 2, 3 and Bob 3; non-mated: Eve and Hal (largest face of two).
    searched = {(p.path, p.mated) for p in run.probes}
    assert searched == {
        ("people/Ann/2.jpg", True),
        ("people/Ann/3.jpg", True),
        ("people/Bob/3.jpg", True),
        ("distractors/Eve.jpg", False),
        ("distractors/Hal.jpg", False),
    }
    for probe in run.probes:
        assert probe.top_score is not None
        if probe.mated:
            assert probe.top_identity == probe.identity and probe.top_score > 0.8
        else:
            assert probe.top_score < 0.5
    assert run.several_faces_used == ["distractors/Hal.jpg"]
    assert {(p.path, p.role.value, p.reason) for p in run.no_usable_face} == {
        ("people/Bob/1.jpg", "enrolment", "NO_FACE"),
        ("people/Dan/1.jpg", "enrolment", "NO_FACE"),
        ("distractors/Fay.jpg", "non-mated probe", "NO_FACE"),
        ("distractors/Ian.jpg", "non-mated probe", "FACE_TOO_SMALL"),
    }
    assert {(p.path, p.reason) for p in run.failures} == {
        ("people/Cat/1.jpg", "BAD_IMAGE"),
        ("distractors/Gus.jpg", "BAD_IMAGE"),
    }
    # Every search asked for min(top_k, gallery) candidates, and the entries are gone.
    assert set(search.ks) == {3}
    assert enroller.entries == {} and run.entries_removed == 3
    # Each searched probe's impostor comparisons: the rest of the gallery.
    assert [s.impostor_comparisons for s in run.searches] == [2, 2, 2, 3, 3]


async def test_metrics_of_the_mixed_run(mixed: Dataset) -> None:

    run, *_ = await evaluate(mixed)
    p = operating_point(run.searches, 0.8)
    assert (p.mated, p.nonmated, p.true_positives, p.false_positives) == (3, 2, 3, 0)
    assert p.tpir == 1.0 and p.fpir == 0.0


async def test_skip_policy_reports_several_faces(mixed: Dataset) -> None:

    run, *_ = await evaluate(mixed, RunOptions(multi_face="skip"))
    assert ("distractors/Hal.jpg", "MULTIPLE_FACES") in {
        (p.path, p.reason) for p in run.no_usable_face
    }
    assert run.several_faces_used == []


async def test_keep_entries(mixed: Dataset) -> None:
    _, enroller, _, _ = await evaluate(mixed, RunOptions(remove_entries=False))
    assert len(enroller.entries) == 3 and enroller.removed == []


async def test_a_file_that_cannot_be_read_is_a_failure(tmp_path: Path) -> None:
    write_images(tmp_path, {"people/Ann/1.jpg": b"face:Ann:1", "people/Ann/2.jpg": b"face:Ann:2"})
    write_images(tmp_path, {"people/Ann/3.jpg": b"face:Ann:3", "distractors/Eve.jpg": b""})
    dataset = load_dataset(tmp_path)
    (tmp_path / "people/Ann/3.jpg").unlink()  # vanished between listing and reading
    run, *_ = await evaluate(dataset)

    assert {(p.path, p.reason) for p in run.failures} == {
        ("people/Ann/3.jpg", "UNREADABLE"),
        ("distractors/Eve.jpg", "EMPTY_IMAGE"),
    }
    assert [p.path for p in run.probes] == ["people/Ann/2.jpg"]


async def test_a_service_outage_stops_the_run_and_entries_are_still_removed(
    mixed: Dataset,
) -> None:
    enroller = FakeEnroller()
    analyzer = FakeAnalyzer()
    analyzer.fail_with = Unavailable("triton down")
    analyzer.fail_after = 1
    with pytest.raises(Unavailable, match="triton down"):  # not an ExceptionGroup
        await run_evaluation(
            mixed,
            enroller=enroller,
            analyzer=analyzer,
            search=FakeSearch(enroller),
            options=RunOptions(concurrency=2),
        )
    assert enroller.entries == {} and len(enroller.removed) == 3


async def test_a_refusal_that_is_not_about_the_image_stops_the_run(mixed: Dataset) -> None:
    enroller = FakeEnroller()
    enroller.refuse_with = InvalidArgument("governance.expires_at too far", reason="INVALID_FIELD")
    with pytest.raises(InvalidArgument, match="expires_at"):
        await run_evaluation(
            mixed, enroller=enroller, analyzer=FakeAnalyzer(), search=FakeSearch(enroller)
        )


async def test_a_deadline_is_retried_once(mixed: Dataset) -> None:
    enroller = FakeEnroller()
    analyzer = FakeAnalyzer()
    analyzer.deadline_once = True
    run = await run_evaluation(
        mixed, enroller=enroller, analyzer=analyzer, search=FakeSearch(enroller)
    )
    assert len(run.probes) == 5
    assert not [p for p in run.problems if p.reason == "DEADLINE_EXCEEDED"]


async def test_nothing_enrolled_is_an_error(tmp_path: Path) -> None:
    write_images(tmp_path, {"people/Ann/1.jpg": b"noface", "people/Ann/2.jpg": b"garbage"})
    with pytest.raises(InvalidArgument, match="no identity could be enrolled"):
        await evaluate(load_dataset(tmp_path))
