"""Putting a run together: who goes on the watch list (with which photos), who walks past, the
scenario, its renderer and ground truth; and the simulated operator."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lfr.common.errors import ConfigError
from lfr.v1 import alert_pb2
from lfr_cli.synth.photos import FacePhoto, Identity
from lfr_cli.synth.record import AlertLog, RunRecord
from lfr_cli.synth.report import associate_alert
from lfr_cli.synth.scene import Renderer, Scenario, StreamConfig, plan_scenario
from lfr_cli.synth.truth import GroundTruth

__all__ = ["Harness", "choose_watchlist", "operator", "prepare"]


@dataclass(frozen=True)
class Harness:
    identities: list[Identity]
    enrol: dict[str, list[FacePhoto]]  #: identity → enrolment photos
    scenario: Scenario
    renderer: Renderer
    truth: GroundTruth

    @property
    def strangers(self) -> list[str]:
        return [i.name for i in self.identities if i.name not in self.enrol]


def choose_watchlist(
    identities: Sequence[Identity],
    *,
    names: Sequence[str] | None = None,
    count: int | None = None,
    seed: int = 0,
) -> list[str]:
    """The people to enrol: ``names`` if given (each must exist), else ``count`` drawn with the
    seed, preferring people with more than one photo (so a held-out photo walks past)."""
    known = {i.name: i for i in identities}
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            sample = ", ".join(sorted(known)[:8])
            raise ConfigError(f"not among the photos: {', '.join(missing)} (have e.g. {sample})")
        return list(dict.fromkeys(names))
    count = 1 if count is None else count
    if not 0 <= count <= len(identities):
        raise ConfigError(f"cannot enrol {count} of {len(identities)} people")
    rng = np.random.default_rng(seed)
    multi = [i.name for i in identities if len(i.photos) > 1]
    single = [i.name for i in identities if len(i.photos) <= 1]
    order = [multi[k] for k in rng.permutation(len(multi))]
    order += [single[k] for k in rng.permutation(len(single))]
    return sorted(order[:count])


def prepare(
    identities: Sequence[Identity],
    config: StreamConfig,
    *,
    enrol_names: Sequence[str],
    enrol_photos: int = 1,
    strangers: Sequence[Identity] = (),
    max_identities: int | None = None,
) -> Harness:
    """Scenario for ``identities`` (+ ``strangers``, never enrolled). Enrolled people are
    enrolled from their first ``enrol_photos`` photos and walk past with the others (held out)
    when they have more; otherwise with the same photo, transformed by the scene."""
    if enrol_photos < 1:
        raise ConfigError("enrol at least one photo per person")
    people = list(identities)
    names = {i.name for i in people}
    for s in strangers:
        if s.name in names:
            raise ConfigError(f"{s.name} is both among the people and the strangers")
    people += list(strangers)
    if max_identities is not None and len(people) > max_identities:
        rng = np.random.default_rng(config.seed + 1)
        others = [i for i in people if i.name not in enrol_names]
        keep = max(0, max_identities - len(enrol_names))
        chosen = {others[k].name for k in rng.permutation(len(others))[:keep]}
        people = [i for i in people if i.name in enrol_names or i.name in chosen]
    by_name = {i.name: i for i in people}
    enrol: dict[str, list[FacePhoto]] = {}
    choices: dict[str, list[int]] = {}
    for name in enrol_names:
        photos = by_name[name].photos
        enrol[name] = list(photos[:enrol_photos])
        held_out = list(range(enrol_photos, len(photos)))
        choices[name] = held_out or list(range(len(photos)))
    scenario = plan_scenario(people, config, photo_choices=choices)
    renderer = Renderer(scenario, people)
    truth = GroundTruth.from_scenario(scenario, renderer)
    return Harness(people, enrol, scenario, renderer, truth)


def operator(
    truth: GroundTruth, record: Callable[[], RunRecord]
) -> Callable[[AlertLog], tuple[int, str] | None]:
    """A simulated control-room operator who knows the ground truth: confirms an alert when
    the face under its box is the named person, rejects it otherwise."""

    def decide(alert: AlertLog) -> tuple[int, str] | None:
        identity, found = associate_alert(truth, record(), alert)
        if found.is_true_for(identity):
            return alert_pb2.DECISION_CONFIRM, "synthetic ground truth: the enrolled person"
        return alert_pb2.DECISION_REJECT, "synthetic ground truth: not the enrolled person"

    return decide
