"""Raft clusters in the simulator: 3 and 5 servers running the real core, with the
catalog's real store as the state machine and real encoded messages.

1. Writes-only chaos (the first tests): loss, duplication, reordering, partitions (the
   leader's included), crashes with restarts from what was persisted, snapshots; every
   seed checks election safety, state machine safety, log matching and leader
   completeness, and, once healed, that no acknowledged write was lost.
2. Swarm runs (sim/raftworld.py's :func:`run_swarm`): the seed picks the cluster size,
   Raft timing, snapshot thresholds, link model, fault mix (partitions, one-way cuts, a
   deposed leader with a slow clock, crashes, stalls, slow processes, clock drift, lossy
   links, leadership transfers, membership changes) and KV clients; the recorded client
   history is checked for linearizability (Wing & Gong / Lowe): consistent reads must be,
   default-mode reads are reported. A fixed CI set runs here; ``GOSSAMER_SLOW=1`` runs a
   sweep (``GOSSAMER_SWEEP=A-B``, 1-200 by default); a failing seed prints
   ``GOSSAMER_SEED=N python -m pytest tests/test_sim_raft.py -k swarm_one``, which runs
   it alone (``python -m sim.raftworld N -v`` prints the same summary).
"""

from __future__ import annotations

import os

import pytest

from federation.raft import Proposed, RaftConfig, Role
from sim.engine import Sim
from sim.linearizability import check
from sim.network import Latency, LinkModel, Network
from sim.node import SimNode
from sim.raftworld import (
    FAULTS,
    KVReadRequested,
    NotLeader,
    RaftHost,
    RaftWorld,
    ReadServed,
    SwarmPlan,
    SwarmRun,
    Workload,
    run_swarm,
)
from sim.run import parse_seeds

CHAOS_S = 60.0
SETTLE_S = 15.0


def restart(node: SimNode) -> None:
    if not node.up:
        node.start()


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
                sim.after(rng.uniform(0.5, 5.0), restart, victim)
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


# --------------------------------------------------------------------------- swarm runs

CI_SEEDS = [*range(1, 31), 50, 88, 91, 96, 127, 156, 165, 176, 197]
"""Seeds 1-30, and some of the seeds whose runs catch a leader that answers ReadIndex
without its heartbeat round (the mutation this set was checked against: 17, 23, 50, 88,
91, 96, 127, 156, 176 and 197 each fail with it), and some whose default-mode reads
come out stale (20, 39, 165, 176)."""

SLOW = os.environ.get("GOSSAMER_SLOW") == "1"


def reproduce(seed: int) -> str:
    return f"GOSSAMER_SEED={seed} python -m pytest tests/test_sim_raft.py -k swarm_one"


def verdict(run: SwarmRun) -> str:
    """Everything a failing seed should print."""
    text = [run.summary(faults_shown=20)]
    if not run.consistent.ok:
        text.append(run.consistent.explanation)
    text.append(f"reproduce: {reproduce(run.plan.seed)}")
    return "\n".join(text)


def assert_swarm_ok(run: SwarmRun) -> None:
    assert run.ok, verdict(run)
    assert run.consistent.ok and not run.consistent.undetermined, verdict(run)
    w = run.world
    # the run meant something: clients got answers of every kind, leadership moved
    assert w.client_stats["writes_ok"] > 20 and w.client_stats["reads_ok"] > 20, verdict(run)
    assert len(w.leaders) > 1, "leadership never changed: the faults did not bite\n" + verdict(run)
    if run.plan.config.snapshot_threshold < 100:
        assert w.counts["snapshots"] > 0, "a plan with small snapshots took none\n" + verdict(run)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_swarm(seed: int) -> None:
    run = run_swarm(SwarmPlan.from_seed(seed))
    assert_swarm_ok(run)
    print(run.summary())


def test_swarm_one() -> None:
    """The seed in ``GOSSAMER_SEED``, alone, with its summary printed."""
    text = os.environ.get("GOSSAMER_SEED")
    if text is None:
        pytest.skip("set GOSSAMER_SEED=N to run one swarm seed")
    run = run_swarm(SwarmPlan.from_seed(int(text)))
    print(verdict(run))
    assert_swarm_ok(run)


def test_swarm_sweep() -> None:
    """``GOSSAMER_SLOW=1``: every seed of ``GOSSAMER_SWEEP`` (1-200 by default)."""
    if not SLOW:
        pytest.skip("long sweep, skipped in CI: set GOSSAMER_SLOW=1 to run it")
    seeds = parse_seeds(os.environ.get("GOSSAMER_SWEEP", "1-200"))
    failed: list[str] = []
    undetermined = stale_runs = stale_reads = ops = 0
    example = ""
    for seed in seeds:
        run = run_swarm(SwarmPlan.from_seed(seed))
        ops += run.world.client_stats["ops"]
        undetermined += run.consistent.undetermined or run.default.undetermined
        if run.stale_default:
            stale_runs += 1
            stale_reads += len(run.stale_default)
            example = example or f"seed {seed}: {run.stale_default[0]}"
        if not run.ok:
            failed.append(verdict(run))
    print(
        f"\nswarm sweep: {len(seeds)} seeds, {ops} client ops, {len(failed)} failed, "
        f"{undetermined} with an undetermined verdict; default-mode reads stale in "
        f"{stale_runs} runs ({stale_reads} reads){', e.g. ' + example if example else ''}"
    )
    assert not failed, "\n\n".join(failed)


