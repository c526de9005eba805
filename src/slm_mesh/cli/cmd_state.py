"""Shared key-value state: ``state get|set|list|delete``.

Values are JSON. ``state set KEY VALUE`` stores VALUE as a string unless ``--parse-json``
asks for it to be parsed, so ``state set n 10`` never silently becomes a number.
``state get`` prints a string value as it is (for ``$(slm-mesh state get k)``) and any
other value as JSON; ``--json`` prints the whole entry. ``state list`` prints every key,
asking the broker for one page after another (not a snapshot: a key written meanwhile may
be missed or shown).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from slm_mesh.cli import render
from slm_mesh.cli.cmd_peers import read_body
from slm_mesh.cli.connect import connect, load_settings
from slm_mesh.cli.outcome import FAILED, OK, usage
from slm_mesh.cli.render import Output
from slm_mesh.protocol.errors import VersionConflict

PAGE_KEYS = 1_000  # the broker's largest page


def _key_params(key: str, namespace: str) -> dict[str, Any]:
    return {"key": key, "namespace": namespace}


def get(out: Output, key: str, namespace: str) -> int:
    """Print the value of ``key``; exit 1 when there is none."""
    settings = load_settings()
    with connect(settings) as client:
        entry = client.call("state.get", _key_params(key, namespace))
    if entry is None:
        if out.as_json:
            out.json(None)
        out.error(f"no key {key!r} in namespace {namespace!r} (see `slm-mesh state list`)")
        return FAILED
    if out.as_json:
        out.json(entry)
    elif isinstance(entry["value"], str):
        out.line(entry["value"])
    else:
        out.line(json.dumps(entry["value"], ensure_ascii=False))
    return OK


def set_(
    out: Output,
    key: str,
    value: str,
    namespace: str,
    parse_json: bool,
    if_version: int | None,
    ttl: float | None,
) -> int:
    """Write ``key``; with ``if_version``, only if its version is that (0: it must not exist)."""
    text = read_body(value)
    stored: Any = text
    if parse_json:
        try:
            stored = json.loads(text)
        except ValueError as exc:
            raise usage(f"--parse-json: VALUE is not JSON: {exc}") from None
    params = {**_key_params(key, namespace), "value": stored}
    if if_version is not None:
        params["if_version"] = if_version
    if ttl is not None:
        params["ttl"] = ttl
    settings = load_settings()
    with connect(settings) as client, _advising(key, namespace):
        result = client.call("state.set", params)
    if out.as_json:
        out.json({"key": key, "namespace": namespace, "version": result["version"]})
    else:
        expiry = f", {render.expires(time.time() + ttl)}" if ttl is not None else ""
        out.line(f"set {namespace}/{key} (version {result['version']}{expiry})")
    return OK


def delete(out: Output, key: str, namespace: str, if_version: int | None) -> int:
    """Delete ``key`` (no error if it is already gone, unless ``if_version`` says it exists)."""
    params = _key_params(key, namespace)
    if if_version is not None:
        params["if_version"] = if_version
    settings = load_settings()
    with connect(settings) as client, _advising(key, namespace):
        result = client.call("state.delete", params)
    if out.as_json:
        out.json({"key": key, "namespace": namespace, "deleted": result["deleted"]})
    elif result["deleted"]:
        out.line(f"deleted {namespace}/{key}")
    else:
        out.line(f"no key {key!r} in namespace {namespace!r}: nothing deleted")
    return OK


@contextlib.contextmanager
def _advising(key: str, namespace: str) -> Iterator[None]:
    """A failed compare-and-set says what to do next (same error code and data)."""
    try:
        yield
    except VersionConflict as exc:
        current = (exc.data or {}).get("version") if isinstance(exc.data, dict) else None
        ns = "" if namespace == "default" else f" -n {namespace}"
        if current:
            advice = (
                f"someone changed it since you read it: read it again (`slm-mesh state get "
                f"{key}{ns}`) and, if your change still holds, retry with --if-version {current}"
            )
        else:
            advice = "the key does not exist (now): retry with --if-version 0 to create it"
        raise VersionConflict(f"{namespace}/{key}: {exc.message}; {advice}", exc.data) from None


def list_(out: Output, namespace: str, prefix: str | None) -> int:
    """List the keys of ``namespace`` (those starting with ``prefix``)."""
    params: dict[str, Any] = {"namespace": namespace}
    if prefix:
        params["prefix"] = prefix
    settings = load_settings()
    entries: list[dict[str, Any]] = []
    with connect(settings) as client:
        while True:  # every page
            page = client.call("state.list", {**params, "limit": PAGE_KEYS})
            entries += page["entries"]
            if page.get("next_after") is None:
                break
            params["after"] = page["next_after"]
    if out.as_json:
        out.json({"namespace": namespace, "entries": entries})
        return OK
    if not entries:
        what = f" starting with {prefix!r}" if prefix else ""
        out.line(f"no keys{what} in namespace {namespace!r}")
        return OK
    now = time.time()
    rows = [
        [
            e["key"],
            str(e["version"]),
            e["updated_by"] or "-",
            render.ago(e["updated_at"], now),
            render.expires(e["expires_at"], now) if e["expires_at"] else "-",
            e["value"] if isinstance(e["value"], str) else json.dumps(e["value"]),
        ]
        for e in entries
    ]
    out.table(["KEY", "VERSION", "BY", "UPDATED", "EXPIRES", "VALUE"], rows)
    return OK
