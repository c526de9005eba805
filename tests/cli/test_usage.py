"""Usage errors say what is wrong and what to do, exit 2, and never reach the broker
(issue 13: what a new user trips on)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.cli.conftest import Cli


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["sned", "backend", "hi"], "unknown command 'sned'; did you mean `slm-mesh send`?"),
        (["stauts"], "unknown command 'stauts'; did you mean `slm-mesh status`?"),
        (
            ["state", "sett", "k", "v"],
            "unknown state command 'sett'; did you mean `slm-mesh state set`?",
        ),
        (
            ["lock", "aquire", "x"],
            "unknown lock command 'aquire'; did you mean `slm-mesh lock acquire`?",
        ),
        (["frobnicate"], "unknown command 'frobnicate' (see `slm-mesh --help`)"),
    ],
)
def test_an_unknown_command_is_named_with_the_nearest_one(
    cli: Cli, args: list[str], said: str
) -> None:
    done = cli.run(*args)
    assert done.returncode == 2
    assert said in done.stderr
    assert "--help" in done.stderr
    assert "Unused Tokens" not in done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["send", "backend", "the", "API", "changed"],
            "`slm-mesh send` takes no argument 'API', 'changed' (left over after its last one): "
            "quote an argument that holds spaces",
        ),
        (["state", "set", "k", "a", "b"], "`slm-mesh state set` takes no argument 'b'"),
        (["status", "extra"], "`slm-mesh status` takes no argument 'extra'"),
    ],
)
def test_an_argument_too_many_says_which_and_that_spaces_need_quotes(
    cli: Cli, args: list[str], said: str
) -> None:
    """A message typed unquoted is the likely cause (no broker runs here: exit 3 would
    mean it got as far as calling one)."""
    done = cli.run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert said in " ".join(done.stderr.split()), done.stderr
    assert f"`slm-mesh {' '.join(args[: 2 if args[0] == 'state' else 1])} --help`" in done.stderr
    assert "Unused Tokens" not in done.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["inbox", "--limit", "-1"], "--limit"),
        (["inbox", "--limit", "0"], "--limit"),
        (["events", "--limit", "-1"], "--limit"),
        (["events", "--after", "-3"], "--after"),
        (["lock", "acquire", "foo", "--ttl", "-5", "--", "true"], "--ttl"),
        (["lock", "acquire", "foo", "--wait", "-1"], "--wait"),
        (["lock", "acquire", "foo", "--ttl", "100000"], "--ttl"),
        (["state", "set", "k", "v", "--ttl", "0"], "--ttl"),
        (["state", "set", "k", "v", "--if-version", "-1"], "--if-version"),
        (["send", "bob", "hi", "--reply-to", "0"], "--reply-to"),
        (["start", "--idle-exit", "0"], "--idle-exit"),
        (["stop", "--timeout", "-1"], "--timeout"),
    ],
)
def test_an_out_of_range_value_is_a_usage_error_before_any_broker_call(
    cli: Cli, args: list[str], option: str
) -> None:
    """No broker runs here: a command that got as far as calling one would exit 3."""
    done = cli.run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert option in done.stderr


def test_json_before_the_command_is_taken_as_help_lists_it(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    assert json.loads(cli.ok("--json", "peers"))["peers"] == []
    assert json.loads(cli.ok("--json", "status"))["pid"] == broker.pid
    assert "--json" in cli.ok("--help")
