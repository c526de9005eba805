"""How many messages to this peer are unread, known without asking the broker whenever it
can be: the notice at the end of every tool result needs it, and asking costs a broker
round trip per tool call (in a closed loop of mixed calls, about half of them asked).

Rules:
1. A count learnt from the broker is exact from then on, counting every ``message`` push
   the client reads after it. ``pushed`` is the client's running count of ``message``
   pushes, taken in the order they arrive with the answers
   (:attr:`slm_mesh.client.aio.MeshClient.messages_pushed`).
2. That holds because the broker commits a message and pushes it to its recipient's
   connection in one step, and writes a connection's lines in order: a message counted in
   an answer was pushed before that answer, one that was not is pushed after it.
3. So a count is kept only from an answer during which no push was read (the push of a
   counted message could still be on its way to the client's reader otherwise).
4. Anything that may change the count otherwise forgets it: a reconnect (pushes lost with
   the old connection), a resumed registration.
"""

from __future__ import annotations


class UnreadCount:
    """The count, as of the client's push counter (see the rules)."""

    __slots__ = ("_base", "_mark")

    def __init__(self) -> None:
        self._base: int | None = None
        self._mark = 0

    def known(self, pushed: int) -> int | None:
        """The count now, ``pushed`` messages having been read in all (None: ask)."""
        if self._base is None:
            return None
        return self._base + (pushed - self._mark)

    def learn(self, count: int, pushed_before: int, pushed_after: int) -> None:
        """The broker answered ``count`` to a call sent when ``pushed_before`` pushes had
        been read; ``pushed_after`` had been when the answer came (rule 3)."""
        if pushed_before == pushed_after:
            self._base, self._mark = count, pushed_after
        else:
            self._base = None

    def forget(self) -> None:
        self._base = None
