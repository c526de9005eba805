"""Every method of the wire contract (ARCHITECTURE.md §4) with its params.

Size limits that a user may override (message body, summary, state key and value) are
checked by the mesh against :class:`slm_mesh.config.Limits`; the structural bounds here
(names, paths, list lengths) are fixed.
"""

from __future__ import annotations

from slm_mesh.protocol.methods import Method, Param

MAX_NAME_CHARS = 64
MAX_PATH_CHARS = 4_096
MAX_BRANCH_CHARS = 256  # (the workspace readers cut a longer name to it)
MAX_LIST_ITEMS = 1_000
MAX_TTL_S = 86_400.0
MAX_WAIT_S = 3_600.0
MAX_MESSAGE_WAIT_S = 86_400.0

MESSAGE_TYPES = ("text", "json", "command", "alert")
SCOPES = ("mesh", "machine", "directory", "repo")
STATUSES = ("active", "busy", "idle")
LOCK_MODES = ("exclusive", "shared")
EVENT_TYPES = (
    "peer_joined",
    "peer_left",
    "peer_updated",
    "message_sent",
    "state_changed",
    "state_deleted",
    "lock_acquired",
    "lock_released",
    "lock_expired",
    "file_edited",
)
LIFETIMES = ("connection", "process")
# Where a session is: registered with it, and carried by peer_updated when it changed.
WORKSPACE_FIELDS = ("cwd", "git_root", "git_branch", "repo")

_namespace = Param("namespace", "string", "state namespace", default="default", max_chars=256)
_key = Param("key", "string", "state key (≤ 256 bytes)", required=True)
_if_version = Param(
    "if_version",
    "integer",
    "compare-and-set: current version must match (0: must not exist)",
    minimum=0,
)
_path = Param(
    "path",
    "string",
    "file path or glob, relative to the session's cwd",
    required=True,
    max_chars=MAX_PATH_CHARS,
)
_cwd = Param(
    "cwd", "string", "directory that relative paths are taken against", max_chars=MAX_PATH_CHARS
)
_agent_session = Param(
    "agent_session",
    "string",
    "the agent's own session id (e.g. Claude Code's session_id), remembered once linked",
    max_chars=256,
)
_max_chars = Param(
    "max_chars",
    "integer",
    "most characters of message bodies to return (at least one message is returned)",
    minimum=1,
)
_types = Param(
    "types", "string[]", "event types to include ('*' for all)", max_items=64, max_chars=64
)

