"""The client's side of the wire, pure and synchronous: what to send, what came back.

The protocol package parses what a *server* receives (requests); a client receives the other
half of JSON-RPC (responses and server pushes). Both the async and the blocking client feed
their incoming lines through :func:`parse_incoming` and build their outgoing lines with
:func:`encode_call`, so the rules live in one place and are tested without a socket.

Rules:
1. A line with an ``id`` member and a ``result`` or ``error`` member is a response. Its
   ``error`` becomes the exception of the contract (``error_from_wire``), so a caller can
   ``except LockConflict``.
2. A line with a string ``method`` and no ``id`` is a push (``message``, ``event``,
   ``mesh.shutdown``); its params default to ``{}``.
3. Anything else (bad JSON, a batch, a request from the server) is :class:`Malformed`: the
   client logs it and carries on, because one odd line says nothing about the other calls.
4. A request that would not fit in the broker's line cap is refused here with ``TooLarge``
   and never sent: the broker would answer it with ``id: null``, which matches no call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slm_mesh.protocol import jsonrpc
from slm_mesh.protocol.errors import MeshError, TooLarge, error_from_wire


class ConnectionLost(Exception):
    """The connection to the broker closed; calls that were waiting on it get this.

    The call may or may not have been carried out by the broker. Reconnect (and, for a
    peer, resume) with :meth:`slm_mesh.client.aio.MeshClient.reconnect`.
    """


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to one call: ``error`` is set for an error response, else ``result``."""

    id: Any
    result: Any = None
    error: MeshError | None = None

    def unwrap(self) -> Any:
        """The result, or raise the error it carries."""
        if self.error is not None:
            raise self.error
        return self.result


@dataclass(frozen=True, slots=True)
class Push:
    """A notification from the broker (never answered)."""

    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line the client cannot use; ``reason`` is for the log."""

    reason: str


Incoming = Response | Push | Malformed


def parse_incoming(line: bytes) -> Incoming:
    """Classify one line received from the broker (see the module rules)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return Malformed(f"not JSON: {exc}")
    if not isinstance(value, dict):
        return Malformed(f"expected an object, got {type(value).__name__}")
    if value.get("jsonrpc") != "2.0":
        return Malformed('"jsonrpc" is not "2.0"')
    if "id" in value:
        if "error" in value:
            return Response(value["id"], error=error_from_wire(value["error"]))
        if "result" in value:
            return Response(value["id"], result=value["result"])
        return Malformed("a message with an id but neither result nor error")
    method = value.get("method")
    if isinstance(method, str):
        params = value.get("params")
        return Push(method, {} if params is None else params)
    return Malformed("neither a response nor a notification")


def encode_call(id_: int, method: str, params: dict[str, Any] | None, max_line_bytes: int) -> bytes:
    """One request line; raise ``TooLarge`` rather than build one the broker would refuse."""
    line = jsonrpc.encode(jsonrpc.request(id_, method, {} if params is None else params))
    # The cap counts the line without its newline (protocol.framing rule 1).
    if len(line) - 1 > max_line_bytes:
        raise TooLarge("request line", max_line_bytes)
    return line


def hello_params(client_name: str, token: str | None) -> dict[str, Any]:
    """Params of the opening ``mesh.hello``: the token only where there is one (TCP)."""
    params: dict[str, Any] = {"client": client_name}
    if token is not None:
        params["token"] = token
    return params
