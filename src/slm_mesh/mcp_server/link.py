"""The MCP server's link to the broker: its one connection, the peer registered on it,
kept across drops and left at the end. The calls made over it are
:mod:`slm_mesh.mcp_server.session`'s.

Rules:
1. One :class:`MeshClient` connection for the life of the process. When no broker answers,
   one is started (``ensure_broker``: race-free when many MCP servers start at once).
2. Nothing happens before the MCP ``initialize``, whose ``clientInfo`` names the agent:
   answering it comes first, and the broker client is imported only then.
3. When the connection drops (the broker was killed or restarted), :meth:`BrokerLink.run`
   reconnects at once: ``ensure_broker`` (which starts a new broker if needed), then
   ``MeshClient.reconnect``, which resumes the same peer id, inbox and locks with the
   resume token. It retries with backoff until it works or the server exits.
4. Pushes are taken from the connection's reader as they are read (``on_push``), not
   through a task of their own: a message reaches the agent one hop sooner.
5. :meth:`BrokerLink.leave` unregisters (bounded, :data:`LEAVE_TIMEOUT_S`) so a server
   that exits leaves no ghost peer; a server that is killed leaves after the broker's grace.
6. A session that ended under a connection still open (``peer.detached`` "ended": its
   broker was cut off from the shared store past the grace period) is joined again at
   once, under the same name if it is free, and the agent is told (:mod:`notices`). One
   that another connection ended on purpose (cause "unregistered": the agent's own
   SessionEnd hook) or resumed ("resumed": a newer server of the agent) is not.
7. The session's branch follows its repository's (:meth:`BrokerLink.follow_branch`):
   every :data:`BRANCH_CHECK_S` (``SLM_MESH_BRANCH_CHECK_S``; 0: never) the server reads
   the git dir's ``HEAD``, and before answering ``mesh_peers`` or ``mesh_status`` it
   stats it, the timer off or not (read only when it changed; no work on any other tool
   call): what those show the agent, the broker is told too. A branch other than the one
   the broker has goes out as ``peer.update {git_branch}``; every later registration or
   resume carries it too. A broker too old to take ``git_branch`` there
   (it refuses the unknown param) is not asked again on that connection: it learns the
   branch at the next resume, and the broker found after a reconnect (maybe a newer one)
   is asked again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from slm_mesh.config import VERSION, Settings
from slm_mesh.mcp_server import agent, workspace
from slm_mesh.mcp_server.notices import Notices
from slm_mesh.mcp_server.unread import UnreadCount
from slm_mesh.protocol.errors import MeshError

if TYPE_CHECKING:
    from slm_mesh.client.aio import MeshClient

log = logging.getLogger(__name__)

CLIENT_NAME = f"slm-mesh-mcp/{VERSION}"
CLIENT_READY_WAIT_S = 1.0
RECONNECT_TRY_S = 2.0
LEAVE_TIMEOUT_S = 0.5
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
BRANCH_CHECK_S = 3.0
"""How often the repository's branch is looked at (rule 7), unless
``SLM_MESH_BRANCH_CHECK_S`` says otherwise."""


def registration_params(client_name: str | None) -> dict[str, Any]:
    """What this session registers as: agent type, the agent's pid, cwd, git, fixed name."""
    where = workspace.detect()
    params: dict[str, Any] = {
        "agent": agent.detect(client_name),
        "pid": agent.agent_pid(),
        "cwd": where.cwd,
    }
    if where.git_root:
        params["git_root"] = where.git_root
    if where.git_branch:
        params["git_branch"] = where.git_branch
    if where.repo:
        params["repo"] = where.repo
    name = os.environ.get("SLM_MESH_NAME", "").strip()
    if name:
        params["name"] = name
    return params


