"""Whether a process runs, asked the same way everywhere (broker, CLI, launcher, hooks).

A process that exited but was not reaped yet (a zombie: its parent has not waited for it)
does not run: ``kill(pid, 0)`` still finds it, so where ``/proc`` says so it counts as
exited. Someone else's process (``EPERM``) runs. Without ``/proc`` (macOS), ``kill``'s
answer stands.

``posix`` alone: the hooks and the launcher import this on their start-up path.
"""

import posix


def read_stat(pid: int) -> bytes | None:
    """The text of ``/proc/PID/stat``, None where there is none to read."""
    try:
        fd = posix.open(f"/proc/{pid}/stat", posix.O_RDONLY)
    except OSError:
        return None
    try:
        return posix.read(fd, 4096)
    except OSError:
        return None
    finally:
        posix.close(fd)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (see the module's rules)."""
    try:
        posix.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's, but running
    data = read_stat(pid)
    if data is None:
        return True  # no procfs: kill's answer stands
    # "pid (comm) state ...": comm may itself hold spaces or parens.
    state = data[data.rfind(b")") + 1 :].split()[:1]
    return state not in ([b"Z"], [b"X"])
