"""Service settings: environment variables with a per-service prefix, parsed once at start-up.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``LFR_MATCH_`` ...).
Bad configuration fails fast with one line naming the variable and what is wrong.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lfr.common.errors import ConfigError

MiB = 1024 * 1024


class ServiceSettings(BaseSettings):
    """What every lfr service needs; subclasses add their own fields and prefix."""

    model_config = SettingsConfigDict(env_prefix="LFR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 binds a free port (tests)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    #: Seconds in-flight RPCs get to finish after SIGTERM.
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    max_receive_message_bytes: int = Field(default=16 * MiB, gt=0)
    max_send_message_bytes: int = Field(default=16 * MiB, gt=0)
    keepalive_time_s: float = Field(default=30.0, gt=0)
    keepalive_timeout_s: float = Field(default=10.0, gt=0)
    #: How often dependency health is re-checked for grpc.health.v1.
    health_interval_s: float = Field(default=2.0, gt=0)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Parse settings from the environment, turning validation errors into one clear line."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            problems.append(f"{prefix}{field.upper()}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
