"""The real broker on a real Unix socket, run by trio in a thread of its own, so that
synchronous tests (hypothesis, blocking sockets) can talk to it line by line, and every
log record it writes is kept for the test to inspect."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from slm_mesh.config import Settings
from tests.wire import InProcessBroker, in_process_broker


class Records(logging.Handler):
    """Keeps every record at ``level`` or above, from any thread."""

    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        out, self.records = self.records, []
        return [
            f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.name for r in out
        ]


class BrokerThread:
    """``with BrokerThread(settings) as b:`` runs the broker until the block ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.errors = Records()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="broker", daemon=True)
        self.handle: InProcessBroker | None = None

    def __enter__(self) -> BrokerThread:
        logging.getLogger().addHandler(self.errors)
        self._thread.start()
        if not self._ready.wait(20) or self.handle is None:
            raise RuntimeError(f"broker thread did not start: {self._failed!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(20)
            assert not self._thread.is_alive(), "broker thread did not stop"
        finally:
            logging.getLogger().removeHandler(self.errors)
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._failed = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with in_process_broker(self.settings) as handle:
            self.handle = handle
            self._ready.set()
            await self._stop.wait()

    def on_loop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the broker's trio thread (to read its state safely)."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def connect(self) -> LineSocket:
        return LineSocket(self.settings.socket_path)


class LineSocket:
    """A blocking NDJSON connection that keeps notifications apart from answers."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.notifications = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        return self.file.readline()

    def read_answer(self, parse: Any = json.loads) -> Any:
        """The next answer (notifications are counted and skipped); None at EOF."""
        while True:
            line = self.read_line()
            if not line:
                return None
            msg = parse(line)
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                self.notifications += 1
                continue
            return msg

    def call(self, method: str, **params: Any) -> Any:
        self.send(
            json.dumps({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}).encode()
            + b"\n"
        )
        answer = self.read_answer()
        assert answer is not None and "result" in answer, answer
        return answer["result"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()
