"""The wire protocol: NDJSON framing and JSON-RPC 2.0, pure and synchronous (sans-IO).

Bytes go in, requests come out; results go in, bytes come out. Nothing here does I/O or
imports beyond the stdlib, so every rule is tested without a socket.
"""
