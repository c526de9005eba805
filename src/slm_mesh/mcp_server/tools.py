"""What each of the eight tools does: arguments in, broker calls, a compact result out.

Rules:
1. A result is compact JSON text plus the same value as ``structuredContent``.
2. A broker error, a bad argument or an unreachable broker is a result with ``isError`` and
   a sentence the agent can act on (:mod:`slm_mesh.mcp_server.advice`), never an MCP
   protocol error: the agent reads it and carries on.
3. Every result ends with the one-line unread notice while unread messages wait
   (:func:`slm_mesh.mcp_server.channel.unread_notice`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import mcp_types

from slm_mesh.mcp_server import advice, schemas, views
from slm_mesh.mcp_server.args import Args, BadArgument
from slm_mesh.mcp_server.channel import unread_notice
from slm_mesh.mcp_server.session import BrokerDown, MaybeDone, MeshSession
from slm_mesh.protocol.errors import ERROR_NAMES, LockConflict, MeshError
from slm_mesh.protocol.table import EVENT_TYPES, LOCK_MODES, MESSAGE_TYPES, SCOPES, STATUSES

MINUTES = 60.0
SINCE_PAGE = 1_000
SINCE_MAX_PAGES = 200

# A handler returns its result and, when it already knows it, the unread count.
Outcome = tuple[dict[str, Any], int | None]
Handler = Callable[[Args], Awaitable[Outcome]]


def tool_list() -> list[mcp_types.Tool]:
    """The ``tools/list`` answer."""
    return [
        mcp_types.Tool(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            input_schema=spec.input_schema,
            output_schema=spec.output_schema,
            annotations=mcp_types.ToolAnnotations.model_validate(spec.annotations),
        )
        for spec in schemas.TOOL_SPECS
    ]


@dataclass(slots=True)
class ToolResult:
    """A tool's result: its text blocks, the same value structured, and whether it is an
    error; as the SDK's model for the SDK's dispatch, or straight as wire JSON."""

    texts: list[str]
    structured: dict[str, Any]
    is_error: bool = False

    def model(self) -> mcp_types.CallToolResult:
        content: list[mcp_types.ContentBlock] = [
            mcp_types.TextContent(type="text", text=text) for text in self.texts
        ]
        if self.is_error:
            return mcp_types.CallToolResult(
                content=content, structured_content=self.structured, is_error=True
            )
        return mcp_types.CallToolResult(content=content, structured_content=self.structured)

    def wire(self) -> dict[str, Any]:
        """The ``tools/call`` result as the SDK's surface dumps it for the handshake-era
        protocol versions (``fastcall.WIRE_VERSIONS``; a test compares the two), without
        building and validating the models."""
        return {
            "content": [{"text": text, "type": "text"} for text in self.texts],
            "isError": self.is_error,
            "structuredContent": self.structured,
        }


class Tools:
    """The tool handlers of one MCP server, calling the broker as its peer."""

    def __init__(self, session: MeshSession) -> None:
        self.session = session
        self.event_cursor: int | None = None
        """``mesh_events`` read: the last seq returned (None before the first read)."""
        self._handlers: dict[str, Handler] = {
            "mesh_peers": self.peers,
            "mesh_summary": self.summary,
            "mesh_send": self.send,
            "mesh_inbox": self.inbox,
            "mesh_state": self.state,
            "mesh_lock": self.lock,
            "mesh_events": self.events,
            "mesh_status": self.status,
        }
        assert tuple(self._handlers) == schemas.TOOL_NAMES

    async def call(self, name: str, arguments: dict[str, Any] | None) -> mcp_types.CallToolResult:
        """Run tool ``name``: its result as the SDK's model."""
        return (await self.run(name, arguments)).model()

    async def run(self, name: str, arguments: dict[str, Any] | None) -> ToolResult:
        """Run tool ``name`` and build its result (see the module rules)."""
        handler = self._handlers.get(name)
        if handler is None:
            known = ", ".join(schemas.TOOL_NAMES)
            return _error(f"unknown tool {name!r}; the tools are {known}", "unknown_tool", None)
        unread: int | None = None
        try:
            data, unread = await handler(Args(arguments))
            result = _success(data)
        except BadArgument as exc:
            result = _error(f"{name}: {exc}", "invalid_params", None)
        except MeshError as exc:
            result = _error(advice.for_error(exc, self.session.cwd), _code_name(exc), exc.code)
        except BrokerDown as exc:
            return _error(str(exc), "broker_unreachable", None)
        except MaybeDone as exc:
            return _error(str(exc), "connection_lost", None)
        if unread is None:
            unread = await self.session.unread_count()
        notice = unread_notice(unread)
        if notice is not None:
            result.texts.append(notice)
        return result

    # -- the tools -----------------------------------------------------------------------

    async def peers(self, args: Args) -> Outcome:
        params = {
            "scope": args.choice("scope", SCOPES, "mesh"),
            "include_self": args.flag("include_self", False),
        }
        result = await self.session.call("peer.list", params)
        return {"peers": [views.peer(p) for p in result["peers"]]}, None

    async def summary(self, args: Args) -> Outcome:
        params: dict[str, Any] = {"summary": args.required_text("summary")}
        status = args.choice("status", STATUSES)
        if status is not None:
            params["status"] = status
        peer = await self.session.call("peer.update", params)
        return {
            "name": peer.get("name"),
            "summary": peer.get("summary"),
            "status": peer.get("status"),
        }, None

    async def send(self, args: Args) -> Outcome:
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
        result = await self.session.call("message.send", params)
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

    async def inbox(self, args: Args) -> Outcome:
        params: dict[str, Any] = {
            "unread_only": args.choice("filter", ("unread", "all"), "unread") == "unread",
            "limit": args.integer("limit", minimum=1) or 20,
            "mark_read": args.flag("mark_read", True),
        }
        sender = args.text("from")
        if sender is not None:
            params["from"] = sender
        result = await self.session.inbox(params)
        unread = int(result.get("unread_left", 0))
        messages = [views.message(m) for m in result.get("messages", [])]
        return {"messages": messages, "unread_left": unread}, unread

    async def state(self, args: Args) -> Outcome:
        action = args.choice("action", ("get", "set", "list", "delete"))
        if action is None:
            raise BadArgument("action is required: get, set, list or delete")
        params: dict[str, Any] = {}
        namespace = args.text("namespace")
        if namespace is not None:
            params["namespace"] = namespace
        if action == "list":
            return await self._list_state(args, params), None
        key = params["key"] = args.required_text("key")
        if action == "get":
            entry = await self.session.call("state.get", params)
            if entry is None:
                return {"key": key, "found": False}, None
            return {**views.state_entry(entry), "found": True}, None
        if_version = args.integer("if_version", minimum=0)
        if if_version is not None:
            params["if_version"] = if_version
        if action == "delete":
            result = await self.session.call("state.delete", params)
            return {"key": key, "deleted": bool(result.get("deleted"))}, None
        if not args.given("value"):
            raise BadArgument("value is required to set a key")
        params["value"] = args.raw("value")
        ttl = args.number("ttl", minimum=0.001)
        if ttl is not None:
            params["ttl"] = ttl
        result = await self.session.call("state.set", params)
        return {"key": key, "version": result.get("version")}, None

    async def _list_state(self, args: Args, params: dict[str, Any]) -> dict[str, Any]:
        """One page of keys; ``next_after`` only when more follow."""
        for name in ("prefix", "after"):
            text = args.text(name)
            if text is not None:
                params[name] = text
        # Fewer than the broker's 100 by default: every value lands in the agent's context.
        params["limit"] = args.integer("limit", minimum=1) or 20  # the broker caps at 1,000
        result = await self.session.call("state.list", params)
        page = {"entries": [views.state_entry(e) for e in result["entries"]]}
        if result.get("next_after") is not None:
            page["next_after"] = result["next_after"]
        return page

    async def lock(self, args: Args) -> Outcome:
        action = args.choice("action", ("lock", "unlock", "query"))
        if action is None:
            raise BadArgument("action is required: lock, unlock or query")
        path = args.text("filePath")
        if action == "query":
            return await self._query_locks(path)
        if action == "unlock":
            params: dict[str, Any] = {"path": path} if path else {"all": True}
            released = (await self.session.call("lock.release", params))["released"]
            data: dict[str, Any] = {"released": released}
            if path and not released:
                data["note"] = f"you held no lock on {path}"
            return data, None
        if path is None:
            raise BadArgument("filePath is required to lock")
        params = {
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
        result = await self.session.call("lock.acquire", params)
        return {"locked": True, "lock": views.lock(result["lock"])}, None

    async def _query_locks(self, path: str | None) -> Outcome:
        if path is None:
            result = await self.session.call("lock.list", {})
            return {"locks": [views.lock(row) for row in result["locks"]]}, None
        result = await self.session.call("lock.check", {"paths": [path]})
        holders = [views.lock(h) for c in result["conflicts"] for h in c["holders"]]
        data: dict[str, Any] = {"path": path, "locked": bool(holders), "holders": holders}
        if holders:
            data["summary"] = advice.for_error(_conflict(result), self.session.cwd)
        # lock.check leaves out the caller's own locks; say so when this one is yours.
        mine = await self._own_lock(path)
        if mine is not None:
            data["yours"] = mine
        return data, None

    async def _own_lock(self, path: str) -> dict[str, Any] | None:
        absolute = posixpath.normpath(posixpath.join(self.session.cwd or "/", path))
        listed = await self.session.call("lock.list", {"prefix": absolute})
        for row in listed["locks"]:
            if row["path"] == absolute and row["peer_id"] == self.session.peer_id:
                return views.lock(row)
        return None

    async def events(self, args: Args) -> Outcome:
        action = args.choice("action", ("read", "subscribe", "unsubscribe"), "read")
        types = args.texts("types")
        for type_ in types or []:
            if type_ != "*" and type_ not in EVENT_TYPES:
                raise BadArgument(f"types: unknown event type {type_!r}")
        if action == "subscribe":
            result = await self.session.subscribe(types)
            return {
                "subscribed": self.session.subscribed_types,
                "last_seq": result["last_seq"],
            }, None
        if action == "unsubscribe":
            await self.session.unsubscribe()
            return {"subscribed": False}, None
        limit = args.integer("limit", minimum=1) or 50
        since = args.text("since")
        if since is not None:
            return await self._events_since(_parse_time(since), types, limit), None
        after = args.integer("after", minimum=0)
        if after is None:
            after = self.event_cursor
        if after is None:  # first read: what happened since this session joined
            after = await self.session.wait_joined_seq()
        if after is None:  # (a broker too old to say when: the latest `limit` events)
            status = await self.session.call("mesh.status", {})
            after = max(0, int(status["counts"].get("last_seq", 0)) - limit)
        result = await self._read_events(after, types, limit)
        self.event_cursor = max(self.event_cursor or 0, result["last_seq"])
        return result, None

    async def status(self, args: Args) -> Outcome:
        broker = await self.session.call("mesh.status", {})
        you = views.compact(
            {
                "peer_id": self.session.peer_id,
                "name": self.session.peer_name,
                "agent": self.session.registration.get("agent"),
                "cwd": self.session.registration.get("cwd"),
                "git_branch": self.session.registration.get("git_branch"),
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

    # -- helpers -------------------------------------------------------------------------

    async def _read_events(self, after: int, types: list[str] | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if types:
            params["types"] = types
        result = await self.session.call("event.read", params)
        return {
            "events": [views.event(e) for e in result["events"]],
            "last_seq": result["last_seq"],
        }

    async def _events_since(
        self, since: float, types: list[str] | None, limit: int
    ) -> dict[str, Any]:
        """The first ``limit`` events newer than ``since``, paging through the log."""
        found: list[dict[str, Any]] = []
        after = 0
        last_seq = 0
        for _ in range(SINCE_MAX_PAGES):
            params: dict[str, Any] = {"after": after, "limit": SINCE_PAGE}
            if types:
                params["types"] = types
            page = await self.session.call("event.read", params)
            last_seq = page["last_seq"]
            found.extend(e for e in page["events"] if e["ts"] > since)
            if len(found) >= limit or len(page["events"]) < SINCE_PAGE:
                break
            after = page["events"][-1]["seq"]
        events = found[:limit]
        if len(events) == limit and events:
            last_seq = events[-1]["seq"]
        return {"events": [views.event(e) for e in events], "last_seq": last_seq}


def _success(data: dict[str, Any]) -> ToolResult:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return ToolResult([text], data)


def _error(message: str, code_name: str, code: int | None) -> ToolResult:
    error: dict[str, Any] = {"error": code_name, "message": message}
    if code is not None:
        error["code"] = code
    return ToolResult([message], error, is_error=True)


def _code_name(error: MeshError) -> str:
    return ERROR_NAMES.get(error.code, "error")


def _conflict(check: dict[str, Any]) -> MeshError:
    """A ``lock.check`` conflict as the error ``lock.acquire`` would raise (same sentence)."""
    first = check["conflicts"][0]
    return LockConflict("locked", {"path": first["path"], "holders": first["holders"]})


def _parse_time(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadArgument(f"since must be an ISO 8601 time, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without a zone is local time
    return moment.timestamp()
