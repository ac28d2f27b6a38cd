"""The embedded runtime tells every service where each of its dependencies listens."""

from __future__ import annotations

import importlib

import pytest
from pydantic_settings import BaseSettings

from lfr_cli.runtime import SERVICES, Ports, service_env

LINK_SUFFIXES = ("_addr", "_url")


def _settings_class(name: str) -> type[BaseSettings]:
    module = importlib.import_module(f"lfr_{name}.settings")
    return next(
        cls
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseSettings)
        and cls.__module__ == module.__name__
    )


@pytest.mark.parametrize("name", SERVICES)
def test_every_dependency_address_a_service_reads_is_set(name: str) -> None:
    settings_cls = _settings_class(name)
    links = [field for field in settings_cls.model_fields if field.endswith(LINK_SUFFIXES)]
    env = service_env(name, Ports(), base={})
    prefix = f"LFR_{name.upper()}_"
    missing = [
        f"{prefix}{field.upper()}" for field in links if f"{prefix}{field.upper()}" not in env
    ]
    assert missing == []
    settings = settings_cls.model_validate(
        {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    )
    assert getattr(settings, "port", None) == getattr(Ports(), name)