METHOD_LIST: tuple[Method, ...] = (
    Method(
        "mesh.hello",
        "Open a session: authenticate (TCP) and learn versions.",
        (
            Param(
                "token", "string", "contents of <data dir>/broker.token (TCP only)", max_chars=256
            ),
            Param("client", "string", "client name and version, for logs", max_chars=256),
        ),
        "{version, protocol, session}",
    ),
    Method("mesh.ping", "Liveness check.", (), '"pong"'),
    Method(
        "mesh.status",
        "Broker pid, version, uptime, listeners, counts, db size, the store, and activity: "
        "calls answered and messages sent since the start and in each of the last 15 minutes.",
        (),
        "{pid, version, uptime_s, listeners, counts, db_bytes, store, activity}",
    ),
    Method("mesh.shutdown", "Stop the broker (same uid only).", (), "{}"),
    Method(
        "peer.register",
        "Join the mesh as a peer (or resume one within its grace).",
        (
            Param(
                "name", "string", "wanted name; a taken one gets a suffix", max_chars=MAX_NAME_CHARS
            ),
            Param("agent", "string", "agent type, e.g. claude-code", max_chars=MAX_NAME_CHARS),
            Param("pid", "integer", "the agent's pid", minimum=0),
            Param("cwd", "string", "working directory", required=True, max_chars=MAX_PATH_CHARS),
            Param("git_root", "string", "git repository root", max_chars=MAX_PATH_CHARS),
            Param("git_branch", "string", "git branch", max_chars=MAX_BRANCH_CHARS),
            Param(
                "repo",
                "string",
                "the repository's identity: its normalised remote URL, else its root commit "
                "(without it, the broker works it out from git_root)",
                max_chars=MAX_PATH_CHARS,
            ),
            Param("summary", "string", "what this session is working on"),
            Param("resume", "string", "resume_token of an earlier session", max_chars=128),
            Param(
                "lifetime",
                "string",
                "connection: the session lives while this connection does (then its grace); "
                "process: it lives exactly as long as process pid, and this connection is "
                "only attached to it (the live session of pid, if there is one, is attached "
                "to instead of a new one)",
                default="connection",
                enum=LIFETIMES,
            ),
            _agent_session,
        ),
        "{peer_id, name, resume_token, resumed, attached, last_seq}",
    ),
    Method(
        "peer.attach",
        "Act as the live session of an agent process (or agent session id) on this "
        "connection, without carrying it: closing this connection does not end it.",
        (
            Param("pid", "integer", "the agent's pid", minimum=1),
            _agent_session,
        ),
        "peer",
    ),
    Method(
        "peer.update",
        "Change this peer's summary, status or git branch.",
        (
            Param("summary", "string", "what this session is working on"),
            Param("status", "string", "availability", enum=STATUSES),
            Param(
                "git_branch",
                "string",
                "the branch its repository is on now (written, with peer_updated, only when "
                "it changed)",
                max_chars=MAX_BRANCH_CHARS,
            ),
        ),
        "peer",
        session=True,
    ),
    Method(
        "peer.list",
        "List peers.",
        (
            Param(
                "scope",
                "string",
                "which peers: every machine, this one, this directory or this repository",
                default="mesh",
                enum=SCOPES,
            ),
            Param("cwd", "string", "directory for scope=directory", max_chars=MAX_PATH_CHARS),
            Param("git_root", "string", "repository for scope=repo", max_chars=MAX_PATH_CHARS),
            Param("repo", "string", "repository identity for scope=repo", max_chars=MAX_PATH_CHARS),
            Param("include_self", "boolean", "include the calling peer", default=False),
            Param("include_away", "boolean", "include peers in their grace period", default=True),
            Param(
                "include_unread",
                "boolean",
                "add each peer's count of unread messages (unread)",
                default=False,
            ),
        ),
        "{peers}",
    ),
    Method("peer.whoami", "This connection's peer.", (), "peer", session=True),
    Method("peer.unregister", "Leave the mesh now (releases locks).", (), "{}", session=True),
    Method(
        "message.send",
        "Send a message to a peer (id or name) or to all.",
        (
            Param("to", "string", 'peer id, peer name or "all"', required=True, max_chars=128),
            Param("body", "string", "message text", required=True),
            Param("type", "string", "message type", default="text", enum=MESSAGE_TYPES),
            Param("reply_to", "integer", "id of the message this answers", minimum=1),
            Param("scope", "string", 'limit "all" to peers in this scope', enum=SCOPES),
        ),
        "{ids, recipients}",
    ),
    Method(
        "message.inbox",
        "Read this peer's messages (without a peer: the person's).",
        (
            Param("unread_only", "boolean", "only unread messages", default=True),
            Param("from", "string", "only from this peer (id or name)", max_chars=128),
            Param(
                "limit",
                "integer",
                "most messages to return",
                default=20,
                minimum=1,
                maximum=500,
                cap=True,
            ),
            Param("mark_read", "boolean", "mark returned messages read", default=True),
            _max_chars,
        ),
        "{messages, unread_left}",
    ),
    Method(
        "message.wait",
        "Wait until this session has unread messages, then return them. One waiter per "
        "session: a newer one ends the older (reason replaced).",
        (
            Param(
                "timeout",
                "number",
                "seconds to wait at most",
                default=MAX_MESSAGE_WAIT_S,
                minimum=0,
                maximum=MAX_MESSAGE_WAIT_S,
                cap=True,
            ),
            Param(
                "limit",
                "integer",
                "most messages to return",
                default=20,
                minimum=1,
                maximum=500,
                cap=True,
            ),
            Param("mark_read", "boolean", "mark returned messages read", default=True),
            _max_chars,
        ),
        "{messages, unread_left, reason: message|replaced|timeout|gone}",
        session=True,
    ),
    Method(
        "message.ack",
        "Mark messages read (without a peer: the person's).",
        (Param("ids", "integer[]", "message ids", required=True, max_items=MAX_LIST_ITEMS),),
        "{acked, ids}: ids are those this call marked (unread until then)",
    ),
    Method(
        "message.subscribe",
        "Without a peer: push the person's messages to this connection as they come.",
        (),
        "{person, peer_id}",
    ),
    Method(
        "state.get",
        "Read a key.",
        (_key, _namespace),
        "{key, value, version, updated_by, updated_at} or null",
    ),
    Method(
        "state.set",
        "Write a key (optionally compare-and-set, optionally expiring).",
        (
            _key,
            Param("value", "any", "any JSON value (≤ 64 KiB encoded)", required=True),
            _namespace,
            _if_version,
            Param(
                "ttl", "number", "seconds until the key expires", minimum=0.001, maximum=MAX_TTL_S
            ),
        ),
        "{version}",
    ),
    Method("state.delete", "Delete a key.", (_key, _namespace, _if_version), "{deleted}"),
    Method(
        "state.list",
        "List keys of a namespace, a page at a time (at most limit keys and ~512 KiB).",
        (
            _namespace,
            Param("prefix", "string", "only keys starting with this", max_chars=256),
            Param(
                "after",
                "string",
                "only keys after this one (the previous page's next_after)",
                max_chars=256,
            ),
            Param(
                "limit",
                "integer",
                "most keys to return",
                default=100,
                minimum=1,
                maximum=1000,
                cap=True,
            ),
        ),
        "{entries, next_after}",
    ),
    Method(
        "lock.acquire",
        "Take an advisory lock on a path or glob.",
        (
            _path,
            Param("mode", "string", "lock mode", default="exclusive", enum=LOCK_MODES),
            Param(
                "ttl", "number", "seconds until the lock expires", minimum=0.001, maximum=MAX_TTL_S
            ),
            Param("reason", "string", "why (shown to others)", max_chars=500),
            Param(
                "wait",
                "number",
                "seconds to queue for the lock (0: fail at once)",
                default=0,
                minimum=0,
                maximum=MAX_WAIT_S,
            ),
        ),
        "{granted, lock}",
        session=True,
    ),
    Method(
        "lock.release",
        "Release a lock (or all of this session's). Needs a session, except with force: "
        "then the lock of another session (holder) is released, the event records by whom, "
        "and the holder is told by a message.",
        (
            Param("path", "string", "path or glob as acquired", max_chars=MAX_PATH_CHARS),
            Param("all", "boolean", "release every lock of this session", default=False),
            Param(
                "holder",
                "string",
                "with force: the session holding the lock (peer id or name)",
                max_chars=128,
            ),
            Param(
                "force",
                "boolean",
                "release holder's lock on path, though this connection does not hold it",
                default=False,
            ),
            Param("reason", "string", "with force: why, told to the holder", max_chars=500),
        ),
        "{released, holder?, message_id?}",
    ),
    Method(
        "lock.renew",
        "Extend a held lock.",
        (
            _path,
            Param("ttl", "number", "new seconds from now", minimum=0.001, maximum=MAX_TTL_S),
        ),
        "{lock}",
        session=True,
    ),
    Method(
        "lock.list",
        "List held locks, each with how many queued requests wait on it (waiters).",
        (Param("prefix", "string", "only paths starting with this", max_chars=MAX_PATH_CHARS),),
        "{locks}",
    ),
    Method(
        "lock.check",
        "Which of these paths are locked by someone else (read-only).",
        (
            Param(
                "paths",
                "string[]",
                "paths to check",
                required=True,
                max_items=MAX_LIST_ITEMS,
                max_chars=MAX_PATH_CHARS,
            ),
            _cwd,
            Param(
                "mode",
                "string",
                "check as a lock of this mode would: exclusive (any holder conflicts) or "
                "shared (only exclusive holders do)",
                default="exclusive",
                enum=LOCK_MODES,
            ),
            Param(
                "edited_within",
                "number",
                "also list paths another session edited (file.edited) this many seconds back, "
                "in this or any clone of the repository, on any machine",
                minimum=0,
                maximum=MAX_TTL_S,
            ),
        ),
        "{conflicts: [{path, holders}], edits: [{path, peer_id, name, host, at}]}",
    ),
    Method(
        "file.edited",
        "Record that this session edited these files (event file_edited) and renew its "
        "own locks on them; with lock_ttl, lock each unlocked one exclusively.",
        (
            Param(
                "paths",
                "string[]",
                "the edited files",
                required=True,
                max_items=MAX_LIST_ITEMS,
                max_chars=MAX_PATH_CHARS,
            ),
            _cwd,
            Param(
                "lock_ttl",
                "number",
                "take an exclusive lock of this many seconds on each edited file not locked",
                minimum=0.001,
                maximum=MAX_TTL_S,
            ),
        ),
        "{renewed, locked}",
        session=True,
    ),
    Method(
        "event.read",
        "Read the event log.",
        (
            Param("after", "integer", "return events with seq above this", default=0, minimum=0),
            _types,
            Param(
                "limit",
                "integer",
                "most events to return",
                default=50,
                minimum=1,
                maximum=1000,
                cap=True,
            ),
        ),
        "{events, last_seq}",
    ),
    Method(
        "event.subscribe",
        "Replay events after a cursor, then stream them.",
        (
            _types,
            Param("after", "integer", "replay events with seq above this", minimum=0),
        ),
        "{last_seq}",
    ),
    Method("event.unsubscribe", "Stop streaming events.", (), "{}"),
    Method("rpc.discover", "This API as an OpenRPC document.", (), "OpenRPC document"),
)

METHODS: dict[str, Method] = {m.name: m for m in METHOD_LIST}
