"""``rpc.discover``: the method table rendered as an OpenRPC 1.2 document."""

from __future__ import annotations

from typing import Any

from slm_mesh.protocol import errors
from slm_mesh.protocol.table import METHOD_LIST


def openrpc_document(version: str) -> dict[str, Any]:
    methods = []
    for m in METHOD_LIST:
        methods.append(
            {
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": [
                    {
                        "name": p.name,
                        "description": p.description,
                        "required": p.required,
                        "schema": p.schema(),
                    }
                    for p in m.params
                ],
                "result": {"name": "result", "description": m.result, "schema": {}},
                "x-requires-session": m.session,
            }
        )
    return {
        "openrpc": "1.2.6",
        "info": {"title": "slm-mesh broker", "version": version},
        "methods": methods,
        "components": {
            "errors": {
                name: {"code": code, "message": name}
                for code, name in sorted(errors.ERROR_NAMES.items())
            }
        },
        "x-notifications": ["message", "event", "mesh.shutdown", "peer.detached", "message.read"],
    }
