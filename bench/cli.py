"""Benchmark of the CLI's wall time, the wait a person sees: prints one JSON object.

    python bench/cli.py [--runs 30]

Figures (milliseconds, median and p90 over ``--runs`` runs after two warm-up runs):
``slm-mesh status`` and ``status --json`` against a running broker, ``slm-mesh version``,
``slm-mesh peers`` (a command that goes through cyclopts), the bare interpreter
(``python -c pass``, the floor nothing can go below), and, each inside a fresh
interpreter, the import of ``slm_mesh.cli`` (the package: lazy), of what its fast path loads
(``status``, ``version``) and of the cyclopts app (every other command). Each command runs
as ``python -m slm_mesh`` with the bytecode cache allowed (as an installed package has it),
against a broker in a temp dir.
Target: ``slm-mesh status`` median ≤ 250 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_STATUS_MS = 250.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "min_ms": round(min(ms), 1),
        "n": len(ms),
    }


def wall_times(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Milliseconds of each run of ``argv`` (after two warm-up runs), each checked to exit 0."""
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
        elapsed = (time.perf_counter() - start) * 1000
        if done.returncode != 0:
            raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr.decode()}")
        if i >= 2:
            times.append(elapsed)
    return times


def import_times(module: str, env: dict[str, str], runs: int) -> list[float]:
    """Milliseconds to import ``module``, measured inside fresh interpreters."""
    code = (
        f"import time; t = time.perf_counter(); import {module}; "
        "print((time.perf_counter() - t) * 1000)"
    )
    out = []
    for i in range(runs + 2):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        if i >= 2:
            out.append(float(done.stdout))
    return out


def start_broker(env: dict[str, str], data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "slm_mesh", "broker"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not (data / "broker.sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the broker did not start")
        time.sleep(0.02)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slm-bench-", dir="/tmp") as tmp:
        data = Path(tmp) / "d"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLM_MESH_", "XDG_RUNTIME_DIR", "PYTHONDONTWRITEBYTECODE"))
        }
        env["SLM_MESH_DATA_DIR"] = str(data)
        env["NO_COLOR"] = "1"
        cli = [sys.executable, "-m", "slm_mesh"]
        broker = start_broker(env, data)
        try:
            figures: dict[str, Any] = {
                "python_startup": summary(
                    wall_times([sys.executable, "-c", "pass"], env, args.runs)
                ),
                "import_slm_mesh_cli": summary(import_times("slm_mesh.cli", env, args.runs)),
                "import_fast_path": summary(
                    import_times("slm_mesh.cli.cmd_broker", env, args.runs)
                ),
                "import_cyclopts_app": summary(import_times("slm_mesh.cli.app", env, args.runs)),
                "status": summary(wall_times([*cli, "status"], env, args.runs)),
                "status_json": summary(wall_times([*cli, "status", "--json"], env, args.runs)),
                "version": summary(wall_times([*cli, "version"], env, args.runs)),
                "peers_via_cyclopts": summary(wall_times([*cli, "peers"], env, args.runs)),
            }
        finally:
            broker.terminate()
            broker.wait(timeout=20)
    figures["target_status_median_ms"] = TARGET_STATUS_MS
    figures["status_within_target"] = figures["status"]["median_ms"] <= TARGET_STATUS_MS
    figures["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
