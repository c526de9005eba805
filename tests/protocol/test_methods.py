import pytest

from slm_mesh.protocol import errors
from slm_mesh.protocol.methods import validate
from slm_mesh.protocol.openrpc import openrpc_document
from slm_mesh.protocol.table import METHODS

CONTRACT_METHODS = {
    "mesh.hello",
    "mesh.ping",
    "mesh.status",
    "mesh.shutdown",
    "peer.register",
    "peer.update",
    "peer.list",
    "peer.whoami",
    "peer.unregister",
    "message.send",
    "message.inbox",
    "message.ack",
    "message.subscribe",
    "state.get",
    "state.set",
    "state.delete",
    "state.list",
    "lock.acquire",
    "lock.release",
    "lock.renew",
    "lock.list",
    "lock.check",
    "event.read",
    "event.subscribe",
    "event.unsubscribe",
    "rpc.discover",
    # hooks (ARCHITECTURE.md §9)
    "peer.attach",
    "message.wait",
    "file.edited",
}
SESSION_METHODS = {
    "peer.update",
    "peer.whoami",
    "peer.unregister",
    "lock.acquire",
    "lock.renew",
    "message.wait",
    "file.edited",
}
# lock.release needs a session too, except with force (another session's lock, released by
# the person at the shell): the mesh checks that, so the table does not mark it.


def test_the_table_holds_exactly_the_contract_methods() -> None:
    assert set(METHODS) == CONTRACT_METHODS
    assert {m.name for m in METHODS.values() if m.session} == SESSION_METHODS


def test_openrpc_document_lists_every_method_with_its_params() -> None:
    doc = openrpc_document("1.2.3")
    assert doc["openrpc"].startswith("1.")
    by_name = {m["name"]: m for m in doc["methods"]}
    assert set(by_name) == CONTRACT_METHODS
    send = {p["name"]: p for p in by_name["message.send"]["params"]}
    assert send["to"]["required"] and send["body"]["required"]
    assert send["type"]["schema"]["enum"] == ["text", "json", "command", "alert"]


def test_defaults_are_filled_in() -> None:
    got = validate(METHODS["message.inbox"], {})
    assert got == {"unread_only": True, "limit": 20, "mark_read": True}


def test_a_limit_above_its_maximum_is_capped_not_refused() -> None:
    assert validate(METHODS["event.read"], {"limit": 10**9})["limit"] == 1000


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("message.send", {"to": "x"}, "body"),
        ("message.send", {"to": 5, "body": "b"}, "to"),
        ("message.send", {"to": "x", "body": "b", "type": "shout"}, "type"),
        ("message.send", {"to": "x", "body": "b", "colour": "red"}, "colour"),
        ("message.inbox", {"limit": "10"}, "limit"),
        ("message.inbox", {"limit": True}, "limit"),
        ("message.inbox", {"limit": 0}, "limit"),
        ("message.ack", {"ids": [1, "2"]}, "ids[1]"),
        ("lock.acquire", {"path": "a", "wait": -1}, "wait"),
        ("lock.check", {"paths": "a"}, "paths"),
        ("state.set", {"key": "k"}, "value"),
        ("peer.register", {"cwd": "/x", "name": "\ud800"}, "name"),
        ("mesh.ping", [1], "params"),
    ],
)
def test_bad_params_name_the_field(method: str, params: object, field: str) -> None:
    with pytest.raises(errors.InvalidParams) as info:
        validate(METHODS[method], params)
    assert info.value.code == errors.INVALID_PARAMS
    assert info.value.data == {"field": field}


def test_empty_positional_params_are_accepted_as_no_params() -> None:
    assert validate(METHODS["mesh.ping"], []) == {}


def test_over_long_structural_strings_are_too_large() -> None:
    with pytest.raises(errors.TooLarge) as info:
        validate(METHODS["peer.register"], {"cwd": "/x", "name": "n" * 65})
    assert info.value.code == errors.TOO_LARGE
    assert info.value.data["limit"] == 64
