"""The evaluation run: enrol one photo per identity, search every other photo, keep the outcomes.

Enrolment goes through the watchlist service (``Enroller``); probes are analysed by the face
models (``lfr.inference.FaceAnalyzer``) and searched in the watch list's vector index
(``CandidateSearch``). All three are Protocols so the run is unit-tested with fakes; the real
adapters are in :mod:`lfr_cli.evaluate.adapters`.

Per-image trouble never stops the run: a file that cannot be read or decoded is a *failure*, an
image whose face is missing, ambiguous or too small has *no usable face*; both are listed with
their reason. Trouble that would hit every image (a service down, a refused request) stops it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal, Protocol, TypeVar

from lfr.common.errors import DeadlineExceeded, InvalidArgument, LfrError
from lfr.inference import DetectedFace, FaceAnalyzer, Float32Array
from lfr_cli.evaluate.dataset import Dataset, Photo, Subject
from lfr_cli.evaluate.metrics import Search

__all__ = [
    "NO_USABLE_FACE",
    "UNREADABLE",
    "Candidate",
    "CandidateSearch",
    "Enroller",
    "EvaluationRun",
    "ImageProblem",
    "MultiFacePolicy",
    "ProbeRecord",
    "Role",
    "RunOptions",
    "run_evaluation",
]

#: Reasons (as the watchlist service and the models name them) that mean "no usable face".
NO_USABLE_FACE: Final = frozenset({"NO_FACE", "MULTIPLE_FACES", "FACE_TOO_SMALL"})
#: Reasons that mean the file itself could not be used.
UNREADABLE: Final = frozenset({"UNREADABLE", "BAD_IMAGE", "EMPTY_IMAGE", "IMAGE_TOO_LARGE"})

MultiFacePolicy = Literal["largest", "skip"]


class Role(StrEnum):
    ENROLMENT = "enrolment"
    MATED = "mated probe"
    NONMATED = "non-mated probe"


@dataclass(frozen=True, slots=True)
class Candidate:
    entry_id: str
    score: float  #: lfr score scale (lfr.common.scores)


class Enroller(Protocol):
    """Creates the evaluation watch list and enrols into it (the watchlist service)."""

    async def create_watchlist(self, *, name: str, description: str) -> str:
        """Returns the new watch list's id."""
        ...

    async def enrol(self, watchlist_id: str, image: bytes, *, identity: str, source: str) -> str:
        """Enrols one image of ``identity``; returns the entry id. Raises ``LfrError`` whose
        ``reason`` is the service's (``NO_FACE``, ``MULTIPLE_FACES``, ``FACE_TOO_SMALL``,
        ``BAD_IMAGE`` ...)."""
        ...

    async def remove_entry(self, watchlist_id: str, entry_id: str) -> None: ...

    async def close(self) -> None: ...


