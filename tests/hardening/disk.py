"""A data dir whose disk can be made full, or read-only, on purpose.

With the privilege to mount (root, CAP_SYS_ADMIN), the data dir is a small tmpfs: full
means a filler file takes the last byte (ENOSPC), freed means it is deleted, read-only
means remounting it so. Without it, a full disk is emulated through the broker's
RLIMIT_FSIZE (every write past offset 0 fails with EFBIG), set to 0 and raised again with
prlimit, and a read-only data dir by a read-only database file (root ignores file modes,
so this fallback holds only for other users). ``SLM_MESH_TEST_DISK=rlimit`` forces the
emulation, to test it as root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

SIZE = 4 * 1024 * 1024


def _run(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


class Disk:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.mounted = False
        self.pid: int | None = None  # the broker, for the RLIMIT_FSIZE emulation
        self._filler = data_dir / "filler"

    @contextlib.contextmanager
    def mounted_or_not(self) -> Iterator[Disk]:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0 and os.environ.get("SLM_MESH_TEST_DISK") != "rlimit":
            self.mounted = _run(
                "mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(self.data_dir)
            )
        try:
            yield self
        finally:
            if self.mounted:
                _run("mount", "-o", "remount,rw", str(self.data_dir))
                if not _run("umount", str(self.data_dir)):
                    _run("umount", "-l", str(self.data_dir))
            else:
                self.data_dir.chmod(0o700)

    @property
    def kind(self) -> str:
        return "tmpfs" if self.mounted else "rlimit"

    def preexec(self, *, full: bool) -> Callable[[], None] | None:
        """``preexec_fn`` for the broker: with the emulation, a full disk from the start."""
        if self.mounted or not full:
            return None

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

        return limit

    def fill(self) -> None:
        if self.mounted:
            with open(self._filler, "wb", buffering=0) as f:
                for size in (65536, 512, 1):  # down to the last byte
                    try:
                        while f.write(b"\0" * size):
                            pass
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
        else:
            assert self.pid is not None
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    def free(self) -> None:
        if self.mounted:
            self._filler.unlink()
        else:
            assert self.pid is not None
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, unlimited)

    def make_read_only(self, db_path: Path) -> None:
        """The whole data dir read-only (tmpfs), or else the database file: the broker
        chmods its data dir back to 0700 itself, which a 0500 folder would not survive."""
        if self.mounted:
            assert _run("mount", "-o", "remount,ro", str(self.data_dir))
        else:
            db_path.chmod(0o400)
