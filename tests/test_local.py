"""The agent's local state and anti-entropy (Consul's agent/local/state.go, agent.go and
ae/ae.go): sans-IO against a real StateStore, then the asyncio driver against a real
CatalogServer with probes faked or real."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest

from catalog import commands as C
from catalog.checks import CheckType, SchedulerConfig
from catalog.local import (
    CONSUL_SERVICE_ID,
    DEFAULT_NODE_MAINT_REASON,
    DEFAULT_SERVICE_MAINT_REASON,
    AgentError,
    LocalConfig,
    LocalState,
    ServiceDefinition,
    SyncRequested,
    full_sync_delay,
    retry_fail_delay,
    scale_factor,
)
from catalog.localagent import LocalAgent
from catalog.reconcile import tagged_addresses
from catalog.server import CatalogServer
from catalog.store import SERF_CHECK_ID, StateStore
from gossamer.config import AgentConfig
from gossamer.core import TimerExpired

S = 1_000_000_000
NODE = "n1"
NODE_ID = "11111111-2222-3333-4444-555555555555"
ADDR = "127.0.0.1"


def state(check_update_interval_s: float = 300.0) -> LocalState:
    cfg = LocalConfig(
        NODE,
        NODE_ID,
        ADDR,
        tagged_addresses=tagged_addresses(ADDR),
        check_update_interval_s=check_update_interval_s,
    )
    return LocalState(cfg, random.Random(1))


def ttl(**kw: Any) -> CheckType:
    return CheckType(ttl_ns=10 * S, **kw)


class Catalog:
    """A StateStore and the helpers to apply commands and read this node's view."""

    def __init__(self) -> None:
        self.store = StateStore()

    def apply(self, cmd: dict[str, Any]) -> None:
        self.store.apply(self.store.index + 1, cmd)

    def view(self) -> tuple[Any, list[dict[str, Any]]]:
        return self.store.node_services(NODE).value, self.store.node_checks(NODE).value

    def sync(self, local: LocalState, now: float = 0.0, full: bool = True) -> list[str]:
        """One sync as the driver does it; returns the op kinds written."""
        if full:
            local.update_sync_state(*self.view())
        done = []
        for op in local.sync_changes(now):
            self.apply(op.command)
            local.sync_succeeded(op)
            done.append(f"{op.kind}:{op.id}")
        return done

    def service_ids(self) -> list[str]:
        return [s["ID"] for s in self.store.node_services(NODE).value["Services"]]

    def check(self, cid: str) -> dict[str, Any] | None:
        return self.store.check(NODE, cid)


# --------------------------------------------------------------------------- agent.go rules


def test_service_ids_default_to_names_and_checks_get_consuls_ids() -> None:
    s = state()
    res = s.register_service(ServiceDefinition(name="web", port=80, checks=(ttl(),)))
    assert [hc["CheckID"] for hc, _ in res.added] == ["service:web"]
    hc = s.check("service:web")
    assert hc is not None
    assert hc["Name"] == "Service 'web' check" and hc["Status"] == "critical"
    assert hc["ServiceID"] == "web" and hc["ServiceName"] == "web" and hc["Type"] == "ttl"
    assert hc["Node"] == NODE and hc["Interval"] == "" and hc["Timeout"] == ""
    svc = s.service("web")
    assert svc is not None and svc["ID"] == "web"
    assert svc["Weights"] == {"Passing": 1, "Warning": 1}
    res = s.register_service(
        ServiceDefinition(
            name="db",
            id="db-1",
            checks=(ttl(), ttl(name="second", status="passing"), ttl(check_id="mine")),
        )
    )
    assert [hc["CheckID"] for hc, _ in res.added] == ["service:db-1:1", "service:db-1:2", "mine"]
    assert s.check("service:db-1:2") == {
        **s.checks()["service:db-1:2"],
        "Name": "second",
        "Status": "passing",
    }


def test_default_tagged_addresses_follow_the_service_address() -> None:
    v4 = ServiceDefinition(name="a", address="10.0.0.1", port=5).node_service()
    assert v4["TaggedAddresses"] == {
        "lan_ipv4": {"Address": "10.0.0.1", "Port": 5},
        "wan_ipv4": {"Address": "10.0.0.1", "Port": 5},
    }
    v6 = ServiceDefinition(name="a", address="::1", port=5).node_service()
    assert set(v6["TaggedAddresses"]) == {"lan_ipv6", "wan_ipv6"}
    given = {"lan": {"Address": "10.1.1.1", "Port": 80}}
    assert (
        ServiceDefinition(name="a", tagged_addresses=given).node_service()["TaggedAddresses"]
        == given
    )
    assert "TaggedAddresses" not in ServiceDefinition(name="a", address="host").node_service()


