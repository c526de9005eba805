"""Error codes of the wire contract and the exception hierarchy that carries them.

One base, :class:`MeshError` (code, message, data); each subclass fixes its code. The broker
has one place that turns exceptions into JSON-RPC errors (``jsonrpc.error_for``);
anything that is not a ``MeshError`` becomes ``-32603`` with no traceback on the wire.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# slm-mesh application errors (ARCHITECTURE.md §4)
NOT_REGISTERED = -32001
PEER_NOT_FOUND = -32002
LOCK_CONFLICT = -32003
VERSION_CONFLICT = -32004
TOO_LARGE = -32005
RATE_LIMITED = -32006
QUOTA_EXCEEDED = -32007
SHUTTING_DOWN = -32008
UNAUTHORIZED = -32010
STORE_UNAVAILABLE = -32011

ERROR_NAMES: dict[int, str] = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal_error",
    NOT_REGISTERED: "not_registered",
    PEER_NOT_FOUND: "peer_not_found",
    LOCK_CONFLICT: "lock_conflict",
    VERSION_CONFLICT: "version_conflict",
    TOO_LARGE: "too_large",
    RATE_LIMITED: "rate_limited",
    QUOTA_EXCEEDED: "quota_exceeded",
    SHUTTING_DOWN: "shutting_down",
    UNAUTHORIZED: "unauthorized",
    STORE_UNAVAILABLE: "store_unavailable",
}


class MeshError(Exception):
    """An error that goes on the wire as a JSON-RPC error object."""

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code

    def to_wire(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(MeshError):
    code = PARSE_ERROR


class InvalidRequest(MeshError):
    code = INVALID_REQUEST


class MethodNotFound(MeshError):
    code = METHOD_NOT_FOUND


class InvalidParams(MeshError):
    code = INVALID_PARAMS

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid params: {field}: {message}", {"field": field})
        self.field = field


class InternalError(MeshError):
    code = INTERNAL_ERROR


class NotRegistered(MeshError):
    code = NOT_REGISTERED


class PeerNotFound(MeshError):
    code = PEER_NOT_FOUND


class LockConflict(MeshError):
    code = LOCK_CONFLICT


class VersionConflict(MeshError):
    code = VERSION_CONFLICT


class TooLarge(MeshError):
    code = TOO_LARGE

    def __init__(self, what: str, limit: int | float, unit: str = "bytes") -> None:
        super().__init__(
            f"{what} is over the limit of {limit} {unit}", {"limit": limit, "field": what}
        )


class RateLimited(MeshError):
    code = RATE_LIMITED


class QuotaExceeded(MeshError):
    code = QUOTA_EXCEEDED


class ShuttingDown(MeshError):
    code = SHUTTING_DOWN


class Unauthorized(MeshError):
    code = UNAUTHORIZED


class StoreUnavailable(MeshError):
    """The shared store (PostgreSQL mode) can't be reached: nothing was done, unless
    ``data.maybe_done`` (the store did not answer within the call's deadline: the call
    may still be done); ``data.retry_after`` says when trying again makes sense (seconds)."""

    code = STORE_UNAVAILABLE


_BY_CODE: dict[int, type[MeshError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        NotRegistered,
        PeerNotFound,
        LockConflict,
        VersionConflict,
        TooLarge,
        RateLimited,
        QuotaExceeded,
        ShuttingDown,
        Unauthorized,
        StoreUnavailable,
    )
}


def error_from_wire(error: Any) -> MeshError:
    """Rebuild the exception for an error object received from the other side.

    A known code gives its subclass (so clients can ``except LockConflict``); an unknown one
    a plain :class:`MeshError` that keeps the code.
    """
    if not isinstance(error, dict):
        return InternalError(f"malformed error object: {error!r}")
    code = error.get("code")
    message = str(error.get("message", ""))
    data = error.get("data")
    if not isinstance(code, int):
        return InternalError(f"malformed error object: {error!r}")
    cls = _BY_CODE.get(code, MeshError)
    exc = cls.__new__(cls)
    MeshError.__init__(exc, message, data, code=code)
    return exc
