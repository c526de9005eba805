"""Coverage-guided fuzzing of the protocol core with atheris (libFuzzer).

    pip install atheris
    python bench/fuzz_protocol.py -atheris_runs=500000            # a bounded run
    python bench/fuzz_protocol.py -max_total_time=600 /tmp/corpus   # longer, keeps a corpus

Each input is cut into chunks (its first byte picks the chunk size) and fed to a
``LineBuffer`` with a small cap; every line is parsed, every element of the result is
answered (the answer must be one line of strict JSON echoing the id), and every call of a
known method has its params validated. Anything but the documented results (lines within
the cap, -32700/-32600 for bad envelopes, ``InvalidParams``/``TooLarge`` naming a field)
raises, and libFuzzer reports the input. At exit it prints one JSON line of figures.
The hypothesis tests in ``tests/hardening/test_fuzz_protocol.py`` check the same promises
against a specification oracle on every test run; this is the long, coverage-guided run.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import tempfile
import time
from typing import Any

atheris: Any = importlib.import_module("atheris")

with atheris.instrument_imports():
    from slm_mesh.protocol import errors, jsonrpc
    from slm_mesh.protocol.framing import LineBuffer, LineTooLong
    from slm_mesh.protocol.jsonrpc import Batch, Call, Invalid
    from slm_mesh.protocol.methods import validate
    from slm_mesh.protocol.table import METHODS

CAP = 128
ENVELOPE_CODES = (errors.PARSE_ERROR, errors.INVALID_REQUEST)
counts = {"inputs": 0, "lines": 0, "too_long": 0, "calls": 0, "validated": 0, "refused": 0}
started = time.monotonic()
deadline: float | None = None  # -max_total_time, kept by us: libFuzzer's skips atexit

SEEDS = [
    b'{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}\n',
    b'[{"jsonrpc":"2.0","id":1,"method":"lock.acquire","params":{"path":"/r/**","wait":1}}]\n',
    b'{"jsonrpc":"2.0","id":"x","method":"message.send","params":{"to":"all","body":"\\ud800"}}\n',
    b'{"jsonrpc":"2.0","id":1e400,"method":"state.set","params":{"key":"k","value":[[{}]]}}\r\n',
]


def _strict(line: bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(name)

    return json.loads(line, parse_constant=no_constants)


def _answer(item: Call | Invalid, codes: tuple[int, ...] = ENVELOPE_CODES) -> None:
    if isinstance(item, Invalid):
        if item.error.code not in codes:
            raise AssertionError(f"undocumented error {item.error.code}")
        line = jsonrpc.encode(jsonrpc.error_response(item.id, item.error))
    else:
        line = jsonrpc.encode(jsonrpc.response(item.id, None))
    if line.count(b"\n") != 1 or _strict(line)["id"] != item.id:
        raise AssertionError(f"answer is not one strict JSON line: {line[:200]!r}")


def _validate(call: Call) -> None:
    method = METHODS.get(call.method)
    if method is None:
        return
    counts["validated"] += 1
    try:
        validate(method, call.params)
    except (errors.InvalidParams, errors.TooLarge) as exc:
        counts["refused"] += 1
        if not isinstance(exc.data, dict) or not isinstance(exc.data.get("field"), str):
            raise AssertionError(f"error names no field: {exc.data!r}") from None
        _answer(Invalid(exc, call.id), (errors.INVALID_PARAMS, errors.TOO_LARGE))


def test_one_input(data: bytes) -> None:
    counts["inputs"] += 1
    if deadline is not None and time.monotonic() > deadline:
        _report()
        os._exit(0)
    if not data:
        return
    step = data[0] % 64 + 1
    buf = LineBuffer(CAP)
    for i in range(1, len(data), step):
        for line in buf.feed(data[i : i + step]):
            counts["lines"] += 1
            if isinstance(line, LineTooLong):
                counts["too_long"] += 1
                continue
            if len(line) > CAP or b"\n" in line:
                raise AssertionError("framing let through more than one capped line")
            parsed = jsonrpc.parse_line(line)
            for item in parsed.items if isinstance(parsed, Batch) else [parsed]:
                _answer(item)
                if isinstance(item, Call):
                    counts["calls"] += 1
                    _validate(item)
        if buf.buffered > CAP + 1:
            raise AssertionError(f"framing holds {buf.buffered} bytes")


def _report() -> None:
    seconds = time.monotonic() - started
    print(json.dumps({**counts, "seconds": round(seconds, 1), "cap": CAP}), flush=True)


def _dict_entry(token: bytes) -> str:
    """One libFuzzer dictionary line: the token in quotes, unsafe bytes as \\xNN."""
    safe = [chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in token]
    return '"' + "".join(safe) + '"'


def _dictionary() -> list[str]:
    """libFuzzer dictionary entries: JSON-RPC members, method and param names, tokens."""
    words = {"jsonrpc", "2.0", "id", "method", "params", *METHODS}
    words |= {p.name for m in METHODS.values() for p in m.params}
    tokens = [json.dumps(w).encode() for w in sorted(words)]
    tokens += [b"{", b"}", b"[", b"]", b":", b",", b"null", b"true", b"1e400", b"\r\n"]
    tokens += [b'"\\ud800"', b"\xed\xa0\x80", b"[[[[[[[[", b'{"a":{"a":{"a":']
    return [_dict_entry(t) for t in tokens]


def main() -> None:
    """Seeds and a dictionary are added unless a corpus dir or -dict= is given."""
    global deadline
    args = list(sys.argv)
    for arg in [a for a in args if a.startswith("-max_total_time=")]:
        args.remove(arg)
        deadline = started + float(arg.split("=", 1)[1])
    work = tempfile.mkdtemp(prefix="slm-fuzz-")
    if not any(a.startswith("-dict=") for a in args[1:]):
        path = os.path.join(work, "json.dict")
        with open(path, "w") as f:
            f.write("\n".join(_dictionary()) + "\n")
        args.append(f"-dict={path}")
    if not [a for a in args[1:] if not a.startswith("-")]:
        corpus = os.path.join(work, "corpus")
        os.mkdir(corpus)
        for n, seed in enumerate(SEEDS):
            with open(os.path.join(corpus, f"seed{n}"), "wb") as f:
                f.write(b"\x10" + seed)
        args.append(corpus)
    for seed in SEEDS:  # the seeds themselves must pass
        test_one_input(b"\x10" + seed)
    atexit.register(_report)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
