"""federation/autopilot.py against hashicorp/raft-autopilot's rules, through its public
contract: ``update(now, servers, leader_last_index, leader_term)`` and ``health()``.

Each expectation is worked out by hand from raft-autopilot (types.go ``isHealthy``,
state.go ``buildServerState``/``nextStateWithInputs``, stable_promoter.go, reconcile.go
``pruneDeadServers``/``adjudicateRemoval``) and Consul's JSON shapes, not read back from
the code under test. Times are plain numbers; nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.autopilot import (
    Autopilot,
    AutopilotConfig,
    PromoteServer,
    RemoveServer,
    ServerState,
)

TERM = 7
INDEX = 1000


def srv(
    sid: str,
    *,
    voter: bool = True,
    leader: bool = False,
    status: str = "alive",
    failed_since: float | None = None,
    contact: float | None = 0.05,
    term: int = TERM,
    index: int = INDEX,
) -> ServerState:
    return ServerState(
        id=sid,
        name=f"node-{sid}",
        address=f"10.0.0.{ord(sid[-1]) % 250}:8300",
        voter=voter,
        leader=leader,
        serf_status=status,
        failed_since=failed_since,
        last_contact_s=0.0 if leader else contact,
        last_term=term,
        last_index=index,
        version="1.2.3",
    )


def cluster(n: int, **overrides: dict[str, Any]) -> list[ServerState]:
    """Servers s1..sn, s1 the leader; ``overrides`` maps an ID to srv() keyword changes."""
    out = []
    for i in range(1, n + 1):
        sid = f"s{i}"
        kw: dict[str, Any] = {"leader": i == 1}
        kw.update(overrides.get(sid, {}))
        out.append(srv(sid, **kw))
    return out


def healthy_of(ap: Autopilot) -> dict[str, bool]:
    return {s["ID"]: s["Healthy"] for s in ap.health()["Servers"]}


# --------------------------------------------------------------------------- health


@pytest.mark.parametrize(
    ("change", "healthy"),
    [
        ({}, True),
        ({"status": "leaving"}, True),  # Consul treats leaving as alive
        ({"status": "failed", "failed_since": 0.0}, False),
        ({"status": "left"}, False),
        ({"status": "none"}, False),
        ({"contact": None}, False),
        ({"contact": 0.2}, True),  # threshold is inclusive: LastContact > threshold fails
        ({"contact": 0.2001}, False),
        ({"contact": -0.001}, False),
        ({"term": TERM - 1}, False),
        ({"index": INDEX - 250}, True),  # exactly max_trailing_logs behind
        ({"index": INDEX - 251}, False),
        ({"index": INDEX + 5}, True),  # ahead of the leader's view is fine
    ],
)
def test_health_rules(change: dict[str, Any], healthy: bool) -> None:
    ap = Autopilot(AutopilotConfig())
    ap.update(0.0, cluster(3, s2=change), INDEX, TERM)
    assert healthy_of(ap) == {"s1": True, "s2": healthy, "s3": True}
    assert ap.health()["Healthy"] is healthy


def test_nothing_is_healthy_before_raft_has_a_term_and_index() -> None:
    for index, term in ((0, TERM), (INDEX, 0)):
        ap = Autopilot(AutopilotConfig())
        ap.update(0.0, cluster(3), index, term)
        assert set(healthy_of(ap).values()) == {False}


def test_config_thresholds_change_health() -> None:
    ap = Autopilot(AutopilotConfig(last_contact_threshold_s=1.0, max_trailing_logs=10))
    ap.update(0.0, cluster(3, s2={"contact": 0.9}, s3={"index": INDEX - 11}), INDEX, TERM)
    assert healthy_of(ap) == {"s1": True, "s2": True, "s3": False}
    ap.reconfigure(AutopilotConfig(max_trailing_logs=11, last_contact_threshold_s=0.5))
    ap.update(1.0, cluster(3, s2={"contact": 0.9}, s3={"index": INDEX - 11}), INDEX, TERM)
    assert healthy_of(ap) == {"s1": True, "s2": False, "s3": True}


def test_stable_since_set_on_first_sight_kept_while_stable_reset_on_flip() -> None:
    ap = Autopilot(AutopilotConfig())
    offset = 1_700_000_000.0 - 100.0  # monotonic 100 is 2023-11-14T22:13:20Z
    ap.update(100.0, cluster(3), INDEX, TERM)
    ap.update(130.4, cluster(3), INDEX, TERM)
    since = {s["ID"]: s["StableSince"] for s in ap.health(offset)["Servers"]}
    assert since == dict.fromkeys(("s1", "s2", "s3"), "2023-11-14T22:13:20Z")
    ap.update(160.6, cluster(3, s3={"contact": 5.0}), INDEX, TERM)  # s3 turns unhealthy
    since = {s["ID"]: s["StableSince"] for s in ap.health(offset)["Servers"]}
    # 160.6 s after 100 is 60.6 s later: rounded to the second, 22:14:21
    assert since["s3"] == "2023-11-14T22:14:21Z"
    assert since["s2"] == "2023-11-14T22:13:20Z"
    ap.update(170.0, cluster(3, s3={"contact": 5.0}), INDEX, TERM)  # still unhealthy: kept
    assert ap.health(offset)["Servers"][2]["StableSince"] == "2023-11-14T22:14:21Z"
    ap.update(175.0, cluster(3), INDEX, TERM)  # healthy again
    assert ap.health(offset)["Servers"][2]["StableSince"] == "2023-11-14T22:14:35Z"


def test_health_json_shape() -> None:
    ap = Autopilot(AutopilotConfig())
    servers = cluster(3, s2={"contact": 0.0125}, s3={"voter": False, "contact": None})
    ap.update(5.0, servers, INDEX, TERM)
    h = ap.health(1_700_000_000.0 - 5.0)
    assert list(h) == ["Healthy", "FailureTolerance", "Servers"]
    assert h["Servers"][1] == {
        "ID": "s2",
        "Name": "node-s2",
        "Address": "10.0.0.50:8300",
        "SerfStatus": "alive",
        "Version": "1.2.3",
        "Leader": False,
        "LastContact": "12.5ms",
        "LastTerm": TERM,
        "LastIndex": INDEX,
        "Healthy": True,
        "Voter": True,
        "StableSince": "2023-11-14T22:13:20Z",
    }
    assert h["Servers"][0]["Leader"] is True and h["Servers"][0]["LastContact"] == "0s"
    assert h["Servers"][2]["Voter"] is False and h["Servers"][2]["LastContact"] == "0s"


def test_serf_status_shown_as_consul_shows_it() -> None:
    ap = Autopilot(AutopilotConfig())
    statuses = {"s2": "leaving", "s3": "failed", "s4": "left", "s5": "none"}
    ap.update(0.0, cluster(5, **{k: {"status": v} for k, v in statuses.items()}), INDEX, TERM)
    shown = {s["ID"]: s["SerfStatus"] for s in ap.health()["Servers"]}
    # leaving counts as alive; a Raft server gossip does not know is reported as left
    assert shown == {"s1": "alive", "s2": "alive", "s3": "failed", "s4": "left", "s5": "left"}


def test_health_before_any_update() -> None:
    assert Autopilot(AutopilotConfig()).health() == {
        "Healthy": False,
        "FailureTolerance": 0,
        "Servers": [],
    }


@pytest.mark.parametrize(
    ("n", "unhealthy", "non_voters", "tolerance"),
    [
        (1, [], [], 0),
        (3, [], [], 1),
        (3, ["s3"], [], 0),
        (4, [], [], 1),  # 4 healthy voters, quorum 3
        (5, [], [], 2),
        (5, ["s5"], [], 1),
        (5, ["s4", "s5"], [], 0),
        (5, [], ["s4", "s5"], 1),  # non-voters do not count: 3 voters
    ],
)
def test_failure_tolerance(
    n: int, unhealthy: list[str], non_voters: list[str], tolerance: int
) -> None:
    overrides: dict[str, dict[str, Any]] = {}
    for sid in unhealthy:
        overrides.setdefault(sid, {})["contact"] = 9.0
    for sid in non_voters:
        overrides.setdefault(sid, {})["voter"] = False
    ap = Autopilot(AutopilotConfig())
    ap.update(0.0, cluster(n, **overrides), INDEX, TERM)
    assert ap.health()["FailureTolerance"] == tolerance


# --------------------------------------------------------------------------- promotion


def run_for(ap: Autopilot, start: float, end: float, servers: list[ServerState]) -> float:
    """Updates every 2 s from ``start`` up to ``end`` with no actions expected."""
    t = start
    while t < end:
        assert ap.update(t, servers, INDEX, TERM) == []
        t += 2.0
    return t


def test_non_voter_promoted_after_stabilization_time() -> None:
    ap = Autopilot(AutopilotConfig(server_stabilization_time_s=10.0))
    run_for(ap, 0.0, 20.0, cluster(3))  # autopilot has been running longer than 10 s
    joined = [*cluster(3), srv("s4", voter=False)]
    assert ap.update(20.0, joined, INDEX, TERM) == []
    assert ap.update(29.9, joined, INDEX, TERM) == []
    assert ap.update(30.0, joined, INDEX, TERM) == [PromoteServer("s4")]


def test_promotion_waits_again_after_a_health_flip() -> None:
    ap = Autopilot(AutopilotConfig(server_stabilization_time_s=10.0))
    run_for(ap, 0.0, 20.0, cluster(3))
    joined = [*cluster(3), srv("s4", voter=False)]
    ap.update(20.0, joined, INDEX, TERM)
    lagging = [*cluster(3), srv("s4", voter=False, index=INDEX - 500)]
    assert ap.update(25.0, lagging, INDEX, TERM) == []
    assert ap.update(26.0, joined, INDEX, TERM) == []  # healthy again: stable since 26
    assert ap.update(30.0, joined, INDEX, TERM) == []
    assert ap.update(35.9, joined, INDEX, TERM) == []
    assert ap.update(36.0, joined, INDEX, TERM) == [PromoteServer("s4")]


def test_fresh_autopilot_needs_no_stabilization() -> None:
    """state.go ServerStabilizationTime: until autopilot has run for the stabilization
    time, the required stability is zero."""
    ap = Autopilot(AutopilotConfig(server_stabilization_time_s=10.0))
    joined = [*cluster(3), srv("s4", voter=False)]
    assert ap.update(500.0, joined, INDEX, TERM) == [PromoteServer("s4")]


def test_unhealthy_non_voter_never_promoted() -> None:
    ap = Autopilot(AutopilotConfig(server_stabilization_time_s=1.0))
    servers = [*cluster(3), srv("s4", voter=False, term=TERM - 1)]
    run_for(ap, 0.0, 60.0, servers)


def test_one_promotion_per_update_lowest_id_first() -> None:
    ap = Autopilot(AutopilotConfig())
    servers = [*cluster(3), srv("s5", voter=False), srv("s4", voter=False)]
    assert ap.update(0.0, servers, INDEX, TERM) == [PromoteServer("s4")]
    servers = [*cluster(3), srv("s5", voter=False), srv("s4")]
    assert ap.update(2.0, servers, INDEX, TERM) == [PromoteServer("s5")]


def test_no_actions_without_a_leader() -> None:
    ap = Autopilot(AutopilotConfig())
    servers = [dataclasses.replace(s, leader=False) for s in cluster(5, s5={"status": "left"})]
    servers.append(srv("s6", voter=False))
    assert ap.update(0.0, servers, INDEX, TERM) == []


# --------------------------------------------------------------------------- cleanup


def test_left_server_removed_at_once() -> None:
    ap = Autopilot(AutopilotConfig())
    assert ap.update(0.0, cluster(5, s4={"status": "left"}), INDEX, TERM) == [
        RemoveServer("s4", "left")
    ]


def test_failed_server_removed_after_grace() -> None:
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=30.0))
    servers = cluster(5, s3={"status": "failed", "failed_since": 100.0})
    assert ap.update(110.0, servers, INDEX, TERM) == []
    assert ap.update(129.9, servers, INDEX, TERM) == []
    assert ap.update(130.0, servers, INDEX, TERM) == [RemoveServer("s3", "failed")]


def test_failed_without_failed_since_counts_from_first_sight() -> None:
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=30.0))
    servers = cluster(5, s3={"status": "failed"})
    assert ap.update(50.0, servers, INDEX, TERM) == []
    assert ap.update(79.0, servers, INDEX, TERM) == []
    assert ap.update(80.0, servers, INDEX, TERM) == [RemoveServer("s3", "failed")]


def test_recovered_server_restarts_its_grace() -> None:
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=30.0))
    failed = cluster(5, s3={"status": "failed"})
    ap.update(0.0, failed, INDEX, TERM)
    ap.update(20.0, cluster(5), INDEX, TERM)  # back alive
    assert ap.update(40.0, failed, INDEX, TERM) == []
    assert ap.update(69.0, failed, INDEX, TERM) == []
    assert ap.update(70.0, failed, INDEX, TERM) == [RemoveServer("s3", "failed")]


def test_stale_server_removed_after_grace_from_first_absence() -> None:
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=30.0))
    servers = cluster(5, s5={"status": "none"})
    assert ap.update(10.0, servers, INDEX, TERM) == []
    assert ap.update(39.0, servers, INDEX, TERM) == []
    assert ap.update(40.0, servers, INDEX, TERM) == [RemoveServer("s5", "stale")]


def test_stale_voter_kept_when_known_voters_are_too_few() -> None:
    """3 voters, one unknown to gossip: 2 potential voters, (2 - 1) // 2 = 0 removals of a
    current voter allowed. A stale non-voter is not a potential voter: always removable."""
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=0.0))
    servers = [*cluster(3, s3={"status": "none"}), srv("s4", voter=False, status="none")]
    assert ap.update(0.0, servers, INDEX, TERM) == [RemoveServer("s4", "stale")]


def test_cleanup_disabled() -> None:
    ap = Autopilot(AutopilotConfig(cleanup_dead_servers=False, dead_server_grace_s=0.0))
    servers = cluster(5, s4={"status": "left"}, s5={"status": "failed", "failed_since": 0.0})
    assert ap.update(100.0, servers, INDEX, TERM) == []


@pytest.mark.parametrize(
    ("n", "failed", "min_quorum", "removed"),
    [
        (5, ["s3", "s4", "s5"], 0, ["s3", "s4"]),  # at most (5 - 1) // 2 = 2
        (5, ["s4", "s5"], 0, ["s4", "s5"]),
        (3, ["s2", "s3"], 0, ["s2"]),  # (3 - 1) // 2 = 1
        (3, ["s3"], 0, ["s3"]),
        (2, ["s2"], 0, []),  # (2 - 1) // 2 = 0
        (4, ["s3", "s4"], 0, ["s3"]),  # (4 - 1) // 2 = 1
        (5, ["s4", "s5"], 4, ["s4"]),  # 5 - 1 = 4 >= 4, then 5 - 1 - 1 = 3 < 4
        (5, ["s4", "s5"], 5, []),
        (5, ["s4", "s5"], 3, ["s4", "s5"]),
    ],
)
def test_failed_voter_removal_limits(
    n: int, failed: list[str], min_quorum: int, removed: list[str]
) -> None:
    ap = Autopilot(AutopilotConfig(min_quorum=min_quorum, dead_server_grace_s=0.0))
    servers = cluster(n, **{sid: {"status": "failed", "failed_since": 0.0} for sid in failed})
    assert ap.update(1.0, servers, INDEX, TERM) == [RemoveServer(s, "failed") for s in removed]


def test_removal_order_and_budget_per_group() -> None:
    """Groups in raft-autopilot's order; each group's budget is computed afresh from the
    potential voters still registered. 7 voters + a stale non-voter + a left non-voter +
    4 failed voters: stale non-voter (not potential); left non-voter (8 potential, budget
    3); then failed voters with 7 potential, budget (7 - 1) // 2 = 3."""
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=0.0))
    failed = {sid: {"status": "failed", "failed_since": 0.0} for sid in ("s4", "s5", "s6", "s7")}
    servers = [
        *cluster(7, **failed),
        srv("s8", voter=False, status="left"),
        srv("s9", voter=False, status="none"),
    ]
    assert ap.update(1.0, servers, INDEX, TERM) == [
        RemoveServer("s9", "stale"),
        RemoveServer("s8", "left"),
        RemoveServer("s4", "failed"),
        RemoveServer("s5", "failed"),
        RemoveServer("s6", "failed"),
    ]


