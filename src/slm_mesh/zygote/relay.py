"""What the launcher becomes once the warm process has forked its server: a minimal
process (``python -I -S relay.py FD PID``, stdlib only, no site) that forwards the signals
it gets to the server and exits with the server's status.

The launcher execs into this so that each live session costs one small interpreter instead
of one with site-packages loaded: the pid the agent watches stays the same. Run as a
script it imports nothing from slm_mesh; the launcher also calls :func:`relay` directly
when it can't exec.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def relay(fd: int, pid: int) -> int:
    """Forward signals to the server over ``fd`` until it exits; return its status as a
    shell would (128 + N when killed by signal N)."""

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, json.dumps({"op": "signal", "signum": signum}).encode() + b"\n")

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    # The launcher blocked these before handing over (the mask survives exec): any that
    # arrived in between are delivered now, to the handlers above.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    buf = b""
    while True:
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
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            code = msg.get("exit") if isinstance(msg, dict) else None
            if isinstance(code, int):
                return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(relay(int(sys.argv[1]), int(sys.argv[2])))