def test_swarm_runs_are_reproducible_from_the_seed() -> None:
    a, b = run_swarm(SwarmPlan.from_seed(17)), run_swarm(SwarmPlan.from_seed(17))
    assert a.world.history.ops() == b.world.history.ops()
    assert a.faults == b.faults and a.world.leaders == b.world.leaders
    assert a.world.client_stats == b.world.client_stats
    disks = [{n: r.world.disk(n).entries for n in r.world.names} for r in (a, b)]
    assert disks[0] == disks[1]
    assert a.summary() == b.summary()


def test_swarm_plans_cover_the_configurations() -> None:
    """The seed picks everything: over 200 seeds every dimension takes several values
    (and one seed always the same plan)."""
    plans = [SwarmPlan.from_seed(s) for s in range(1, 201)]
    assert plans[0] == SwarmPlan.from_seed(1)
    assert {p.servers for p in plans} == {3, 5}
    assert {p.workload.clients for p in plans} == {2, 3, 4, 5, 6}
    assert {p.workload.readers for p in plans} == {0, 1, 2}
    assert {p.config.election_timeout_s for p in plans} == {0.3, 1.0}
    snappy = [p for p in plans if p.config.snapshot_threshold < 100]
    assert 30 < len(snappy) < 170
    for kind in FAULTS:
        weights = {dict(p.weights)[kind] for p in plans}
        assert weights == {0, 1, 2, 4}, kind
    assert len({p.link for p in plans}) > 150
    assert {p.link.loss for p in plans} == {0.0, 0.01, 0.03, 0.08}


# --------------------------------------------------------------------------- reads, targeted


def test_servers_that_do_not_lead_take_no_part_in_client_requests() -> None:
    sim = Sim(3)
    world = RaftWorld(sim, Network(sim, sim.seeds.rng("network")), ["s1", "s2", "s3"])
    world.start()
    sim.run_until(5.0)
    lead = world.leader()
    assert lead is not None
    follower = next(n for n in world.names if n != lead)
    host = world.nodes[follower].core
    assert isinstance(host, RaftHost)
    before = host.core.last_index
    host.handle(sim.now, Proposed(901, {"Op": "kv"}))
    host.handle(sim.now, KVReadRequested(902, "k", consistent=True))
    host.handle(sim.now, KVReadRequested(903, "k", consistent=False))
    assert host.take_effects() == [NotLeader(901, lead), NotLeader(902, lead), NotLeader(903, lead)]
    assert host.core.last_index == before
    leader_host = world.nodes[lead].core
    assert isinstance(leader_host, RaftHost) and leader_host.core.role is Role.LEADER
    leader_host.handle(sim.now, KVReadRequested(904, "k", consistent=False))
    assert leader_host.take_effects() == [ReadServed(904, "k", None, lead, leader_host.core.term)]


def deposed_leader(consistent: float) -> tuple[RaftWorld, str]:
    """Three servers; a reader that sticks to the leader, writers that always ask the
    simulator who leads. At t=5 the leader is cut off with its clock at half speed, so
    check-quorum deposes it only well after the other two have elected a successor and
    the writers have moved there; healed at t=9."""
    sim = Sim(11)
    net = Network(sim, sim.seeds.rng("network"))
    world = RaftWorld(sim, net, ["s1", "s2", "s3"])
    world.start()
    workload = Workload(
        clients=3, readers=1, keys=1, weights=(0, 1, 0, 0), consistent=consistent,
        refresh=1.0, think_s=0.01, timeout_s=0.5,
    )  # fmt: skip
    world.add_clients(workload, until=12.0)
    sim.run_until(5.0)
    old = world.leader()
    assert old is not None
    world.nodes[old].set_drift(-0.5)
    token = world.isolate([old])
    sim.run_until(9.0)
    net.heal(token)
    world.nodes[old].set_drift(0.0)
    sim.run_until(14.0)
    world.check_logs()
    world.check_acknowledged()
    world.check_converged()
    assert world.violations == []
    return world, old


def test_a_deposed_leader_serves_stale_default_reads() -> None:
    """Consul's default mode is not linearizable: the checker proves it on this history,
    and every stale read it witnesses came from the deposed leader."""
    world, old = deposed_leader(consistent=0.0)
    stale = world.stale_reads("default")
    assert stale, "the deposed leader served no stale read: the scenario lost its point"
    assert all(f"from {old} " in text for text in stale), stale
    res = check(world.histories()[1])
    assert not res.ok and not res.undetermined, res.explanation


def test_consistent_reads_are_not_served_by_a_deposed_leader() -> None:
    """The same run with consistent reads: the reader's reads at the deposed leader go
    unanswered (no quorum acknowledges its heartbeat round) until it moves on, and the
    history is linearizable. A leader answering ReadIndex without the round fails here."""
    world, old = deposed_leader(consistent=1.0)
    assert world.stale_reads("consistent") == []
    res = check(world.histories()[0])
    assert res.ok, res.explanation
    reader = [op for op in world.history.ops() if op.client == "c1"]
    unanswered = [op for op in reader if op.ret is None and 5.0 < op.call < 9.0]
    served_by_old = [
        i for i, (server, _) in world.op_server.items()
        if server == old and 5.5 < world.history.ops()[i].call < 9.0
    ]  # fmt: skip
    assert unanswered, "the reader never tried the deposed leader"
    assert served_by_old == []
