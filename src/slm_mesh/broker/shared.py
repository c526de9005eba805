"""The broker's part when several brokers share one PostgreSQL store.

Rules:
1. Mesh entries run in one worker thread at a time (the store's connection blocks), never
   on the event loop, each within ``STORE_CALL_TIMEOUT_S``, in the order they were
   submitted (the calls of a batch, one connection's pipelined calls); the effects are
   drained in that thread and carried out on the loop. A caller that leaves meanwhile
   does not abandon the entry: its effects are still carried out; so are those of an
   entry that ends after its caller was told -32011 at the timeout (that answer says
   ``maybe_done``: it may have committed; a lock request it queued leaves the queue,
   since nobody waits for it).
2. Availability: a failed entry, a lease that could not be renewed or a lost ``LISTEN``
   connection make the store unavailable at once: calls fail with -32011 (``retry_after``)
   without touching the store, every connection is told (``mesh.store``), and a task
   reconnects with backoff. Once back, the broker renews its lease, takes back its
   sessions (:meth:`Mesh.rejoin`), catches up on the events it missed and says so. A
   schema a newer slm-mesh migrated meanwhile keeps it unavailable, the reason saying
   what to do.
3. Lease: renewed every third of ``lease_s`` on a connection of its own, and held until
   ``lease_s`` after the start of the last renewal that succeeded: past that the broker
   answers nothing that needs the store, since the others may have taken its sessions
   for away. Each renewal reads the store's clock: mesh time is the store's time.

What it hears of the others, and how events reach subscribers in order, is
:mod:`slm_mesh.broker.shared_events`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from slm_mesh.mesh import Waiter
from slm_mesh.protocol.errors import StoreUnavailable
from slm_mesh.store.errors import SchemaError, StoreUnreachable
from slm_mesh.store.postgresql import PostgresStore
from slm_mesh.store.postgresql.liveness import Lease
from slm_mesh.store.urls import redact

from .shared_events import RECONNECT_MAX_S, SharedEvents

if TYPE_CHECKING:
    from .connection import Connection
    from .server import Broker

log = logging.getLogger(__name__)

STORE_CALL_TIMEOUT_S = 4.0
QUIESCE_S = 15.0  # longer than any statement may take (connect.STATEMENT_TIMEOUT_MS)


class _Job:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.finished = trio.Event()
        self.ok = False
        self.value: Any = None
        # Between the mesh's thread and the loop: what the entry did, once it ended, and
        # whether its caller was told -32011 first (then the thread hands it over itself).
        self.guard = threading.Lock()
        self.outcome: tuple[bool, Any, list[Any]] | None = None
        self.given_up = False

    def done(self, ok: bool, value: Any) -> None:
        self.ok, self.value = ok, value
        self.finished.set()

    async def result(self) -> Any:
        await self.finished.wait()
        if self.ok:
            return self.value
        raise self.value


class SharedStore:
    def __init__(self, broker: Broker, store: PostgresStore) -> None:
        self.broker = broker
        self.store = store
        self.broker_id = store.broker_id
        self.lease_s = broker.settings.lease_s
        host = broker.settings.host
        self.lease = Lease(store.url, store.schema, store.broker_id, host, os.getpid())
        self.limiter = trio.CapacityLimiter(1)  # the mesh's thread (rule 1)
        self.lease_limiter = trio.CapacityLimiter(1)  # the lease's thread
        self.available = False
        self.reason = "not connected yet"
        self.held_until = -math.inf  # trio time (rule 3)
        self.offset = 0.0  # the store's clock minus ours
        self._reconnecting = False
        self._jobs_in, self._jobs_out = trio.open_memory_channel[_Job](math.inf)
        self.events = SharedEvents(self)  # what it hears of the others

    # -- availability ----------------------------------------------------------------------

    def usable(self) -> bool:
        return self.available and trio.current_time() < self.held_until

    def retry_after(self) -> float:
        return 1.0

    def check(self) -> None:
        """Raise -32011 at once if the store can't be used now (rule 2)."""
        if not self.usable():
            raise self._unavailable()

    def _unavailable(self, *, maybe_done: bool = False) -> StoreUnavailable:
        """-32011; with ``maybe_done``, for a call still running at its deadline, which
        may yet be done (rule 1): ``data.maybe_done`` says so, as the message does."""
        retry = self.retry_after()
        data: dict[str, Any] = {"retry_after": retry}
        what = f"store unavailable: {self.reason}"
        if maybe_done:
            data["maybe_done"] = True
            what += " (this call may still be done once the store answers: check first)"
        return StoreUnavailable(f"{what}; retry in {retry:g} s", data)

    def lost(self, why: str) -> None:
        """The store can't be used: refuse, tell everyone, reconnect (rule 2)."""
        if self.available:
            self.available = False
            self.reason = why
            log.warning("the shared store is unavailable: %s", why)
            self._tell()
        if not self._reconnecting:
            self._reconnecting = True
            self.broker.system.start_soon(self._reconnect)

    def _tell(self) -> None:
        note: dict[str, Any] = {"available": self.available}
        if not self.available:
            note.update(reason=self.reason, retry_after=self.retry_after())
        for conn in list(self.broker.conns.values()):
            conn.push("mesh.store", note)

    def status(self) -> dict[str, Any]:
        """The store as ``mesh.status`` shows it (the URL without its password)."""
        usable = self.usable()
        settings = self.broker.settings
        return {
            "kind": "postgresql",
            "where": self.store.where(),
            "url": redact(self.store.url),
            "mesh": settings.mesh_name,
            "schema": self.store.schema,
            "host": settings.host,
            "lease_s": self.lease_s,
            "broker_id": self.broker_id,
            "available": usable,
            "reason": None if usable else self.reason,
            "retry_after": None if usable else self.retry_after(),
        }

    # -- running mesh entries (rule 1) ---------------------------------------------------

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a mesh entry) in the mesh's thread after every entry submitted
        before it; carry out its effects.

        Raises:
            StoreUnavailable: the store could not be reached (it is now unavailable).
        """
        return await self.submit(fn, *args).result()

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Job:
        """Queue ``fn(*args)`` for the mesh's thread now; await ``.result()`` later."""
        job = _Job(fn, args)
        self._jobs_in.send_nowait(job)
        return job

    async def _run_jobs(self) -> None:
        """Run the submitted entries one at a time, in order (rule 1)."""
        mesh = self.broker.mesh
        token = trio.lowlevel.current_trio_token()
        async for job in self._jobs_out:

            def work(job: _Job = job) -> None:
                try:
                    outcome = (True, job.fn(*job.args), mesh.drain())
                except Exception as exc:
                    outcome = (False, exc, mesh.drain())
                with job.guard:
                    job.outcome = outcome
                    late = job.given_up
                if late:  # its caller was told -32011: only its effects are left to do
                    with contextlib.suppress(trio.RunFinishedError):
                        token.run_sync_soon(self._late, *outcome)

            with trio.move_on_after(STORE_CALL_TIMEOUT_S):
                await trio.to_thread.run_sync(work, limiter=self.limiter, abandon_on_cancel=True)
            with job.guard:
                outcome = job.outcome
                job.given_up = outcome is None
            if outcome is None:
                # Still running in its thread (the next entry waits for it: the limiter),
                # or never started: what it does if it ends is carried out (_late).
                self.lost(f"no answer within {STORE_CALL_TIMEOUT_S:g} s")
                job.done(False, self._unavailable(maybe_done=True))
                continue
            ok, value, effects = outcome
            self.broker.apply(effects)
            if not ok and isinstance(value, StoreUnreachable):
                self.lost(str(value))
                value = self._unavailable()
            job.done(ok, value)

    def _late(self, ok: bool, value: Any, effects: list[Any]) -> None:
        """An entry ended after its caller was told -32011: carry out what it did (rule 1).
        (Called by trio between tasks: nothing may escape it.)"""
        try:
            self.broker.apply(effects)
            if ok and isinstance(value, Waiter) and value.lock is None:
                # Queued with nobody waiting for it: out of the queue again.
                what = "giving up a late wait"
                cancel, now = self.broker.mesh.cancel_wait, self.broker.now()
                self.broker.system.start_soon(self.entry, what, cancel, value, now)
        except Exception:
            log.exception("carrying out what a late entry did")

    def call(self, conn: Connection, name: str, params: dict[str, Any]) -> Awaitable[Any]:
        """One mesh call of a connection, queued now (so a batch's calls, and one
        connection's pipelined calls, run in order); await what it returns."""
        self.check()
        broker = self.broker
        job = self.submit(broker.mesh.call, conn.id, name, params, broker.now())
        return self._answer(job, params)

    async def _answer(self, job: _Job, params: dict[str, Any]) -> Any:
        # Shielded (the job ends within its timeout): a caller that leaves now must still
        # see a queued request through wait_for_lock, which takes it out of the queue.
        with trio.CancelScope(shield=True):
            result = await job.result()
        if isinstance(result, Waiter):
            return await self.broker.wait_for_lock(result, params["wait"])
        return result

    async def entry(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """A mesh entry nobody waits on (a timer, a closed connection): failures logged."""
        try:
            await self.run_sync(fn, *args)
        except StoreUnavailable:
            log.info("%s: postponed, the store is unavailable", what)
        except Exception:
            log.exception("%s failed", what)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Take the lease, recover, start listening; then keep it all going.

        Raises:
            StoreUnreachable: the store can't be reached at start.
        """
        nursery.start_soon(self._run_jobs)
        await self._renew()
        self.available = True
        self.events.cursor = await self.run_sync(self.store.last_seq)
        mesh = self.broker.mesh
        await self.run_sync(mesh.start, self.broker.now())
        fd = await trio.to_thread.run_sync(self.events.listener.open)
        nursery.start_soon(self.events.listen, fd)
        nursery.start_soon(self._keep_lease)
        nursery.start_soon(self._sweep)
        nursery.start_soon(self.events.run_remote)

    async def stop(self) -> None:
        """A clean stop: end the lease so the others need not wait for it."""
        with trio.move_on_after(2):
            await trio.to_thread.run_sync(
                self.lease.give_up, limiter=self.lease_limiter, abandon_on_cancel=True
            )

    async def quiesce(self) -> None:
        """Wait until no thread uses a connection (one given up on may still run): only
        then may they be closed."""
        with trio.move_on_after(QUIESCE_S):
            for limiter in (self.limiter, self.lease_limiter):
                async with limiter:
                    pass

    def close(self) -> None:
        """Close the lease's and the listener's connections (the store closes its own)."""
        self.lease.close()
        self.events.close()

    async def _renew(self) -> None:
        started = trio.current_time()
        with trio.move_on_after(max(0.5, self.lease_s / 3)) as scope:
            db_now, lapsed = await trio.to_thread.run_sync(
                self.lease.renew, self.lease_s, limiter=self.lease_limiter, abandon_on_cancel=True
            )
        if scope.cancelled_caught:
            raise StoreUnreachable("the lease could not be renewed in time", 1.0)
        self.held_until = started + self.lease_s
        self.offset = db_now - time.time()
        if lapsed and self.available:
            log.warning("the lease had lapsed: taking the sessions back")
            self.broker.system.start_soon(self._rejoin)

    async def _keep_lease(self) -> None:
        while True:
            await trio.sleep(self.lease_s / 3)
            if self._reconnecting:
                continue
            try:
                await self._renew()
            except StoreUnreachable as exc:
                self.lost(str(exc))

    async def _sweep(self) -> None:
        while True:
            await trio.sleep(self.broker.settings.sweep_s)
            if self.usable():
                await self.entry("sweep", self.broker.mesh.sweep, self.broker.now())

    async def _reconnect(self) -> None:
        delay = 0.1
        try:
            while True:
                try:
                    with trio.fail_after(STORE_CALL_TIMEOUT_S * 2):
                        await trio.to_thread.run_sync(
                            self.store.reconnect, limiter=self.limiter, abandon_on_cancel=True
                        )
                        await self._renew()
                    self.available = True
                    await self._rejoin()
                    if self.usable():
                        log.info("the shared store is back")
                        self._tell()
                        return
                except (StoreUnreachable, StoreUnavailable, trio.TooSlowError) as exc:
                    self.available = False
                    log.info("reconnecting to the shared store: %s", exc)
                except SchemaError as exc:
                    # A newer slm-mesh migrated the mesh meanwhile: say what to do to every
                    # caller (-32011), and look again now and then (it may be put back).
                    self.available = False
                    if self.reason != str(exc):
                        log.error("%s", exc)
                    self.reason = str(exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._reconnecting = False

    async def _rejoin(self) -> None:
        gone = await self.run_sync(self.broker.mesh.rejoin, self.broker.now())
        if gone:
            log.warning("sessions gone while the store was out of reach: %s", ", ".join(gone))
        await self.events.rejoined()
