"""Agents whose hooks are their only link to the mesh, on a mesh of several brokers: their
repository, their edits and their locks count on every machine, a broker that starts
later knows the edits of the last minutes, and the hooks-only sessions of a broker killed
with SIGKILL end on the others like any other of its sessions (their agent may still run:
nobody can watch it any more)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.hooks.conftest import Agent, agent_process
from tests.hooks.test_repositories import IDENTITY, REMOTE, other_clone, repository
from tests.multi.conftest import GRACE_S, LEASE_S, Mesh
from tests.multi.test_faults import peer_status, wait_until


def edit(agent: Agent, path: Path) -> str:
    """What the edit guard says about an edit of ``path`` ("" when nothing)."""
    answer = agent.output("PreToolUse", tool_name="Edit", tool_input={"file_path": str(path)})
    return str(answer or "")


def edited(agent: Agent, path: Path) -> None:
    agent.output(
        "PostToolUse",
        tool_name="Edit",
        tool_input={"file_path": str(path)},
        tool_response={"success": True},
    )


def edits_seen(check: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["name"], e["host"]) for e in check.get("edits") or []]


def test_a_hooks_only_session_counts_on_every_machine(mesh: Mesh, tmp_short: Path) -> None:
    near, far = mesh.start("host-0"), mesh.start("host-1")
    here = repository(tmp_short / "here", REMOTE)
    there = other_clone(here, tmp_short / "there")
    other = far.client()  # a session in another clone, on another machine
    other.call("peer.register", name="other", cwd=str(there), git_root=str(there))
    with agent_process(near.settings, here, kind="claude") as agent:
        agent.output("SessionStart", source="startup")
        [mine] = other.call("peer.list", scope="repo")["peers"]
        assert (mine["agent"], mine["host"], mine["repo"]) == ("claude-code", "host-0", IDENTITY)

        # An edit on host-1 is a warning for the hooks on host-0, once its event is there.
        other.call("file.edited", paths=["src/app.py"])
        wait_until(
            lambda: '"other" edited src/app.py' in edit(agent, here / "src" / "app.py"),
            10,
            "the edit made on host-1 to reach the guard on host-0",
        )

        # The hooks' edits on host-0 are seen from host-1; an auto-lock holds there.
        edited(agent, here / "src" / "notes.py")
        wait_until(
            lambda: (
                edits_seen(other.call("lock.check", paths=["src/notes.py"], edited_within=600))
                == [("claude-code", "host-0")]
            ),
            10,
            "the edit made on host-0 to reach host-1",
        )
        agent.env_extra["SLM_MESH_AUTOLOCK"] = "1"
        edited(agent, here / "src" / "util.py")
        refused = other.request("lock.acquire", path="src/util.py")["error"]
        assert refused["code"] == -32003
        assert refused["data"]["holders"][0]["agent"] == "claude-code"

        # A broker that starts now knows those edits from the log.
        late = mesh.start("host-2")
        third = other_clone(here, tmp_short / "third")
        newcomer = late.client()
        newcomer.call("peer.register", name="newcomer", cwd=str(third), git_root=str(third))
        check = newcomer.call("lock.check", paths=["src/app.py", "src/notes.py"], edited_within=600)
        assert sorted(edits_seen(check)) == [("claude-code", "host-0"), ("other", "host-1")]
        for client in (other, newcomer):
            client.close()


def test_a_dead_brokers_hooks_only_sessions_end_on_the_others(mesh: Mesh, tmp_short: Path) -> None:
    doomed, survivor = mesh.start("host-0"), mesh.start("host-1")
    here = repository(tmp_short / "here", REMOTE)
    there = other_clone(here, tmp_short / "there")
    with agent_process(doomed.settings, here, kind="codex") as agent:
        agent.env_extra["SLM_MESH_AUTOLOCK"] = "1"
        agent.output("SessionStart", source="startup")
        edited(agent, here / "src" / "app.py")  # auto-locked
        waiting = survivor.client()
        waiting.call("peer.register", name="waiting", cwd=str(there), git_root=str(there))
        waiting.send("lock.acquire", path="src/app.py", wait=60)
        watcher = survivor.client()
        assert peer_status(watcher, "codex") == "active"
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait()
        killed = time.monotonic()
        wait_until(lambda: peer_status(watcher, "codex") == "away", LEASE_S * 4, "codex away")
        granted = waiting.answer()  # its session ended after the grace, and its lock
        assert granted["result"]["granted"] is True, granted
        assert time.monotonic() - killed >= GRACE_S
        assert agent.proc.poll() is None  # the agent runs on: its broker is what died
        assert peer_status(watcher, "codex") is None
        left = watcher.call("event.read", types=["peer_left"])["events"]
        assert [(e["data"]["name"], e["data"]["reason"]) for e in left] == [
            ("codex", "grace_expired")
        ]
        for client in (waiting, watcher):
            client.close()
