"""SWIM + Lifeguard membership (swim/memberlist.py) through the core contract only.

Every test builds cores, feeds them events at explicit virtual times through
``tests/swimnet.py`` (which routes the cores' real encoded bytes) and reads effects, packets
on the wire and the cores' member views. Rules are cited as SWIM §x (Das et al. 2002),
Lifeguard §x (Dadgar et al. 2018) or the memberlist 0.2.2 function that implements them.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from swimnet import (
    Datagram,
    FakePeer,
    Net,
    addr_of,
    alive_packet,
    memberlist_cluster,
    messages_in,
)

from swim import codec
from swim.codec import NodeState
from swim.config import SwimConfig, suspicion_timeout
from swim.events import (
    PacketReceived,
    SendStreamResponse,
    StreamRequestReceived,
)
from swim.memberlist import Memberlist, ip_bytes
from swim.suspicion import remaining_suspicion_time

LAN = SwimConfig.lan().replace(stagger=False)
LOCAL = SwimConfig.local().replace(stagger=False)


def wire(net: Net, since: int = 0) -> list[tuple[Datagram, codec.Message | bytes]]:
    """Every message sent on the wire since datagram number ``since``."""
    return [(d, m) for d in net.sent[since:] for m in messages_in(d.data)]


def has(data: bytes, kind: type) -> bool:
    return any(isinstance(m, kind) for m in messages_in(data))


def states(cores: list[Memberlist], name: str) -> list[NodeState | None]:
    return [c.nodes[name].state if name in c.nodes else None for c in cores if c.name != name]


class SuspicionLog:
    """Watches every core and records each (observer, node) that was ever suspect or dead."""

    def __init__(self, net: Net) -> None:
        self.suspected: dict[tuple[str, str], float] = {}
        self.dead: dict[tuple[str, str], float] = {}
        self.net = net
        net.watchers.append(self)

    def __call__(self, addr: tuple[str, int]) -> None:
        core = self.net.cores[addr]
        for n in core.nodes.values():
            key = (core.name, n.name)
            if n.state == NodeState.SUSPECT:
                self.suspected.setdefault(key, self.net.now)
            elif n.state == NodeState.DEAD:
                self.dead.setdefault(key, self.net.now)


# --------------------------------------------------------------------------- probe / ack


def test_direct_ping_is_acked_and_the_probe_completes() -> None:
    """SWIM §3.1 / ML probeNode: ping the next member, an ack with the same SeqNo ends the
    probe well before the interval; a successful probe lowers the health score by one."""
    net = Net(latency_s=0.002)
    m0, _m1 = memberlist_cluster(net, 2, LOCAL)
    net.run_until(0.5)
    assert m0.nodes["m1"].state == NodeState.ALIVE
    m0.awareness.apply_delta(3)
    since = len(net.sent)
    # ML probe: with two members the round-robin can wrap on ourselves and skip a tick
    net.run_until(2.5)
    pings = [
        (d, m) for d, m in wire(net, since) if isinstance(m, codec.Ping) and d.src == addr_of(0)
    ]
    assert len(pings) == 1
    ping_dgram, ping = pings[0]
    assert ping.node == "m1" and ping.source_node == "m0"
    acks = [(d, m) for d, m in wire(net, since) if isinstance(m, codec.Ack) and d.src == addr_of(1)]
    assert [(d.t, m.seq_no) for d, m in acks] == [(ping_dgram.t + 0.002, ping.seq_no)]
    assert "probe_failures" not in m0.stats
    assert m0.awareness.score == 2
    # nothing more was sent for this probe: no indirect ping, no TCP ping
    assert not any(isinstance(m, codec.IndirectPing) for _, m in wire(net, since))


# --------------------------------------------------------------------------- indirect probes


def test_indirect_probe_through_k_relays_keeps_a_reachable_member_alive() -> None:
    """SWIM §3.2 / ML probeNode + handleIndirectPing: with the direct path between m0 and m1
    lost, m0 asks indirect_checks=3 relays; each pings m1 with its own SeqNo and forwards the
    ack with m0's SeqNo. m1 is never suspected."""
    net = Net()
    cfg = LAN.replace(disable_tcp_pings=True)
    cores = memberlist_cluster(net, 5, cfg)
    log = SuspicionLog(net)
    net.run_until(2.0)
    net.block(addr_of(0), addr_of(1))
    net.block(addr_of(1), addr_of(0))
    since = len(net.sent)
    net.run_for(20.0)

    msgs = wire(net, since)
    ind = [(d, m) for d, m in msgs if isinstance(m, codec.IndirectPing) and m.node == "m1"]
    assert ind, "m0 never needed relays for m1"
    seq = ind[0][1].seq_no
    first_round = [(d, m) for d, m in ind if m.seq_no == seq]
    relays = {d.dst for d, _ in first_round}
    assert len(relays) == 3 and addr_of(0) not in relays and addr_of(1) not in relays
    assert all(
        m.nack and m.source_node == "m0" and m.target == ip_bytes("10.0.0.2")
        for _, m in first_round
    )
    # every relay pinged m1 itself, and forwarded an ack carrying m0's SeqNo back to m0
    relay_pings = [
        d.src
        for d, m in msgs
        if isinstance(m, codec.Ping) and d.dst == addr_of(1) and d.src in relays
    ]
    assert relays <= set(relay_pings)
    forwarded = [
        d.src
        for d, m in msgs
        if isinstance(m, codec.Ack) and m.seq_no == seq and d.dst == addr_of(0) and d.src in relays
    ]
    assert set(forwarded) == relays
    assert all(not m.payload for _, m in msgs if isinstance(m, codec.Ack) and m.seq_no == seq)

    assert not log.suspected, log.suspected
    assert all(c.stats.get("probe_failures", 0) == 0 for c in cores)


