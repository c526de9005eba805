"""What the launcher becomes once the warm process has forked its server: a minimal
process (``python -I -S relay.py FD PID``, no site, C modules only) that forwards the
signals it gets to the server and exits with the server's status.

The launcher execs into this so that each live session costs one small interpreter instead
of one with site-packages loaded: the pid the agent watches stays the same. Run as a
script it imports nothing from slm_mesh (``-I`` keeps its folder off ``sys.path``); the
launcher also calls :func:`relay` directly when it can't exec.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # not typing's, nor signal's: each would import enum
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal

FORWARDED_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)
_EXIT_PREFIX = b'{"exit":'


def exit_code(line: bytes) -> int | None:
    """The status in an ``{"exit":N}`` line, as a shell gives it (128 + N when killed by
    signal N); None for any other line. It is the one message a relay gets, written by
    :func:`slm_mesh.zygote.wire.encode`, so this reads exactly that form."""
    text = line.strip()
    if not (text.startswith(_EXIT_PREFIX) and text.endswith(b"}")):
        return None
    try:
        code = int(text[len(_EXIT_PREFIX) : -1])
    except ValueError:
        return None
    return code if code >= 0 else 128 - code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def relay(fd: int, pid: int, buf: bytes = b"") -> int:
    """Forward signals to the server over ``fd`` until it exits; return its status.
    ``buf``: what the launcher had already read past the ``{"pid"}`` line."""

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 - contextlib is one import more on every agent start
            os.write(fd, b'{"op":"signal","signum":%d}\n' % signum)
        except OSError:
            pass

    for signum in FORWARDED_SIGNALS:
        _signal.signal(signum, forward)
    # The launcher blocked these before handing over (the mask survives exec): any that
    # arrived in between are delivered now, to the handlers above.
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    while True:
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            code = exit_code(line)
            if code is not None:
                return code
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            # The warm process died under us; the server may still run: wait it out.
            while _alive(pid):
                time.sleep(0.1)
            return 1
        buf += chunk


if __name__ == "__main__":
    early = sys.argv[3].encode() if len(sys.argv) > 3 else b""
    sys.exit(relay(int(sys.argv[1]), int(sys.argv[2]), early))
