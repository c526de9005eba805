"""Each agent's documented hook input → what the hook makes of it, and its answers in that
agent's own shapes. The inputs are the agents' documented samples:

- Claude Code: https://code.claude.com/docs/en/hooks (hook input, PreToolUse decision
  control, asyncRewake), checked against the 2.1.197 CLI's own parser;
- Codex: https://developers.openai.com/codex/hooks and codex-rs/hooks/schema/generated
  (pre-tool-use / stop output schemas), /work/shared/AGENT-HOSTS.md for apply_patch;
- Gemini CLI: docs/hooks/reference.md (BeforeTool, AfterTool, BeforeAgent, SessionStart,
  SessionEnd; tool names write_file and replace);
- Cursor: https://cursor.com/docs/hooks (sessionStart, preToolUse, postToolUse,
  afterFileEdit: additional_context, permission / user_message / agent_message).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from slm_mesh.hooks import formats
from slm_mesh.hooks.formats import FORMATS, Hook
from tests.hooks.conftest import Agent
from tests.wire import LineClient

CLAUDE_BASE = {
    "session_id": "abc123",
    "transcript_path": "/Users/me/.claude/projects/x/abc123.jsonl",
    "cwd": "/Users/me/project",
    "permission_mode": "default",
}
CODEX_BASE = {**CLAUDE_BASE, "turn_id": "turn-1", "model": "gpt-5.5"}
GEMINI_BASE = {
    "session_id": "g-1",
    "transcript_path": "/home/me/.gemini/tmp/chat.json",
    "cwd": "/home/me/project",
    "timestamp": "2026-12-07T10:00:00Z",
}
CURSOR_BASE = {
    "conversation_id": "conv-123",
    "generation_id": "gen-456",
    "workspace_roots": ["/path/to/project"],
}
PATCH = (
    "*** Begin Patch\n*** Update File: src/auth.ts\n@@\n-a\n+b\n*** Add File: docs/new.md\n"
    "+hello\n*** Update File: old/name.py\n*** Move to: new/name.py\n*** End Patch\n"
)

PARSED = [
    # agent, event, input, (kind, cwd, session, paths) or None
    ("claude", "SessionStart", {"source": "startup"}, ("start", "/Users/me/project", "abc123", [])),
    ("claude", "UserPromptSubmit", {"prompt": "Write a function"}, ("prompt", None, None, [])),
    (
        "claude",
        "PreToolUse",
        {"tool_name": "Write", "tool_input": {"file_path": "/p/f.txt", "content": "x"}},
        ("pre_edit", None, None, ["/p/f.txt"]),
    ),
    (
        "claude",
        "PreToolUse",
        {"tool_name": "NotebookEdit", "tool_input": {"notebook_path": "/p/n.ipynb"}},
        ("pre_edit", None, None, ["/p/n.ipynb"]),
    ),
    ("claude", "PreToolUse", {"tool_name": "Bash", "tool_input": {"command": "ls"}}, None),
    (
        "claude",
        "PostToolUse",
        {
            "tool_name": "Edit",
            "tool_input": {"file_path": "/p/f.txt", "old_string": "a", "new_string": "b"},
            "tool_response": {"filePath": "/p/f.txt", "success": True},
        },
        ("post_tool", None, None, ["/p/f.txt"]),
    ),
    (
        "claude",
        "PostToolUse",
        {"tool_name": "Read", "tool_input": {}},
        ("post_tool", None, None, []),
    ),
    ("claude", "Stop", {"stop_hook_active": False}, ("stop_wait", None, None, [])),
    ("claude", "SessionEnd", {"reason": "prompt_input_exit"}, ("end", None, None, [])),
    ("claude", "SessionEnd", {"reason": "clear"}, None),
    ("claude", "Notification", {"message": "Claude needs your permission"}, None),
    ("codex", "SessionStart", {"source": "startup"}, ("start", None, None, [])),
    (
        "codex",
        "PreToolUse",
        {"tool_name": "apply_patch", "tool_input": {"command": PATCH}},
        ("pre_edit", None, None, ["src/auth.ts", "docs/new.md", "old/name.py", "new/name.py"]),
    ),
    (
        "codex",
        "PostToolUse",
        {"tool_name": "apply_patch", "tool_input": {"command": PATCH}, "tool_response": "Done"},
        ("post_tool", None, None, ["src/auth.ts", "docs/new.md", "old/name.py", "new/name.py"]),
    ),
    ("codex", "PreToolUse", {"tool_name": "Bash", "tool_input": {"command": "ls"}}, None),
    (
        "codex",
        "Stop",
        {"stop_hook_active": False, "last_assistant_message": "done"},
        ("stop_check", None, None, []),
    ),
    ("codex", "Stop", {"stop_hook_active": True}, None),
    ("gemini", "SessionStart", {"source": "startup"}, ("start", "/home/me/project", "g-1", [])),
    ("gemini", "BeforeAgent", {"prompt": "fix the bug"}, ("prompt", None, None, [])),
    (
        "gemini",
        "BeforeTool",
        {"tool_name": "write_file", "tool_input": {"file_path": "src/a.py", "content": "x"}},
        ("pre_edit", None, None, ["src/a.py"]),
    ),
    (
        "gemini",
        "BeforeTool",
        {"tool_name": "replace", "tool_input": {"file_path": "/abs/b.py", "old_string": "a"}},
        ("pre_edit", None, None, ["/abs/b.py"]),
    ),
    ("gemini", "BeforeTool", {"tool_name": "run_shell_command", "tool_input": {}}, None),
    (
        "gemini",
        "AfterTool",
        {
            "tool_name": "read_file",
            "tool_input": {"file_path": "x"},
            "tool_response": {"llmContent": "…"},
        },
        ("post_tool", None, None, []),
    ),
    ("gemini", "SessionEnd", {"reason": "exit"}, ("end", None, None, [])),
    ("gemini", "SessionEnd", {"reason": "clear"}, None),
    ("cursor", "sessionStart", {}, ("start", "/path/to/project", "conv-123", [])),
    (
        "cursor",
        "preToolUse",
        {"tool_name": "Write", "tool_input": {"file_path": "/path/to/project/a.ts"}},
        ("pre_edit", None, None, ["/path/to/project/a.ts"]),
    ),
    (
        "cursor",
        "afterFileEdit",
        {"file_path": "/path/to/project/src/main.ts", "edits": [{"old_string": "a"}]},
        ("post_tool", None, None, ["/path/to/project/src/main.ts"]),
    ),
    (
        "cursor",
        "postToolUse",
        {"tool_name": "Write", "tool_input": {"file_path": "/p/a.ts"}},
        ("post_tool", None, None, []),
    ),
    ("cursor", "beforeShellExecution", {"command": "ls", "cwd": "/p"}, None),
]

BASES: dict[str, dict[str, Any]] = {
    "claude": CLAUDE_BASE,
    "codex": CODEX_BASE,
    "gemini": GEMINI_BASE,
    "cursor": CURSOR_BASE,
}


@pytest.mark.parametrize(("agent", "event", "fields", "expected"), PARSED)
def test_each_agents_documented_input_is_understood(
    agent: str, event: str, fields: dict[str, Any], expected: tuple[Any, ...] | None
) -> None:
    data = {**BASES[agent], "hook_event_name": event, **fields}
    hook = FORMATS[agent].parse(event, data)
    if expected is None:
        assert hook is None
        return
    assert hook is not None
    kind, cwd, session, paths = expected
    assert hook.kind == kind
    assert hook.paths == paths
    if cwd is not None:
        assert hook.cwd == cwd
    if session is not None:
        assert hook.session_id == session


def answer(reply: formats.Reply) -> Any:
    return json.loads(reply.stdout) if reply.stdout else None


def hook(event: str) -> Hook:
    return Hook(formats.PRE_EDIT, event, "/p", "s")


def test_claude_and_codex_answers() -> None:
    for agent in ("claude", "codex"):
        fmt = FORMATS[agent]
        assert answer(fmt.deny(hook("PreToolUse"), "held")) == {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": "held",
            }
        }
        for event in ("SessionStart", "UserPromptSubmit", "PostToolUse", "PreToolUse"):
            assert answer(fmt.context(hook(event), "news")) == {
                "hookSpecificOutput": {"hookEventName": event, "additionalContext": "news"}
            }
        warned = answer(fmt.warn(hook("PreToolUse"), "careful"))
        assert "permissionDecision" not in warned["hookSpecificOutput"]  # never an "allow"
    woken = FORMATS["claude"].wake(hook("Stop"), "a message")
    assert (woken.code, woken.stdout, woken.stderr) == (2, b"", b"a message\n")
    go_on = FORMATS["codex"].go_on(hook("Stop"), "a message")
    assert (go_on.code, answer(go_on)) == (0, {"decision": "block", "reason": "a message"})


def test_gemini_answers() -> None:
    fmt = FORMATS["gemini"]
    assert answer(fmt.deny(hook("BeforeTool"), "held")) == {"decision": "deny", "reason": "held"}
    assert answer(fmt.context(hook("BeforeAgent"), "news")) == {
        "hookSpecificOutput": {"hookEventName": "BeforeAgent", "additionalContext": "news"}
    }
    assert answer(fmt.warn(hook("BeforeTool"), "careful")) == {"systemMessage": "careful"}


def test_cursor_answers() -> None:
    fmt = FORMATS["cursor"]
    assert answer(fmt.deny(hook("preToolUse"), "held")) == {
        "permission": "deny",
        "user_message": "held",
        "agent_message": "held",
    }
    assert answer(fmt.context(hook("sessionStart"), "news")) == {"additional_context": "news"}
    assert answer(fmt.context(hook("postToolUse"), "news")) == {"additional_context": "news"}
    assert answer(fmt.context(hook("afterFileEdit"), "news")) is None  # fire-and-forget
    assert answer(fmt.warn(hook("preToolUse"), "careful")) is None


DENIED = {
    "claude": ("PreToolUse", {"tool_name": "Edit", "tool_input": {"file_path": "src/held.py"}}),
    "codex": (
        "PreToolUse",
        {"tool_name": "apply_patch", "tool_input": {"command": "*** Update File: src/held.py"}},
    ),
    "gemini": ("BeforeTool", {"tool_name": "replace", "tool_input": {"file_path": "src/held.py"}}),
    "cursor": ("preToolUse", {"tool_name": "Edit", "tool_input": {"file_path": "src/held.py"}}),
}


@pytest.mark.parametrize("kind", sorted(DENIED))
def test_each_agent_is_refused_an_edit_in_its_own_words(
    broker: subprocess.Popen[bytes], agent: Agent, kind: str
) -> None:
    holder = LineClient(agent.settings.socket_path)
    try:
        holder.call("peer.register", name="holder", cwd=str(agent.cwd))
        holder.call("lock.acquire", path="src/held.py")
        agent.kind = kind
        event, fields = DENIED[kind]
        payload = {**BASES[kind], "cwd": str(agent.cwd), "hook_event_name": event, **fields}
        done = agent.run(event, payload)
    finally:
        holder.close()
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    text = json.dumps(out)
    assert "src/held.py is locked by another session" in text and '\\"holder\\"' in text
    if kind in ("claude", "codex"):
        assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    elif kind == "gemini":
        assert out["decision"] == "deny"
    else:
        assert out["permission"] == "deny"
