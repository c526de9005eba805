"""The shared store from the command line: ``broker --store`` never takes a password
(argv is visible to every user of the machine). ``service install --store`` is in
test_service.py."""

from __future__ import annotations

from tests.cli.conftest import Cli


def test_the_broker_refuses_a_password_on_its_command_line(cli: Cli) -> None:
    done = cli.run("broker", "--store", "postgresql://mesh:s3cret@db.example/slm")
    assert done.returncode == 2
    assert "~/.pgpass" in done.stderr
    assert "s3cret" not in done.stderr
    done = cli.run("broker", "--store", "/tmp/not-a-url.db")
    assert done.returncode == 2
    assert "postgresql://" in done.stderr
