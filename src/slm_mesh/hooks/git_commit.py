"""``slm-mesh hook pre-commit --agent git``: refuse a commit whose staged files another live
session holds exclusively.

The pre-commit script (``slm-mesh install git``) pipes ``git diff --cached --name-only -z``
into it; git runs pre-commit at the top of the working tree, so the paths are taken
against the current directory. When the commit comes from an agent (its shell tool runs
``git commit``), the agent's own locks do not count: the check is made as the first
ancestor process that has a session in the mesh. Exit 1 refuses, naming each file, its
holder and what the holder works on; anything else (no broker, an error) lets the commit
through with exit 0, as every hook does.
"""

import posix

from slm_mesh.hooks import process
from slm_mesh.hooks.connection import Broker, CallError, timeout_s
from slm_mesh.hooks.guard import holder, left, relative

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REFUSED = 1


def check(staged: bytes, now: float) -> tuple[int, bytes]:
    """The exit status and what to print on stderr."""
    cwd = posix.getcwd()
    paths = [p.decode("utf-8", "surrogateescape") for p in staged.split(b"\0") if p]
    if not paths:
        return 0, b""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("peer.attach", {"pid": p}) for p in process.ancestors()
    ]
    calls.append(("lock.check", {"paths": paths, "cwd": cwd, "mode": "shared"}))
    broker = Broker.connect(timeout_s())
    try:
        result = broker.batch(calls, timeout_s())[-1]
    finally:
        broker.close()
    if isinstance(result, CallError):
        raise result
    lines = []
    for conflict in result.get("conflicts") or []:
        live = [h for h in conflict.get("holders") or [] if h.get("live")]
        if not live:
            continue
        h = live[0]
        path = relative(str(conflict.get("path")), cwd)
        line = f"  {path}: locked by {holder(h)} {left(h.get('expires_at'), now)}"
        if h.get("summary"):
            line += f', working on "{h["summary"]}"'
        lines.append(line)
    if not lines:
        return 0, b""
    text = "\n".join(
        [
            "slm-mesh: this commit has files that another session holds:",
            *lines,
            "Wait until they are released, ask the holder (slm-mesh send NAME ...), or "
            "unstage them. (git commit --no-verify skips this check.)",
        ]
    )
    return REFUSED, text.encode("utf-8", "replace") + b"\n"
