"""Structured logging: structlog, JSON when not on a TTY, key-value pairs only.

A privacy guard runs on every event: values that could carry face data (bytes, arrays, long
numeric sequences) are replaced with a marker before anything is rendered, so a mistake in a
log call cannot leak an embedding, crop or frame.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping, MutableMapping, Sequence, Set
from numbers import Real
from typing import Any

import structlog

REDACTED = "<redacted:face-data>"
#: Numeric sequences longer than this are treated as possible embeddings.
_MAX_NUMERIC_SEQUENCE = 8


def _looks_like_face_data(value: object) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if (
        type(value).__module__ == "numpy"
        and hasattr(value, "shape")
        and getattr(value, "size", 0) > 1
    ):
        return True
    if isinstance(value, Mapping):
        return any(_looks_like_face_data(v) for v in value.values())
    if isinstance(value, Sequence | Set) and not isinstance(value, str):
        # numbers.Real, not float: numpy's float32 scalars (from ``list(embedding)``) count too.
        if len(value) > _MAX_NUMERIC_SEQUENCE and all(isinstance(v, Real) for v in value):
            return True
        return any(_looks_like_face_data(v) for v in value)  # nested: [embedding], {"v": crop}
    return False


def redact_face_data(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    """structlog processor: drop anything shaped like an embedding, crop or frame."""
    for key, value in list(event_dict.items()):
        if _looks_like_face_data(value):
            event_dict[key] = REDACTED
    return event_dict


def format_exception_without_message(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    """structlog processor replacing ``format_exc_info``: the exception's type and where it was
    raised, never its message or values, which may hold whatever the failing code was handling
    (a crop, an embedding)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is None or exc_info is False:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()[1]
    if isinstance(exc_info, tuple):
        exc_info = exc_info[1]
    if isinstance(exc_info, BaseException):
        frames = "".join(traceback.format_tb(exc_info.__traceback__))
        event_dict["exception"] = f"{frames}{type(exc_info).__qualname__} (message withheld)"
    return event_dict


def configure_logging(service: str, *, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog for a service process (call once, at start-up)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_face_data,
            format_exception_without_message,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
