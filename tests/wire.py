"""Test helpers that talk to a real broker: a raw NDJSON connection and broker runners.

No mocks: these start the real broker, in-process (for virtual time) or as a process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from slm_mesh.broker import credentials
from slm_mesh.broker.files import bind_tcp, bind_unix, ensure_private_dir
from slm_mesh.broker.main import open_store
from slm_mesh.broker.server import Broker
from slm_mesh.config import Settings
from slm_mesh.person import login_name

PERSON = "dave"  # the person at the shell in tests (SLM_MESH_PERSON, tests/conftest.py)


def person_of(settings: Settings) -> tuple[str, str]:
    """The person's peer id and shown name at the broker of ``settings``: ``person`` and
    the name on one machine; per machine where several share the store (a PostgreSQL
    URL), as ``person:<login>@<host>`` and ``<name>@<host>``."""
    if settings.store_url is None:
        return "person", settings.person
    return f"person:{login_name()}@{settings.host}", f"{settings.person}@{settings.host}"


def make_settings(root: Path, **overrides: Any) -> Settings:
    data = root / "d"
    base = Settings(data_dir=data, socket_path=data / "broker.sock", tcp_port=0, person=PERSON)
    return replace(base, **overrides)


@contextlib.contextmanager
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (AF_UNIX paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sm-", dir="/tmp") as d:
        yield Path(d)


class RawConn:
    """A raw NDJSON connection: send lines, read answers and notifications."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = b""
        self.notifications: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def unix(cls, path: Path) -> RawConn:
        return cls(await trio.open_unix_socket(str(path)))

    @classmethod
    async def tcp(cls, port: int) -> RawConn:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send_line(self, line: bytes | str) -> None:
        data = line.encode() if isinstance(line, str) else line
        await self.stream.send_all(data if data.endswith(b"\n") else data + b"\n")

    async def read_line(self) -> bytes:
        """The next line, or b"" at EOF."""
        while b"\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    async def read(self) -> Any:
        """The next JSON value (answer or notification); None at EOF."""
        line = await self.read_line()
        return json.loads(line) if line else None

    async def answer(self) -> Any:
        """The next answer, keeping notifications that arrive first."""
        while True:
            msg = await self.read()
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                self.notifications.append(msg)
                continue
            return msg

    async def notification(self, method: str | None = None) -> dict[str, Any]:
        for i, note in enumerate(self.notifications):
            if method is None or note["method"] == method:
                return self.notifications.pop(i)
        while True:
            msg = await self.read()
            assert msg is not None, "connection closed while waiting for a notification"
            if "id" in msg:
                raise AssertionError(f"unexpected answer {msg}")
            if method is None or msg["method"] == method:
                return dict(msg)
            self.notifications.append(msg)

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request and return the whole answer object."""
        self._next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send_line(json.dumps(msg))
        answer = await self.answer()
        assert isinstance(answer, dict), answer
        assert answer.get("id") == self._next_id, answer
        return answer

    async def call(self, method: str, **params: Any) -> Any:
        """Send a request and return its result (fails the test on an error)."""
        answer = await self.request(method, params)
        assert "result" in answer, answer
        return answer["result"]

    async def error(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a request that must fail; return its error object."""
        answer = await self.request(method, params)
        assert "error" in answer, answer
        return dict(answer["error"])

    async def register(self, name: str, cwd: str = "/repo", **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("peer.register", name=name, cwd=cwd, **params)
        return result

    async def aclose(self) -> None:
        await self.stream.aclose()


@dataclass
class InProcessBroker:
    broker: Broker
    settings: Settings
    token: str
    tcp_port: int | None
    opened: list[RawConn] = field(default_factory=list)

    async def connect(self) -> RawConn:
        """A new raw connection, closed when the broker context ends."""
        conn = await RawConn.unix(self.settings.socket_path)
        self.opened.append(conn)
        return conn

    async def connect_tcp(self) -> RawConn:
        assert self.tcp_port is not None
        conn = await RawConn.tcp(self.tcp_port)
        self.opened.append(conn)
        return conn


@contextlib.asynccontextmanager
async def in_process_broker(
    settings: Settings, *, tcp: bool = False, idle_exit_s: float | None = None
) -> AsyncIterator[InProcessBroker]:
    """The real broker on a real Unix socket, in this trio run (so it shares the test's
    clock: autojump_clock moves lock TTLs and grace periods)."""
    ensure_private_dir(settings.data_dir)
    store = open_store(settings)
    sockets = [bind_unix(settings.socket_path, 128)]
    port = None
    if tcp:
        tcp_sock = bind_tcp("127.0.0.1", 0, 128)
        port = tcp_sock.getsockname()[1]
        sockets.append(tcp_sock)
    token = credentials.new_token()
    broker = Broker(settings, store, sockets, idle_exit_s=idle_exit_s, token=token)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            handle = InProcessBroker(broker, settings, token, port)
            try:
                yield handle
            finally:
                for conn in handle.opened:
                    await trio.aclose_forcefully(conn.stream)
                await broker.shutdown()
    finally:
        store.close()
        with contextlib.suppress(FileNotFoundError):
            settings.socket_path.unlink()


def broker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLM_MESH_", "LISTEN_"))}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(
        SLM_MESH_DATA_DIR=str(settings.data_dir),
        SLM_MESH_PORT="0",
        SLM_MESH_PERSON=settings.person,
        **extra,
    )
    if settings.store_url and "SLM_MESH_STORE" not in extra:
        env.update(SLM_MESH_STORE=settings.store_url, SLM_MESH_MESH=settings.mesh_name)
        env.update(SLM_MESH_HOST=settings.host, SLM_MESH_LEASE_S=str(settings.lease_s))
        env.update(SLM_MESH_GRACE_S=str(settings.grace_s))
    return env


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"broker exited with {proc.returncode}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(path))
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise AssertionError(f"broker did not listen on {path} within {timeout} s")


