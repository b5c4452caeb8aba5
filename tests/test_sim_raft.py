"""Raft clusters in the simulator: 3 and 5 servers running the real core, with the
catalog's real store as the state machine and real encoded messages, under loss,
duplication, reordering, partitions (the leader's included) and crashes with restarts
from what was persisted. Every seed checks election safety, state machine safety, log
matching and leader completeness, and, once healed, that no acknowledged write was lost.
A failing seed reproduces with ``pytest tests/test_sim_raft.py -k 'seed'``."""

from __future__ import annotations

import pytest

from federation.raft import RaftConfig
from sim.engine import Sim
from sim.network import Latency, LinkModel, Network
from sim.raftworld import RaftWorld

CHAOS_S = 60.0
SETTLE_S = 15.0


def run(seed: int, n: int, config: RaftConfig | None = None) -> RaftWorld:
    sim = Sim(seed)
    link = LinkModel(Latency("uniform", 0.0005, 0.004), loss=0.02, duplicate=0.01, reorder=0.05)
    net = Network(sim, sim.seeds.rng("network"), same_dc=link)
    world = RaftWorld(sim, net, [f"s{i}" for i in range(1, n + 1)], config)
    world.start()
    rng = sim.seeds.rng("faults")
    writes = 0

    def tick(_: object) -> None:
        nonlocal writes
        if sim.now < CHAOS_S:
            world.write(f"k{writes % 20}", f"v{writes}".encode())
            writes += 1
            sim.after(0.05, tick)

    def fault(_: object) -> None:
        if sim.now >= CHAOS_S:
            return
        r = rng.random()
        names = world.names
        if r < 0.3:
            lead = world.leader()
            victims = {lead} if lead and rng.random() < 0.5 else set(rng.sample(names, n // 2))
            token = world.isolate(victims)
            sim.after(rng.uniform(1.0, 6.0), lambda _: net.heal(token))
        elif r < 0.55:
            up = [x for x in names if world.nodes[x].up]
            if len(up) > n // 2 + 1 or rng.random() < 0.3:
                victim = world.nodes[rng.choice(up)]
                victim.crash()
                sim.after(rng.uniform(0.5, 5.0), lambda _: victim.up or victim.start())
        sim.after(rng.uniform(0.5, 3.0), fault)

    sim.after(0.0, tick)
    sim.after(2.0, fault)
    sim.run_until(CHAOS_S)
    net.heal_all()
    for node in world.nodes.values():
        if not node.up:
            node.start()
    sim.run_until(CHAOS_S + SETTLE_S)
    world.check_logs()
    world.check_acknowledged()
    return world


@pytest.mark.parametrize("seed", range(1, 9))
def test_three_servers_stay_safe_and_lose_no_acknowledged_write(seed: int) -> None:
    world = run(seed, 3)
    assert world.violations == []
    assert len(world.acknowledged) > 100, "too few writes acknowledged for the test to mean much"
    assert len(world.leaders) > 1, "leadership never changed: the faults did not bite"


@pytest.mark.parametrize("seed", range(101, 105))
def test_five_servers_stay_safe_and_lose_no_acknowledged_write(seed: int) -> None:
    world = run(seed, 5)
    assert world.violations == []
    assert len(world.acknowledged) > 100
    assert len(world.leaders) > 1


SNAPPY = RaftConfig(snapshot_threshold=40, trailing_logs=8, snapshot_chunk_bytes=512)
"""Snapshots every 40 entries, 8 kept behind: a follower down for a second or two catches
up by InstallSnapshot, in chunks, the catalog's real store serialised and restored."""


@pytest.mark.parametrize("seed", range(201, 205))
def test_servers_that_snapshot_constantly_stay_safe(seed: int) -> None:
    world = run(seed, 3, SNAPPY)
    assert world.violations == []
    assert len(world.acknowledged) > 100
    assert world.counts["snapshots"] > 10 and world.counts["installed"] > 0


def test_runs_are_reproducible_from_the_seed() -> None:
    a, b = run(7, 3), run(7, 3)
    assert a.leaders == b.leaders and a.acknowledged == b.acknowledged
    assert {n: a.disk(n).entries for n in a.names} == {n: b.disk(n).entries for n in b.names}
