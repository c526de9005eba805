"""A PostgreSQL cluster for the tests of the shared store: one per test session.

Made from the system's server binaries (Debian's ``postgresql``; ``tests/outside.py`` finds
them, or skips with advice, or under CI fails): ``initdb`` into a private temp dir, the
server on a private Unix socket dir and a free port, no TCP (unless asked), trust
authentication, ``fsync=off`` (nothing here must survive a power cut). ``initdb`` refuses
to run as root, so as root the cluster belongs to the ``postgres`` user (``runuser``).
Each test takes a mesh of its own (a schema: ``SLM_MESH_MESH``), so tests never see each
other's peers. Stopped by its pid file and removed at the end.

A cluster never outlives the process that made it (its owner), even one killed with
SIGKILL: a watchdog process of its own (``python tests/pg.py watch``, in a session of its
own so a signal to the test run's process group spares it) waits for the owner to exit and
then stops the server and removes its folder. Should the watchdog die too, the next
:func:`cluster` call of any test run stops every cluster under ``/tmp/sm-pg-*`` whose
owner (pid and start time, in its ``owner`` file) is gone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
PREFIX = "sm-pg-"
OWNER_FILE = "owner"  # "<pid> <start time>" of the process the cluster belongs to
WATCH_POLL_S = 1.0  # where pidfd_open is missing: how often the watchdog looks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env() -> dict[str, str]:
    """The environment the server starts with: none of ours (the tests' leak guard looks
    for processes by ``SLM_MESH_DATA_DIR``, and the server outlives any one test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}


def _as_server(cmd: list[str]) -> list[str]:
    """``cmd`` run as the server's owner: ``postgres`` when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return cmd


@dataclass
class Cluster:
    bindir: Path
    root: Path  # data in root/data, the socket in root
    port: int
    tcp: str = ""  # the address it also listens on, if any
    durable: bool = False  # fsync and synchronous commits as a real server has them

    @property
    def url(self) -> str:
        """A libpq URL for the ``postgres`` database over the Unix socket."""
        return f"postgresql:///postgres?host={self.root}&port={self.port}&user={SERVER_USER}"

    def tcp_url(self) -> str:
        assert self.tcp, "this cluster listens on no TCP address"
        return f"postgresql://{SERVER_USER}@{self.tcp}:{self.port}/postgres"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_server([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args]),
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
            env=_server_env(),
        )

    def start(self) -> None:
        addresses = self.tcp or ""
        options = f"-k {self.root} -p {self.port} -c listen_addresses='{addresses}' "
        options += "-c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.ctl("-l", str(self.root / "server.log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        """Stop the server (connections are cut) and start it again."""
        self.stop("fast")
        self.start()


def mesh_name() -> str:
    """A fresh mesh (schema) name for one test."""
    return "t" + secrets.token_hex(6)


@contextlib.contextmanager
def cluster(
    bindir: str, *, tcp: str = "", hba: str = "", durable: bool = False
) -> Iterator[Cluster]:
    """A new cluster, torn down at the end (or when this process dies: see the module
    doc). ``tcp``: an address to listen on too, with ``hba`` lines (pg_hba.conf) saying who
    may connect over it; ``durable``: fsync on (for benchmarks)."""
    stop_orphans(Path(bindir))
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
    watchdog: subprocess.Popen[bytes] | None = None
    try:
        (root / OWNER_FILE).write_text(_identity(os.getpid()) or "")
        watchdog = _watch(root, bindir)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        subprocess.run(
            _as_server(
                [
                    str(Path(bindir) / "initdb"),
                    "-D",
                    str(root / "data"),
                    "-A",
                    "trust",
                    "-U",
                    SERVER_USER,
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            capture_output=True,
            check=True,
            timeout=120,
        )
        if hba:
            hba_path = root / "data" / "pg_hba.conf"
            subprocess.run(
                _as_server(["sh", "-c", f"printf '%s\\n' '{hba}' >> {hba_path}"]), check=True
            )
        found = Cluster(Path(bindir), root, _free_port(), tcp, durable)
        found.start()
        try:
            yield found
        finally:
            found.stop("immediate")  # -w: returns once the server is down
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()


# -- clusters whose owner died -----------------------------------------------------------


def _identity(pid: int) -> str | None:
    """``"<pid> <start time>"`` of a running process (the start time tells a reused pid
    apart), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid} ?"  # no /proc (macOS): the pid alone
    fields = stat.rsplit(b")", 1)[-1].split()
    if fields[0] == b"Z":
        return None
    return f"{pid} {fields[19].decode()}"


def _owner_alive(root: Path) -> bool | None:
    """Whether the process that made the cluster in ``root`` still runs (None: no owner
    recorded, e.g. made by an older tests/pg.py or still being made)."""
    try:
        owner = (root / OWNER_FILE).read_text().strip()
    except OSError:
        return None
    if not owner:
        return None
    return _identity(int(owner.split()[0])) == owner


def stop_cluster_at(root: Path, bindir: Path) -> None:
    """Stop the server of the cluster in ``root`` (if one runs) and remove the folder."""
    if (root / "data" / "postmaster.pid").exists():
        pg_ctl = str(bindir / "pg_ctl")
        subprocess.run(
            _as_server([pg_ctl, "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
            timeout=60,
            env=_server_env(),
        )
    shutil.rmtree(root, ignore_errors=True)


def stop_orphans(bindir: Path) -> list[Path]:
    """Stop every cluster under ``/tmp/sm-pg-*`` whose owner is gone; return their
    folders."""
    stopped = []
    for root in Path("/tmp").glob(PREFIX + "*"):
        if root.is_dir() and _owner_alive(root) is False:
            stop_cluster_at(root, bindir)
            stopped.append(root)
    return stopped


def _watch(root: Path, bindir: str) -> subprocess.Popen[bytes]:
    """Start the watchdog of the cluster in ``root``: it outlives this process by as
    long as it takes to stop the cluster."""
    return subprocess.Popen(
        [sys.executable, __file__, "watch", str(os.getpid()), str(root), bindir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the test run's process group spares it
        env=_server_env(),
    )


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd: look every WATCH_POLL_S
        while _identity(pid) is not None:
            time.sleep(WATCH_POLL_S)
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll():  # readable once the process has exited
            pass
    finally:
        os.close(pidfd)


def _watchdog(owner: int, root: Path, bindir: Path) -> None:
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _wait_for_exit(owner)
    stop_cluster_at(root, bindir)


if __name__ == "__main__" and sys.argv[1:2] == ["watch"]:
    _watchdog(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
