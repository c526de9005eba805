"""Advisory locks from the shell: ``lock list|check|acquire|release``.

Rules:
1. ``lock check PATH…`` is read-only and anonymous: every lock counts as someone else's.
   It exits 1 when any path is locked, naming each holder and when its lock expires, so a
   commit hook can use it.
2. ``lock acquire PATH [-- COMMAND…]`` works like flock(1). It joins the mesh as a peer
   session of its own (agent ``slm-mesh-cli``), takes the lock (queueing up to ``--wait``
   seconds), and holds it while COMMAND runs, renewing it when half its TTL has passed;
   then it releases it and exits with COMMAND's status (128 + N when a signal N ended
   COMMAND; 126/127 when it could not be run). SIGTERM and SIGHUP are passed on to
   COMMAND; Ctrl-C reaches COMMAND from the terminal, and the lock is held until COMMAND
   has exited. Without COMMAND it holds the lock until Ctrl-C, or until ``lock release``
   releases it from another shell.
3. A lock belongs to its session, and without ``force`` the broker lets only that session
   release it. ``lock release`` therefore resumes the session of a ``lock acquire`` holder
   on this machine (saved by :mod:`slm_mesh.cli.shell_sessions`), releases the lock and
   ends that session; the holder sees the ``lock_released`` event and exits. Agents' locks
   end when the agent releases them, its session ends, or their TTL runs out, or when the
   person releases one from ``slm-mesh top`` or with ``lock release --holder NAME --force``
   (``lock.release`` with ``force``; the agent is told by a message).
4. ``lock release --holder NAME --force PATH…`` asks nothing: it is a command. It checks
   its arguments before calling the broker (exit 2), releases NAME's lock on each PATH,
   and exits 1 if NAME held none on some PATH (naming the locks NAME does hold).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from slm_mesh.cli import render, shell_sessions, workspace
from slm_mesh.cli.connect import connect, load_settings
from slm_mesh.cli.outcome import FAILED, OK, CliError, usage
from slm_mesh.cli.render import BOLD, DIM, YELLOW, Output
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.client.wire import ConnectionLost
from slm_mesh.config import Settings
from slm_mesh.person import bare
from slm_mesh.protocol.errors import MeshError

HOLDER_AGENT = "slm-mesh-cli"
CALL_MARGIN_S = 10.0  # a waiting lock.acquire gets this long beyond its wait to answer
MIN_RENEW_S = 0.05
NOT_FOUND = 127
NOT_EXECUTABLE = 126
SIGNAL_BASE = 128
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def describe_holder(lock: dict[str, Any], now: float | None = None) -> str:
    """``alice (claude-code), exclusive, expires in 8 min: refactoring auth``."""
    text = str(lock.get("holder") or lock.get("peer_id"))
    if lock.get("agent"):
        text += f" ({lock['agent']})"
    text += f", {lock['mode']}, {render.expires(lock['expires_at'], now)}"
    if lock.get("reason"):
        text += f": {lock['reason']}"
    return text


# -- list / check ----------------------------------------------------------------------


def list_(out: Output, prefix: str | None) -> int:
    """List the locks held now (on paths starting with ``prefix``)."""
    params: dict[str, Any] = {}
    if prefix:
        params["prefix"] = workspace.lock_path(prefix, workspace.cwd())
    settings = load_settings()
    with connect(settings) as client:
        locks: list[dict[str, Any]] = client.call("lock.list", params)["locks"]
    if out.as_json:
        out.json({"locks": locks})
        return OK
    if not locks:
        out.line("no locks held" + (f" under {params['prefix']}" if prefix else ""))
        return OK
    now = time.time()
    rows = [
        [
            render.home_relative(lock["path"]),
            lock["mode"],
            lock["holder"] or lock["peer_id"],
            lock["agent"] or "-",
            render.expires(lock["expires_at"], now),
            lock["reason"] or "",
        ]
        for lock in locks
    ]
    styles = [["", YELLOW if r[1] == "exclusive" else "", BOLD, "", "", DIM] for r in rows]
    out.table(["PATH", "MODE", "HOLDER", "AGENT", "EXPIRES", "REASON"], rows, styles=styles)
    return OK


def check(out: Output, paths: Sequence[str]) -> int:
    """Exit 1 when any of ``paths`` is locked, naming the holders (rule 1)."""
    settings = load_settings()
    with connect(settings) as client:
        result = client.call("lock.check", {"paths": list(paths), "cwd": workspace.cwd()})
    conflicts: list[dict[str, Any]] = result["conflicts"]
    if out.as_json:
        out.json({"conflicts": conflicts})
    now = time.time()
    for conflict in conflicts:
        for lock in conflict["holders"]:
            out.error(
                f"{render.home_relative(conflict['path'])} is locked by "
                f"{describe_holder(lock, now)}"
            )
    if conflicts:
        return FAILED
    if not out.as_json:
        count = len(paths)
        out.line(f"not locked: {'all ' + str(count) + ' paths' if count > 1 else paths[0]}")
    return OK


# -- acquire ---------------------------------------------------------------------------


def acquire(
    out: Output,
    path: str,
    command: Sequence[str],
    *,
    mode: str,
    ttl: float | None,
    wait: float,
    reason: str | None,
    name: str | None,
) -> int:
    """Take the lock on ``path`` and hold it while ``command`` runs, or until Ctrl-C
    (rule 2)."""
    settings = load_settings()
    cwd = workspace.cwd()
    summary = f"lock {path}" + (f" for `{' '.join(command)}`" if command else "")
    with connect(settings) as client:
        if name is None:  # the person's: it gets a suffix, the person's name being taken
            name = bare(str(client.call("mesh.status")["person"]["name"]))
        me = client.call(
            "peer.register",
            {
                "name": name,
                "agent": HOLDER_AGENT,
                "pid": os.getpid(),
                "cwd": cwd,
                "git_root": workspace.git_root(),
                "summary": summary[:500],
            },
        )
        params: dict[str, Any] = {"path": path, "mode": mode, "wait": wait}
        if ttl is not None:
            params["ttl"] = ttl
        if reason:
            params["reason"] = reason
        try:
            lock = client.call("lock.acquire", params, timeout=wait + CALL_MARGIN_S)["lock"]
        except BaseException:
            _leave(client)
            raise
        holder = Holder(out, client, lock, me["peer_id"])
        with _saved_session(settings, me, lock, cwd):
            if out.as_json:
                out.json_line({"acquired": lock, "peer_id": me["peer_id"]})
            status = holder.hold_while(command) if command else holder.hold_until_interrupted()
        holder.let_go()
        if out.as_json:
            out.json_line({"released": holder.released, "path": lock["path"], "status": status})
        return status


def _leave(client: BlockingClient) -> None:
    """End this connection's session now, rather than leave it away for the grace period."""
    with contextlib.suppress(MeshError, ConnectionLost, TimeoutError, OSError):
        client.call("peer.unregister")


