"""Generate the man pages in ``man/`` from the CLI and the method table.

``slm-mesh.1`` is the hand-written ``man/slm-mesh.1.rst`` with every command's reference
put in at ``@COMMANDS@``, taken from the cyclopts app (``App.generate_docs``, RST), so the
page and ``--help`` can't disagree. ``slm-mesh-protocol.7`` is ``man/slm-mesh-protocol.7.rst``
with the methods, error codes, event types and socat examples generated from
:mod:`slm_mesh.protocol.table`, :mod:`slm_mesh.protocol.errors` and
:mod:`slm_mesh.cli.shell_examples`. docutils' manpage writer turns the RST into roff.

Run ``python -m slm_mesh.cli.manpages`` after changing a command or the protocol; a test
fails while the checked-in pages differ from what this produces. Needs docutils (the
``test`` extra); the installed pages are the generated files, so users never need it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slm_mesh.cli.shell_examples import EXAMPLES, SOCKET_EXPLANATION, SOCKET_LINE
from slm_mesh.config import PROTOCOL_VERSION, VERSION
from slm_mesh.protocol import errors
from slm_mesh.protocol.methods import Method, Param
from slm_mesh.protocol.table import EVENT_TYPES, METHOD_LIST

PAGES = ("slm-mesh.1", "slm-mesh-protocol.7")
REPO_MAN_DIR = Path(__file__).resolve().parents[3] / "man"

# What each error code means (ARCHITECTURE.md §4). Generation fails for a code without one.
ERROR_WHEN: dict[int, str] = {
    errors.PARSE_ERROR: "the line is not JSON (``id`` is null)",
    errors.INVALID_REQUEST: "not a JSON-RPC 2.0 request, or nested too deep",
    errors.METHOD_NOT_FOUND: "no such method",
    errors.INVALID_PARAMS: "a param is missing, unknown or of the wrong type "
    "(``data.field`` names it)",
    errors.INTERNAL_ERROR: "a bug in the broker (the log has the details)",
    errors.NOT_REGISTERED: "the call needs a peer session and this connection has none, "
    "or its session was taken from it (**peer.detached**) and it has not registered again",
    errors.PEER_NOT_FOUND: "unknown or departed peer id or name",
    errors.LOCK_CONFLICT: "the lock is held by another session (``data.holders`` lists them)",
    errors.VERSION_CONFLICT: "``if_version`` did not match (``data.version`` is the current one)",
    errors.TOO_LARGE: "a size limit was exceeded (``data.limit``)",
    errors.RATE_LIMITED: "too many calls (``data.retry_after`` seconds)",
    errors.QUOTA_EXCEEDED: "too many connections, or too far behind on notifications",
    errors.SHUTTING_DOWN: "the broker is stopping",
    errors.UNAUTHORIZED: "TCP without a valid token, or another user's connection",
    errors.STORE_UNAVAILABLE: "the shared store (PostgreSQL) can't be reached: nothing was "
    "done, unless ``data.maybe_done`` is true (no answer within the call's deadline: it may "
    "still be done, check before doing it again); retry after ``data.retry_after`` seconds",
}


# -- RST pieces ------------------------------------------------------------------------


def commands_rst() -> str:
    """Every command's reference, from the cyclopts app, as RST sections."""
    from slm_mesh.cli.app import app

    # cyclopts names a command's own usage line after the running program, and under
    # `python -m slm_mesh.cli.manpages` that is three words of which it replaces one:
    # make the program one word for the while, so every run writes the same page.
    argv0, sys.argv[0] = sys.argv[0], "slm-mesh"
    try:
        docs = _generate(app)
    finally:
        sys.argv[0] = argv0
    # Drop the app's own block (usage, description, table of contents, command list):
    # the page's SYNOPSIS and DESCRIPTION say that. Commands start at their first label.
    first = docs.index(".. _cyclopts-slm-mesh-")
    docs = docs[first:]
    # A command with a usage line of its own ("Usage: slm-mesh lock check … PATH...") gets
    # its command chain put in front of it again: say it once.
    docs = re.sub(r"(?m)^    Usage: (slm-mesh(?: [a-z-]+)*) ", r"    \1 ", docs)
    docs = re.sub(r"(?m)^    (slm-mesh(?: [a-z-]+)*) \1 ", r"    \1 ", docs)
    return docs.strip() + "\n"


def _generate(app: Any) -> str:
    docs: str = app.generate_docs(
        output_format="rst", flatten_commands=True, heading_level=2, usage_name="slm-mesh"
    )
    return docs