def test_relays_send_nacks_when_the_target_is_down() -> None:
    """Lifeguard §IV-A / ML handleIndirectPing: a relay that gets no ack within ProbeTimeout
    answers the requester with nack{its SeqNo}. With nacks from every relay the prober knows
    it is healthy: its health score does not rise for the failed probe."""
    net = Net()
    cfg = LOCAL.replace(indirect_checks=3, disable_tcp_pings=True)
    cores = memberlist_cluster(net, 5, cfg)
    net.run_until(2.0)
    net.crash(addr_of(1))
    since = len(net.sent)
    scores: list[int] = []
    net.watchers.append(lambda a: scores.extend(c.awareness.score for c in cores))
    net.run_for(6.0)

    msgs = wire(net, since)
    ind = [(d, m) for d, m in msgs if isinstance(m, codec.IndirectPing) and m.node == "m1"]
    assert ind
    prober, seq = ind[0][0].src, ind[0][1].seq_no
    asked = {d.dst: d.t for d, m in ind if m.seq_no == seq and d.src == prober}
    assert asked
    nacks = {
        d.src: d.t
        for d, m in msgs
        if isinstance(m, codec.Nack) and m.seq_no == seq and d.dst == prober
    }
    assert set(nacks) == set(asked)
    for relay, t in nacks.items():
        # received one latency after the request, nacked ProbeTimeout later
        assert t == pytest.approx(asked[relay] + net.latency + cfg.probe_timeout_s)
    assert max(scores) == 0


def test_nacks_arrive_after_the_deadline_with_lan_timings_as_in_memberlist() -> None:
    """ML handleIndirectPing starts the nack timer (ProbeTimeout) when the indirect request
    arrives, i.e. ProbeTimeout after the probe began; with the LAN preset
    (ProbeInterval = 2 × ProbeTimeout) the nack lands after the prober's ack handler is gone,
    so a healthy prober is charged for every relay. We keep memberlist 0.2.2's timing."""
    net = Net()
    cfg = LAN.replace(disable_tcp_pings=True)
    cores = memberlist_cluster(net, 5, cfg)
    history: dict[str, list[tuple[float, int]]] = {c.name: [(0.0, 0)] for c in cores}

    def watch(addr: tuple[str, int]) -> None:
        c = net.cores[addr]
        if c.awareness.score != history[c.name][-1][1]:
            history[c.name].append((net.now, c.awareness.score))

    net.watchers.append(watch)
    net.run_until(2.0)
    net.crash(addr_of(1))
    since = len(net.sent)
    net.run_for(8.0)
    msgs = wire(net, since)
    ind = [(d, m) for d, m in msgs if isinstance(m, codec.IndirectPing) and m.node == "m1"]
    assert ind
    d0, first = ind[0]
    prober = net.cores[d0.src]
    probe_start = d0.t - cfg.probe_timeout_s
    deadline = probe_start + cfg.probe_interval_s
    relays = {d.dst for d, m in ind if m.seq_no == first.seq_no and d.src == d0.src}
    nacks = [
        d
        for d, m in msgs
        if isinstance(m, codec.Nack) and m.seq_no == first.seq_no and d.dst == d0.src
    ]
    assert {d.src for d in nacks} == relays and relays
    assert all(d.t + net.latency > deadline for d in nacks)
    # charged at the deadline for every relay asked, though they were all healthy
    before = [sc for t, sc in history[prober.name] if t < deadline][-1]
    at = [sc for t, sc in history[prober.name] if t == deadline]
    assert at and at[0] == min(before + len(relays), cfg.awareness_max_multiplier - 1)


