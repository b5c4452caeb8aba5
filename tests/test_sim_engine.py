"""The simulator's engine, network and hosts (sim/engine.py, sim/network.py, sim/node.py),
through tiny fake cores: what runs when, who hears what, and what each fault does.

The cores here implement only the core contract (``handle``/``next_deadline``/
``take_effects``); no Serf is needed to pin down the engine's rules.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gossamer.core import Effect, Event, TimerExpired
from sim.engine import Seeds, Sim
from sim.network import Group, Latency, LinkModel, Network, Partition
from sim.node import SOCKET_BUFFER_PACKETS, SimNode
from swim.events import (
    CloseStream,
    OpenStream,
    PacketReceived,
    SendPacket,
    SendStreamResponse,
    StreamFailed,
    StreamRequestReceived,
    StreamResponseReceived,
)

ROOT = Path(__file__).resolve().parent.parent
LAT = 0.001
"""One-way delay of the default links in these tests."""


# --------------------------------------------------------------------------- fake cores


class Recorder:
    """Records every input; sends what it is told to; keeps a list of timer deadlines
    (local time) and notes when each fired. Answers stream requests with their data
    reversed, or closes them when ``close_streams``."""

    def __init__(self, node: SimNode, now: float) -> None:
        self.node = node
        self.started = now
        self.now = now
        self.inputs: list[tuple[float, Event]] = []
        self.timers: list[float] = []
        self.fired: list[tuple[float, float]] = []
        """(deadline, local time it ran) per timer."""
        self.out: list[Effect] = []
        self.close_streams = False
        self.disk_seen = dict(node.disk)

    # the core contract
    def handle(self, now: float, event: Event) -> None:
        assert now >= self.now, "time went backwards"
        self.now = now
        if not isinstance(event, TimerExpired):
            self.inputs.append((now, event))
        if isinstance(event, StreamRequestReceived):
            if self.close_streams:
                self.out.append(CloseStream(event.stream_id))
            else:
                self.out.append(SendStreamResponse(event.stream_id, event.data[::-1]))
        for d in sorted(t for t in self.timers if t <= now):
            self.timers.remove(d)
            self.fired.append((d, now))

    def next_deadline(self) -> float | None:
        return min(self.timers) if self.timers else None

    def take_effects(self) -> list[Effect]:
        out, self.out = self.out, []
        return out

    # test helpers
    def send(self, addr: tuple[str, int], data: bytes) -> None:
        self.out.append(SendPacket(addr, data))

    def packets(self) -> list[tuple[float, bytes]]:
        return [(t, e.data) for t, e in self.inputs if isinstance(e, PacketReceived)]


class World:
    """A Sim, a Network and named Recorder hosts: ``w["a"]`` is the core, ``w.node("a")``
    the host. Hosts are ``10.0.<dc>.<i>:7946``."""

    def __init__(self, seed: int = 1, **links: Any) -> None:
        self.sim = Sim(seed)
        self.net = Network(self.sim, self.sim.seeds.rng("network"), **links)
        self.nodes: dict[str, SimNode] = {}

    def add(self, name: str, dc: str = "dc1", host: str | None = None) -> SimNode:
        i = len(self.nodes) + 1
        node = SimNode(
            self.sim,
            self.net,
            name=name,
            addr=(f"10.0.{int(dc[2:])}.{i}", 7946),
            dc=dc,
            host=host,
            factory=Recorder,
        )
        self.nodes[name] = node
        node.start()
        return node

    def node(self, name: str) -> SimNode:
        return self.nodes[name]

    def __getitem__(self, name: str) -> Recorder:
        core = self.nodes[name].core
        assert isinstance(core, Recorder)
        return core

    def send(self, src: str, dst: str, data: bytes) -> None:
        """``src``'s core sends one datagram now (through the driver, as a core would)."""
        node = self.nodes[src]
        self[src].send(self.nodes[dst].addr, data)
        node._drain()

    def dial(self, src: str, dst: str, data: bytes, timeout_s: float = 1.0, sid: int = 1) -> None:
        node = self.nodes[src]
        self[src].out.append(OpenStream(sid, self.nodes[dst].addr, data, timeout_s))
        node._drain()

    def arm(self, name: str, *deadlines: float) -> None:
        self[name].timers.extend(deadlines)
        self.nodes[name]._rearm()


