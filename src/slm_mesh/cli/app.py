"""The cyclopts app: every command's arguments and help, wired to its implementation.

This is the only module that imports cyclopts. The commands themselves live in the
``cmd_*`` modules and take plain values, so the fast path in :mod:`slm_mesh.cli` can run
the commonest ones without paying for cyclopts, and man pages are generated from this
same app (:mod:`slm_mesh.cli.manpages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import cyclopts

from slm_mesh.cli import outcome
from slm_mesh.cli.render import Output
from slm_mesh.config import VERSION, Settings

Scope = Literal["machine", "directory", "repo"]
MessageType = Literal["text", "json", "command", "alert"]
LockMode = Literal["exclusive", "shared"]
Platform = Literal["systemd", "launchd"]
EventType = Literal[
    "peer_joined",
    "peer_left",
    "peer_updated",
    "message_sent",
    "state_changed",
    "state_deleted",
    "lock_acquired",
    "lock_released",
    "lock_expired",
]

Json = Annotated[
    bool,
    cyclopts.Parameter(
        name="--json",
        negative=(),
        show_default=False,
        help="Print JSON instead of text (shapes: JSON OUTPUT in man slm-mesh).",
    ),
]
Namespace = Annotated[str, cyclopts.Parameter(name=["--namespace", "-n"], help="State namespace.")]
IfVersion = Annotated[
    int | None,
    cyclopts.Parameter(
        help="Compare-and-set: only if the key's version is this (0: it must not exist)."
    ),
]

Body = Annotated[
    str,
    cyclopts.Parameter(allow_leading_hyphen=True, help="The message; - reads standard input."),
]

BROKER = cyclopts.Group("Broker", sort_key=1)
TALK = cyclopts.Group("Peers and messages", sort_key=2)
SHARED = cyclopts.Group("State, locks and events", sort_key=3)
SETUP = cyclopts.Group("Set-up", sort_key=4)

app = cyclopts.App(
    name="slm-mesh",
    help=(
        "Coordination for AI coding sessions on one machine: see who else works here, "
        "message them, share state, lock files, follow events.\n\n"
        "Run alone, it starts the broker if none is running and prints its status."
    ),
    version=VERSION,
    version_flags=["--version"],
    help_format="restructuredtext",
)


@app.default
def bare(*, as_json: Json = False) -> int:
    """Start the broker if none answers (it exits 60 s after its last session), then
    print its status."""
    from slm_mesh.cli import cmd_broker

    return outcome.run(cmd_broker.bare, as_json)


# -- broker ----------------------------------------------------------------------------


@app.command(group=BROKER)
def broker(
    *,
    idle_exit: Annotated[
        float | None,
        cyclopts.Parameter(help="Exit this many seconds after the last connection closes."),
    ] = None,
    tcp: Annotated[
        bool, cyclopts.Parameter(help="Also listen on TCP 127.0.0.1 (token required).")
    ] = False,
    tcp_host: Annotated[str, cyclopts.Parameter(help="Loopback address for --tcp.")] = "127.0.0.1",
    verbose: Annotated[bool, cyclopts.Parameter(help="Log debug messages.")] = False,
) -> int:
    """Run the broker in the foreground."""
    from slm_mesh.broker.main import run_broker, setup_logging

    setup_logging(verbose)
    return run_broker(Settings.from_env(), idle_exit_s=idle_exit, tcp=tcp, tcp_host=tcp_host)


@app.command(group=BROKER)
def start(
    *,
    idle_exit: Annotated[
        float | None,
        cyclopts.Parameter(
            help="Exit this many seconds after the last connection closes "
            "(default: run until ``slm-mesh stop``)."
        ),
    ] = None,
    as_json: Json = False,
) -> int:
    """Start the broker in the background, unless one is running."""
    from slm_mesh.cli import cmd_broker

    return outcome.run(lambda out: cmd_broker.start(out, idle_exit), as_json)


@app.command(group=BROKER)
def stop(
    *,
    timeout: Annotated[
        float, cyclopts.Parameter(help="Seconds to wait for the broker to exit.")
    ] = 10.0,
    as_json: Json = False,
) -> int:
    """Ask the broker to stop, and wait until it has."""
    from slm_mesh.cli import cmd_broker

    return outcome.run(lambda out: cmd_broker.stop(out, timeout), as_json)


@app.command(group=BROKER)
def status(*, as_json: Json = False) -> int:
    """Print the broker's status: pid, address, peers, messages, locks, events."""
    from slm_mesh.cli import cmd_broker

    return outcome.run(cmd_broker.status, as_json)


