"""The ``State, locks and events`` commands of the cyclopts app: ``state``, ``lock``,
``events``. Registered on the app by :mod:`slm_mesh.cli.app`; implemented in ``cmd_state``,
``cmd_lock`` and ``cmd_events``.
"""

from __future__ import annotations

from typing import Annotated

import cyclopts

from slm_mesh.cli import outcome
from slm_mesh.cli.options import (
    NOT_NEGATIVE,
    SHARED,
    TTL_RANGE,
    WAIT_RANGE,
    EventType,
    IfVersion,
    Json,
    LockMode,
    Namespace,
)
from slm_mesh.cli.render import Output

# -- state -----------------------------------------------------------------------------

state_app = cyclopts.App(
    name="state", help="Shared key-value state: namespaced, versioned, JSON values.", group=SHARED
)


@state_app.command(name="get")
def state_get(key: str, /, *, namespace: Namespace = "default", as_json: Json = False) -> int:
    """Print a key's value (a string as it is, anything else as JSON); exit 1 if unset."""
    from slm_mesh.cli import cmd_state

    return outcome.run(lambda out: cmd_state.get(out, key, namespace), as_json)


@state_app.command(name="set")
def state_set(
    key: str,
    value: Annotated[
        str,
        cyclopts.Parameter(allow_leading_hyphen=True, help="The value; - reads standard input."),
    ],
    /,
    *,
    namespace: Namespace = "default",
    parse_json: Annotated[
        bool,
        cyclopts.Parameter(
            negative=(), show_default=False, help="Store VALUE parsed as JSON, not as a string."
        ),
    ] = False,
    if_version: IfVersion = None,
    ttl: Annotated[
        float | None,
        cyclopts.Parameter(validator=TTL_RANGE, help="Seconds until the key expires."),
    ] = None,
    as_json: Json = False,
) -> int:
    """Set a key (its version goes up by one)."""
    from slm_mesh.cli import cmd_state

    return outcome.run(
        lambda out: cmd_state.set_(out, key, value, namespace, parse_json, if_version, ttl),
        as_json,
    )


@state_app.command(name="list")
def state_list(
    *,
    namespace: Namespace = "default",
    prefix: Annotated[str | None, cyclopts.Parameter(help="Only keys starting with this.")] = None,
    as_json: Json = False,
) -> int:
    """List the keys of a namespace."""
    from slm_mesh.cli import cmd_state

    return outcome.run(lambda out: cmd_state.list_(out, namespace, prefix), as_json)


@state_app.command(name="delete")
def state_delete(
    key: str,
    /,
    *,
    namespace: Namespace = "default",
    if_version: IfVersion = None,
    as_json: Json = False,
) -> int:
    """Delete a key (deleting a missing key is not an error)."""
    from slm_mesh.cli import cmd_state

    return outcome.run(lambda out: cmd_state.delete(out, key, namespace, if_version), as_json)


# -- locks -----------------------------------------------------------------------------

lock_app = cyclopts.App(
    name="lock", help="Advisory locks on files and globs (``src/auth/**``).", group=SHARED
)


@lock_app.command(name="list")
def lock_list(
    *,
    prefix: Annotated[
        str | None, cyclopts.Parameter(help="Only paths under this (relative to here).")
    ] = None,
    as_json: Json = False,
) -> int:
    """List the locks held now, with their holders and expiry."""
    from slm_mesh.cli import cmd_lock

    return outcome.run(lambda out: cmd_lock.list_(out, prefix), as_json)


@lock_app.command(name="check", usage="Usage: slm-mesh lock check [OPTIONS] PATH...")
def lock_check(
    *paths: Annotated[str, cyclopts.Parameter(help="Paths to check, relative to here.")],
    as_json: Json = False,
) -> int:
    """Exit 1 if another session holds a lock on any PATH, naming the holder and expiry.

    Read-only; made for scripts and commit hooks:
    ``slm-mesh lock check $(git diff --cached --name-only)``.
    """
    from slm_mesh.cli import cmd_lock

    if not paths:
        return outcome.run(_needs("lock check needs at least one PATH"), as_json)
    return outcome.run(lambda out: cmd_lock.check(out, paths), as_json)


