"""What the launcher does once the warm process has forked its server: stay alive as the
process the agent started (and may signal), forward the signals it gets to the server,
and exit with the server's status.

It runs in the launcher's own interpreter, which imports only C modules besides ours:
an earlier version exec'd a fresh ``python -I -S`` for this, which saved 0.4 MB a session
(PSS) but cost each agent start another interpreter start-up.
"""

from __future__ import annotations

import os
import time

from slm_mesh.pids import alive
from slm_mesh.zygote import wire

TYPE_CHECKING = False  # not typing's, nor signal's: each would import enum
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal

FORWARDED_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)


def exit_status(message: dict[str, object] | None) -> int | None:
    """The status an ``{"exit": N}`` message reports, as a shell gives it (128 + N when
    killed by signal N); None for any other message."""
    code = message.get("exit") if message is not None else None
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    return code if code >= 0 else 128 - code


def _reap_exited() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def relay(fd: int, pid: int, buf: bytes = b"") -> int:
    """Forward signals to the server over ``fd`` (the connection to the warm process)
    until it exits; return its status. ``buf``: what had already been read past the
    ``{"pid"}`` message (a server that ended at once)."""

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is one import more on every agent start
            os.write(fd, wire.encode({"op": "signal", "signum": signum}))
        except OSError:
            pass

    for signum in FORWARDED_SIGNALS:
        _signal.signal(signum, forward)
    # The first launcher of a while started the warm process: when that one ends, the
    # kernel reaps it rather than leave a zombie under us (we start no other child).
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)
    _reap_exited()
    # The launcher blocked these before handing over: any that arrived in between are
    # delivered now, to the handlers above.
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    while True:
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            status = exit_status(wire.decode(line))
            if status is not None:
                return status
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            # The warm process died under us; the server may still run: wait it out.
            while alive(pid):
                time.sleep(0.1)
            return 1
        buf += chunk
