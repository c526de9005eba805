"""The cyclopts app: every command's arguments and help, wired to its implementation.

Only the app's modules import cyclopts: this one (the app, the broker, peer and message
commands, set-up), :mod:`slm_mesh.cli.app_shared` (state, locks, events) and
:mod:`slm_mesh.cli.options` (the shared option types and help groups). The commands
themselves live in the ``cmd_*`` modules and take plain values, so the fast path in
:mod:`slm_mesh.cli` can run the commonest ones without paying for cyclopts, and man pages
are generated from this same app (:mod:`slm_mesh.cli.manpages`).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Annotated

import cyclopts

from slm_mesh.cli import app_shared, outcome
from slm_mesh.cli.options import (
    AT_LEAST_ONE,
    BROKER,
    POSITIVE,
    SETUP,
    SHARED,
    TALK,
    Body,
    HookAgent,
    InstallAgent,
    Json,
    MessageType,
    Platform,
    Scope,
)
from slm_mesh.config import VERSION, Settings

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
    """Start the broker if none answers (it runs until ``slm-mesh stop``), then print its
    status."""
    from slm_mesh.cli import cmd_broker

    return outcome.run(cmd_broker.bare, as_json)


# -- broker ----------------------------------------------------------------------------


@app.command(group=BROKER)
def broker(
    *,
    idle_exit: Annotated[
        float | None,
        cyclopts.Parameter(
            validator=POSITIVE, help="Exit this many seconds after the last connection closes."
        ),
    ] = None,
    tcp: Annotated[
        bool, cyclopts.Parameter(help="Also listen on TCP 127.0.0.1 (token required).")
    ] = False,
    tcp_host: Annotated[str, cyclopts.Parameter(help="Loopback address for --tcp.")] = "127.0.0.1",
    verbose: Annotated[bool, cyclopts.Parameter(help="Log debug messages.")] = False,
    store: Annotated[
        str | None,
        cyclopts.Parameter(
            help="Share one mesh with the brokers of other machines through this PostgreSQL "
            "database (a postgresql:// URL, without a password: libpq reads it from "
            "~/.pgpass or PGPASSFILE). Default: $SLM_MESH_STORE, else the embedded SQLite "
            "file."
        ),
    ] = None,
) -> int:
    """Run the broker in the foreground."""
    from slm_mesh.broker.main import run_broker, setup_logging

    setup_logging(verbose)
    settings = Settings.from_env()
    if store is not None:
        from slm_mesh.broker.main import store_setting

        chosen = store_setting(settings, store)
        if chosen is None:
            return 2
        settings = chosen
    return run_broker(settings, idle_exit_s=idle_exit, tcp=tcp, tcp_host=tcp_host)


@app.command(group=BROKER)
def start(
    *,
    idle_exit: Annotated[
        float | None,
        cyclopts.Parameter(
            validator=POSITIVE,
            help="Exit this many seconds after the last connection closes "
            "(default: run until ``slm-mesh stop``).",
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
        float,
        cyclopts.Parameter(validator=POSITIVE, help="Seconds to wait for the broker to exit."),
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
            help="mesh: everyone, on every machine; machine: this machine only; "
            "directory: peers working in this directory; repo: peers in this git "
            "repository (its clones on other machines too)."
        ),
    ] = "mesh",
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
        int | None,
        cyclopts.Parameter(validator=AT_LEAST_ONE, help="Id of the message this answers."),
    ] = None,
    as_json: Json = False,
) -> int:
    """Send a message to one peer. It comes from you, the person at the shell (peer id
    ``person``): the agent's answer lands in ``slm-mesh inbox``."""
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
    all_: Annotated[
        bool,
        cyclopts.Parameter(
            name="--all", negative=(), show_default=False, help="Include read messages."
        ),
    ] = False,
    peek: Annotated[
        bool, cyclopts.Parameter(negative=(), show_default=False, help="Do not mark messages read.")
    ] = False,
    limit: Annotated[
        int, cyclopts.Parameter(validator=AT_LEAST_ONE, help="Most messages to show.")
    ] = 20,
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
    """Read the messages sent to you, the person at the shell.

    Agents reach you with ``mesh_send to=person`` (or your name: your login name, or
    ``SLM_MESH_PERSON`` where the broker started; ``slm-mesh status`` shows it), and their
    answers to what you ``send`` come back here. Messages wait in your inbox whether or not
    a shell command runs; ``--follow`` prints them as they come, until Ctrl-C.
    """
    from slm_mesh.cli import cmd_peers

    return outcome.run(lambda out: cmd_peers.inbox(out, all_, peek, limit, follow), as_json)


