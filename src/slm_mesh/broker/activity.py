"""How busy the broker is: calls answered and messages sent, in total and minute by minute.

``mesh.status`` reports it as ``activity`` so a live view (``slm-mesh top``) can show
calls/s and messages/min with a sparkline of the last minutes the moment it starts, without
walking the event log. Counting is two additions per call: the broker's hot path must not
notice it.

Rules:
1. Totals count since the broker started. ``per_minute`` holds the last :data:`MINUTES`
   whole minutes of the broker's clock and the current one, oldest first; the last entry
   is the current minute so far.
2. Minutes with nothing in them count as zeros: the lists always have ``MINUTES + 1``
   entries, so their ends line up with "now".
"""

from __future__ import annotations

from collections import deque
from typing import Any

MINUTES = 15
MINUTE_S = 60.0


class Activity:
    """Counters of calls and messages; times are any monotonic clock in seconds."""

    def __init__(self, now: float) -> None:
        self.calls = 0
        self.messages = 0
        self._minute = int(now // MINUTE_S)
        self._calls: deque[int] = deque([0] * (MINUTES + 1), maxlen=MINUTES + 1)
        self._messages: deque[int] = deque([0] * (MINUTES + 1), maxlen=MINUTES + 1)

    def count_call(self, now: float) -> None:
        self._roll(now)
        self.calls += 1
        self._calls[-1] += 1

    def count_messages(self, sent: int, now: float) -> None:
        """``sent`` messages were sent (one per ``message.send`` that reached anyone)."""
        self._roll(now)
        self.messages += sent
        self._messages[-1] += sent

    def _roll(self, now: float) -> None:
        minute = int(now // MINUTE_S)
        if minute <= self._minute:
            return
        for _ in range(min(minute - self._minute, MINUTES + 1)):
            self._calls.append(0)
            self._messages.append(0)
        self._minute = minute

    def view(self, now: float) -> dict[str, Any]:
        """``{calls, messages, minute_s, per_minute: {calls: [...], messages: [...]}}``."""
        self._roll(now)
        return {
            "calls": self.calls,
            "messages": self.messages,
            "minute_s": MINUTE_S,
            "per_minute": {"calls": list(self._calls), "messages": list(self._messages)},
        }
