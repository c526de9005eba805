"""The CLI's choices are spelled as Literal types (cyclopts shows and checks them); they
must stay the method table's, which the broker validates against."""

from typing import get_args

from slm_mesh.cli import options
from slm_mesh.protocol import table


def test_cli_choices_are_the_method_tables() -> None:
    assert get_args(options.EventType) == table.EVENT_TYPES
    assert get_args(options.Scope) == table.SCOPES
    assert get_args(options.MessageType) == table.MESSAGE_TYPES
    assert get_args(options.LockMode) == table.LOCK_MODES
