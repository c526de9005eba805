"""``python -m slm_mesh.zygote``: run the warm process (started by the launcher)."""

import os

from slm_mesh.broker.main import setup_logging
from slm_mesh.config import Settings
from slm_mesh.zygote.warm import DEFAULT_IDLE_EXIT_S, serve

setup_logging()
raise SystemExit(
    serve(
        Settings.from_env(),
        float(os.environ.get("SLM_MESH_ZYGOTE_IDLE_S") or DEFAULT_IDLE_EXIT_S),
    )
)
