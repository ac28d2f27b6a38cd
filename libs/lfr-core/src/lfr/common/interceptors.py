"""The one place errors become gRPC statuses, and the one log line per RPC.

``LfrError`` subclasses map to their status code, with the reason in the ``lfr-reason``
trailing metadata. ``NotImplementedError`` becomes UNIMPLEMENTED. Anything else becomes INTERNAL
with a generic message: the details go to the log, never to the caller.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from lfr.common.errors import LfrError, Unimplemented
from lfr.common.logging import get_logger

log = get_logger("lfr.rpc")
REASON_METADATA_KEY = "lfr-reason"


def _as_lfr_error(exc: BaseException, method: str) -> LfrError | None:
    if isinstance(exc, LfrError):
        return exc
    if isinstance(exc, NotImplementedError):
        return Unimplemented(f"{method} is not implemented yet")
    return None


def _is_abort(exc: BaseException) -> bool:
    """``context.abort`` raises an internal exception that must pass through untouched."""
    return type(exc).__name__ == "AbortError"


class _RpcLog:
    """Times one RPC and writes its canonical log line."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.start = time.perf_counter()

    def done(
        self, context: Any, error: LfrError | None = None, crash: BaseException | None = None
    ) -> None:
        fields: dict[str, Any] = {
            "method": self.method,
            "latency_ms": round((time.perf_counter() - self.start) * 1000, 3),
        }
        if crash is not None:
            log.error(
                "rpc", status="INTERNAL", error_type=type(crash).__name__, exc_info=crash, **fields
            )
        elif error is not None:
            log.info(
                "rpc", status=error.code.name, reason=error.reason, error=error.message, **fields
            )
        else:
            log.info("rpc", status=_status_name(context), **fields)


def _status_name(context: Any) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    return "OK"


async def _abort(context: Any, rpc: _RpcLog, exc: BaseException) -> None:
    error = _as_lfr_error(exc, rpc.method)
    if error is None:
        rpc.done(context, crash=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")
    else:
        rpc.done(context, error=error)
        await context.abort(
            error.code, error.message, trailing_metadata=((REASON_METADATA_KEY, error.reason),)
        )


class ErrorAndLoggingInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps exceptions to statuses and writes one canonical log line per RPC."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method

        if handler.unary_unary or handler.stream_unary:
            inner: Any = handler.unary_unary or handler.stream_unary

            async def unary_response(request: Any, context: Any) -> Any:
                rpc = _RpcLog(method)
                try:
                    response = inner(request, context)
                    if inspect.isawaitable(response):
                        response = await response
                except Exception as exc:
                    if _is_abort(exc):
                        rpc.done(context)
                        raise
                    await _abort(context, rpc, exc)
                    raise
                rpc.done(context)
                return response

            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
            return make(
                unary_response,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        inner_stream: Any = handler.unary_stream or handler.stream_stream

        async def stream_response(request: Any, context: Any) -> AsyncIterator[Any]:
            rpc = _RpcLog(method)
            try:
                responses = inner_stream(request, context)
                if inspect.isawaitable(responses):  # handler writes with context.write()
                    await responses
                else:
                    async for response in responses:
                        yield response
            except Exception as exc:
                if _is_abort(exc):
                    rpc.done(context)
                    raise
                await _abort(context, rpc, exc)
                raise
            rpc.done(context)

        make_stream = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return make_stream(
            stream_response,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
