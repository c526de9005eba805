"""``slm-mesh hook EVENT [--agent claude|codex|gemini|cursor]``: one hook call, end to end.

Read the agent's JSON on stdin, make one batch of calls to the broker as the agent's
session, answer in the agent's format (see :mod:`slm_mesh.hooks.formats`). Anything that
goes wrong ends in exit 0 with nothing on stdout, and a line in ``<data dir>/hooks.log``
(rule 1 of :mod:`slm_mesh.hooks`).
"""

import posix
import sys
import time

from slm_mesh import leanjson, pids
from slm_mesh.hooks import formats, process
from slm_mesh.hooks.connection import (
    Broker,
    CallError,
    Unreachable,
    data_dir,
    restart_budget,
    timeout_s,
)
from slm_mesh.hooks.formats import NOTHING, Format, Hook, Reply
from slm_mesh.hooks.wake import WAKE_IDLE_ENV, WAKE_IDLE_S

MAX_LOG_BYTES = 1 << 20  # hooks.log, then it is hooks.log.1
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from slm_mesh.hooks.delivery import Shown

USAGE = "usage: slm-mesh hook EVENT [--agent claude|codex|gemini|cursor|git]"
MAX_INPUT_BYTES = 64 * 1024 * 1024
PRINT_MODE = "sdk-cli"  # CLAUDE_CODE_ENTRYPOINT of `claude -p`
AUTOLOCK_ENV = "SLM_MESH_AUTOLOCK"
AUTOLOCK_TTL_S = 15 * 60.0
EDIT_WARNING_S = 10 * 60.0
START_BROKER_S = 10.0


# Not the CLI's usual 2: to Claude Code, Codex and Gemini CLI a hook's exit 2 blocks what
# the agent was doing, and a command line gone wrong must not stop every edit.
USAGE_STATUS = 1


class Usage(Exception):
    """The command line is wrong (exit :data:`USAGE_STATUS`)."""


def parse_args(argv: list[str]) -> tuple[str, Format | None]:
    """The event and the agent's format (None for git's pre-commit)."""
    args = list(argv)
    agent = "claude"
    if "--agent" in args:
        i = args.index("--agent")
        if i + 1 >= len(args):
            raise Usage("--agent needs a value")
        agent = args[i + 1]
        del args[i : i + 2]
    if agent == "git" and args == ["pre-commit"]:
        return "pre-commit", None
    if len(args) != 1 or agent not in formats.FORMATS:
        raise Usage(f"expected one EVENT and a known --agent, got {argv!r}")
    return args[0], formats.FORMATS[agent]


def run(argv: list[str]) -> "NoReturn":
    """Run one hook and end the process at once with its status (what the agents' hook
    entries and ``slm-mesh hook`` do).

    Everything the hook says is written when :func:`main` returns (``posix.write``: no
    buffer holds any of it) and its sockets are closed, so the interpreter's teardown,
    freeing every object and module of a process about to end, is skipped: here it costs
    about a third of what the hook adds to an empty Python (``bench/hooks.py``)."""
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):  # (nothing writes there; should anything)
        try:  # noqa: SIM105 (contextlib is one more module to import)
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    posix._exit(code)


def main(argv: list[str]) -> int:
    """Run one hook; the exit status for the agent."""
    try:
        event, fmt = parse_args(argv)
    except Usage as exc:
        _write(2, f"{USAGE}\n{exc}\n".encode())
        return USAGE_STATUS
    try:
        if fmt is None:
            from slm_mesh.hooks.git_commit import check

            staged = _read_stdin()
            restart_budget()
            code, err = check(staged, time.time())
            reply = Reply(b"", err, code)
        else:
            reply = handle(event, fmt, _read_stdin())
    except Exception as exc:  # rule 1: whatever it is, the agent goes on
        log(f"{fmt.agent if fmt else 'git'} {event}: {type(exc).__name__}: {exc}")
        return 0
    if reply.stdout:
        _write(1, reply.stdout)
    if reply.stderr:
        _write(2, reply.stderr)
    return reply.code


def handle(event: str, fmt: Format, raw: bytes) -> Reply:
    """The reply to one hook call (raises on broker trouble; :func:`main` fails open)."""
    data = leanjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the hook input is not a JSON object")
    hook = fmt.parse(event, data)
    if hook is None:
        return NOTHING
    if hook.cwd is None or not hook.cwd.startswith("/"):
        hook.cwd = posix.getcwd()
    runner = _RUNNERS[hook.kind]
    restart_budget()  # the broker's budget: not spent reading what the agent wrote
    return runner(fmt, hook)


# -- the events ------------------------------------------------------------------------


_workspaces: "dict[str, dict[str, str]]" = {}


def _workspace(hook: Hook) -> "dict[str, str]":
    """The hook's cwd with its git root and branch (read once per process)."""
    cwd = hook.cwd or "/"
    if cwd not in _workspaces:
        _workspaces[cwd] = process.workspace(cwd)
    return _workspaces[cwd]


