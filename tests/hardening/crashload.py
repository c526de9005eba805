"""A workload for crash tests: clients that send messages, compare-and-set state and take
locks while the broker may be SIGKILLed at any moment, a ledger of every call the broker
answered, and a check of the database against that ledger.

Used by ``tests/hardening/test_crash.py`` (a few kills) and ``bench/crash.py`` (many).

The promise checked: every call that got an answer is in the database after a restart
(each message by id with its sender, recipient and body; each state write's version, by
the ``state_changed`` event committed with it), nothing was answered twice (no message id
or state version handed out to two calls), every lock whose grant was answered and not
released since is still held, no two incompatible locks overlap, and SQLite's
``integrity_check`` is ok.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_mesh.mesh.paths import overlaps
from tests.wire import Gone, LineClient

LOCK_PATHS = ("/w/a.py", "/w/b.py", "/w/src/x.py", "/w/src/**", "/w/*.py", "/w/src/*.py")
SHARED_KEY = "shared/counter"


@dataclass
class Ledger:
    """Every answer the broker gave, across kills and restarts."""

    messages: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # id → who, to, body
    message_ids_answered: list[int] = field(default_factory=list)
    state: list[tuple[str, int, str]] = field(default_factory=list)  # key, version, value
    held: dict[tuple[str, str], bool] = field(default_factory=dict)  # (peer, path) → held
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    kill_at: int = 0  # when ``calls`` reaches this, ``reached`` is set
    reached: threading.Event = field(default_factory=threading.Event)

    def answered(self) -> None:
        """Count one answered call (with ``lock`` held)."""
        self.calls += 1
        if self.calls >= self.kill_at:
            self.reached.set()


class Worker(threading.Thread):
    """One client: messages to the others, CAS on its own key and a shared one, locks."""

    def __init__(
        self, n: int, clients: int, path: Path, ledger: Ledger, token: str | None, seed: int
    ) -> None:
        super().__init__(daemon=True, name=f"c{n}")
        self.n = n
        self.clients = clients
        self.path = path
        self.ledger = ledger
        self.token = token
        self.rnd = random.Random(seed)
        self.peer_id = ""
        self.own_version = -1  # unknown until learnt
        self.registered = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except Gone:
            pass
        except BaseException as exc:
            self.error = exc
        finally:
            self.registered.set()

    def _run(self) -> None:
        c = LineClient(self.path)
        try:
            params: dict[str, Any] = {"name": f"c{self.n}", "cwd": "/w"}
            if self.token:
                params["resume"] = self.token
            reg = c.request("peer.register", **params)["result"]
            self.peer_id, self.token = reg["peer_id"], reg["resume_token"]
            self.registered.set()
            seq = 0
            while True:
                seq += 1
                self._messages(c, seq)
                self._own_state(c, seq)
                self._shared_state(c, seq)
                self._locks(c)
        finally:
            c.close()

    def _messages(self, c: LineClient, seq: int) -> None:
        sent: dict[int, tuple[str, str]] = {}
        for k in range(4):  # pipelined: several sends in flight when the kill lands
            to = f"c{self.rnd.randrange(self.clients)}"
            body = f"c{self.n}:{seq}:{k}"
            sent[c.send("message.send", to=to, body=body)] = (to, body)
        for _ in sent:
            answer = c.answer()
            if "result" not in answer:
                continue  # -32002 before that peer registered: nothing was stored
            _to, body = sent[answer["id"]]
            [recipient] = answer["result"]["recipients"]
            with self.ledger.lock:
                self.ledger.answered()
                for mid in answer["result"]["ids"]:
                    self.ledger.message_ids_answered.append(mid)
                    self.ledger.messages[mid] = (self.peer_id, recipient["peer_id"], body)

    def _own_state(self, c: LineClient, seq: int) -> None:
        key = f"own/c{self.n}"
        if self.own_version < 0:
            got = c.request("state.get", key=key)["result"]
            self.own_version = got["version"] if got else 0
        value = f"c{self.n}:{seq}"
        answer = c.request("state.set", key=key, value=value, if_version=self.own_version)
        if "result" in answer:
            self.own_version = answer["result"]["version"]
            assert self.own_version >= 1
            self._record_state(key, self.own_version, value)
        else:  # a write committed but unanswered before a kill: learn its version
            assert answer["error"]["code"] == -32004, answer
            self.own_version = answer["error"]["data"]["version"]

    def _shared_state(self, c: LineClient, seq: int) -> None:
        got = c.request("state.get", key=SHARED_KEY)["result"]
        version = got["version"] if got else 0
        value = f"c{self.n}:{seq}"
        answer = c.request("state.set", key=SHARED_KEY, value=value, if_version=version)
        if "result" in answer:
            assert answer["result"]["version"] == version + 1
            self._record_state(SHARED_KEY, version + 1, value)
        else:
            assert answer["error"]["code"] == -32004, answer  # someone else got there first

    def _record_state(self, key: str, version: int, value: str) -> None:
        with self.ledger.lock:
            self.ledger.answered()
            self.ledger.state.append((key, version, value))

    def _locks(self, c: LineClient) -> None:
        path = self.rnd.choice(LOCK_PATHS)
        mode = self.rnd.choice(("exclusive", "shared"))
        key = (self.peer_id, path)
        answer = c.request("lock.acquire", path=path, mode=mode, ttl=600)
        if "result" not in answer:
            assert answer["error"]["code"] == -32003, answer
            return
        with self.ledger.lock:
            self.ledger.answered()
            self.ledger.held[key] = True
        if self.rnd.random() < 0.7:
            with self.ledger.lock:
                self.ledger.held[key] = False  # from the moment it is sent, it may be gone
            c.request("lock.release", path=path)


def run_until_killed(
    path: Path, ledger: Ledger, tokens: dict[int, str], clients: int, seed: int
) -> list[Worker]:
    """Start ``clients`` workers (resuming their earlier sessions) and return them once each
    has registered; they run until the broker goes away."""
    workers = [
        Worker(n, clients, path, ledger, tokens.get(n), seed * 1000 + n) for n in range(clients)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.registered.wait(20)
    return workers


def finish(workers: list[Worker], tokens: dict[int, str]) -> None:
    """After the kill: wait for the workers to notice; keep their tokens for the resume."""
    for w in workers:
        w.join(20)
        assert not w.is_alive(), f"{w.name} did not notice the broker was gone"
        if w.error is not None:
            raise w.error
        if w.token:
            tokens[w.n] = w.token


def verify(db_path: Path, ledger: Ledger) -> dict[str, int]:
    """Check the database (of a broker restarted after a kill) against every answer given.

    Raises:
        AssertionError: an answered call is missing, something was answered twice, a lock
            is lost or two incompatible locks overlap, or the database is damaged.
    """
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        [(check,)] = db.execute("PRAGMA integrity_check").fetchall()
        assert check == "ok", check
        with ledger.lock:
            answered = list(ledger.message_ids_answered)
            messages = dict(ledger.messages)
            state = list(ledger.state)
            held = [k for k, v in ledger.held.items() if v]
        assert len(answered) == len(set(answered)), "a message id was answered twice"
        rows = {
            mid: (sender, recipient, body)
            for mid, sender, recipient, body in db.execute(
                "SELECT id, sender_id, recipient_id, body FROM messages"
            )
        }
        lost = [mid for mid in messages if rows.get(mid) != messages[mid]]
        assert not lost, f"answered messages lost or changed: {lost[:10]}"
        versions = [(key, version) for key, version, _ in state]
        assert len(versions) == len(set(versions)), "a state version was answered twice"
        committed = {
            (d["key"], d["version"])
            for (data,) in db.execute("SELECT data FROM events WHERE type = 'state_changed'")
            for d in [json.loads(data)]
        }
        missing = [v for v in versions if v not in committed]
        assert not missing, f"answered state writes lost: {missing[:10]}"
        current = dict(db.execute("SELECT key, version FROM state WHERE namespace = 'default'"))
        behind = [(k, v) for k, v in versions if current.get(k, 0) < v]
        assert not behind, f"a key's version went backwards: {behind[:10]}"
        locks = db.execute("SELECT path, peer_id, mode FROM locks").fetchall()
        present = {(peer, path) for path, peer, _ in locks}
        dropped = [k for k in held if k not in present]
        assert not dropped, f"locks whose grant was answered are gone: {dropped}"
        for i, (path_a, peer_a, mode_a) in enumerate(locks):
            for path_b, peer_b, mode_b in locks[i + 1 :]:
                clash = peer_a != peer_b and "exclusive" in (mode_a, mode_b)
                assert not (clash and overlaps(path_a, path_b)), (path_a, path_b)
        return {"messages": len(messages), "state_writes": len(state), "locks_held": len(held)}
    finally:
        db.close()
