"""The async client under asyncio (as ``slm-mesh top`` runs it, in textual's loop), in a
process of its own: calls, pushes and the end of the connection work, and trio is never
imported (its import is a tenth of ``top``'s start; see client/connection.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from slm_mesh.config import Settings
from tests.wire import broker_env, broker_process

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import anyio
    from slm_mesh.client.aio import ConnectionLost, MeshClient
    from slm_mesh.config import Settings

    async def main():
        seen = {}
        async with MeshClient.open(Settings.from_env()) as client:
            me = await client.register(name="asyncio-side", cwd="/repo")
            await client.call("message.send", {"to": me["peer_id"], "body": "to myself"})
            method, pushed = await client.notifications.receive()
            seen["push"] = [method, pushed["body"]]
            seen["pong"] = await client.call("mesh.ping")
            print("stop the broker", flush=True)
            sys.stdin.readline()
            try:
                with anyio.fail_after(10):
                    await client.call("mesh.ping")
            except ConnectionLost:
                seen["lost"] = True
        seen["trio_imported"] = "trio" in sys.modules
        print(json.dumps(seen), flush=True)

    anyio.run(main, backend="asyncio")
    """
)


def test_the_client_works_under_asyncio_without_importing_trio(settings: Settings) -> None:
    with broker_process(settings) as broker:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT],
            env=broker_env(settings),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline() == "stop the broker\n"
            broker.terminate()
            broker.wait(timeout=10)
            proc.stdin.write("\n")
            proc.stdin.flush()
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0
    seen = json.loads(out)
    assert seen == {
        "push": ["message", "to myself"],
        "pong": "pong",
        "lost": True,
        "trio_imported": False,
    }