def _registration(fmt: Format, hook: Hook) -> "tuple[str, dict[str, Any]]":
    """``peer.register`` as the agent's session: its live one, or one tied to its process."""
    params: dict[str, Any] = {
        "agent": fmt.agent,
        "pid": process.agent_pid(),
        "lifetime": "process",
        **_workspace(hook),
    }
    if hook.session_id:
        params["agent_session"] = hook.session_id[:256]
    name = (process.getenv("SLM_MESH_NAME") or "").strip()
    if name:
        params["name"] = name[:64]
    return "peer.register", params


def _connect(*, start_broker: bool = False) -> Broker:
    try:
        return Broker.connect(timeout_s())
    except Unreachable:
        if not start_broker:
            raise
    # Session start only (rule 1): the slow path, with the client's own start-up logic.
    from slm_mesh.client.autostart import ensure_broker_sync
    from slm_mesh.config import Settings

    ensure_broker_sync(Settings.from_env(), timeout_s=START_BROKER_S)
    restart_budget()
    return Broker.connect(timeout_s())


def _calls(
    fmt: Format,
    hook: Hook,
    calls: "list[tuple[str, dict[str, Any]]]",
    *,
    start_broker: bool = False,
    timeout: float = -1.0,
    still_wanted: "Callable[[], bool] | None" = None,
) -> "tuple[Broker, list[Any]]":
    broker = _connect(start_broker=start_broker)
    try:
        results = broker.batch(
            [_registration(fmt, hook), *calls],
            timeout_s() if timeout == -1.0 else timeout,
            still_wanted,
        )
    except BaseException:
        broker.close()
        raise
    if isinstance(results[0], CallError):
        broker.close()
        raise results[0]
    return broker, results


def _result(value: "Any") -> "Any":
    if isinstance(value, CallError):
        raise value
    return value


def _inbox_call(mark_read: bool = False) -> "tuple[str, dict[str, Any]]":
    from slm_mesh.hooks.delivery import BODY_CHARS, PAGE

    return "message.inbox", {"limit": PAGE, "max_chars": BODY_CHARS, "mark_read": mark_read}


def _hand_over(
    broker: Broker, answer: "dict[str, Any]", render: "Callable[[list[Any], int], Shown]"
) -> str | None:
    """The messages of ``answer`` (``message.inbox``'s or ``message.wait``'s, read without
    marking them) as ``render`` shows them, then marked read with one ``message.ack``.
    Only those this hook was the first to mark (the ack's ``ids``) are shown: hooks of
    one session run at once (after parallel tool calls), and each message is shown once."""
    messages = answer.get("messages") or []
    unread = int(answer.get("unread_left") or 0)
    shown = render(messages, unread)
    if shown.text is None or not shown.ids:
        return shown.text
    (ack,) = broker.batch([("message.ack", {"ids": shown.ids})], timeout_s())
    marked = _result(ack).get("ids")
    # (A broker started before acks named their ids: all of them, as it then was.)
    mine = set(marked) if isinstance(marked, list) else set(shown.ids)
    if len(mine) == len(shown.ids):
        return shown.text
    taken = len(shown.ids) - len(mine)  # by another hook meanwhile: read, so not counted
    return render([m for m in messages if m.get("id") in mine], unread - taken).text


def _deliver(broker: Broker, inbox: "dict[str, Any]", fmt: Format, hook: Hook) -> Reply:
    """New messages into the agent's context, marked read (see :func:`_hand_over`)."""
    from slm_mesh.hooks.delivery import turn_text

    text = _hand_over(broker, inbox, turn_text)
    return NOTHING if text is None else fmt.context(hook, text)


def _start(fmt: Format, hook: Hook) -> Reply:
    from slm_mesh.hooks.briefing import briefing

    me = dict(_workspace(hook))
    prefix = (me.get("git_root") or hook.cwd or "/").rstrip("/") + "/"
    broker, (registered, peers, locks, inbox) = _calls(
        fmt,
        hook,
        [
            ("peer.list", {"scope": "machine", "include_self": False}),
            ("lock.list", {"prefix": prefix}),
            ("message.inbox", {"limit": 5, "mark_read": False}),
        ],
        start_broker=True,
    )
    broker.close()
    me.update(peer_id=registered["peer_id"], name=registered["name"])
    text = briefing(me, _result(peers)["peers"], _result(locks)["locks"], _result(inbox))
    return fmt.context(hook, text) if text else NOTHING


def _prompt(fmt: Format, hook: Hook) -> Reply:
    broker, (_, inbox) = _calls(fmt, hook, [_inbox_call()])
    try:
        return _deliver(broker, _result(inbox), fmt, hook)
    finally:
        broker.close()


def _pre_edit(fmt: Format, hook: Hook) -> Reply:
    from slm_mesh.hooks.guard import DENY, decide

    check: dict[str, Any] = {"paths": hook.paths, "cwd": hook.cwd, "mode": "shared"}
    check["edited_within"] = EDIT_WARNING_S
    broker, (_, result) = _calls(fmt, hook, [("lock.check", check)])
    broker.close()
    verdict = decide(_result(result), hook.cwd)
    if verdict is None:
        return NOTHING
    kind, text = verdict
    return fmt.deny(hook, text) if kind == DENY else fmt.warn(hook, text)