@app.command(group=BROKER)
def clean(
    *,
    dry_run: Annotated[
        bool,
        cyclopts.Parameter(negative=(), show_default=False, help="Only say what would be removed."),
    ] = False,
    as_json: Json = False,
) -> int:
    """Remove the socket, pid, port and token files of a broker that is no longer running.

    Only when it is proven gone: nobody holds the broker's instance lock and connecting to
    the socket is refused. Never stops or kills anything.
    """
    from slm_mesh.cli import cmd_broker

    return outcome.run(lambda out: cmd_broker.clean(out, dry_run), as_json)


@app.command(group=SETUP)
def version(*, as_json: Json = False) -> int:
    """Print the version of slm-mesh and of its wire protocol."""
    from slm_mesh.cli import cmd_broker

    return outcome.run(cmd_broker.version, as_json)


# -- peers and messages ------------------------------------------------------------------


@app.command(group=TALK)
def peers(
    *,
    scope: Annotated[
        Scope,
        cyclopts.Parameter(
            help="machine: everyone; directory: peers working in this directory; "
            "repo: peers in this git repository."
        ),
    ] = "machine",
    as_json: Json = False,
) -> int:
    """List the peers (agent sessions) in the mesh."""
    from slm_mesh.cli import cmd_peers

    return outcome.run(lambda out: cmd_peers.peers(out, scope), as_json)


@app.command(group=TALK)
def send(
    peer: Annotated[str, cyclopts.Parameter(help="Peer name or id.")],
    message: Body,
    /,
    *,
    type_: Annotated[MessageType, cyclopts.Parameter(name="--type", help="Message type.")] = "text",
    reply_to: Annotated[
        int | None, cyclopts.Parameter(help="Id of the message this answers.")
    ] = None,
    as_json: Json = False,
) -> int:
    """Send a message to one peer. It comes from ``cli``, the anonymous shell user."""
    from slm_mesh.cli import cmd_peers

    return outcome.run(lambda out: cmd_peers.send(out, peer, message, type_, reply_to), as_json)


@app.command(group=TALK)
def broadcast(
    message: Body,
    /,
    *,
    type_: Annotated[MessageType, cyclopts.Parameter(name="--type", help="Message type.")] = "text",
    as_json: Json = False,
) -> int:
    """Send a message to every connected peer."""
    from slm_mesh.cli import cmd_peers

    return outcome.run(lambda out: cmd_peers.broadcast(out, message, type_), as_json)


@app.command(group=TALK)
def inbox(
    *,
    name: Annotated[
        str, cyclopts.Parameter(help="Peer name the shell receives messages as.")
    ] = "shell",
    all_: Annotated[
        bool,
        cyclopts.Parameter(
            name="--all", negative=(), show_default=False, help="Include read messages."
        ),
    ] = False,
    peek: Annotated[
        bool, cyclopts.Parameter(negative=(), show_default=False, help="Do not mark messages read.")
    ] = False,
    limit: Annotated[int, cyclopts.Parameter(help="Most messages to show.")] = 20,
    follow: Annotated[
        bool,
        cyclopts.Parameter(
            name=["--follow", "-f"],
            negative=(),
            show_default=False,
            help="Keep printing messages as they come.",
        ),
    ] = False,
    as_json: Json = False,
) -> int:
    """Read the messages sent to the shell.

    The shell joins the mesh as peer NAME (``shell``), so agents reach you by sending to
    it. Between two runs the session waits 30 s (the grace period) with messages queued
    for it; ``--follow`` stays in the mesh, printing messages as they come, until Ctrl-C.
    """
    from slm_mesh.cli import cmd_peers

    return outcome.run(
        lambda out: cmd_peers.inbox(out, name, all_, peek, max(1, limit), follow), as_json
    )


