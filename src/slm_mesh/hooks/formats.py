"""Each agent's hook format: what its hook JSON says, and how to answer it.

A format turns the agent's event and stdin JSON into a :class:`Hook` (what happened, in
the mesh's terms) and a mesh answer into the agent's own stdout, stderr and exit code
(:class:`Reply`). Documented samples of each format are the fixtures of
``tests/hooks/test_formats.py``.

- Claude Code: ``hookSpecificOutput.additionalContext``; an edit refused with
  ``permissionDecision: "deny"``; an idle session woken by the Stop hook (``asyncRewake``)
  exiting 2 with the message on stderr.
- Codex: the same shapes as Claude Code; edits come as ``apply_patch`` with the paths in the
  patch text; at Stop, unread messages continue the turn (``decision: "block"``).
- Gemini CLI: ``hookSpecificOutput.additionalContext``; ``decision: "deny"`` for an edit.
- Cursor: ``additional_context``; ``permission: "deny"`` for an edit.
"""

from slm_mesh import leanjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What happened, in the mesh's terms.
START = "start"  # the session started: brief it
PROMPT = "prompt"  # a turn starts: hand it new messages
PRE_EDIT = "pre_edit"  # an edit is about to happen: refuse it if someone holds the file
POST_TOOL = "post_tool"  # a tool ran: record edits, hand over new messages
STOP_WAIT = "stop_wait"  # the agent went idle: wait for a message to wake it (Claude)
STOP_CHECK = "stop_check"  # the turn ends: go on if messages are waiting (Codex)
END = "end"  # the agent exits: leave the mesh at once


class Hook:
    """One hook call, parsed."""

    __slots__ = ("cwd", "event", "kind", "paths", "session_id")

    def __init__(
        self,
        kind: str,
        event: str,
        cwd: str | None,
        session_id: str | None,
        paths: list[str] | None = None,
    ) -> None:
        self.kind = kind
        self.event = event  # the agent's own name for it
        self.cwd = cwd
        self.session_id = session_id
        self.paths = paths or []  # files an edit tool touches (absolute, or relative to cwd)


class Reply:
    """What the hook process writes and exits with."""

    __slots__ = ("code", "stderr", "stdout")

    def __init__(self, stdout: bytes = b"", stderr: bytes = b"", code: int = 0) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.code = code


NOTHING = Reply()


def _json(value: "Any") -> Reply:
    return Reply(leanjson.encode(value))


def _text(value: "Any") -> str | None:
    return value if isinstance(value, str) and value else None


def _input(data: "dict[str, Any]") -> "dict[str, Any]":
    tool_input = data.get("tool_input")
    return tool_input if isinstance(tool_input, dict) else {}