def test_gossamer_cap_keeps_a_quorum_of_current_voters() -> None:
    """raft-autopilot would remove all three stale voters of six (they are not potential
    voters, so they do not spend its budget), and two of three failed voters when two
    non-voters pad the potential count; gossamer stops at (voters - 1) // 2."""
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=0.0))
    stale = {sid: {"status": "none"} for sid in ("s4", "s5", "s6")}
    assert ap.update(1.0, cluster(6, **stale), INDEX, TERM) == [
        RemoveServer("s4", "stale"),
        RemoveServer("s5", "stale"),
    ]
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=0.0))
    failed = {sid: {"status": "failed", "failed_since": 0.0} for sid in ("s2", "s3")}
    servers = [*cluster(3, **failed), srv("s4", voter=False), srv("s5", voter=False)]
    assert ap.update(1.0, servers, INDEX, TERM) == [
        PromoteServer("s4"),
        RemoveServer("s2", "failed"),
    ]


def test_leader_never_removed() -> None:
    ap = Autopilot(AutopilotConfig(dead_server_grace_s=0.0))
    servers = cluster(5, s1={"status": "failed", "failed_since": 0.0})
    assert ap.update(1.0, servers, INDEX, TERM) == []


def test_promotion_and_cleanup_in_one_update() -> None:
    ap = Autopilot(AutopilotConfig())
    servers = [*cluster(3, s3={"status": "left"}), srv("s4", voter=False)]
    assert ap.update(0.0, servers, INDEX, TERM) == [
        PromoteServer("s4"),
        RemoveServer("s3", "left"),
    ]


