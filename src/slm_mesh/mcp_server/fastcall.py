"""``tools/call`` answered beside the SDK's generic dispatch, for the requests it would
hand to our handler unchanged.

For every request the SDK's dispatcher parses the message into pydantic models, starts an
anyio task with its own cancel scope, builds a request context, runs the middleware
chain, validates the params twice and the result once more: about half of the server's
CPU on a tool call (0.57-0.65 ms -> 0.23-0.37 ms measured without it, 3,000 sequential
``mesh_state get``). The ten-session throughput target needs that half, so the common
request skips it; everything else (``initialize``, ``tools/list``, ``ping``, every
notification, any request out of the ordinary) still goes through the SDK.

Rules:
1. Taken here: ``{"jsonrpc": "2.0", "id": <int or str>, "method": "tools/call",
   "params": {"name": <str>, "arguments": <object, optional>}}`` with no other member
   (``_meta`` may carry a progress token, ``task`` asks for a task), once the SDK has
   accepted ``initialize`` on a handshake-era protocol version. Anything else is left
   to the SDK, untouched.
2. The answer is the SDK's: the result has the shape of the same per-version surface
   (``mcp_types.methods.serialize_server_result``; built directly for the versions in
   :data:`WIRE_VERSIONS`, which saves building, validating and dumping three pydantic
   models per call, ~50 us of ~240) and a handler exception becomes the same error
   (``handler_exception_to_error_data``, else code 0). tests/mcp/test_fastcall.py
   compares both paths call by call, and the built shape with the SDK's.
3. ``notifications/cancelled`` for a call in flight here cancels it and nothing is
   answered (MCP: the receiver must not respond to a cancelled request); the
   notification still goes on to the SDK, which ignores an id it does not know.
4. A call cut off by the server's shutdown is answered with ``CONNECTION_CLOSED``, as
   the SDK answers its own.
5. At most :data:`MAX_IN_FLIGHT` calls run here at once; past that, requests go to the
   SDK, whose bounded read-ahead then stops the reading of stdin (a client that floods
   calls gets backpressure, not an unbounded pile of tasks).
6. A tool that is one broker call runs without a task of its own when it can
   (:meth:`slm_mesh.mcp_server.tools.Tools.start`): its broker call goes out from here,
   and its answer is written from the broker connection's reader, two passes of the event
   loop and no task per call instead of four and one (the ten-session load spends most of
   the server's CPU on that machinery). Only on a handshake-era version this file builds
   the result of (:data:`WIRE_VERSIONS`), and while stdout takes answers without waiting;
   else, and whenever the call can't go out at once, it runs in a task. A call the peer
   cancelled is not answered; one still waiting at shutdown is answered
   ``CONNECTION_CLOSED`` (:meth:`FastCalls.abandon`).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio
from mcp.server.connection import Connection
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp_types import methods as mcp_methods
from mcp_types.jsonrpc import CONNECTION_CLOSED, INTERNAL_ERROR
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

if TYPE_CHECKING:
    from slm_mesh.mcp_server.stdio import StdoutMessages
    from slm_mesh.mcp_server.tools import Done, Finished, ToolResult

log = logging.getLogger(__name__)

METHOD = "tools/call"
CANCELLED = "notifications/cancelled"
_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAM_KEYS = frozenset({"name", "arguments"})
_MARKERS = (b'"tools/call"', b'"notifications/cancelled"')
MAX_IN_FLIGHT = 64
# Protocol versions whose tools/call surface ToolResult.wire() builds as the SDK would
# (tests/mcp/test_fastcall.py compares them); any other goes through the SDK's surface.
WIRE_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})


class ToolRunner(Protocol):
    async def run(self, name: str, arguments: dict[str, Any] | None) -> ToolResult: ...

    def start(self, name: str, arguments: dict[str, Any] | None, done: Done) -> bool: ...


class ToolSource(Protocol):
    """Where the tools come from (the server's ``ToolBox``, which imports them lazily)."""

    @property
    def tools(self) -> ToolRunner: ...


class _InFlight:
    __slots__ = ("id", "peer_cancelled", "scope", "tasked")

    def __init__(self, id_: int | str) -> None:
        self.id = id_
        self.scope: trio.CancelScope | None = None  # its task's, once it runs in one
        self.peer_cancelled = False
        self.tasked = False


class FastCalls:
    """Takes the plain ``tools/call`` lines off the stdin pump (rule 1)."""

    def __init__(
        self,
        box: ToolSource,
        connection: Connection,
        out: StdoutMessages,
        nursery: trio.Nursery,
    ) -> None:
        self._box = box
        self._connection = connection
        self._out = out
        self._nursery = nursery
        self._in_flight: dict[Any, _InFlight] = {}

    @property
    def pending(self) -> int:
        """Calls taken here and not yet answered (or dropped, when cancelled)."""
        return len(self._in_flight)

    def intercept(self, line: bytes) -> bool:
        """True if ``line`` was taken here; False to hand it to the SDK."""
        if not any(marker in line for marker in _MARKERS):
            return False
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return False
        if not isinstance(message, dict):
            return False
        method = message.get("method")
        if method == CANCELLED:
            self._peer_cancel(message.get("params"))
            return False  # rule 3: the SDK sees it too
        if method != METHOD or not self._eligible(message):
            return False
        params, id_ = message["params"], message["id"]
        key = coerce_request_id(id_)
        call = self._in_flight[key] = _InFlight(id_)  # counted from now
        name, arguments = params["name"], params.get("arguments")
        if self._untasked_ok():  # rule 6
            done = functools.partial(self._done, key, call, name, arguments)
            if self._box.tools.start(name, arguments, done):
                return True
        self._run_in_task(call, functools.partial(self._result, name, arguments))
        return True

    def _untasked_ok(self) -> bool:
        eager = self._out.eager
        return (
            self._connection.protocol_version in WIRE_VERSIONS and eager.queued <= eager.high_water
        )

    def _done(
        self, key: Any, call: _InFlight, name: str, arguments: Any, finished: Finished
    ) -> None:
        """Where a call run without a task ends (rule 6): see ``tools.Finished``."""
        current = self._in_flight.get(key) is call  # else abandoned at shutdown, answered
        if not current or call.peer_cancelled:  # no answer is wanted
            if current:
                del self._in_flight[key]
            if inspect.iscoroutine(finished):
                finished.close()  # never awaited: say nothing of it on stderr
            return
        if finished is None:  # the connection dropped: again, in a task
            self._run_in_task(call, functools.partial(self._result, name, arguments))
            return
        if inspect.isawaitable(finished):
            self._run_in_task(call, functools.partial(_wire_of, finished))
            return
        del self._in_flight[key]
        if isinstance(finished, Exception):
            self._send(_error_answer(call.id, finished))
        else:
            self._send({"jsonrpc": "2.0", "id": call.id, "result": finished.wire()})

    def _run_in_task(
        self, call: _InFlight, produce: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        call.tasked = True
        self._nursery.start_soon(self._call, call, produce)

    def abandon(self) -> None:
        """Shutdown: answer ``CONNECTION_CLOSED`` to every call still waiting for the
        broker without a task (those in a task are answered as they are cancelled)."""
        for key, call in list(self._in_flight.items()):
            if not call.tasked:
                del self._in_flight[key]
                if not call.peer_cancelled:
                    self._send(_closed(call.id))

    def _eligible(self, message: dict[str, Any]) -> bool:
        id_ = message.get("id")
        params = message.get("params")
        return (
            len(self._in_flight) < MAX_IN_FLIGHT
            and message.keys() <= _REQUEST_KEYS
            and message.get("jsonrpc") == "2.0"
            and (type(id_) is int or type(id_) is str)
            and isinstance(params, dict)
            and params.keys() <= _PARAM_KEYS
            and type(params.get("name")) is str
            and ("arguments" not in params or isinstance(params["arguments"], dict))
            and self._connection.initialize_accepted
            and self._connection.protocol_version not in MODERN_PROTOCOL_VERSIONS
        )

    def _peer_cancel(self, params: Any) -> None:
        request_id = params.get("requestId") if isinstance(params, dict) else None
        if type(request_id) is not int and type(request_id) is not str:
            return
        call = self._in_flight.get(coerce_request_id(request_id))
        if call is not None:
            call.peer_cancelled = True
            if call.scope is not None:
                call.scope.cancel()

    async def _call(
        self, call: _InFlight, produce: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        id_ = call.id
        key = coerce_request_id(id_)
        answer: dict[str, Any] | None = None
        call.scope = trio.CancelScope()
        if call.peer_cancelled:
            call.scope.cancel()
        try:
            with call.scope:
                result = await produce()
                answer = {"jsonrpc": "2.0", "id": id_, "result": result}
        except trio.Cancelled:
            if not call.peer_cancelled:  # rule 4: shutdown
                self._send(_closed(id_))
            raise
        except Exception as exc:  # rule 2: as the SDK's dispatcher answers
            answer = _error_answer(id_, exc)
        finally:
            if self._in_flight.get(key) is call:
                del self._in_flight[key]
        if answer is not None and not call.peer_cancelled:
            self._send(answer)
            await self._out.eager.wait_for_room()

    async def _result(self, name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
        return self._wire(await self._box.tools.run(name, arguments))

    def _wire(self, result: ToolResult) -> dict[str, Any]:
        if self._connection.protocol_version in WIRE_VERSIONS:
            return result.wire()
        dumped = result.model().model_dump(by_alias=True, mode="json", exclude_none=True)
        try:
            wire: dict[str, Any] = mcp_methods.serialize_server_result(
                METHOD, self._connection.protocol_version, dumped
            )
        except ValidationError:
            # As the SDK's runner: a server bug; the detail stays in the log.
            log.exception("handler for %r returned an invalid result", METHOD)
            message = "Handler returned an invalid result"
            raise MCPError(code=INTERNAL_ERROR, message=message) from None
        return wire

    def _send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        try:
            self._out.eager.write(line)
        except Exception as exc:  # the client is gone (anyio Broken/ClosedResourceError)
            log.debug("dropped the answer to a tool call: %r", exc)


async def _wire_of(result: Awaitable[ToolResult]) -> dict[str, Any]:
    """A result awaited on a handshake-era version (rule 6): built directly."""
    return (await result).wire()


def _closed(id_: int | str) -> dict[str, Any]:
    error = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
    return {"jsonrpc": "2.0", "id": id_, "error": error}


def _error_answer(id_: int | str, exc: Exception) -> dict[str, Any]:
    """A handler's exception as the SDK's dispatcher answers it (rule 2)."""
    data = handler_exception_to_error_data(exc)
    if data is None:
        log.error("handler for %r raised", METHOD, exc_info=exc)
        error: dict[str, Any] = {"code": 0, "message": str(exc)}
    else:
        error = data.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {"jsonrpc": "2.0", "id": id_, "error": error}
