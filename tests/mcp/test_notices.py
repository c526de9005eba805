"""The lines a tool result ends with about the session itself (mcp_server/notices.py)."""

from __future__ import annotations

import time

from slm_mesh.mcp_server.notices import Notices

T0 = 1_800_000_000.0


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def test_nothing_to_say_says_nothing() -> None:
    assert Notices().take() == []


def test_every_result_says_the_store_is_out_until_it_is_back_then_once_that_it_is() -> None:
    notices = Notices()
    notices.store_changed({"available": False, "reason": "gone", "retry_after": 2.0}, T0)
    notices.store_changed({"available": False, "retry_after": 1.0}, T0 + 5)  # still out
    out = (
        f"[slm-mesh] the mesh's shared store is out of reach from this machine's broker "
        f"since {clock(T0)}: mesh calls fail until it is back; retry in 1 s."
    )
    assert notices.take() == [out]
    assert notices.take() == [out]
    assert notices.take(store_state=False) == []  # (an error that says so already)
    notices.store_changed({"available": True}, T0 + 30)
    back = (
        f"[slm-mesh] the mesh's shared store is reachable again (it was out of reach from "
        f"{clock(T0)} to {clock(T0 + 30)}); mesh calls work again."
    )
    assert notices.take() == [back]
    assert notices.take() == []


def test_back_without_having_been_out_says_nothing() -> None:
    notices = Notices()
    notices.store_changed({"available": True}, T0)
    assert notices.take() == []


def test_a_session_joined_again_is_said_once_with_its_name_and_the_locks_it_lost() -> None:
    notices = Notices()
    notices.joined_again("backend")
    [line] = notices.take()
    assert "You are in the mesh again as backend" in line
    assert "the locks you held were released: take them again with mesh_lock" in line
    assert notices.take() == []
