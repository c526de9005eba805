"""A way to a test's PostgreSQL cluster that the test can cut, as a network would be cut:
a Unix socket of its own (libpq's ``host`` is its folder) forwarding every connection to
the cluster's socket. :meth:`Link.cut` drops every connection through it and refuses new
ones until :meth:`Link.mend`; the cluster itself keeps running for everyone else. No root
and no network namespace needed (tests/multi/test_partition.py cuts a real link).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from tests import pg

CHUNK = 64 * 1024


class Link:
    def __init__(self, cluster: pg.Cluster, folder: Path) -> None:
        folder.mkdir(exist_ok=True)
        self.folder = folder
        self.port = cluster.port
        self.target = str(cluster.root / f".s.PGSQL.{cluster.port}")
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(folder / f".s.PGSQL.{cluster.port}"))
        self._listener.listen(64)
        self._lock = threading.Lock()
        self._open = True
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        """The cluster's ``postgres`` database, through this link."""
        return f"postgresql:///postgres?host={self.folder}&port={self.port}&user={pg.SERVER_USER}"

    def cut(self) -> None:
        """Drop every connection through the link; refuse new ones until :meth:`mend`."""
        with self._lock:
            self._open = False
            socks, self._socks = self._socks, set()
        for sock in socks:
            _shut(sock)

    def mend(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self.cut()
        _shut(self._listener)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self._open:
                    client.close()  # cut: the connection fails at once
                    continue
            server = socket.socket(socket.AF_UNIX)
            try:
                server.connect(self.target)
            except OSError:
                client.close()
                server.close()
                continue
            with self._lock:
                self._socks.update((client, server))
            self._spawn(self._serve, client, server)

    def _serve(self, client: socket.socket, server: socket.socket) -> None:
        """Both ways until either end (or :meth:`cut`) closes; then close both."""
        back = threading.Thread(target=_pipe, args=(server, client), daemon=True)
        back.start()
        _pipe(client, server)
        back.join()
        with self._lock:
            self._socks.difference_update((client, server))
        client.close()
        server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _shut(sink)
        _shut(source)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def link(cluster: pg.Cluster, folder: Path) -> Iterator[Link]:
    """A link to ``cluster`` with its socket in ``folder``, closed at the end."""
    found = Link(cluster, folder)
    try:
        yield found
    finally:
        found.close()
