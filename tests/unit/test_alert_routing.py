"""Routing rules: parsing, validation errors that name the problem, and routing semantics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lfr.common.errors import ConfigError
from lfr.v1 import alert_pb2, common_pb2
from lfr_alert.routing import load_routes, parse_routes

DEFAULT = {"channels": ["control-room"], "severity": "MEDIUM"}


def event(**fields: Any) -> alert_pb2.MatchEvent:
    values: dict[str, Any] = {
        "camera_id": "cam-1",
        "location": "station",
        "deployment_id": "dep-1",
        "watchlist_id": "wl-1",
        "category": common_pb2.CATEGORY_WANTED_BY_COURTS,
        "score": 0.7,
    }
    values.update(fields)
    return alert_pb2.MatchEvent(**values)


def test_builtin_rules_load_and_route_by_category() -> None:
    router = load_routes(None)
    assert "built-in" in router.source
    risk = router.route(event(category=common_pb2.CATEGORY_RISK_OF_HARM))
    assert risk.severity == common_pb2.SEVERITY_CRITICAL
    missing = router.route(event(category=common_pb2.CATEGORY_MISSING_AT_RISK))
    assert missing.channels == ("control-room", "safeguarding")
    assert {"control-room", "safeguarding"} <= router.channels


def test_matching_rules_combine_channels_and_take_the_highest_severity() -> None:
    router = parse_routes(
        {
            "default": DEFAULT,
            "rules": [
                {"name": "station", "when": {"locations": ["station"]}, "channels": ["transport"]},
                {
                    "name": "strong",
                    "when": {"min_score": 0.8},
                    "channels": ["supervisors", "transport"],
                    "severity": "HIGH",
                },
                {
                    "name": "very-strong",
                    "when": {"min_score": 0.9, "max_score": 1.0},
                    "severity": "CRITICAL",
                },
                {"name": "cam-9", "when": {"camera_ids": ["cam-9"]}, "severity": "LOW"},
            ],
        },
        "test",
    )
    assert router.route(event(location="park")) == router.default
    station = router.route(event())
    assert station.channels == ("transport",)
    assert station.severity == common_pb2.SEVERITY_MEDIUM  # no rule gave one: the default's
    strong = router.route(event(score=0.85))
    assert strong.channels == ("transport", "supervisors")
    assert strong.severity == common_pb2.SEVERITY_HIGH
    assert router.route(event(score=0.95)).severity == common_pb2.SEVERITY_CRITICAL
    # Severity-only rule: channels come from the default.
    low = router.route(event(location="park", camera_id="cam-9"))
    assert low.channels == ("control-room",) and low.severity == common_pb2.SEVERITY_LOW


def test_score_band_is_min_inclusive_max_exclusive() -> None:
    router = parse_routes(
        {
            "default": DEFAULT,
            "rules": [
                {"name": "band", "when": {"min_score": 0.7, "max_score": 0.8}, "channels": ["b"]}
            ],
        },
        "test",
    )
    assert router.route(event(score=0.7)).channels == ("b",)
    assert router.route(event(score=0.8)).channels == ("control-room",)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rules": []}, "'default': missing"),
        ({"default": {"channels": ["a"]}, "rules": []}, "must give both"),
        ({"default": DEFAULT, "rules": {}}, "'rules': must be a list"),
        ({"default": DEFAULT, "extra": 1}, "unknown key 'extra'"),
        (
            {"default": DEFAULT, "rules": [{"name": "r", "when": {"catgories": []}}]},
            "rules[0] ('r'): unknown key 'catgories'",
        ),
        (
            {
                "default": DEFAULT,
                "rules": [{"name": "r", "when": {"categories": ["JAYWALKING"]}, "severity": "LOW"}],
            },
            "unknown category 'JAYWALKING'",
        ),
        (
            {"default": DEFAULT, "rules": [{"name": "r", "severity": "URGENT"}]},
            "severity 'URGENT' is not one of",
        ),
        (
            {"default": DEFAULT, "rules": [{"name": "r", "channels": ["bad name"]}]},
            "channel name 'bad name'",
        ),
        (
            {
                "default": DEFAULT,
                "rules": [{"name": "r", "when": {"min_score": 1.5}, "severity": "LOW"}],
            },
            "outside the score scale",
        ),
        (
            {
                "default": DEFAULT,
                "rules": [
                    {"name": "r", "when": {"min_score": 0.8, "max_score": 0.7}, "severity": "LOW"}
                ],
            },
            "empty score band",
        ),
        ({"default": DEFAULT, "rules": [{"name": "r"}]}, "must give 'channels', 'severity'"),
        (
            {
                "default": DEFAULT,
                "rules": [{"name": "r", "severity": "LOW"}, {"name": "r", "severity": "LOW"}],
            },
            "duplicate rule name 'r'",
        ),
        ([], "must be a JSON object"),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(rules: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_routes(rules, "rules.json")
    assert "rules.json" in str(info.value)
    assert message in str(info.value)


def test_unreadable_or_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_routes(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "default": {\n    "channels": ["a"],,\n')
    with pytest.raises(ConfigError, match=r"invalid JSON at line 3 column"):
        load_routes(broken)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"default": DEFAULT, "rules": []}))
    assert load_routes(good).source == str(good)


def test_the_service_refuses_to_start_with_bad_rules(tmp_path: Path) -> None:
    bad = tmp_path / "routes.json"
    bad.write_text(json.dumps({"default": DEFAULT, "rules": [{"name": "x", "severity": "HUGE"}]}))
    env = {"LFR_ALERT_ROUTES_FILE": str(bad), "LFR_ALERT_PORT": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "lfr_alert"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "routing rules" in done.stderr and "HUGE" in done.stderr and str(bad) in done.stderr
