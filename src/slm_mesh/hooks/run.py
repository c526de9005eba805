"""What the agents' hook entries run: ``<python> -I -S <this file> EVENT [--agent A]``.

The same as ``slm-mesh hook EVENT``, minus the interpreter's ``site`` start-up (about a
third of an empty Python's time here), which a hook that runs at every tool call cannot
afford: ``-S`` skips it, ``-I`` keeps the user's ``PYTHON*`` variables and directories out.
Without ``site`` the package is not on ``sys.path``, so this file puts the folder that holds
it there (``.../site-packages`` or the source tree of an editable install).
"""

import sys

if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 3)[0])
    from slm_mesh.hooks.main import run

    run(sys.argv[1:])
