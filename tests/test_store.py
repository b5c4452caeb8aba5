"""The state store through its contract: commands in, reads out. Indexes as Consul
reports them, KV and lock semantics, sessions and their invalidation, transactions that
apply whole or not at all, snapshot → restore → identical reads, and the watch keys that
drive blocking queries."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import commands as C
from catalog.server import CatalogServer, SessionTimers
from catalog.store import CommandRejected, StateStore, TxnFailed
from catalog.watch import WatchHub

S = 1_000_000_000


class Log:
    """A store with an index counter, as one server drives it."""

    def __init__(self) -> None:
        self.store = StateStore()

    def __call__(self, cmd: dict[str, Any]) -> Any:
        return self.store.apply(self.store.index + 1, cmd)

    def rejected(self, cmd: dict[str, Any]) -> str:
        before = _encoded(self.store)
        with pytest.raises(CommandRejected) as e:
            self(cmd)
        assert _encoded(self.store) == before, "a rejected command changed the store"
        return str(e.value)


def _encoded(store: StateStore) -> bytes:
    snap = store.snapshot()
    snap.pop("Index")  # the applied index advances even for rejected commands
    return msgpack.packb(snap)


def node(log: Log, name: str = "n1", status: str = "passing", **kw: Any) -> None:
    log(
        C.register(
            0.0,
            name,
            "10.0.0.1",
            checks=[{"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": status}],
            **kw,
        )
    )


def web(log: Log, name: str = "n1", sid: str = "web1", tags: list[str] | None = None) -> None:
    log(
        C.register(
            0.0,
            name,
            "10.0.0.1",
            service={"ID": sid, "Service": "web", "Tags": tags or ["v1"], "Port": 80},
            checks=[{"CheckID": f"service:{sid}", "ServiceID": sid, "Status": "passing"}],
        )
    )


@pytest.fixture
def log() -> Log:
    return Log()


# ------------------------------------------------------------------------ catalog


def test_register_sets_create_and_modify_indexes_and_repeats_are_free(log: Log) -> None:
    node(log)
    web(log)
    svc = log.store.catalog_service("web")
    assert svc.value[0]["CreateIndex"] == 2 and svc.value[0]["ModifyIndex"] == 2
    assert svc.index == 2
    web(log)  # the same registration again: no index moves (anti-entropy relies on it)
    assert log.store.take_changes() == []
    assert log.store.catalog_service("web").index == 2
    web(log, tags=["v2"])
    again = log.store.catalog_service("web")
    assert again.index == 4 and again.value[0]["CreateIndex"] == 2
    assert again.value[0]["ServiceTags"] == ["v2"]


def test_reads_never_report_index_zero() -> None:
    store = StateStore()
    for r in (
        store.catalog_nodes(),
        store.catalog_services(),
        store.catalog_service("x"),
        store.kv_get("k"),
        store.kv_list("p/"),
        store.session_list(),
        store.checks_in_state("any"),
        store.coordinate_list(),
    ):
        assert r.index == 1


def test_node_names_are_case_insensitive(log: Log) -> None:
    node(log, "Node-A")
    assert log.store.catalog_node("node-a").value["Node"]["Node"] == "Node-A"
    web(log, "NODE-A")  # the same node: the latest registration's spelling wins
    assert [r["Node"] for r in log.store.catalog_service("web").value] == ["NODE-A"]
    assert len(log.store.catalog_nodes().value) == 1


def test_service_names_service_ids_and_check_ids_are_case_insensitive(log: Log) -> None:
    node(log)
    web(log, sid="Web1")
    # the same service ID in another case updates it, and checks find it by any case
    log(
        C.register(
            0.0,
            "n1",
            "10.0.0.1",
            service={"ID": "WEB1", "Service": "Web", "Tags": ["v2"], "Port": 81},
            checks=[{"CheckID": "SERVICE:web1", "ServiceID": "web1", "Status": "warning"}],
        )
    )
    rows = log.store.service_health("WEB").value
    assert len(rows) == 1 and rows[0]["Service"]["ID"] == "WEB1"
    assert [c["CheckID"] for c in rows[0]["Checks"]] == ["serfHealth", "SERVICE:web1"]
    assert log.store.catalog_service("web").value[0]["ServicePort"] == 81
    assert log.store.catalog_services().value == {"Web": ["v2"]}
    assert log.store.check("N1", "service:WEB1") is not None
    log(C.deregister(0.0, "n1", service_id="wEb1"))
    assert log.store.catalog_service("web").value == []
    assert [c["CheckID"] for c in log.store.node_checks("n1").value] == ["serfHealth"]


def test_check_for_unknown_service_is_rejected_whole(log: Log) -> None:
    node(log)
    msg = log.rejected(
        C.register(
            0.0,
            "n1",
            "10.0.0.1",
            checks=[
                {"CheckID": "ok", "Status": "passing"},
                {"CheckID": "bad", "ServiceID": "nope"},
            ],
        )
    )
    assert msg == 'Unknown service ID "nope" for check ID "bad"'
    assert log.store.check("n1", "ok") is None


def test_health_rows_put_node_checks_first_and_state_filters(log: Log) -> None:
    node(log)
    web(log)
    row = log.store.service_health("web").value[0]
    assert [c["CheckID"] for c in row["Checks"]] == ["serfHealth", "service:web1"]
    assert row["Checks"][1]["ServiceName"] == "web"
    node(log, status="critical")
    crit = log.store.checks_in_state("critical").value
    assert [c["CheckID"] for c in crit] == ["serfHealth"]


def test_node_level_check_change_touches_every_service_on_the_node(log: Log) -> None:
    node(log)
    web(log)
    log.store.take_changes()
    node(log, status="critical")
    changed = log.store.take_changes()
    assert ("service", "web") in changed and ("node", "n1") in changed
    assert log.store.service_health("web").index == log.store.index


def test_unrelated_service_change_does_not_move_another_services_index(log: Log) -> None:
    node(log)
    web(log)
    before = log.store.service_health("web").index
    log(C.register(0.0, "n1", "10.0.0.1", service={"ID": "db", "Service": "db"}))
    assert ("service", "web") not in log.store.take_changes()
    assert log.store.service_health("web").index == before


def test_deregister_node_removes_services_checks_sessions(log: Log) -> None:
    node(log)
    web(log)
    sid = log(C.session_create(0.0, {"ID": "s1", "Node": "n1", "NodeChecks": ["serfHealth"]}))
    log(C.kv(0.0, "lock", "k", b"v", session=sid))
    log(C.deregister(0.0, "n1"))
    assert log.store.catalog_node("n1").value is None
    assert log.store.catalog_service("web").value == []
    assert log.store.sessions == {}
    assert log.store.kv_get("k").value["Session"] == ""
    assert log.store.catalog_services().value == {}


def test_deregister_service_takes_its_checks(log: Log) -> None:
    node(log)
    web(log)
    log(C.deregister(0.0, "n1", service_id="web1"))
    assert [c["CheckID"] for c in log.store.node_checks("n1").value] == ["serfHealth"]


# ------------------------------------------------------------------------ KV


def test_kv_cas_zero_is_create_only_and_index_must_match(log: Log) -> None:
    assert log(C.kv(0.0, "cas", "k", b"1", index=0)) is True
    assert log(C.kv(0.0, "cas", "k", b"2", index=0)) is False
    assert log(C.kv(0.0, "cas", "k", b"2", index=99)) is False
    assert log(C.kv(0.0, "cas", "k", b"2", index=1)) is True
    ent = log.store.kv_get("k").value
    assert (ent["Value"], ent["CreateIndex"], ent["ModifyIndex"]) == (b"2", 1, 4)


def test_kv_empty_value_is_none_and_flags_kept(log: Log) -> None:
    log(C.kv(0.0, "set", "k", b"", flags=42))
    ent = log.store.kv_get("k").value
    assert ent["Value"] is None and ent["Flags"] == 42


def test_kv_keys_fold_at_separator_and_list_is_sorted(log: Log) -> None:
    for k in ("a/b/c", "a/b/d", "a/x", "a/", "b", "a/b"):
        log(C.kv(0.0, "set", k, b"v"))
    assert [e["Key"] for e in log.store.kv_list("a/").value] == [
        "a/",
        "a/b",
        "a/b/c",
        "a/b/d",
        "a/x",
    ]
    assert log.store.kv_keys("a/", "/").value == ["a/", "a/b", "a/b/", "a/x"]
    assert log.store.kv_keys("", "/").value == ["a/", "b"]


def test_kv_prefix_index_sees_deletes_through_tombstones(log: Log) -> None:
    log(C.kv(0.0, "set", "app/a", b"1"))
    log(C.kv(0.0, "set", "other", b"1"))
    assert log.store.kv_list("app/").index == 1
    log(C.kv(0.0, "delete", "app/a"))
    r = log.store.kv_list("app/")
    assert r.value == [] and r.index == 3
    assert log.store.kv_get("app/a").index == 3  # table index when missing
    log(C.tombstone_reap(0.0, 3))
    assert log.store.kv_list("app/").index == 3  # falls back to the table index


def test_kv_delete_cas_and_delete_tree(log: Log) -> None:
    for k in ("t/1", "t/2", "u"):
        log(C.kv(0.0, "set", k, b"v"))
    assert log(C.kv(0.0, "delete-cas", "t/1", index=99)) is False
    assert log(C.kv(0.0, "delete-cas", "t/1", index=1)) is True
    assert log(C.kv(0.0, "delete-cas", "missing", index=5)) is True
    log(C.kv(0.0, "delete-tree", "t/"))
    assert [e["Key"] for e in log.store.kv_list("").value] == ["u"]


def test_lock_acquire_release_and_lock_index(log: Log) -> None:
    node(log)
    s1 = log(C.session_create(0.0, {"ID": "s1", "Node": "n1"}))
    s2 = log(C.session_create(0.0, {"ID": "s2", "Node": "n1"}))
    assert log(C.kv(0.0, "lock", "l", b"a", session=s1)) is True
    assert log(C.kv(0.0, "lock", "l", b"b", session=s2)) is False
    assert log(C.kv(0.0, "lock", "l", b"c", session=s1)) is True  # re-acquire
    assert log.store.kv_get("l").value["LockIndex"] == 1
    assert log(C.kv(0.0, "unlock", "l", b"d", session=s2)) is False
    assert log(C.kv(0.0, "unlock", "l", b"d", session=s1)) is True
    ent = log.store.kv_get("l").value
    assert (ent["Session"], ent["Value"], ent["LockIndex"]) == ("", b"d", 1)
    assert log(C.kv(0.0, "lock", "l", b"e", session=s2)) is True
    assert log.store.kv_get("l").value["LockIndex"] == 2


def test_lock_with_unknown_session_is_rejected(log: Log) -> None:
    assert log.rejected(C.kv(0.0, "lock", "l", b"a", session="nope")) == 'invalid session "nope"'
    assert log.rejected(C.kv(0.0, "lock", "l", b"a")) == "missing session"


def test_lock_delay_after_invalidation(log: Log) -> None:
    node(log)
    s1 = log(C.session_create(0.0, {"ID": "s1", "Node": "n1", "LockDelay": 15 * S}))
    s2 = log(C.session_create(0.0, {"ID": "s2", "Node": "n1", "LockDelay": 0}))
    log(C.kv(100.0, "lock", "l", b"a", session=s1))
    log(C.session_destroy(101.0, s1))
    assert log(C.kv(110.0, "lock", "l", b"b", session=s2)) is False  # within 15 s
    assert log(C.kv(116.5, "lock", "l", b"b", session=s2)) is True


def test_session_behaviour_delete_removes_held_keys(log: Log) -> None:
    node(log)
    sid = log(C.session_create(0.0, {"ID": "s1", "Node": "n1", "Behavior": "delete"}))
    log(C.kv(0.0, "lock", "held", b"v", session=sid))
    log(C.session_destroy(0.0, sid))
    assert log.store.kv_get("held").value is None


def test_critical_check_invalidates_bound_sessions(log: Log) -> None:
    node(log)
    sid = log(C.session_create(0.0, {"ID": "s1", "Node": "n1", "NodeChecks": ["serfHealth"]}))
    log(C.kv(0.0, "lock", "k", b"v", session=sid))
    node(log, status="warning")
    assert sid in log.store.sessions
    node(log, status="critical")
    assert sid not in log.store.sessions
    assert log.store.kv_get("k").value["Session"] == ""


def test_session_create_validation(log: Log) -> None:
    assert "Missing node registration" in log.rejected(
        C.session_create(0.0, {"ID": "s", "Node": "ghost"})
    )
    node(log, status="critical")
    assert log.rejected(
        C.session_create(0.0, {"ID": "s", "Node": "n1", "NodeChecks": ["serfHealth"]})
    ) == ("Check 'serfHealth' is in critical state")
    assert log.rejected(
        C.session_create(0.0, {"ID": "s", "Node": "n1", "NodeChecks": ["nope"]})
    ) == ("Missing check 'nope' registration")
    assert log.rejected(
        C.session_create(0.0, {"ID": "s", "Node": "n1", "Behavior": "explode"})
    ) == ("Invalid Behavior setting 'explode'")


# ------------------------------------------------------------------------ transactions


def test_txn_applies_whole_or_not_at_all(log: Log) -> None:
    log(C.kv(0.0, "set", "a", b"1"))
    res = log(
        C.txn(
            0.0,
            [
                {"Verb": "set", "Key": "b", "Value": b"2"},
                {"Verb": "get", "Key": "a"},
                {"Verb": "check-index", "Key": "a", "Index": 1},
            ],
        )
    )
    assert res["Errors"] is None
    assert [r["KV"]["Key"] for r in res["Results"]] == ["b", "a", "a"]
    assert res["Results"][0]["KV"]["Value"] is None  # values blanked except for get
    assert res["Results"][1]["KV"]["Value"] == b"1"
    before = _encoded(log.store)
    with pytest.raises(TxnFailed) as e:
        log(
            C.txn(
                0.0,
                [
                    {"Verb": "set", "Key": "c", "Value": b"3"},
                    {"Verb": "cas", "Key": "a", "Value": b"x", "Index": 99},
                    {"Verb": "check-not-exists", "Key": "b"},
                ],
            )
        )
    assert e.value.errors == [
        (1, 'failed to set key "a", index is stale'),
        (2, 'key "b" exists'),
    ]
    assert _encoded(log.store) == before
    assert log.store.take_changes() == []


def test_malformed_commands_are_rejected_not_raised(log: Log) -> None:
    for bad in (
        {"Op": "nope"},
        {"Op": "kv", "Verb": "set"},
        {"Op": "kv", "Verb": "set", "Key": 5},
        {"Op": "register"},
        {"Op": "txn", "Ops": "x"},
        {"Op": "session-create", "Session": {}},
    ):
        log.rejected(bad)


# ------------------------------------------------------------------------ snapshots


def _populate(log: Log) -> None:
    node(log)
    node(log, "n2")
    web(log)
    web(log, "n2", "web2", ["v2"])
    log(C.kv(0.0, "set", "a/1", b"x", flags=3))
    log(C.kv(0.0, "set", "a/2", b"y"))
    log(C.kv(0.0, "delete", "a/2"))
    sid = log(C.session_create(0.0, {"ID": "s1", "Node": "n2", "TTL": "20s"}))
    log(C.kv(0.0, "lock", "a/l", b"", session=sid))
    log(C.coordinates(0.0, [{"Node": "n1", "Segment": "", "Coord": {"Vec": [0.1]}}]))


def _reads(store: StateStore) -> list[Any]:
    return [
        store.catalog_nodes(),
        store.catalog_services(),
        store.catalog_service("web"),
        store.service_health("web"),
        store.node_services("n2"),
        store.checks_in_state("any"),
        store.kv_list(""),
        store.kv_list("a/"),
        store.kv_keys("a/", "/"),
        store.kv_get("a/2"),
        store.session_list(),
        store.node_sessions("n2"),
        store.coordinate_list(),
    ]


def test_snapshot_restore_gives_identical_reads_through_msgpack(log: Log) -> None:
    _populate(log)
    blob = msgpack.packb(log.store.snapshot())
    restored = StateStore()
    restored.restore(msgpack.unpackb(blob))
    assert _reads(restored) == _reads(log.store)
    # and it keeps working: the session still holds its lock and can be destroyed
    restored.apply(restored.index + 1, C.session_destroy(0.0, "s1"))
    assert restored.kv_get("a/l").value["Session"] == ""


def test_replicas_applying_the_same_commands_agree() -> None:
    a, b = Log(), Log()
    _populate(a)
    _populate(b)
    assert msgpack.packb(a.store.snapshot()) == msgpack.packb(b.store.snapshot())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "cas", "delete", "delete-cas", "delete-tree", "lock"]),
            st.sampled_from(["a", "a/b", "a/c", "b"]),
            st.integers(0, 12),
        ),
        max_size=25,
    )
)
def test_any_kv_history_snapshots_and_restores_exactly(ops: list[tuple[str, str, int]]) -> None:
    log = Log()
    node(log)
    log(C.session_create(0.0, {"ID": "s", "Node": "n1"}))
    for verb, key, idx in ops:
        log(C.kv(float(idx), verb, key, str(idx).encode(), index=idx, session="s"))
    restored = StateStore()
    restored.restore(msgpack.unpackb(msgpack.packb(log.store.snapshot())))
    assert _reads(restored) == _reads(log.store)


# ------------------------------------------------------------------------ watches


def test_watch_hub_wakes_prefix_and_exact_watchers_only() -> None:
    hub: WatchHub[str] = WatchHub()
    hub.add("exact", [("kv", "app/x")])
    hub.add("prefix", [("kvprefix", "app/")])
    hub.add("root", [("kvprefix", "")])
    hub.add("other", [("kvprefix", "other/")])
    hub.add("svc", [("service", "web")])
    assert sorted(hub.fire([("kv", "app/x")])) == ["exact", "prefix", "root"]
    assert sorted(hub.fire([("kv", "app/y")])) == ["prefix", "root"]
    assert hub.fire([("service", "db")]) == []
    hub.discard("prefix", [("kvprefix", "app/")])
    assert sorted(hub.fire([("kv", "app/y")])) == ["root"]


def test_blocking_read_wakes_on_relevant_write_and_times_out_otherwise() -> None:
    async def go() -> None:
        server = CatalogServer("dc1", "127.0.0.1:8300")
        await server.start()
        try:
            await server.write(C.kv(0.0, "set", "app/a", b"1"))
            first = await server.read(lambda s: s.kv_list("app/"))
            # an unrelated write does not answer the blocked read; the wait does
            waiter = asyncio.ensure_future(
                server.read(lambda s: s.kv_list("app/"), first.index, 0.2)
            )
            await asyncio.sleep(0.01)
            await server.write(C.kv(0.0, "set", "zzz", b"1"))
            assert server.stats["wakeups"] == 0
            r = await asyncio.wait_for(waiter, 5.0)
            assert r.index == first.index
            # a relevant write answers it at once with the new index
            waiter = asyncio.ensure_future(
                server.read(lambda s: s.kv_list("app/"), first.index, 60.0)
            )
            await asyncio.sleep(0.01)
            await server.write(C.kv(0.0, "set", "app/b", b"2"))
            r = await asyncio.wait_for(waiter, 5.0)
            assert r.index > first.index and len(r.value) == 2
            assert len(server.hub) == 0
        finally:
            await server.close()

    asyncio.run(go())


def test_session_ttl_expiry_destroys_through_a_command() -> None:
    clock = [1000.0]

    async def go() -> None:
        server = CatalogServer("dc1", "127.0.0.1:8300", clock=lambda: clock[0])
        await server.start()
        try:
            serf = {"CheckID": "serfHealth", "Status": "passing"}
            await server.write(C.register(0.0, "n1", "10.0.0.1", checks=[serf]))
            sess = {"ID": "s", "Node": "n1", "TTL": "10s"}
            sid = await server.write(C.session_create(0.0, sess))
            await server.write(C.kv(0.0, "lock", "k", b"v", session=sid))
            assert server.sessions.next_deadline() == 1020.0  # twice the TTL
            clock[0] = 1015.0
            assert server.renew_session(sid) is not None
            assert server.sessions.next_deadline() == 1035.0
            clock[0] = 1036.0
            server._poke()
            for _ in range(200):
                if sid not in server.store.sessions:
                    break
                await asyncio.sleep(0.005)
            assert sid not in server.store.sessions
            assert server.store.kv_get("k").value["Session"] == ""
        finally:
            await server.close()

    asyncio.run(go())


def test_session_timers_skip_cancelled_and_reset_entries() -> None:
    t = SessionTimers()
    t.reset("a", 10.0, 0.0)
    t.reset("b", 5.0, 0.0)
    t.reset("b", 20.0, 0.0)
    t.cancel("a")
    assert t.next_deadline() == 40.0
    assert t.expired(39.0) == []
    assert t.expired(40.0) == ["b"]
    assert len(t) == 0


def test_tombstones_are_reaped_after_their_ttl() -> None:
    clock = [1000.0]

    async def go() -> None:
        server = CatalogServer("dc1", "127.0.0.1:8300", clock=lambda: clock[0])
        await server.start()
        try:
            await server.write(C.kv(0.0, "set", "app/a", b"1"))
            await server.write(C.kv(0.0, "delete", "app/a"))
            assert list(server.store.graveyard) == ["app/a"]
            assert server.reap_due() == 0  # younger than tombstone_ttl
            clock[0] += 15 * 60.0
            index = server.reap_due()
            assert index == 2
            await server.write(C.tombstone_reap(0.0, index))
            assert list(server.store.graveyard) == []
        finally:
            await server.close()

    asyncio.run(go())


def test_invalidated_ttl_session_loses_its_timer() -> None:
    async def go() -> None:
        server = CatalogServer("dc1", "127.0.0.1:8300")
        await server.start()
        try:
            serf = {"CheckID": "serfHealth", "Status": "passing"}
            await server.write(C.register(0.0, "n1", "10.0.0.1", checks=[serf]))
            sess = {"ID": "s", "Node": "n1", "TTL": "10s", "NodeChecks": ["serfHealth"]}
            await server.write(C.session_create(0.0, sess))
            assert len(server.sessions) == 1
            serf["Status"] = "critical"  # invalidates the session inside the store
            await server.write(C.register(0.0, "n1", "10.0.0.1", checks=[serf]))
            assert "s" not in server.store.sessions
            assert len(server.sessions) == 0
        finally:
            await server.close()

    asyncio.run(go())
