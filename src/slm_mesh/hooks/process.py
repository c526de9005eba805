"""Who the hook works for: the agent's pid, its environment, its workspace (git root and
branch), read with ``posix`` alone (no :mod:`os`, whose import would cost a hook more
than its whole exchange with the broker).

The agent's pid is the nearest ancestor that is not a shell: agents run hook commands
through ``sh -c`` (which usually, not always, execs the command) and start MCP servers
directly, so skipping shells gives the hook and the agent's ``slm-mesh mcp`` the same pid.
``SLM_MESH_AGENT_PID`` names the process to start from instead of our parent (a launcher
that runs us on an agent's behalf sets it).
"""

import posix

from slm_mesh.pids import read_stat

AGENT_PID_ENV = "SLM_MESH_AGENT_PID"
MAX_ANCESTORS = 8
# Programs that run a command for someone else: the agent is above them.
PASS_THROUGH = frozenset(
    {b"sh", b"bash", b"dash", b"zsh", b"fish", b"ksh", b"mksh", b"busybox", b"env", b"nohup"}
)
DETACHED_PREFIX = "detached@"
SHORT_SHA = 12
# peer.register's limit (protocol.table.MAX_BRANCH_CHARS, not imported here): a longer
# name is cut to it, rather than the registration refused.
MAX_BRANCH_CHARS = 256


def getenv(name: str) -> str | None:
    raw = posix.environ.get(name.encode())
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(command name, parent pid) from ``/proc/<pid>/stat``; None without procfs."""
    data = read_stat(pid)
    if data is None:
        return None
    # "pid (comm) state ppid …": comm may itself hold spaces or parens.
    comm = data[data.find(b"(") + 1 : data.rfind(b")")]
    fields = data[data.rfind(b")") + 1 :].split()
    try:
        return comm, int(fields[1])
    except (IndexError, ValueError):
        return None


def agent_pid(start: str | None = None, parent: int | None = None) -> int:
    """The agent's pid (see the module doc): from ``start`` (``SLM_MESH_AGENT_PID`` by
    default) or else our parent, up past any shell."""
    raw = getenv(AGENT_PID_ENV) if start is None else start
    pid = int(raw) if raw and raw.isdigit() and int(raw) > 0 else (parent or posix.getppid())
    for _ in range(MAX_ANCESTORS):
        stat = _stat(pid)
        if stat is None or stat[0] not in PASS_THROUGH or stat[1] <= 1:
            return pid
        pid = stat[1]
    return pid


def ancestors(limit: int = MAX_ANCESTORS) -> list[int]:
    """Our parent, its parent… (at most ``limit``; what procfs can tell)."""
    pids: list[int] = []
    pid = posix.getppid()
    while pid > 1 and len(pids) < limit:
        pids.append(pid)
        stat = _stat(pid)
        if stat is None:
            break
        pid = stat[1]
    return pids


# -- the workspace -----------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    try:
        fd = posix.open(path, posix.O_RDONLY)
    except OSError:
        return None
    try:
        return posix.read(fd, 65536).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        posix.close(fd)


def _kind(path: str) -> str | None:
    """ "dir", "file" or None (missing, or not readable)."""
    try:
        mode = posix.stat(path).st_mode
    except OSError:
        return None
    return "dir" if mode & 0o170000 == 0o040000 else "file"


def _parent(path: str) -> str:
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def _join(folder: str, name: str) -> str:
    return folder + name if folder.endswith("/") else f"{folder}/{name}"


def find_git(start: str) -> tuple[str | None, str | None]:
    """The repository root at or above ``start`` and its git dir (as
    :func:`slm_mesh.mcp_server.workspace.find_git` finds them)."""
    folder = start
    while True:
        dot_git = _join(folder, ".git")
        kind = _kind(dot_git)
        if kind == "dir":
            return folder, dot_git
        if kind == "file":
            text = _read_text(dot_git)
            if text is None or not text.startswith("gitdir:"):
                return None, None
            target = text[len("gitdir:") :].strip()
            return folder, target if target.startswith("/") else _join(folder, target)
        if folder == "/":
            return None, None
        folder = _parent(folder)


def read_branch(git_dir: str) -> str | None:
    head = _read_text(_join(git_dir, "HEAD"))
    if not head:
        return None
    if head.startswith("ref:"):
        return head[4:].strip().removeprefix("refs/heads/")[:MAX_BRANCH_CHARS] or None
    return DETACHED_PREFIX + head[:SHORT_SHA]


def workspace(cwd: str) -> dict[str, str]:
    """``cwd`` and, inside a repository, ``git_root`` and ``git_branch`` (the fields of
    ``peer.register``)."""
    out = {"cwd": cwd}
    root, git_dir = find_git(cwd)
    if root is not None and git_dir is not None:
        out["git_root"] = root
        branch = read_branch(git_dir)
        if branch:
            out["git_branch"] = branch
    return out
