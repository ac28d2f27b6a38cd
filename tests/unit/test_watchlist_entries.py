"""Watch lists, enrolment, removal, expiry and the audit outbox, over the in-memory fakes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import numpy as np
import pytest

from lfr.common import audit
from lfr.common.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from lfr.inference import MODEL_VERSION
from lfr.v1 import common_pb2
from lfr_watchlist.enrolment import select_face
from lfr_watchlist.model import Governance
from lfr_watchlist.testing import (
    GROUP,
    NO_FACE,
    OTHER_PORTRAIT,
    PORTRAIT,
    SMALL_FACE,
    Harness,
    eventually,
    fake_face,
    harness,
    unit_vector,
)


def governance(h: Harness, *, days: float = 30, subject_ref: str = "PNC-1") -> Governance:
    return Governance(
        category=common_pb2.CATEGORY_WANTED_BY_COURTS,
        legal_basis_ref="warrant 42",
        image_source="custody photo",
        approver="Insp. Morse",
        expires_at=h.clock() + timedelta(days=days),
        subject_ref=subject_ref,
    )


async def new_watchlist(h: Harness, wl_id: str = "wl", *, keep: bool = False) -> str:
    record = await h.components.watchlists.create_watchlist(
        watchlist_id=wl_id,
        name="Wanted",
        description="",
        algorithm="FLAT",
        keep_enrolment_images=keep,
        created_by="Sgt. Lewis",
    )
    return str(record.watchlist_id)


async def test_create_get_list_watchlists() -> None:
    h = harness()
    wls = h.components.watchlists
    await new_watchlist(h, "a")
    h.clock.advance(seconds=1)
    generated = await wls.create_watchlist(
        watchlist_id="",
        name="B",
        description="d",
        algorithm="HNSW",
        keep_enrolment_images=True,
        created_by="",
    )
    assert generated.watchlist_id.startswith("wl-")
    assert [w.watchlist_id for w in await wls.list_watchlists()] == ["a", generated.watchlist_id]
    assert (await wls.get_watchlist(generated.watchlist_id)).algorithm == "HNSW"
    with pytest.raises(AlreadyExists):
        await new_watchlist(h, "a")
    with pytest.raises(NotFound, match="watch list 'nope' not found"):
        await wls.get_watchlist("nope")
    await h.components.forwarder.flush()
    created = h.sink.of(audit.WATCHLIST_CREATED)
    assert [(actor, d["watchlist_id"]) for _, actor, d in created] == [
        ("Sgt. Lewis", "a"),
        ("unspecified", generated.watchlist_id),
    ]


async def test_enrol_stores_one_vector_per_image_and_audits() -> None:
    h = harness()
    wl = await new_watchlist(h)
    entry = await h.components.watchlists.enrol(wl, [PORTRAIT, OTHER_PORTRAIT], governance(h))
    assert entry.image_count == 2
    assert entry.model_version == MODEL_VERSION
    stored = h.store.entries[wl][entry.entry_id]
    np.testing.assert_allclose(stored.vectors[0], unit_vector(1), rtol=1e-6)
    np.testing.assert_allclose(stored.vectors[1], unit_vector(2), rtol=1e-6)
    assert stored.images == []  # the watch list's policy does not keep photos
    assert await h.components.watchlists.get_entry(wl, entry.entry_id) == entry
    await h.components.forwarder.flush()
    [(_, actor, details)] = h.sink.of(audit.ENTRY_ENROLLED)
    assert actor == "Insp. Morse"
    assert details["entry_id"] == entry.entry_id
    assert details["category"] == "CATEGORY_WANTED_BY_COURTS"
    assert details["images_kept"] == "false"
    assert details["event_id"].startswith("watchlist:")


async def test_enrolment_photos_are_kept_only_when_the_policy_says_so() -> None:
    h = harness()
    wl = await new_watchlist(h, keep=True)
    entry = await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h))
    assert h.store.entries[wl][entry.entry_id].images == [PORTRAIT]


@pytest.mark.parametrize(
    ("images", "reason", "message"),
    [
        ([NO_FACE], "NO_FACE", r"images\[0\] holds no face"),
        ([PORTRAIT, GROUP], "MULTIPLE_FACES", r"images\[1\] holds 2 faces"),
        ([SMALL_FACE], "FACE_TOO_SMALL", r"images\[0\]: the face is 40 px, .* minimum 80 px"),
        ([PORTRAIT, b"\x00junk"], "BAD_IMAGE", r"images\[1\]: cannot decode"),
        ([PORTRAIT, b""], "BAD_IMAGE", r"images\[1\] is empty"),
        ([], "MISSING_FIELD", "images needs at least one image"),
    ],
)
async def test_bad_images_are_refused_and_nothing_is_stored(
    images: list[bytes], reason: str, message: str
) -> None:
    h = harness()
    wl = await new_watchlist(h)
    before, outbox = h.store.state(), list(h.store.outbox)
    with pytest.raises(InvalidArgument, match=message) as info:
        await h.components.watchlists.enrol(wl, images, governance(h))
    assert info.value.reason == reason
    assert h.store.state() == before
    assert h.store.outbox == outbox  # no audit record either


async def test_too_many_images_and_unknown_watchlist_are_refused_before_analysis() -> None:
    h = harness(max_images_per_enrol=2)
    wl = await new_watchlist(h)
    with pytest.raises(InvalidArgument, match="at most 2 per enrolment"):
        await h.components.watchlists.enrol(wl, [PORTRAIT] * 3, governance(h))
    with pytest.raises(NotFound):
        await h.components.watchlists.enrol("other", [PORTRAIT], governance(h))
    assert h.analyzer.calls == 0


async def test_triton_down_is_unavailable_and_stores_nothing() -> None:
    h = harness()
    wl = await new_watchlist(h)
    h.analyzer.is_ready = False
    before = h.store.state()
    with pytest.raises(Unavailable):
        await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h))
    assert h.store.state() == before


def test_a_small_background_face_does_not_make_a_portrait_ambiguous() -> None:
    main, background = fake_face(1, size_px=200), fake_face(2, size_px=30)
    assert select_face([background, main], 0, min_face_px=80) is main


async def test_list_entries_pages_in_enrolment_order() -> None:
    h = harness()
    wl = await new_watchlist(h)
    ids = []
    for _ in range(5):
        ids.append((await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h))).entry_id)
    wls = h.components.watchlists
    page1 = await wls.list_entries(wl, page_size=2, after="")
    page2 = await wls.list_entries(wl, page_size=2, after=page1.next_token)
    page3 = await wls.list_entries(wl, page_size=2, after=page2.next_token)
    assert [e.entry_id for e in page1.entries + page2.entries + page3.entries] == sorted(ids)
    assert page3.next_token == ""
    exact = await wls.list_entries(wl, page_size=5, after="")
    assert len(exact.entries) == 5
    assert exact.next_token == ""  # no empty extra page
    assert len((await wls.list_entries(wl, page_size=0, after="")).entries) == 5
    with pytest.raises(NotFound):
        await wls.list_entries("nope", page_size=0, after="")


async def test_remove_entry_deletes_everything_and_audits() -> None:
    h = harness()
    wl = await new_watchlist(h, keep=True)
    entry = await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h))
    await h.components.watchlists.remove_entry(
        wl, entry.entry_id, requested_by="Sgt. Lewis", reason="arrested"
    )
    assert h.store.entries[wl] == {}
    with pytest.raises(NotFound, match=r"entry .* not found in watch list 'wl'"):
        await h.components.watchlists.remove_entry(
            wl, entry.entry_id, requested_by="Sgt. Lewis", reason=""
        )
    await h.components.forwarder.flush()
    [(_, actor, details)] = h.sink.of(audit.ENTRY_REMOVED)
    assert (actor, details["entry_id"], details["reason"]) == (
        "Sgt. Lewis",
        entry.entry_id,
        "arrested",
    )


async def test_purge_removes_only_expired_entries_each_audited() -> None:
    h = harness()
    wl = await new_watchlist(h)
    other = await new_watchlist(h, "other")
    short = await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h, days=1))
    long = await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h, days=10))
    elsewhere = await h.components.watchlists.enrol(other, [PORTRAIT], governance(h, days=1))
    assert await h.components.watchlists.purge_expired() == []
    h.clock.advance(days=1)  # expires_at == now: expired (match only sees expires_at > now)
    assert await h.components.watchlists.purge_expired(wl) == [(wl, short.entry_id)]
    assert set(h.store.entries[wl]) == {long.entry_id}
    assert await h.components.watchlists.purge_expired() == [(other, elsewhere.entry_id)]
    await h.components.forwarder.flush()
    expired = h.sink.of(audit.ENTRY_EXPIRED)
    assert [(actor, d["entry_id"]) for _, actor, d in expired] == [
        ("system:purge", short.entry_id),
        ("system:purge", elsewhere.entry_id),
    ]
    with pytest.raises(NotFound):
        await h.components.watchlists.purge_expired("nope")


async def test_background_purge_runs_every_interval() -> None:
    h = harness(purge_interval_s=0.05)
    wl = await new_watchlist(h)
    entry = await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h, days=1))
    task = asyncio.create_task(h.components.watchlists.run_purge())
    try:
        await asyncio.sleep(0.1)
        assert entry.entry_id in h.store.entries[wl]
        h.clock.advance(days=2)
        await eventually(lambda: not h.store.entries[wl])
        assert h.store.entries[wl] == {}
    finally:
        task.cancel()


async def test_background_purge_survives_a_store_outage() -> None:
    h = harness(purge_interval_s=0.02)
    wl = await new_watchlist(h)
    await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h, days=1))
    h.store.up = False
    task = asyncio.create_task(h.components.watchlists.run_purge())
    try:
        await asyncio.sleep(0.1)
        assert not task.done()
        h.store.up = True
        h.clock.advance(days=2)
        await eventually(lambda: not h.store.entries[wl])
        assert h.store.entries[wl] == {}
    finally:
        task.cancel()


# --- audit outbox --------------------------------------------------------------------------------


async def test_audit_events_wait_in_the_outbox_while_the_sink_is_down() -> None:
    h = harness()
    h.sink.fail = True
    wl = await new_watchlist(h)
    await h.components.watchlists.enrol(wl, [PORTRAIT], governance(h))
    with pytest.raises(Unavailable):
        await h.components.forwarder.flush()
    assert [e.action for _, e in h.store.outbox] == [audit.WATCHLIST_CREATED, audit.ENTRY_ENROLLED]
    h.sink.fail = False
    assert await h.components.forwarder.flush() == 2
    assert h.sink.actions() == [audit.WATCHLIST_CREATED, audit.ENTRY_ENROLLED]
    assert h.store.outbox == []
    ids = [d["event_id"] for _, _, d in h.sink.records]
    assert len(set(ids)) == 2


async def test_forwarder_task_delivers_after_the_sink_comes_back() -> None:
    h = harness(audit_retry_interval_s=0.02)
    h.sink.fail = True
    task = asyncio.create_task(h.components.forwarder.run())
    try:
        await new_watchlist(h)
        await asyncio.sleep(0.06)
        assert h.sink.records == []
        h.sink.fail = False
        await eventually(lambda: bool(h.sink.records))
        assert h.sink.actions() == [audit.WATCHLIST_CREATED]
        stamped = h.sink.records[0][2]["at"]
        assert datetime.fromisoformat(stamped) == h.clock()
    finally:
        task.cancel()


async def test_forwarder_stops_when_cancelled_even_while_woken() -> None:
    # Regression: with asyncio.wait_for (3.11) a cancel arriving as the wake-up event was set
    # could be swallowed, and the server's shutdown then waited for ever.
    h = harness(audit_retry_interval_s=0.001)
    for _ in range(200):
        task = asyncio.create_task(h.components.forwarder.run())
        await asyncio.sleep(0)
        h.components.forwarder.notify()
        await asyncio.sleep(0)
        task.cancel()
        h.components.forwarder.notify()
        done, _ = await asyncio.wait({task}, timeout=1)
        assert done, "the forwarder ignored its cancellation"