BrokerProcess = contextlib.AbstractContextManager[subprocess.Popen[bytes]]


def broker_process(settings: Settings, *args: str, **env: str) -> BrokerProcess:
    """``slm-mesh broker`` as a real process; stopped by its pid at the end."""
    return broker_command(settings, [sys.executable, "-m", "slm_mesh", "broker", *args], **env)


@contextlib.contextmanager
def broker_command(
    settings: Settings, command: list[str], **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A broker started by ``command`` (serving ``settings``' data dir), as a real
    process, ready once it listens; stopped by its pid at the end."""
    log = open(settings.data_dir.parent / "broker.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        command,
        env=broker_env(settings, **env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        wait_for_socket(settings.socket_path, proc)
        wait_for_started(settings.pid_path, proc)
        yield proc
    finally:
        stop_process(proc)
        log.close()


def wait_for_started(pid_path: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """The socket answers as soon as it is bound; the token, port and pid files follow a
    moment later, the pid file last: wait for it (bounded; a test that needs the files
    finds out by itself if they never come)."""
    deadline = time.monotonic() + timeout
    while not pid_path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def processes_in(data_dir: Path) -> list[int]:
    """Our processes whose environment points ``SLM_MESH_DATA_DIR`` at ``data_dir``."""
    wanted = f"SLM_MESH_DATA_DIR={data_dir}".encode()
    return _processes_where(lambda entry: entry == wanted)


def processes_under(root: Path) -> list[int]:
    """Our processes whose ``SLM_MESH_DATA_DIR`` is ``root`` or a folder inside it."""
    exact = f"SLM_MESH_DATA_DIR={root}".encode()
    inside = exact + b"/"
    return _processes_where(lambda entry: entry == exact or entry.startswith(inside))


def _processes_where(matches: Callable[[bytes], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if any(matches(item) for item in environ.split(b"\0")) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], user
    and system CPU ticks [11] and [12]). Raises ``OSError`` once the process is gone."""
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].decode().split()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = proc_stat(pid)[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used so far; 0.0 once it is gone."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gone(ConnectionError):
    """The broker went away (closed the connection, or was killed)."""


class LineClient:
    """A blocking NDJSON client on a plain socket, independent of slm_mesh.client (so
    tests of the broker don't lean on the code they would be checking)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.next_id = 0

    def send(self, method: str, **params: Any) -> int:
        """Send a request without waiting; its id."""
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as exc:
            raise Gone from exc
        return self.next_id

    def read(self) -> Any:
        """The next message (answer or notification); None once the broker closed."""
        try:
            line = self.file.readline()
        except OSError as exc:
            raise Gone from exc
        return json.loads(line) if line else None

    def answer(self) -> dict[str, Any]:
        """The next answer, skipping notifications.

        Raises:
            Gone: the connection closed first.
        """
        while True:
            msg = self.read()
            if msg is None:
                raise Gone
            if "id" in msg:
                return dict(msg)

    def request(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a request and return its whole answer (result or error)."""
        self.send(method, **params)
        return self.answer()

    def call(self, method: str, **params: Any) -> Any:
        """Send a request that must succeed; its result."""
        answer = self.request(method, **params)
        assert "result" in answer, answer
        return answer["result"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()