# -- state -----------------------------------------------------------------------------

state_app = cyclopts.App(
    name="state", help="Shared key-value state: namespaced, versioned, JSON values.", group=SHARED
)
app.command(state_app)


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
    ttl: Annotated[float | None, cyclopts.Parameter(help="Seconds until the key expires.")] = None,
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
app.command(lock_app)


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
            help="Seconds the lock lasts if not renewed (default 600); it is renewed while held."
        ),
    ] = None,
    wait: Annotated[
        float, cyclopts.Parameter(help="Seconds to queue for the lock (0: fail at once).")
    ] = 0.0,
    reason: Annotated[str | None, cyclopts.Parameter(help="Why, shown to others.")] = None,
    name: Annotated[str, cyclopts.Parameter(help="Peer name to hold the lock as.")] = "shell",
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
    as_json: Json = False,
) -> int:
    """Release locks held by ``slm-mesh lock acquire`` on this machine.

    The holding process sees the release and exits. Locks of agents are theirs to
    release; they also end with the agent's session or their TTL.
    """
    from slm_mesh.cli import cmd_lock

    return outcome.run(lambda out: cmd_lock.release(out, paths, all_), as_json)


# -- events ----------------------------------------------------------------------------


@app.command(group=SHARED)
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
        cyclopts.Parameter(help="Start after this sequence number (0: the oldest kept)."),
    ] = None,
    limit: Annotated[int, cyclopts.Parameter(help="Most events to print before following.")] = 20,
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


# -- service ---------------------------------------------------------------------------

service_app = cyclopts.App(
    name="service",
    help="Run the broker as a user service (systemd socket activation, or launchd).",
    group=SETUP,
)
app.command(service_app)

PlatformOption = Annotated[
    Platform | None,
    cyclopts.Parameter(help="Service manager (default: launchd on macOS, else systemd)."),
]
DirOption = Annotated[
    Path | None,
    cyclopts.Parameter(
        name="--dir",
        help="Folder for the unit files (default: ~/.config/systemd/user or "
        "~/Library/LaunchAgents; env SLM_MESH_SERVICE_DIR).",
    ),
]


@service_app.command(name="install")
def service_install(
    *,
    platform: PlatformOption = None,
    directory: DirOption = None,
    enable: Annotated[
        bool,
        cyclopts.Parameter(
            help="Enable and start it (systemctl --user / launchctl); --no-enable only "
            "writes the files."
        ),
    ] = True,
    as_json: Json = False,
) -> int:
    """Write the user service for this platform and enable it, saying what it did."""
    from slm_mesh.cli import cmd_service

    return outcome.run(lambda out: cmd_service.install(out, platform, directory, enable), as_json)


@service_app.command(name="uninstall")
def service_uninstall(
    *,
    platform: PlatformOption = None,
    directory: DirOption = None,
    disable: Annotated[
        bool,
        cyclopts.Parameter(help="Stop and disable it first; --no-disable only removes files."),
    ] = True,
    as_json: Json = False,
) -> int:
    """Stop, disable and remove the user service."""
    from slm_mesh.cli import cmd_service

    return outcome.run(
        lambda out: cmd_service.uninstall(out, platform, directory, disable), as_json
    )


@service_app.command(name="status")
def service_status(
    *, platform: PlatformOption = None, directory: DirOption = None, as_json: Json = False
) -> int:
    """Say whether the user service is installed, current, enabled and running."""
    from slm_mesh.cli import cmd_service

    return outcome.run(lambda out: cmd_service.status(out, platform, directory), as_json)


# -- mcp -------------------------------------------------------------------------------


@app.command(group=SETUP)
def mcp() -> int:
    """Run the MCP stdio server (what an agent starts: ``slm-mesh mcp``)."""
    from slm_mesh.mcp_server import main as mcp_main

    return mcp_main()


def _needs(message: str) -> outcome.Command:
    def fail(out: Output) -> int:
        raise outcome.usage(message)

    return fail


def main(argv: list[str] | None = None) -> int:
    """Run the app on ``argv`` (``sys.argv[1:]`` when None); return the exit status."""
    result = app(argv, result_action="return_value")
    return result if isinstance(result, int) else 0