def fixed(delay: float = LAT, **kw: Any) -> LinkModel:
    return LinkModel(Latency("constant", delay), **kw)


# --------------------------------------------------------------------------- the event loop


def test_events_run_in_time_order_and_now_follows() -> None:
    sim = Sim(1)
    seen: list[tuple[float, str]] = []
    for t, tag in ((3.0, "c"), (1.0, "a"), (2.0, "b"), (2.5, "bb")):
        sim.at(t, lambda tag: seen.append((sim.now, tag)), tag)
    assert sim.run_until(2.2) == 2
    assert seen == [(1.0, "a"), (2.0, "b")]
    assert sim.now == 2.2  # left at t_end, even with nothing due then
    sim.run_until(10.0)
    assert [tag for _, tag in seen] == ["a", "b", "bb", "c"]
    assert sim.events_run == 4 and sim.pending() == 0


def test_same_instant_runs_in_insertion_order_including_events_scheduled_while_running() -> None:
    sim = Sim(1)
    order: list[str] = []

    def first(_: Any) -> None:
        order.append("first")
        sim.after(0.0, lambda _: order.append("scheduled-by-first"))

    sim.at(1.0, first)
    for i in range(5):
        sim.at(1.0, lambda i: order.append(f"e{i}"), i)
    sim.run_until(1.0)
    assert order == ["first", "e0", "e1", "e2", "e3", "e4", "scheduled-by-first"]


def test_an_event_in_the_past_runs_now_but_a_real_time_travel_is_refused() -> None:
    sim = Sim(1)
    sim.run_until(5.0)
    ran: list[float] = []
    sim.at(5.0 - 1e-9, lambda _: ran.append(sim.now))  # float rounding: runs at 5.0
    sim.run_until(5.0)
    assert ran == [5.0]
    with pytest.raises(AssertionError):
        sim.at(4.0, lambda _: None)


def test_run_honours_max_events_and_empties_the_queue() -> None:
    sim = Sim(1)
    for i in range(10):
        sim.at(float(i), lambda _: None)
    assert sim.run(max_events=4) == 4 and sim.now == 3.0
    assert sim.next_time() == 4.0
    assert sim.run() == 6 and sim.pending() == 0 and sim.next_time() is None
    assert sim.events_run == 10


# --------------------------------------------------------------------------- seeds


def test_child_seeds_are_stable_named_and_independent() -> None:
    s = Seeds(42)
    # stable: derived with BLAKE2b from the root and the labels, nothing else
    assert s.child("network") == Seeds(42).child("network")
    assert s.child("node", "n1", 1) == s.child("node", "n1", "1")  # labels are str()ed
    # named: different labels, different seeds; label boundaries count
    labels = [("network",), ("node", "n1", 1), ("node", "n1", 2), ("node", "n11"), ("node1",)]
    assert len({s.child(*x) for x in labels}) == len(labels)
    # independent: asking for other labels first changes nothing
    before = s.rng("node", "n2", 1).random()
    for i in range(100):
        s.child("node", f"extra{i}", 1)
    assert s.rng("node", "n2", 1).random() == before
    # another root, other seeds
    assert Seeds(43).child("network") != s.child("network")
    assert s.entropy("node", "n1", 1)(16) == Seeds(42).entropy("node", "n1", 1)(16)
    with pytest.raises(ValueError):
        Seeds(-1)
    with pytest.raises(ValueError):
        Seeds(2**64)


def test_child_seeds_are_the_same_in_every_process_whatever_the_hash_seed() -> None:
    code = (
        "from sim.engine import Seeds; s = Seeds(7); "
        "print(s.child('network'), s.child('node', 'n3', 2), s.rng('x').random(), "
        "s.entropy('y')(8).hex())"
    )
    outs = set()
    for hashseed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(out.stdout)
    here = Seeds(7)
    mine = (
        f"{here.child('network')} {here.child('node', 'n3', 2)} {here.rng('x').random()} "
        f"{here.entropy('y')(8).hex()}\n"
    )
    assert outs == {mine}