@given(
    voters=st.integers(1, 7),
    non_voters=st.integers(0, 3),
    statuses=st.lists(st.sampled_from(["alive", "failed", "left", "none"]), min_size=10),
    min_quorum=st.integers(0, 7),
)
def test_cleanup_never_removes_a_majority_nor_breaks_min_quorum(
    voters: int, non_voters: int, statuses: list[str], min_quorum: int
) -> None:
    servers = []
    for i in range(voters + non_voters):
        sid = f"s{i:02d}"
        status = "alive" if i == 0 else statuses[i]
        servers.append(srv(sid, voter=i < voters, leader=i == 0, status=status, failed_since=0.0))
    ap = Autopilot(AutopilotConfig(min_quorum=min_quorum, dead_server_grace_s=0.0))
    actions = ap.update(1.0, servers, INDEX, TERM)
    removed = {a.id for a in actions if isinstance(a, RemoveServer)}
    by_id = {s.id: s for s in servers}
    assert "s00" not in removed
    removed_voters = sum(1 for sid in removed if by_id[sid].voter)
    if removed_voters:
        assert voters - removed_voters >= voters // 2 + 1
    potential = [s for s in servers if s.serf_status != "none"]
    removed_potential = sum(1 for s in potential if s.id in removed)
    if removed_potential:
        assert len(potential) - removed_potential >= min_quorum


