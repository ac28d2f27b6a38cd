"""How to launch the real Triton Inference Server that the ``nvidia-pytriton`` wheel ships.

This module only *describes* the command (argv + environment) and assembles the Python-backend
folder Triton needs; it never starts a process. The embedded runtime (``lfr up``) and the test
fixtures supervise the process themselves.

What works on these machines (DESIGN §6): the wheel's ``tritonserver`` binary, a backend folder
holding ``libtriton_python.so``, ``triton_python_backend_utils.py`` and the stub built for this
Python version, ``LD_LIBRARY_PATH`` including ``<site-packages>/nvidia_pytriton.libs``, and numpy
< 2 in the stub's environment (the stub sees this interpreter's site-packages via ``PYTHONPATH``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from lfr.common.errors import ConfigError

__all__ = [
    "MODEL_REPOSITORY_ENV",
    "TritonDistribution",
    "default_model_repository",
    "find_triton",
    "triton_command",
]

#: Environment variable that overrides where the Triton model repository is.
MODEL_REPOSITORY_ENV = "LFR_MODEL_REPOSITORY"

_INSTALL_HINT = "install it with `uv sync --all-packages` or `pip install nvidia-pytriton`"


class TritonDistribution:
    """Paths inside the installed ``nvidia-pytriton`` wheel."""

    __slots__ = ("backend_utils", "binary", "libs", "python_backend", "stub")

    def __init__(self, root: Path, libs: Path, python_version: str) -> None:
        self.binary = root / "tritonserver" / "bin" / "tritonserver"
        self.python_backend = root / "tritonserver" / "backends" / "python" / "libtriton_python.so"
        self.backend_utils = self.python_backend.with_name("triton_python_backend_utils.py")
        self.stub = (
            root
            / "tritonserver"
            / "python_backend_stubs"
            / python_version
            / "triton_python_backend_stub"
        )
        self.libs = libs


def find_triton(python_version: str | None = None) -> TritonDistribution:
    """Locate the Triton server shipped by ``nvidia-pytriton`` without importing pytriton.

    ``python_version`` (``"3.11"``) picks the Python-backend stub; default: this interpreter's.

    Raises :class:`ConfigError` with a one-line fix when anything needed is missing.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"Triton server not found: the nvidia-pytriton wheel is missing; {_INSTALL_HINT}"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    dist = TritonDistribution(root, root.parent / "nvidia_pytriton.libs", version)
    if not dist.binary.is_file() or not os.access(dist.binary, os.X_OK):
        raise ConfigError(
            f"Triton server binary missing or not executable at {dist.binary}; "
            f"reinstall nvidia-pytriton ({_INSTALL_HINT})"
        )
    for needed, what in (
        (dist.python_backend, "Python backend library"),
        (dist.backend_utils, "Python backend utilities"),
        (dist.stub, f"Python backend stub for Python {version}"),
    ):
        if not needed.is_file():
            raise ConfigError(
                f"Triton {what} missing at {needed}; use Python 3.11 and reinstall "
                f"nvidia-pytriton ({_INSTALL_HINT})"
            )
    if not dist.libs.is_dir():
        raise ConfigError(
            f"Triton shared libraries missing at {dist.libs}; reinstall nvidia-pytriton "
            f"({_INSTALL_HINT})"
        )
    try:
        numpy_version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "numpy is not installed; the Triton Python backend needs numpy<2"
        ) from None
    if int(numpy_version.split(".")[0]) >= 2:
        raise ConfigError(
            f"numpy {numpy_version} is installed but the Triton Python backend stub needs numpy<2; "
            "run `pip install 'numpy<2'`"
        )
    return dist


def default_model_repository() -> Path:
    """The Triton model repository to serve.

    ``$LFR_MODEL_REPOSITORY`` wins; otherwise the ``models/`` folder of the source checkout this
    package runs from (found by walking up from this file). Raises :class:`ConfigError` when
    neither exists, e.g. for a wheel install without the environment variable set.
    """
    override = os.environ.get(MODEL_REPOSITORY_ENV)
    if override:
        path = Path(override).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"{MODEL_REPOSITORY_ENV}={override} is not a directory")
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "models"
        if (candidate / "face_embed" / "config.pbtxt").is_file():
            return candidate
    raise ConfigError(
        "Triton model repository not found; set "
        f"{MODEL_REPOSITORY_ENV} to the lfr checkout's models/ folder"
    )