# --------------------------------------------------------------------------- links and partitions


def test_packets_arrive_after_the_link_delay_by_host_dc_and_dc_pair() -> None:
    w = World(
        same_host=fixed(0.0001),
        same_dc=fixed(0.001),
        cross_dc=fixed(0.050),
        dc_pairs={("dc1", "dc3"): fixed(0.020)},
    )
    w.add("a", host="h1")
    w.add("a2", host="h1")
    w.add("b")
    w.add("c", dc="dc2")
    w.add("d", dc="dc3")
    for dst in ("a2", "b", "c", "d"):
        w.send("a", dst, dst.encode())
    w.send("d", "a", b"back")  # pairs are unordered
    w.sim.run_until(1.0)
    assert w["a2"].packets() == [(pytest.approx(0.0001), b"a2")]
    assert w["b"].packets() == [(pytest.approx(0.001), b"b")]
    assert w["c"].packets() == [(pytest.approx(0.050), b"c")]
    assert w["d"].packets() == [(pytest.approx(0.020), b"d")]
    assert w["a"].packets() == [(pytest.approx(0.020), b"back")]
    # the sender's address comes with the packet
    assert w["b"].inputs[0][1] == PacketReceived(b"b", w.node("a").addr)
    st = w.net.stats
    assert st.packets_sent == 5 and st.packets_delivered == 5 and st.packets_dropped == 0
    assert st.per_node_packets == {"a": 4, "d": 1}
    assert st.per_node_bytes == {"a": 2 + 1 + 1 + 1, "d": 4}


