"""Real ``slm-mesh mcp`` processes, driven the way an agent drives them.

Each :class:`Agent` is one ``python -m slm_mesh mcp`` process, spoken to over its stdin and
stdout by the SDK's ``ClientSession`` (``initialize`` at protocol 2025-11-25, which keeps
server notifications). The transport is a few lines here rather than the SDK's
``stdio_client`` because the tests need the server's pid: to SIGKILL it, to SIGTERM it, and
to stop every process by its pid at the end.

:class:`Mesh` owns the agents of one test and the broker they autostart in the test's data
dir; closing it closes every agent (stdin EOF), then kills by pid whatever is still alive,
brokers included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.extension import NotificationBinding
from mcp.client.session import ClientSession
from mcp.shared.message import SessionMessage
from pydantic import BaseModel

from slm_mesh.config import Settings
from slm_mesh.protocol.framing import LineBuffer, LineTooLong
from tests.wire import alive, broker_env, processes_in

SERVER_ARGV = [sys.executable, "-m", "slm_mesh", "mcp"]
START_BOUND_S = 60.0  # spawn to initialized; ten servers importing `mcp` at once on 2 CPUs
CALL_BOUND_S = 20.0
EXIT_BOUND_S = 5.0
POLL_S = 0.02
CHANNEL_METHOD = "notifications/claude/channel"
CLIENT_NAME = "claude-code"


class ChannelParams(BaseModel):
    """What the server pushes with ``notifications/claude/channel``."""

    content: str
    meta: dict[str, str]


@dataclass
class Agent:
    """One MCP server process and the client session talking to it."""

    name: str | None
    process: trio.Process
    session: ClientSession
    init: mcp_types.InitializeResult
    channel: list[ChannelParams] = field(default_factory=list)
    channel_times: list[float] = field(default_factory=list)
    _arrived: trio.Event = field(default_factory=trio.Event)
    _release: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, tool: str, **arguments: Any) -> mcp_types.CallToolResult:
        with trio.fail_after(CALL_BOUND_S):
            return await self.session.call_tool(tool, arguments)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call ``tool``; it must succeed. Returns its structured content."""
        result = await self.call(tool, **arguments)
        assert not result.is_error, (tool, arguments, texts(result))
        assert result.structured_content is not None
        # The text is the same value as compact JSON (rule 1 of tools.py).
        assert json.loads(texts(result)[0]) == result.structured_content
        return dict(result.structured_content)

    async def error(self, tool: str, **arguments: Any) -> str:
        """Call ``tool``; it must fail with ``isError``. Returns its message."""
        result = await self.call(tool, **arguments)
        assert result.is_error, (tool, arguments, texts(result))
        return texts(result)[0]

    async def next_channel(self) -> ChannelParams:
        """The next channel notification not yet taken (wait under ``fail_after``)."""
        while not self.channel:
            await self._arrived.wait()
            self._arrived = trio.Event()
        return self.channel.pop(0)

    async def on_channel(self, params: ChannelParams) -> None:
        self.channel.append(params)
        self.channel_times.append(trio.current_time())
        self._arrived.set()

    def kill(self) -> None:
        """SIGKILL the server: it gets no chance to unregister."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    async def close_stdin(self) -> None:
        """What an agent does when it quits: close the server's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def wait_exit(self) -> int:
        """The server's exit status, once it has exited (bounded by :data:`EXIT_BOUND_S`)."""
        with trio.fail_after(EXIT_BOUND_S):
            return await self.process.wait()

    def release(self) -> None:
        """Let the agent's task close the session and stop the process."""
        self._release.set()


def texts(result: mcp_types.CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]