def _param_rst(p: Param) -> str:
    facts = [p.kind]
    if p.required:
        facts.append("required")
    elif "default" in (schema := p.schema()):
        facts.append(f"default {json.dumps(schema['default'])}")
    if p.enum:
        facts.append("one of " + ", ".join(p.enum))
    return f"*{p.name}* ({'; '.join(facts)}): {p.description}"


def method_rst(m: Method) -> str:
    lines = [f"**{m.name}**", f"    {m.summary}"]
    if m.session:
        lines[-1] += " *Needs a session.*"
    lines.append("")
    if m.params:
        for p in m.params:
            lines.append(f"    - {_param_rst(p)}")
    else:
        lines.append("    - no params")
    lines.append("")
    lines.append(f"    Result: ``{m.result}``")
    return "\n".join(lines)


def methods_rst(methods: Iterable[Method] = METHOD_LIST) -> str:
    return "\n\n".join(method_rst(m) for m in methods) + "\n"


def errors_rst() -> str:
    blocks = []
    for code, name in sorted(errors.ERROR_NAMES.items(), reverse=True):
        blocks.append(f"**{code}** {name}\n    {ERROR_WHEN[code]}")
    return "\n\n".join(blocks) + "\n"


def socat_rst() -> str:
    blocks = []
    for example in EXAMPLES:
        blocks.append(f"{example.title}::\n\n    {example.command}\n\n{example.explanation}")
    return "\n\n".join(blocks) + "\n"


def fill(template: str, values: dict[str, str]) -> str:
    """Replace each ``@NAME@`` in ``template``; every marker must have a value."""

    def one(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return re.sub(r"@([A-Z_]+)@", one, template)


def page_rst(page: str, man_dir: Path) -> str:
    template = (man_dir / f"{page}.rst").read_text(encoding="utf-8")
    values = {"VERSION": VERSION, "PROTOCOL": str(PROTOCOL_VERSION)}
    if page == "slm-mesh.1":
        values["COMMANDS"] = commands_rst()
    else:
        values.update(
            METHODS=methods_rst(),
            ERRORS=errors_rst(),
            EVENT_TYPES=", ".join(f"``{t}``" for t in EVENT_TYPES),
            SOCKET_LINE=SOCKET_LINE,
            SOCKET_EXPLANATION=SOCKET_EXPLANATION,
            SOCAT=socat_rst(),
        )
    return fill(template, values)


# -- roff ------------------------------------------------------------------------------


def to_roff(rst: str) -> str:
    """The roff of ``rst`` (docutils' manpage writer); any RST warning is an error."""
    import docutils.core  # type: ignore[import-untyped]  # no stubs; test extra only
    from docutils.writers import manpage  # type: ignore[import-untyped]

    roff = docutils.core.publish_string(
        rst,
        writer=manpage.Writer(),
        settings_overrides={
            "report_level": 2,
            "halt_level": 2,
            "output_encoding": "unicode",
            "input_encoding": "unicode",
        },
    )
    text = roff if isinstance(roff, str) else roff.decode("utf-8")
    # roff input is ASCII: write anything else as groff's \[uXXXX] (man's preconv would
    # do it on the fly, plain groff warns and drops the character).
    text = re.sub(r"[^\x00-\x7f]", lambda m: f"\\[u{ord(m.group()):04X}]", text)
    # The writer names its own version; leave it out so the pages don't change with it.
    return re.sub(
        r"(?m)^\.\\\" by the Docutils [^ ]+ manpage writer\.$",
        r'.\\" by the Docutils manpage writer.',
        text,
    )


def render(page: str, man_dir: Path = REPO_MAN_DIR) -> str:
    return to_roff(page_rst(page, man_dir))


def stale(man_dir: Path = REPO_MAN_DIR) -> list[str]:
    """The pages whose checked-in roff differs from what would be generated now."""
    out = []
    for page in PAGES:
        target = man_dir / page
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != render(page, man_dir):
            out.append(page)
    return out


def write(man_dir: Path = REPO_MAN_DIR) -> list[Path]:
    written = []
    for page in PAGES:
        target = man_dir / page
        target.write_text(render(page, man_dir), encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m slm_mesh.cli.manpages", description="Generate slm-mesh's man pages."
    )
    parser.add_argument("--dir", type=Path, default=REPO_MAN_DIR, help="the man/ folder")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a page is out of date; write nothing"
    )
    args = parser.parse_args(argv)
    if args.check:
        pages = stale(args.dir)
        for page in pages:
            print(f"{args.dir / page} is out of date: run python -m slm_mesh.cli.manpages")
        return 1 if pages else 0
    for path in write(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
