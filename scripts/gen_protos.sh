#!/usr/bin/env bash
# Generates Python code (and mypy stubs) for protos/lfr/v1/*.proto into the shared library.
# The one way generated code is produced; `make proto-check` fails when it drifts.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/libs/lfr-core/src}"
py="${PYTHON:-$root/.venv/bin/python}"
# protoc finds the mypy-protobuf plugins on PATH.
export PATH="$(dirname "$py"):$PATH"
rm -f "$out"/lfr/v1/*_pb2*.py "$out"/lfr/v1/*_pb2*.pyi
"$py" -m grpc_tools.protoc \
  -I "$root/protos" \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --mypy_out="$out" \
  --mypy_grpc_out="$out" \
  "$root"/protos/lfr/v1/*.proto
