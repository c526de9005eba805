"""A stand-in for ``python -m slm_mesh broker`` in autostart tests (stdlib only).

It behaves as the contract says a broker does at start: append its pid to
``<data dir>/spawned`` (so tests can count starts), take ``broker.lock`` or exit 0 when
another holds it, listen on ``SLM_MESH_SOCKET``, answer ``mesh.hello`` and ``mesh.ping``,
stop on ``mesh.shutdown`` or after ``--idle-exit`` seconds without a connection. Every
other call gets the hello's answer, but ``mesh.status`` gets ``FAKE_BROKER_STATUS`` (JSON)
when that is set.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
from pathlib import Path


def serve(conn: socket.socket) -> None:
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            request = json.loads(line)
            method = request.get("method")
            result: object = {"version": "fake", "protocol": 1, "session": 1}
            if method == "mesh.ping":
                result = "pong"
            elif method == "mesh.status" and os.environ.get("FAKE_BROKER_STATUS"):
                result = json.loads(os.environ["FAKE_BROKER_STATUS"])
            elif method == "mesh.shutdown":
                result = {}
            answer = {"jsonrpc": "2.0", "id": request["id"], "result": result}
            conn.sendall(json.dumps(answer).encode() + b"\n")
            if method == "mesh.shutdown":
                os._exit(0)


def main() -> None:
    idle_exit_s = float(sys.argv[sys.argv.index("--idle-exit") + 1])
    data_dir = Path(os.environ["SLM_MESH_DATA_DIR"])
    socket_path = Path(os.environ["SLM_MESH_SOCKET"])
    with (data_dir / "spawned").open("a") as spawned:
        spawned.write(f"{os.getpid()}\n")
    lock = (data_dir / "broker.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another broker is running", flush=True)
        sys.exit(0)
    socket_path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(socket_path))
        listener.listen()
        listener.settimeout(idle_exit_s)
        print("listening", flush=True)
        try:
            while True:
                conn, _ = listener.accept()
                conn.settimeout(None)
                threading.Thread(target=serve, args=(conn,), daemon=True).start()
        except TimeoutError:
            pass
        finally:
            socket_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