def branch_check_interval() -> float:
    """Seconds between two looks at the repository's branch (rule 7); 0: never."""
    raw = os.environ.get("SLM_MESH_BRANCH_CHECK_S", "").strip()
    if not raw:
        return BRANCH_CHECK_S
    try:
        value = float(raw)
    except ValueError:
        log.warning("SLM_MESH_BRANCH_CHECK_S=%r is not a number; using %s", raw, BRANCH_CHECK_S)
        return BRANCH_CHECK_S
    return value if value > 0 else 0.0


class BrokerLink:
    """The connection to the broker and the peer registered on it (see the module rules)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registration: dict[str, Any] = {}
        self.peer_name: str | None = None
        self.on_message: Callable[[dict[str, Any]], None] = lambda _message: None
        self.on_event: Callable[[dict[str, Any]], None] = lambda _event: None
        self.subscribed_types: list[str] | None = None
        """Event types the agent subscribed to (None: not subscribed)."""
        self.last_event_seq = 0
        self.joined_seq: int | None = None
        """The event log's last seq when this session first joined (None: not yet)."""
        self._client: MeshClient | None = None
        self._client_name: str | None = None
        self._resume_token: str | None = None
        self._identified = anyio.Event()
        self._registered = anyio.Event()
        self._reconnecting = anyio.Lock()
        self._leaving = False
        self._failure = "still connecting to the broker"
        self._unread = UnreadCount()
        self.notices = Notices()
        self.registrations = 0
        """Registrations so far: a call refused for want of a session compares (session
        rule 3)."""
        self._rejoin_wanted = anyio.Event()
        self._head: workspace.Head | None = None
        self._told_branch: str | None = None
        """The branch the broker has for this session, as far as this server knows."""
        self._branch_updates = True
        """Whether the broker takes ``peer.update {git_branch}`` (rule 7)."""
        self._branch_wanted = anyio.Event()

    # -- what the MCP side tells us ------------------------------------------------------

    def identify(self, client_name: str | None) -> None:
        """The MCP client introduced itself (``initialize``): registration may go ahead."""
        if not self._identified.is_set():
            self._client_name = client_name
            self._identified.set()

    @property
    def peer_id(self) -> str | None:
        return self._client.peer_id if self._client is not None else None

    @property
    def cwd(self) -> str | None:
        cwd = self.registration.get("cwd")
        return cwd if isinstance(cwd, str) else None

    # -- the connection's life -----------------------------------------------------------

    async def run(self, client_ready: anyio.Event | None = None) -> None:
        """Connect, register once identified, hand pushes on, reconnect after every drop.

        Args:
            client_ready: set when the MCP client confirms the handshake (so our answer to
                ``initialize`` is out before the broker work starts); waited for at most
                :data:`CLIENT_READY_WAIT_S`.

        Runs until cancelled; never raises for broker trouble (it retries).
        """
        await self._identified.wait()
        if client_ready is not None:
            with anyio.move_on_after(CLIENT_READY_WAIT_S):
                await client_ready.wait()
        from slm_mesh.client.address import BrokerUnreachable
        from slm_mesh.client.aio import MeshClient
        from slm_mesh.client.autostart import ensure_broker
        from slm_mesh.client.wire import ConnectionLost

        delay = FIRST_BACKOFF_S
        while True:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    opening = functools.partial(
                        MeshClient.open,
                        self.settings,
                        client_name=CLIENT_NAME,
                        on_push=self._on_push,  # rule 4
                    )
                    try:  # the broker is usually up: no probe first
                        client = await stack.enter_async_context(opening())
                    except BrokerUnreachable:
                        await ensure_broker(self.settings)  # start one, or wait for it
                        client = await stack.enter_async_context(opening())
                    self._client = client
                    try:
                        await self._register(client)
                        await self._pump(client)
                    finally:
                        # Calls must not go out on a closed client: they wait for the next.
                        self._client = None
                        self._registered = anyio.Event()
            except (BrokerUnreachable, ConnectionLost, MeshError, OSError) as exc:
                self._note_failure(exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _register(self, client: MeshClient) -> None:
        if not self.registration:
            self.registration = registration_params(self._client_name)
        params = dict(self.registration)
        if self._resume_token:  # an earlier client of this process registered: be that peer
            params["resume"] = self._resume_token
        registered = await client.register(**params)
        self._told_branch = params.get("git_branch")
        self._branch_updates = True  # maybe another broker than the one that refused it
        self.forget_unread()
        self.peer_name = registered.get("name")
        if self.joined_seq is None and isinstance(registered.get("last_seq"), int):
            self.joined_seq = registered["last_seq"]
        self._resume_token = client.resume_token
        self._registered.set()
        self.registrations += 1
        log.info("registered as %s (%s)", self.peer_name, client.peer_id)

    async def _pump(self, client: MeshClient) -> None:
        while True:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._rejoin_when_wanted, client)
                async for method, params in client.notifications:  # until it drops
                    self._on_push(method, params)
                tasks.cancel_scope.cancel()
            if self._leaving:
                await anyio.sleep_forever()
            await self._reconnect(client)

    async def _rejoin_when_wanted(self, client: MeshClient) -> None:
        while True:
            await self._rejoin_wanted.wait()
            self._rejoin_wanted = anyio.Event()
            await self._rejoin(client)

    async def _rejoin(self, client: MeshClient) -> None:
        """Register again on this connection, under the same name (rule 6). Returns once
        registered, or when leaving, or when the connection drops (the pump reconnects)."""
        from slm_mesh.client.wire import ConnectionLost

        self._resume_token = None  # the session it resumed is gone
        if self.peer_name:
            self.registration = {**self.registration, "name": self.peer_name}
        delay = FIRST_BACKOFF_S
        while not self._leaving:
            try:
                await self._register(client)
            except ConnectionLost:
                return
            except MeshError as exc:  # e.g. the store out of reach again: try again
                self._note_failure(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            self.notices.joined_again(self.peer_name)
            return

    def _on_push(self, method: str, params: Any) -> None:
        if not isinstance(params, dict):
            return
        if method == "message":
            self.on_message(params)
        elif method == "event":
            seq = params.get("seq")
            if isinstance(seq, int):
                self.last_event_seq = max(self.last_event_seq, seq)
            if self.subscribed_types is not None:
                self.on_event(params)
        elif method == "mesh.shutdown":
            log.info("the broker is stopping: %s", params.get("reason"))
        elif method == "mesh.store":
            # A shared store (PostgreSQL) out of reach: calls fail with -32011 until it is
            # back; locks held may end meanwhile if it stays out longer than the grace.
            level = logging.INFO if params.get("available") else logging.WARNING
            log.log(level, "the shared store is %s", _store_state(params))
            self.notices.store_changed(params)
        elif method == "message.read":
            self.forget_unread()  # a hook of this agent read some: ask again next time
        elif method == "peer.detached":
            # Another connection resumed this session, or it ended; the broker says so
            # rather than leave this server to act as the person unawares (rule 6).
            reason, cause = params.get("reason"), params.get("cause")
            log.warning("peer %s: %s (%s)", params.get("peer_id"), reason, cause or "-")
            mine = self._client is not None and params.get("peer_id") == self._client.peer_id
            if mine and reason == "ended" and cause != "unregistered" and not self._leaving:
                self._registered = anyio.Event()  # calls wait for the session to be back
                self._rejoin_wanted.set()

    async def _reconnect(self, client: MeshClient) -> None:
        """Get ``client`` connected again (rule 3); returns once it is."""
        from slm_mesh.client.address import BrokerUnreachable
        from slm_mesh.client.autostart import ensure_broker

        async with self._reconnecting:
            delay = FIRST_BACKOFF_S
            while not client.connected and not self._leaving:
                try:
                    await ensure_broker(self.settings)
                    await client.reconnect(retry_for=RECONNECT_TRY_S)
                except (BrokerUnreachable, MeshError, OSError) as exc:
                    self._note_failure(exc)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
                self.forget_unread()  # pushes may have been lost with the old connection
                self._told_branch = client.registered_with("git_branch")  # the resume's
                self._branch_updates = True  # maybe a newer broker (rule 7)
                registered = client.peer_id is not None
                log.info(
                    "reconnected to the broker; peer %s", client.peer_id if registered else "-"
                )
                await self._resubscribe(client)

    async def _resubscribe(self, client: MeshClient) -> None:
        from slm_mesh.client.wire import ConnectionLost

        if self.subscribed_types is None:
            return
        params: dict[str, Any] = {"types": self.subscribed_types, "after": self.last_event_seq}
        try:
            await client.call("event.subscribe", params)
        except (ConnectionLost, MeshError) as exc:
            log.warning("could not renew the event subscription: %s", exc)

    # -- the branch (rule 7) ----------------------------------------------------------------

    async def follow_branch(self) -> None:
        """Tell the broker when the repository switches branch (rule 7): at every
        check, and when a tool saw it (:meth:`wake_branch_check`; then only, when the
        periodic check is off). Runs until cancelled."""
        interval = branch_check_interval() or math.inf
        while True:
            with anyio.move_on_after(interval):
                await self._branch_wanted.wait()
            self._branch_wanted = anyio.Event()
            if self.notice_branch(reread=True):
                await self._tell_branch()

    def notice_branch(self, *, reread: bool = False) -> bool:
        """Look at the branch now (a stat of ``HEAD``; read only when it changed, or with
        ``reread``); the registration takes it. True when the broker has another (whether
        or not it can be told now). No waiting."""
        if self._head is None:
            if not self.registration.get("git_root") or self.cwd is None:
                return False
            self._head = workspace.Head(Path(self.cwd))
        branch = self._head.branch(reread=reread)
        if branch is None:
            return False
        if branch != self.registration.get("git_branch"):
            self.registration = {**self.registration, "git_branch": branch}
        return branch != self._told_branch

    def wake_branch_check(self) -> None:
        """Have :meth:`follow_branch` tell the broker now, if the branch moved."""
        if self.notice_branch():
            self._branch_wanted.set()

    async def _tell_branch(self) -> None:
        from slm_mesh.client.wire import ConnectionLost
        from slm_mesh.protocol.errors import InvalidParams, NotRegistered

        branch = self.registration["git_branch"]
        client = self._client
        if client is None:
            return  # the next registration carries it
        client.amend_registration(git_branch=branch)  # and so does a resume
        if self._leaving or not self._branch_updates:
            return
        if not (self._registered.is_set() and client.connected):
            return
        try:
            await client.call("peer.update", {"git_branch": branch})
        except (ConnectionLost, NotRegistered):
            return  # the resume or the joining again carries it
        except MeshError as exc:
            field = exc.data.get("field") if isinstance(exc.data, dict) else None
            if isinstance(exc, InvalidParams) and field == "git_branch":
                log.info("the broker takes no git_branch in peer.update: it learns it at a resume")
                self._branch_updates = False
                return
            log.warning("could not tell the broker the branch %s: %s", branch, exc)
            return  # the next check tries again
        if client is self._client:
            self._told_branch = branch
        log.info("on branch %s now", branch)

    def _note_failure(self, exc: BaseException) -> None:
        self._failure = str(exc) or type(exc).__name__
        log.warning("broker trouble: %s", self._failure)

    def forget_unread(self) -> None:
        """The unread count (the session's calls learn it) may have changed without a push
        (a reconnect)."""
        self._unread.forget()

    async def leave(self) -> None:
        """Unregister (rule 5). Safe to call in any state, and more than once."""
        from slm_mesh.client.wire import ConnectionLost

        self._leaving = True
        client = self._client
        if client is None or client.peer_id is None or not client.connected:
            return
        with anyio.move_on_after(LEAVE_TIMEOUT_S):
            try:
                await client.unregister()
            except (ConnectionLost, MeshError) as exc:
                log.debug("unregister failed: %s", exc)


def _store_state(params: dict[str, Any]) -> str:
    if params.get("available"):
        return "back"
    return f"unavailable ({params.get('reason')}); retry in {params.get('retry_after')} s"