def test_reregistration_keeps_check_state_and_replace_existing_checks_drops_others() -> None:
    s = state(check_update_interval_s=0)
    s.register_service(ServiceDefinition(name="web", checks=(ttl(), ttl())))
    s.update_check(1.0, "service:web:1", "passing", "fine")
    s.register_check(ttl(name="extra", service_id="web"))
    s.register_service(ServiceDefinition(name="web", checks=(ttl(), ttl())))
    c = s.check("service:web:1")
    assert c is not None and (c["Status"], c["Output"]) == ("passing", "fine")
    assert "extra" in s.checks()
    res = s.register_service(
        ServiceDefinition(name="web", checks=(ttl(),)), replace_existing_checks=True
    )
    assert sorted(res.removed) == ["extra", "service:web:1", "service:web:2"]
    assert list(s.checks()) == ["service:web"]


def test_register_check_rules() -> None:
    s = state()
    with pytest.raises(AgentError) as e:
        s.register_check(ttl(name="c", service_id="nope"))
    assert (e.value.status, e.value.message) == (404, 'ServiceID "nope" does not exist')
    hc = s.register_check(CheckType(name="by name", ttl_ns=S))
    # CheckDefinition.HealthCheck: the ID is the name; durations are Duration.String()
    assert hc["CheckID"] == "by name" and hc["Interval"] == "0s" and hc["Timeout"] == "0s"
    s.update_check(1.0, "by name", "passing", "")
    hc = s.register_check(CheckType(name="by name", ttl_ns=S, notes="n"))
    assert hc["Status"] == "passing" and hc["Notes"] == "n"  # re-registering does not flap


def test_deregistering_a_service_takes_its_checks() -> None:
    s = state()
    s.register_service(ServiceDefinition(name="web", checks=(ttl(), ttl())))
    s.register_check(ttl(name="node-level"))
    assert sorted(s.deregister_service("web")) == ["service:web:1", "service:web:2"]
    assert list(s.checks()) == ["node-level"] and s.services() == {}
    assert s.deregister_service("web") == []  # unknown: nothing (Consul answers 200)
    with pytest.raises(AgentError):
        s.deregister_service("")


def test_maintenance_checks() -> None:
    s = state()
    s.register_service(ServiceDefinition(name="web", tags=("a",)))
    with pytest.raises(AgentError) as e:
        s.enable_service_maintenance("nope", "")
    assert (e.value.status, e.value.message) == (404, 'No service registered with ID "nope"')
    assert s.enable_service_maintenance("web", "deploying")
    assert not s.enable_service_maintenance("web", "again")  # already on: unchanged
    m = s.check("_service_maintenance:web")
    assert m is not None
    assert (m["Name"], m["Notes"], m["Status"], m["Type"], m["ServiceID"]) == (
        "Service Maintenance Mode",
        "deploying",
        "critical",
        "maintenance",
        "web",
    )
    assert s.disable_service_maintenance("web")
    s.enable_service_maintenance("web", "")
    assert s.checks()["_service_maintenance:web"]["Notes"] == DEFAULT_SERVICE_MAINT_REASON
    assert s.enable_node_maintenance("")
    node = s.check("_node_maintenance")
    assert node is not None and node["Notes"] == DEFAULT_NODE_MAINT_REASON
    assert node["Name"] == "Node Maintenance Mode" and node["ServiceID"] == ""
    assert s.disable_node_maintenance() and not s.disable_node_maintenance()


# --------------------------------------------------------------------------- anti-entropy


def test_catalog_missing_a_service_gets_it_registered_with_its_checks() -> None:
    s, cat = state(), Catalog()
    s.register_service(ServiceDefinition(name="web", port=80, checks=(ttl(), ttl())))
    cmds = s.diff(0.0, *cat.view())
    assert len(cmds) == 1 and cmds[0]["Op"] == C.OP_REGISTER
    assert cmds[0]["Service"]["ID"] == "web"
    assert [c["CheckID"] for c in cmds[0]["Checks"]] == ["service:web:1", "service:web:2"]
    assert cmds[0]["ID"] == NODE_ID and cmds[0]["Address"] == ADDR
    cat.apply(cmds[0])
    for op in s.sync_changes(0.0):
        s.sync_succeeded(op)
    assert s.in_sync("service", "web") and s.in_sync("check", "service:web:1")
    assert cat.service_ids() == ["web"]
    assert s.diff(1.0, *cat.view()) == []  # unchanged: nothing to write


