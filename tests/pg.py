"""A PostgreSQL cluster for the tests of the shared store: one per test session.

Made from the system's server binaries (Debian's ``postgresql``; ``tests/outside.py`` finds
them, or skips with advice, or under CI fails): ``initdb`` into a private temp dir, the
server on a private Unix socket dir and a free port, no TCP (unless asked), trust
authentication, ``fsync=off`` (nothing here must survive a power cut). ``initdb`` refuses
to run as root, so as root the cluster belongs to the ``postgres`` user (``runuser``).
Each test takes a mesh of its own (a schema: ``SLM_MESH_MESH``), so tests never see each
other's peers. Stopped by its pid file and removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"


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
    """A new cluster, torn down at the end. ``tcp``: an address to listen on too, with
    ``hba`` lines (pg_hba.conf) saying who may connect over it; ``durable``: fsync on (for
    benchmarks)."""
    root = Path(tempfile.mkdtemp(prefix="sm-pg-", dir="/tmp"))
    try:
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