@contextmanager
def _saved_session(
    settings: Settings, me: dict[str, Any], lock: dict[str, Any], cwd: str
) -> Iterator[None]:
    saved_at = shell_sessions.holder_path(settings, me["peer_id"])
    shell_sessions.save(
        saved_at,
        {
            "peer_id": me["peer_id"],
            "name": me["name"],
            "resume_token": me["resume_token"],
            "pid": os.getpid(),
            "path": lock["path"],
            "cwd": cwd,
        },
    )
    try:
        yield
    finally:
        shell_sessions.remove(saved_at)


class Holder:
    """Keeps one granted lock alive: renews it, notices when it is taken away, and
    releases it at the end."""

    def __init__(
        self, out: Output, client: BlockingClient, lock: dict[str, Any], peer_id: str
    ) -> None:
        self.out = out
        self.client = client
        self.lock = lock
        self.peer_id = peer_id
        self.ttl = max(float(lock["expires_at"]) - float(lock["acquired_at"]), MIN_RENEW_S)
        self.interval = max(self.ttl / 2, MIN_RENEW_S)
        self.next_renew = time.monotonic() + self.interval
        self.held = True
        self.released = False

    # -- with a command ----------------------------------------------------------------

    def hold_while(self, command: Sequence[str]) -> int:
        path = self.lock["path"]
        self.out.note(
            f"locked {path} ({self.lock['mode']}, {render.expires(self.lock['expires_at'])}, "
            f"renewed while `{command[0]}` runs)"
        )
        try:
            proc = subprocess.Popen(list(command))
        except FileNotFoundError:
            self.out.error(f"{command[0]}: command not found")
            return NOT_FOUND
        except PermissionError as exc:
            self.out.error(f"{command[0]}: can't run it: {exc.strerror}")
            return NOT_EXECUTABLE
        with _forward_signals(proc):
            while True:
                try:
                    status = proc.wait(timeout=self._until_renew())
                except subprocess.TimeoutExpired:
                    self._renew_or_warn()
                    continue
                except KeyboardInterrupt:
                    continue  # the terminal sent Ctrl-C to COMMAND too: wait for it to end
                break
        return SIGNAL_BASE - status if status < 0 else status

    # -- without a command -------------------------------------------------------------

    def hold_until_interrupted(self) -> int:
        path = self.lock["path"]
        self.client.call("event.subscribe", {"types": ["lock_released", "lock_expired"]})
        self.out.note(
            f"holding {self.lock['mode']} lock on {path} "
            f"(renewed every {render.span(self.interval)}); Ctrl-C to release it"
        )
        try:
            while True:
                try:
                    method, params = next(self.client.notifications(timeout=self._until_renew()))
                except TimeoutError:
                    self._renew_or_warn()
                    if not self.held:
                        return FAILED
                    continue
                except StopIteration:
                    raise ConnectionLost("the broker closed the connection") from None
                if method == "mesh.shutdown":
                    self.held = False
                    raise CliError(f"the broker is stopping: the lock on {path} is lost", FAILED)
                if method == "event" and self._is_mine(params):
                    self.held = False
                    if params["type"] == "lock_expired":
                        self.out.error(f"the lock on {path} expired")
                        return FAILED
                    self.out.note(f"the lock on {path} was released by `slm-mesh lock release`")
                    return OK
        except KeyboardInterrupt:
            return OK

    def _is_mine(self, event: dict[str, Any]) -> bool:
        data = event.get("data") or {}
        return bool(
            event.get("type") in ("lock_released", "lock_expired")
            and data.get("peer_id") == self.peer_id
            and data.get("path") == self.lock["path"]
        )

    # -- renewing and releasing --------------------------------------------------------

    def _until_renew(self) -> float:
        return max(self.next_renew - time.monotonic(), 0.0)

    def _renew_or_warn(self) -> None:
        self.next_renew = time.monotonic() + self.interval
        if not self.held:
            self.next_renew = float("inf")
            return
        try:
            self.client.call("lock.renew", {"path": self.lock["path"], "ttl": self.ttl})
        except (MeshError, ConnectionLost, TimeoutError) as exc:
            self.held = False
            self.next_renew = float("inf")
            self.out.error(f"the lock on {self.lock['path']} is no longer held: {exc}")

    def let_go(self) -> None:
        """Release the lock and end the session (best effort: a session that is gone has
        released its locks already)."""
        if self.held:
            try:
                self.client.call("lock.release", {"path": self.lock["path"]})
                self.released = True
                self.client.call("peer.unregister")
            except (MeshError, ConnectionLost, TimeoutError) as exc:
                self.out.error(f"releasing {self.lock['path']} failed: {exc}")
            self.held = False
        if self.released:
            self.out.note(f"released {self.lock['path']}")