def test_foreign_entries_on_this_node_are_removed_but_not_the_servers_own() -> None:
    s, cat = state(), Catalog()

    def reg(**kw: Any) -> dict[str, Any]:
        return C.register(
            0.0,
            NODE,
            ADDR,
            node_id=NODE_ID,
            tagged_addresses=tagged_addresses(ADDR),
            datacenter="dc1",
            **kw,
        )

    serf = {"CheckID": SERF_CHECK_ID, "Name": "Serf Health Status", "Status": "passing"}
    consul = {"ID": CONSUL_SERVICE_ID, "Service": CONSUL_SERVICE_ID, "Port": 8300}
    cat.apply(reg(service=consul, checks=[serf]))
    cat.apply(reg(service={"ID": "rogue", "Service": "rogue"}))
    cat.apply(reg(checks=[{"CheckID": "stray", "Name": "stray"}]))
    done = cat.sync(s)
    # node info is written once at start (nodeInfoInSync starts false, as in Consul)
    assert done == ["delete-service:rogue", "delete-check:stray", "node:n1"]
    assert cat.service_ids() == [CONSUL_SERVICE_ID]
    assert cat.check(SERF_CHECK_ID) is not None and cat.check("stray") is None
    assert cat.sync(s) == []


def test_catalog_edited_behind_the_agents_back_is_repaired_by_a_full_sync() -> None:
    s, cat = state(check_update_interval_s=0), Catalog()
    s.register_service(ServiceDefinition(name="web", tags=("v1",), checks=(ttl(),)))
    cat.sync(s)
    # someone rewrites the service and deletes the check through the catalog API
    old = cat.store.node_service(NODE, "web")
    assert old is not None
    changed = {**old, "Tags": ["evil"]}
    cat.apply(C.register(0.0, NODE, ADDR, node_id=NODE_ID, service=changed))
    cat.apply(C.deregister(0.0, NODE, check_id="service:web"))
    assert cat.sync(s, full=False) == []  # a partial sync only pushes local changes
    assert cat.sync(s) == ["service:web"]  # the check rides along with its service
    svc = cat.store.node_service(NODE, "web")
    assert svc is not None and svc["Tags"] == ["v1"]
    assert cat.check("service:web") is not None
    assert cat.sync(s) == []


def test_node_info_is_synced_when_nothing_else_carries_it() -> None:
    s, cat = state(), Catalog()
    assert cat.sync(s) == ["node:n1"]
    n = cat.store.node(NODE)
    assert n is not None and n["ID"] == NODE_ID and n["TaggedAddresses"] == tagged_addresses(ADDR)
    assert cat.sync(s) == []
    cat.apply(C.register(0.0, NODE, "10.9.9.9", node_id=NODE_ID))  # address changed
    assert cat.sync(s) == ["node:n1"]


def test_status_changes_sync_at_once_output_changes_are_rate_limited() -> None:
    s, cat = state(check_update_interval_s=300.0), Catalog()
    s.register_service(ServiceDefinition(name="web", checks=(ttl(),)))
    cat.sync(s)
    s.take_effects()
    s.update_check(10.0, "service:web", "passing", "v1")  # status change: now
    assert s.take_effects() == [SyncRequested()]
    assert cat.sync(s, 10.0, full=False) == ["check:service:web"]
    s.update_check(11.0, "service:web", "passing", "v2")  # output only: deferred
    assert s.take_effects() == []
    assert cat.sync(s, 11.0, full=False) == []
    assert cat.sync(s, 11.0) == []  # a full sync ignores output while a write-back is due
    local = s.check("service:web")
    remote = cat.check("service:web")
    assert local is not None and remote is not None
    assert local["Output"] == "v2" and remote["Output"] == "v1"
    d = s.next_deadline()
    assert d is not None and 11.0 + 150.0 <= d < 11.0 + 450.0  # interval/2 + stagger
    s.update_check(12.0, "service:web", "passing", "v3")  # still one pending write-back
    assert s.next_deadline() == d
    s.handle(d, TimerExpired())
    assert s.take_effects() == [SyncRequested()]
    assert cat.sync(s, d, full=False) == ["check:service:web"]
    remote = cat.check("service:web")
    assert remote is not None and remote["Output"] == "v3"
    # a status change syncs the latest output, which ends a pending write-back
    s.update_check(d + 1, "service:web", "passing", "v4")
    s.update_check(d + 2, "service:web", "critical", "down")
    assert s.next_deadline() is not None
    assert cat.sync(s, d + 2, full=False) == ["check:service:web"]
    assert s.next_deadline() is None


