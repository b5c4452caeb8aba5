"""The Serf layer (swim/serf.py), the public gossip core, through the core contract only.

Cores are built, joined with ``JoinRequested`` and driven on virtual time by
``tests/swimnet.py``; the tests read the effects each core emitted (member events, request
completions, keyring changes) and the bytes on the wire. Serf semantics as serf 0.9.4
implements them (SERF/serf.go, query.go, keymanager.go, internal_query.go).
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from swimnet import Datagram, Net, addr_of, make_serf, messages_in, serf_cluster

from swim import codec
from swim import messages as sm
from swim.codec import NodeState
from swim.config import SwimConfig
from swim.events import (
    ForceLeaveRequested,
    JoinCompleted,
    JoinRequested,
    KeyOp,
    KeyOperationCompleted,
    KeyOperationRequested,
    KeyringChanged,
    LeaveCompleted,
    LeaveRequested,
    MemberEvent,
    MemberFailed,
    MemberJoined,
    MemberStatus,
    MemberUpdated,
    QueryFinished,
    QueryReceived,
    QueryRequested,
    QueryResponded,
    QueryResponseReceived,
    RequestCompleted,
    RespondToQuery,
    SendPacket,
    ShutdownRequired,
    TagsUpdateRequested,
    UserEventReceived,
    UserEventRequested,
)
from swim.keyring import Keyring
from swim.serf import Serf, SerfConfig, SerfState

LAN = SwimConfig.lan().replace(stagger=False)
CFG = SerfConfig(swim=LAN)
A = addr_of


def statuses(cores: list[Serf], name: str) -> list[MemberStatus]:
    return [c.members[name].status for c in cores if c.name != name]


def events_about(net: Net, i: int, name: str) -> list[str]:
    return [
        type(e).__name__
        for e in net.effects[A(i)]
        if isinstance(e, MemberEvent) and e.member.name == name
    ]


def serf_messages(
    net: Net, keyring: Keyring | None = None, since: int = 0
) -> list[tuple[Datagram, sm.SerfMessage | sm.Relay]]:
    out: list[tuple[Datagram, sm.SerfMessage | sm.Relay]] = []
    for d in net.sent[since:]:
        for m in messages_in(d.data, keyring):
            if isinstance(m, bytes) and m[0] == codec.MsgType.USER:
                with contextlib.suppress(codec.DecodeError):
                    out.append((d, sm.decode_serf(m[1:])))
    return out


def converged(net: Net, cores: list[Serf], n: int) -> bool:
    return all(sum(m.status == MemberStatus.ALIVE for m in c.member_list()) == n for c in cores)


# --------------------------------------------------------------------------- joining, RTT


def test_join_completes_and_every_member_sees_every_other_alive() -> None:
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    for i in range(1, 5):
        assert net.of_type(A(i), JoinCompleted) == [JoinCompleted(i, 1, ())]
    assert converged(net, cores, 5)
    for i in range(5):
        joined = sorted(e.member.name for e in net.of_type(A(i), MemberJoined))
        assert joined == [f"s{j}" for j in range(5)]


def test_join_to_nobody_reports_the_error() -> None:
    net = Net()
    make_serf(net, 0, CFG)
    net.deliver(A(0), JoinRequested(7, ((None, A(9)),)))
    net.run_for(1.0)
    (done,) = net.of_type(A(0), JoinCompleted)
    assert done.contacted == 0 and "connection refused" in done.errors[0]


def test_probe_rtt_reaches_the_coordinate_client() -> None:
    """SERF ping_delegate: acks carry the Vivaldi coordinate; the RTT of each direct probe
    updates ours, so the estimated distance approaches the real RTT (2 × 5 ms)."""
    net = Net(latency_s=0.005)
    s0, s1 = serf_cluster(net, 2, CFG)
    net.run_for(30.0)
    assert set(s0.coord_cache) == {"s0", "s1"}
    assert s0.coord_client is not None
    rtt = s0.coord_client.distance_to(s0.coord_cache["s1"])
    assert rtt == pytest.approx(0.010, rel=0.25)
    assert s0.coordinate() != s1.coordinate()


# --------------------------------------------------------------------------- leave, crash


def test_graceful_leave_is_reported_as_left_everywhere() -> None:
    """SERF Leave: broadcast the leave intent, then memberlist's dead-about-self, then wait
    LeavePropagateDelay. Receivers of the intent mark the member leaving, and the dead that
    follows makes it left (SERF handleNodeLeave), not failed. The leaver's request completes
    without error once all phases are done."""
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    net.deliver(A(4), LeaveRequested(99))
    net.run_for(5.0)
    assert net.of_type(A(4), LeaveCompleted) == [LeaveCompleted(99, "")]
    assert cores[4].state == SerfState.LEFT
    for i in range(4):
        assert events_about(net, i, "s4") == ["MemberJoined", "MemberLeft"]
    assert statuses(cores, "s4") == [MemberStatus.LEFT] * 4
    # the leaver's memberlist said Node == From, so memberlist has it as left, not dead
    assert all(c.ml.nodes["s4"].state == NodeState.LEFT for c in cores[:4])
    # a second leave is idempotent
    net.deliver(A(4), LeaveRequested(100))
    assert net.of_type(A(4), LeaveCompleted)[-1] == LeaveCompleted(100, "")


def test_crash_is_reported_as_failed_everywhere() -> None:
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    net.crash(A(3))
    net.run_for(15.0)
    for i in (0, 1, 2, 4):
        assert events_about(net, i, "s3") == ["MemberJoined", "MemberFailed"]
    assert statuses([c for c in cores if c.name != "s3"], "s3") == [MemberStatus.FAILED] * 4


def test_force_leave_turns_a_failed_member_left() -> None:
    """SERF RemoveFailedNode: a leave intent for a failed member makes it left everywhere
    (EventMemberLeave, "forced")."""
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    net.crash(A(4))
    net.run_for(12.0)
    assert statuses(cores[:4], "s4") == [MemberStatus.FAILED] * 4
    net.deliver(A(0), ForceLeaveRequested(20, "s4"))
    net.run_for(3.0)
    assert net.of_type(A(0), RequestCompleted) == [RequestCompleted(20, "")]
    assert statuses(cores[:4], "s4") == [MemberStatus.LEFT] * 4
    for i in range(4):
        assert events_about(net, i, "s4") == ["MemberJoined", "MemberFailed", "MemberLeft"]


def test_failed_and_left_members_are_reaped_after_their_timeouts() -> None:
    """SERF handleReap: failed members go after ReconnectTimeout, left ones after
    TombstoneTimeout, each measured from when they failed or left."""
    cfg = SerfConfig(
        swim=LAN, reap_interval_s=1.0, reconnect_timeout_s=20.0, tombstone_timeout_s=6.0
    )
    net = Net()
    cores = serf_cluster(net, 5, cfg)
    net.run_for(3.0)
    net.deliver(A(4), LeaveRequested(1))
    net.crash(A(3))
    net.run_for(40.0)
    times: dict[tuple[int, str, str], float] = {}
    for t, addr, e in net.log:
        if isinstance(e, MemberEvent):
            times.setdefault((addr_index(addr), e.member.name, type(e).__name__), t)
    for i in range(3):
        left, reaped = times[(i, "s4", "MemberLeft")], times[(i, "s4", "MemberReaped")]
        assert 6.0 < reaped - left <= 6.0 + cfg.reap_interval_s
        failed, reaped = times[(i, "s3", "MemberFailed")], times[(i, "s3", "MemberReaped")]
        assert 20.0 < reaped - failed <= 20.0 + cfg.reap_interval_s
        assert sorted(cores[i].members) == ["s0", "s1", "s2"]


def addr_index(addr: tuple[str, int]) -> int:
    return int(addr[0].rsplit(".", 1)[1]) - 1


# --------------------------------------------------------------------------- conflicts


def test_name_conflict_runs_the_conflict_query_and_the_minority_shuts_down() -> None:
    """SERF conflict delegate → resolveNodeConflict: the member that finds another address
    claiming its name asks everyone (_serf_conflict) who holds it; holding no majority it
    shuts down (ShutdownRequired) and sends nothing more. The original keeps the name."""
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    dup = make_serf(net, 5, CFG, name="s4", seed=9)
    net.deliver(A(5), JoinRequested(5, ((None, A(0)),)))
    net.run_for(10.0)

    (shut,) = net.of_type(A(5), ShutdownRequired)
    assert "name conflict" in shut.reason
    assert dup.state == SerfState.SHUTDOWN
    assert any(c.ml.stats.get("conflicts") for c in cores[:4])
    queries = [m for d, m in serf_messages(net) if isinstance(m, sm.Query)]
    conflict_q = [q for q in queries if q.name == "_serf_conflict"]
    assert conflict_q and conflict_q[0].source_node == "s4" and conflict_q[0].payload == b"s4"
    answers = [
        m for d, m in serf_messages(net) if isinstance(m, sm.QueryResponse) and d.dst == A(5)
    ]
    assert {a.from_ for a in answers} >= {"s0", "s1", "s2", "s3"}
    # the majority side is untouched
    assert not net.of_type(A(4), ShutdownRequired) and cores[4].state == SerfState.ALIVE
    assert all(c.ml.nodes["s4"].host == "10.0.0.5" for c in cores)
    # after shutting down the core is silent and refuses requests
    t_shut = next(t for t, a, e in net.log if isinstance(e, ShutdownRequired))
    assert not [e for t, a, e in net.log if a == A(5) and t > t_shut and isinstance(e, SendPacket)]
    net.deliver(A(5), JoinRequested(6, ((None, A(0)),)))
    assert net.of_type(A(5), JoinCompleted)[-1] == JoinCompleted(6, 0, ("Serf is shut down",))


# --------------------------------------------------------------------------- tags, events


def test_tags_update_is_seen_as_member_updated_by_others() -> None:
    """SERF SetTags: new meta with a higher incarnation; others emit EventMemberUpdate."""
    net = Net()
    cores = serf_cluster(net, 5, CFG, tags=lambda i: {"role": "web", "dc": "dc1"})
    net.run_for(3.0)
    inc = cores[1].ml.incarnation
    net.deliver(A(1), TagsUpdateRequested(10, (("role", "api"), ("dc", "dc1"))))
    assert net.of_type(A(1), RequestCompleted) == [RequestCompleted(10, "")]
    net.run_for(3.0)
    for i in range(5):
        (upd,) = net.of_type(A(i), MemberUpdated)
        assert upd.member.name == "s1" and upd.member.tags == {"role": "api", "dc": "dc1"}
        assert cores[i].ml.nodes["s1"].incarnation == inc + 1
    # too large: refused, nothing changes
    net.deliver(A(1), TagsUpdateRequested(11, (("x", "y" * 600),)))
    assert net.of_type(A(1), RequestCompleted)[-1].error


def test_user_event_delivered_exactly_once_everywhere_and_not_after_push_pull() -> None:
    """SERF handleUserEvent: events are de-duplicated by (LTime, name, payload) in the event
    buffer; push/pull replays the buffer (SERF delegate.MergeRemoteState) without
    re-delivering what a member already saw."""
    cfg = SerfConfig(swim=LAN.replace(push_pull_interval_s=2.0))
    net = Net()
    cores = serf_cluster(net, 5, cfg)
    net.run_for(3.0)
    net.deliver(A(2), UserEventRequested(11, "deploy", b"v1"))
    net.deliver(A(3), UserEventRequested(12, "deploy", b"v2", coalesce=False))
    net.run_for(20.0)  # ten push/pull rounds each
    assert sum(c.ml.stats["push_pulls"] for c in cores) >= 40
    for i in range(5):
        got = sorted((e.name, e.payload, e.coalesce) for e in net.of_type(A(i), UserEventReceived))
        assert got == [("deploy", b"v1", True), ("deploy", b"v2", False)], i
    assert net.of_type(A(2), RequestCompleted) == [RequestCompleted(11, "")]


@pytest.mark.parametrize("ignore_old", [False, True])
def test_a_late_joiner_gets_old_events_once_unless_it_asks_not_to(ignore_old: bool) -> None:
    """SERF Join(ignoreOld): the join push/pull replays buffered events; with ignoreOld the
    joiner raises its event floor to the remote event clock and skips them."""
    net = Net()
    serf_cluster(net, 3, CFG)
    net.run_for(3.0)
    net.deliver(A(0), UserEventRequested(1, "deploy", b"v1"))
    net.run_for(5.0)
    make_serf(net, 3, CFG)
    net.deliver(A(3), JoinRequested(2, ((None, A(0)),), ignore_old=ignore_old))
    net.run_for(10.0)
    got = net.of_type(A(3), UserEventReceived)
    assert len(got) == (0 if ignore_old else 1)
    # a new event after the join is delivered either way
    net.deliver(A(1), UserEventRequested(3, "deploy", b"v2"))
    net.run_for(5.0)
    assert [e.payload for e in net.of_type(A(3), UserEventReceived)][-1] == b"v2"


def test_oversized_user_event_is_refused() -> None:
    net = Net()
    make_serf(net, 0, CFG)
    net.deliver(A(0), UserEventRequested(1, "big", b"x" * 600))
    (done,) = net.of_type(A(0), RequestCompleted)
    assert "exceeds configured limit" in done.error


# --------------------------------------------------------------------------- queries


def _answer_queries(net: Net, cores: list[Serf]) -> dict[str, list[QueryReceived]]:
    got: dict[str, list[QueryReceived]] = {}
    for i, c in enumerate(cores):
        for q in net.of_type(A(i), QueryReceived):
            got.setdefault(c.name, []).append(q)
            net.deliver(A(i), RespondToQuery(q.query_token, b"pong-" + c.name.encode()))
    return got


def test_query_with_tag_filter_gets_acks_and_responses_from_matching_members() -> None:
    """SERF Query + shouldProcessQuery: a tag filter (regexp) selects who handles it; those
    ack (when asked) and answer straight to the asker; QueryFinished at the deadline."""
    net = Net()
    cores = serf_cluster(net, 5, CFG, tags=lambda i: {"role": "db" if i % 2 == 0 else "web"})
    net.run_for(3.0)
    net.deliver(
        A(0), QueryRequested(12, "ping", b"x", filter_tags=(("role", "^d"),), request_ack=True)
    )
    net.run_for(0.5)
    got = _answer_queries(net, cores)
    assert sorted(got) == ["s0", "s2", "s4"]
    assert all(
        len(v) == 1 and v[0].source_node == "s0" and v[0].payload == b"x" for v in got.values()
    )
    net.run_for(5.0)
    resp = net.of_type(A(0), QueryResponseReceived)
    assert sorted(r.from_node for r in resp if r.is_ack) == ["s0", "s2", "s4"]
    assert sorted((r.from_node, r.payload) for r in resp if not r.is_ack) == [
        ("s0", b"pong-s0"),
        ("s2", b"pong-s2"),
        ("s4", b"pong-s4"),
    ]
    (fin,) = net.of_type(A(0), QueryFinished)
    assert sorted(fin.acks) == ["s0", "s2", "s4"]
    assert sorted(fin.responses) == [("s0", b"pong-s0"), ("s2", b"pong-s2"), ("s4", b"pong-s4")]
    for i in (0, 2, 4):
        assert net.of_type(A(i), QueryResponded)[0].error == ""
    # answering twice is refused
    q = net.of_type(A(2), QueryReceived)[0]
    net.deliver(A(2), RespondToQuery(q.query_token, b"again"))
    assert net.of_type(A(2), QueryResponded)[-1].error


def test_query_with_node_filter_reaches_only_the_named_members() -> None:
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    net.deliver(A(1), QueryRequested(13, "who", b"", filter_nodes=("s3", "s4")))
    net.run_for(0.5)
    got = _answer_queries(net, cores)
    assert sorted(got) == ["s3", "s4"]
    net.run_for(5.0)
    (fin,) = net.of_type(A(1), QueryFinished)
    assert fin.acks == ()
    assert sorted(n for n, _ in fin.responses) == ["s3", "s4"]


def test_a_query_answered_after_its_deadline_is_refused() -> None:
    net = Net()
    cores = serf_cluster(net, 3, CFG)
    net.run_for(3.0)
    net.deliver(A(0), QueryRequested(1, "slow", b"", timeout_s=1.0))
    net.run_for(2.0)
    q = net.of_type(A(1), QueryReceived)[0]
    net.deliver(A(1), RespondToQuery(q.query_token, b"late"))
    assert net.of_type(A(1), QueryResponded)[-1].error
    assert net.of_type(A(0), QueryFinished)[0].responses == ()
    assert cores


# --------------------------------------------------------------------------- keys


def test_key_install_use_remove_list_across_five_members() -> None:
    """SERF KeyManager: each operation is an internal query whose answers are tallied into
    KeyOperationCompleted; every member that changes its keyring emits KeyringChanged so the
    agent persists it. Gossip keeps flowing through the rotation."""
    old, new = bytes(range(16)), bytes(range(1, 17))

    def b64(k: bytes) -> str:
        return base64.b64encode(k).decode()

    net = Net()
    cores = serf_cluster(net, 5, CFG, keyring_keys=[old])
    net.run_for(3.0)
    assert converged(net, cores, 5)

    def op(rid: int, kind: KeyOp, key: bytes = b"") -> KeyOperationCompleted:
        net.deliver(A(2), KeyOperationRequested(rid, kind, key))
        net.run_for(4.0)
        done = [e for e in net.of_type(A(2), KeyOperationCompleted) if e.request_id == rid]
        assert len(done) == 1
        result: KeyOperationCompleted = done[0]
        return result

    done = op(1, KeyOp.INSTALL, new)
    assert (done.num_nodes, done.num_resp, done.num_err, done.error) == (5, 5, 0, "")
    for i, c in enumerate(cores):
        assert c.keyring is not None and c.keyring.keys == [old, new]
        assert net.of_type(A(i), KeyringChanged)[-1] == KeyringChanged((old, new))

    done = op(2, KeyOp.USE, new)
    assert (done.num_resp, done.num_err, done.error) == (5, 0, "")
    for i, c in enumerate(cores):
        assert c.keyring is not None and c.keyring.primary == new
        assert net.of_type(A(i), KeyringChanged)[-1] == KeyringChanged((new, old))

    done = op(3, KeyOp.REMOVE, old)
    assert (done.num_resp, done.num_err) == (5, 0)
    for i, c in enumerate(cores):
        assert c.keyring is not None and c.keyring.keys == [new]
        assert net.of_type(A(i), KeyringChanged)[-1] == KeyringChanged((new,))

    done = op(4, KeyOp.LIST)
    assert (done.num_nodes, done.num_resp, done.num_err) == (5, 5, 0)
    assert done.keys == {b64(new): 5} and done.primary_keys == {b64(new): 5}

    done = op(5, KeyOp.REMOVE, new)  # the primary: refused by everyone
    assert (done.num_resp, done.num_err) == (5, 5)
    assert done.error == "5/5 nodes reported failure"
    assert set(done.messages.values()) == {"Removing the primary key is not allowed"}
    assert sum(len(net.of_type(A(i), KeyringChanged)) for i in range(5)) == 15

    net.run_for(10.0)
    assert converged(net, cores, 5)
    assert not any(net.of_type(A(i), MemberFailed) for i in range(5))


def test_key_operation_without_encryption_reports_every_member_failing() -> None:
    net = Net()
    serf_cluster(net, 3, CFG)
    net.run_for(3.0)
    net.deliver(A(0), KeyOperationRequested(1, KeyOp.LIST))
    net.run_for(4.0)
    (done,) = net.of_type(A(0), KeyOperationCompleted)
    assert (done.num_nodes, done.num_resp, done.num_err) == (3, 3, 3)
    assert not any(net.of_type(A(i), KeyringChanged) for i in range(3))


# --------------------------------------------------------------------------- restart


def test_a_crashed_member_restarted_with_the_same_name_and_address_rejoins() -> None:
    """A fresh core (incarnation 1) under the old name and address joins; the join
    push/pull tells it the cluster holds it dead, so it refutes (incarnation 2) and every
    member reports it joined again and alive (SERF handleNodeJoin after failed)."""
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    net.crash(A(3))
    assert net.run_while(lambda: statuses(cores[:3], "s3") != [MemberStatus.FAILED] * 3, 20.0)
    net.run_for(2.0)
    assert all(c.ml.nodes["s3"].state == NodeState.DEAD for c in cores if c.name != "s3")

    mark = len(net.effects[A(3)])
    again = make_serf(net, 3, CFG, seed=7)
    net.deliver(A(3), JoinRequested(50, ((None, A(0)),)))
    net.run_for(5.0)
    assert net.effects[A(3)][mark:] and net.of_type(A(3), JoinCompleted)[-1].contacted == 1
    assert again.ml.stats["refutes"] >= 1
    inc = again.ml.incarnation
    assert inc >= 2
    live = [c for c in cores if c.name != "s3"] + [again]
    for c in live:
        assert c.members["s3"].status == MemberStatus.ALIVE
        assert (c.ml.nodes["s3"].state, c.ml.nodes["s3"].incarnation) == (NodeState.ALIVE, inc)
    for i in (0, 1, 2, 4):
        assert events_about(net, i, "s3")[-2:] == ["MemberFailed", "MemberJoined"]
    assert converged(net, live, 5)


# --------------------------------------------------------------------------- determinism, clocks


def _scenario(seed: int) -> Net:
    net = Net()
    cores = serf_cluster(net, 5, CFG, seed=seed, keyring_keys=[bytes(range(16))])
    net.run_for(3.0)
    net.deliver(A(1), UserEventRequested(1, "deploy", b"v1"))
    net.deliver(A(2), QueryRequested(2, "q", b"", request_ack=True))
    net.deliver(A(3), TagsUpdateRequested(3, (("role", "x"),)))
    net.deliver(A(4), KeyOperationRequested(4, KeyOp.INSTALL, bytes(range(1, 17))))
    net.run_for(4.0)
    net.crash(A(0))
    net.deliver(A(1), LeaveRequested(5))
    net.run_for(15.0)
    assert cores
    return net


def test_two_runs_with_the_same_seeds_produce_identical_effect_streams() -> None:
    """STYLE.md determinism: all randomness (probe order, gossip targets, query IDs, AES-GCM
    nonces) comes from the injected Random/entropy, so effect streams match byte for byte."""
    a, b, c = _scenario(1), _scenario(1), _scenario(2)
    assert len(a.log) > 300
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()
    counts = Counter(type(e).__name__ for _, _, e in a.log)
    assert counts["MemberLeft"] >= 4 and counts["MemberFailed"] >= 3


def test_lamport_clocks_never_go_backwards() -> None:
    """SERF lamport.go: Witness only moves a clock forward."""
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    seen: dict[tuple[int, str], int] = {}

    def watch(addr: tuple[str, int]) -> None:
        c = net.cores[addr]
        for label, clock in (("m", c.clock), ("e", c.event_clock), ("q", c.query_clock)):
            key = (id(c), label)
            assert clock.time() >= seen.get(key, 0)
            seen[key] = clock.time()

    net.watchers.append(watch)
    net.run_for(3.0)
    for k in range(5):
        # one after the other: each sender has witnessed the previous event's stamp
        net.deliver(A(k), UserEventRequested(k, "e", bytes([k])))
        net.deliver(A(k), QueryRequested(10 + k, "q", b""))
        net.run_for(2.0)
    net.run_for(5.0)
    assert {c.event_clock.time() for c in cores} == {6}
    assert {c.query_clock.time() for c in cores} == {6}
    for i in range(5):
        assert [e.ltime for e in net.of_type(A(i), UserEventReceived)] == [1, 2, 3, 4, 5]


def test_effect_streams_do_not_depend_on_the_hash_seed() -> None:
    """STYLE.md: a core never iterates a set of strings; the same run in processes with
    different PYTHONHASHSEED gives the same digest."""
    code = (
        "import logging, sys; logging.disable(logging.CRITICAL); sys.path.insert(0, 'tests');"
        "import test_serf; print(test_serf._scenario(1).digest())"
    )
    root = Path(__file__).resolve().parent.parent
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1
    assert digests == {_scenario(1).digest()}


# --------------------------------------------------------------------------- more lifecycle


def test_a_quick_restart_with_new_tags_refutes_its_own_stale_alive() -> None:
    """ML aliveNode: an alive about ourselves with our incarnation but other meta (our
    previous life, still believed by the cluster) is refuted, so the new tags win."""
    net = Net()
    cores = serf_cluster(net, 4, CFG)
    net.run_for(3.0)
    net.crash(A(3))
    net.run_for(0.5)  # restarted before anyone suspected it
    again = make_serf(net, 3, CFG, seed=5, tags={"role": "new"})
    net.deliver(A(3), JoinRequested(9, ((None, A(0)),)))
    net.run_for(5.0)
    assert again.ml.stats["refutes"] >= 1
    for c in [*cores[:3], again]:
        assert c.members["s3"].tags == {"role": "new"}
        assert c.members["s3"].status == MemberStatus.ALIVE
        assert c.ml.nodes["s3"].incarnation == again.ml.incarnation >= 2


def test_a_member_that_left_can_come_back() -> None:
    net = Net()
    cores = serf_cluster(net, 4, CFG)
    net.run_for(3.0)
    net.deliver(A(2), LeaveRequested(10))
    net.run_for(5.0)
    net.crash(A(2))
    again = make_serf(net, 2, CFG, seed=6)
    net.deliver(A(2), JoinRequested(11, ((None, A(0)),)))
    net.run_for(5.0)
    for c in [cores[0], cores[1], cores[3], again]:
        assert c.members["s2"].status == MemberStatus.ALIVE
    for i in (0, 1, 3):
        assert events_about(net, i, "s2") == ["MemberJoined", "MemberLeft", "MemberJoined"]


def test_a_healed_partition_is_merged_again_by_reconnect() -> None:
    """SERF reconnect: each side keeps the other as failed and now and then tries to join
    one of them; once the network heals the two halves merge."""
    cfg = SerfConfig(swim=LAN, reconnect_interval_s=5.0)
    net = Net()
    cores = serf_cluster(net, 6, cfg)
    net.run_for(3.0)
    left_half, right_half = [A(i) for i in range(3)], [A(i) for i in range(3, 6)]
    net.partition(left_half, right_half)
    net.run_for(40.0)
    assert statuses(cores[:1], "s4") == [MemberStatus.FAILED]
    assert statuses(cores[4:5], "s0") == [MemberStatus.FAILED]
    net.heal()
    assert net.run_while(lambda: not converged(net, cores, 6), 60.0)
    assert (
        sum(
            1
            for _, _, e in net.log
            if isinstance(e, MemberJoined) and e.member.name in ("s0", "s4")
        )
        >= 6 + 6
    )


def test_query_answers_are_relayed_around_a_broken_return_path() -> None:
    """SERF relayResponse: with RelayFactor r, each responder also sends its ack and answer
    through r other members, so one lost path does not lose the answer."""
    net = Net()
    cores = serf_cluster(net, 5, CFG)
    net.run_for(3.0)
    net.block(A(3), A(0))  # s3 cannot reach the asker directly
    net.deliver(A(0), QueryRequested(1, "q", b"", request_ack=True, relay_factor=2))
    net.run_for(0.5)
    _answer_queries(net, cores)
    net.run_for(5.0)
    (fin,) = net.of_type(A(0), QueryFinished)
    assert sorted(fin.acks) == [f"s{i}" for i in range(5)]
    assert sorted(n for n, _ in fin.responses) == [f"s{i}" for i in range(5)]
    assert any(isinstance(m, sm.Relay) for _, m in serf_messages(net))


def test_force_leave_with_prune_erases_the_member() -> None:
    net = Net()
    cores = serf_cluster(net, 4, CFG)
    net.run_for(3.0)
    net.crash(A(3))
    net.run_for(12.0)
    net.deliver(A(0), ForceLeaveRequested(1, "s3", prune=True))
    net.run_for(3.0)
    for i in range(3):
        assert events_about(net, i, "s3")[-3:] == ["MemberFailed", "MemberLeft", "MemberReaped"]
        assert "s3" not in cores[i].members


def test_join_with_the_wrong_key_is_refused() -> None:
    net = Net()
    make_serf(net, 0, CFG, keyring=Keyring([bytes(range(16))]))
    make_serf(net, 1, CFG, keyring=Keyring([bytes(range(1, 17))]))
    make_serf(net, 2, CFG)
    net.deliver(A(1), JoinRequested(1, ((None, A(0)),)))
    net.deliver(A(2), JoinRequested(2, ((None, A(0)),)))
    net.run_for(3.0)
    for i in (1, 2):
        (done,) = net.of_type(A(i), JoinCompleted)
        assert done.contacted == 0 and done.errors
    assert [m.name for m in net.cores[A(0)].member_list()] == ["s0"]


def test_shutdown_answers_requests_in_flight_and_stops_asking_for_timers() -> None:
    """Core contract rule 3 and Serf rule 4: after shutdown no timer runs, so the core must
    not keep reporting a deadline (a driver would spin on it) and every request in flight
    gets its one completion at once."""
    net = Net()
    cores = serf_cluster(net, 3, CFG)
    net.run_for(3.0)
    net.crash(A(2))
    net.deliver(A(0), QueryRequested(1, "q", b"", timeout_s=5.0))
    net.deliver(A(0), KeyOperationRequested(2, KeyOp.LIST))
    net.run_for(0.5)
    s0 = cores[0]
    s0.handle(net.now, ForceLeaveRequested(3, "nobody"))  # its broadcast not yet sent
    s0.shutdown()
    effects = s0.take_effects()
    assert s0.next_deadline() is None
    assert next(e for e in effects if isinstance(e, QueryFinished)).request_id == 1
    assert next(e for e in effects if isinstance(e, KeyOperationCompleted)).request_id == 2
    assert RequestCompleted(3, "Serf is shut down") in effects
    assert not any(isinstance(e, ShutdownRequired) for e in effects)
    s0.handle(net.now + 10.0, RespondToQuery(42, b""))
    assert s0.take_effects() == [QueryResponded(42, "Serf is shut down")]


def test_leave_then_shutdown_completes_the_leave() -> None:
    net = Net()
    cores = serf_cluster(net, 3, CFG)
    net.run_for(3.0)
    net.deliver(A(1), LeaveRequested(5))
    net.run_for(0.05)  # still broadcasting the intent
    cores[1].shutdown()
    assert cores[1].take_effects()[-1] == LeaveCompleted(5, "Serf is shut down")
    assert cores[1].next_deadline() is None


def _serf_state(status_ltimes: dict[str, int], ltime: int = 1) -> bytes:
    return sm.PushPullState(
        ltime=ltime,
        status_ltimes=status_ltimes,
        left_members=(),
        event_ltime=1,
        events=(),
        query_ltime=1,
    ).encode()


def test_push_pull_state_merges_newer_status_times_and_witnesses_the_rest() -> None:
    """SERF mergeRemoteState: every status time is witnessed by the member clock; only
    times newer than ours change a member (or record an intent for an unknown one)."""
    net = Net()
    core = make_serf(net, 0, CFG)
    core.members["s0"].status_ltime = 5
    before = dict(core.recent_intents)
    core.merge_remote_state(_serf_state({"s0": 3, "s9": 40}), join=False)
    assert core.clock.time() == 41
    assert core.members["s0"].status_ltime == 5
    assert core.recent_intents.keys() - before.keys() == {"s9"}
    assert core.recent_intents["s9"].ltime == 40

    core.merge_remote_state(_serf_state({"s0": 90}), join=False)
    assert core.members["s0"].status_ltime == 90 and core.clock.time() == 91


def test_push_pull_state_status_map_keeps_invalid_utf8_names() -> None:
    """A name that arrived as invalid UTF-8 (held with surrogate escapes) goes back out as
    the same bytes, and a status map with a non-integer time is refused."""
    name = b"n\xff".decode("utf-8", "surrogateescape")
    raw = _serf_state({name: 7, "a": 1})
    back = sm.decode_serf(raw)
    assert isinstance(back, sm.PushPullState)
    assert back.status_ltimes == {"a": 1, name: 7}
    assert b"n\xff" in raw
    bad = codec.pack({"LTime": 1, "StatusLTimes": {b"a": b"x"}})
    with pytest.raises(codec.DecodeError):
        sm.decode_serf(bytes((sm.SerfType.PUSH_PULL,)) + bad)
