"""Codex's ``config.toml``: our ``[mcp_servers.slm-mesh]`` table, added or taken out as one
block of text, so every other byte of the file stays as the user wrote it.

Rules:
1. The file must parse (``tomllib``) before, and after the change; a file that doesn't is
   refused with its line and column.
2. Our block starts at the ``[mcp_servers.slm-mesh]`` header (or a sub-table of it) and
   ends before the next table header; our marker comment above it goes with it.
3. An ``mcp_servers.slm-mesh`` that is not ours (another command) is kept as it is.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_mesh.install.entries import SERVER_NAME, is_our_server
from slm_mesh.install.files import Change, ConfigError, read_text

MARKER = "# slm-mesh: its MCP server (slm-mesh install codex; slm-mesh uninstall codex)"
_HEADER = re.compile(r"^\s*\[\s*mcp_servers\s*\.\s*(\"slm-mesh\"|'slm-mesh'|slm-mesh)\s*[\].]")
_ANY_HEADER = re.compile(r"^\s*\[")


def parse(path: Path, text: str | None) -> dict[str, Any]:
    try:
        return tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: {exc}; fix the file and run this again: nothing was changed"
        ) from None


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, lists of strings, booleans: TOML reads them alike


def block(entry: dict[str, Any]) -> str:
    lines = [MARKER, f"[mcp_servers.{SERVER_NAME}]"]
    lines += [f"{key} = {_value(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


def without_ours(text: str) -> str:
    """``text`` without our block (rule 2)."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    skipping = False
    for line in lines:
        if _HEADER.match(line):
            skipping = True
            if out and out[-1].rstrip("\n") == MARKER:
                out.pop()
                if out and not out[-1].strip():
                    out.pop()  # the blank line we put before our block
            continue
        if skipping and _ANY_HEADER.match(line):
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out)


@dataclass(frozen=True)
class TomlFile:
    path: Path
    entry: dict[str, Any]
    what: str = "MCP server"

    def change(self, install: bool) -> tuple[Change, str]:
        before = read_text(self.path)
        config = parse(self.path, before)
        present = config.get("mcp_servers", {}).get(SERVER_NAME)
        if present is not None and not is_our_server(present):
            return Change(self.path, before, before), "MCP server kept (not ours)"
        text = before or ""
        if install:
            if present == self.entry:
                return Change(self.path, before, before), "MCP server kept"
            rest = without_ours(text)
            sep = "" if not rest else "\n" if rest.endswith("\n") else "\n\n"
            after = rest + sep + block(self.entry)
            done = "MCP server updated" if present is not None else "MCP server added"
        else:
            if present is None:
                return Change(self.path, before, before), "MCP server absent"
            after = without_ours(text)
            done = "MCP server removed"
        if parse(self.path, after).get("mcp_servers", {}).get(SERVER_NAME) != (
            self.entry if install else None
        ):
            raise ConfigError(f"{self.path}: could not edit [mcp_servers.{SERVER_NAME}] safely")
        return Change(self.path, before, after if after or before is not None else None), done