def test_output_is_synced_at_once_when_check_update_interval_is_zero() -> None:
    s, cat = state(check_update_interval_s=0), Catalog()
    s.register_service(ServiceDefinition(name="web", checks=(ttl(),)))
    cat.sync(s)
    s.update_check(1.0, "service:web", "critical", "new output")
    assert cat.sync(s, 1.0, full=False) == ["check:service:web"]


def test_a_change_during_the_write_keeps_the_entry_out_of_sync() -> None:
    s, cat = state(), Catalog()
    s.register_service(ServiceDefinition(name="web"))
    ops = s.sync_changes(0.0)
    s.register_service(ServiceDefinition(name="web", port=81))  # while the write is under way
    for op in ops:
        cat.apply(op.command)
        s.sync_succeeded(op)
    assert not s.in_sync("service", "web")
    assert cat.sync(s, full=False) == ["service:web"]
    svc = cat.store.node_service(NODE, "web")
    assert svc is not None and svc["Port"] == 81


def test_enable_tag_override_takes_the_catalogs_tags() -> None:
    s, cat = state(), Catalog()
    s.register_service(ServiceDefinition(name="web", tags=("a",), enable_tag_override=True))
    cat.sync(s)
    old = cat.store.node_service(NODE, "web")
    assert old is not None
    changed = {**old, "Tags": ["set-by-ops"]}
    cat.apply(
        C.register(
            0.0,
            NODE,
            ADDR,
            node_id=NODE_ID,
            tagged_addresses=tagged_addresses(ADDR),
            service=changed,
        )
    )
    assert cat.sync(s) == []
    svc = s.service("web")
    assert svc is not None and svc["Tags"] == ["set-by-ops"]


def test_locally_removed_entries_are_deregistered_then_forgotten() -> None:
    s, cat = state(), Catalog()
    s.register_service(ServiceDefinition(name="web", checks=(ttl(),)))
    s.register_check(ttl(name="node-check"))
    cat.sync(s)
    s.deregister_service("web")
    s.deregister_check("node-check")
    assert cat.sync(s, full=False) == [
        "delete-service:web",
        "delete-check:node-check",
        "delete-check:service:web",
    ]
    assert cat.service_ids() == [] and cat.check("node-check") is None
    assert s.sync_changes(0.0) == []


def test_ae_intervals_scale_with_the_cluster() -> None:
    assert [scale_factor(n) for n in (1, 128, 129, 256, 257, 8192)] == [1, 1, 2, 2, 3, 7]
    rng = random.Random(3)
    delays = [full_sync_delay(rng, 3) for _ in range(200)]
    assert all(60.0 <= d < 120.0 for d in delays) and max(delays) - min(delays) > 30.0
    assert all(60.0 <= full_sync_delay(rng, 1000) < 60.0 + 4 * 60.0 for _ in range(50))
    assert all(15.0 <= retry_fail_delay(rng, 3) < 30.0 for _ in range(50))


# --------------------------------------------------------------------------- the driver


def agent_config(**kw: Any) -> AgentConfig:
    return AgentConfig(node_name=NODE, data_dir="/tmp/unused", server=True, dev=True, **kw)