@contextmanager
def _forward_signals(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Pass SIGTERM and SIGHUP on to ``proc`` while it runs (rule 2)."""

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- release ---------------------------------------------------------------------------


def release(out: Output, paths: Sequence[str], release_all: bool) -> int:
    """Release locks held by ``lock acquire`` holders of this machine (rule 3)."""
    if not paths and not release_all:
        raise usage("name the PATH to release, or give --all")
    settings = load_settings()
    cwd = workspace.cwd()
    targets = [workspace.lock_path(p, cwd) for p in paths]
    saved = {record["peer_id"]: (file, record) for file, record in shell_sessions.holders(settings)}
    released: list[str] = []
    refused: list[dict[str, Any]] = []
    with connect(settings) as client:
        locks: list[dict[str, Any]] = client.call("lock.list", {})["locks"]
    ours = [
        lock
        for lock in locks
        if lock["peer_id"] in saved and (release_all or lock["path"] in targets)
    ]
    for lock in ours:
        file, record = saved[lock["peer_id"]]
        _release_for(settings, record, lock["path"])
        shell_sessions.remove(file)
        released.append(lock["path"])
    now = time.time()
    for target in targets:
        if target in released:
            continue
        others = [lock for lock in locks if lock["path"] == target]
        if others:
            reason = "held by " + "; ".join(describe_holder(lock, now) for lock in others)
            reason += " — not by a `slm-mesh lock acquire` on this machine"
        else:
            reason = "not locked"
        refused.append({"path": target, "reason": reason, "holders": others})
    if out.as_json:
        out.json({"released": released, "not_released": refused})
    else:
        for path in released:
            out.line(f"released {path}")
        if release_all and not released:
            out.line("no locks are held by `slm-mesh lock acquire` on this machine")
    for item in refused:
        out.error(f"{item['path']}: {item['reason']}")
    return FAILED if refused else OK


def _release_for(settings: Settings, record: dict[str, Any], path: str) -> None:
    """Resume the holder's session, release ``path`` and end the session."""
    with connect(settings) as client:
        joined = client.call(
            "peer.register",
            {"resume": record["resume_token"], "cwd": record.get("cwd") or "/"},
        )
        if joined["resumed"] and joined["peer_id"] == record["peer_id"]:
            client.call("lock.release", {"path": path})
        client.call("peer.unregister")  # ends the holder's session (or the new one)


def release_forced(
    out: Output,
    paths: Sequence[str],
    holder: str | None,
    force: bool,
    *,
    release_all: bool,
    reason: str | None,
) -> int:
    """Release ``holder``'s lock on each of ``paths`` as the person (rule 4)."""
    if not force:
        raise usage("releasing another session's lock (--holder, --reason) needs --force")
    if holder is None or not holder.strip():
        raise usage("--force needs --holder NAME: the session whose lock it is")
    if release_all:
        raise usage("--force releases the locks on the PATHs you name, not --all")
    if not paths:
        raise usage("name the PATH of the lock to release")
    settings = load_settings()
    cwd = workspace.cwd()
    targets = [workspace.lock_path(p, cwd) for p in paths]
    released: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    with connect(settings) as client:
        for target in targets:
            params: dict[str, Any] = {"path": target, "holder": holder, "force": True}
            if reason:
                params["reason"] = reason
            result = client.call("lock.release", params)
            if result["released"]:
                released.append({"path": target, **result})
            else:
                refused.append({"path": target, "holder": result["holder"]})
        held = client.call("lock.list", {})["locks"] if refused else []
    for item in refused:
        theirs = [lock for lock in held if item["holder"] in (lock["holder"], lock["peer_id"])]
        item["holders"] = theirs
        paths_held = ", ".join(lock["path"] for lock in theirs) or "none"
        item["reason"] = f"{item['holder']} holds no lock on it (its locks: {paths_held})"
    if out.as_json:
        out.json(
            {
                "released": [item["path"] for item in released],
                "not_released": [
                    {k: v for k, v in item.items() if k != "holder"} for item in refused
                ],
                "holder": (released or refused)[0]["holder"],
                "message_ids": [item["message_id"] for item in released if "message_id" in item],
            }
        )
    else:
        for item in released:
            out.line(f"released {item['holder']}'s lock on {item['path']} (they were told)")
    for item in refused:
        out.error(f"{item['path']}: {item['reason']}")
    return FAILED if refused else OK
