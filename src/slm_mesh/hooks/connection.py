"""The hooks' connection to the broker: one batch of calls, one write, one read.

Where the broker listens is read as :mod:`slm_mesh.locations` and
:mod:`slm_mesh.client.address` read it (the Unix socket, else TCP on loopback with the
token), with ``posix`` and ``_socket`` instead of :mod:`os` and :mod:`socket`
(``tests/hooks/test_lean.py`` checks that the two agree).
"""

import _socket
import posix
import time

from slm_mesh import leanjson
from slm_mesh.hooks.process import getenv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# How long a hook may wait for the broker before it gives up and lets the agent go on.
TIMEOUT_S = 0.15
TIMEOUT_ENV = "SLM_MESH_HOOK_TIMEOUT_MS"
TCP_HOST = "127.0.0.1"
RECEIVE_BYTES = 65536
# A call without a deadline (the Stop hook's wait) asks this often whether it is still wanted.
STILL_WANTED_POLL_S = 1.0


class Unreachable(Exception):
    """No broker answered (or it answered nothing usable in time)."""


class CallError(Exception):
    """The broker answered one call of the batch with an error."""

    def __init__(self, error: "Any") -> None:
        error = error if isinstance(error, dict) else {}
        super().__init__(str(error.get("message", "error")))
        self.code = error.get("code")
        self.data = error.get("data")


def budget_s() -> float:
    """How long the hook may wait for the broker in all: ``SLM_MESH_HOOK_TIMEOUT_MS``."""
    raw = getenv(TIMEOUT_ENV)
    try:
        return float(raw) / 1000 if raw else TIMEOUT_S
    except ValueError:
        return TIMEOUT_S


_budget_from = time.monotonic()  # its input read, or the end of its last slow step


def restart_budget() -> None:
    """The whole budget again, from now: after a step the agent waits for anyway
    (starting the broker at session start, the Stop hook's wait)."""
    global _budget_from
    _budget_from = time.monotonic()


def timeout_s() -> float:
    """What is left of the budget for the next exchange: connecting, a batch and its
    acknowledgements share one budget, so a broker that answers the first and then
    stalls holds the hook no longer than one that never answers (never below 1 ms)."""
    return max(0.001, budget_s() - (time.monotonic() - _budget_from))


def _home() -> str:
    home = getenv("HOME")
    if home:
        return home
    import pwd

    return pwd.getpwuid(posix.getuid()).pw_dir


def _expanduser(path: str) -> str:
    """As :func:`os.path.expanduser` does it on POSIX."""
    if not path.startswith("~"):
        return path
    user, slash, rest = path[1:].partition("/")
    if user:
        import pwd

        try:
            home = pwd.getpwnam(user).pw_dir
        except KeyError:
            return path
    else:
        home = _home()
    return (home.rstrip("/") or "/") if not slash else home.rstrip("/") + "/" + rest


def data_dir() -> str:
    raw = getenv("SLM_MESH_DATA_DIR")
    return _expanduser(raw) if raw else _home().rstrip("/") + "/.slm-mesh"


def socket_path(data: str) -> str:
    raw = getenv("SLM_MESH_SOCKET")
    if raw:
        return _expanduser(raw)
    runtime = getenv("XDG_RUNTIME_DIR")
    if runtime and not getenv("SLM_MESH_DATA_DIR"):
        return runtime.rstrip("/") + "/slm-mesh/broker.sock"
    return data.rstrip("/") + "/broker.sock"


def _read_small(path: str) -> str | None:
    try:
        fd = posix.open(path, posix.O_RDONLY)
    except OSError:
        return None
    try:
        return posix.read(fd, 4096).decode("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        posix.close(fd)


class Broker:
    """A connection to the broker (see :meth:`connect`)."""

    def __init__(self, sock: _socket.socket, token: str | None) -> None:
        self.sock = sock
        self.token = token  # TCP: the first call must be mesh.hello with it
        self.pending = b""  # what was read past the last line

    @classmethod
    def connect(cls, timeout: float) -> "Broker":
        """Connect to the broker of this data dir.

        Raises:
            Unreachable: nothing answers there.
        """
        data = data_dir()
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path(data))
            return cls(sock, None)
        except OSError:
            sock.close()
        port = _read_small(data.rstrip("/") + "/port")
        if port is None or not port.isdigit():
            raise Unreachable("no broker is running")
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((TCP_HOST, int(port)))
        except OSError as exc:
            sock.close()
            raise Unreachable(f"no broker answers at {TCP_HOST}:{port}: {exc}") from None
        return cls(sock, _read_small(data.rstrip("/") + "/broker.token"))

    def batch(
        self,
        calls: "list[tuple[str, dict[str, Any]]]",
        timeout: float | None,
        still_wanted: "Callable[[], bool] | None" = None,
    ) -> "list[Any]":
        """Send ``calls`` as one batch and return each one's result, or a
        :class:`CallError` in its place. ``timeout``: seconds for the whole exchange
        (None: no limit). ``still_wanted()``, if given, is asked every
        :data:`STILL_WANTED_POLL_S` while the answer is awaited, and the wait ends when
        it says no.

        Raises:
            Unreachable: the connection failed, no answer came in time, or it is no
                longer wanted.
        """
        if self.token is not None:
            calls = [("mesh.hello", {"token": self.token}), *calls]
        request = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(leanjson.encode(request))
            answers = self._read_answer(deadline, still_wanted)
        except OSError as exc:  # TimeoutError is one
            raise Unreachable(f"the broker did not answer: {exc}") from None
        if not isinstance(answers, list):  # one error for the whole batch (-32600…)
            raise Unreachable(f"the broker refused the batch: {answers!r}")
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        out: list[Any] = []
        for i in range(len(calls)):
            answer = by_id.get(i, {})
            out.append(answer["result"] if "result" in answer else CallError(answer.get("error")))
        return out[1:] if self.token is not None else out

    def _read_answer(
        self, deadline: float | None, still_wanted: "Callable[[], bool] | None"
    ) -> "Any":
        """The next line that is not a notification (the broker may push one to any
        connection acting as a session: ``peer.detached`` when that session ends)."""
        while True:
            line = self._read_line(deadline, still_wanted)
            try:
                value = leanjson.loads(line)
            except ValueError:
                raise Unreachable("the broker's answer is not JSON") from None
            if not (isinstance(value, dict) and "method" in value and "id" not in value):
                return value

    def _read_line(
        self, deadline: float | None, still_wanted: "Callable[[], bool] | None" = None
    ) -> bytes:
        buf = self.pending
        while b"\n" not in buf:
            wait = None
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError("timed out")
            if still_wanted is not None:
                wait = STILL_WANTED_POLL_S if wait is None else min(wait, STILL_WANTED_POLL_S)
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(RECEIVE_BYTES)
            except TimeoutError:
                if still_wanted is None:
                    raise
                if not still_wanted():
                    raise ConnectionAbortedError("no longer wanted") from None
                continue  # (the deadline, if any, is checked above)
            if not chunk:
                raise ConnectionResetError("the broker closed the connection")
            buf += chunk
        line, _, self.pending = buf.partition(b"\n")
        return line

    def close(self) -> None:
        self.sock.close()
