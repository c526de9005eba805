"""The session's branch follows its repository's (rule 7 of :mod:`slm_mesh.mcp_server.link`).

Every :data:`BRANCH_CHECK_S` (``SLM_MESH_BRANCH_CHECK_S``; 0: no periodic look) the server
reads the git dir's ``HEAD``, and before answering ``mesh_peers`` or ``mesh_status`` it stats
it, the timer off or not (read only when it changed; no work on any other tool call): what
those show the agent, the broker is told too. A branch other than the one the broker has
goes out as ``peer.update {git_branch}``; every later registration or resume carries it
too. A broker too old to take ``git_branch`` there (it refuses the unknown param) is not
asked again on that connection: it learns the branch at the next resume, and the broker
found after a reconnect (maybe a newer one) is asked again.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from slm_mesh.mcp_server import workspace
from slm_mesh.protocol.errors import MeshError

if TYPE_CHECKING:
    from slm_mesh.mcp_server.link import BrokerLink

log = logging.getLogger(__name__)

BRANCH_CHECK_S = 3.0
"""How often the repository's branch is looked at, unless ``SLM_MESH_BRANCH_CHECK_S`` says
otherwise."""


def branch_check_interval() -> float:
    """Seconds between two looks at the repository's branch; 0: never."""
    raw = os.environ.get("SLM_MESH_BRANCH_CHECK_S", "").strip()
    if not raw:
        return BRANCH_CHECK_S
    try:
        value = float(raw)
    except ValueError:
        log.warning("SLM_MESH_BRANCH_CHECK_S=%r is not a number; using %s", raw, BRANCH_CHECK_S)
        return BRANCH_CHECK_S
    return value if value > 0 else 0.0


class BranchFollower:
    """The branch of ``link``'s session, kept in step with the checkout's (module doc)."""

    def __init__(self, link: BrokerLink) -> None:
        self.link = link
        self._head: workspace.Head | None = None
        self._told: str | None = None
        """The branch the broker has for this session, as far as this server knows."""
        self._updates = True
        """Whether the broker takes ``peer.update {git_branch}``."""
        self._wanted = anyio.Event()

    def told(self, branch: str | None) -> None:
        """A registration or resume told the broker ``branch``; that broker may be another
        one than the one that refused ``peer.update {git_branch}``: it is asked again."""
        self._told = branch
        self._updates = True

    async def follow(self) -> None:
        """Tell the broker when the repository switches branch: at every check, and when a
        tool saw it (:meth:`wake`; then only, when the periodic check is off). Runs until
        cancelled."""
        interval = branch_check_interval() or math.inf
        while True:
            with anyio.move_on_after(interval):
                await self._wanted.wait()
            self._wanted = anyio.Event()
            if self.notice(reread=True):
                await self._tell()

    def notice(self, *, reread: bool = False) -> bool:
        """Look at the branch now (a stat of ``HEAD``; read only when it changed, or with
        ``reread``); the registration takes it. True when the broker has another (whether
        or not it can be told now). No waiting."""
        link = self.link
        if self._head is None:
            if not link.registration.get("git_root") or link.cwd is None:
                return False
            self._head = workspace.Head(Path(link.cwd))
        branch = self._head.branch(reread=reread)
        if branch is None:
            return False
        if branch != link.registration.get("git_branch"):
            link.registration = {**link.registration, "git_branch": branch}
        return branch != self._told

    def wake(self) -> None:
        """Have :meth:`follow` tell the broker now, if the branch moved."""
        if self.notice():
            self._wanted.set()

    async def _tell(self) -> None:
        from slm_mesh.client.wire import ConnectionLost
        from slm_mesh.protocol.errors import InvalidParams, NotRegistered

        branch = self.link.registration["git_branch"]
        client = self.link.client
        if client is None:
            return  # the next registration carries it
        client.amend_registration(git_branch=branch)  # and so does a resume
        if not self._updates or self.link.ready_client() is not client:
            return
        try:
            await client.call("peer.update", {"git_branch": branch})
        except (ConnectionLost, NotRegistered):
            return  # the resume or the joining again carries it
        except MeshError as exc:
            field = exc.data.get("field") if isinstance(exc.data, dict) else None
            if isinstance(exc, InvalidParams) and field == "git_branch":
                log.info("the broker takes no git_branch in peer.update: it learns it at a resume")
                self._updates = False
                return
            log.warning("could not tell the broker the branch %s: %s", branch, exc)
            return  # the next check tries again
        if client is self.link.client:
            self._told = branch
        log.info("on branch %s now", branch)