def server_env(settings: Settings, name: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a server under test: the test's data dir, no warm-process fast
    path (it is tested on its own; here the server itself runs in the spawned process)."""
    env = broker_env(settings, SLM_MESH_NO_ZYGOTE="1", **extra)
    env.pop("SLM_MESH_NAME", None)
    if name is not None:
        env["SLM_MESH_NAME"] = name
    return env


class Mesh:
    """The agents of one test, and the brokers they start (stopped by pid in :meth:`aclose`)."""

    def __init__(self, settings: Settings, nursery: trio.Nursery, log_dir: Path) -> None:
        self.settings = settings
        self.nursery = nursery
        self.log_dir = log_dir
        self.agents: list[Agent] = []
        self.pids: list[int] = []

    async def start(self, name: str | None = None, cwd: Path | None = None, **env: str) -> Agent:
        """Spawn one server and initialize a session with it."""
        agent: Agent = await self.nursery.start(self._run_agent, name, cwd, env)
        return agent

    async def start_all(
        self, *names: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> list[Agent]:
        """Spawn one server per name, all at the same moment; in the order of ``names``."""
        started: dict[int, Agent] = {}

        async def one(i: int, name: str) -> None:
            started[i] = await self.start(name, cwd, **(env or {}))

        async with trio.open_nursery() as nursery:
            for i, name in enumerate(names):
                nursery.start_soon(one, i, name)
        return [started[i] for i in range(len(names))]

    def broker_pid(self) -> int | None:
        """The pid in ``broker.pid`` (None if there is none)."""
        try:
            return int(self.settings.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    async def _run_agent(
        self,
        name: str | None,
        cwd: Path | None,
        env: dict[str, str],
        task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        log = (self.log_dir / f"mcp-{name or 'anon'}-{len(self.pids)}.log").open("ab")
        process = await trio.lowlevel.open_process(
            SERVER_ARGV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=server_env(self.settings, name, **env),
            cwd=cwd,
        )
        self.pids.append(process.pid)
        try:
            async with process_streams(process) as (read, write):
                holder: list[Agent] = []

                async def deliver(params: ChannelParams) -> None:
                    if holder:
                        await holder[0].on_channel(params)

                binding = NotificationBinding(
                    method=CHANNEL_METHOD, params_type=ChannelParams, handler=deliver
                )
                async with ClientSession(
                    read,
                    write,
                    client_info=mcp_types.Implementation(name=CLIENT_NAME, version="test"),
                    notification_bindings=[binding],
                ) as session:
                    with trio.fail_after(START_BOUND_S):
                        init = await session.initialize()
                    agent = Agent(name, process, session, init)
                    holder.append(agent)
                    self.agents.append(agent)
                    task_status.started(agent)
                    await agent._release.wait()
                # Leaving the session closes the server's stdin; the transport waits for it
                # to exit.
        finally:
            await _stop(process)
            log.close()
            for agent in self.agents:
                if agent.process is process:
                    agent.done.set()

    async def aclose(self) -> None:
        """Close every agent, then stop by pid every process still alive that runs in
        this test's data dir (the brokers the servers started, even one still starting)."""
        for agent in self.agents:
            agent.release()
        with trio.move_on_after(EXIT_BOUND_S * 2):
            for agent in self.agents:
                await agent.done.wait()
        # Again until none is left: a server stopped here may have been starting a broker.
        with trio.move_on_after(EXIT_BOUND_S * 4):
            while pids := processes_in(self.settings.data_dir):
                for pid in pids:
                    await stop_pid(pid)


@contextlib.asynccontextmanager
async def open_mesh(settings: Settings, log_dir: Path) -> AsyncIterator[Mesh]:
    async with trio.open_nursery() as nursery:
        mesh = Mesh(settings, nursery, log_dir)
        try:
            yield mesh
        finally:
            with trio.CancelScope(shield=True):
                await mesh.aclose()
            nursery.cancel_scope.cancel()


async def stop_pid(pid: int) -> None:
    """SIGTERM ``pid``, SIGKILL if it is still there after :data:`EXIT_BOUND_S`."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        with trio.move_on_after(EXIT_BOUND_S):
            await wait_gone(pid)
            return


async def wait_gone(pid: int) -> None:
    """Return once ``pid`` has exited (wait under ``fail_after``)."""
    # Not our child, so no wait(): poll its /proc entry.
    while alive(pid):  # noqa: ASYNC110 - the kernel offers no event for a non-child
        await trio.sleep(POLL_S)


def broker_processes(data_dir: Path) -> list[int]:
    """The running ``slm-mesh broker`` processes of ``data_dir``."""
    found = []
    for pid in processes_in(data_dir):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"broker" in argv and b"slm_mesh" in argv:
            found.append(pid)
    return found


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with trio.CancelScope(shield=True), trio.move_on_after(EXIT_BOUND_S):
        await process.wait()


@contextlib.asynccontextmanager
async def process_streams(
    process: trio.Process,
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """The SDK's stream pair over the process's stdout and stdin (NDJSON)."""
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def read() -> None:
        lines = LineBuffer(64 * 1024 * 1024)
        async with read_send:
            async for chunk in stdout:
                for line in lines.feed(bytes(chunk)):
                    assert not isinstance(line, LineTooLong)
                    message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    await read_send.send(SessionMessage(message))

    async def write() -> None:
        async with write_receive:
            async for outgoing in write_receive:
                data = outgoing.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    await stdin.send_all(data.encode() + b"\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stdin.aclose()  # the session ended: EOF tells the server to exit

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        nursery.start_soon(write)
        try:
            yield read_receive, write_send
        finally:
            write_send.close()
            with trio.move_on_after(EXIT_BOUND_S):
                await process.wait()
            nursery.cancel_scope.cancel()