def _reach(w: World, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Send one datagram per pair now; which arrived."""
    t0 = w.sim.now
    for src, dst in pairs:
        w.send(src, dst, f"{src}>{dst}".encode())
    w.sim.run_until(t0 + 1.0)
    got = {}
    for src, dst in pairs:
        arrived = [d for t, d in w[dst].packets() if t > t0]
        got[(src, dst)] = f"{src}>{dst}".encode() in arrived
    return got


def _world4() -> World:
    w = World(same_dc=fixed(), cross_dc=fixed(0.01))
    for name, dc in (("a", "dc1"), ("b", "dc1"), ("c", "dc2"), ("d", "dc2")):
        w.add(name, dc=dc)
    return w


ALL_PAIRS = [(x, y) for x in "abcd" for y in "abcd" if x != y]


def test_partition_isolating_one_node_and_healing() -> None:
    w = _world4()
    a = w.node("a")
    token = w.net.partition(Partition(Group(addrs=frozenset({a.addr})), Group(everyone=True)))
    got = _reach(w, ALL_PAIRS)
    assert {p for p, ok in got.items() if not ok} == {p for p in ALL_PAIRS if "a" in p}
    w.net.heal(token)
    assert all(_reach(w, ALL_PAIRS).values())


def test_partition_between_sets_of_nodes_and_between_datacenters() -> None:
    w = _world4()
    ab = frozenset({w.node("a").addr, w.node("c").addr})
    w.net.partition(Partition(Group(addrs=ab), Group(addrs=ab, negate=True)))
    got = _reach(w, ALL_PAIRS)
    cut = {(x, y) for x, y in ALL_PAIRS if (x in "ac") != (y in "ac")}
    assert {p for p, ok in got.items() if not ok} == cut
    w.net.heal_all()
    # a whole DC dark to the rest: the WAN between dc1 and dc2 is cut, each DC still talks
    w.net.partition(Partition(Group(dcs=frozenset({"dc1"})), Group(dcs=frozenset({"dc2"}))))
    got = _reach(w, ALL_PAIRS)
    assert {p for p, ok in got.items() if not ok} == {
        (x, y) for x, y in ALL_PAIRS if (x in "ab") != (y in "ab")
    }


def test_one_way_partition_drops_only_one_direction() -> None:
    w = _world4()
    w.net.partition(
        Partition(Group(addrs=frozenset({w.node("a").addr})), Group(everyone=True), one_way=True)
    )
    got = _reach(w, ALL_PAIRS)
    assert {p for p, ok in got.items() if not ok} == {("a", x) for x in "bcd"}


def test_udp_only_and_tcp_only_partitions() -> None:
    w = _world4()
    a, b = w.node("a"), w.node("b")
    pa, pb = Group(addrs=frozenset({a.addr})), Group(addrs=frozenset({b.addr}))
    token = w.net.partition(Partition(pa, pb, udp=True, tcp=False))
    assert _reach(w, [("a", "b")]) == {("a", "b"): False}
    w.dial("a", "b", b"abc", timeout_s=0.5)
    w.sim.run_until(w.sim.now + 1.0)
    assert [e for _, e in w["a"].inputs if isinstance(e, StreamResponseReceived)] == [
        StreamResponseReceived(1, b"cba")
    ]
    w.net.heal(token)
    w.net.partition(Partition(pa, pb, udp=False, tcp=True))
    assert _reach(w, [("a", "b")]) == {("a", "b"): True}
    t0 = w.sim.now
    w.dial("a", "b", b"abc", timeout_s=0.5, sid=2)
    w.sim.run_until(t0 + 1.0)
    failed = [(t, e) for t, e in w["a"].inputs if isinstance(e, StreamFailed)]
    assert failed == [(pytest.approx(t0 + 0.5), StreamFailed(2, "i/o timeout"))]


# ------------------------------------------------------------ loss, duplication, reordering


def _blast(model: LinkModel, n: int = 4000, seed: int = 5) -> tuple[World, list[int]]:
    w = World(seed, same_dc=model)
    w.add("a")
    w.add("b")
    for i in range(n):
        w.sim.at(i * 0.001, lambda i: w.send("a", "b", i.to_bytes(4, "big")), i)
    w.sim.run_until(n * 0.001 + 1.0)
    return w, [int.from_bytes(d, "big") for _, d in w["b"].packets()]


def test_loss_drops_about_the_configured_fraction_reproducibly() -> None:
    w, got = _blast(fixed(loss=0.2))
    assert 0.17 < 1 - len(got) / 4000 < 0.23
    assert w.net.stats.packets_dropped == 4000 - len(got)
    assert got == sorted(got) and len(set(got)) == len(got)
    assert _blast(fixed(loss=0.2))[1] == got  # same seed, same losses
    assert _blast(fixed(loss=0.2), seed=6)[1] != got


def test_duplication_delivers_second_copies() -> None:
    w, got = _blast(fixed(duplicate=0.1))
    dups = len(got) - len(set(got))
    assert set(got) == set(range(4000))
    assert 300 < dups < 500
    assert w.net.stats.packets_delivered == len(got)


def test_reordering_holds_some_packets_back_so_later_ones_overtake() -> None:
    w, got = _blast(fixed(reorder=0.1, reorder_delay_s=0.0035))
    assert sorted(got) == list(range(4000))
    overtaken = sum(1 for x, y in itertools.pairwise(got) if y < x)
    assert 300 < overtaken < 500  # each held packet is overtaken by the next few
    # a held packet arrives reorder_delay_s late
    times = dict((int.from_bytes(d, "big"), t) for t, d in w["b"].packets())
    late = [i for i in range(4000) if times[i] > i * 0.001 + LAT + 1e-9]
    assert all(times[i] == pytest.approx(i * 0.001 + LAT + 0.0035) for i in late)
    assert 300 < len(late) < 500


def test_latency_distributions_sample_within_their_shape() -> None:
    import random

    rng = random.Random(3)
    u = [Latency("uniform", 0.001, 0.003).sample(rng) for _ in range(2000)]
    assert min(u) >= 0.001 and max(u) <= 0.003
    assert abs(sum(u) / len(u) - Latency("uniform", 0.001, 0.003).mean) < 0.0001
    ln = Latency("lognormal", 0.01, 0.5)
    xs = sorted(ln.sample(rng) for _ in range(4001))
    assert xs[2000] == pytest.approx(0.01, rel=0.1)  # the median
    assert all(x >= 0.0 for x in (Latency("normal", 0.001, 0.01).sample(rng) for _ in range(500)))
    with pytest.raises(ValueError):
        Latency("gamma")
    with pytest.raises(ValueError):
        LinkModel(loss=1.5)


# --------------------------------------------------------------------------- streams


def test_stream_takes_latency_plus_size_over_bandwidth_each_way() -> None:
    bw = 100_000.0  # bytes per second
    w = World(same_dc=fixed(0.002, bandwidth_bps=bw))
    w.add("a")
    w.add("b")
    data = bytes(5000)
    w.dial("a", "b", data, timeout_s=5.0)
    w.sim.run_until(5.0)
    ((t_req, req),) = [(t, e) for t, e in w["b"].inputs if isinstance(e, StreamRequestReceived)]
    assert t_req == pytest.approx(0.002 + 5000 / bw)
    assert req.data == data and req.addr == w.node("a").addr
    ((t_resp, resp),) = [(t, e) for t, e in w["a"].inputs if isinstance(e, StreamResponseReceived)]
    assert t_resp == pytest.approx(2 * (0.002 + 5000 / bw))
    assert resp == StreamResponseReceived(1, data[::-1])
    assert w.net.stats.streams == 1 and w.net.stats.stream_bytes == 10000


def test_a_stream_that_cannot_finish_by_its_deadline_times_out() -> None:
    w = World(same_dc=fixed(0.002, bandwidth_bps=1000.0))
    w.add("a")
    w.add("b")
    w.dial("a", "b", bytes(5000), timeout_s=1.0)  # 5 s of transfer
    w.sim.run_until(10.0)
    assert [(t, e) for t, e in w["a"].inputs] == [(1.0, StreamFailed(1, "i/o timeout"))]
    assert w["b"].inputs == []


def test_closing_a_stream_gives_the_dialer_eof() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w["b"].close_streams = True
    w.dial("a", "b", b"x")
    w.sim.run_until(1.0)
    assert [e for _, e in w["a"].inputs] == [StreamFailed(1, "EOF")]


def test_streams_to_a_crashed_process_are_refused_but_to_a_dark_host_time_out() -> None:
    w = World(same_dc=fixed(0.002))
    for n in ("a", "crashed", "dark"):
        w.add(n)
    w.node("crashed").crash()
    w.node("dark").power_off()
    w.dial("a", "crashed", b"x", timeout_s=3.0, sid=1)
    w.dial("a", "dark", b"x", timeout_s=3.0, sid=2)
    w.sim.run_until(10.0)
    got = [(t, e) for t, e in w["a"].inputs]
    assert got == [
        (
            pytest.approx(0.004),  # one round trip: the host's kernel answers RST
            StreamFailed(
                1, f"dial tcp {w.node('crashed').addr[0]}:7946: connect: connection refused"
            ),
        ),
        (3.0, StreamFailed(2, "i/o timeout")),
    ]
    # datagrams to either vanish: the dark host's on the wire, the crashed process's at
    # its host (which is up: delivered, but no process reads them)
    w.send("a", "crashed", b"p")
    w.send("a", "dark", b"p")
    w.sim.run_until(11.0)
    assert w.net.stats.packets_dropped == 1 and w.net.stats.packets_delivered == 1
    w.node("crashed").start()
    assert w["crashed"].inputs == []


def test_a_process_that_dies_while_serving_resets_its_streams() -> None:
    w = World(same_dc=fixed(0.01))
    w.add("a")
    w.add("b")
    w.dial("a", "b", b"x", timeout_s=5.0)
    w.sim.at(0.005, lambda _: w.node("b").crash())  # before the request arrives
    w.sim.run_until(10.0)
    assert [(t, e) for t, e in w["a"].inputs] == [
        (pytest.approx(0.005), StreamFailed(1, "connection reset by peer"))
    ]


def test_a_restarted_dialer_does_not_hear_its_previous_incarnation_streams() -> None:
    w = World(same_dc=fixed(0.01))
    w.add("a")
    w.add("b")
    w.dial("a", "b", b"x", timeout_s=5.0)
    w.sim.at(0.015, lambda _: w.node("a").restart())
    w.sim.run_until(10.0)
    assert w["a"].inputs == []  # the response belonged to the dead incarnation


# --------------------------------------------------------------------------- timers, stalls, drift


def test_timers_fire_at_their_deadlines_and_a_moved_deadline_wakes_nothing() -> None:
    w = World()
    w.add("a")
    w.arm("a", 1.0, 2.5)
    w.sim.run_until(1.5)
    assert w["a"].fired == [(1.0, 1.0)]
    # the core drops its 2.5 timer and asks for 3.0: the driver's 2.5 wake-up does not
    # call the core (it would have nothing to run), and the core runs at 3.0
    w["a"].timers = [3.0]
    handled = len(w["a"].fired)
    w.sim.run_until(2.6)
    assert len(w["a"].fired) == handled and w["a"].now == 1.0
    w.sim.run_until(5.0)
    assert w["a"].fired == [(1.0, 1.0), (3.0, 3.0)]


def test_stall_queues_packets_delivers_them_late_and_runs_timers_late() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.arm("b", 1.5)
    w.sim.at(1.0, lambda _: w.node("b").stall(2.0))
    for i in range(3):
        w.sim.at(1.2 + i * 0.1, lambda i: w.send("a", "b", bytes([i])), i)
    w.sim.run_until(2.9)
    assert w["b"].inputs == [] and w["b"].fired == []
    w.sim.run_until(4.0)
    # at 3.0 the backlog is handled in order, then the overdue timer, all late
    assert w["b"].packets() == [(3.0, b"\x00"), (3.0, b"\x01"), (3.0, b"\x02")]
    assert w["b"].fired == [(1.5, 3.0)]
    w.send("a", "b", b"after")
    w.sim.run_until(5.0)
    assert w["b"].packets()[-1] == (pytest.approx(4.0 + LAT), b"after")


def test_stall_backlog_is_bounded_by_the_socket_buffer() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.node("b").stall(1.0)
    n = SOCKET_BUFFER_PACKETS + 10
    for i in range(n):
        w.send("a", "b", i.to_bytes(2, "big"))
    w.sim.run_until(2.0)
    got = [int.from_bytes(d, "big") for _, d in w["b"].packets()]
    assert got == list(range(SOCKET_BUFFER_PACKETS))  # the newest were dropped
    assert w.node("b").dropped_while_stalled == 10


def test_a_crash_during_a_stall_cancels_the_resume() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.node("b").stall(1.0)
    w.send("a", "b", b"lost")
    w.sim.at(0.5, lambda _: w.node("b").restart())
    w.sim.run_until(2.0)
    assert w["b"].inputs == []  # the new incarnation never sees the old backlog


def test_drift_makes_timers_fire_at_drifted_times_and_local_time_is_monotonic() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    a = w.node("a")
    w.sim.run_until(10.0)
    a.set_drift(0.10)  # from now on the clock runs 10 % fast
    assert a.local_now() == pytest.approx(10.0)
    w.arm("a", 21.0)  # 11 local seconds ahead: 10 real seconds
    w.sim.run_until(25.0)
    ((deadline, ran_at),) = w["a"].fired
    assert deadline == 21.0 and ran_at == pytest.approx(21.0)
    assert w["a"].node.local_now() == pytest.approx(21.0 + 5.0 * 1.1)
    # packets are stamped with the receiver's clock
    w.send("b", "a", b"x")
    w.sim.run_until(26.0)
    assert w["a"].packets()[-1][0] == pytest.approx(10.0 + (25.0 + LAT - 10.0) * 1.1)
    # a slow clock; local time never goes backwards across changes
    a.set_drift(-0.5)
    seen = []
    for t in (26.0, 27.0, 28.0):
        w.sim.run_until(t)
        seen.append(a.local_now())
    assert seen == sorted(seen) and seen[2] - seen[1] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        a.set_drift(-1.0)


def test_every_drifted_timer_runs_at_or_after_its_deadline() -> None:
    """Float rounding of the local/global conversion never hands a core a due timer early."""
    w = World()
    w.add("a")
    a = w.node("a")
    a.set_drift(1e-7 * 3)
    deadlines = [1.0 + i * 0.1 + i * 1e-13 for i in range(200)]
    w.arm("a", *deadlines)
    w.sim.run_until(100.0)
    assert [d for d, _ in w["a"].fired] == deadlines
    assert all(ran >= d for d, ran in w["a"].fired)


def test_restart_keeps_the_disk_and_loses_memory() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    b = w.node("b")
    b.disk["keyring"] = [b"k1"]
    w.send("a", "b", b"before")
    w.sim.run_until(1.0)
    old = w["b"]
    assert old.packets()
    b.restart()
    assert b.boots == 2 and w["b"] is not old
    assert w["b"].disk_seen == {"keyring": [b"k1"]}
    assert w["b"].inputs == []
    w.send("a", "b", b"after")
    w.sim.run_until(2.0)
    assert w["b"].packets() == [(pytest.approx(1.0 + LAT), b"after")]
    # a crashed host that starts again is a new boot too, with the same disk
    b.crash()
    assert b.core is None and not b.up
    b.start()
    assert b.boots == 3 and w["b"].disk_seen == {"keyring": [b"k1"]}


# --------------------------------------------------------------------------- slow


def test_slow_handles_each_input_delay_late_in_order_while_timers_run_on_time() -> None:
    """A slow process (CPU starvation) reads every packet ``delay_s`` after it arrived, in
    arrival order; its timers fire at their deadlines and what it sends leaves at once."""
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.arm("b", 1.5, 2.2)
    w.sim.at(1.0, lambda _: w.node("b").slow(2.0, 0.5))
    for i in range(3):
        w.sim.at(1.2 + i * 0.1, lambda i: w.send("a", "b", bytes([i])), i)
    w.sim.at(1.6, lambda _: w.send("b", "a", b"out"))
    w.sim.run_until(1.69)
    assert w["b"].inputs == []
    assert w["b"].fired == [(1.5, 1.5)]
    assert w["a"].packets() == [(pytest.approx(1.6 + LAT), b"out")]
    w.sim.run_until(2.5)
    got = w["b"].packets()
    assert [d for _, d in got] == [b"\x00", b"\x01", b"\x02"]
    assert [t for t, _ in got] == [pytest.approx(1.2 + i * 0.1 + LAT + 0.5) for i in range(3)]
    assert w["b"].fired == [(1.5, 1.5), (2.2, 2.2)]
    assert w.node("b").slowed and "slow" in repr(w.node("b"))


def test_input_after_the_slow_period_queues_behind_what_still_waits() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.node("b").slow(1.0, 0.8)
    w.sim.at(0.9, lambda _: w.send("a", "b", b"late"))  # arrives slow: handled at 1.701
    w.sim.at(1.2, lambda _: w.send("a", "b", b"after"))  # arrives at 1.201, not slow
    w.sim.run_until(1.5)
    assert w["b"].inputs == []
    w.sim.run_until(3.0)
    assert w["b"].packets() == [
        (pytest.approx(0.9 + LAT + 0.8), b"late"),
        (pytest.approx(0.9 + LAT + 0.8), b"after"),
    ]
    assert not w.node("b").slowed
    w.send("a", "b", b"normal")  # queue empty, slow over: handled on arrival again
    w.sim.run_until(4.0)
    assert w["b"].packets()[-1] == (pytest.approx(3.0 + LAT), b"normal")


def test_slow_delays_stream_events_too() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.node("b").slow(5.0, 0.3)
    w.dial("a", "b", b"ping", timeout_s=2.0)
    w.sim.run_until(1.0)
    (t, req), *_ = w["b"].inputs
    assert isinstance(req, StreamRequestReceived) and t == pytest.approx(LAT + 0.3)
    (t2, resp), *_ = w["a"].inputs
    assert isinstance(resp, StreamResponseReceived) and resp.data == b"gnip"
    assert t2 == pytest.approx(2 * LAT + 0.3)


def test_slow_queue_is_bounded_by_the_socket_buffer() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    w.node("b").slow(1.0, 0.5)
    n = SOCKET_BUFFER_PACKETS + 7
    for i in range(n):
        w.send("a", "b", i.to_bytes(2, "big"))
    w.sim.run_until(2.0)
    got = [int.from_bytes(d, "big") for _, d in w["b"].packets()]
    assert got == list(range(SOCKET_BUFFER_PACKETS))
    assert w.node("b").dropped_while_slow == 7


def test_crash_and_restart_clear_a_slow_period_and_what_waited() -> None:
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    b = w.node("b")
    b.slow(10.0, 1.0)
    w.send("a", "b", b"lost")
    w.sim.at(0.5, lambda _: b.restart())
    w.sim.at(0.6, lambda _: w.send("a", "b", b"fresh"))
    w.sim.run_until(3.0)
    assert w["b"].packets() == [(pytest.approx(0.6 + LAT), b"fresh")]
    assert not b.slowed
    with pytest.raises(ValueError):
        b.slow(1.0, 0.0)


def test_a_stall_during_a_slow_period_keeps_the_order_of_input() -> None:
    """Stalled while slow: what waited is read first when the stall ends, then what the
    stall held, each no earlier than its delay allows."""
    w = World(same_dc=fixed())
    w.add("a")
    w.add("b")
    b = w.node("b")
    b.slow(10.0, 0.5)
    w.send("a", "b", b"1")  # due at 0.501
    w.sim.at(0.2, lambda _: b.stall(1.0))  # 0.2 - 1.2
    w.sim.at(0.4, lambda _: w.send("a", "b", b"2"))  # held by the stall
    w.sim.run_until(1.1)
    assert w["b"].inputs == []
    w.sim.run_until(3.0)
    assert w["b"].packets() == [(pytest.approx(1.2), b"1"), (pytest.approx(1.7), b"2")]


# ------------------------------------------------------------ SwimWorld.start_converged


def _converged_world(seed: int) -> tuple[Sim, Any]:
    from sim.swimworld import NodeSpec, SwimWorld, TraceDigest
    from swim.config import SwimConfig

    sim = Sim(seed)
    net = Network(sim, sim.seeds.rng("network"))
    specs = [NodeSpec(f"n{i}", "dc1", "lan", (f"10.0.0.{i + 1}", 7946)) for i in range(30)]
    world = SwimWorld(sim, net, specs, swim=SwimConfig.lan().replace(enable_compression=False))
    digest = TraceDigest(world)
    world.start_converged()
    return sim, (world, digest)


def test_start_converged_begins_quiet_and_stays_converged() -> None:
    sim, (world, digest) = _converged_world(7)
    assert world.converged()
    for node in world.nodes.values():
        core = node.core
        assert len(core.members) == 30
        assert not core.ml.broadcasts.queued and not core.broadcasts.queued
        assert core.ml.timers.next_deadline() is not None
    joins = {(obs, m) for t, obs, m, st in world.log.events if t == 0.0 and st.name == "ALIVE"}
    assert len(joins) == 30 * 30  # every member logged itself and every other as joined
    sim.run_until(120.0)
    assert world.converged()
    assert not [e for e in world.log.events if e[3].name != "ALIVE"]  # nobody failed
    # push/pulls happened, spread over the size-scaled interval rather than in a burst
    assert world.net.stats.streams > 0
    again, (_, digest2) = _converged_world(7)
    again.run_until(120.0)
    assert digest.hexdigest() == digest2.hexdigest()


def test_start_converged_can_drop_the_join_events() -> None:
    from sim.swimworld import NodeSpec, SwimWorld
    from swim.config import SwimConfig
    from swim.events import MemberStatus

    sim = Sim(3)
    net = Network(sim, sim.seeds.rng("network"))
    specs = [NodeSpec(f"n{i}", "dc1", "lan", (f"10.0.0.{i + 1}", 7946)) for i in range(10)]
    world = SwimWorld(sim, net, specs, swim=SwimConfig.lan())
    world.start_converged(log_joins=False)
    assert world.converged()
    assert all(obs == m for _, obs, m, _ in world.log.events)  # only each start's own join
    world.crash("n4")
    sim.run_until(40.0)
    failed = world.log.first("n4", MemberStatus.FAILED)
    assert set(failed) == {n for n in world.nodes if n != "n4"}
