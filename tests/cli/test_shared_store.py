"""The shared store from the command line: ``broker --store`` never takes a password
(argv is visible to every user of the machine); ``status`` says which store the broker
uses and whether it answers. ``service install --store`` is in test_service.py."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from slm_mesh.config import Settings
from tests import pg
from tests.cli.conftest import Cli, has_fields, wait_until
from tests.wire import broker_process

PG_STORE_FIELDS = (
    "kind", "url", "mesh", "schema", "host", "lease_s", "broker_id", "available", "reason",
    "retry_after",
)  # fmt: skip


def field(status: str, label: str) -> str:
    """The value of one ``label  value`` line of ``slm-mesh status``."""
    [value] = [
        line.split(None, 1)[1] for line in status.splitlines() if line.split()[:1] == [label]
    ]
    return value


def test_the_broker_refuses_a_password_on_its_command_line(cli: Cli) -> None:
    done = cli.run("broker", "--store", "postgresql://mesh:s3cret@db.example/slm")
    assert done.returncode == 2
    assert "~/.pgpass" in done.stderr
    assert "s3cret" not in done.stderr
    done = cli.run("broker", "--store", "/tmp/not-a-url.db")
    assert done.returncode == 2
    assert "postgresql://" in done.stderr


def test_status_names_the_sqlite_file(
    cli: Cli, broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    store = cli.json("status")["store"]
    assert store == {"kind": "sqlite", "path": str(settings.db_path), "available": True}
    assert field(cli.ok("status"), "store") == f"SQLite {settings.db_path}"


def test_status_names_the_shared_store_without_its_password_and_whether_it_answers(
    own_cluster: pg.Cluster, tmp_short: Path, settings: Settings
) -> None:
    # The password is ignored (trust authentication), but it is in the URL the broker got.
    url = f"postgresql://{pg.SERVER_USER}:s3cret@/postgres?host={quote(str(own_cluster.root))}"
    url += f"&port={own_cluster.port}"
    settings = replace(
        settings, store_url=url, mesh_name=pg.mesh_name(), host="laptop-7", lease_s=6.0
    )
    cli = Cli(settings, tmp_short, {})
    with broker_process(settings):
        doc = cli.json("status")["store"]
        has_fields(doc, PG_STORE_FIELDS)
        assert doc["kind"] == "postgresql"
        assert doc["url"] == url.replace(":s3cret@", ":***@")
        assert (doc["mesh"], doc["host"], doc["lease_s"]) == (settings.mesh_name, "laptop-7", 6)
        assert (doc["available"], doc["reason"], doc["retry_after"]) == (True, None, None)
        text = cli.ok("status")
        assert "s3cret" not in text
        assert field(text, "store") == (
            f"PostgreSQL {doc['url']}, mesh {settings.mesh_name}, this machine laptop-7, "
            "lease 6 s: reachable"
        )

        own_cluster.stop()
        wait_until(lambda: not cli.json("status")["store"]["available"], 30, "unreachable")
        down = cli.json("status")["store"]
        assert down["reason"] and down["retry_after"] > 0
        text = cli.ok("status")
        assert "lease 6 s: UNREACHABLE (" in text
        assert "calls fail until it is back; retry in 1 s" in text
        assert field(text, "peers") == "? connected, ? away"  # only the store can count

        own_cluster.start()
        wait_until(lambda: cli.json("status")["store"]["available"], 30, "reachable again")
        assert cli.ok("status").count(": reachable") == 1