def _post_tool(fmt: Format, hook: Hook) -> Reply:
    calls = []
    if hook.paths:
        edited: dict[str, Any] = {"paths": hook.paths, "cwd": hook.cwd}
        if (process.getenv(AUTOLOCK_ENV) or "") not in ("", "0"):
            edited["lock_ttl"] = AUTOLOCK_TTL_S
        calls.append(("file.edited", edited))
    calls.append(_inbox_call())
    broker, results = _calls(fmt, hook, calls)
    try:
        if hook.paths and isinstance(results[1], CallError):
            log(f"{fmt.agent} {hook.event}: file.edited: {results[1]}")
        return _deliver(broker, _result(results[-1]), fmt, hook)
    finally:
        broker.close()


def wake_idle_s() -> float:
    """How long the Stop hook waits for a message: ``SLM_MESH_WAKE_IDLE_S``, never past
    :data:`WAKE_IDLE_S` (Claude Code kills the hook at the timeout install wrote for it,
    a minute later), and not at all under ``claude -p``, which waits for its background
    hooks before it exits."""
    if process.getenv("CLAUDE_CODE_ENTRYPOINT") == PRINT_MODE:
        return 0.0
    try:
        idle = float(process.getenv(WAKE_IDLE_ENV) or WAKE_IDLE_S)
    except ValueError:
        return WAKE_IDLE_S
    return min(max(idle, 0.0), WAKE_IDLE_S) if idle == idle else WAKE_IDLE_S  # (NaN)


def _stop_wait(fmt: Format, hook: Hook) -> Reply:
    """Claude's Stop with ``asyncRewake``: wait, in the background, for a message."""
    from slm_mesh.hooks.delivery import BODY_CHARS, PAGE, wake_text

    idle = wake_idle_s()
    wait = {"timeout": idle, "limit": PAGE, "max_chars": BODY_CHARS, "mark_read": False}
    agent = process.agent_pid()
    broker, (_, got) = _calls(
        fmt,
        hook,
        [("message.wait", wait)],
        timeout=idle + timeout_s(),  # the broker ends the wait at idle: a hung one, we do
        still_wanted=lambda: pids.alive(agent),
    )
    restart_budget()  # (the wait took what it took; the hand-over gets the whole budget)
    try:
        answer = _result(got)
        if answer.get("reason") != "message":
            return NOTHING  # replaced by a newer Stop, the session ended, or idle too long
        text = _hand_over(broker, answer, wake_text)
        return NOTHING if text is None else fmt.wake(hook, text)
    finally:
        broker.close()


def _stop_check(fmt: Format, hook: Hook) -> Reply:
    """Codex's Stop: messages that arrived during the turn continue it."""
    from slm_mesh.hooks.delivery import wake_text

    broker, (_, inbox) = _calls(fmt, hook, [_inbox_call()])
    try:
        text = _hand_over(broker, _result(inbox), wake_text)
        return NOTHING if text is None else fmt.go_on(hook, text)
    finally:
        broker.close()


def _end(fmt: Format, hook: Hook) -> Reply:
    """The agent exits: leave at once, without the grace period."""
    attach: dict[str, Any] = {"pid": process.agent_pid()}
    if hook.session_id:
        attach["agent_session"] = hook.session_id[:256]
    broker = _connect()
    try:
        attached, _left = broker.batch(
            [("peer.attach", attach), ("peer.unregister", {})], timeout_s()
        )
    finally:
        broker.close()
    if isinstance(attached, CallError) and attached.code != -32002:  # not in the mesh: fine
        raise attached
    return NOTHING


_RUNNERS = {
    formats.START: _start,
    formats.PROMPT: _prompt,
    formats.PRE_EDIT: _pre_edit,
    formats.POST_TOOL: _post_tool,
    formats.STOP_WAIT: _stop_wait,
    formats.STOP_CHECK: _stop_check,
    formats.END: _end,
}


# -- input, output, log ----------------------------------------------------------------


def _read_stdin() -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = posix.read(0, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_INPUT_BYTES:
            raise ValueError(f"the hook input is over {MAX_INPUT_BYTES} bytes")
        chunks.append(chunk)


def _write(fd: int, data: bytes) -> None:
    while data:
        written = posix.write(fd, data)
        data = data[written:]


def log(line: str) -> None:
    """One line in ``<data dir>/hooks.log`` (best effort: a hook never fails on its log).
    Past :data:`MAX_LOG_BYTES` the log becomes ``hooks.log.1`` (the one before is dropped):
    with no broker every hook of every agent writes a line, for as long as none runs."""
    path = data_dir().rstrip("/") + "/hooks.log"
    try:
        if posix.stat(path).st_size > MAX_LOG_BYTES:
            posix.rename(path, path + ".1")
    except OSError:
        pass  # none yet (or another hook moved it first)
    try:
        fd = posix.open(
            path,
            posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC,
            0o600,
        )
    except OSError:
        return
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        posix.write(fd, f"{stamp} pid {posix.getpid()} {line}\n".encode("utf-8", "replace"))
    except OSError:
        pass
    finally:
        posix.close(fd)
