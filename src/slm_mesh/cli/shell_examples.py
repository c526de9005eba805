"""Raw JSON-RPC from the shell with socat: the one-liners the docs show.

One source of truth: slm-mesh-protocol(7) is generated from these, the README is checked
against them, and a test runs each one, exactly as written, against a real broker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ShellExample:
    title: str
    command: str
    explanation: str


SOCKET_LINE = "SOCK=$XDG_RUNTIME_DIR/slm-mesh/broker.sock"
SOCKET_EXPLANATION = (
    "With XDG_RUNTIME_DIR set (most Linux desktops) the socket is the path above; "
    "otherwise, or when SLM_MESH_DATA_DIR is set, it is broker.sock in the data dir "
    "(~/.slm-mesh/broker.sock by default). `slm-mesh status` prints it."
)

STATUS = ShellExample(
    "Ask for the broker's status",
    """echo '{"jsonrpc":"2.0","id":1,"method":"mesh.status"}' | socat - UNIX-CONNECT:"$SOCK\"""",
    "socat sends the line, the broker answers it and, seeing the end of input, closes the "
    "connection, so socat exits after printing the answer.",
)

SEND = ShellExample(
    "Send a message to the peer named reviewer",
    """echo '{"jsonrpc":"2.0","id":1,"method":"message.send","params":{"to":"reviewer","body":"build is green"}}' | socat - UNIX-CONNECT:"$SOCK\"""",  # noqa: E501 (a one-liner, kept whole)
    'The message comes from the person at the shell (peer id "person": a connection '
    "without a peer session is the person), so the reviewer's answer lands in `slm-mesh "
    "inbox`. The answer lists the message "
    'ids and recipients; "to":"all" sends to every connected peer.',
)

WATCH = ShellExample(
    "Subscribe to events and watch them stream",
    """(echo '{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"types":["*"]}}'; cat) | socat - UNIX-CONNECT:"$SOCK\"""",  # noqa: E501 (a one-liner, kept whole)
    "cat keeps the connection open (type more requests if you like; Ctrl-D or Ctrl-C ends "
    'it). After the answer, each event arrives as a notification line: method "event", '
    "params {seq, type, ts, data}.",
)

EXAMPLES: tuple[ShellExample, ...] = (STATUS, SEND, WATCH)