class CandidateSearch(Protocol):
    """KNN over a watch list's vector index, nearest first, no threshold applied."""

    async def prepare(self) -> None:
        """Checks the index can be queried (raises ``Unavailable`` if not)."""
        ...

    async def search(
        self, watchlist_id: str, embedding: Float32Array, k: int
    ) -> list[Candidate]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ImageProblem:
    path: str  #: relative to the dataset folder
    role: Role
    reason: str  #: NO_FACE, MULTIPLE_FACES, FACE_TOO_SMALL, UNREADABLE, BAD_IMAGE, ...
    message: str

    @property
    def no_usable_face(self) -> bool:
        return self.reason in NO_USABLE_FACE

    def as_dict(self) -> dict[str, str]:
        return {
            "path": self.path,
            "role": str(self.role),
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One searched probe. Identities only: no embedding, no image data."""

    path: str
    identity: str
    mated: bool
    top_identity: str | None
    top_score: float | None
    faces_found: int


@dataclass(frozen=True, slots=True)
class RunOptions:
    #: Candidates asked of the KNN per search (rank 1 decides; the rest feed the FMR).
    top_k: int = 100
    #: Probe faces whose box's shorter side is below this are "too small" (pixels).
    min_face_px: float = 40.0
    #: A probe photo with several faces: search the largest, or report it and skip it.
    multi_face: MultiFacePolicy = "largest"
    #: Images analysed / enrolled at the same time.
    concurrency: int = 4
    #: Deadline of one model or service call, seconds.
    timeout_s: float = 30.0
    #: Remove the evaluation entries at the end (always, unless asked to keep them).
    remove_entries: bool = True
    #: Evaluation entries expire this long after enrolment even if removal fails.
    entry_ttl_s: float = 24 * 3600.0


@dataclass
class EvaluationRun:
    dataset: Dataset
    watchlist_id: str
    options: RunOptions
    enrolled: dict[str, str] = field(default_factory=dict)  #: entry id -> identity
    enrolment_photos: dict[str, str] = field(default_factory=dict)  #: identity -> path
    not_enrolled: list[str] = field(default_factory=list)  #: identities with no usable photo
    probes: list[ProbeRecord] = field(default_factory=list)
    searches: list[Search] = field(default_factory=list)
    problems: list[ImageProblem] = field(default_factory=list)
    #: Probe photos with several faces of which the largest was searched.
    several_faces_used: list[str] = field(default_factory=list)
    entries_removed: int = 0
    cleanup_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def no_usable_face(self) -> list[ImageProblem]:
        return [p for p in self.problems if p.no_usable_face]

    @property
    def failures(self) -> list[ImageProblem]:
        return [p for p in self.problems if not p.no_usable_face]


#: ``progress(stage, done, total)``
Progress = Callable[[str, int, int], None]

T = TypeVar("T")


async def _bounded(
    items: Sequence[T],
    work: Callable[[T], Awaitable[None]],
    concurrency: int,
    progress: Progress | None,
    stage: str,
) -> None:
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(item: T) -> None:
        nonlocal done
        async with gate:
            await work(item)
        done += 1
        if progress is not None:
            progress(stage, done, len(items))

    if progress is not None:
        progress(stage, 0, len(items))
    # A task that raises (service down) cancels the rest: the run stops with that error.
    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        raise first from (first.__cause__ or None)


def _read(photo: Photo, role: Role) -> bytes | ImageProblem:
    try:
        data = photo.read_bytes()
    except OSError as exc:
        return ImageProblem(photo.rel, role, "UNREADABLE", f"cannot read the file: {exc.strerror}")
    if not data:
        return ImageProblem(photo.rel, role, "EMPTY_IMAGE", "the file is empty")
    return data


def _per_image_problem(exc: LfrError, photo: Photo, role: Role) -> ImageProblem | None:
    """The problem to record for ``photo``, or None when ``exc`` must stop the whole run."""
    reason = exc.reason
    if reason in NO_USABLE_FACE or reason in UNREADABLE:
        return ImageProblem(photo.rel, role, reason, exc.message)
    if isinstance(exc, DeadlineExceeded):
        return ImageProblem(photo.rel, role, "DEADLINE_EXCEEDED", exc.message)
    return None


async def _with_one_retry(call: Callable[[], Awaitable[T]]) -> T:
    """One retry on a deadline: a busy 2-core machine can stall a single call."""
    try:
        return await call()
    except DeadlineExceeded:
        return await call()


def _pick_face(
    faces: list[DetectedFace], photo: Photo, role: Role, options: RunOptions
) -> DetectedFace | ImageProblem:
    if not faces:
        return ImageProblem(photo.rel, role, "NO_FACE", "no face found")
    if len(faces) > 1 and options.multi_face == "skip":
        return ImageProblem(
            photo.rel, role, "MULTIPLE_FACES", f"{len(faces)} faces found; expected one"
        )
    face = max(faces, key=lambda f: f.quality.size_px)
    if face.quality.size_px < options.min_face_px:
        return ImageProblem(
            photo.rel,
            role,
            "FACE_TOO_SMALL",
            f"face is {face.quality.size_px:.0f} px, below the minimum {options.min_face_px:.0f}",
        )
    return face


async def run_evaluation(
    dataset: Dataset,
    *,
    enroller: Enroller,
    analyzer: FaceAnalyzer,
    search: CandidateSearch,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    watchlist_name: str | None = None,
) -> EvaluationRun:
    """Enrol, search, and (unless told otherwise) remove the evaluation entries again."""
    opts = options or RunOptions()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    watchlist_id = await enroller.create_watchlist(
        name=watchlist_name or f"lfr-evaluate-{stamp}",
        description=f"EVALUATION DATA ONLY (lfr evaluate {dataset.root.name}); never deploy",
    )
    run = EvaluationRun(dataset, watchlist_id, opts)
    try:
        started = time.perf_counter()
        probes_of: dict[str, list[Photo]] = {}

        async def enrol_subject(subject: Subject) -> None:
            for index, photo in enumerate(subject.photos):
                data = _read(photo, Role.ENROLMENT)
                if isinstance(data, ImageProblem):
                    run.problems.append(data)
                    continue
                try:
                    entry_id = await _with_one_retry(
                        functools.partial(
                            enroller.enrol,
                            watchlist_id,
                            data,
                            identity=subject.identity,
                            source=photo.rel,
                        )
                    )
                except LfrError as exc:
                    problem = _per_image_problem(exc, photo, Role.ENROLMENT)
                    if problem is None:
                        raise
                    run.problems.append(problem)
                    continue
                run.enrolled[entry_id] = subject.identity
                run.enrolment_photos[subject.identity] = photo.rel
                probes_of[subject.identity] = list(subject.photos[index + 1 :])
                return
            run.not_enrolled.append(subject.identity)

        await search.prepare()
        await _bounded(dataset.subjects, enrol_subject, opts.concurrency, progress, "enrol")
        run.seconds["enrol"] = time.perf_counter() - started
        run.not_enrolled.sort()
        if not run.enrolled:
            raise InvalidArgument(
                "no identity could be enrolled (every photo failed; see the list above)",
                reason="NOTHING_ENROLLED",
            )

        gallery = len(run.enrolled)
        k = max(1, min(opts.top_k, gallery))
        # Dataset order, not completion order: the report lists probes the same way each run.
        probes: list[tuple[Photo, bool]] = [
            (photo, True)
            for subject in dataset.subjects
            for photo in probes_of.get(subject.identity, [])
        ] + [(photo, False) for photo in dataset.nonmated]
        results: dict[int, tuple[ProbeRecord, Search]] = {}

        async def probe(index: int) -> None:
            photo, mated = probes[index]
            role = Role.MATED if mated else Role.NONMATED
            data = _read(photo, role)
            if isinstance(data, ImageProblem):
                run.problems.append(data)
                return
            try:
                faces = await _with_one_retry(
                    lambda: analyzer.analyze(data, timeout_s=opts.timeout_s)
                )
            except LfrError as exc:
                problem = _per_image_problem(exc, photo, role)
                if problem is None:
                    raise
                run.problems.append(problem)
                return
            found = len(faces)
            face = _pick_face(faces, photo, role, opts)
            del faces  # only the chosen face's embedding goes on, and only into the query
            if isinstance(face, ImageProblem):
                run.problems.append(face)
                return
            if found > 1:
                run.several_faces_used.append(photo.rel)
            candidates = await search.search(watchlist_id, face.embedding, k)
            results[index] = _outcome(photo, mated, candidates, run.enrolled, gallery, found)

        await _bounded(range(len(probes)), probe, opts.concurrency, progress, "search")
        for index in sorted(results):
            record, outcome = results[index]
            run.probes.append(record)
            run.searches.append(outcome)
        run.seconds["search"] = time.perf_counter() - started - run.seconds["enrol"]
    finally:
        if opts.remove_entries:
            await _remove_entries(run, enroller)
    run.problems.sort(key=lambda p: p.path)
    run.several_faces_used.sort()
    return run


def _outcome(
    photo: Photo,
    mated: bool,
    candidates: list[Candidate],
    enrolled: dict[str, str],
    gallery: int,
    faces_found: int,
) -> tuple[ProbeRecord, Search]:
    ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
    top = ranked[0] if ranked else None
    top_identity = enrolled.get(top.entry_id, "?") if top else None
    impostors = tuple(c.score for c in ranked if enrolled.get(c.entry_id) != photo.identity)
    record = ProbeRecord(
        path=photo.rel,
        identity=photo.identity,
        mated=mated,
        top_identity=top_identity,
        top_score=top.score if top else None,
        faces_found=faces_found,
    )
    outcome = Search(
        mated=mated,
        top_score=top.score if top else None,
        top_correct=mated and top_identity == photo.identity,
        impostor_scores=impostors,
        impostor_comparisons=gallery - (1 if mated else 0),
    )
    return record, outcome


async def _remove_entries(run: EvaluationRun, enroller: Enroller) -> None:
    """Evaluation entries must not outlive the evaluation; a failure is reported, not raised
    (the entries still expire after ``entry_ttl_s``)."""
    errors: list[str] = []
    for entry_id in list(run.enrolled):
        try:
            await enroller.remove_entry(run.watchlist_id, entry_id)
            run.entries_removed += 1
        except LfrError as exc:
            errors.append(f"{entry_id}: {exc.message}")
    if errors:
        run.cleanup_error = (
            f"{len(errors)} evaluation entries could not be removed (they expire by themselves): "
            + "; ".join(errors[:3])
        )
