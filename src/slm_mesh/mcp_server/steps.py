"""The tools that are one broker call: the call they make of their arguments, and what
their result is made of its answer.

Split in two so the same code serves both ways a tool runs (:mod:`slm_mesh.mcp_server.tools`):
awaited in a task, or sent at once with its answer handled by the broker connection's
reader, without a task (:mod:`slm_mesh.mcp_server.fastcall`). Both halves are pure: no I/O,
no waiting; but ``mesh_peers``' and ``mesh_status``' plans look at the branch first (a stat
of one file, link rule 7), as they show the session's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slm_mesh.mcp_server import views
from slm_mesh.mcp_server.args import Args, BadArgument
from slm_mesh.protocol.table import LOCK_MODES, MESSAGE_TYPES, SCOPES, STATUSES

if TYPE_CHECKING:
    from slm_mesh.mcp_server.session import MeshSession

MINUTES = 60.0

# A tool's result and, when it already knows it, the unread count.
Outcome = tuple[dict[str, Any], int | None]


@dataclass(frozen=True, slots=True)
class Step:
    """One broker call and what its answer becomes. ``inbox``: the call is a
    ``message.inbox``, from whose answer the session learns the unread count."""

    method: str
    params: dict[str, Any]
    finish: Callable[[Any], Outcome]
    inbox: bool = False


Plan = Callable[[Args], Step | None]


def peers(session: MeshSession) -> Plan:
    """``mesh_peers`` of ``session``: it looks at its branch first (link rule 7), and its
    own entry (``include_self``) shows the branch it is on now, which the broker may
    learn a moment after this answer."""

    def plan(args: Args) -> Step:
        session.wake_branch_check()
        include_self = args.flag("include_self", False)
        params = {"scope": args.choice("scope", SCOPES, "mesh"), "include_self": include_self}

        def finish(result: Any) -> Outcome:
            listed = [views.peer(p) for p in result["peers"]]
            here = session.registration.get("git_branch")
            for peer in listed if include_self and here else ():
                if peer.get("peer_id") == session.peer_id:
                    peer["git_branch"] = here
            return {"peers": listed}, None

        return Step("peer.list", params, finish)

    return plan


def summary(args: Args) -> Step:
    params: dict[str, Any] = {"summary": args.required_text("summary")}
    status = args.choice("status", STATUSES)
    if status is not None:
        params["status"] = status

    def finish(peer: Any) -> Outcome:
        return {
            "name": peer.get("name"),
            "summary": peer.get("summary"),
            "status": peer.get("status"),
        }, None

    return Step("peer.update", params, finish)


def send(args: Args) -> Step:
    params: dict[str, Any] = {
        "to": args.required_text("to"),
        "body": args.required_text("message"),
        "type": args.choice("type", MESSAGE_TYPES, "text"),
    }
    reply_to = args.integer("reply_to", minimum=1)
    if reply_to is not None:
        params["reply_to"] = reply_to
    scope = args.choice("scope", SCOPES)
    if scope is not None:
        params["scope"] = scope
    return Step("message.send", params, _sent)


def _sent(result: Any) -> Outcome:
    recipients = [
        views.compact(
            {
                "name": r.get("name"),
                "peer_id": r.get("peer_id"),
                "message_id": r.get("id"),
                "away": None if r.get("connected") else True,
            }
        )
        for r in result.get("recipients", [])
    ]
    data: dict[str, Any] = {"sent": len(recipients), "recipients": recipients}
    if not recipients:
        data["note"] = "nobody else is connected, so nobody got it"
    elif any(r.get("away") for r in recipients):
        data["note"] = "away peers get it when they reconnect"
    return data, None


def inbox(args: Args) -> Step:
    params: dict[str, Any] = {
        "unread_only": args.choice("filter", ("unread", "all"), "unread") == "unread",
        "limit": args.integer("limit", minimum=1) or 20,
        "mark_read": args.flag("mark_read", True),
    }
    sender = args.text("from")
    if sender is not None:
        params["from"] = sender
    return Step("message.inbox", params, _read, inbox=True)


def _read(result: Any) -> Outcome:
    unread = int(result.get("unread_left", 0))
    messages = [views.message(m) for m in result.get("messages", [])]
    return {"messages": messages, "unread_left": unread}, unread


def state(args: Args) -> Step:
    action = args.choice("action", ("get", "set", "list", "delete"))
    if action is None:
        raise BadArgument("action is required: get, set, list or delete")
    params: dict[str, Any] = {}
    namespace = args.text("namespace")
    if namespace is not None:
        params["namespace"] = namespace
    if action == "list":
        return _list_state(args, params)
    key = params["key"] = args.required_text("key")
    if action == "get":

        def got(entry: Any) -> Outcome:
            if entry is None:
                return {"key": key, "found": False}, None
            return {**views.state_entry(entry), "found": True}, None

        return Step("state.get", params, got)
    if_version = args.integer("if_version", minimum=0)
    if if_version is not None:
        params["if_version"] = if_version
    if action == "delete":

        def deleted(result: Any) -> Outcome:
            return {"key": key, "deleted": bool(result.get("deleted"))}, None

        return Step("state.delete", params, deleted)
    if not args.given("value"):
        raise BadArgument("value is required to set a key")
    params["value"] = args.raw("value")
    ttl = args.number("ttl", minimum=0.001)
    if ttl is not None:
        params["ttl"] = ttl

    def written(result: Any) -> Outcome:
        return {"key": key, "version": result.get("version")}, None

    return Step("state.set", params, written)


def _list_state(args: Args, params: dict[str, Any]) -> Step:
    """One page of keys; ``next_after`` only when more follow."""
    for name in ("prefix", "after"):
        text = args.text(name)
        if text is not None:
            params[name] = text
    # Fewer than the broker's 100 by default: every value lands in the agent's context.
    params["limit"] = args.integer("limit", minimum=1) or 20  # the broker caps at 1,000

    def page(result: Any) -> Outcome:
        listed = {"entries": [views.state_entry(e) for e in result["entries"]]}
        if result.get("next_after") is not None:
            listed["next_after"] = result["next_after"]
        return listed, None

    return Step("state.list", params, page)


def lock(args: Args) -> Step | None:
    """``lock`` and ``unlock``; None for ``query``, which takes more than one call."""
    action = args.choice("action", ("lock", "unlock", "query"))
    if action is None:
        raise BadArgument("action is required: lock, unlock or query")
    path = args.text("filePath")
    if action == "query":
        return None
    if action == "unlock":

        def released(result: Any) -> Outcome:
            data: dict[str, Any] = {"released": result["released"]}
            if path and not result["released"]:
                data["note"] = f"you held no lock on {path}"
            return data, None

        return Step("lock.release", {"path": path} if path else {"all": True}, released)
    if path is None:
        raise BadArgument("filePath is required to lock")
    params: dict[str, Any] = {
        "path": path,
        "mode": args.choice("mode", LOCK_MODES, "exclusive"),
        "wait": args.number("wait", minimum=0) or 0,
    }
    ttl_minutes = args.number("ttlMinutes", minimum=0.001)
    if ttl_minutes is not None:
        params["ttl"] = ttl_minutes * MINUTES
    reason = args.text("reason")
    if reason is not None:
        params["reason"] = reason
    return Step("lock.acquire", params, _locked)


def _locked(result: Any) -> Outcome:
    return {"locked": True, "lock": views.lock(result["lock"])}, None


def status(session: MeshSession) -> Plan:
    """``mesh_status`` of ``session``: the broker's status and this session's own."""

    def plan(args: Args) -> Step:
        session.wake_branch_check()  # the branch shown is the current one (link rule 7)

        def finish(broker: Any) -> Outcome:
            you = views.compact(
                {
                    "peer_id": session.peer_id,
                    "name": session.peer_name,
                    "agent": session.registration.get("agent"),
                    "cwd": session.registration.get("cwd"),
                    "git_branch": session.registration.get("git_branch"),
                }
            )
            data = {
                "you": you,
                "person": broker.get("person"),
                "broker": {
                    "pid": broker.get("pid"),
                    "version": broker.get("version"),
                    "uptime_s": broker.get("uptime_s"),
                    "lifetime": broker.get("lifetime"),
                    "counts": broker.get("counts"),
                    "data_dir": broker.get("data_dir"),
                },
            }
            return data, None

        return Step("mesh.status", {}, finish)

    return plan