class Format:
    """Claude Code's format; the others change what differs."""

    agent = "claude-code"  # the agent type the session registers as
    edit_tools = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
    path_fields: tuple[str, ...] = ("file_path", "notebook_path")

    def parse(self, event: str, data: "dict[str, Any]") -> Hook | None:
        kind = self.kind_of(event, data)
        if kind is None:
            return None
        paths: list[str] = []
        if kind in (PRE_EDIT, POST_TOOL):
            paths = self.edited_paths(event, data)
            if kind == PRE_EDIT and not paths:
                return None  # not an edit of a file: nothing to guard
        return Hook(kind, event, _text(data.get("cwd")), self.session_of(data), paths)

    def kind_of(self, event: str, data: "dict[str, Any]") -> str | None:
        if event == "PreToolUse":
            return PRE_EDIT
        if event == "SessionEnd":
            # /clear ends a conversation, not the agent: the session stays.
            return None if data.get("reason") == "clear" else END
        return {
            "SessionStart": START,
            "UserPromptSubmit": PROMPT,
            "PostToolUse": POST_TOOL,
            "Stop": STOP_WAIT,
        }.get(event)

    def session_of(self, data: "dict[str, Any]") -> str | None:
        return _text(data.get("session_id"))

    def edited_paths(self, event: str, data: "dict[str, Any]") -> list[str]:
        if data.get("tool_name") not in self.edit_tools:
            return []
        tool_input = _input(data)
        return [p for f in self.path_fields if (p := _text(tool_input.get(f)))]

    # -- answers ---------------------------------------------------------------------

    def context(self, hook: Hook, text: str) -> Reply:
        """``text`` for the model's context."""
        return _json(
            {"hookSpecificOutput": {"hookEventName": hook.event, "additionalContext": text}}
        )

    def deny(self, hook: Hook, reason: str) -> Reply:
        """Refuse the edit, telling the model why."""
        return _json(
            {
                "hookSpecificOutput": {
                    "hookEventName": hook.event,
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            }
        )

    def warn(self, hook: Hook, text: str) -> Reply:
        """Let the edit go on, with a line for the model (never an ``allow``, which would
        skip the user's own permission rules)."""
        return self.context(hook, text)

    def wake(self, hook: Hook, text: str) -> Reply:
        """Wake the idle session with ``text`` (Stop with ``asyncRewake``: exit 2)."""
        return Reply(stderr=text.encode("utf-8", "replace") + b"\n", code=2)

    def go_on(self, hook: Hook, text: str) -> Reply:
        """Continue a turn that was about to end, with ``text`` as its next input."""
        return _json({"decision": "block", "reason": text})


class Codex(Format):
    agent = "codex"
    edit_tools = frozenset({"apply_patch", "Edit", "Write"})
    # *** Add File: / *** Update File: / *** Delete File: <path>, and *** Move to: <path>
    patch_markers = ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: ")

    def kind_of(self, event: str, data: "dict[str, Any]") -> str | None:
        if event == "Stop":
            # A block that continues the turn runs Stop again: never twice in a row.
            return None if data.get("stop_hook_active") else STOP_CHECK
        return super().kind_of(event, data)

    def edited_paths(self, event: str, data: "dict[str, Any]") -> list[str]:
        if data.get("tool_name") not in self.edit_tools:
            return []
        tool_input = _input(data)
        patch = tool_input.get("command") or tool_input.get("patch") or tool_input.get("input")
        if not isinstance(patch, str):
            return super().edited_paths(event, data)
        out = []
        for line in patch.splitlines():
            for marker in self.patch_markers:
                if line.startswith(marker) and (path := line[len(marker) :].strip()):
                    out.append(path)
        return out


class Gemini(Format):
    agent = "gemini-cli"
    edit_tools = frozenset({"write_file", "replace"})
    path_fields = ("file_path",)

    def kind_of(self, event: str, data: "dict[str, Any]") -> str | None:
        return {
            "SessionStart": START,
            "BeforeAgent": PROMPT,
            "BeforeTool": PRE_EDIT,
            "AfterTool": POST_TOOL,
            "SessionEnd": None if data.get("reason") == "clear" else END,
        }.get(event)

    def deny(self, hook: Hook, reason: str) -> Reply:
        return _json({"decision": "deny", "reason": reason})

    def warn(self, hook: Hook, text: str) -> Reply:
        return _json({"systemMessage": text})  # BeforeTool has no channel to the model


class Cursor(Format):
    agent = "cursor"
    edit_tools = frozenset({"Write", "Edit", "MultiEdit", "Delete"})
    path_fields = ("file_path", "path", "target_file")

    def kind_of(self, event: str, data: "dict[str, Any]") -> str | None:
        return {
            "sessionStart": START,
            "preToolUse": PRE_EDIT,
            "postToolUse": POST_TOOL,
            "afterFileEdit": POST_TOOL,
            "sessionEnd": END,
        }.get(event)

    def session_of(self, data: "dict[str, Any]") -> str | None:
        return _text(data.get("conversation_id")) or _text(data.get("session_id"))

    def parse(self, event: str, data: "dict[str, Any]") -> Hook | None:
        hook = super().parse(event, data)
        if hook is not None and hook.cwd is None:
            roots = data.get("workspace_roots")
            if isinstance(roots, list) and roots and isinstance(roots[0], str):
                hook.cwd = roots[0]
        return hook

    def edited_paths(self, event: str, data: "dict[str, Any]") -> list[str]:
        if event == "afterFileEdit":  # (records the edit; postToolUse hands over messages)
            return [p] if (p := _text(data.get("file_path"))) else []
        if event == "postToolUse":
            return []
        return super().edited_paths(event, data)

    def context(self, hook: Hook, text: str) -> Reply:
        if hook.event == "afterFileEdit":
            return NOTHING  # fire-and-forget: nothing it prints reaches the model
        return _json({"additional_context": text})

    def deny(self, hook: Hook, reason: str) -> Reply:
        return _json({"permission": "deny", "user_message": reason, "agent_message": reason})

    def warn(self, hook: Hook, text: str) -> Reply:
        return NOTHING  # its pre-tool answer has no channel to the model without a decision


FORMATS: dict[str, Format] = {
    "claude": Format(),
    "codex": Codex(),
    "gemini": Gemini(),
    "cursor": Cursor(),
}
