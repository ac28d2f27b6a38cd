"""The synthetic scene generator: deterministic, truthful ground truth, faces a detector finds."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from lfr.common.errors import ConfigError
from lfr_cli.synth.photos import Identity, load_sample_identities
from lfr_cli.synth.scene import (
    Renderer,
    Scenario,
    StreamConfig,
    make_sprite,
    plan_scenario,
    walk_past,
)
from lfr_cli.synth.truth import GroundTruth


@pytest.fixture(scope="module")
def samples() -> list[Identity]:
    return load_sample_identities()


def small(**overrides: object) -> StreamConfig:
    values: dict[str, object] = {"width": 320, "height": 180, "fps": 4.0, "face_px": (40, 60)}
    values.update(overrides)
    return StreamConfig(**values)  # type: ignore[arg-type]


def test_same_seed_same_pixels_other_seed_other_pixels(samples: list[Identity]) -> None:
    config = small(seed=3)
    a = Renderer(plan_scenario(samples, config), samples)
    b = Renderer(plan_scenario(samples, config), samples)
    c = Renderer(plan_scenario(samples, dataclasses.replace(config, seed=4)), samples)
    cam = config.camera_ids()[0]
    frame = a.scenario.passes[0].start_frame + 3
    assert a.scenario == b.scenario
    assert np.array_equal(a.render(cam, frame), b.render(cam, frame))
    assert a.truth(cam, frame) == b.truth(cam, frame)
    assert not np.array_equal(a.render(cam, frame), c.render(cam, frame))


def test_frame_renders_alone_in_any_order(samples: list[Identity]) -> None:
    renderer = Renderer(plan_scenario(samples, small(seed=1)), samples)
    cam = renderer.scenario.camera_ids[0]
    later = renderer.render(cam, 9)
    renderer.render(cam, 2)
    assert np.array_equal(later, renderer.render(cam, 9))
    image = renderer.render(cam, 0)
    assert image.shape == (180, 320, 3) and image.dtype == np.uint8


def test_truth_box_is_where_the_face_was_pasted(samples: list[Identity]) -> None:
    config = small(noise_sigma=(0.0, 0.0), exposure_drift=0.0, blur_sigma=(0.0, 0.0))
    scenario = walk_past(["grace_hopper"], config, pass_s=3.0)
    empty = Scenario(scenario.config, (), scenario.frames_per_camera)
    with_face = Renderer(scenario, samples)
    without = Renderer(empty, samples)
    cam = scenario.camera_ids[0]
    frame = scenario.passes[0].start_frame + scenario.passes[0].n_frames // 2
    (face,) = with_face.truth(cam, frame)
    assert face.identity == "grace_hopper" and face.visible
    diff = np.abs(
        with_face.render(cam, frame).astype(int) - without.render(cam, frame).astype(int)
    ).sum(axis=2)
    x1, y1, x2, y2 = (round(v) for v in face.box)
    assert (diff[y1:y2, x1:x2] > 0).mean() > 0.95  # the face covers its box
    side = x2 - x1
    far = diff.copy()
    far[max(0, y1 - 2 * side) : y2 + 2 * side, max(0, x1 - 2 * side) : x2 + 2 * side] = 0
    assert far.sum() == 0  # and nothing is drawn far from it
    assert without.truth(cam, frame) == []


def test_detector_finds_the_faces_where_the_truth_says(samples: list[Identity]) -> None:
    dlib = pytest.importorskip("dlib")
    from lfr_cli.synth.truth import iou

    detector = dlib.get_frontal_face_detector()
    config = StreamConfig(width=480, height=270, fps=2.0, face_px=(80, 110), seed=2)
    scenario = walk_past(["grace_hopper", "astronaut"], config, pass_s=3.0)
    renderer = Renderer(scenario, samples)
    cam = scenario.camera_ids[0]
    checked = 0
    for p in scenario.passes:
        frame = p.start_frame + p.n_frames // 2
        (face,) = renderer.truth(cam, frame)
        found = detector(renderer.render(cam, frame), 1)
        boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in found]
        assert any(iou(face.box, box) > 0.4 for box in boxes), (p.identity, boxes, face.box)
        checked += 1
    assert checked == 2


def test_plan_gives_each_person_their_passes_spread_over_cameras(
    samples: list[Identity],
) -> None:
    config = small(cameras=2, passes_per_identity=4, seed=5)
    scenario = plan_scenario(samples, config)
    counts = {i.name: 0 for i in samples}
    for p in scenario.passes:
        counts[p.identity] += 1
        assert p.start_frame >= 0 and p.end_frame <= scenario.frames_per_camera
    assert counts == {i.name: 4 for i in samples}
    assert {p.camera_id for p in scenario.passes} == {"synth-cam-1", "synth-cam-2"}
    assert [p.pass_id for p in scenario.passes] == list(range(12))


def test_min_repeat_gap_keeps_a_person_apart_from_themselves(samples: list[Identity]) -> None:
    config = small(passes_per_identity=3, min_repeat_gap_s=6.0, overlap=0.0, seed=1)
    scenario = plan_scenario(samples[:1], config)
    starts = sorted((p.start_frame, p.end_frame) for p in scenario.passes)
    for (_s0, e0), (s1, _e1) in itertools.pairwise(starts):
        assert (s1 - e0) / config.fps >= 6.0 - 1 / config.fps


def test_overlap_puts_two_people_on_screen(samples: list[Identity]) -> None:
    config = small(passes_per_identity=4, overlap=1.0, seed=0)
    scenario = plan_scenario(samples, config)
    truth = GroundTruth.from_scenario(scenario, Renderer(scenario, samples))
    cam = scenario.camera_ids[0]
    assert max(len(faces) for faces in truth.frames[cam]) >= 2


def test_photo_choices_restrict_the_photos_that_walk(samples: list[Identity]) -> None:
    hopper = samples[0]
    two = Identity("grace_hopper", (hopper.photos[0], hopper.photos[0]))
    scenario = plan_scenario(
        [two], small(passes_per_identity=5), photo_choices={"grace_hopper": [1]}
    )
    assert {p.photo_index for p in scenario.passes} == {1}


def test_walk_past_goes_in_order_one_at_a_time(samples: list[Identity]) -> None:
    scenario = walk_past(
        ["grace_hopper", "astronaut", "cameraman"],
        small(camera_prefix="demo-cam-"),
        pass_s=2.0,
        gap_s=0.5,
    )
    assert [p.identity for p in scenario.passes] == ["grace_hopper", "astronaut", "cameraman"]
    assert scenario.camera_ids == ["demo-cam-1"]
    for a, b in itertools.pairwise(scenario.passes):
        assert b.start_frame >= a.end_frame + 2
        assert (a.x1 > a.x0) != (b.x1 > b.x0)  # alternate directions


def test_sprite_is_opaque_over_the_face(samples: list[Identity]) -> None:
    sprite = make_sprite(samples[0].photos[0])
    x1, y1, x2, y2 = (round(v) for v in sprite.face_box)
    assert sprite.alpha[y1:y2, x1:x2].min() == 1.0
    assert sprite.alpha[0, 0] == 0.0 and sprite.alpha[-1, -1] == 0.0
    assert sprite.rgb.shape[:2] == sprite.alpha.shape
    assert 2.0 < sprite.rgb.shape[0] / sprite.face_side < 2.4


@pytest.mark.parametrize(
    "overrides",
    [
        {"width": 10},
        {"fps": 0.0},
        {"cameras": 0},
        {"face_px": (60.0, 40.0)},
        {"face_px": (40.0, 400.0)},
        {"passes_per_identity": 0},
    ],
)
def test_bad_stream_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="bad stream settings"):
        small(**overrides)


def test_unknown_photo_in_a_plan_is_refused(samples: list[Identity]) -> None:
    scenario = walk_past(["grace_hopper"], small())
    bad = dataclasses.replace(scenario.passes[0], photo_index=7)
    with pytest.raises(ConfigError, match="no photo 7"):
        Renderer(dataclasses.replace(scenario, passes=(bad,)), samples)
