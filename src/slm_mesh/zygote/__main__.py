"""``python -m slm_mesh.zygote``: run the warm process (started by the launcher)."""

import contextlib
import logging
import os
import sys

from slm_mesh.config import Settings
from slm_mesh.zygote.warm import DEFAULT_IDLE_EXIT_S, serve

# The launcher hands us fds 0-2 only; whatever else is open came from the agent that ran
# that launcher (a pipe it did not mark close-on-exec). We outlive that launcher by up to
# idle_exit_s, and every session we fork would inherit it: close it, as Popen would. Up to
# the highest one open, not SC_OPEN_MAX: without close_range(2) (macOS, older kernels)
# closerange tries each fd in turn, and the limit may be in the millions.
with contextlib.suppress(OSError):
    os.closerange(3, max((int(name) for name in os.listdir("/dev/fd")), default=2) + 1)

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