# --------------------------------------------------------------------------- determinism, misuse


def test_input_order_does_not_matter() -> None:
    servers = [
        *cluster(5, s4={"status": "left"}, s5={"status": "failed", "failed_since": 0.0}),
        srv("s6", voter=False),
        srv("s7", voter=False, status="none"),
    ]
    rng = random.Random(20240501)
    outcomes = set()
    for _ in range(10):
        shuffled = list(servers)
        rng.shuffle(shuffled)
        ap = Autopilot(AutopilotConfig(dead_server_grace_s=0.0))
        actions = ap.update(1.0, shuffled, INDEX, TERM)
        outcomes.add((tuple(actions), repr(ap.health())))
    assert len(outcomes) == 1


def test_misuse_raises() -> None:
    ap = Autopilot(AutopilotConfig())
    ap.update(10.0, cluster(3), INDEX, TERM)
    with pytest.raises(ValueError, match="backwards"):
        ap.update(9.0, cluster(3), INDEX, TERM)
    with pytest.raises(ValueError, match="duplicate"):
        ap.update(11.0, [*cluster(3), srv("s2")], INDEX, TERM)
    with pytest.raises(ValueError, match="leader"):
        ap.update(11.0, [*cluster(3), srv("s4", leader=True)], INDEX, TERM)
    with pytest.raises(ValueError, match="serf status"):
        srv("s9", status="dead")
    with pytest.raises(ValueError):
        AutopilotConfig(min_quorum=-1)
    with pytest.raises(ValueError):
        AutopilotConfig(dead_server_grace_s=-1.0)


