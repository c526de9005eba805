"""Who is in the mesh and talking to them: ``peers``, ``send``, ``broadcast``, ``inbox``.

Every one of them uses an anonymous connection, which the broker takes for the person at
the shell (:mod:`slm_mesh.person`): ``send`` and ``broadcast`` come from the person, and
``inbox`` reads the person's inbox, where agents' messages to the person (by its id
``person`` or its name) wait whether or not a shell command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from slm_mesh.cli import render, workspace
from slm_mesh.cli.connect import connect, load_settings
from slm_mesh.cli.outcome import OK, CliError, usage
from slm_mesh.cli.render import BOLD, CYAN, DIM, GREEN, RED, YELLOW, Output
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.protocol.errors import PeerNotFound

_STATUS_STYLE = {"active": GREEN, "busy": YELLOW, "idle": DIM, "away": DIM}


def read_body(message: str) -> str:
    """``message``, or standard input when it is ``-``."""
    if message != "-":
        return message
    body = sys.stdin.read()
    return body[:-1] if body.endswith("\n") else body


# -- peers -----------------------------------------------------------------------------


def peers(out: Output, scope: str) -> int:
    """List the peers in ``scope`` (machine, this directory, or this repository)."""
    params: dict[str, Any] = {"scope": scope}
    if scope == "directory":
        params["cwd"] = workspace.cwd()
    elif scope == "repo":
        root = workspace.git_root()
        if root is None:
            raise usage(
                f"--scope repo: {workspace.cwd()} is not inside a git repository; "
                "--scope machine or --scope directory work here"
            )
        params["git_root"] = root
        from slm_mesh import repository

        repo = repository.identity_of(Path(root))
        if repo:
            params["repo"] = repo  # its clones on other machines too
    settings = load_settings()
    with connect(settings) as client:
        found: list[dict[str, Any]] = client.call("peer.list", params)["peers"]
    if out.as_json:
        out.json({"scope": scope, "peers": found})
        return OK
    if not found:
        where = {
            "mesh": "in the mesh",
            "machine": "on this machine",
            "directory": "in this directory",
            "repo": "in this repo",
        }
        out.line(f"no peers {where[scope]}")
        return OK
    rows = []
    styles = []
    for peer in found:
        rows.append(
            [
                peer["name"],
                peer["agent"] or "-",
                peer["status"],
                render.home_relative(peer["cwd"]),
                peer["git_branch"] or "-",
                render.ago(peer["joined_at"]),
                peer["summary"] or "",
            ]
        )
        styles.append([BOLD, "", _STATUS_STYLE.get(peer["status"], ""), "", "", "", ""])
    out.table(
        ["NAME", "AGENT", "STATUS", "DIRECTORY", "BRANCH", "JOINED", "SUMMARY"], rows, styles=styles
    )
    return OK


# -- send / broadcast ------------------------------------------------------------------


def send(out: Output, to: str, message: str, kind: str, reply_to: int | None) -> int:
    """Send ``message`` to the peer ``to`` (an id or a name)."""
    if to == "all":
        raise usage("to send to everyone use `slm-mesh broadcast MESSAGE`")
    params: dict[str, Any] = {"to": to, "body": read_body(message), "type": kind}
    if reply_to is not None:
        params["reply_to"] = reply_to
    settings = load_settings()
    with connect(settings) as client:
        try:
            result = client.call("message.send", params)
        except PeerNotFound as exc:
            raise _unknown_peer(client, to, exc) from None
    if out.as_json:
        out.json(result)
        return OK
    (recipient,) = result["recipients"]
    line = f"sent message #{recipient['id']} to {recipient['name']}"
    if not recipient["connected"]:
        line += f" (queued: {recipient['name']} is away and gets it on resuming)"
    out.line(line)
    return OK


def _unknown_peer(client: BlockingClient, who: str, exc: PeerNotFound) -> CliError:
    try:
        names = sorted(p["name"] for p in client.call("peer.list", {})["peers"])
    except Exception:  # the hint is a nicety; the error stands without it
        names = []
    hint = f"peers now: {', '.join(names)}" if names else "no peers are in the mesh now"
    return CliError(
        f"{exc.message}; {hint} (see `slm-mesh peers`)", name="peer_not_found", data=exc.data
    )


def broadcast(out: Output, message: str, kind: str) -> int:
    """Send ``message`` to every connected peer."""
    settings = load_settings()
    with connect(settings) as client:
        result = client.call(
            "message.send", {"to": "all", "body": read_body(message), "type": kind}
        )
    if out.as_json:
        out.json(result)
        return OK
    names = [r["name"] for r in result["recipients"]]
    if names:
        out.line(f"sent to {len(names)} peer{'s' if len(names) != 1 else ''}: {', '.join(names)}")
    else:
        out.line("nobody to receive it: no peer is connected")
    return OK


# -- inbox -----------------------------------------------------------------------------


def inbox(out: Output, include_read: bool, peek: bool, limit: int, follow: bool) -> int:
    """Show the messages sent to the person at the shell; with ``follow``, keep showing
    them as they come until Ctrl-C."""
    settings = load_settings()
    with connect(settings) as client:
        # Follow first, then read the backlog: a message sent in between comes both ways
        # and is shown once.
        me = client.call("message.subscribe") if follow else None
        page = client.call(
            "message.inbox",
            {"unread_only": not include_read, "limit": limit, "mark_read": not peek},
        )
        if me is None:
            if out.as_json:
                out.json(page)
                return OK
            _print_messages(out, page["messages"])
            if not page["messages"]:
                out.line("no " + ("messages" if include_read else "unread messages"))
            elif page["unread_left"]:
                out.line(out.paint(f"{page['unread_left']} more unread", DIM))
            return OK
        return _follow(out, client, me, page["messages"], peek)


def _follow(
    out: Output,
    client: BlockingClient,
    me: dict[str, Any],
    backlog: list[dict[str, Any]],
    peek: bool,
) -> int:
    out.note(
        f"showing messages to {me['person']} (peer id {me['peer_id']}) as they come; Ctrl-C to stop"
    )
    shown = set()
    for message in backlog:
        shown.add(message["id"])
        _emit(out, message)
    try:
        for method, params in client.notifications():
            if method == "message":
                if params["id"] in shown:
                    continue
                shown.add(params["id"])
                _emit(out, params)
                if not peek:
                    client.call("message.ack", {"ids": [params["id"]]})
            elif method == "mesh.shutdown":
                out.note("the broker is stopping")
                break
    except KeyboardInterrupt:
        pass
    return OK


def _emit(out: Output, message: dict[str, Any]) -> None:
    if out.as_json:
        out.json_line(message)
    else:
        _print_messages(out, [message])


def _print_messages(out: Output, messages: list[dict[str, Any]]) -> None:
    for m in messages:
        kind = (
            ""
            if m["type"] == "text"
            else " " + out.paint(f"[{m['type']}]", RED if m["type"] == "alert" else CYAN)
        )
        to_all = " (to all)" if m.get("broadcast") else ""
        reply = f", re #{m['reply_to']}" if m.get("reply_to") else ""
        head = f"#{m['id']} from {out.paint(m['from_name'] or m['from'], BOLD)}{to_all}{reply}"
        out.line(f"{head}, {render.ago(m['sent_at'])}{kind}")
        for text in (m["body"] or "").splitlines() or [""]:
            out.line("    " + text)
