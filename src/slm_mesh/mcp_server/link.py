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
7. The session's branch follows its repository's (:mod:`slm_mesh.mcp_server.branch`: the
   checkout's ``HEAD`` looked at every few seconds and before ``mesh_peers`` and
   ``mesh_status``, a switch told with ``peer.update {git_branch}``, every later
   registration or resume carrying it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from slm_mesh.config import VERSION, Settings
from slm_mesh.mcp_server import agent, workspace
from slm_mesh.mcp_server.branch import BranchFollower
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
        self.branch = BranchFollower(self)

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
        self.branch.told(params.get("git_branch"))  # (maybe another broker: asked again)
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
                self.branch.told(client.registered_with("git_branch"))  # the resume's (rule 7)
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

    # -- the branch (rule 7; slm_mesh.mcp_server.branch) -------------------------------

    async def follow_branch(self) -> None:
        """Tell the broker when the repository switches branch (rule 7): see
        :meth:`BranchFollower.follow`. Runs until cancelled."""
        await self.branch.follow()

    def wake_branch_check(self) -> None:
        """A tool is about to show the branch: look at it now (:meth:`BranchFollower.wake`)."""
        self.branch.wake()

    def ready_client(self) -> MeshClient | None:
        """The client, while a call can go out as this session (registered, connected,
        not leaving); None else."""
        client = self._client
        if client is None or self._leaving or not self._registered.is_set():
            return None
        return client if client.connected else None

    @property
    def client(self) -> MeshClient | None:
        """The connection to the broker (None between two)."""
        return self._client

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
