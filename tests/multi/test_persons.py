"""The person at each machine's shell, in a mesh several machines share (mesh/persons.py):
one identity per machine, answered there, with names that say which machine.

Brokers as real processes on one PostgreSQL mesh, each with a host name and a person of
its own; the person's side is the real CLI (``send``, ``inbox``, ``inbox --follow``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from slm_mesh.person import login_name
from slm_mesh.protocol import errors
from tests.cli.conftest import Cli, read_line_until, running, wait_until
from tests.multi.conftest import SWEEP_S, Mesh, Node
from tests.wire import LineClient, broker_process

LOGIN = login_name()  # whom each broker runs for: every "machine" here is this user's


def start(mesh: Mesh, host: str, person: str) -> Node:
    """A broker on ``host`` whose person is named ``person``."""
    settings = replace(mesh.settings(host), person=person)
    proc = mesh.stack.enter_context(broker_process(settings, SLM_MESH_SWEEP_S=str(SWEEP_S)))
    node = Node(settings, proc)
    status(node)  # answered once the broker has joined the mesh, its person with it
    return node


def register(node: Node, name: str) -> LineClient:
    client = node.client()
    client.call("peer.register", name=name, cwd="/work/app")
    return client


def status(node: Node) -> dict[str, Any]:
    client = node.client()
    try:
        return dict(client.call("mesh.status"))
    finally:
        client.close()


def cli(node: Node, tmp: Path) -> Cli:
    work = tmp / f"work-{node.settings.host}"
    work.mkdir(exist_ok=True)
    return Cli(node.settings, work, {})


def bodies(lines: list[str]) -> list[str]:
    return [json.loads(line)["body"] for line in lines]


def test_an_agent_answers_the_person_of_another_machine_on_that_machine(
    mesh: Mesh, tmp_short: Path
) -> None:
    boxa, boxb = start(mesh, "boxa", "ann"), start(mesh, "boxb", "dave")
    shell_a, shell_b = cli(boxa, tmp_short), cli(boxb, tmp_short)
    agent = register(boxa, "backend")

    # The person at boxb's shell asks an agent on boxa: it comes from boxb's person.
    asked = shell_b.json("send", "backend", "is the API done?")
    (question,) = agent.call("message.inbox")["messages"]
    assert (question["from"], question["from_name"]) == (f"person:{LOGIN}@boxb", "dave@boxb")
    assert status(boxb)["person"] == {
        "peer_id": f"person:{LOGIN}@boxb",
        "name": "dave@boxb",
        "unread": 0,
        "following": 0,
    }

    with (
        running(shell_b.popen("inbox", "--follow", "--json")) as follower_b,
        running(shell_a.popen("inbox", "--follow", "--json")) as follower_a,
    ):
        for node in (boxa, boxb):
            wait_until(lambda n=node: status(n)["person"]["following"] == 1, what="a follower")
        # Every way of answering reaches boxb's person, pushed across brokers.
        answers = [
            {"to": question["from"], "body": "by id"},
            {"to": "person", "body": "by replying", "reply_to": asked["ids"][0]},
            {"to": "dave@boxb", "body": "by name"},
            {"to": "dave", "body": "by the only dave"},
        ]
        for params in answers:
            sent = agent.call("message.send", **params)
            assert sent["recipients"][0]["name"] == "dave@boxb", params
        # "person" without a message to answer is the agent's own machine's person.
        mine = agent.call("message.send", to="person", body="for ann")
        assert mine["recipients"][0]["peer_id"] == f"person:{LOGIN}@boxa"
        assert bodies(read_line_until(follower_a, "for ann")) == ["for ann"]
        agent.call("message.send", to="dave@boxb", body="last")
        got = bodies(read_line_until(follower_b, "last"))
        assert got == ["by id", "by replying", "by name", "by the only dave", "last"]

    # Each machine's inbox is its own person's.
    inbox_b = shell_b.json("inbox", "--all")["messages"]
    assert [m["body"] for m in inbox_b] == got
    assert {(m["to"], m["from_name"]) for m in inbox_b} == {(f"person:{LOGIN}@boxb", "backend")}
    assert [m["body"] for m in shell_a.json("inbox", "--all")["messages"]] == ["for ann"]
    assert f"dave@boxb (peer id person:{LOGIN}@boxb)" in shell_b.ok("status")
    agent.close()


def test_names_of_people_on_several_machines_stay_unambiguous(mesh: Mesh) -> None:
    boxa = start(mesh, "boxa", "ann")
    boxb, boxc = start(mesh, "boxb", "dave"), start(mesh, "boxc", "dave")
    agent = register(boxa, "backend")

    refused = agent.request("message.send", to="dave", body="which one?")["error"]
    assert refused["code"] == errors.PEER_NOT_FOUND
    assert refused["data"]["candidates"] == ["dave@boxb", "dave@boxc"]
    (to_c,) = agent.call("message.send", to="dave@boxc", body="you")["recipients"]
    assert (to_c["peer_id"], to_c["name"]) == (f"person:{LOGIN}@boxc", "dave@boxc")
    # On boxc, "dave" is boxc's own person.
    tester = register(boxc, "tester")
    (to_self,) = tester.call("message.send", to="dave", body="note")["recipients"]
    assert to_self["name"] == "dave@boxc"

    # No session takes a person's name, bare or whole, nor the mark of one (an @).
    others = []
    for wanted, given in (("dave", "dave-2"), ("ann", "ann-2"), ("dave@boxb", "dave-boxb")):
        others.append(boxb.client())
        assert others[-1].call("peer.register", name=wanted, cwd="/w")["name"] == given
    # People are no sessions: never listed, never sent a broadcast.
    listed = {p["name"] for p in tester.call("peer.list", include_away=True)["peers"]}
    assert listed == {"backend", "dave-2", "ann-2", "dave-boxb"}
    told = tester.call("message.send", to="all", body="release at 3")["recipients"]
    assert {r["name"] for r in told} == listed
    for client in (agent, tester, *others):
        client.close()


def test_a_direct_messages_preview_is_shown_only_on_the_machines_it_is_between(
    mesh: Mesh,
) -> None:
    boxa, boxb, boxc = (start(mesh, host, "dave") for host in ("boxa", "boxb", "boxc"))
    watchers = {}
    for node in (boxa, boxb, boxc):
        watcher = node.client()
        watcher.call("event.subscribe", types=["message_sent"])
        watchers[node.settings.host] = watcher
    alpha, beta = register(boxa, "alpha"), register(boxb, "beta")
    alpha.call("message.send", to="beta", body="the staging password is in vault\nmore")
    alpha.call("message.send", to="all", body="release at 3 pm")

    def seen(host: str) -> list[dict[str, Any]]:
        watcher = watchers[host]
        return [watcher.read()["params"]["data"] for _ in range(2)]

    for host in ("boxa", "boxb", "boxc"):
        direct, broadcast = seen(host)
        assert (direct["from_name"], direct["to_name"], direct["hosts"]) == (
            "alpha",
            "beta",
            ["boxa", "boxb"],
        )
        assert broadcast["preview"] == "release at 3 pm"
        if host == "boxc":
            assert "preview" not in direct  # another machine's conversation
        else:
            assert direct["preview"] == "the staging password is in vault"
    # Read back or replayed, the same.
    reader = boxc.client()
    events = reader.call("event.read", types=["message_sent"])["events"]
    assert ["preview" in e["data"] for e in events] == [False, True]
    reader.send("event.subscribe", types=["message_sent"], after=0)
    replayed = []
    while "id" not in (line := reader.read()):  # the replay comes before the answer
        replayed.append(line["params"]["data"])
    assert ["preview" in data for data in replayed] == [False, True]
    for client in (reader, alpha, beta, *watchers.values()):
        client.close()
