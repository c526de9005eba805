"""The person at the shell: one stable identity, named once for the broker and the CLI.

Rules:
1. The mesh has one person: the user the broker runs for. Its peer id is always
   ``person``; its name is ``SLM_MESH_PERSON`` when that is set where the broker starts,
   else the login name. The id never changes, so nothing sent to the person is lost when the
   name does (a broker started with another environment): the name is only a label.
2. A name the mesh could not route (``all``, ``cli``, empty, over 64 characters, or with
   characters other than letters, digits, ``.``, ``_`` and ``-``) is not used: the login name,
   made safe, takes its place.

Stdlib only: the CLI and the broker import it on their start-up path.
"""

from __future__ import annotations

import getpass
import os
import re

PERSON_ID = "person"
# What anonymous connections were called before the person had a name: still an alias.
LEGACY_ALIAS = "cli"
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_UNROUTABLE = frozenset({"all", LEGACY_ALIAS})


def usable(name: str) -> bool:
    """Whether ``name`` can be the person's name (rule 2)."""
    return bool(_SAFE.fullmatch(name)) and name not in _UNROUTABLE


def login_name() -> str:
    """The user's login name, made safe to route (rule 2); ``person`` if there is none."""
    try:
        raw = getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        raw = ""
    name = _UNSAFE_CHARS.sub("-", raw).strip("-")[:64]
    return name if usable(name) else PERSON_ID


def person_name(environ: dict[str, str] | None = None) -> str:
    """The person's name: ``SLM_MESH_PERSON`` if usable, else the login name (rule 1)."""
    wanted = (os.environ if environ is None else environ).get("SLM_MESH_PERSON", "").strip()
    return wanted if usable(wanted) else login_name()
