"""Benchmark of ``slm-mesh hook``: the wall time and memory of each hook an agent runs,
against the floor of an empty interpreter, in one run. Prints one JSON object.

    flock /work/wt/bench.lock python bench/hooks.py [--runs 300]

Each hook runs as the installed hook entries run it (``python -I -S .../hooks/run.py EVENT
--agent claude``, JSON on stdin) against a real broker in a temp dir, as the session of a
stand-in agent process:

- ``pre_allow``: PreToolUse on an Edit of a file nobody holds;
- ``pre_deny``: PreToolUse on an Edit of a file another live session holds (refused);
- ``post_0`` / ``post_3``: PostToolUse of a Read with 0, and with 3 new messages (sent
  before each run, not timed), handed over and marked read;
- ``prompt_0`` / ``prompt_3``: UserPromptSubmit, likewise;
- ``start``: SessionStart (the briefing: peers, locks, unread messages);
- ``no_broker``: PreToolUse with no broker running (the fail-open path);
- ``via_slm_mesh``: PreToolUse allowed, through the ``slm-mesh hook`` command (with
  ``site``), for comparison.

The floor is ``python -I -S -c pass`` with the same interpreter. Runs are interleaved, one
of each case in turn (random order), so the machine's noise falls on all of them alike.
Figures: p50 and p99 wall time in ms and their ratio to the floor's, the p50 CPU time of
the child (user + system: steadier than wall time on a busy machine), and the largest
resident set of the child in MB (GNU ``time -f %M``, a few untimed runs per case).
Targets: p50 ≤ 1.5× the floor, p99 ≤ 2.5× the floor, max RSS ≤ 20 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "src" / "slm_mesh" / "hooks" / "run.py"
TARGET_P50_RATIO = 1.5
TARGET_P99_RATIO = 2.5
TARGET_RSS_MB = 20.0
TIME = "/usr/bin/time"  # GNU time, for the children's own peak RSS
RSS_RUNS = 5


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def run_once(argv: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall ms, CPU ms (user + system) and stdout of one run."""
    read, write = os.pipe()
    os.write(write, stdin)  # (small: fits the pipe) the whole input at once, as agents write
    os.close(write)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=read, stdout=subprocess.PIPE, env=env, cwd=env["WORK"])
    os.close(read)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - start) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000, out


def max_rss_mb(argv: list[str], stdin: bytes, env: dict[str, str]) -> float:
    """The child's own peak RSS, through GNU time: ``ru_maxrss`` of a child spawned from
    this (large) process would count this process's pages, which the child shares until it
    executes the new program."""
    done = subprocess.run(
        [TIME, "-f", "%M", *argv],
        input=stdin,
        env=env,
        cwd=env["WORK"],
        capture_output=True,
        check=True,
    )
    return int(done.stderr.decode().strip().splitlines()[-1]) / 1024


