"""A scripted OpenAI Responses API on 127.0.0.1, for running the real Codex CLI offline.

Each ``POST /v1/responses`` is answered with the next scripted turn as the SSE events Codex
acts on (``response.created``, ``response.output_item.added``/``.done`` per item,
``response.completed``); every request body is recorded. A turn's items are assistant
``message`` text or ``apply_patch`` calls (``custom_tool_call`` with the patch text); a turn
may carry a callback run when its request arrives, before it is answered.
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
    items: list[dict[str, Any]]
    on_request: Callable[[dict[str, Any]], None] | None = None


def say(text: str) -> dict[str, Any]:
    return {"type": "message", "text": text}


def patch(text: str) -> dict[str, Any]:
    return {"type": "patch", "patch": text}


def _item(i: int, k: int, spec: dict[str, Any]) -> dict[str, Any]:
    if spec["type"] == "message":
        content = [{"type": "output_text", "text": spec["text"], "annotations": []}]
        return {
            "type": "message",
            "role": "assistant",
            "id": f"msg_{i}_{k}",
            "status": "completed",
            "content": content,
        }
    return {
        "type": "custom_tool_call",
        "id": f"ctc_{i}_{k}",
        "call_id": f"call_{i}_{k}",
        "name": "apply_patch",
        "input": spec["patch"],
        "status": "completed",
    }


@dataclass
class ResponsesServer:
    turns: list[Turn]
    requests: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    url: str = ""

    @contextlib.contextmanager
    def serve(self) -> Iterator[ResponsesServer]:
        owner = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw) if raw else {}
                if not self.path.endswith("/responses"):
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with lock:
                    owner.requests.append(body)
                    i = len(owner.requests) - 1
                turn = owner.turns[i] if i < len(owner.turns) else Turn([say("done")])
                if turn.on_request is not None:
                    try:
                        turn.on_request(body)
                    except Exception as exc:  # reported by the test, not lost in a thread
                        owner.errors.append(f"{type(exc).__name__}: {exc}")
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                items = [_item(i, k, spec) for k, spec in enumerate(turn.items)]
                self._event("response.created", {"response": {"id": f"resp_{i}", "output": []}})
                for k, item in enumerate(items):
                    self._event("response.output_item.added", {"output_index": k, "item": item})
                    self._event("response.output_item.done", {"output_index": k, "item": item})
                usage = {
                    "input_tokens": 10,
                    "output_tokens": 5,
                    "total_tokens": 15,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                }
                done = {"id": f"resp_{i}", "status": "completed", "output": items, "usage": usage}
                self._event("response.completed", {"response": done})
                self.wfile.flush()
                self.close_connection = True

            def _event(self, kind: str, data: dict[str, Any]) -> None:
                line = json.dumps({"type": kind, **data})
                self.wfile.write(f"event: {kind}\ndata: {line}\n\n".encode())

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