@app.command(group=TALK)
def top() -> int:
    """Watch the mesh live, full screen, and step in.

    Peers (agent, repository and branch, status, summary, unread messages), locks (holder,
    expiry, waiters), messages and events, as they happen, under a header with the broker
    and its calls/s and messages/min. Keys: Tab moves between panes, ``/`` filters, ``m``
    messages the selected peer (``M``: everyone), ``r`` releases the selected lock after
    asking (its holder is told by a message, the event log records that you released it),
    ``i`` shows a peer's details, ``?`` lists the keys, ``q`` quits. Waits for a broker
    when none is running, and comes back when it restarts. ``NO_COLOR`` is honoured.
    """
    from slm_mesh.cli import cmd_top

    return outcome.run(cmd_top.top, False)


# -- state, locks and events (cli.app_shared) -------------------------------------------

app.command(app_shared.state_app)
app.command(app_shared.lock_app)
app.command(app_shared.events, group=SHARED)


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
    store: Annotated[
        str | None,
        cyclopts.Parameter(
            help="Run the broker on this shared PostgreSQL store (a postgresql:// URL, "
            "written into the units as SLM_MESH_STORE; never a password: libpq reads it "
            "from ~/.pgpass or PGPASSFILE)."
        ),
    ] = None,
    as_json: Json = False,
) -> int:
    """Write the user service for this platform and enable it, saying what it did."""
    from slm_mesh.cli import cmd_service

    return outcome.run(
        lambda out: cmd_service.install(out, platform, directory, enable, store), as_json
    )


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


# -- agents: mcp and hooks ---------------------------------------------------------------


@app.command(group=SETUP)
def mcp() -> int:
    """Run the MCP stdio server (what an agent starts: ``slm-mesh mcp``)."""
    from slm_mesh.mcp_server import main as mcp_main

    return mcp_main()


@app.command(group=SETUP)
def hook(
    event: Annotated[
        str,
        cyclopts.Parameter(
            help="The agent's name for the event: SessionStart, UserPromptSubmit, PreToolUse, "
            "PostToolUse, Stop, SessionEnd (Claude Code, Codex); BeforeAgent, BeforeTool, "
            "AfterTool (Gemini CLI); sessionStart, preToolUse, postToolUse, afterFileEdit, "
            "sessionEnd (Cursor)."
        ),
    ],
    /,
    *,
    agent: Annotated[
        HookAgent,
        InstallAgent,
        cyclopts.Parameter(help="Whose hook format stdin and stdout are in."),
    ] = "claude",
) -> int:
    """Run one lifecycle hook of an agent: its hook JSON on stdin, the answer on stdout.

    What ``slm-mesh install AGENT`` writes into the agent's hooks. At session start it
    briefs the session (who else works here, their locks, unread messages) and starts the
    broker if none runs; at each prompt and after each tool call it hands over the messages
    that arrived; before an edit it refuses a file another live session holds; after an
    edit it records it (and with ``SLM_MESH_AUTOLOCK=1`` locks it for 15 min); Claude
    Code's Stop hook waits for a message and wakes the idle session; at session end the
    session leaves at once. It never stands in the agent's way: without a broker, or on
    any error, it exits 0 and prints nothing (``<data dir>/hooks.log`` says why).
    """
    from slm_mesh.hooks.main import main as hook_main

    return hook_main([event, "--agent", agent])


Project = Annotated[
    bool,
    cyclopts.Parameter(
        negative=(),
        show_default=False,
        help="In this repository's files (.claude/settings.local.json and .mcp.json, "
        ".codex/, .gemini/, .cursor/) rather than your own.",
    ),
]
User = Annotated[
    bool,
    cyclopts.Parameter(
        negative=(), show_default=False, help="In your own files (the default, e.g. ~/.claude)."
    ),
]
DryRun = Annotated[
    bool,
    cyclopts.Parameter(negative=(), show_default=False, help="Write nothing; print the diff."),
]


