"""The launcher's prebuilt answers to ``initialize`` and ``tools/list``, built from the real
server (``slm_mesh.zygote.early`` answers with them while the first session's warm
process starts).

    python -m slm_mesh.mcp_server.prebuild          # rewrite src/slm_mesh/zygote/prebuilt.py
    python -m slm_mesh.mcp_server.prebuild --check  # exit 1 if it is not current

The answers are what this server writes to stdout: the same server object, options and
dispatcher as :func:`slm_mesh.mcp_server.server.run`, fed the request lines through the
same parser and written with the same serializer, over memory streams instead of the
process's pipes. For each protocol version of the handshake era the answer lines are
stored around the request id (``head + str(id) + tail``). A change to the tools, the
instructions or the capabilities makes the stored file stale: the tests compare it with a
fresh build, and with a real server process's answers, byte for byte.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import trio
from mcp.server.runner import serve_connection
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from slm_mesh.config import Settings
from slm_mesh.mcp_server import server as mcp_server
from slm_mesh.mcp_server import stdio
from slm_mesh.mcp_server.session import MeshSession

TARGET = Path(__file__).resolve().parent.parent / "zygote" / "prebuilt.py"
SENTINEL_ID = 7_654_321  # no answer holds these digits but in its id
ANSWER_BOUND_S = 10.0
LINE_CHARS = 88  # a chunk's literal, within the line length with its indent


async def serve_lines(lines: list[bytes]) -> list[bytes]:
    """Feed ``lines`` (stdin lines, without their newline) to a real server, each request
    after the answer to the one before, as an agent that waits for its answers; return
    the answers as the lines it writes."""
    to_server, server_input = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_output, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    server = mcp_server.build_server(mcp_server.ToolBox(MeshSession(Settings.from_env())))
    dispatcher, connection = mcp_server.open_dispatcher(server_input, server_output)
    options = mcp_server.initialization_options(server)
    out: list[bytes] = []
    streams = (to_server, server_input, server_output, from_server)
    with trio.fail_after(ANSWER_BOUND_S), contextlib.ExitStack() as closing:
        for stream in streams:
            closing.callback(stream.close)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    serve_connection,
                    server,
                    dispatcher,
                    connection=connection,
                    lifespan_state={},
                    init_options=options,
                )
            )
            for line in lines:
                await to_server.send(stdio._parse(line))
                if _is_request(line):
                    out.append(stdio.wire_line(await from_server.receive()))
            nursery.cancel_scope.cancel()
    return out


def _is_request(line: bytes) -> bool:
    message = json.loads(line)
    return isinstance(message, dict) and "id" in message and "method" in message


def initialize_line(request_id: int, version: str) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":"%s",'
        b'"capabilities":{},"clientInfo":{"name":"prebuild","version":"0"}}}'
        % (request_id, version.encode())
    )


def tools_list_line(request_id: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/list"}' % request_id


INITIALIZED_LINE = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


async def build() -> dict[str, dict[str, tuple[bytes, bytes]]]:
    """``{"initialize": {version: (head, tail)}, "tools/list": {...}}``."""
    out: dict[str, dict[str, tuple[bytes, bytes]]] = {"initialize": {}, "tools/list": {}}
    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        lines = [
            initialize_line(SENTINEL_ID, version),
            INITIALIZED_LINE,
            tools_list_line(SENTINEL_ID),
        ]
        for method, answer in zip(out, await serve_lines(lines), strict=True):
            head, tail = _split(answer)
            out[method][version] = (head, tail)
    return out


def _split(answer: bytes) -> tuple[bytes, bytes]:
    parts = answer.split(b"%d" % SENTINEL_ID)
    if len(parts) != 2 or b'"error"' in parts[0]:
        raise RuntimeError(f"not a plain answer: {answer[:200]!r}")
    return parts[0], parts[1]


def _literal(chunk: bytes) -> str:
    """A bytes literal as ruff format leaves it (double quotes unless more of them)."""
    quote = "'" if chunk.count(b'"') > chunk.count(b"'") else '"'
    out = []
    for byte in chunk:
        char = chr(byte)
        if char == "\\" or char == quote:
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return f"b{quote}{''.join(out)}{quote}"


def _chunks(data: bytes) -> list[str]:
    literals: list[str] = []
    start = 0
    while start < len(data):
        end = start + 1
        while end < len(data) and len(_literal(data[start : end + 1])) <= LINE_CHARS:
            end += 1
        literals.append(_literal(data[start:end]))
        start = end
    return literals


def _entry(data: bytes, indent: str) -> list[str]:
    chunks = _chunks(data)
    if len(chunks) == 1:
        return [f"{indent}{chunks[0]},"]
    return [f"{indent}(", *(f"{indent}    {c}" for c in chunks), f"{indent}),"]


def render(answers: dict[str, dict[str, Any]]) -> str:
    lines = [
        '"""Generated by ``python -m slm_mesh.mcp_server.prebuild`` from the real server: do',
        "not edit. The launcher's answers (:mod:`slm_mesh.zygote.early`) to ``initialize``",
        'and ``tools/list``, per protocol version, as ``head + str(id) + tail``."""',
        "",
    ]
    for name, method in (("INITIALIZE", "initialize"), ("TOOLS_LIST", "tools/list")):
        lines.append(f"{name}: dict[str, tuple[bytes, bytes]] = {{")
        for version, (head, tail) in answers[method].items():
            lines.append(f'    "{version}": (')
            lines += _entry(head, " " * 8)
            lines += _entry(tail, " " * 8)
            lines.append("    ),")
        lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render(trio.run(build))
    if argv == ["--check"]:
        if TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python -m slm_mesh.mcp_server.prebuild")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