# --------------------------------------------------------------------------- config JSON


def test_config_to_json_is_consuls_shape() -> None:
    assert AutopilotConfig().to_json(4, 9) == {
        "CleanupDeadServers": True,
        "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250,
        "MinQuorum": 0,
        "ServerStabilizationTime": "10s",
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": False,
        "UpgradeVersionTag": "",
        "CreateIndex": 4,
        "ModifyIndex": 9,
    }
    cfg = AutopilotConfig(last_contact_threshold_s=1.5, server_stabilization_time_s=90.0)
    j = cfg.to_json(1, 1)
    assert (j["LastContactThreshold"], j["ServerStabilizationTime"]) == ("1.5s", "1m30s")


def test_config_from_json_missing_fields_take_consuls_defaults() -> None:
    base = AutopilotConfig(
        cleanup_dead_servers=False, max_trailing_logs=9, dead_server_grace_s=120.0
    )
    cfg = AutopilotConfig.from_json({"minquorum": 3, "LASTCONTACTTHRESHOLD": "1s"}, base)
    assert cfg == AutopilotConfig(
        min_quorum=3, last_contact_threshold_s=1.0, dead_server_grace_s=120.0
    )


def test_config_json_round_trip() -> None:
    cfg = AutopilotConfig(
        cleanup_dead_servers=False,
        last_contact_threshold_s=0.35,
        max_trailing_logs=17,
        min_quorum=5,
        server_stabilization_time_s=3600.0,
        dead_server_grace_s=7.0,
        redundancy_zone_tag="zone",
        disable_upgrade_migration=True,
        upgrade_version_tag="build",
    )
    assert AutopilotConfig.from_json(cfg.to_json(3, 8), cfg) == cfg


