"""What the agent must hear about its session that no tool result would tell it: lines
added to the end of tool results, like the unread notice.

Rules:
1. While this machine's broker has lost the mesh's shared store (``mesh.store
   {available: false}``), every tool result says so and when to retry; tools that need
   the store fail meanwhile with an error that says the same (``advice``).
2. Once it is back (``mesh.store {available: true}``), the next tool result says so, once,
   with how long it was out.
3. When the session ended while the broker was cut off (past the grace period) and the
   server joined the mesh again, the next tool result says so, once, with its name and
   that the locks it held were released: the agent must not edit on as if it held them.
"""

from __future__ import annotations

import time
from typing import Any

PREFIX = "[slm-mesh]"


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


class Notices:
    """The lines pending for the next tool result (see the rules)."""

    def __init__(self) -> None:
        self._store_out_since: float | None = None
        self._retry_after: float = 1.0
        self._once: list[str] = []

    def store_changed(self, params: dict[str, Any], now: float | None = None) -> None:
        """The broker said the shared store is out of reach, or back (rules 1, 2)."""
        now = time.time() if now is None else now
        if not params.get("available"):
            if self._store_out_since is None:
                self._store_out_since = now
            retry = params.get("retry_after")
            self._retry_after = float(retry) if isinstance(retry, int | float) else 1.0
            return
        since, self._store_out_since = self._store_out_since, None
        if since is not None:
            self._once.append(
                f"{PREFIX} the mesh's shared store is reachable again (it was out of reach "
                f"from {_clock(since)} to {_clock(now)}); mesh calls work again."
            )

    def joined_again(self, name: str | None) -> None:
        """The session had ended while the broker was cut off; it joined again (rule 3)."""
        self._once.append(
            f"{PREFIX} your mesh session ended while this machine's broker was cut off from "
            f"the shared store for longer than the grace period. You are in the mesh again "
            f"as {name}, but the locks you held were released: take them again with "
            "mesh_lock before you edit those files."
        )

    @property
    def store_out(self) -> bool:
        return self._store_out_since is not None

    def take(self, *, store_state: bool = True) -> list[str]:
        """The lines for this tool result: the pending one-off lines (then forgotten),
        and, with ``store_state``, the store's state while it is out."""
        lines, self._once = self._once, []
        if store_state and self._store_out_since is not None:
            lines.append(
                f"{PREFIX} the mesh's shared store is out of reach from this machine's "
                f"broker since {_clock(self._store_out_since)}: mesh calls fail until it "
                f"is back; retry in {self._retry_after:g} s."
            )
        return lines
