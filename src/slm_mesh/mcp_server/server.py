"""``slm-mesh mcp``: the low-level MCP ``Server`` wired to the mesh session, run under trio.

Rules:
1. The MCP side answers at once: ``initialize`` waits for nothing of the broker's, and
   what only tools need (the broker client, the tool schemas) is imported after it. The
   session connects once ``initialize`` has named the agent (``clientInfo``); tool calls
   wait for its registration.
2. The server declares the experimental capability ``claude/channel`` and forwards each
   broker message as ``notifications/claude/channel`` once the client is initialized,
   through a bounded queue, so a client that does not read never blocks the broker session
   (what it misses stays unread in the inbox). On a handshake-era version whose lines
   this server builds itself (``fastcall.WIRE_VERSIONS``) the notification is written from
   the broker connection's reader as it arrives, the line the SDK would write, not through
   the SDK and a task; it is dropped, as from a full queue, while stdout holds more than
   its high water (a client that does not read).
3. The connection is served in the handshake era (protocol versions up to 2025-11-25): that
   is the era in which a server may send notifications of its own, which push needs.
4. Exit: stdin at EOF, SIGTERM, SIGINT or SIGHUP. The session unregisters (bounded), then
   everything is cancelled; the process is gone well within a second.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_connection
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage

from slm_mesh.config import VERSION, Settings
from slm_mesh.mcp_server import channel, stdio
from slm_mesh.mcp_server.instructions import INSTRUCTIONS
from slm_mesh.mcp_server.session import MeshSession

if TYPE_CHECKING:
    from mcp.shared._stream_protocols import ReadStream, WriteStream

    from slm_mesh.client.eager import EagerWriter
    from slm_mesh.mcp_server.tools import Tools

log = logging.getLogger(__name__)

SERVER_NAME = "slm-mesh"
PUSH_QUEUE = 1_000
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class IdentifyOnInitialize:
    """Middleware: hand the ``initialize`` ``clientInfo.name`` to the session (rule 1)."""

    def __init__(self, session: MeshSession) -> None:
        self.session = session

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "initialize":
            info = (ctx.params or {}).get("clientInfo")
            name = info.get("name") if isinstance(info, dict) else None
            self.session.identify(name if isinstance(name, str) else None)
        return result


class ChannelForwarder:
    """Carries channel notifications to the client once it is initialized (rule 2)."""

    def __init__(self) -> None:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](PUSH_QUEUE)
        self._send: MemoryObjectSendStream[dict[str, Any]] = send
        self._receive: MemoryObjectReceiveStream[dict[str, Any]] = receive
        self._direct: EagerWriter | None = None  # set once lines go out from here

    def offer(self, params: dict[str, Any]) -> None:
        """Send or queue one notification; drop it (it stays unread) if the client is far
        behind."""
        if self._direct is not None:
            self._write(params)
            return
        try:
            self._send.send_nowait(params)
        except anyio.WouldBlock:
            log.warning("the MCP client is not reading notifications; dropped one")

    def _write(self, params: dict[str, Any]) -> None:
        direct = self._direct
        assert direct is not None
        if direct.queued > direct.high_water:
            log.warning("the MCP client is not reading notifications; dropped one")
            return
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            direct.write(channel.notification_line(params))

    async def run(self, connection: Connection, out: EagerWriter) -> None:
        await connection.initialized.wait()
        from slm_mesh.mcp_server.fastcall import WIRE_VERSIONS

        if connection.protocol_version in WIRE_VERSIONS:
            # What was queued before goes first, then every push straight from the reader.
            self._direct = out
            with self._send, self._receive:
                while True:
                    try:
                        params = self._receive.receive_nowait()
                    except anyio.WouldBlock:
                        return
                    self._write(params)

        async with self._receive:
            async for params in self._receive:
                await connection.notify(channel.CHANNEL_METHOD, params)


class ToolBox:
    """The tool handlers, imported at their first use (rule 1)."""

    def __init__(self, session: MeshSession) -> None:
        self.session = session
        self._tools: Tools | None = None

    @property
    def tools(self) -> Tools:
        if self._tools is None:
            from slm_mesh.mcp_server.tools import Tools

            self._tools = Tools(self.session)
        return self._tools


def build_server(box: ToolBox) -> Server[Any]:
    """The low-level server with the eight tools and the instructions."""
    session = box.session

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        from slm_mesh.mcp_server.tools import tool_list

        return mcp_types.ListToolsResult(tools=tool_list())

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        return await box.tools.call(params.name, params.arguments)

    server: Server[Any] = Server(
        SERVER_NAME,
        version=VERSION,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    # The SDK's default middleware is an OpenTelemetry span per message: a no-op without an
    # exporter, yet about a tenth of a tool call's CPU (measured with py-spy). We export no
    # traces, so it goes (the SDK documents dropping it from this list as the opt-out).
    server.middleware[:] = [IdentifyOnInitialize(session)]
    return server


def initialization_options(server: Server[Any]) -> InitializationOptions:
    """What ``initialize`` answers (besides the protocol version)."""
    return server.create_initialization_options(
        experimental_capabilities={channel.CHANNEL_CAPABILITY: {}}
    )


def open_dispatcher(
    read_stream: ReadStream[SessionMessage | Exception],
    write_stream: WriteStream[SessionMessage],
) -> tuple[JSONRPCDispatcher[Any], Connection]:
    dispatcher: JSONRPCDispatcher[Any] = JSONRPCDispatcher(
        read_stream,
        write_stream,
        # As the SDK's own loop: a client that pipelines `initialize` with the next
        # request sees the initialized state.
        inline_methods=frozenset({"initialize"}),
    )
    return dispatcher, Connection.for_loop(dispatcher)


async def run(
    settings: Settings | None = None,
    early: bytes = b"",
    answered: dict[int, bytes] | None = None,
) -> int:
    """Serve MCP on stdin/stdout until EOF or a signal (see the module rules). ``early``
    and ``answered``: what the launcher read from stdin and answered itself before this
    server took over (:mod:`slm_mesh.mcp_server.stdio` rule 6)."""
    session = MeshSession(settings or Settings.from_env())
    forwarder = ChannelForwarder()
    session.on_message = lambda message: forwarder.offer(channel.message_notification(message))
    session.on_event = lambda event: forwarder.offer(channel.event_notification(event))
    box = ToolBox(session)
    server = build_server(box)
    options = initialization_options(server)
    stop = trio.Event()
    async with stdio.open_stdio(early, answered) as (read_stream, write_stream):
        dispatcher, connection = open_dispatcher(read_stream, write_stream)

        async def serve_until_eof() -> None:
            await serve_connection(
                server, dispatcher, connection=connection, lifespan_state={}, init_options=options
            )
            stop.set()

        async with trio.open_nursery() as nursery:
            from slm_mesh.mcp_server.fastcall import FastCalls

            fast = FastCalls(box, connection, write_stream, nursery)
            read_stream.intercept = fast.intercept
            nursery.start_soon(_stop_on_signal, stop)
            nursery.start_soon(session.run, connection.initialized)
            nursery.start_soon(session.follow_branch)
            nursery.start_soon(forwarder.run, connection, write_stream.eager)
            nursery.start_soon(serve_until_eof)
            await stop.wait()
            await session.leave()
            fast.abandon()
            nursery.cancel_scope.cancel()
    return 0


async def _stop_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(*EXIT_SIGNALS) as signals:
        async for signum in signals:
            log.info("exiting on signal %d", signum)
            stop.set()
            return