def test_config_from_json_values_as_go_decodes_them() -> None:
    base = AutopilotConfig()
    # a number is nanoseconds; null clears a duration pointer (0) but leaves a bool alone
    cfg = AutopilotConfig.from_json(
        {
            "LastContactThreshold": 1500000,
            "ServerStabilizationTime": None,
            "CleanupDeadServers": None,
        },
        base,
    )
    assert cfg.last_contact_threshold_s == 0.0015
    assert cfg.server_stabilization_time_s == 0.0
    assert cfg.cleanup_dead_servers is True


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"Foo": 1}, 'json: unknown field "Foo"'),
        (
            {"MaxTrailingLogs": "x"},
            "json: cannot unmarshal string into Go struct field "
            "AutopilotConfiguration.MaxTrailingLogs of type uint64",
        ),
        (
            {"MinQuorum": -1},
            "json: cannot unmarshal number -1 into Go struct field "
            "AutopilotConfiguration.MinQuorum of type uint",
        ),
        (
            {"CleanupDeadServers": "yes"},
            "json: cannot unmarshal string into Go struct field "
            "AutopilotConfiguration.CleanupDeadServers of type bool",
        ),
        ({"LastContactThreshold": "soon"}, 'time: invalid duration "soon"'),
        ({"LastContactThreshold": "5"}, 'time: missing unit in duration "5"'),
        (
            {"ServerStabilizationTime": True},
            'strconv.ParseFloat: parsing "true": invalid syntax',
        ),
        # the first saved error wins; a duration error ends decoding at once
        ({"Foo": 1, "MinQuorum": "x"}, 'json: unknown field "Foo"'),
        ({"Foo": 1, "LastContactThreshold": "x"}, 'time: invalid duration "x"'),
    ],
)
def test_config_from_json_errors(body: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as e:
        AutopilotConfig.from_json(body, AutopilotConfig())
    assert str(e.value) == error
