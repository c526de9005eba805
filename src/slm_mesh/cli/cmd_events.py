"""The event log: ``events [--follow] [--type T…] [--after SEQ] [--limit N]``.

Rules:
1. Without ``--after`` the command starts from the most recent ``--limit`` events (of the
   chosen types), like ``tail``; ``--after SEQ`` starts after that sequence number instead
   (``--after 0``: from the oldest event kept).
2. ``--follow`` then streams new events as they happen. It subscribes with ``after`` set to
   the last event it printed, and the broker replays what came in between, so no event
   falls between reading and following. Ctrl-C ends it with status 0.
3. ``--json`` prints ``{"events": [...], "last_seq": N}``; with ``--follow`` it prints one
   event object per line (NDJSON) instead, each as the broker sent it:
   ``{"seq", "type", "ts", "data"}``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from slm_mesh.cli import render
from slm_mesh.cli.connect import connect, load_settings
from slm_mesh.cli.outcome import OK
from slm_mesh.cli.render import BOLD, CYAN, DIM, GREEN, RED, YELLOW, Output
from slm_mesh.client.blocking import BlockingClient

PAGE = 1_000  # the broker's cap on event.read's limit

_TYPE_STYLE = {
    "peer_joined": GREEN,
    "peer_left": DIM,
    "peer_updated": "",
    "message_sent": CYAN,
    "state_changed": "",
    "state_deleted": "",
    "lock_acquired": YELLOW,
    "lock_released": "",
    "lock_expired": RED,
}


def events(
    out: Output,
    follow: bool,
    types: Sequence[str],
    after: int | None,
    limit: int,
) -> int:
    settings = load_settings()
    type_list = list(types) or None
    with connect(settings) as client:
        backlog, cursor = _backlog(client, type_list, after, limit)
        if not follow:
            if out.as_json:
                out.json({"events": backlog, "last_seq": cursor})
            elif backlog:
                for event in backlog:
                    out.line(format_event(out, event))
            else:
                out.line("no events")
            return OK
        for event in backlog:
            _emit(out, event)
        params: dict[str, Any] = {"after": cursor}
        if type_list:
            params["types"] = type_list
        client.call("event.subscribe", params)
        out.note("following events; Ctrl-C to stop")
        try:
            for method, event in client.notifications():
                if method == "event":
                    _emit(out, event)
                elif method == "mesh.shutdown":
                    out.note("the broker is stopping")
                    break
        except KeyboardInterrupt:
            pass
    return OK


def _backlog(
    client: BlockingClient, types: list[str] | None, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The events to show first and the cursor to go on from (rule 1)."""
    if after is not None:
        page = client.call("event.read", _read_params(after, types, limit))
        return page["events"], page["last_seq"]
    if limit == 0:
        last_seq: int = client.call("mesh.status")["counts"]["last_seq"]
        return [], last_seq
    if types is None:
        # seq grows by one per event: the last `limit` of them are right behind the head.
        head = client.call("mesh.status")["counts"]["last_seq"]
        page = client.call("event.read", _read_params(max(head - limit, 0), None, limit))
        return page["events"], page["last_seq"]
    # Filtered: walk the log (kept 48 h) and keep the last `limit` that match.
    tail: deque[dict[str, Any]] = deque(maxlen=limit)
    cursor = 0
    while True:
        page = client.call("event.read", _read_params(cursor, types, PAGE))
        tail.extend(page["events"])
        if len(page["events"]) < PAGE:
            return list(tail), page["last_seq"]
        cursor = page["last_seq"]


def _read_params(after: int, types: list[str] | None, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"after": after, "limit": limit}
    if types:
        params["types"] = types
    return params


def _emit(out: Output, event: dict[str, Any]) -> None:
    if out.as_json:
        out.json_line(event)
    else:
        out.line(format_event(out, event))


def format_event(out: Output, event: dict[str, Any]) -> str:
    """``#12  14:03:27  lock_acquired  alice locked ~/repo/src/** (exclusive, …)``."""
    kind = event["type"]
    label = out.paint(f"{kind:<13}", _TYPE_STYLE.get(kind, "")) if kind in _TYPE_STYLE else kind
    seq = out.paint(f"#{event['seq']}".ljust(6), DIM)
    return f"{seq} {render.clock(event['ts'])}  {label}  {describe(event, out)}"


def describe(event: dict[str, Any], out: Output | None = None) -> str:
    """One line saying what happened."""
    d: dict[str, Any] = event.get("data") or {}
    kind = event.get("type")

    def who(name: Any) -> str:
        text = str(name) if name else "?"
        return out.paint(text, BOLD) if out is not None else text

    where = render.home_relative
    if kind == "peer_joined":
        agent = f" ({d['agent']})" if d.get("agent") else ""
        verb = "resumed" if d.get("resumed") else "joined"
        return f"{who(d.get('name'))}{agent} {verb} in {where(d.get('cwd'))}"
    if kind == "peer_left":
        return f"{who(d.get('name'))} left ({d.get('reason', '?')})"
    if kind == "peer_updated" and "cwd" in d:
        # Its workspace changed: a hooks-only session's hook registered from elsewhere, or
        # an MCP server saw its checkout switch branch (peer.update git_branch).
        branch = f" on branch {d['git_branch']}" if d.get("git_branch") else ""
        return f"{who(d.get('name'))} now in {where(d.get('cwd'))}{branch}"
    if kind == "peer_updated":
        summary = f": {d['summary']}" if d.get("summary") else ""
        return f"{who(d.get('name'))} is {d.get('status', '?')}{summary}"
    if kind == "message_sent":
        recipients = d.get("recipients") or []
        to = "all" if d.get("to") == "all" else str(d.get("to"))
        if to != "all" and d.get("to_name"):
            to = str(d["to_name"])
        count = f" ({len(recipients)} peers)" if to == "all" else ""
        said = f": {d['preview']}" if d.get("preview") else ""
        sender = who(d.get("from_name") or d.get("from"))
        return f"{sender} → {to}{count}, {d.get('type', 'text')}{said}"
    if kind == "state_changed":
        return (
            f"{d.get('namespace')}/{d.get('key')} set by {who(d.get('updated_by'))} "
            f"(version {d.get('version')})"
        )
    if kind == "state_deleted":
        by = f"by {who(d.get('deleted_by'))}" if d.get("deleted_by") else f"({d.get('reason')})"
        return f"{d.get('namespace')}/{d.get('key')} deleted {by}"
    if kind in ("lock_acquired", "lock_released", "lock_expired"):
        path = where(d.get("path"))
        holder = who(d.get("holder") or d.get("peer_id"))
        if kind == "lock_acquired":
            verb = "renewed" if d.get("renewed") else "locked"
            return (
                f"{holder} {verb} {path} ({d.get('mode')}, {render.expires(d.get('expires_at'))})"
            )
        if kind == "lock_expired":
            return f"lock of {holder} on {path} expired"
        if d.get("released_by"):
            return f"{who(d['released_by'])} released {holder}'s lock on {path} (forced)"
        return f"{holder} released {path} ({d.get('reason', 'released')})"
    return str(d)
