"""Benchmark of the broker as a real process: prints one JSON object of figures.

    python bench/broker.py [--n 2000] [--idle 1000]

Figures: sequential ``mesh.ping`` round trip over UDS and TCP, ``message.send`` round trip,
send→push latency to a second connection, calls/s with 10 concurrent clients (the load
generator is a separate process; its CPU time is reported), and the broker's RSS with
``--idle`` registered idle connections. Latencies are in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def summary(values_ns: list[float]) -> dict[str, float]:
    us = [v / 1000 for v in values_ns]
    return {
        "p50_us": round(percentile(us, 50), 1),
        "p99_us": round(percentile(us, 99), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "n": len(us),
    }


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.next_id = 0
        self.pending: list[Any] = []

    @classmethod
    def unix(cls, path: Path) -> Client:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        return cls(s)

    @classmethod
    def tcp(cls, port: int, token: str) -> Client:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(s)
        c.call("mesh.hello", {"token": token})
        return c

    def send(self, method: str, params: Any = None) -> None:
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def read(self) -> Any:
        return json.loads(self.file.readline())

    def call(self, method: str, params: Any = None) -> Any:
        self.send(method, params)
        while True:
            msg = self.read()
            if "id" in msg:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]
            self.pending.append(msg)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_socket(path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            Client.unix(path).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("broker did not start")


def timed(fn: Any, n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


LOADGEN = r"""
import json, os, socket, sys, threading, time
path, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
counts = [0] * clients
lat = [[] for _ in range(clients)]
stop = time.monotonic() + seconds
def run(i):
    s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rb")
    n = 0
    while time.monotonic() < stop:
        n += 1
        t0 = time.perf_counter_ns()
        s.sendall(b'{"jsonrpc":"2.0","id":%d,"method":"state.get","params":{"key":"k"}}\n' % n)
        f.readline()
        lat[i].append(time.perf_counter_ns() - t0)
    counts[i] = n
threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
t0 = time.monotonic(); c0 = time.process_time()
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"calls": sum(counts), "seconds": time.monotonic() - t0,
                  "cpu_s": time.process_time() - c0, "lat": sorted(x for l in lat for x in l)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="samples per latency figure")
    parser.add_argument("--idle", type=int, default=1000, help="idle registered sessions")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput run length")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    with tempfile.TemporaryDirectory(prefix="smb-", dir="/tmp") as tmp:
        data = Path(tmp) / "d"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}
        env.pop("XDG_RUNTIME_DIR", None)
        env.update(
            SLM_MESH_DATA_DIR=str(data),
            SLM_MESH_PORT="0",
            SLM_MESH_MAX_CONNECTIONS_PER_UID=str(args.idle + 100),
            # One connection here makes well over the 1,000 calls/s a client may (burst
            # 2,000): the limiter would answer -32006, and the push loop would wait for
            # ever for a push that was refused. bench/abuse.py measures the limiter.
            SLM_MESH_RATE_LIMIT_PER_S="1e9",
            SLM_MESH_RATE_LIMIT_BURST="1e9",
        )
        log = open(Path(tmp) / "broker.log", "wb")  # noqa: SIM115
        broker = subprocess.Popen(
            [sys.executable, "-m", "slm_mesh", "broker", "--tcp"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            sock = data / "broker.sock"
            wait_socket(sock)
            out: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
            uds = Client.unix(sock)
            timed(lambda: uds.call("mesh.ping"), 200)  # warm up
            out["ping_uds"] = summary(timed(lambda: uds.call("mesh.ping"), args.n))
            port = int((data / "port").read_text())
            tcp = Client.tcp(port, (data / "broker.token").read_text().strip())
            timed(lambda: tcp.call("mesh.ping"), 200)
            out["ping_tcp"] = summary(timed(lambda: tcp.call("mesh.ping"), args.n))

            sender, receiver = Client.unix(sock), Client.unix(sock)
            sender.call("peer.register", {"name": "sender", "cwd": "/bench"})
            receiver.call("peer.register", {"name": "receiver", "cwd": "/bench"})
            body = {"to": "receiver", "body": "x" * 200}
            sends: list[float] = []
            for _ in range(args.n):
                t0 = time.perf_counter_ns()
                sender.call("message.send", body)
                sends.append(time.perf_counter_ns() - t0)
                receiver.read()  # keep up with the pushes (a reader 1,000 behind is dropped)
            out["send"] = summary(sends)
            push: list[float] = []
            for _ in range(args.n):
                t0 = time.perf_counter_ns()
                sender.send("message.send", body)
                receiver.read()  # the push arrives at the second connection
                push.append(time.perf_counter_ns() - t0)
                sender.read()
            out["send_to_push"] = summary(push)
            receiver.call("message.inbox", {"limit": 1})

            uds.call("state.set", {"key": "k", "value": 1})
            gen = subprocess.run(
                [sys.executable, "-c", LOADGEN, str(sock), "10", str(args.seconds)],
                capture_output=True,
                check=True,
                text=True,
            )
            load = json.loads(gen.stdout)
            lat = load.pop("lat")
            out["throughput_10_clients"] = {
                "calls_per_s": round(load["calls"] / load["seconds"]),
                "p50_us": round(percentile(lat, 50) / 1000, 1),
                "p99_us": round(percentile(lat, 99) / 1000, 1),
                "loadgen_cpu_s": round(load["cpu_s"], 2),
                "seconds": round(load["seconds"], 2),
                "method": "state.get",
            }

            rss_before = rss_kb(broker.pid)
            idle = []
            for i in range(args.idle):
                c = Client.unix(sock)
                c.call("peer.register", {"name": f"idle{i}", "cwd": f"/bench/{i % 10}"})
                idle.append(c)
            time.sleep(0.5)
            out["idle_sessions"] = {
                "sessions": len(idle),
                "rss_before_mb": round(rss_before / 1024, 1),
                "rss_mb": round(rss_kb(broker.pid) / 1024, 1),
            }
            for c in idle:
                c.close()
            for c in (uds, tcp, sender, receiver):
                c.close()
            print(json.dumps(out, indent=2))
        finally:
            broker.terminate()
            broker.wait(10)
            log.close()


if __name__ == "__main__":
    main()
