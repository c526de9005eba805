"""The launcher's first answers: ``initialize`` and ``tools/list`` while the warm process
starts, so the first session of the day does not wait for it to import the MCP SDK.

Rules:
1. Only on the way to a warm process that is not there yet: the launcher reads stdin
   while it waits for one (:meth:`EarlyAnswers.pause`).
2. It answers a request only where the server would answer it the same, byte for byte:
   the first ``initialize``, of a plain shape (:func:`plain_initialize`) and a protocol
   version of the prebuilt table; then ``tools/list`` with no params or ``{}``. Ids must
   be integers. The answers are the server's own (:mod:`slm_mesh.zygote.prebuilt`,
   generated from the real server by ``python -m slm_mesh.mcp_server.prebuild``; tests
   compare them with a real server process's answers, byte for byte).
3. Notifications are kept and reading goes on. At the first message it does not answer,
   a line that is not one JSON object, or end of input, it stops reading: the server
   answers that one.
4. Everything read goes to the server, which reads it first, as if it came now
   (``early``); the server does not write its own answers to what was answered here
   (``answered``: id -> the line written), and logs an error if one differs.

Stdlib C modules only, like the rest of the launcher (``select``, not ``selectors``).
"""

from __future__ import annotations

import os
import select
import time

from slm_mesh.zygote import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# At most this much is read here: a request that big is not one answered here, and all
# of it travels to the warm process in the spawn message (wire.MAX_MESSAGE_BYTES).
MAX_INPUT_BYTES = 65_536
MAX_ID = 2**53  # ids beyond a double's integers: left to the server
_INITIALIZE_KEYS = frozenset({"protocolVersion", "capabilities", "clientInfo"})
_CLIENT_INFO_KEYS = frozenset({"name", "version", "title"})
_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})


def _is_flag_object(value: object, keys: frozenset[str]) -> bool:
    """``{}`` or an object of booleans under ``keys``."""
    return type(value) is dict and all(k in keys and type(v) is bool for k, v in value.items())


def _plain_capabilities(caps: object) -> bool:
    if type(caps) is not dict:
        return False
    for key, value in caps.items():
        if key == "roots":
            ok = _is_flag_object(value, frozenset({"listChanged"}))
        elif key in ("sampling", "elicitation"):
            ok = value == {}
        elif key == "experimental":
            ok = type(value) is dict and all(type(v) is dict for v in value.values())
        else:
            ok = False
        if not ok:
            return False
    return True


def plain_initialize(params: object, versions: dict[str, Any]) -> str | None:
    """The protocol version of ``initialize`` params of the shapes answered here
    (rule 2), else None: protocolVersion, capabilities and clientInfo only; capabilities
    among roots, sampling, elicitation and experimental; clientInfo of strings (name,
    version, title)."""
    if type(params) is not dict or params.keys() != _INITIALIZE_KEYS:
        return None
    version = params["protocolVersion"]
    info = params["clientInfo"]
    if type(version) is not str or version not in versions:
        return None
    if not _plain_capabilities(params["capabilities"]):
        return None
    if type(info) is not dict or not ({"name", "version"} <= info.keys() <= _CLIENT_INFO_KEYS):
        return None
    if not all(type(v) is str for v in info.values()):
        return None
    return version


class EarlyAnswers:
    """Reads stdin and answers what it can while the launcher waits (see the rules)."""

    def __init__(self, fd_in: int = 0, fd_out: int = 1) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.input = b""  # everything read: the server reads it first
        self.answered: dict[int, bytes] = {}
        self.reading = True
        self._rest = b""  # read, not yet a whole line
        self._version: str | None = None  # negotiated by the initialize answered here

    def spawn_fields(self) -> dict[str, Any]:
        """What the spawn request carries for the server (rule 4): bytes as latin-1 text."""
        if not self.input:
            return {}
        answered = {str(k): v.decode("latin-1") for k, v in self.answered.items()}
        return {"early": {"input": self.input.decode("latin-1"), "answered": answered}}

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, answering what comes meanwhile (rule 1); what is there to
        read is read first, even after the time is up."""
        deadline = time.monotonic() + seconds
        while self.reading:
            try:
                ready, _, _ = select.select(
                    [self.fd_in], [], [], max(0.0, deadline - time.monotonic())
                )
            except (OSError, ValueError):
                self.reading = False
                break
            if not ready:
                return
            self._receive()
        left = deadline - time.monotonic()
        if left > 0:
            time.sleep(left)

    def _receive(self) -> None:
        room = MAX_INPUT_BYTES - len(self.input)
        try:
            chunk = os.read(self.fd_in, room) if room > 0 else b""
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.reading = False
            return
        self.input += chunk
        self._rest += chunk
        while self.reading and b"\n" in self._rest:
            line, _, self._rest = self._rest.partition(b"\n")
            self.reading = self._take(line)

    def _take(self, line: bytes) -> bool:
        """Answer or keep one line; False to stop reading (rule 3)."""
        message = wire.decode(line)
        if message is None or message.get("jsonrpc") != "2.0":
            return False
        if "id" not in message:
            return "method" in message and type(message["method"]) is str  # a notification
        answer = self._answer(message)
        if answer is None:
            return False
        try:
            _write_all(self.fd_out, answer)
        except OSError:
            return False
        self.answered[message["id"]] = answer
        return True

    def _answer(self, message: dict[str, Any]) -> bytes | None:
        from slm_mesh.zygote import prebuilt

        request_id = message["id"]
        if type(request_id) is not int or not -MAX_ID < request_id < MAX_ID:
            return None
        if request_id in self.answered:
            return None
        if not message.keys() <= _REQUEST_KEYS:
            return None
        method = message.get("method")
        params = message.get("params")
        if method == "initialize" and self._version is None and not self.answered:
            version = plain_initialize(params, prebuilt.INITIALIZE)
            if version is None:
                return None
            self._version = version
            head, tail = prebuilt.INITIALIZE[version]
        elif method == "tools/list" and self._version is not None and params in (None, {}):
            if "params" in message and params is None:
                return None  # "params": null is not "no params"
            head, tail = prebuilt.TOOLS_LIST[self._version]
        else:
            return None
        return head + str(request_id).encode() + tail


def from_spawn_request(request: dict[str, Any]) -> tuple[bytes, dict[int, bytes]] | None:
    """``(input, answered)`` from a spawn request's ``early`` (``(b"", {})`` without one),
    or None if it is malformed."""
    early = request.get("early", {})
    if type(early) is not dict or early.keys() - {"input", "answered"}:
        return None
    text = early.get("input", "")
    answered = early.get("answered", {})
    if type(text) is not str or type(answered) is not dict:
        return None
    try:
        lines = {int(k): v.encode("latin-1") for k, v in answered.items()}
        return text.encode("latin-1"), lines
    except (ValueError, AttributeError, UnicodeEncodeError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a non-blocking pipe that is full: wait for room
            select.select([], [fd], [])
            continue
        view = view[written:]
