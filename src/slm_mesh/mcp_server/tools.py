"""What each of the eight tools does: arguments in, broker calls, a compact result out.

Rules:
1. A result is compact JSON text plus the same value as ``structuredContent``.
2. A broker error, a bad argument or an unreachable broker is a result with ``isError`` and
   a sentence the agent can act on (:mod:`slm_mesh.mcp_server.advice`), never an MCP
   protocol error: the agent reads it and carries on.
3. Every result ends with the one-line unread notice while unread messages wait
   (:func:`slm_mesh.mcp_server.channel.unread_notice`), then the session's own notices
   (:mod:`slm_mesh.mcp_server.notices`: the shared store out of reach or back, the
   session joined again).
4. A tool that is one broker call (:mod:`slm_mesh.mcp_server.steps`) runs the same way in a
   task (:meth:`Tools.run`) or without one (:meth:`Tools.start`): same call, same result.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import mcp_types

from slm_mesh.client.wire import ConnectionLost, Response
from slm_mesh.mcp_server import advice, schemas, steps, views
from slm_mesh.mcp_server.args import Args, BadArgument
from slm_mesh.mcp_server.channel import unread_notice
from slm_mesh.mcp_server.session import (
    MAYBE_DONE,
    BrokerDown,
    MaybeDone,
    MeshSession,
    repeatable,
)
from slm_mesh.mcp_server.steps import Outcome
from slm_mesh.protocol.errors import (
    ERROR_NAMES,
    STORE_UNAVAILABLE,
    LockConflict,
    MeshError,
    NotRegistered,
)
from slm_mesh.protocol.table import EVENT_TYPES

SINCE_PAGE = 1_000
SINCE_MAX_PAGES = 200

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


# What a tool call started without a task comes to (Tools.finished): its result; None to
# run it again in a task (the connection dropped before a call that is safe to repeat was
# answered); an exception (a bug) to answer as the SDK answers a handler's; or an
# awaitable of the result (the unread count has to be asked for first).
Finished = ToolResult | None | Exception | Awaitable[ToolResult]
Done = Callable[[Finished], None]


class Tools:
    """The tool handlers of one MCP server, calling the broker as its peer."""

    def __init__(self, session: MeshSession) -> None:
        self.session = session
        self.event_cursor: int | None = None
        """``mesh_events`` read: the last seq returned (None before the first read)."""
        # One broker call each (mcp_server.steps): run in a task or without one.
        self._steps: dict[str, steps.Plan] = {
            "mesh_peers": steps.peers(session),
            "mesh_summary": steps.summary,
            "mesh_send": steps.send,
            "mesh_inbox": steps.inbox,
            "mesh_state": steps.state,
            "mesh_lock": steps.lock,
            "mesh_status": steps.status(session),
        }
        # The rest, and what a step's plan leaves to them (mesh_lock query): in a task.
        self._handlers: dict[str, Handler] = {
            "mesh_lock": self._lock_query,
            "mesh_events": self.events,
        }
        assert set(self._steps) | set(self._handlers) == set(schemas.TOOL_NAMES)

    async def call(self, name: str, arguments: dict[str, Any] | None) -> mcp_types.CallToolResult:
        """Run tool ``name``: its result as the SDK's model."""
        return (await self.run(name, arguments)).model()

    async def run(self, name: str, arguments: dict[str, Any] | None) -> ToolResult:
        """Run tool ``name`` and build its result (see the module rules)."""
        if name not in self._steps and name not in self._handlers:
            known = ", ".join(schemas.TOOL_NAMES)
            return _error(f"unknown tool {name!r}; the tools are {known}", "unknown_tool", None)
        unread: int | None = None
        try:
            data, unread = await self._outcome(name, Args(arguments))
            result = _success(data)
        except BadArgument as exc:
            result = _error(f"{name}: {exc}", "invalid_params", None)
        except MeshError as exc:
            result = self._refused(exc)
        except BrokerDown as exc:
            return _error(str(exc), "broker_unreachable", None)
        except MaybeDone as exc:
            return _error(str(exc), "connection_lost", None)
        if unread is None:
            unread = await self.session.unread_count()
        return self._noticed(result, unread)

    async def _outcome(self, name: str, args: Args) -> Outcome:
        plan = self._steps.get(name)
        step = plan(args) if plan is not None else None
        if step is None:
            return await self._handlers[name](args)
        if step.inbox:
            answer = await self.session.inbox(step.params)
        else:
            answer = await self.session.call(step.method, step.params)
        return step.finish(answer)

    def start(self, name: str, arguments: dict[str, Any] | None, done: Done) -> bool:
        """Run tool ``name`` without a task, when it is one broker call the session can
        send at once and the unread count is known: ``done`` then gets what
        :meth:`finished` makes of the answer, from the broker connection's reader (or at
        once, for a bad argument). False, with nothing done: use :meth:`run`."""
        plan = self._steps.get(name)
        if plan is None:
            return False
        unread = self.session.known_unread()
        if unread is None:
            return False
        try:
            step = plan(Args(arguments))
        except BadArgument as exc:
            done(self._noticed(_error(f"{name}: {exc}", "invalid_params", None), unread))
            return True
        if step is None:
            return False
        registrations = self.session.registrations
        try:
            return self.session.send_now(
                step.method,
                step.params,
                lambda outcome: done(self.finished(step, outcome, registrations)),
                inbox=step.inbox,
            )
        except MeshError as exc:  # refused before it went out (too large)
            done(self._noticed(self._refused(exc), unread))
            return True

    def finished(
        self, step: steps.Step, outcome: Response | ConnectionLost, registrations: int = 0
    ) -> Finished:
        """What the broker's answer to ``step``, sent after ``registrations``
        registrations, makes of the tool call (see :data:`Done`), as :meth:`run` would
        have made it."""
        if not isinstance(outcome, Response):  # the connection dropped (session rule 2)
            if repeatable(step.method, step.params):
                return None
            return _error(MAYBE_DONE, "connection_lost", None)
        if isinstance(outcome.error, NotRegistered) and self.session.joining_again(registrations):
            return None  # the session ended under it and joins again: in a task (session rule 3)
        unread: int | None = None
        try:
            if outcome.error is not None:
                result = self._refused(outcome.error)
            else:
                data, unread = step.finish(outcome.result)
                result = _success(data)
        except Exception as exc:  # a bug, answered as the SDK answers a handler's
            return exc
        if unread is None:
            unread = self.session.known_unread()
        if unread is None:
            return self._noticed_later(result)
        return self._noticed(result, unread)

    def _noticed(self, result: ToolResult, unread: int) -> ToolResult:
        """``result`` with the unread notice and the session's notices (rule 3)."""
        _noticed(result, unread)
        # (An error that says the store is out of reach needs no line saying so again.)
        said = result.structured.get("code") == STORE_UNAVAILABLE
        result.texts.extend(self.session.notices.take(store_state=not said))
        return result

    async def _noticed_later(self, result: ToolResult) -> ToolResult:
        return self._noticed(result, await self.session.unread_count())

    def _refused(self, exc: MeshError) -> ToolResult:
        return _error(advice.for_error(exc, self.session.cwd), _code_name(exc), exc.code)

    # -- the tools that take more than one call ------------------------------------------

    async def _lock_query(self, args: Args) -> Outcome:
        return await self._query_locks(args.text("filePath"))

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


def _noticed(result: ToolResult, unread: int) -> ToolResult:
    notice = unread_notice(unread)
    if notice is not None:
        result.texts.append(notice)
    return result


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
