"""SIGKILL the broker again and again under load; prints one JSON object of figures.

    python bench/crash.py [--kills 50] [--clients 10] [--seed N]

Each round starts ``slm-mesh broker`` on the same data dir, checks the database against
every answer given so far (tests/hardening/crashload.py: each answered message by id, each
answered state version, each answered lock still held, no id or version answered twice,
no two incompatible locks overlapping, ``PRAGMA integrity_check``), lets ``--clients``
clients resume their sessions and send messages, compare-and-set state and take locks, and
SIGKILLs the broker after a random number of answered calls (50 to 2,000). The bench
stops at the first loss (exit status 1, the figures say which round).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hardening.crashload import Ledger, finish, run_until_killed, verify
from tests.wire import LineClient, broker_process, make_settings, short_tmp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rnd = random.Random(seed)
    ledger, tokens = Ledger(), dict[int, str]()
    out: dict[str, object] = {"seed": seed, "clients": args.clients, "kills_survived": 0}
    started = time.monotonic()
    with short_tmp() as tmp:
        settings = make_settings(tmp)
        settings.data_dir.mkdir(mode=0o700)
        try:
            for round_ in range(args.kills + 1):
                with broker_process(settings) as proc:
                    c = LineClient(settings.socket_path)
                    assert c.call("mesh.ping") == "pong"  # recovery is done
                    c.close()
                    if round_:
                        out["checked"] = verify(settings.db_path, ledger)
                        out["kills_survived"] = round_
                    if round_ == args.kills:
                        break
                    ledger.reached.clear()
                    ledger.kill_at = ledger.calls + rnd.randrange(50, 2000)
                    workers = run_until_killed(
                        settings.socket_path, ledger, tokens, args.clients, seed + round_
                    )
                    if not ledger.reached.wait(60):
                        raise AssertionError("the workload stalled")
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    finish(workers, tokens)
        except AssertionError as exc:
            out["failed"] = str(exc)
        out["answered_calls"] = ledger.calls
        out["seconds"] = round(time.monotonic() - started, 1)
        out["db_bytes"] = settings.db_path.stat().st_size
    print(json.dumps(out, indent=2))
    sys.exit(1 if "failed" in out else 0)


if __name__ == "__main__":
    main()
