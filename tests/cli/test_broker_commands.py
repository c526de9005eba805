"""The broker's life from the shell: status, bare ``slm-mesh``, start, stop, clean,
version, and the exit codes when no broker runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest

from slm_mesh.config import PROTOCOL_VERSION, VERSION, Settings
from tests.cli.conftest import Cli, has_fields, stop_detached
from tests.wire import broker_process

STATUS_FIELDS = (
    "address",
    "pid",
    "version",
    "uptime_s",
    "listeners",
    "data_dir",
    "counts",
    "db_bytes",
    "idle_exit_s",
    "lifetime",
    "person",
)
COUNT_FIELDS = (
    "peers",
    "away",
    "messages",
    "unread",
    "locks",
    "events",
    "connections",
    "subscribers",
    "waiters",
    "last_seq",
)


def test_status_json_describes_the_running_broker(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    doc = cli.json("status")
    has_fields(doc, STATUS_FIELDS)
    assert doc["address"] == f"unix:{settings.socket_path}"
    assert doc["pid"] == broker.pid
    assert doc["version"] == VERSION
    assert isinstance(doc["uptime_s"], int | float) and doc["uptime_s"] >= 0
    assert doc["listeners"] == [{"kind": "unix", "path": str(settings.socket_path)}]
    assert doc["data_dir"] == str(settings.data_dir)
    assert doc["db_bytes"] > 0
    assert doc["idle_exit_s"] is None  # started by hand, without --idle-exit
    assert doc["lifetime"] == "until-stopped"
    has_fields(doc["counts"], COUNT_FIELDS)
    assert doc["counts"]["peers"] == 0
    assert doc["counts"]["connections"] >= 1  # the CLI itself (and maybe a closing probe)
    assert "started" not in doc
    assert doc["warm"] is None  # no agent session has started one


def test_status_text_is_aligned_and_plain_when_piped(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    out = cli.ok("status")
    assert out.startswith(f"slm-mesh broker running, pid {broker.pid}, version {VERSION}")
    assert "\x1b[" not in out  # no colour into a pipe
    lines = out.splitlines()[1:]
    labels = [line[2:].split("  ")[0].strip() for line in lines]
    assert labels[:3] == ["address", "listening", "data dir"]
    value_columns = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in lines}
    assert len(value_columns) == 1  # every value starts in the same column
    assert f"address       unix:{settings.socket_path}" in out


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["stop"],
        ["peers"],
        ["send", "bob", "hi"],
        ["broadcast", "hi"],
        ["inbox"],
        ["state", "get", "k"],
        ["state", "set", "k", "v"],
        ["lock", "list"],
        ["lock", "check", "a.py"],
        ["lock", "acquire", "a.py", "--", "true"],
        ["lock", "release", "a.py"],
        ["events"],
    ],
)
def test_without_a_broker_commands_exit_3_saying_how_to_start_one(
    cli: Cli, settings: Settings, args: list[str]
) -> None:
    done = cli.run(*args)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "no slm-mesh broker is running" in done.stderr
    assert "slm-mesh start" in done.stderr
    assert not settings.socket_path.exists()  # none of them started one
    assert not settings.pid_path.exists()


def test_json_errors_are_a_document_on_stdout_too(cli: Cli) -> None:
    done = cli.run("status", "--json")
    assert done.returncode == 3
    error = json.loads(done.stdout)["error"]
    assert error["name"] == "broker_unreachable"
    assert error["code"] is None
    assert "slm-mesh start" in error["message"]
    assert error["data"] is None


def test_bare_slm_mesh_starts_a_broker_that_runs_until_stopped(
    cli: Cli, settings: Settings
) -> None:
    """Idle exit is for brokers agents start: the one a person starts stays (issue 13)."""
    done = cli.run("--json", SLM_MESH_IDLE_EXIT_S="30")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    try:
        has_fields(doc, (*STATUS_FIELDS, "started"))
        assert doc["started"] is True
        assert doc["idle_exit_s"] is None
        assert doc["lifetime"] == "until-stopped"
        assert "runs until `slm-mesh stop`" in cli.ok("status")
        assert doc["address"] == f"unix:{settings.socket_path}"
        again = cli.json()
        assert again["started"] is False
        assert again["pid"] == doc["pid"]
    finally:
        stop_detached(doc["pid"])


def test_start_runs_a_broker_until_stop(cli: Cli, settings: Settings) -> None:
    started = cli.json("start")
    try:
        has_fields(started, ("started", "pid", "address", "idle_exit_s"))
        assert started["started"] is True
        assert started["idle_exit_s"] is None  # no idle exit: it runs until stopped
        assert started["address"] == f"unix:{settings.socket_path}"
        assert cli.json("start")["started"] is False
        assert cli.json("status")["pid"] == started["pid"]
        stopped = cli.json("stop")
        assert stopped == {"stopped": True, "pid": started["pid"], "warm_pid": None}
        # stop returned only once the broker let go of its data dir
        assert not settings.socket_path.exists()
        assert not settings.pid_path.exists()
        assert cli.run("status").returncode == 3
    finally:
        stop_detached(started["pid"])


def test_start_with_idle_exit_says_so(cli: Cli) -> None:
    done = cli.run("start", "--idle-exit", "45")
    assert done.returncode == 0, done.stderr
    pid = cli.json("status")["pid"]
    try:
        assert f"started broker pid {pid}" in done.stdout
        assert "exits 45 s after its last connection closes" in done.stdout
        assert cli.json("status")["lifetime"] == "idle-exit"
        assert "exits 45 s after its last connection closes" in cli.ok("status")
    finally:
        stop_detached(pid)


def test_stop_text_names_the_pid(cli: Cli, settings: Settings) -> None:
    with broker_process(settings) as proc:
        done = cli.run("stop")
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"stopped broker pid {proc.pid}\n"
        assert proc.wait(timeout=10) == 0


def test_version_needs_no_broker(cli: Cli) -> None:
    assert cli.json("version") == {"version": VERSION, "protocol": PROTOCOL_VERSION}
    assert cli.ok("version") == f"slm-mesh {VERSION} (wire protocol {PROTOCOL_VERSION})\n"
    assert cli.ok("--version") == f"{VERSION}\n"


def test_a_usage_error_exits_2(cli: Cli) -> None:
    assert cli.run("peers", "--scope", "galaxy").returncode == 2
    assert cli.run("no-such-command").returncode == 2
    assert cli.run("send", "only-a-peer").returncode == 2
    done = cli.run("status", SLM_MESH_PORT="not-a-number")
    assert done.returncode == 2
    assert "SLM_MESH_PORT must be a number" in done.stderr


def test_help_lists_every_command(cli: Cli) -> None:
    out = cli.ok("--help")
    for command in (
        "broker", "start", "stop", "status", "peers", "send", "broadcast", "inbox", "state",
        "lock", "events", "clean", "mcp", "service", "version",
    ):  # fmt: skip
        assert f" {command} " in out, command


def test_a_data_dir_of_another_user_is_named_as_the_problem(cli: Cli, settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(settings.data_dir, 65534, 65534)
        expected = "belongs to uid 65534, not to you"
    else:
        settings.data_dir.chmod(0o000)
        expected = "permission denied"
    try:
        done = cli.run("status")
        assert done.returncode == 3
        assert f"data dir {settings.data_dir}" in done.stderr
        assert expected in done.stderr
        started = cli.run()  # bare: must not try to start a broker there either
        assert started.returncode == 3
        assert expected in started.stderr
    finally:
        settings.data_dir.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(settings.data_dir, 0, 0)


# -- clean -----------------------------------------------------------------------------


def test_clean_removes_what_a_killed_broker_left(cli: Cli, settings: Settings) -> None:
    with broker_process(settings) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [settings.socket_path, settings.pid_path, settings.token_path]
    assert all(p.exists() for p in left)
    dry = cli.json("clean", "--dry-run")
    assert dry["removed"] == [str(p) for p in left]
    assert all(p.exists() for p in left)  # a dry run removes nothing
    doc = cli.json("clean")
    assert doc == {
        "broker_running": False,
        "pid": None,
        "removed": [str(p) for p in left],
        "kept": [],
    }
    assert not any(p.exists() for p in left)
    assert settings.db_path.exists()  # the data stays
    assert cli.ok("clean") == "nothing to clean\n"


def test_clean_leaves_a_running_broker_alone(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    doc = cli.json("clean")
    assert doc == {"broker_running": True, "pid": broker.pid, "removed": [], "kept": []}
    assert settings.socket_path.exists()
    assert broker.poll() is None
    assert cli.json("status")["pid"] == broker.pid


def test_clean_keeps_a_socket_that_answers(cli: Cli, settings: Settings) -> None:
    """No broker holds the lock, but something listens on the socket (a systemd socket
    unit, say): that socket is not stale."""
    settings.data_dir.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(settings.socket_path))
    listener.listen(4)
    try:
        doc = cli.json("clean")
        assert doc["removed"] == []
        assert [k["path"] for k in doc["kept"]] == [str(settings.socket_path)]
        assert settings.socket_path.exists()
    finally:
        listener.close()