# --------------------------------------------------------------------------- TCP fallback


def test_tcp_fallback_ping_saves_a_udp_deaf_member() -> None:
    """ML probeNode: in parallel with the indirect pings, a TCP ping goes to any member whose
    PMax >= 3; if only TCP gets through the probe counts as a success (with a warning)."""
    net = Net()
    cores = memberlist_cluster(net, 4, LAN)
    log = SuspicionLog(net)
    net.run_until(2.0)
    net.udp_blocked.add(addr_of(1))
    net.run_for(15.0)
    assert not log.suspected, log.suspected
    saves = sum(c.stats.get("tcp_fallback_saves", 0) for c in cores if c.name != "m1")
    assert saves >= 3
    # m1 itself cannot send UDP either, and is kept from suspecting anyone the same way
    assert cores[1].stats.get("tcp_fallback_saves", 0) >= 3


def test_without_tcp_pings_the_udp_deaf_member_is_suspected() -> None:
    """The control for the fallback test: the same fault with DisableTcpPings."""
    net = Net()
    memberlist_cluster(net, 4, LAN.replace(disable_tcp_pings=True))
    log = SuspicionLog(net)
    net.run_until(2.0)
    net.udp_blocked.add(addr_of(1))
    net.run_for(15.0)
    assert any(node == "m1" for _, node in log.suspected)


# --------------------------------------------------------------------------- suspicion, refutation


