"""The launcher's path stays lean (it runs on every agent start), and its hand-rolled
pieces agree with the stdlib ones they stand in for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slm_mesh.zygote import relay, wire

# Python wrappers whose imports (enum, re, functools…) would cost the launcher more than
# everything else it does.
COMMAND = Path(__file__).resolve().parents[2] / "bin" / "slm-mesh"  # what pip installs
HEAVY = {"json", "re", "enum", "typing", "socket", "signal", "selectors", "subprocess"}


def imported_by(code: str, *flags: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, *flags, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")},
    )
    return set(out.stdout.split())


def test_the_launcher_imports_no_heavy_stdlib_wrapper() -> None:
    baseline = imported_by("pass")  # what site itself brings in on this machine
    loaded = imported_by("import slm_mesh.entry, slm_mesh.zygote.launcher, slm_mesh.zygote.relay")
    assert (loaded - baseline) & HEAVY == set()
    assert not any(name.startswith(("mcp", "trio", "anyio", "pydantic")) for name in loaded)


MESSAGES = [
    {"op": "spawn", "env": {"PATH": "/bin", "LANG": "fr_FR.UTF-8", "É": 'é\n\t"\\'}},
    {"argv": ["slm-mesh", "mcp", "💥"], "parent_pid": 1, "cwd": "/tmp/a b"},
    {"pid": 123},
    {"exit": -9},
    {"error": "version mismatch"},
    {"nested": {"list": [1, 2.5, None, True, False, "x"]}},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_the_wire_codec_agrees_with_json(message: dict[str, object]) -> None:
    line = wire.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == message
    assert wire.decode(line.rstrip(b"\n")) == message
    assert wire.decode(json.dumps(message, indent=1).replace("\n", " ").encode()) == message


@pytest.mark.parametrize(
    "line", [b"", b"{", b"[1]", b"42", b'{"a":1} trailing', b"NaN", b'{"a": NaN}', b"\xff"]
)
def test_the_wire_codec_refuses_what_is_not_one_object(line: bytes) -> None:
    assert wire.decode(line) is None


def test_the_wire_codec_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        wire.encode({"fd": object()})


@pytest.mark.parametrize("code", [0, 1, 2, 127, -int(signal.SIGTERM), -int(signal.SIGKILL)])
def test_the_relay_reports_a_status_as_a_shell_would(code: int) -> None:
    expected = code if code >= 0 else 128 - code
    assert relay.exit_status(wire.decode(wire.encode({"exit": code}))) == expected


@pytest.mark.parametrize("message", [{"pid": 12}, {"exit": "x"}, {"exit": True}, None])
def test_the_relay_ignores_other_messages(message: dict[str, object] | None) -> None:
    assert relay.exit_status(message) is None


def test_the_relay_returns_a_status_that_arrived_with_the_pid() -> None:
    r, w = os.pipe()
    changed = (*relay.FORWARDED_SIGNALS, signal.SIGCHLD)
    saved = {signum: signal.getsignal(signum) for signum in changed}
    try:
        os.close(w)  # nothing more will come: the status must be in what we pass
        assert relay.relay(r, os.getpid(), wire.encode({"pid": 5}) + wire.encode({"exit": 3})) == 3
    finally:
        os.close(r)
        for signum, handler in saved.items():
            signal.signal(signum, handler)
