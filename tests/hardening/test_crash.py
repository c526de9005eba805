"""Crash safety of the broker process: SIGKILL at random points under load, a full disk,
a read-only data dir, and databases it must refuse.

``python bench/crash.py`` runs the kill loop many more times.
"""

from __future__ import annotations

import random
import signal

import pytest

from slm_mesh.config import Settings
from tests.hardening.crashload import Ledger, finish, run_until_killed, verify
from tests.wire import LineClient, broker_process

CLIENTS = 10


def restarted_and_recovered(settings: Settings) -> None:
    """The restarted broker answers, so its recovery (run before it accepts) is done."""
    c = LineClient(settings.socket_path)
    assert c.request("mesh.ping")["result"] == "pong"
    c.close()


def test_sigkill_at_random_points_loses_no_answered_call(settings: Settings) -> None:
    rnd = random.Random()
    seed = rnd.randrange(10**6)
    rnd.seed(seed)
    ledger, tokens = Ledger(), dict[int, str]()
    kills = 3
    for round_ in range(kills + 1):
        with broker_process(settings) as proc:
            restarted_and_recovered(settings)
            if round_:
                verify(settings.db_path, ledger)
            if round_ == kills:
                break
            ledger.reached.clear()
            ledger.kill_at = ledger.calls + rnd.randrange(50, 400)
            workers = run_until_killed(settings.socket_path, ledger, tokens, CLIENTS, seed + round_)
            assert ledger.reached.wait(30), f"workload stalled (seed {seed})"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finish(workers, tokens)
    figures = verify(settings.db_path, ledger)
    print(f"\ncrash: {kills} kills survived, seed {seed}, {figures}")
    assert figures["messages"] > 0 and figures["state_writes"] > 0, (seed, figures)
    # The check can fail: an answer the database does not hold is caught.
    ledger.messages[10**9] = ("someone", "someone else", "never stored")
    with pytest.raises(AssertionError, match="lost"):
        verify(settings.db_path, ledger)
