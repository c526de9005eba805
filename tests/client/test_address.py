"""Where to connect, read from the files the broker leaves in the data dir."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from slm_mesh.client.address import Address, BrokerUnreachable, resolve, unreachable
from slm_mesh.config import Settings


def test_nothing_to_connect_to_when_the_broker_left_no_files(settings: Settings) -> None:
    assert resolve(settings) == []


def test_the_unix_socket_comes_first_and_needs_no_token(settings: Settings) -> None:
    settings.socket_path.touch()
    settings.port_path.write_text("7901\n")
    settings.token_path.write_text("cafe\n")
    assert resolve(settings) == [
        Address("unix", path=settings.socket_path),
        Address("tcp", host="127.0.0.1", port=7901, token="cafe"),
    ]


def test_tcp_comes_from_the_port_file_with_the_token(settings: Settings) -> None:
    settings.port_path.write_text("7899")
    settings.token_path.write_text("  " + "ab" * 32 + "\n")
    (address,) = resolve(settings)
    assert (address.kind, address.host, address.port, address.token) == (
        "tcp",
        "127.0.0.1",
        7899,
        "ab" * 32,
    )


def test_a_port_without_a_token_file_gives_no_token(settings: Settings) -> None:
    settings.port_path.write_text("7899")
    assert resolve(settings) == [Address.tcp(7899, None)]


@pytest.mark.parametrize("content", ["", "seven", "0", "70000", "-1"])
def test_a_port_file_without_a_port_is_ignored(settings: Settings, content: str) -> None:
    settings.port_path.write_text(content)
    assert resolve(settings) == []


def test_the_socket_path_comes_from_the_settings(data_dir: Path) -> None:
    elsewhere = data_dir / "run" / "mesh.sock"
    elsewhere.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(elsewhere))
        settings = Settings(data_dir=data_dir, socket_path=elsewhere)
        assert resolve(settings) == [Address.unix(elsewhere)]


def test_addresses_print_as_kind_and_place(tmp_path: Path) -> None:
    assert str(Address.unix(tmp_path / "b.sock")) == f"unix:{tmp_path / 'b.sock'}"
    assert str(Address.tcp(7899, "t")) == "tcp:127.0.0.1:7899"


def test_unreachable_says_what_was_tried_and_how_to_start_a_broker(settings: Settings) -> None:
    error = unreachable(
        settings,
        [(Address.unix(settings.socket_path), ConnectionRefusedError(111, "Connection refused"))],
    )
    assert isinstance(error, BrokerUnreachable)
    assert "connection refused" in str(error)
    assert str(settings.socket_path) in str(error)
    assert "slm-mesh start" in str(error)
    assert "slm-mesh start" in str(unreachable(settings, []))
