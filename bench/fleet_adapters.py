"""What differs between the MCP servers ``bench/fleet.py`` drives: the command, where a
cluster keeps its data, how its processes are found, and its tool surface.

- ``slm-mesh``: the installed ``slm-mesh mcp``; a cluster is a data dir
  (``SLM_MESH_DATA_DIR``); peers are addressed by name (``SLM_MESH_NAME``).
- ``claude-peers`` (louislva/claude-peers-mcp, run by Bun): its four tools
  (``list_peers``, ``send_message``, ``set_summary``, ``check_messages``). A cluster is a
  database (``CLAUDE_PEERS_DB``) and a broker port (``CLAUDE_PEERS_PORT``) of its own; its
  server starts ``bun broker.ts`` from ``PATH`` when no broker answers on that port, so
  ``bun`` must be on ``PATH``. ``OPENAI_API_KEY`` is dropped: with it, every start waits
  on a network call to summarise the session. Peers are addressed by the 8-letter id its
  broker gives them, which ``list_peers`` prints beside each server's pid.

The bench never fetches or builds claude-peers: it takes its command (``--server``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.wire import processes_in

from bench.fleet_sessions import Session

# What an agent's MCP config runs: the installed command, not ``python -m``.
SLM_MESH_COMMAND = [str(Path(sys.executable).parent / "slm-mesh"), "mcp"]

Call = tuple[str, dict[str, Any]]


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def _processes_with(entry: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if entry in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


class Adapter:
    """One server's command and tool surface (see the module docstring)."""

    name = ""
    # A server that stays after its stdin closes is ended with SIGTERM, as the MCP stdio
    # transport says a client does next.
    exits_on_eof = True

    def __init__(self, command: list[str] | None) -> None:
        self.command = command or []

    def env(self, data_dir: Path, session_name: str) -> dict[str, str]:
        raise NotImplementedError

    def processes(self, data_dir: Path) -> list[int]:
        """Every process of the cluster kept in ``data_dir``."""
        raise NotImplementedError

    def kind(self, pid: int) -> str:
        """broker, server, launcher (ours) or gone."""
        raise NotImplementedError

    def kill_all(self, data_dir: Path) -> None:
        for pid in self.processes(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_broker(self, data_dir: Path) -> int | None:
        """Stop the cluster's broker (SIGTERM); its pid, or None where that makes no sense."""
        return None

    async def ready(self, s: Session) -> None:
        """A first real tool call: the session is registered at its broker."""
        raise NotImplementedError

    async def peers_seen(self, s: Session) -> int:
        """How many other sessions ``s`` sees."""
        raise NotImplementedError

    async def addresses(self, sessions: list[Session]) -> list[str]:
        """What ``send`` takes to reach each session."""
        raise NotImplementedError

    def send(self, to: str, text: str) -> Call:
        raise NotImplementedError

    def read_inbox(self) -> Call:
        raise NotImplementedError

    def mixed_round(self, i: int, to: str) -> list[Call]:
        """One round of the closed loop's mixed calls, for session ``i`` sending to ``to``."""
        raise NotImplementedError

    def read_round(self, i: int) -> list[Call]:
        """One round of the read-only loop (``--mix read``)."""
        raise NotImplementedError

    def setup(self, i: int) -> list[Call]:
        """Calls session ``i`` makes once before the loop."""
        return []


class SlmMesh(Adapter):
    name = "slm-mesh"

    def __init__(self, command: list[str] | None) -> None:
        super().__init__(command or SLM_MESH_COMMAND)

    def env(self, data_dir: Path, session_name: str) -> dict[str, str]:
        env = _base_env()
        if os.environ.get("SLM_MESH_NO_ZYGOTE"):
            env["SLM_MESH_NO_ZYGOTE"] = os.environ["SLM_MESH_NO_ZYGOTE"]
        env.update(SLM_MESH_DATA_DIR=str(data_dir), SLM_MESH_NAME=session_name)
        return env

    def processes(self, data_dir: Path) -> list[int]:
        return processes_in(data_dir)

    def kind(self, pid: int) -> str:
        argv = _argv(pid)
        if not argv:
            return "gone"
        if b"broker" in argv:
            return "broker"
        return "server" if b"slm_mesh.zygote" in argv else "launcher"

    def stop_broker(self, data_dir: Path) -> int | None:
        pid = int((data_dir / "broker.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        return pid

    async def ready(self, s: Session) -> None:
        await s.call("mesh_status", {})

    async def peers_seen(self, s: Session) -> int:
        result = await s.call("mesh_peers", {})
        assert result.structured is not None
        return len(result.structured["peers"])

    async def addresses(self, sessions: list[Session]) -> list[str]:
        return [s.name for s in sessions]

    def send(self, to: str, text: str) -> Call:
        return ("mesh_send", {"to": to, "message": text})

    def read_inbox(self) -> Call:
        return ("mesh_inbox", {})

    def mixed_round(self, i: int, to: str) -> list[Call]:
        path = f"/tmp/slm-mesh-bench/file{i}.py"
        return [
            self.send(to, f"from {i}"),
            self.read_inbox(),
            ("mesh_state", {"action": "set", "key": f"k{i}", "value": i}),
            ("mesh_state", {"action": "get", "key": f"k{i}"}),
            ("mesh_lock", {"action": "lock", "filePath": path}),
            ("mesh_lock", {"action": "unlock", "filePath": path}),
        ]

    def read_round(self, i: int) -> list[Call]:
        return [("mesh_state", {"action": "get", "key": f"k{i}"})]

    def setup(self, i: int) -> list[Call]:
        return [("mesh_state", {"action": "set", "key": f"k{i}", "value": "v"})]


_PEER_ID = re.compile(r"ID: (\S+)\n\s*PID: (\d+)")


class ClaudePeers(Adapter):
    name = "claude-peers"
    DB = "peers.db"
    exits_on_eof = False  # its poll and heartbeat timers keep it alive

    def __init__(self, command: list[str] | None) -> None:
        if not command:
            raise SystemExit("claude-peers needs --server, e.g. --server 'bun /path/server.ts'")
        if shutil.which("bun") is None:
            raise SystemExit("claude-peers starts its broker as `bun broker.ts`: put bun on PATH")
        super().__init__(command)
        self._ports: dict[Path, int] = {}

    def _port(self, data_dir: Path) -> int:
        if data_dir not in self._ports:
            with socket.socket() as probe:  # a free port, one per cluster
                probe.bind(("127.0.0.1", 0))
                self._ports[data_dir] = probe.getsockname()[1]
        return self._ports[data_dir]

    def env(self, data_dir: Path, session_name: str) -> dict[str, str]:
        data_dir.mkdir(parents=True, exist_ok=True)
        env = _base_env()
        env.pop("OPENAI_API_KEY", None)
        env.update(
            CLAUDE_PEERS_DB=str(data_dir / self.DB),
            CLAUDE_PEERS_PORT=str(self._port(data_dir)),
        )
        return env

    def processes(self, data_dir: Path) -> list[int]:
        return _processes_with(f"CLAUDE_PEERS_DB={data_dir / self.DB}".encode())

    def kind(self, pid: int) -> str:
        argv = _argv(pid)
        if not argv:
            return "gone"
        return "broker" if any(a.endswith(b"broker.ts") for a in argv) else "server"

    async def ready(self, s: Session) -> None:
        await self.peers_seen(s)

    async def peers_seen(self, s: Session) -> int:
        text = (await s.call("list_peers", {"scope": "machine"})).text
        if text.startswith("No other"):
            return 0
        found = re.match(r"Found (\d+) peer", text)
        assert found, text
        return int(found.group(1))

    async def addresses(self, sessions: list[Session]) -> list[str]:
        """A session does not list itself: the first lists the others, the second the first."""
        by_pid: dict[int, str] = {}
        for s in sessions[:2]:
            text = (await s.call("list_peers", {"scope": "machine"})).text
            by_pid.update((int(pid), peer_id) for peer_id, pid in _PEER_ID.findall(text))
        return [by_pid[s.pid] for s in sessions]

    def send(self, to: str, text: str) -> Call:
        return ("send_message", {"to_id": to, "message": text})

    def read_inbox(self) -> Call:
        return ("check_messages", {})

    def mixed_round(self, i: int, to: str) -> list[Call]:
        return [
            ("list_peers", {"scope": "machine"}),
            self.send(to, f"from {i}"),
            ("set_summary", {"summary": f"session {i} at work"}),
            self.read_inbox(),
        ]

    def read_round(self, i: int) -> list[Call]:
        return [("list_peers", {"scope": "machine"})]


ADAPTERS: dict[str, Callable[[list[str] | None], Adapter]] = {
    "slm-mesh": SlmMesh,
    "claude-peers": ClaudePeers,
}