@lock_app.command(
    name="acquire", usage="Usage: slm-mesh lock acquire [OPTIONS] PATH [--] [COMMAND...]"
)
def lock_acquire(
    path: Annotated[str, cyclopts.Parameter(help="Path or glob, relative to here.")],
    /,
    *command: Annotated[str, cyclopts.Parameter(help="Command to run while holding the lock.")],
    mode: Annotated[LockMode, cyclopts.Parameter(help="Lock mode.")] = "exclusive",
    ttl: Annotated[
        float | None,
        cyclopts.Parameter(
            validator=TTL_RANGE,
            help="Seconds the lock lasts if not renewed (default 600); it is renewed while held.",
        ),
    ] = None,
    wait: Annotated[
        float,
        cyclopts.Parameter(
            validator=WAIT_RANGE, help="Seconds to queue for the lock (0: fail at once)."
        ),
    ] = 0.0,
    reason: Annotated[str | None, cyclopts.Parameter(help="Why, shown to others.")] = None,
    name: Annotated[
        str | None,
        cyclopts.Parameter(
            help="Peer name to hold the lock as (default: yours, the person's, with a suffix)."
        ),
    ] = None,
    as_json: Json = False,
) -> int:
    """Take a lock and hold it while COMMAND runs, like flock(1).

    ``slm-mesh lock acquire src/db -- make migrate`` exits with the command's status, having
    held the lock (renewed before it expires) until the command ended. Without COMMAND it
    holds the lock until Ctrl-C, or until ``slm-mesh lock release`` from another shell.
    Exits 1 when the lock is held by someone else (after ``--wait``), naming the holder.
    """
    from slm_mesh.cli import cmd_lock

    return outcome.run(
        lambda out: cmd_lock.acquire(
            out, path, command, mode=mode, ttl=ttl, wait=wait, reason=reason, name=name
        ),
        as_json,
    )


@lock_app.command(name="release", usage="Usage: slm-mesh lock release [OPTIONS] [PATH...]")
def lock_release(
    *paths: Annotated[str, cyclopts.Parameter(help="Locked paths, relative to here.")],
    all_: Annotated[
        bool,
        cyclopts.Parameter(
            name="--all",
            negative=(),
            show_default=False,
            help="Release every lock held by ``lock acquire``.",
        ),
    ] = False,
    holder: Annotated[
        str | None,
        cyclopts.Parameter(help="With --force: the session that holds the lock (name or peer id)."),
    ] = None,
    force: Annotated[
        bool,
        cyclopts.Parameter(
            negative=(),
            show_default=False,
            help="Release HOLDER's lock on each PATH, as you, the person: it asks nothing.",
        ),
    ] = False,
    reason: Annotated[
        str | None, cyclopts.Parameter(help="With --force: why, told to the holder.")
    ] = None,
    as_json: Json = False,
) -> int:
    """Release locks held by ``slm-mesh lock acquire`` on this machine, or, with
    ``--holder NAME --force``, another session's.

    The holding process sees the release and exits. Locks of agents are theirs to
    release; they also end with the agent's session or their TTL. ``--holder NAME --force``
    releases NAME's lock on each PATH (as ``slm-mesh lock list`` shows it; a relative path
    is taken from here) for you, the person at the shell, as ``r`` in ``slm-mesh top``
    does: the event records that you released it, and the holder is told by a message.
    Exits 1 when NAME holds no lock on a PATH.
    """
    from slm_mesh.cli import cmd_lock

    if force or holder is not None or reason is not None:
        return outcome.run(
            lambda out: cmd_lock.release_forced(
                out, paths, holder, force, release_all=all_, reason=reason
            ),
            as_json,
        )
    return outcome.run(lambda out: cmd_lock.release(out, paths, all_), as_json)


# -- events ----------------------------------------------------------------------------


def events(
    *,
    follow: Annotated[
        bool,
        cyclopts.Parameter(
            name=["--follow", "-f"],
            negative=(),
            show_default=False,
            help="Keep printing events as they happen.",
        ),
    ] = False,
    type_: Annotated[
        list[EventType] | None,
        cyclopts.Parameter(
            name=["--type", "-t"],
            negative=(),
            help="Only events of this type (repeatable).",
        ),
    ] = None,
    after: Annotated[
        int | None,
        cyclopts.Parameter(
            validator=NOT_NEGATIVE, help="Start after this sequence number (0: the oldest kept)."
        ),
    ] = None,
    limit: Annotated[
        int,
        cyclopts.Parameter(
            validator=NOT_NEGATIVE,
            help="Most events to print before following (0: none, only what comes).",
        ),
    ] = 20,
    as_json: Json = False,
) -> int:
    """Print recent events; with ``--follow``, stream them live until Ctrl-C.

    Without ``--after`` it starts with the last LIMIT events, like tail(1).
    """
    from slm_mesh.cli import cmd_events

    types = list(type_ or [])
    return outcome.run(
        lambda out: cmd_events.events(out, follow, types, after, max(0, min(limit, 1000))),
        as_json,
    )


def _needs(message: str) -> outcome.Command:
    def fail(out: Output) -> int:
        raise outcome.usage(message)

    return fail