def _drop_gossiped_suspicion_of(
    target: tuple[str, int], name: str
) -> Callable[[tuple[str, int], tuple[str, int], bytes], bool]:
    """Drop datagrams to ``target`` that carry a suspect about it *without* a ping: only the
    buddy system's compound ping+suspect can tell it that it is suspected."""

    def drop(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bool:
        if dst != target:
            return False
        msgs = messages_in(data)
        suspects = any(isinstance(m, codec.Suspect) and m.node == name for m in msgs)
        return suspects and not any(isinstance(m, codec.Ping) for m in msgs)

    return drop


@pytest.mark.parametrize("buddy", [True, False])
def test_suspect_learns_of_its_suspicion_by_buddy_ping_and_refutes(buddy: bool) -> None:
    """Lifeguard §IV-C buddy system / ML probeNode: a ping to a suspect member is a compound
    [ping, suspect{its incarnation}], so it can refute at once (ML suspectNode → refute:
    incarnation = accused + 1, health + 1). Everyone then has it alive with the new
    incarnation. Without the buddy system (and with ordinary gossip of the suspicion lost)
    the member never hears it is suspected and is falsely declared dead; it only refutes
    once the death itself reaches it."""
    net = Net()
    cfg = LAN.replace(push_pull_interval_s=0.0, lifeguard_buddy=buddy)
    cores = memberlist_cluster(net, 4, cfg)
    log = SuspicionLog(net)
    m1 = addr_of(1)
    net.run_until(2.0)
    net.drop = _drop_gossiped_suspicion_of(m1, "m1")
    for i in (0, 2, 3):
        net.block(addr_of(i), m1, udp=True, tcp=True)
    assert net.run_while(lambda: all(s != NodeState.SUSPECT for s in states(cores, "m1")), 10.0)
    net.heal()
    since = len(net.sent)
    net.run_for(30.0)

    compound = [
        d
        for d in net.sent[since:]
        if d.dst == m1 and d.delivered and has(d.data, codec.Ping) and has(d.data, codec.Suspect)
    ]
    false_deaths = [obs for obs, node in log.dead if node == "m1"]
    if buddy:
        assert compound, "no buddy ping reached the suspect"
        assert not false_deaths
    else:
        assert not compound
        assert sorted(false_deaths) == ["m0", "m2", "m3"]
    assert cores[1].stats["refutes"] >= 1
    inc = cores[1].incarnation
    assert inc >= 2
    assert [(c.nodes["m1"].state, c.nodes["m1"].incarnation) for c in cores] == [
        (NodeState.ALIVE, inc)
    ] * 4


def test_independent_confirmations_shorten_the_suspicion_timeout() -> None:
    """Lifeguard §IV-B / ML suspectNode + suspicion.Confirm: with n = 6 and SuspicionMult 4,
    k = 2 confirmations are expected; the timer starts at max = 6 × min and each *new*
    suspector moves the deadline to start + remainingSuspicionTime(c, k, ...). A repeat from
    a member that already suspected (or from the first accuser) changes nothing."""
    net = Net()
    (m0,) = memberlist_cluster(net, 1, LAN)
    for i in range(1, 6):
        net.add(addr_of(i), FakePeer(f"m{i}"))  # they ack pings and never refute
        net.deliver(addr_of(0), PacketReceived(alive_packet(f"m{i}", addr_of(i)), addr_of(i)))
    assert m0.num_nodes() == 6
    lo = suspicion_timeout(4, 6, 1.0)
    hi = 6 * lo
    assert (lo, hi) == (4.0, 24.0)

    def suspect(frm: str, t: float) -> None:
        net.run_until(t)
        msg = codec.Suspect(1, "m5", frm).encode()
        net.deliver(addr_of(0), PacketReceived(msg, addr_of(1)))

    suspect("m1", 5.0)
    assert m0.nodes["m5"].state == NodeState.SUSPECT
    assert m0.next_deadline() is not None
    susp = m0.suspicions["m5"]
    assert (susp.k, susp.deadline) == (2, 5.0 + hi)
    suspect("m2", 7.0)
    expected = 7.0 + remaining_suspicion_time(1, 2, 7.0 - 5.0, lo, hi)
    assert expected == pytest.approx(5.0 + 11.381)
    assert m0.suspicions["m5"].deadline == pytest.approx(expected)
    suspect("m2", 8.0)  # the same member again
    suspect("m1", 9.0)  # the original accuser
    assert m0.suspicions["m5"].deadline == pytest.approx(expected)
    assert m0.stats["suspect_confirmations"] == 1

    net.run_until(expected - 0.001)
    assert m0.nodes["m5"].state == NodeState.SUSPECT
    since = len(net.sent)
    net.run_until(expected + 0.001)
    assert m0.nodes["m5"].state is NodeState.DEAD  # type: ignore[comparison-overlap]
    # the declaration is ours, and is gossiped
    net.run_for(0.5)
    deads = [m for _, m in wire(net, since) if isinstance(m, codec.Dead) and m.node == "m5"]
    assert deads and deads[0].from_ == "m0"


def test_a_second_independent_confirmation_brings_the_timeout_down_to_the_minimum() -> None:
    net = Net()
    (m0,) = memberlist_cluster(net, 1, LAN)
    for i in range(1, 6):
        net.add(addr_of(i), FakePeer(f"m{i}"))
        net.deliver(addr_of(0), PacketReceived(alive_packet(f"m{i}", addr_of(i)), addr_of(i)))
    for frm, t in (("m1", 5.0), ("m2", 5.5), ("m3", 6.0)):
        net.run_until(t)
        net.deliver(addr_of(0), PacketReceived(codec.Suspect(1, "m5", frm).encode(), addr_of(1)))
    # k = 2 reached: timeout = min = 4 s from the start
    assert m0.suspicions["m5"].deadline == pytest.approx(9.0)
    net.run_until(9.001)
    assert m0.nodes["m5"].state == NodeState.DEAD


def test_a_crashed_member_is_declared_dead_before_the_maximum_timeout() -> None:
    """End to end: every survivor suspects the crashed member and their independent
    suspicions confirm each other, so everyone declares it dead before start + max."""
    net = Net()
    cores = memberlist_cluster(net, 6, LAN)
    log = SuspicionLog(net)
    net.run_until(3.0)
    net.crash(addr_of(5))
    net.run_for(30.0)
    hi = 6 * suspicion_timeout(4, 6, 1.0)
    for c in cores[:5]:
        start = log.suspected[(c.name, "m5")]
        died = log.dead[(c.name, "m5")]
        assert died - start < hi - 1.0, (c.name, start, died)


# --------------------------------------------------------------------------- awareness


def _probe_starts(net: Net, prober: tuple[str, int], since: int) -> list[float]:
    """Times of the prober's own probe pings (those followed by its indirect pings)."""
    msgs = wire(net, since)
    own = {m.seq_no for d, m in msgs if d.src == prober and isinstance(m, codec.IndirectPing)}
    return [
        d.t for d, m in msgs if d.src == prober and isinstance(m, codec.Ping) and m.seq_no in own
    ]


@pytest.mark.parametrize("awareness", [True, False])
def test_missing_acks_and_nacks_back_off_the_probe_interval(awareness: bool) -> None:
    """Lifeguard §IV-A / ML probeNode + awareness: a prober that hears no acks and none of
    the nacks its relays owe it is probably the sick one: each failed probe adds the number of
    missing nacks (3) to its score, and the next probe lasts ProbeInterval × (score + 1),
    capped at AwarenessMaxMultiplier. With lifeguard_awareness off the score stays 0 and
    probes stay one interval apart."""
    net = Net()
    cfg = LOCAL.replace(indirect_checks=3, disable_tcp_pings=True, lifeguard_awareness=awareness)
    cores = memberlist_cluster(net, 5, cfg)
    net.run_until(2.5)
    m0 = addr_of(0)
    net.drop = lambda s, d, b: d == m0 and (has(b, codec.Ack) or has(b, codec.Nack))
    since = len(net.sent)
    net.run_until(4.05)  # the probe that began at 3.0 failed at 4.0
    assert cores[0].awareness.score == (3 if awareness else 0)  # 3 missing nacks
    net.run_for(20.0)
    starts = _probe_starts(net, m0, since)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    if awareness:
        assert gaps[:4] == [1.0, 4.0, 7.0, 8.0]
        assert cores[0].awareness.score == cfg.awareness_max_multiplier - 1
    else:
        assert gaps[:8] == [1.0] * 8
        assert cores[0].awareness.score == 0


def test_health_score_rises_by_the_number_of_missing_nacks() -> None:
    """ML probeNode: awarenessDelta = expectedNacks - len(nackCh) on a failed probe."""
    net = Net()
    cfg = LOCAL.replace(indirect_checks=3, disable_tcp_pings=True)
    cores = memberlist_cluster(net, 5, cfg)
    net.run_until(2.0)
    net.crash(addr_of(1))
    # the nacks of one relay (m2) go missing
    net.drop = lambda s, d, b: s == addr_of(2) and has(b, codec.Nack)
    deltas: dict[str, list[int]] = {c.name: [] for c in cores}
    last = {c.name: 0 for c in cores}

    def watch(addr: tuple[str, int]) -> None:
        c = net.cores[addr]
        if c.awareness.score != last[c.name]:
            deltas[c.name].append(c.awareness.score - last[c.name])
            last[c.name] = c.awareness.score

    net.watchers.append(watch)
    net.run_for(6.0)
    # m2 relays for others: each prober of m1 other than m2 was charged exactly 1
    charged = [d for name, d in deltas.items() if name not in ("m1", "m2") and d]
    assert charged and all(d[0] == 1 for d in charged)


def test_refuting_costs_one_health_point() -> None:
    """ML refute: awareness.ApplyDelta(1)."""
    net = Net()
    (m0,) = memberlist_cluster(net, 1, LAN.replace(push_pull_interval_s=0.0))
    net.add(addr_of(1), FakePeer("m1"))
    net.deliver(addr_of(0), PacketReceived(alive_packet("m1", addr_of(1)), addr_of(1)))
    net.run_until(0.5)
    assert m0.awareness.score == 0
    net.deliver(addr_of(0), PacketReceived(codec.Suspect(1, "m0", "m1").encode(), addr_of(1)))
    assert m0.incarnation == 2 and m0.awareness.score == 1
    net.deliver(addr_of(0), PacketReceived(codec.Dead(5, "m0", "m1").encode(), addr_of(1)))
    assert m0.incarnation == 6 and m0.awareness.score == 2
    assert m0.nodes["m0"].state == NodeState.ALIVE


# --------------------------------------------------------------------------- leave


def test_graceful_leave_is_left_not_dead() -> None:
    """ML Leave: dead{Node = From = self}; receivers record StateLeft (ML deadNode)."""
    net = Net()
    cores = memberlist_cluster(net, 4, LAN)
    net.run_until(2.0)
    done: list[float] = []
    net.call(addr_of(3), lambda c: c.leave(lambda: done.append(net.now)))
    net.run_for(3.0)
    assert done
    assert states(cores, "m3") == [NodeState.LEFT] * 3
    # after leaving, the leaver ignores news about itself instead of refuting
    assert "refutes" not in cores[3].stats


# --------------------------------------------------------------------------- reclaim


@pytest.mark.parametrize("reclaim_s", [0.0, 5.0])
def test_dead_members_name_reclaimed_by_a_new_address_only_after_reclaim_time(
    reclaim_s: float,
) -> None:
    """ML aliveNode: an alive for a known name at a different address is a conflict, unless
    the old holder left, or is dead for longer than DeadNodeReclaimTime (> 0)."""
    net = Net()
    cfg = LAN.replace(dead_node_reclaim_s=reclaim_s)
    cores = memberlist_cluster(net, 4, cfg)
    net.run_until(2.0)
    net.crash(addr_of(3))
    assert net.run_while(lambda: states(cores, "m3")[:3] != [NodeState.DEAD] * 3, 30.0)
    net.run_for(6.0)  # longer than 5 s, well within gossip_to_the_dead (30 s)

    rng = random.Random(99)
    new_addr = addr_of(9)
    new = Memberlist(
        name="m3", addr=new_addr[0], port=new_addr[1], config=cfg, rng=rng, entropy=rng.randbytes
    )
    new.start(net.now)
    net.add(new_addr, new)
    net.call(new_addr, lambda c: c.join([(None, addr_of(0))], lambda k, e: None))
    net.run_for(5.0)
    views = [(c.nodes["m3"].host, c.nodes["m3"].state) for c in cores[:3]]
    if reclaim_s:
        assert views == [("10.0.0.10", NodeState.ALIVE)] * 3
        assert all("conflicts" not in c.stats for c in cores[:3])
    else:
        assert views == [("10.0.0.4", NodeState.DEAD)] * 3
        assert cores[0].stats["conflicts"] >= 1


def test_a_left_members_name_can_be_taken_at_once() -> None:
    net = Net()
    cores = memberlist_cluster(net, 3, LAN)
    net.run_until(2.0)
    net.call(addr_of(2), lambda c: c.leave(lambda: None))
    net.run_for(2.0)
    net.crash(addr_of(2))
    rng = random.Random(5)
    new = Memberlist(
        name="m2", addr="10.0.0.10", port=7946, config=LAN, rng=rng, entropy=rng.randbytes
    )
    new.start(net.now)
    net.add(("10.0.0.10", 7946), new)
    net.call(("10.0.0.10", 7946), lambda c: c.join([(None, addr_of(0))], lambda k, e: None))
    net.run_for(3.0)
    assert [(c.nodes["m2"].host, c.nodes["m2"].state) for c in cores[:2]] == [
        ("10.0.0.10", NodeState.ALIVE)
    ] * 2


# --------------------------------------------------------------------------- push/pull


def test_two_clusters_merged_by_one_join_converge() -> None:
    """ML pushPullNode with Join: one TCP state exchange plus gossip merges two clusters."""
    net = Net()
    a = memberlist_cluster(net, 3, LAN)
    b = memberlist_cluster(net, 3, LAN, first=3)
    net.run_until(3.0)
    assert {len(c.nodes) for c in a + b} == {3}
    done: list[tuple[int, list[str]]] = []
    net.call(addr_of(3), lambda c: c.join([(None, addr_of(0))], lambda k, e: done.append((k, e))))
    net.run_for(10.0)
    assert done == [(1, [])]
    names = {f"m{i}" for i in range(6)}
    for c in a + b:
        assert set(c.nodes) == names
        assert all(n.state == NodeState.ALIVE for n in c.nodes.values())


def _push_pull(nodes: list[codec.PushNodeState], join: bool = False) -> bytes:
    msg = codec.PushPull(join, tuple(nodes), b"").encode()
    return codec.seal_stream(msg, compress=False, keyring=None, entropy=None)


def _pns(name: str, i: int, inc: int, state: NodeState) -> codec.PushNodeState:
    return codec.PushNodeState(
        name, ip_bytes(addr_of(i)[0]), 7946, b"", inc, int(state), bytes((1, 5, 2, 0, 0, 0))
    )


def test_push_pull_dead_becomes_suspect_and_left_becomes_left() -> None:
    """ML mergeState: a remote "dead" is only a suspicion here (From = us), a remote "left"
    is applied as a leave; the receiver answers with its own state first."""
    rng = random.Random(1)
    core = Memberlist(
        name="m0", addr="10.0.0.1", port=7946, config=LAN, rng=rng, entropy=rng.randbytes
    )
    core.start(0.0)
    core.take_effects()
    addr = addr_of(1)
    first = [
        _pns("m1", 1, 1, NodeState.ALIVE),
        _pns("m2", 2, 1, NodeState.ALIVE),
        _pns("m3", 3, 1, NodeState.ALIVE),
    ]
    core.handle(0.1, StreamRequestReceived(1, _push_pull(first, join=True), addr))
    effects = core.take_effects()
    assert any(isinstance(e, SendStreamResponse) and e.stream_id == 1 for e in effects)
    assert [core.nodes[f"m{i}"].state for i in (1, 2, 3)] == [NodeState.ALIVE] * 3

    second = [_pns("m2", 2, 1, NodeState.DEAD), _pns("m3", 3, 1, NodeState.LEFT)]
    core.handle(0.2, StreamRequestReceived(2, _push_pull(second), addr))
    assert core.nodes["m2"].state == NodeState.SUSPECT
    assert core.suspicions["m2"] is not None
    assert core.nodes["m3"].state == NodeState.LEFT
    assert core.nodes["m1"].state == NodeState.ALIVE

    # a push/pull listing *us* dead makes us refute
    third = [_pns("m0", 0, 1, NodeState.DEAD)]
    core.handle(0.3, StreamRequestReceived(3, _push_pull(third), addr))
    assert core.incarnation == 2 and core.nodes["m0"].state == NodeState.ALIVE


def test_push_pull_merge_acts_on_changed_entries_only() -> None:
    """Unchanged alive entries are old news (``_changed_entries`` leaves them out); every
    other entry is merged in order: a newer incarnation is taken, another address for a
    live member is a conflict, our own entry with other meta is refuted. A name listed
    twice is merged entry by entry, so the second entry sees what the first did."""
    rng = random.Random(1)
    core = Memberlist(
        name="m0", addr="10.0.0.1", port=7946, config=LAN, rng=rng, entropy=rng.randbytes
    )
    core.start(0.0)
    addr = addr_of(1)
    base = [_pns(f"m{i}", i, 1, NodeState.ALIVE) for i in (1, 2, 3)]
    core.handle(0.1, StreamRequestReceived(1, _push_pull(base, join=True), addr))
    core.broadcasts.reset()
    core.handle(0.2, StreamRequestReceived(2, _push_pull(base), addr))
    assert core.broadcasts.queued == 0 and "conflicts" not in core.stats

    me = core.nodes["m0"]
    vsn = base[0].vsn
    changed = [
        _pns("m1", 1, 2, NodeState.ALIVE),
        codec.PushNodeState("m2", ip_bytes(addr_of(9)[0]), 7946, b"", 1, 0, vsn),
        codec.PushNodeState("m0", me.addr, me.port, b"other", me.incarnation, 0, me.vsn),
        base[2],
    ]
    core.handle(0.3, StreamRequestReceived(3, _push_pull(changed), addr))
    assert core.nodes["m1"].incarnation == 2
    assert core.stats["conflicts"] == 1 and core.nodes["m2"].addr == base[1].addr
    assert core.incarnation == 2 and core.stats["refutes"] == 1

    # m3 leaves; then one push/pull moves it to a new address and, after that, lists it at
    # the old one: that second entry is a conflict only if merged after the first
    left = [_pns("m3", 3, 1, NodeState.LEFT)]
    core.handle(0.4, StreamRequestReceived(4, _push_pull(left), addr))
    assert core.nodes["m3"].state == NodeState.LEFT
    moved = codec.PushNodeState("m3", ip_bytes(addr_of(8)[0]), 7946, b"", 2, 0, vsn)
    core.handle(0.5, StreamRequestReceived(5, _push_pull([moved, base[2]]), addr))
    assert core.nodes["m3"].addr == moved.addr and core.nodes["m3"].state == NodeState.ALIVE
    assert core.stats["conflicts"] == 2


def test_malformed_stream_and_packet_input_is_dropped_and_counted() -> None:
    """Rule 5: nothing from the network raises; the core answers a bad stream with an error."""
    rng = random.Random(1)
    core = Memberlist(
        name="m0", addr="10.0.0.1", port=7946, config=LAN, rng=rng, entropy=rng.randbytes
    )
    core.start(0.0)
    core.handle(0.1, StreamRequestReceived(1, b"\x06\x92garbage", addr_of(1)))
    core.handle(0.2, PacketReceived(b"\x02\xc1\xc1", addr_of(1)))
    core.handle(0.3, PacketReceived(b"", addr_of(1)))
    assert sum(core.dropped.values()) >= 3
    assert any(isinstance(e, SendStreamResponse) for e in core.take_effects())


# --------------------------------------------------------------------------- a stalled member


def test_a_stalled_member_that_resumes_refutes_its_death() -> None:
    """A paused process (GC, SIGSTOP) is declared dead by the others; when it runs again it
    processes its backlog, hears it is dead, refutes with a higher incarnation and is alive
    everywhere again (ML deadNode → refute)."""
    net = Net()
    cores = memberlist_cluster(net, 5, LAN)
    net.run_until(2.3)
    net.stall(addr_of(0))
    net.run_for(12.0)
    assert states(cores, "m0") == [NodeState.DEAD] * 4
    net.resume(addr_of(0))
    net.run_for(8.0)
    inc = cores[0].incarnation
    assert inc >= 2
    assert [(c.nodes["m0"].state, c.nodes["m0"].incarnation) for c in cores] == [
        (NodeState.ALIVE, inc)
    ] * 5


# --------------------------------------------------------------------------- invariants


class IncarnationChecker:
    """Invariant (memberlist.py rule 1): a known member's incarnation never decreases in
    any observer's view while the observer keeps it in its node map."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.seen: dict[tuple[int, str], int] = {}
        self.checks = 0
        net.watchers.append(self)

    def __call__(self, addr: tuple[str, int]) -> None:
        core = self.net.cores[addr]
        oid = id(core)
        for key in [k for k in self.seen if k[0] == oid and k[1] not in core.nodes]:
            del self.seen[key]
        for n in core.nodes.values():
            key = (oid, n.name)
            prev = self.seen.get(key, 0)
            assert n.incarnation >= prev, (core.name, n.name, prev, n.incarnation)
            self.seen[key] = n.incarnation
            self.checks += 1


def _churn(seed: int) -> tuple[Net, IncarnationChecker]:
    net = Net()
    cores = memberlist_cluster(net, 7, LAN, seed=seed)
    checker = IncarnationChecker(net)
    net.run_until(3.0)
    net.crash(addr_of(6))
    net.block(addr_of(0), addr_of(1))
    net.run_for(4.0)
    net.stall(addr_of(2))
    net.call(addr_of(3), lambda c: c.update_meta())
    net.run_for(6.0)
    net.resume(addr_of(2))
    net.heal()
    net.call(addr_of(5), lambda c: c.leave(lambda: None))
    net.run_for(5.0)
    rng = random.Random(seed)
    again = Memberlist(
        name="m6", addr=addr_of(6)[0], port=7946, config=LAN, rng=rng, entropy=rng.randbytes
    )
    again.start(net.now)
    net.add(addr_of(6), again)
    net.call(addr_of(6), lambda c: c.join([(None, addr_of(0))], lambda k, e: None))
    net.udp_blocked.add(addr_of(4))
    net.run_for(8.0)
    net.heal()
    net.run_for(10.0)
    assert cores
    return net, checker


def test_incarnations_never_decrease_in_any_view_under_churn() -> None:
    net, checker = _churn(seed=3)
    assert checker.checks > 10_000
    # and the restarted member is alive again everywhere (it refuted its stale death)
    live = [c for c in net.cores.values() if c.name not in ("m5",)]
    assert all(c.nodes["m6"].state == NodeState.ALIVE for c in live)


def test_same_seed_same_run() -> None:
    """Determinism: the cores draw all randomness from their injected Random/entropy, so
    two runs with the same seeds produce byte-identical effect streams."""
    a, _ = _churn(seed=11)
    b, _ = _churn(seed=11)
    c, _ = _churn(seed=12)
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()


def test_stop_fails_pending_joins_and_reports_no_deadline() -> None:
    """ML Shutdown; core contract rule 3: a stopped core asks for no more timers."""
    net = Net()
    cores = memberlist_cluster(net, 3, LAN)
    net.run_until(2.0)
    net.crash(addr_of(2))
    net.run_for(0.6)  # a probe of the crashed member may be in flight
    results: list[tuple[int, list[str]]] = []
    core = cores[0]
    core.handle(net.now, PacketReceived(b"", addr_of(1)))
    core.join([(None, ("10.9.9.9", 7946))], lambda k, e: results.append((k, e)))
    core.stop()
    assert results and results[0][0] == 0 and "shutdown" in results[0][1][0]
    assert core.next_deadline() is None
    core.handle(net.now + 5.0, PacketReceived(b"\x00", addr_of(1)))
    assert core.next_deadline() is None
