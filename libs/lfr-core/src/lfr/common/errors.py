"""One exception hierarchy for the whole suite, mapped to gRPC status codes in one place.

Domain code raises these; the server interceptor (``lfr.common.interceptors``) turns them into
the matching status. Messages must name the problem and must never carry face data.
"""

from __future__ import annotations

import grpc


class LfrError(Exception):
    """Base of every error lfr raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    #: Short machine-readable reason (e.g. ``NO_FACE``); sent as trailing metadata ``lfr-reason``.
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class InvalidArgument(LfrError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFound(LfrError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(LfrError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(LfrError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class PermissionDenied(LfrError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class ResourceExhausted(LfrError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(LfrError):
    """A dependency (Redis, Triton, another service) cannot be reached; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class DeadlineExceeded(LfrError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Unimplemented(LfrError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class ConfigError(LfrError):
    """Bad configuration detected at start-up; the process prints it and exits non-zero."""

    reason = "CONFIG"


_BY_CODE: dict[grpc.StatusCode, type[LfrError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
    )
}


def from_rpc_error(err: grpc.RpcError, *, what: str) -> LfrError:
    """Translate a failed outbound call into the hierarchy, naming the peer in ``what``."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, LfrError)
    return cls(f"{what}: {details}")
