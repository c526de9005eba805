"""The unread count behind the notice: exact without asking the broker when it can be
(slm_mesh.mcp_server.unread), and asking when it can't."""

from __future__ import annotations

from slm_mesh.mcp_server.unread import UnreadCount


def test_nothing_is_known_before_a_count_is_learnt() -> None:
    assert UnreadCount().known(0) is None


def test_a_learnt_count_grows_with_every_push_read_after_it() -> None:
    unread = UnreadCount()
    unread.learn(2, pushed_before=5, pushed_after=5)
    assert unread.known(5) == 2
    assert unread.known(8) == 5


def test_a_count_during_which_a_push_was_read_is_not_kept() -> None:
    unread = UnreadCount()
    unread.learn(2, pushed_before=5, pushed_after=5)
    unread.learn(1, pushed_before=5, pushed_after=6)  # counted or not: can't tell
    assert unread.known(6) is None


def test_a_forgotten_count_is_asked_for_again() -> None:
    unread = UnreadCount()
    unread.learn(0, pushed_before=0, pushed_after=0)
    unread.forget()
    assert unread.known(0) is None
    unread.learn(3, pushed_before=1, pushed_after=1)
    assert unread.known(1) == 3
