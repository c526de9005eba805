"""A scripted Messages API on 127.0.0.1, for running the real Claude Code CLI offline.

Each ``POST /v1/messages`` of the agent's main loop (a request that offers tools) is
answered with the next scripted turn, streamed as Anthropic's SSE events
(``message_start``, ``content_block_start``/``_delta``/``_stop``, ``message_delta``,
``message_stop``); every request body is recorded, so a test reads exactly what reached the
model: hook context, tool results, a refused edit. Side requests (no tools: titles,
summaries) get a short text answer and consume nothing. A turn may carry a callback, run
when its request arrives and before it is answered (to act in the mesh at that moment).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Turn:
    """One scripted answer: content blocks (``{"type": "text", "text"}`` or
    ``{"type": "tool_use", "name", "input"}``), and what to do when its request arrives."""

    blocks: list[dict[str, Any]]
    on_request: Callable[[dict[str, Any]], None] | None = None
    # A tool this turn calls that the agent may not offer yet (an MCP server still
    # connecting): until a request offers it, answer with ``filler`` instead.
    needs_tool: str | None = None
    filler: list[dict[str, Any]] | None = None


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "name": name, "input": arguments}


@dataclass
class ModelServer:
    turns: list[Turn]
    requests: list[dict[str, Any]] = field(default_factory=list)  # main-loop requests
    side_requests: list[dict[str, Any]] = field(default_factory=list)
    filled: int = 0  # requests answered with a turn's filler
    max_fills: int = 300
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def next_turn(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.requests.append(body)
            index = len(self.requests) - 1 - self.filled
            turn = self.turns[index] if index < len(self.turns) else Turn([text("done")])
            offered = {t.get("name") for t in body.get("tools", [])}
            if turn.needs_tool and turn.needs_tool not in offered and self.filled < self.max_fills:
                self.filled += 1
                return Turn(turn.filler or [text("waiting")])
            return turn

    @contextlib.contextmanager
    def serve(self) -> Iterator[ModelServer]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                if self.path.split("?")[0].endswith("/count_tokens"):
                    self._json({"input_tokens": 100})
                    return
                if not self.path.split("?")[0].endswith("/v1/messages"):
                    self._json({}, 404)
                    return
                if not body.get("tools"):
                    owner.side_requests.append(body)
                    self._stream(Turn([text("ok")]), body)
                    return
                turn = owner.next_turn(body)
                if turn.on_request is not None:
                    try:
                        turn.on_request(body)
                    except Exception as exc:  # reported by the test, not lost in a thread
                        owner.errors.append(f"{type(exc).__name__}: {exc}")
                self._stream(turn, body)

            def do_GET(self) -> None:
                self._json({}, 404)

            def _json(self, value: Any, status: int = 200) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, turn: Turn, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for event in sse_events(turn, str(body.get("model", "claude-sonnet-4-5"))):
                    self.wfile.write(event)
                self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


_ids = iter(range(1, 1_000_000))


def sse_events(turn: Turn, model: str) -> Iterator[bytes]:
    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    n = next(_ids)
    yield event(
        "message_start",
        {
            "message": {
                "id": f"msg_{n}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 100, "output_tokens": 1},
            }
        },
    )
    uses_tools = False
    for i, block in enumerate(turn.blocks):
        if block["type"] == "text":
            yield event("content_block_start", {"index": i, "content_block": text("")})
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            uses_tools = True
            start = {"type": "tool_use", "id": f"toolu_{n}_{i}", "name": block["name"], "input": {}}
            yield event("content_block_start", {"index": i, "content_block": start})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield event("content_block_delta", {"index": i, "delta": delta})
        yield event("content_block_stop", {"index": i})
    stop = "tool_use" if uses_tools else "end_turn"
    yield event(
        "message_delta",
        {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 20}},
    )
    yield event("message_stop", {})
