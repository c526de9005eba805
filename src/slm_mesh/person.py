"""The person at the shell: one stable identity, named once for the broker and the CLI.

Rules:
1. The mesh has one person: the user the broker runs for. Its peer id is always
   ``person``; its name is ``SLM_MESH_PERSON`` when that is set where the broker starts,
   else the login name. The id never changes, so nothing sent to the person is lost when the
   name does (a broker started with another environment): the name is only a label.
2. A name the mesh could not route (``all``, ``cli``, empty, over 64 characters, or with
   characters other than letters, digits, ``.``, ``_`` and ``-``) is not used: the login name,
   made safe, takes its place.
3. Where the brokers of several machines share one store, every machine has its person:
   the user its broker runs for there. Its id is ``person:<login>@<host>`` (per machine and
   user, and never changing with the name either) and the mesh shows it as
   ``<name>@<host>``, so a message from the person of one machine is told apart from, and
   answered to, that machine's person. With one machine (SQLite) the id stays ``person``
   and the name is shown as it is.

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


def identity(name: str, host: str, *, shared: bool, login: str | None = None) -> tuple[str, str]:
    """The person's peer id and the name the mesh shows for it (rule 3): on one machine
    ``person`` and ``name``; in a store several machines share, qualified by ``host``."""
    if not shared:
        return PERSON_ID, name
    return f"{PERSON_ID}:{login or login_name()}@{host}", f"{name}@{host}"


def is_person_id(peer_id: str | None) -> bool:
    """Whether ``peer_id`` is a person's (this machine's or another's), never a session's."""
    return bool(peer_id) and (peer_id == PERSON_ID or str(peer_id).startswith(PERSON_ID + ":"))


def bare(name: str) -> str:
    """A person's name without its host (``dave@boxb`` → ``dave``): names have no ``@``."""
    return name.partition("@")[0]


def person_name(environ: dict[str, str] | None = None) -> str:
    """The person's name: ``SLM_MESH_PERSON`` if usable, else the login name (rule 1)."""
    wanted = (os.environ if environ is None else environ).get("SLM_MESH_PERSON", "").strip()
    return wanted if usable(wanted) else login_name()