def _assemble_backend_dir(dist: TritonDistribution, work_dir: Path) -> Path:
    """Create ``work_dir/backends/python`` with the three files Triton's Python backend needs."""
    backends = work_dir / "backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src, name in (
        (dist.python_backend, "libtriton_python.so"),
        (dist.backend_utils, "triton_python_backend_utils.py"),
        (dist.stub, "triton_python_backend_stub"),
    ):
        dst = python_dir / name
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            continue
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copy2(src, tmp)
        tmp.replace(dst)
    return backends


def _prepend(path_list: Sequence[str], existing: str | None) -> str:
    parts = [p for p in path_list if p]
    if existing:
        parts.extend(p for p in existing.split(os.pathsep) if p and p not in parts)
    return os.pathsep.join(parts)


def triton_command(
    model_repository: Path,
    *,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    work_dir: Path,
    bind_address: str = "127.0.0.1",
    models: Sequence[str] | None = None,
    base_env: Mapping[str, str] | None = None,
    log_verbose: int = 0,
) -> tuple[list[str], dict[str, str]]:
    """Argv and full environment to run the real ``tritonserver`` on CPU.

    * ``work_dir`` receives ``backends/python`` (assembled here, idempotently).
    * ``models=None`` loads every model in the repository (``--model-control-mode=none``);
      a list loads only those (``explicit`` mode with ``--load-model``).
    * ``base_env`` defaults to ``os.environ``; the returned dict is complete (pass it as ``env=``).

    The server is ready when ``GET http://<bind>:<http_port>/v2/health/ready`` answers 200
    (or gRPC ``ServerReady``); startup takes a few seconds per model on CPU.
    """
    repo = Path(model_repository).resolve()
    if not repo.is_dir():
        raise ConfigError(f"Triton model repository {repo} is not a directory")
    dist = find_triton()
    work_dir = Path(work_dir).resolve()
    backends = _assemble_backend_dir(dist, work_dir)

    # Unique per server so two Triton processes on one host never share Python-backend shm.
    shm_prefix = "lfr_" + hashlib.sha1(f"{work_dir}:{grpc_port}".encode()).hexdigest()[:10] + "_"

    argv = [
        str(dist.binary),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--grpc-address={bind_address}",
        f"--grpc-port={grpc_port}",
        f"--http-address={bind_address}",
        f"--http-port={http_port}",
        f"--metrics-address={bind_address}",
        f"--metrics-port={metrics_port}",
        "--allow-grpc=true",
        "--allow-http=true",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        "--pinned-memory-pool-byte-size=0",
        "--log-info=true",
        "--log-warning=true",
        "--log-error=true",
        f"--log-verbose={log_verbose}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--backend-config=python,shm-default-byte-size=16777216",
        "--backend-config=python,shm-growth-byte-size=8388608",
    ]
    if models is None:
        argv.append("--model-control-mode=none")
    else:
        argv.append("--model-control-mode=explicit")
        argv.extend(f"--load-model={name}" for name in models)

    env = dict(os.environ if base_env is None else base_env)
    lib_dirs = [str(dist.libs)]
    # Let the stub embed this interpreter's libpython (and so its stdlib) when it is shared;
    # otherwise the stub falls back to the system libpython3.X.
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlibrary and (Path(libdir) / f"{ldlibrary}.1.0").exists():
        lib_dirs.append(str(libdir))
    env["LD_LIBRARY_PATH"] = _prepend(lib_dirs, env.get("LD_LIBRARY_PATH"))
    # The stub's interpreter must see this environment's packages (numpy<2, dlib, cv2).
    site_dirs = list(
        dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    )
    env["PYTHONPATH"] = _prepend(site_dirs, env.get("PYTHONPATH"))
    env["PATH"] = _prepend([str(Path(sys.executable).parent)], env.get("PATH"))
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # No GPU here; keep CUDA from probing for one.
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    # dlib/numpy in each model instance: one thread each, so instances don't oversubscribe cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return argv, env
