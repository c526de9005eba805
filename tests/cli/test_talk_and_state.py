"""Peers, messages, state and events from the shell, against a real broker; ``--json``
outputs checked field by field."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.client import BlockingClient
from slm_mesh.config import Settings
from tests import stores
from tests.cli.conftest import Cli, finish, has_fields, read_line_until, running
from tests.wire import make_settings

PEER_FIELDS = (
    "peer_id", "name", "agent", "pid", "cwd", "git_root", "git_branch", "summary", "status",
    "connected", "joined_at", "last_seen",
)  # fmt: skip
MESSAGE_FIELDS = (
    "id", "from", "from_name", "to", "body", "type", "reply_to", "broadcast", "sent_at", "status",
)  # fmt: skip
ENTRY_FIELDS = (
    "key", "namespace", "value", "version", "updated_by", "updated_at", "expires_at",
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


@contextmanager
def peer(settings: Settings, name: str, cwd: str, **params: Any) -> Iterator[BlockingClient]:
    """An agent session, registered and connected for the block."""
    client = BlockingClient.connect(settings)
    try:
        client.call("peer.register", {"name": name, "cwd": cwd, **params})
        yield client
    finally:
        client.close()


# -- peers -----------------------------------------------------------------------------


def test_peers_json_lists_each_peer_field_by_field(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with peer(
        settings,
        "backend",
        "/repo/api",
        agent="claude-code",
        pid=4242,
        git_root="/repo",
        git_branch="main",
        summary="fixing the login race",
    ):
        doc = cli.json("peers")
    assert doc["scope"] == "mesh"
    (p,) = doc["peers"]
    has_fields(p, PEER_FIELDS)
    assert p["name"] == "backend"
    assert p["agent"] == "claude-code"
    assert p["pid"] == 4242
    assert p["cwd"] == "/repo/api"
    assert p["git_root"] == "/repo"
    assert p["git_branch"] == "main"
    assert p["summary"] == "fixing the login race"
    assert p["status"] == "active"
    assert p["connected"] is True
    assert abs(p["joined_at"] - time.time()) < 60


def test_peers_text_is_a_table_and_scope_directory_means_here(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with (
        peer(settings, "here", str(cli.cwd), agent="cursor", summary="tests"),
        peer(settings, "elsewhere", "/somewhere/else", agent="aider"),
    ):
        table = cli.ok("peers").splitlines()
        local = cli.json("peers", "--scope", "directory")
    assert table[0].split() == [
        "NAME",
        "AGENT",
        "STATUS",
        "DIRECTORY",
        "BRANCH",
        "JOINED",
        "SUMMARY",
    ]
    assert [row.split()[0] for row in table[1:]] == ["here", "elsewhere"]
    assert table[1].index("cursor") == table[2].index("aider") == table[0].index("AGENT")
    assert "just now" in table[1]
    assert [p["name"] for p in local["peers"]] == ["here"]


@pytest.mark.sqlite_only("the command line itself")
def test_peers_scope_repo_outside_a_repository_is_a_usage_error(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    done = cli.run("peers", "--scope", "repo")
    assert done.returncode == 2
    assert "not inside a git repository" in done.stderr
    assert "--scope machine or --scope directory work here" in done.stderr  # what to do


# -- messages --------------------------------------------------------------------------


def test_send_delivers_to_a_named_peer_as_cli(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with peer(settings, "reviewer", "/repo") as reviewer:
        doc = cli.json("send", "reviewer", "please look at #12", "--type", "alert")
        method, pushed = next(reviewer.notifications(timeout=10))
    assert method == "message"
    assert doc["ids"] == [pushed["id"]]
    (recipient,) = doc["recipients"]
    assert recipient == {
        "peer_id": pushed["to"],
        "name": "reviewer",
        "id": pushed["id"],
        "connected": True,
    }
    assert pushed["body"] == "please look at #12"
    assert pushed["type"] == "alert"
    assert (pushed["from"], pushed["from_name"]) == stores.person(settings)


@pytest.mark.sqlite_only("the command line itself")
def test_send_reads_the_body_from_stdin_with_a_dash(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with peer(settings, "reviewer", "/repo") as reviewer:
        done = cli.run("send", "reviewer", "-", input="line one\nline two\n")
        assert done.returncode == 0, done.stderr
        _, pushed = next(reviewer.notifications(timeout=10))
    assert pushed["body"] == "line one\nline two"
    assert done.stdout == f"sent message #{pushed['id']} to reviewer\n"


def test_send_to_an_unknown_peer_exits_1_naming_who_is_there(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with peer(settings, "backend", "/repo"):
        done = cli.run("send", "frontend", "hi")
        as_json = cli.run("send", "frontend", "hi", "--json")
    assert done.returncode == 1
    assert "no peer named or numbered 'frontend'" in done.stderr
    assert "peers now: backend" in done.stderr
    assert json.loads(as_json.stdout)["error"]["name"] == "peer_not_found"


def test_broadcast_reaches_every_connected_peer(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with peer(settings, "a", "/repo") as a, peer(settings, "b", "/repo") as b:
        doc = cli.json("broadcast", "deploy freeze")
        got = [next(c.notifications(timeout=10))[1] for c in (a, b)]
    assert sorted(r["name"] for r in doc["recipients"]) == ["a", "b"]
    assert sorted(doc["ids"]) == sorted(m["id"] for m in got)
    assert all(m["body"] == "deploy freeze" and m["broadcast"] for m in got)
    assert cli.ok("broadcast", "anyone?") == "nobody to receive it: no peer is connected\n"


def test_an_agent_answers_the_person_and_the_answer_waits_in_the_inbox(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    first = cli.json("inbox")
    assert first == {"messages": [], "unread_left": 0}
    with peer(settings, "backend", "/repo") as agent:
        asked = cli.json("send", "backend", "is the API done?")
        (question,) = agent.call("message.inbox", {})["messages"]
        assert (question["from"], question["from_name"]) == stores.person(settings)
        # No shell command runs now: the answer to the shell's message waits all the same.
        agent.call(
            "message.send",
            {"to": question["from"], "body": "done with the API", "reply_to": asked["ids"][0]},
        )
    status = cli.json("status")
    person_id, person = stores.person(settings)
    assert status["person"] == {
        "peer_id": person_id,
        "name": person,
        "unread": 1,
        "following": 0,
    }
    assert f"{person} (peer id {person_id}), 1 unread message" in cli.ok("status")
    doc = cli.json("inbox")
    (m,) = doc["messages"]
    has_fields(m, MESSAGE_FIELDS)
    assert m["from_name"] == "backend"
    assert m["reply_to"] == asked["ids"][0]
    assert m["to"] == person_id
    assert m["body"] == "done with the API"
    assert m["type"] == "text"
    assert m["broadcast"] is False
    assert m["status"] == "read"
    assert doc["unread_left"] == 0
    assert cli.json("inbox")["messages"] == []  # read now
    assert [x["id"] for x in cli.json("inbox", "--all")["messages"]] == [m["id"]]


def test_inbox_follow_prints_messages_as_they_come_and_stops_on_ctrl_c(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with peer(settings, "backend", "/repo") as agent:
        agent.call("message.send", {"to": settings.person, "body": "sent before following"})
        with running(cli.popen("inbox", "--follow", "--json")) as follower:
            (backlog,) = read_line_until(follower, "sent before following")
            _wait_for_follower(agent)
            agent.call("message.send", {"to": "person", "body": "ping from backend"})
            (line,) = read_line_until(follower, "ping from backend")
            message = json.loads(line)
            assert message["from_name"] == "backend"
            assert json.loads(backlog)["status"] == "read"
            _wait_for(lambda: agent.call("mesh.status", {})["person"]["unread"] == 0)  # acked
            follower.send_signal(signal.SIGINT)
            _, err = finish(follower)
    assert follower.returncode == 0
    assert "Traceback" not in err


def _wait_for_follower(client: BlockingClient) -> None:
    _wait_for(lambda: bool(client.call("mesh.status", {})["person"]["following"]))


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("the condition never held")


# -- state -----------------------------------------------------------------------------


def test_state_set_get_list_delete_round_trip(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    assert cli.json("state", "set", "release", "1.4.0") == {
        "key": "release",
        "namespace": "default",
        "version": 1,
    }
    assert cli.ok("state", "get", "release") == "1.4.0\n"  # a string prints as it is
    cli.ok("state", "set", "limits", '{"rps": 10}', "--parse-json", "-n", "ops", "--ttl", "600")
    assert cli.ok("state", "get", "limits", "-n", "ops") == '{"rps": 10}\n'
    entry = cli.json("state", "get", "limits", "--namespace", "ops")
    has_fields(entry, ENTRY_FIELDS)
    assert entry["value"] == {"rps": 10}
    assert entry["namespace"] == "ops"
    assert entry["version"] == 1
    assert entry["updated_by"] == stores.person(settings)[1]
    assert entry["expires_at"] - entry["updated_at"] == 600
    listed = cli.json("state", "list", "-n", "ops")
    assert listed["namespace"] == "ops"
    assert [e["key"] for e in listed["entries"]] == ["limits"]
    table = cli.ok("state", "list", "-n", "ops").splitlines()
    assert table[0].split() == ["KEY", "VERSION", "BY", "UPDATED", "EXPIRES", "VALUE"]
    assert "expires in 10 min" in table[1]
    assert cli.json("state", "delete", "release") == {
        "key": "release",
        "namespace": "default",
        "deleted": True,
    }
    assert cli.json("state", "delete", "release")["deleted"] is False


def test_state_list_prints_every_key_past_the_brokers_page(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    keys = [f"k{i:04}" for i in range(1_234)]  # more than one page of the broker's largest
    client = BlockingClient.connect(settings)
    try:
        for key in keys:
            client.call("state.set", {"key": key, "value": key, "namespace": "many"})
        first = client.call("state.list", {"namespace": "many", "limit": 5000})
    finally:
        client.close()
    assert first["next_after"] is not None  # the broker did page it
    listed = cli.json("state", "list", "-n", "many")
    assert [e["key"] for e in listed["entries"]] == keys
    table = cli.ok("state", "list", "-n", "many", "--prefix", "k12").splitlines()
    assert [line.split()[0] for line in table[1:]] == [k for k in keys if k.startswith("k12")]


def test_state_get_of_a_missing_key_exits_1(cli: Cli, broker: subprocess.Popen[bytes]) -> None:
    done = cli.run("state", "get", "nothing-here")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no key 'nothing-here' in namespace 'default'" in done.stderr
    as_json = cli.run("state", "get", "nothing-here", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) is None


def test_state_compare_and_set_conflict_exits_1_with_the_version(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    cli.ok("state", "set", "k", "a")
    assert cli.json("state", "set", "k", "b", "--if-version", "1")["version"] == 2
    done = cli.run("state", "set", "k", "c", "--if-version", "1", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["name"] == "version_conflict"
    assert error["code"] == -32004
    assert error["data"] == {"version": 2}
    assert "version is 2, not 1" in done.stderr
    # ... and says what to do about it.
    text = cli.run("state", "set", "k", "c", "--if-version", "1").stderr
    assert "read it again (`slm-mesh state get k`)" in text
    assert "retry with --if-version 2" in text
    gone = cli.run("state", "delete", "nothing", "--if-version", "3").stderr
    assert "retry with --if-version 0" in gone


@pytest.mark.sqlite_only("the command line itself")
def test_a_bad_key_is_refused_clearly(cli: Cli, broker: subprocess.Popen[bytes]) -> None:
    empty = cli.run("state", "set", "", "v")
    assert empty.returncode == 1
    assert "key: must not be empty" in empty.stderr
    long = cli.run("state", "set", "k" * 300, "v")
    assert long.returncode == 1
    assert "key is over the limit of 256 bytes" in long.stderr
    bad_json = cli.run("state", "set", "k", "{oops", "--parse-json")
    assert bad_json.returncode == 2
    assert "VALUE is not JSON" in bad_json.stderr


# -- events ----------------------------------------------------------------------------


def test_events_shows_the_last_events_then_pages_with_after(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    for i in range(5):
        cli.ok("state", "set", f"k{i}", "v")
    doc = cli.json("events", "--limit", "3")
    assert [e["data"]["key"] for e in doc["events"]] == ["k2", "k3", "k4"]
    for event in doc["events"]:
        has_fields(event, ("seq", "type", "ts", "data"))
        assert event["type"] == "state_changed"
    assert doc["last_seq"] == doc["events"][-1]["seq"]
    first_two = cli.json("events", "--after", "0", "--limit", "2")
    assert [e["data"]["key"] for e in first_two["events"]] == ["k0", "k1"]
    rest = cli.json("events", "--after", str(first_two["last_seq"]))
    assert [e["data"]["key"] for e in rest["events"]] == ["k2", "k3", "k4"]
    text = cli.ok("events", "--limit", "1").splitlines()
    assert len(text) == 1
    _, person = stores.person(settings)
    assert "state_changed" in text[0] and f"default/k4 set by {person} (version 1)" in text[0]


@pytest.mark.sqlite_only(
    "the rendering and filtering of the command line; the store's events are checked above"
)
def test_events_type_filter(cli: Cli, broker: subprocess.Popen[bytes], settings: Settings) -> None:
    cli.ok("state", "set", "k", "v")
    with peer(settings, "a", "/repo"):
        pass
    # a's connection closed: it is away (peer_updated) for its grace, not gone yet.
    doc = cli.json("events", "--type", "peer_joined", "-t", "peer_left")
    assert [(e["type"], e["data"]["name"]) for e in doc["events"]] == [("peer_joined", "a")]
    away = cli.json("events", "--type", "peer_updated")
    assert [e["data"]["status"] for e in away["events"]] == ["away"]


def test_events_follow_sees_an_event_made_by_another_client_and_ends_on_ctrl_c(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    cli.ok("state", "set", "before", "1")
    with running(cli.popen("events", "--follow", "--json", "--limit", "1")) as follower:
        (replayed,) = read_line_until(follower, '"before"')
        assert json.loads(replayed)["data"]["key"] == "before"
        with BlockingClient.connect(settings) as other:
            other.call("state.set", {"key": "after", "value": 2})
        (line,) = read_line_until(follower, '"after"')
        event = json.loads(line)
        assert event["type"] == "state_changed"
        assert event["data"] == {
            "namespace": "default",
            "key": "after",
            "version": 1,
            "updated_by": stores.person(settings)[1],
        }
        assert event["seq"] == json.loads(replayed)["seq"] + 1
        follower.send_signal(signal.SIGINT)
        out, err = finish(follower)
    assert follower.returncode == 0
    assert out == ""
    assert "Traceback" not in err


@pytest.mark.sqlite_only(
    "the rendering and filtering of the command line; the store's events are checked above"
)
def test_events_follow_in_text_streams_readable_lines(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with running(cli.popen("events", "-f", "--limit", "0")) as follower:
        read_line_until(follower, "following events; Ctrl-C to stop", stderr=True)
        with peer(settings, "watcher-test", "/repo", agent="codex"):
            lines = read_line_until(follower, "joined")
        assert "peer_joined" in lines[-1]
        assert "watcher-test (codex) joined in /repo" in lines[-1]
        follower.send_signal(signal.SIGINT)
        finish(follower)
    assert follower.returncode == 0
