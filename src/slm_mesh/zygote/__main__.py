"""``python -m slm_mesh.zygote``: run the warm process (started by the launcher)."""

import logging
import os
import sys

from slm_mesh.config import Settings
from slm_mesh.zygote.warm import DEFAULT_IDLE_EXIT_S, serve

# Not the broker's setup_logging: importing slm_mesh.broker.main would load the store and
# sqlite-utils, which no session needs, on the path every cold start waits for.
logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s slm-mesh-warm[%(process)d] %(levelname)s %(name)s: %(message)s",
    stream=sys.stderr,
)
raise SystemExit(
    serve(
        Settings.from_env(),
        float(os.environ.get("SLM_MESH_ZYGOTE_IDLE_S") or DEFAULT_IDLE_EXIT_S),
    )
)
