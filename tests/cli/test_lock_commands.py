"""Locks from the shell: ``lock list|check|acquire|release``, ``lock acquire`` working like
flock(1)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.client import BlockingClient
from slm_mesh.config import Settings
from tests import stores
from tests.cli.conftest import Cli, finish, has_fields, read_line_until, running, wait_until
from tests.wire import make_settings

LOCK_FIELDS = (
    "path", "mode", "peer_id", "holder", "agent", "summary", "reason", "acquired_at", "expires_at",
)  # fmt: skip


# Both stores (tests/stores.py): every test here also runs against a broker on a mesh of
# its own in the session's PostgreSQL cluster, but those about the command line itself.
pytest_generate_tests = stores.parametrize


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store: str, tmp_short: Path, request: pytest.FixtureRequest) -> Settings:
    return stores.on(make_settings(tmp_short), store, request)


def agent_lock(settings: Settings, path: str, **params: Any) -> BlockingClient:
    """An agent session holding a lock on ``path`` (close the client to let go)."""
    client = BlockingClient.connect(settings)
    client.call("peer.register", {"name": "backend", "agent": "claude-code", "cwd": "/repo"})
    client.call("lock.acquire", {"path": path, **params})
    return client


def locks(cli: Cli) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = cli.json("lock", "list")["locks"]
    return result


# -- list and check --------------------------------------------------------------------


def test_lock_list_json_and_table(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, "/repo/src/auth/**", reason="refactoring auth", ttl=480)
    try:
        (lock,) = locks(cli)
        table = cli.ok("lock", "list").splitlines()
    finally:
        holder.close()
    has_fields(lock, LOCK_FIELDS)
    assert lock["path"] == "/repo/src/auth/**"
    assert lock["mode"] == "exclusive"
    assert lock["holder"] == "backend"
    assert lock["agent"] == "claude-code"
    assert lock["reason"] == "refactoring auth"
    assert lock["expires_at"] - lock["acquired_at"] == 480
    assert table[0].split() == ["PATH", "MODE", "HOLDER", "AGENT", "EXPIRES", "REASON"]
    assert "expires in 8 min" in table[1]


def test_lock_check_exits_1_naming_the_holder_and_expiry(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, str(cli.cwd / "src/**"), reason="migrating", ttl=480)
    try:
        free = cli.run("lock", "check", "README.md", "docs/index.md")
        taken = cli.run("lock", "check", "README.md", "src/db.py")
        as_json = cli.run("lock", "check", "src/db.py", "--json")
    finally:
        holder.close()
    assert free.returncode == 0, free.stderr
    assert free.stdout == "not locked: all 2 paths\n"
    assert taken.returncode == 1
    assert (
        f"{cli.cwd}/src/db.py is locked by backend (claude-code), exclusive, "
        "expires in 8 min: migrating"
    ) in taken.stderr
    assert as_json.returncode == 1
    (conflict,) = json.loads(as_json.stdout)["conflicts"]
    assert conflict["path"] == f"{cli.cwd}/src/db.py"
    (lock,) = conflict["holders"]
    assert lock["holder"] == "backend"
    assert lock["path"] == f"{cli.cwd}/src/**"


# -- acquire ---------------------------------------------------------------------------

HOLD_UNTIL_GO = (
    "import pathlib, sys, time\n"
    "go = pathlib.Path(sys.argv[1])\n"
    "print('running', flush=True)\n"
    "while not go.exists(): time.sleep(0.02)\n"
    "sys.exit(int(sys.argv[2]))\n"
)


def test_lock_acquire_holds_the_lock_while_the_command_runs_and_exits_with_its_status(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    go = cli.cwd / "go"
    args = ("lock", "acquire", "data/db", "--reason", "migrate", "--")
    with running(cli.popen(*args, sys.executable, "-c", HOLD_UNTIL_GO, str(go), "7")) as proc:
        read_line_until(proc, "running")
        (lock,) = locks(cli)
        assert lock["path"] == f"{cli.cwd}/data/db"
        assert lock["holder"] == f"{settings.person}-2"  # the person's, with a suffix
        assert lock["agent"] == "slm-mesh-cli"
        assert lock["reason"] == "migrate"
        conflict = cli.run("lock", "check", "data/db")
        assert conflict.returncode == 1
        assert f"is locked by {settings.person}-2 (slm-mesh-cli)" in conflict.stderr
        go.touch()
        _, err = finish(proc)
    assert proc.returncode == 7
    assert f"locked {cli.cwd}/data/db (exclusive" in err
    assert f"released {cli.cwd}/data/db" in err
    assert locks(cli) == []
    peers = cli.json("peers")["peers"]
    assert peers == []  # its session ended with it, not left away for the grace


def test_lock_acquire_renews_the_lock_past_its_ttl(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    go = cli.cwd / "go"
    args = ("lock", "acquire", "slow.txt", "--ttl", "1", "--")
    with running(cli.popen(*args, sys.executable, "-c", HOLD_UNTIL_GO, str(go), "0")) as proc:
        read_line_until(proc, "running")
        (first,) = locks(cli)
        # Still held after its first TTL ran out, with a later expiry: it was renewed.
        wait_until(
            lambda: any(lock["expires_at"] > first["expires_at"] + 0.9 for lock in locks(cli)),
            what="the lock to be renewed past its first expiry",
        )
        go.touch()
        finish(proc)
    assert proc.returncode == 0
    assert cli.json("events", "--type", "lock_expired")["events"] == []


def test_lock_acquire_held_elsewhere_exits_1_naming_the_holder(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, str(cli.cwd / "src/**"), reason="refactor", ttl=480)
    try:
        done = cli.run("lock", "acquire", "src/a.py", "--", "true")
        waited = cli.run("lock", "acquire", "src/a.py", "--wait", "0.3", "--json", "--", "true")
    finally:
        holder.close()
    assert done.returncode == 1
    assert "is locked by backend (claude-code), exclusive, expires in 8 min: refactor" in (
        done.stderr
    )
    assert waited.returncode == 1
    error = json.loads(waited.stdout)["error"]
    assert error["name"] == "lock_conflict"
    assert error["code"] == -32003
    assert error["data"]["holders"][0]["holder"] == "backend"
    # the failed attempts left no session behind
    assert [p["name"] for p in cli.json("peers")["peers"]] == ["backend"]


def test_lock_acquire_waits_for_the_lock_to_free(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, str(cli.cwd / "shared.cfg"))
    marker = cli.cwd / "ran"
    command = (sys.executable, "-c", f"open({str(marker)!r}, 'w').close()")
    with running(
        cli.popen("lock", "acquire", "shared.cfg", "--wait", "30", "--", *command)
    ) as proc:
        wait_until(
            lambda: cli.json("status")["counts"]["waiters"] == 1, what="the request to queue"
        )
        assert not marker.exists()
        holder.call("peer.unregister")  # the agent leaves: its lock goes with it
        holder.close()
        finish(proc, timeout=60)
    assert proc.returncode == 0
    assert marker.exists()


@pytest.mark.sqlite_only("the command line itself")
def test_lock_acquire_reports_a_missing_command_like_a_shell(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    done = cli.run("lock", "acquire", "x", "--", "no-such-command-anywhere")
    assert done.returncode == 127
    assert "no-such-command-anywhere: command not found" in done.stderr
    assert locks(cli) == []


@pytest.mark.sqlite_only("the command line itself")
def test_lock_acquire_passes_on_the_commands_signal_status(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    done = cli.run("lock", "acquire", "x", "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + signal.SIGTERM


@pytest.mark.sqlite_only("the command line's Ctrl-C; releasing on PostgreSQL is checked above")
def test_lock_acquire_without_a_command_holds_until_ctrl_c(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    with running(cli.popen("lock", "acquire", "docs/**", "--json")) as proc:
        (line,) = read_line_until(proc, "acquired")
        granted = json.loads(line)
        assert granted["acquired"]["path"] == f"{cli.cwd}/docs/**"
        assert "Ctrl-C to release it" in read_line_until(proc, "Ctrl-C", stderr=True)[-1]
        assert [lock["path"] for lock in locks(cli)] == [f"{cli.cwd}/docs/**"]
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc)
    assert proc.returncode == 0
    assert json.loads(out) == {"released": True, "path": f"{cli.cwd}/docs/**", "status": 0}
    assert "Traceback" not in err
    assert locks(cli) == []


def test_lock_release_from_another_shell_ends_the_holder(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with running(cli.popen("lock", "acquire", "api/*.py", "--reason", "holding")) as proc:
        read_line_until(proc, "Ctrl-C to release it", stderr=True)
        released = cli.json("lock", "release", "api/*.py")
        assert released == {"released": [f"{cli.cwd}/api/*.py"], "not_released": []}
        _, err = finish(proc)
    assert proc.returncode == 0
    assert "was released by `slm-mesh lock release`" in err
    assert locks(cli) == []
    assert not list((settings.data_dir / "cli-sessions").glob("lock-*.json"))


def test_lock_release_refuses_an_agents_lock_naming_it(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, str(cli.cwd / "core.py"), ttl=480)
    try:
        done = cli.run("lock", "release", "core.py", "nothing.py", "--json")
    finally:
        holder.close()
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["released"] == []
    refused = {item["path"]: item for item in doc["not_released"]}
    assert "held by backend (claude-code)" in refused[f"{cli.cwd}/core.py"]["reason"]
    assert refused[f"{cli.cwd}/nothing.py"]["reason"] == "not locked"
    assert "not by a `slm-mesh lock acquire` on this machine" in done.stderr


def test_lock_release_force_frees_an_agents_lock_as_the_person_and_tells_the_agent(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, str(cli.cwd / "core.py"), ttl=480)
    try:
        watcher = BlockingClient.connect(settings)
        watcher.call("event.subscribe", {"types": ["lock_released"]})
        line = cli.ok(
            "lock", "release", "core.py", "--holder", "backend", "--force", "--reason", "stuck"
        )
        assert line == f"released backend's lock on {cli.cwd}/core.py (they were told)\n"
        method, told = next(holder.notifications(timeout=10))
        _, event = next(watcher.notifications(timeout=10))
    finally:
        holder.close()
        watcher.close()
    _, person = stores.person(settings)
    assert method == "message"
    assert (told["from_name"], told["type"]) == (person, "alert")
    assert told["body"] == f"{person} released your exclusive lock on {cli.cwd}/core.py: stuck"
    assert event["data"]["released_by"] == person
    assert event["data"]["reason"] == "forced"
    assert locks(cli) == []


def test_lock_release_force_of_a_lock_not_held_exits_1_naming_the_holders_locks(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    holder = agent_lock(settings, str(cli.cwd / "core.py"))
    try:
        done = cli.run(
            "lock", "release", "core.py", "other.py", "--holder", "backend", "--force", "--json"
        )
        unknown = cli.run("lock", "release", "core.py", "--holder", "nobody", "--force")
    finally:
        holder.close()
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["released"] == [f"{cli.cwd}/core.py"]
    assert doc["holder"] == "backend"
    assert len(doc["message_ids"]) == 1
    (refused,) = doc["not_released"]
    assert refused["path"] == f"{cli.cwd}/other.py"
    assert refused["reason"] == "backend holds no lock on it (its locks: none)"
    assert f"{cli.cwd}/other.py: backend holds no lock on it" in done.stderr
    assert unknown.returncode == 1
    assert "no peer named or numbered 'nobody'" in unknown.stderr


def test_lock_release_force_needs_a_holder_and_paths_checked_before_calling(cli: Cli) -> None:
    # No broker runs: each of these is refused as usage (2), never as "no broker" (3).
    for args, said in (
        (("core.py", "--force"), "--force needs --holder NAME"),
        (("core.py", "--holder", "backend"), "needs --force"),
        (("core.py", "--reason", "why"), "needs --force"),
        (("--holder", "backend", "--force"), "name the PATH"),
        (("--all", "--holder", "backend", "--force"), "not --all"),
    ):
        done = cli.run("lock", "release", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)


@pytest.mark.sqlite_only("the command line itself")
def test_clean_removes_the_session_file_of_a_killed_holder(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with running(cli.popen("lock", "acquire", "tmp.txt")) as proc:
        read_line_until(proc, "Ctrl-C", stderr=True)
        (saved,) = (settings.data_dir / "cli-sessions").glob("lock-*.json")
        assert saved.stat().st_mode & 0o777 == 0o600
        proc.kill()
        finish(proc)
    assert saved.exists()
    doc = cli.json("clean")
    assert doc == {
        "broker_running": True,  # the broker and its files are left alone
        "pid": broker.pid,
        "removed": [str(saved)],
        "kept": [],
    }
    assert not Path(saved).exists()
    assert settings.socket_path.exists()