class Line:
    """A minimal NDJSON client for the bench's own sessions."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.n = 0

    def call(self, method: str, **params: Any) -> Any:
        self.n += 1
        msg = {"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            answer = json.loads(self.file.readline())
            if answer.get("id") == self.n:
                if "error" in answer:
                    raise SystemExit(f"{method}: {answer['error']}")
                return answer["result"]


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the broker did not start")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bh-", dir="/tmp") as tmp:
        root = Path(tmp)
        data, work = root / "d", root / "repo"
        (work / ".git").mkdir(parents=True)
        (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLM_MESH_", "XDG_RUNTIME"))
        }
        env.update(SLM_MESH_DATA_DIR=str(data), SLM_MESH_AGENT_PID=str(agent.pid), WORK=str(work))
        broker = subprocess.Popen(
            [sys.executable, "-m", "slm_mesh", "broker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(data / "broker.sock", broker)
            print(json.dumps(measure(args.runs, env, data, work, broker, agent.pid), indent=2))
        finally:
            broker.terminate()
            broker.wait(10)
            agent.kill()
            agent.wait()


def measure(
    runs: int,
    env: dict[str, str],
    data: Path,
    work: Path,
    broker: subprocess.Popen[bytes],
    agent_pid: int,
) -> dict[str, Any]:
    hook = [sys.executable, "-I", "-S", str(RUN)]
    floor = [sys.executable, "-I", "-S", "-c", "pass"]
    base = {"session_id": "bench", "cwd": str(work), "transcript_path": "/dev/null"}

    def payload(event: str, **fields: Any) -> bytes:
        return json.dumps({**base, "hook_event_name": event, **fields}).encode()

    edit_free = payload("PreToolUse", tool_name="Edit", tool_input={"file_path": f"{work}/a.py"})
    edit_held = payload("PreToolUse", tool_name="Edit", tool_input={"file_path": f"{work}/h.py"})
    read = payload("PostToolUse", tool_name="Read", tool_input={"file_path": f"{work}/a.py"})
    prompt = payload("UserPromptSubmit", prompt="go on")
    start = payload("SessionStart", source="startup")
    run_once([*hook, "SessionStart"], start, env)  # the session, tied to the agent
    other = Line(data / "broker.sock")
    other.call("peer.register", name="backend", agent="codex", cwd=str(work), summary="bench")
    other.call("lock.acquire", path=f"{work}/h.py", ttl=86400)
    me = Line(data / "broker.sock")
    me.call("peer.attach", pid=agent_pid)
    name = me.call("peer.whoami")["name"]

    def three_messages() -> None:
        for i in range(3):
            other.call("message.send", to=name, body=f"message {i}: " + "x" * 120)

    no_broker_env = {**env, "SLM_MESH_DATA_DIR": str(data.parent / "nowhere")}
    slm_mesh = [str(Path(sys.executable).with_name("slm-mesh")), "hook"]
    cases: dict[str, tuple[list[str], bytes, dict[str, str], Callable[[], None] | None, bytes]] = {
        "floor": (floor, b"", env, None, b""),
        "pre_allow": ([*hook, "PreToolUse"], edit_free, env, None, b""),
        "pre_deny": ([*hook, "PreToolUse"], edit_held, env, None, b'"deny"'),
        "post_0": ([*hook, "PostToolUse"], read, env, None, b""),
        "post_3": ([*hook, "PostToolUse"], read, env, three_messages, b"3 new messages"),
        "prompt_0": ([*hook, "UserPromptSubmit"], prompt, env, None, b""),
        "prompt_3": ([*hook, "UserPromptSubmit"], prompt, env, three_messages, b"3 new messages"),
        "start": ([*hook, "SessionStart"], start, env, None, b"slm-mesh: you are"),
        "no_broker": ([*hook, "PreToolUse"], edit_free, no_broker_env, None, b""),
        "via_slm_mesh": ([*slm_mesh, "PreToolUse"], edit_free, env, None, b""),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    rss: dict[str, float] = dict.fromkeys(cases, 0.0)
    order = list(cases)
    for i in range(runs + 3):
        random.shuffle(order)
        for case in order:
            argv, stdin, case_env, before, expect = cases[case]
            if before is not None:
                before()
            ms, cpu_ms, out = run_once(argv, stdin, case_env)
            if expect not in out or (not expect and out):
                raise SystemExit(f"{case}: unexpected output {out[:200]!r}")
            if i >= 3:  # warm-up runs: page cache, bytecode
                times[case].append(ms)
                cpu[case].append(cpu_ms)
    for case, (argv, stdin, case_env, before, _) in cases.items():
        for _ in range(RSS_RUNS):
            if before is not None:
                before()
            rss[case] = max(rss[case], max_rss_mb(argv, stdin, case_env))
    floor_p50, floor_p99 = percentile(times["floor"], 50), percentile(times["floor"], 99)
    figures: dict[str, Any] = {}
    for case, walls in times.items():
        p50, p99 = percentile(walls, 50), percentile(walls, 99)
        figures[case] = {
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "p50_ratio": round(p50 / floor_p50, 2),
            "p99_ratio": round(p99 / floor_p99, 2),
            "cpu_p50_ms": round(percentile(cpu[case], 50), 2),
            "max_rss_mb": round(rss[case], 1),
        }
    hooks = [c for c in cases if c not in ("floor", "via_slm_mesh")]
    worst = {
        "p50_ratio": max(figures[c]["p50_ratio"] for c in hooks),
        "p99_ratio": max(figures[c]["p99_ratio"] for c in hooks),
        "max_rss_mb": max(figures[c]["max_rss_mb"] for c in hooks),
    }
    return {
        "bench": "hooks",
        "runs": runs,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "self_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cases": figures,
        "worst": worst,
        "targets": {
            "p50_ratio": TARGET_P50_RATIO,
            "p99_ratio": TARGET_P99_RATIO,
            "max_rss_mb": TARGET_RSS_MB,
        },
        "met": worst["p50_ratio"] <= TARGET_P50_RATIO
        and worst["p99_ratio"] <= TARGET_P99_RATIO
        and worst["max_rss_mb"] <= TARGET_RSS_MB,
    }


if __name__ == "__main__":
    main()
