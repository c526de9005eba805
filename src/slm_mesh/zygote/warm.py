"""The warm process: imports everything an MCP server needs once, then forks one server per
agent session.

Rules:
1. It forks only from its single-threaded main loop (never inside trio.run, never with a
   thread alive), after ``gc.freeze()``, so the children share its pages copy-on-write.
2. One per data dir: an exclusive flock on ``zygote.lock``; a second one exits 0.
3. A child is tied to its launcher's connection: when the launcher goes away (even by
   SIGKILL) the child is sent SIGTERM, then SIGKILL after ``KILL_AFTER_S``. Signals the
   launcher receives are forwarded. When a child ends, its exit code goes back to the
   launcher. A child whose pid cannot be sent to its launcher (gone already) is killed at
   once. No child outlives its launcher.
4. A launcher of another version (upgrade, other venv) is told so; the warm process then
   exits once its own children are done, and a new one is started for the new code.
5. It exits after ``idle_exit_s`` with no child.
6. While it serves it keeps ``zygote.json`` in the data dir (``{pid, idle_exit_s}``, 0600)
   for ``slm-mesh status``; ``slm-mesh stop`` sends ``{"op": "retire"}`` on its socket, and
   it retires as in rule 4: no new session, exit once its children are done.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slm_mesh.config import Settings
from slm_mesh.zygote import wire
from slm_mesh.zygote.early import from_spawn_request

log = logging.getLogger("slm_mesh.zygote")

KILL_AFTER_S = 2.0
ACCEPT_TIMEOUT_S = 2.0
DEFAULT_IDLE_EXIT_S = 600.0


@dataclass
class Child:
    pid: int
    conn: socket.socket
    reader: wire.LineReader
    kill_at: float | None = None


@dataclass
class WarmProcess:
    settings: Settings
    target: Callable[[bytes, dict[int, bytes]], int]
    idle_exit_s: float = DEFAULT_IDLE_EXIT_S
    version: str = field(default_factory=wire.code_version)
    release_lock: Callable[[], None] = lambda: None
    children: dict[int, Child] = field(default_factory=dict)
    retiring: bool = False
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    own_fds: list[int] = field(default_factory=list)

    def run(self, listener: socket.socket) -> int:
        sel = self.sel
        wake_r, wake_w = os.pipe()
        self.own_fds = [wake_r, wake_w]
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        # Handlers (not SIG_IGN) so the wake-up fd fires; SIGTERM/SIGINT end the loop.
        stop = []
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        sel.register(listener, selectors.EVENT_READ, "accept")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        idle_since = time.monotonic()
        try:
            while not stop:
                timeout = self._timeout(idle_since)
                for key, _ in sel.select(timeout):
                    if key.data == "accept":
                        self._accept(listener)
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 4096)
                    else:
                        self._from_launcher(key.data)
                self._reap()
                self._enforce_kills()
                if self.children:
                    idle_since = time.monotonic()
                elif self.retiring or time.monotonic() - idle_since >= self.idle_exit_s:
                    break
        finally:
            for child in list(self.children.values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            sel.close()
            listener.close()
        return 0

    def _timeout(self, idle_since: float) -> float:
        waits = [self.idle_exit_s - (time.monotonic() - idle_since)]
        waits += [c.kill_at - time.monotonic() for c in self.children.values() if c.kill_at]
        return max(0.01, min(waits))

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(ACCEPT_TIMEOUT_S)
        try:
            request, fds = wire.receive_with_fds(conn)
        except OSError:
            conn.close()
            return
        try:
            if request is not None and request.get("op") == "retire" and not fds:
                wire.send(conn, {"retiring": True, "sessions": len(self.children)})
                conn.close()
                self._retire(listener)
                return
            early = from_spawn_request(request) if request is not None else None
            if (
                request is None
                or request.get("op") != "spawn"
                or len(fds) != wire.FD_COUNT
                or early is None
            ):
                wire.send(conn, {"error": "bad spawn request"})
                conn.close()
                return
            if request.get("version") != self.version:
                wire.send(conn, {"error": "version mismatch: a new warm process will start"})
                conn.close()
                self._retire(listener)
                return
            pid = os.fork()
            if pid == 0:
                self._become_session(request, early, fds, conn, listener)  # never returns
            try:
                wire.send(conn, {"pid": pid})
            except OSError:
                # The launcher is gone, or serves in-process now: nobody would follow this
                # server, and a launcher still alive would share the agent's stdin with
                # it. SIGKILL: SIGTERM could land before the child resets our handler.
                # _reap reaps it, as any child of ours.
                os.kill(pid, signal.SIGKILL)
                raise
        except OSError:
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        conn.setblocking(False)
        child = Child(pid, conn, wire.LineReader(conn))
        self.children[pid] = child
        self.sel.register(conn, selectors.EVENT_READ, child)

    def _retire(self, listener: socket.socket) -> None:
        """Make way for a warm process of the launcher's version, or stop (rule 6): stop
        listening and drop the lock now; exit once our own children are done."""
        if self.retiring:
            return
        self.retiring = True
        self.sel.unregister(listener)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            Path(wire.socket_path(self.settings.socket_path)).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.settings.data_dir / wire.INFO_FILE).unlink()  # ours: we hold the lock still
        self.release_lock()

    def _become_session(
        self,
        request: dict[str, object],
        early: tuple[bytes, dict[int, bytes]],
        fds: list[int],
        conn: socket.socket,
        listener: socket.socket,
    ) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            # Nothing of the warm process's own stays open in a session.
            for child in self.children.values():
                child.conn.close()
            listener.close()
            conn.close()
            self.sel.close()  # the epoll fd: the server's loop has its own
            for fd in self.own_fds:
                os.close(fd)
            self.release_lock()
            os.setsid()
            for target_fd, fd in enumerate(fds):
                os.dup2(fd, target_fd)
            for fd in fds:
                os.close(fd)
            cwd = request.get("cwd")
            if isinstance(cwd, str):
                with contextlib.suppress(OSError):
                    os.chdir(cwd)
            env = request.get("env")
            if isinstance(env, dict):
                os.environ.clear()
                os.environ.update({str(k): str(v) for k, v in env.items()})
            os.environ["SLM_MESH_AGENT_PID"] = str(request.get("parent_pid", ""))
            argv = request.get("argv")
            if isinstance(argv, list):
                sys.argv = [str(a) for a in argv]
            code = self.target(*early)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _from_launcher(self, child: Child) -> None:
        messages, closed = child.reader.read_available()
        for msg in messages:
            signum = msg.get("signum")
            if msg.get("op") == "signal" and isinstance(signum, int) and 0 < signum < 65:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)
        if closed and child.kill_at is None:
            # The launcher is gone (killed?): its server must not outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            child.kill_at = time.monotonic() + KILL_AFTER_S

    def _enforce_kills(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.kill_at is not None and now >= child.kill_at:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                child.kill_at = now + 3600  # once

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue  # e.g. the broker we spawned, now daemonised
            with contextlib.suppress(OSError):
                child.conn.setblocking(True)
                child.conn.settimeout(1.0)
                wire.send(child.conn, {"exit": os.waitstatus_to_exitcode(status)})
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(child.conn)
            child.conn.close()


def start_broker_early(settings: Settings) -> None:
    """If no broker answers, start one now (detached), so it is up by the time the first
    session needs it. Never waits and starts no thread: the warm process must stay
    single-threaded to fork safely."""
    from slm_mesh.private_files import socket_answers

    if socket_answers(settings.socket_path):
        return
    with open(settings.log_path, "ab") as log_file:
        subprocess.Popen(
            [sys.executable, "-m", "slm_mesh", "broker", "--idle-exit", str(settings.idle_exit_s)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            cwd=settings.data_dir,
        )


def preload() -> Callable[[bytes, dict[int, bytes]], int]:
    """Import everything a session needs; return the session's entry point. What a child
    imports after the fork is private to it: anyio loads its trio backend lazily."""
    import anyio._backends._trio
    import anyio.streams.stapled
    import anyio.streams.tls  # noqa: F401

    from slm_mesh.mcp_server import main
    from slm_mesh.mcp_server import preload as server_preload

    server_preload()
    return main


def serve(settings: Settings, idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> int:
    from slm_mesh.private_files import bind_unix, ensure_private_dir, try_flock, write_private

    ensure_private_dir(settings.data_dir)
    os.chdir(settings.data_dir)  # hold no directory of the user's open
    lock_fd = try_flock(settings.data_dir / wire.LOCK_FILE)
    if lock_fd is None:
        print("slm-mesh: a warm process is already running", file=sys.stderr)
        return 0
    held = [lock_fd]

    def release_lock() -> None:
        while held:
            os.close(held.pop())

    path = Path(wire.socket_path(settings.socket_path))
    info = settings.data_dir / wire.INFO_FILE
    try:
        write_private(info, json.dumps({"pid": os.getpid(), "idle_exit_s": idle_exit_s}))
        start_broker_early(settings)
        # The collector would walk the growing heap over and over while mcp builds its
        # models (~10% of the preload, which every first session waits for), and a full
        # collection before the freeze costs 70 ms to find ~2,600 dead objects: freeze
        # them with the rest instead.
        gc.disable()
        target = preload()
        listener = bind_unix(path, 128)
        gc.freeze()  # keep the preloaded objects' pages shared with every child
        gc.enable()
        warm = WarmProcess(settings, target, idle_exit_s, release_lock=release_lock)
        return warm.run(listener)
    finally:
        if held:  # still ours: nobody else can have bound the path or written the file
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(FileNotFoundError):
                info.unlink()
        release_lock()
