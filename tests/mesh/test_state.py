"""Shared state: per-key versions, compare-and-set, TTL, limits and prefix listing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from slm_mesh.config import Limits
from slm_mesh.mesh.shared_state import PAGE_BYTES
from slm_mesh.protocol import errors
from tests.mesh.harness import PERSON, Bench


def set_(bench: Bench, key: str, value: Any, conn: int = 0, **params: Any) -> int:
    version: int = bench.call(conn, "state.set", key=key, value=value, **params)["version"]
    return version


def test_each_write_of_a_key_bumps_its_version_from_one(bench: Bench) -> None:
    assert [set_(bench, "k", i) for i in range(3)] == [1, 2, 3]
    assert set_(bench, "other", 0) == 1
    got = bench.call(0, "state.get", key="k")
    assert (got["value"], got["version"]) == (2, 3)


def test_get_returns_the_value_who_wrote_it_and_when(bench: Bench) -> None:
    peer = bench.register("writer")
    set_(bench, "k", {"nested": [1, "two", None]}, conn=peer.conn)
    got = bench.call(0, "state.get", key="k")
    assert got["key"] == "k"
    assert got["value"] == {"nested": [1, "two", None]}
    assert got["updated_by"] == "writer"
    assert got["updated_at"] == bench.now
    set_(bench, "k", 1)
    assert bench.call(0, "state.get", key="k")["updated_by"] == PERSON


def test_a_missing_key_reads_as_null(bench: Bench) -> None:
    assert bench.call(0, "state.get", key="nothing") is None


def test_namespaces_keep_keys_apart(bench: Bench) -> None:
    set_(bench, "k", "a", namespace="one")
    set_(bench, "k", "b", namespace="two")
    assert bench.call(0, "state.get", key="k", namespace="one")["value"] == "a"
    assert bench.call(0, "state.get", key="k", namespace="two")["value"] == "b"
    assert bench.call(0, "state.get", key="k") is None


def test_a_key_deleted_and_written_again_starts_at_version_one(bench: Bench) -> None:
    set_(bench, "k", 1)
    set_(bench, "k", 2)
    assert bench.call(0, "state.delete", key="k") == {"deleted": True}
    assert bench.call(0, "state.get", key="k") is None
    assert bench.call(0, "state.delete", key="k") == {"deleted": False}
    assert set_(bench, "k", 3) == 1


def test_every_change_emits_an_event(bench: Bench) -> None:
    set_(bench, "k", 1)
    set_(bench, "k", 2)
    bench.call(0, "state.delete", key="k")
    changed = [e["data"]["version"] for e in bench.events("state_changed")]
    assert changed == [1, 2]
    [deleted] = bench.events("state_deleted")
    assert deleted["data"]["reason"] == "deleted"
    assert deleted["data"]["deleted_by"] == PERSON


# -- compare-and-set ---------------------------------------------------------------------


def test_a_write_with_the_current_version_succeeds(bench: Bench) -> None:
    set_(bench, "k", "a")
    assert set_(bench, "k", "b", if_version=1) == 2


def test_a_write_with_a_stale_version_is_a_version_conflict_naming_the_current_one(
    bench: Bench,
) -> None:
    set_(bench, "k", "a")
    set_(bench, "k", "b")
    with pytest.raises(errors.VersionConflict) as exc:
        set_(bench, "k", "stale", if_version=1)
    assert exc.value.code == errors.VERSION_CONFLICT
    assert exc.value.data == {"version": 2}
    assert bench.call(0, "state.get", key="k")["value"] == "b"


def test_if_version_zero_creates_a_key_only_if_it_does_not_exist(bench: Bench) -> None:
    assert set_(bench, "k", "first", if_version=0) == 1
    with pytest.raises(errors.VersionConflict) as exc:
        set_(bench, "k", "second", if_version=0)
    assert exc.value.data == {"version": 1}
    assert bench.call(0, "state.get", key="k")["value"] == "first"


def test_a_versioned_write_to_a_missing_key_reports_version_zero(bench: Bench) -> None:
    with pytest.raises(errors.VersionConflict) as exc:
        set_(bench, "k", "x", if_version=3)
    assert exc.value.data == {"version": 0}
    assert bench.call(0, "state.get", key="k") is None


def test_a_delete_with_a_stale_version_is_a_conflict_and_keeps_the_key(bench: Bench) -> None:
    set_(bench, "k", "a")
    set_(bench, "k", "b")
    with pytest.raises(errors.VersionConflict) as exc:
        bench.call(0, "state.delete", key="k", if_version=1)
    assert exc.value.data == {"version": 2}
    assert bench.call(0, "state.delete", key="k", if_version=2) == {"deleted": True}


def test_a_failed_compare_and_set_emits_nothing(bench: Bench) -> None:
    set_(bench, "k", "a")
    bench.take()
    with pytest.raises(errors.VersionConflict):
        set_(bench, "k", "b", if_version=5)
    assert bench.events() == []


# -- TTL ---------------------------------------------------------------------------------


def test_a_key_reads_as_absent_once_its_ttl_is_up(bench: Bench) -> None:
    set_(bench, "k", "v", ttl=10)
    set_(bench, "kept", "v")
    bench.advance(9.9)
    assert bench.call(0, "state.get", key="k")["value"] == "v"
    assert bench.call(0, "state.get", key="k")["expires_at"] == pytest.approx(bench.now + 0.1)
    bench.advance(0.1)
    assert bench.call(0, "state.get", key="k") is None
    assert [e["key"] for e in bench.call(0, "state.list")["entries"]] == ["kept"]
    with pytest.raises(errors.VersionConflict) as exc:
        set_(bench, "k", "v", if_version=1)
    assert exc.value.data == {"version": 0}
    assert set_(bench, "k", "again") == 1


def test_upkeep_deletes_expired_keys_and_emits_state_deleted(bench: Bench) -> None:
    set_(bench, "k", "v", ttl=10)
    set_(bench, "kept", "v", ttl=100)
    bench.advance(10)
    bench.take()
    assert bench.mesh.upkeep(bench.now)["expired_keys"] == 1
    bench._collect()
    [deleted] = bench.events("state_deleted")
    assert deleted["data"] == {
        "namespace": "default",
        "key": "k",
        "deleted_by": None,
        "reason": "expired",
    }
    assert bench.store.state_get("default", "k") is None
    assert bench.store.state_get("default", "kept") is not None
    assert bench.mesh.upkeep(bench.now)["expired_keys"] == 0


def test_a_write_without_ttl_makes_a_key_permanent_again(bench: Bench) -> None:
    set_(bench, "k", "v", ttl=10)
    set_(bench, "k", "w")
    bench.advance(60)
    assert bench.call(0, "state.get", key="k")["value"] == "w"


# -- limits ------------------------------------------------------------------------------


def test_a_key_over_the_limit_is_too_large() -> None:
    bench = Bench(limits=Limits(max_key_bytes=4))
    set_(bench, "abcd", 1)
    for key in ("abcde", "éé€"):
        with pytest.raises(errors.TooLarge) as exc:
            set_(bench, key, 1)
        assert exc.value.code == errors.TOO_LARGE
        assert exc.value.data["limit"] == 4
        with pytest.raises(errors.TooLarge):
            bench.call(0, "state.get", key=key)


def test_a_value_over_the_limit_is_too_large() -> None:
    bench = Bench(limits=Limits(max_value_bytes=10))
    set_(bench, "k", "12345678")  # '"12345678"' is ten bytes of JSON
    with pytest.raises(errors.TooLarge) as exc:
        set_(bench, "k", "123456789")
    assert exc.value.data["limit"] == 10
    with pytest.raises(errors.TooLarge):
        set_(bench, "k", "ééé")  # short text, but escaped to \\u00e9 it is longer
    assert bench.call(0, "state.get", key="k")["version"] == 1


def test_an_empty_key_is_invalid_params(bench: Bench) -> None:
    with pytest.raises(errors.InvalidParams) as exc:
        set_(bench, "", 1)
    assert exc.value.data == {"field": "key"}


# -- listing -----------------------------------------------------------------------------


def test_list_returns_a_namespaces_keys_in_order(bench: Bench) -> None:
    for key in ("b", "a", "c"):
        set_(bench, key, key)
    set_(bench, "z", 0, namespace="other")
    entries = bench.call(0, "state.list")["entries"]
    assert [(e["key"], e["value"]) for e in entries] == [("a", "a"), ("b", "b"), ("c", "c")]


def test_a_prefix_takes_percent_and_underscore_literally(bench: Bench) -> None:
    for key in ("a%b", "axb", "a_c", "abc", "A_c", "a"):
        set_(bench, key, 1)

    def listed(prefix: str) -> list[str]:
        return [e["key"] for e in bench.call(0, "state.list", prefix=prefix)["entries"]]

    assert listed("a%") == ["a%b"]
    assert listed("a_") == ["a_c"]
    assert listed("ab") == ["abc"]
    assert listed("a") == ["a", "a%b", "a_c", "abc", "axb"]


def test_list_pages_by_limit_and_after_until_next_after_is_null(bench: Bench) -> None:
    keys = [f"k{i:03}" for i in range(25)]
    for key in reversed(keys):
        set_(bench, key, key)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10} | ({"after": after} if after else {})
        page = bench.call(0, "state.list", **params)
        assert len(page["entries"]) <= 10
        seen += [e["key"] for e in page["entries"]]
        pages += 1
        assert pages <= 3, f"a page came back twice: {seen}"
        after = page["next_after"]
        if after is None:
            break
        assert after == page["entries"][-1]["key"]
    assert seen == keys


def test_a_full_last_page_says_there_is_no_more(bench: Bench) -> None:
    for key in ("a", "b"):
        set_(bench, key, 1)
    assert bench.call(0, "state.list", limit=2)["next_after"] is None
    assert bench.call(0, "state.list", limit=1)["next_after"] == "a"
    assert bench.call(0, "state.list", after="b") == {"entries": [], "next_after": None}


def test_after_combines_with_prefix_and_skips_expired_keys(bench: Bench) -> None:
    for key in ("app.a", "app.b", "app.c", "other"):
        set_(bench, key, 1)
    set_(bench, "app.bb", 1, ttl=5)
    bench.advance(10)
    page = bench.call(0, "state.list", prefix="app.", after="app.a")
    assert [e["key"] for e in page["entries"]] == ["app.b", "app.c"]
    assert page["next_after"] is None


def test_a_limit_above_the_maximum_is_capped(bench: Bench) -> None:
    for i in range(1001):
        set_(bench, f"k{i:04}", i)
    page = bench.call(0, "state.list", limit=5000)
    assert len(page["entries"]) == 1000
    assert page["next_after"] == "k0999"


def test_a_page_stops_at_its_byte_budget_but_always_holds_a_key(bench: Bench) -> None:
    big = "v" * 60_000  # under the 64 KiB value limit
    n = PAGE_BYTES // len(big) + 5
    for i in range(n):
        set_(bench, f"k{i:03}", big)
    first = bench.call(0, "state.list", limit=1000)
    encoded = sum(len(e["key"]) + len(json.dumps(e["value"])) for e in first["entries"])
    assert 0 < len(first["entries"]) < n
    assert encoded <= PAGE_BYTES
    assert first["next_after"] == first["entries"][-1]["key"]
    rest = bench.call(0, "state.list", limit=1000, after=first["next_after"])
    assert len(first["entries"]) + len(rest["entries"]) == n
    assert rest["next_after"] is None
    huge = Bench(limits=Limits(max_value_bytes=2 * PAGE_BYTES))
    set_(huge, "one", "v" * (PAGE_BYTES + 10))
    set_(huge, "two", 2)
    alone = huge.call(0, "state.list")
    huge.store.close()
    assert [e["key"] for e in alone["entries"]] == ["one"]  # over the budget, yet it comes
    assert alone["next_after"] == "one"
