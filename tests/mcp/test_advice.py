"""Broker errors as sentences an agent can act on."""

from __future__ import annotations

import time

from slm_mesh.mcp_server import advice
from slm_mesh.protocol import errors

IN_TEN_MINUTES = time.time() + 600


def holder(**overrides: object) -> dict[str, object]:
    return {
        "path": "/repo/src/auth.ts",
        "mode": "exclusive",
        "peer_id": "a1b2c3d4",
        "holder": "backend",
        "agent": "claude-code",
        "reason": "refactoring login",
        "expires_at": IN_TEN_MINUTES,
        **overrides,
    }


def conflict(*holders: dict[str, object]) -> errors.LockConflict:
    return errors.LockConflict(
        "raw", {"path": "/repo/src/auth.ts", "holders": list(holders), "queued": False}
    )


def test_a_lock_conflict_names_the_holder_its_agent_time_and_reason() -> None:
    until = time.strftime("%H:%M", time.localtime(IN_TEN_MINUTES))
    assert advice.for_error(conflict(holder()), cwd="/repo") == (
        f"src/auth.ts is locked by backend (claude-code) until {until}: refactoring login. "
        "Try later, pass wait (seconds) to queue, or ask them with mesh_send to=backend."
    )


def test_a_conflict_outside_the_cwd_keeps_the_full_path_and_counts_other_holders() -> None:
    text = advice.for_error(
        conflict(holder(mode="shared", reason=None), holder(holder="qa")), cwd="/elsewhere"
    )
    assert text.startswith("/repo/src/auth.ts is locked by backend (claude-code), shared until")
    assert "(and 1 more)" in text


def test_a_conflict_with_a_queue_ahead_says_so() -> None:
    assert "queued before you" in advice.for_error(conflict(), cwd="/repo")


def test_a_version_conflict_says_which_version_to_retry_with() -> None:
    error = errors.VersionConflict("version is 3, not 2", {"version": 3})
    assert advice.for_error(error).endswith("retry with if_version=3.")


def test_other_errors_say_what_to_do_next() -> None:
    assert "mesh_peers" in advice.for_error(errors.PeerNotFound("no peer named 'x'"))
    assert advice.for_error(errors.InvalidParams("to", "must not be empty")) == (
        "to: must not be empty"
    )
    assert "retry in 2 s" in advice.for_error(errors.RateLimited("slow", {"retry_after": 2}))


def test_the_shared_store_out_of_reach_says_nothing_was_done_and_when_to_retry() -> None:
    error = errors.StoreUnavailable(
        "store unavailable: timeout; retry in 2 s", {"retry_after": 2.0}
    )
    assert advice.for_error(error) == (
        "the mesh's shared store (PostgreSQL) can't be reached from this machine's broker, "
        "so nothing was done; retry in 2 s. Locks you hold stay yours unless it stays out "
        "of reach past the grace period."
    )


def test_a_call_the_shared_store_did_not_answer_in_time_may_have_been_done() -> None:
    error = errors.StoreUnavailable(
        "store unavailable: no answer within 4 s (...)", {"retry_after": 1.0, "maybe_done": True}
    )
    said = advice.for_error(error)
    assert "may or may not have been done" in said
    assert "nothing was done" not in said