async def wait_until(cond: Callable[[], bool], limit_s: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def test_driver_syncs_changes_and_repairs_the_catalog() -> None:
    async def main() -> None:
        srv = CatalogServer("dc1", "127.0.0.1:8300")
        await srv.start()
        la = LocalAgent(agent_config(), NODE_ID, ADDR, lambda: srv, rng=random.Random(2))
        await la.start()
        try:
            store = srv.store
            # the first full sync registers the node
            assert await wait_until(lambda: store.node(NODE) is not None)
            la.add_service(ServiceDefinition(name="web", port=80, checks=(ttl(),)))
            await la.sync_changes()  # what the HTTP layer does after a write
            assert store.node_service(NODE, "web") is not None
            assert store.check(NODE, "service:web") is not None
            # a status change reaches the catalog without anyone asking (debounced)
            la.update_ttl("service:web", "passing", "ok")
            assert await wait_until(
                lambda: (store.check(NODE, "service:web") or {}).get("Status") == "passing"
            )
            # behind the agent's back: service gone, a foreign one added
            await srv.write(C.deregister(0.0, NODE, service_id="web"))
            await srv.write(
                C.register(0.0, NODE, ADDR, node_id=NODE_ID, service={"Service": "rogue"})
            )
            la.trigger_full_sync()  # within a staggered 3 s
            assert await wait_until(
                lambda: (
                    store.node_service(NODE, "web") is not None
                    and store.node_service(NODE, "rogue") is None
                ),
                limit_s=10.0,
            )
            assert la.stats() == {
                "check_monitors": "0",
                "check_ttls": "1",
                "services": "1",
                "checks": "1",
            }
            m = la.metrics()
            assert set(m) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
            names = {c["Name"] for c in m["Counters"]}
            assert "consul.agent.anti_entropy.sync" in names
        finally:
            await la.close()
            await srv.close()

    asyncio.run(main())


def test_client_without_server_keeps_local_state_and_skips_syncs() -> None:
    async def main() -> None:
        la = LocalAgent(agent_config(), NODE_ID, ADDR, lambda: None)
        await la.start()
        try:
            la.add_service(ServiceDefinition(name="web", checks=(ttl(),)))
            await la.sync_changes()
            la.update_ttl("service:web", "warning", "hm")
            assert la.checks()["service:web"]["Status"] == "warning"
            assert list(la.services()) == ["web"]
        finally:
            await la.close()

    asyncio.run(main())


def test_driver_refuses_script_checks_unless_enabled_and_unsupported_kinds() -> None:
    async def main() -> None:
        la = LocalAgent(agent_config(), NODE_ID, ADDR, lambda: None)
        await la.start()
        try:
            script = CheckType(name="s", script_args=("true",), interval_ns=S)
            with pytest.raises(AgentError) as e:
                la.add_check(script)
            assert e.value.status == 500
            assert e.value.message == (
                "Scripts are disabled on this agent from remote calls; to enable, configure "
                "'enable_script_checks' to true"
            )
            with pytest.raises(AgentError) as e:
                la.add_service(ServiceDefinition(name="web", checks=(ttl(), script)))
            assert la.services() == {}  # refused before anything changed
            with pytest.raises(AgentError) as e:
                la.add_check(CheckType(name="g", grpc="h:1", interval_ns=S))
            assert e.value.status == 400
            with pytest.raises(AgentError) as e:
                la.update_ttl("nope", "passing", "")
            assert (e.value.status, e.value.message) == (
                500,
                'CheckID "nope" does not have associated TTL',
            )
        finally:
            await la.close()

    asyncio.run(main())


def test_driver_runs_real_script_probes_and_reaps_critical_services() -> None:
    async def main() -> None:
        srv = CatalogServer("dc1", "127.0.0.1:8300")
        await srv.start()
        la = LocalAgent(
            agent_config(enable_script_checks=True),
            NODE_ID,
            ADDR,
            lambda: srv,
            rng=random.Random(5),
            scheduler_config=SchedulerConfig(min_interval_s=0.05, deregister_interval_min_s=0),
        )
        await la.start()
        try:
            ok = CheckType(script_args=(sys.executable, "-c", "print('up')"), interval_ns=S // 10)
            la.add_service(ServiceDefinition(name="web", checks=(ok,)))
            assert await wait_until(
                lambda: la.checks()["service:web"]["Status"] == "passing", limit_s=10.0
            )
            assert la.checks()["service:web"]["Output"] == "up\n"
            assert await wait_until(
                lambda: (srv.store.check(NODE, "service:web") or {}).get("Status") == "passing"
            )
            bad = CheckType(
                script_args=(sys.executable, "-c", "raise SystemExit(2)"),
                interval_ns=S // 10,
                deregister_critical_service_after_ns=S // 5,
            )
            la.add_service(ServiceDefinition(name="db", checks=(bad,)))
            assert await wait_until(lambda: "db" not in la.services(), limit_s=10.0)
            assert await wait_until(lambda: srv.store.node_service(NODE, "db") is None)
            assert "web" in la.services()
        finally:
            await la.close()
            await srv.close()

    asyncio.run(main())
