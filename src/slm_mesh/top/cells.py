"""The words on ``slm-mesh top``'s screen: each pane's rows and the header, as plain text.

Pure functions of the model and the time, so they are tested without a terminal. Widths
are the screen's business (:mod:`slm_mesh.top.app` cuts cells to fit); here every value is
already short: times relative ("3 min", "away 12 s"), paths home-relative, one line each.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Sequence
from typing import Any

from slm_mesh.cli.cmd_events import describe
from slm_mesh.cli.render import home_relative

BARS = "▁▂▃▄▅▆▇█"
SPARK_MINUTES = 10

PEER_COLUMNS = ("NAME", "AGENT", "WHERE", "STATUS", "UNREAD", "SINCE", "SUMMARY")
LOCK_COLUMNS = ("PATH", "MODE", "HOLDER", "EXPIRES", "WAIT")
MESSAGE_COLUMNS = ("TIME", "FROM → TO", "FIRST LINE")
EVENT_COLUMNS = ("TIME", "TYPE", "WHAT")


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled to the largest (all zeros: all lowest)."""
    top = max(values, default=0)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, round(v / top * (len(BARS) - 1)))] for v in values)


def short_span(seconds: float) -> str:
    """A duration in at most 4 columns: ``42s``, ``8m``, ``3h``, ``2d`` (never negative)."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{round(seconds)}s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)}m"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)}h"
    return f"{round(seconds / 86400)}d"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


# -- peers -------------------------------------------------------------------------------


def where(peer: dict[str, Any], with_host: bool = True) -> str:
    """``[host:]repo (branch)``, or the working directory's last part outside a repo; the
    host only ``with_host`` (a mesh of several machines)."""
    root = peer.get("git_root") or peer.get("cwd") or ""
    text = posixpath.basename(root.rstrip("/")) or root or "-"
    if peer.get("git_branch"):
        text += f" ({peer['git_branch']})"
    if with_host and peer.get("host"):
        text = f"{peer['host']}:{text}"
    return text


def since(peer: dict[str, Any], now: float) -> str:
    """How long it has been connected, or how long it has been away."""
    if peer.get("status") == "away":
        return f"away {short_span(now - float(peer.get('last_seen') or now))}"
    return short_span(now - float(peer.get("joined_at") or now))


def peer_row(peer: dict[str, Any], now: float, with_host: bool = False) -> tuple[str, ...]:
    unread = int(peer.get("unread") or 0)
    return (
        str(peer.get("name") or peer.get("peer_id")),
        str(peer.get("agent") or "-"),
        where(peer, with_host),
        str(peer.get("status") or "-"),
        str(unread) if unread else "",
        since(peer, now),
        " ".join(str(peer.get("summary") or "").split()),
    )


def peer_details(peer: dict[str, Any], locks: Sequence[dict[str, Any]], now: float) -> str:
    """Everything known of one peer, a field a line, for the ``i`` panel."""
    lines = [
        ("name", peer.get("name")),
        ("peer id", peer.get("peer_id")),
        ("agent", peer.get("agent")),
        ("host", peer.get("host")),
        ("pid", peer.get("pid")),
        ("cwd", home_relative(peer.get("cwd"))),
        ("repository", home_relative(peer.get("git_root")) if peer.get("git_root") else None),
        ("branch", peer.get("git_branch")),
        ("status", peer.get("status")),
        ("connected", since(peer, now) if peer.get("status") != "away" else "no"),
        ("joined", clock(peer["joined_at"]) if peer.get("joined_at") else None),
        ("unread", peer.get("unread", 0)),
        ("summary", peer.get("summary") or "-"),
    ]
    out = [f"{label:>10}  {value}" for label, value in lines if value not in (None, "")]
    held = [lk for lk in locks if lk.get("peer_id") == peer.get("peer_id")]
    out.append(f"{'locks':>10}  {len(held) or 'none'}")
    out.extend(f"{'':>10}  {lock_path(lk['path'])} ({lk['mode']})" for lk in held)
    return "\n".join(out)


# -- locks -------------------------------------------------------------------------------


def lock_path(path: str) -> str:
    return home_relative(path)


def lock_row(lock: dict[str, Any], names: dict[str, str], now: float) -> tuple[str, ...]:
    waiters = int(lock.get("waiters") or 0)
    holder = lock.get("holder") or names.get(lock.get("peer_id", ""), lock.get("peer_id"))
    expires_at = lock.get("expires_at")
    return (
        lock_path(lock["path"]),
        "excl" if lock.get("mode") == "exclusive" else "shared",
        str(holder),
        short_span(float(expires_at) - now) if expires_at else "-",
        str(waiters) if waiters else "",
    )


# -- messages and events -----------------------------------------------------------------


def message_row(message: dict[str, Any], names: dict[str, str]) -> tuple[str, ...]:
    sender = message.get("from_name") or message.get("from") or "?"
    if message.get("to") == "all":
        to = f"all ({len(message.get('recipients') or [])})"
    else:
        to = str(message.get("to_name") or names.get(message.get("to", ""), message.get("to")))
    kind = message.get("type", "text")
    text = message.get("preview") or ""
    if kind != "text":
        text = f"[{kind}] {text}"
    return (clock(message["sent_at"]), f"{sender} → {to}", text)


def event_row(event: dict[str, Any]) -> tuple[str, ...]:
    return (clock(event["ts"]), str(event["type"]), " ".join(describe(event).split()))


# -- header ------------------------------------------------------------------------------


def broker_line(
    status: dict[str, Any] | None,
    uptime_s: float | None,
    connected: bool,
    problem: str | None,
    socket: str,
) -> str:
    if problem is None and not connected:
        return f"connecting to the broker · {socket}"
    if not connected or status is None:
        return f"{problem or 'broker stopped'} · waiting for it · {socket}"
    up = f" · up {short_span(uptime_s)}" if uptime_s is not None else ""
    if (status.get("store") or {}).get("available") is False:  # a shared store out of reach
        up = " · SHARED STORE OUT OF REACH: calls fail"
    line = f"broker {status['pid']}{up} · {socket}"
    person = status.get("person")
    if person:  # the person at the shell: who top sends and releases as
        unread = int(person.get("unread") or 0)
        line += f" · you: {person.get('name')}" + (f" ({unread} unread)" if unread else "")
    return line


def figures_line(
    view_peers: Sequence[dict[str, Any]],
    locks: int,
    status: dict[str, Any] | None,
    calls_per_s: float | None,
    messages_per_min: float | None,
) -> str:
    away = sum(1 for p in view_peers if p.get("status") == "away")
    count = len(view_peers)
    parts = [f"{count} peer{'s' if count != 1 else ''}" + (f" ({away} away)" if away else "")]
    parts.append(f"{locks} lock{'s' if locks != 1 else ''}")
    if status is not None:
        parts.append(f"{status['counts'].get('unread', 0)} unread")
        activity = status.get("activity") or {}
        per_minute = activity.get("per_minute") or {}
        messages = per_minute.get("messages") or []
        calls = per_minute.get("calls") or []
        parts.append(
            f"{_figure(messages_per_min)} msg/min {sparkline(messages[-SPARK_MINUTES:])}".rstrip()
        )
        parts.append(f"{_figure(calls_per_s)} calls/s {sparkline(calls[-SPARK_MINUTES:])}".rstrip())
    return " · ".join(parts)


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def socket_text(path: os.PathLike[str] | str) -> str:
    return home_relative(os.fspath(path))
