"""The helpers behind the leak check at the end of every test that uses ``tmp_short``
(tests/conftest.py): they find a process by the data dir in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.wire import processes_in, processes_under


def test_a_process_is_found_by_its_data_dir_or_any_folder_above_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "root" / "d"
    env = {**os.environ, "SLM_MESH_DATA_DIR": str(data_dir)}
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    proc = subprocess.Popen(sleeper, env=env)
    try:
        assert processes_in(data_dir) == [proc.pid]
        assert processes_under(tmp_path / "root") == [proc.pid]
        assert processes_under(data_dir) == [proc.pid]
        assert processes_in(tmp_path / "root") == []
        assert processes_under(tmp_path / "ro") == []  # a prefix of the name is not a folder
    finally:
        proc.kill()
        proc.wait()
    assert processes_under(tmp_path / "root") == []