@app.command(group=SETUP)
def install(
    agent: Annotated[
        InstallAgent | None,
        cyclopts.Parameter(help="claude, codex, gemini, cursor, or git (a pre-commit hook)."),
    ] = None,
    /,
    *,
    project: Project = False,
    user: User = False,
    dry_run: DryRun = False,
    status: Annotated[
        bool,
        cyclopts.Parameter(
            negative=(),
            show_default=False,
            help="Say, for every agent, where slm-mesh is installed and if it is current.",
        ),
    ] = False,
    as_json: Json = False,
) -> int:
    """Add the MCP server and the hooks to an agent's own configuration.

    The files already there are merged into: every other setting and hook is kept, the old
    file is saved as ``<name>.slm-mesh.bak``, and installing twice is the same as once. A
    file that can't be parsed is refused (line and column), with nothing written. The hooks
    run ``slm-mesh hook EVENT`` (see ``slm-mesh hook --help``) with this installation's
    absolute paths. ``git`` installs a pre-commit hook in the current repository that
    refuses a commit of files another live session holds (an existing pre-commit hook is
    kept and runs first). When the agent's other scope (``--user``, ``--project``) has the
    hooks too, it warns on stderr: the agent runs the hooks of both, each twice (Claude
    Code runs a command that is the same in both once); ``--status`` flags it.
    """
    from slm_mesh.cli import cmd_install

    if status:
        return outcome.run(cmd_install.status, as_json)
    if agent is None:
        return outcome.run(cmd_install.no_agent, as_json)
    return outcome.run(
        lambda out: cmd_install.change(out, agent, True, project, user, dry_run), as_json
    )


@app.command(group=SETUP)
def uninstall(
    agent: Annotated[
        InstallAgent, cyclopts.Parameter(help="claude, codex, gemini, cursor, or git.")
    ],
    /,
    *,
    project: Project = False,
    user: User = False,
    dry_run: DryRun = False,
    as_json: Json = False,
) -> int:
    """Take out of an agent's configuration what ``slm-mesh install`` put there, and only
    that (a ``git`` pre-commit hook that was there before is put back)."""
    from slm_mesh.cli import cmd_install

    return outcome.run(
        lambda out: cmd_install.change(out, agent, False, project, user, dry_run), as_json
    )


def main(argv: list[str] | None = None) -> int:
    """Run the app on ``argv`` (``sys.argv[1:]`` when None); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    unknown = unknown_command(args)
    if unknown is not None:
        print(f"slm-mesh: error: {unknown}", file=sys.stderr)
        return outcome.USAGE
    try:
        result = app(args, result_action="return_value", print_error=False, exit_on_error=False)
    except cyclopts.CycloptsError as error:  # a usage error, shown as cyclopts shows it...
        leftover = _leftover(error)
        if leftover is not None:  # ...but for arguments left over ("Unused Tokens")
            print(f"slm-mesh: error: {leftover}", file=sys.stderr)
        else:
            (error.console or app.error_console).print(cyclopts.CycloptsPanel(error))
        return outcome.USAGE
    return result if isinstance(result, int) else 0


def _leftover(error: cyclopts.CycloptsError) -> str | None:
    """What to say of arguments left over after a command's last one (a message typed
    without quotes, most likely); None for any other usage error."""
    if not isinstance(error, cyclopts.UnusedCliTokensError) or not error.unused_tokens:
        return None
    command = " ".join(["slm-mesh", *(error.command_chain or ())])
    extra = ", ".join(repr(token) for token in error.unused_tokens)
    return (
        f"`{command}` takes no argument {extra} (left over after its last one): quote an "
        f'argument that holds spaces ("like this"); see `{command} --help`'
    )


def unknown_command(args: list[str]) -> str | None:
    """What is wrong when ``args`` names a command (or a subcommand of ``state``, ``lock``
    or ``service``) that does not exist, with the nearest one; None when they don't."""
    words = [a for a in args if a != "--json"]
    if not words or words[0].startswith("-"):
        return None
    names = _commands(app)
    if words[0] not in names:
        return _unknown(words[0], names, "slm-mesh", "command")
    if words[0] in _GROUPS and len(words) > 1 and not words[1].startswith("-"):
        group = words[0]
        sub_names = _commands(app[group])
        if words[1] not in sub_names:
            return _unknown(words[1], sub_names, f"slm-mesh {group}", f"{group} command")
    return None


def _unknown(word: str, names: set[str], prefix: str, what: str) -> str:
    near = difflib.get_close_matches(word, sorted(names), n=1)
    hint = f"; did you mean `{prefix} {near[0]}`?" if near else ""
    return f"unknown {what} {word!r}{hint} (see `{prefix} --help`)"


_GROUPS = ("state", "lock", "service")


def _commands(group: cyclopts.App) -> set[str]:
    return {name for name in group if not name.startswith("-")}
