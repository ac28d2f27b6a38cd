"""Routing rules: which control-room channels an alert goes to, and how severe it is.

The rules file is JSON::

    {
      "default": {"channels": ["control-room"], "severity": "MEDIUM"},
      "rules": [
        {"name": "missing-persons",
         "when": {"categories": ["MISSING_AT_RISK"], "min_score": 0.6},
         "channels": ["safeguarding"], "severity": "HIGH"}
      ]
    }

``when`` may name ``categories``, ``camera_ids``, ``locations``, ``deployment_ids``,
``watchlist_ids`` (each: any of) and a score band ``min_score`` (inclusive) / ``max_score``
(exclusive); an empty ``when`` matches every alert. Every matching rule applies: the alert goes
to the union of their channels, at the highest of their severities. Where no matching rule names
channels (or a severity), the default's apply.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lfr.common.errors import ConfigError
from lfr.v1 import alert_pb2, common_pb2

CHANNEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_WHEN_KEYS = frozenset(
    {"categories", "camera_ids", "locations", "deployment_ids", "watchlist_ids"}
    | {"min_score", "max_score"}
)
_RULE_KEYS = frozenset({"name", "when", "channels", "severity"})
_TOP_KEYS = frozenset({"default", "rules"})
_DEFAULT_KEYS = frozenset({"channels", "severity"})


def _enum_names(enum: Any, prefix: str) -> dict[str, int]:
    """``{"HIGH": 3, "SEVERITY_HIGH": 3, ...}`` without the UNSPECIFIED value."""
    names: dict[str, int] = {}
    for name, number in enum.items():
        if number == 0:
            continue
        names[name] = number
        names[name.removeprefix(prefix)] = number
    return names


CATEGORIES = _enum_names(common_pb2.Category, "CATEGORY_")
SEVERITIES = _enum_names(common_pb2.Severity, "SEVERITY_")


@dataclass(frozen=True)
class Route:
    channels: tuple[str, ...]
    severity: int


@dataclass(frozen=True)
class Rule:
    name: str
    categories: frozenset[int] = frozenset()
    camera_ids: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    deployment_ids: frozenset[str] = frozenset()
    watchlist_ids: frozenset[str] = frozenset()
    min_score: float | None = None
    max_score: float | None = None
    channels: tuple[str, ...] = ()
    severity: int = 0  # 0 = leave it to the other rules / the default

    def matches(self, event: alert_pb2.MatchEvent) -> bool:
        return (
            (not self.categories or event.category in self.categories)
            and (not self.camera_ids or event.camera_id in self.camera_ids)
            and (not self.locations or event.location in self.locations)
            and (not self.deployment_ids or event.deployment_id in self.deployment_ids)
            and (not self.watchlist_ids or event.watchlist_id in self.watchlist_ids)
            and (self.min_score is None or event.score >= self.min_score)
            and (self.max_score is None or event.score < self.max_score)
        )


@dataclass(frozen=True)
class Router:
    default: Route
    rules: tuple[Rule, ...]
    source: str  # where the rules came from, for logs

    def route(self, event: alert_pb2.MatchEvent) -> Route:
        channels: list[str] = []
        severity = 0
        for rule in self.rules:
            if rule.matches(event):
                channels += [c for c in rule.channels if c not in channels]
                severity = max(severity, rule.severity)
        return Route(
            channels=tuple(channels) or self.default.channels,
            severity=severity or self.default.severity,
        )

    @property
    def channels(self) -> frozenset[str]:
        """Every channel an alert can be routed to."""
        names = set(self.default.channels)
        for rule in self.rules:
            names.update(rule.channels)
        return frozenset(names)


class _Problem(Exception):
    """One thing wrong with the rules, located by the caller."""


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Problem(f"{key!r} must be a list of non-empty strings")
    return list(value)


def _channels(value: Any) -> tuple[str, ...]:
    names = _strings(value, "channels")
    for name in names:
        if not CHANNEL_PATTERN.match(name):
            raise _Problem(
                f"channel name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                "starting with a letter or digit"
            )
    return tuple(dict.fromkeys(names))


def _severity(value: Any) -> int:
    if not isinstance(value, str) or value.upper() not in SEVERITIES:
        raise _Problem(f"severity {value!r} is not one of LOW, MEDIUM, HIGH, CRITICAL")
    return SEVERITIES[value.upper()]


def _categories(value: Any) -> frozenset[int]:
    numbers = set()
    for name in _strings(value, "categories"):
        if name.upper() not in CATEGORIES:
            known = ", ".join(n for n in CATEGORIES if not n.startswith("CATEGORY_"))
            raise _Problem(f"unknown category {name!r} (expected one of {known})")
        numbers.add(CATEGORIES[name.upper()])
    return frozenset(numbers)


def _score(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Problem(f"{key!r} must be a number")
    if not -1.0 <= value <= 1.0:
        raise _Problem(f"{key!r} {value} is outside the score scale [-1, 1]")
    # Scores travel as float32: compare against the float32 nearest the bound, so that a
    # score of 0.7 meets "min_score": 0.7.
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _check_keys(obj: Any, allowed: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise _Problem(f"{what} must be a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _Problem(
            f"unknown key {unknown[0]!r} in {what} (expected one of {', '.join(sorted(allowed))})"
        )
    return obj


def _rule(raw: Any, index: int) -> Rule:
    obj = _check_keys(raw, _RULE_KEYS, "a rule")
    name = obj.get("name", f"rules[{index}]")
    if not isinstance(name, str) or not name:
        raise _Problem("'name' must be a non-empty string")
    when = _check_keys(obj.get("when", {}), _WHEN_KEYS, "'when'")
    channels = _channels(obj["channels"]) if "channels" in obj else ()
    severity = _severity(obj["severity"]) if "severity" in obj else 0
    if not channels and not severity:
        raise _Problem("a rule must give 'channels', 'severity' or both")
    min_score = _score(when["min_score"], "min_score") if "min_score" in when else None
    max_score = _score(when["max_score"], "max_score") if "max_score" in when else None
    if min_score is not None and max_score is not None and min_score >= max_score:
        raise _Problem(f"empty score band: min_score {min_score} >= max_score {max_score}")
    return Rule(
        name=name,
        categories=_categories(when["categories"]) if "categories" in when else frozenset(),
        camera_ids=frozenset(_strings(when.get("camera_ids", []), "camera_ids")),
        locations=frozenset(_strings(when.get("locations", []), "locations")),
        deployment_ids=frozenset(_strings(when.get("deployment_ids", []), "deployment_ids")),
        watchlist_ids=frozenset(_strings(when.get("watchlist_ids", []), "watchlist_ids")),
        min_score=min_score,
        max_score=max_score,
        channels=channels,
        severity=severity,
    )


def parse_routes(data: Any, source: str) -> Router:
    """Validate parsed JSON into a :class:`Router`; raises ``ConfigError`` naming the problem."""
    where = "top level"
    try:
        top = _check_keys(data, _TOP_KEYS, "the rules file")
        where = "'default'"
        if "default" not in top:
            raise _Problem("missing (it names the channels and severity used when no rule does)")
        default_obj = _check_keys(top["default"], _DEFAULT_KEYS, "'default'")
        if "channels" not in default_obj or "severity" not in default_obj:
            raise _Problem("must give both 'channels' and 'severity'")
        default = Route(_channels(default_obj["channels"]), _severity(default_obj["severity"]))
        if not default.channels:
            raise _Problem("'channels' must name at least one channel")
        where = "'rules'"
        raw_rules = top.get("rules", [])
        if not isinstance(raw_rules, list):
            raise _Problem("must be a list")
        rules: list[Rule] = []
        for index, raw in enumerate(raw_rules):
            where = f"rules[{index}]"
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                where += f" ({raw['name']!r})"
            rule = _rule(raw, index)
            if any(r.name == rule.name for r in rules):
                raise _Problem(f"duplicate rule name {rule.name!r}")
            rules.append(rule)
    except _Problem as exc:
        raise ConfigError(f"routing rules {source}: {where}: {exc}") from None
    return Router(default=default, rules=tuple(rules), source=source)


def load_routes(path: Path | None) -> Router:
    """The rules in ``path``, or the built-in rules when ``path`` is None."""
    if path is None:
        text = resources.files("lfr_alert").joinpath("default_routes.json").read_text("utf-8")
        source = "(built-in default_routes.json)"
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(
                f"routing rules {source}: cannot read the file ({exc.strerror or exc}); "
                "check LFR_ALERT_ROUTES_FILE"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"routing rules {source}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"routing rules {source}: invalid JSON at line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}"
        ) from None
    return parse_routes(data, source)
