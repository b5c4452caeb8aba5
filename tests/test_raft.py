"""The Raft core through its contract, on a deterministic in-memory network: the paper's
safety properties as named tests over many random schedules (partitions, crashes with
restarts from what was persisted, lost and reordered messages), and the tricky cases
one at a time. Section numbers are the Raft paper's (Ongaro & Ousterhout, 2014)."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from federation.raft import (
    AddNonVoter,
    AppendRequest,
    AppendResponse,
    Applied,
    BootstrapRequested,
    CompactLog,
    Configuration,
    ConfigurationChanged,
    ConfigurationChangeRequested,
    Entry,
    EntryKind,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    LeaderElected,
    LeadershipTransferRequested,
    Message,
    MessageReceived,
    Persisted,
    PersistSnapshot,
    PersistState,
    PromoteVoter,
    ProposalDropped,
    Proposed,
    RaftConfig,
    RaftCore,
    ReadIndexReady,
    ReadIndexRequested,
    RemoveServer,
    RequestRefused,
    Role,
    SendMessage,
    ServerInfo,
    SnapshotRequested,
    TimeoutNow,
    TransferDone,
)
from gossamer.core import TimerExpired
from sim.raftworld import MemoryDisk, leader_completeness_violations, log_matching_violations

CFG = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1)


class Machine:
    """A state machine that records what it applied, in order, and checks state machine
    safety (§5.4.3) against ``seen``, the commands any server applied (shared)."""

    def __init__(self, seen: dict[int, Any]) -> None:
        self.applied: list[tuple[int, Any]] = []
        self.seen = seen

    def apply(self, index: int, command: Any) -> Any:
        assert not self.applied or index > self.applied[-1][0]
        assert self.seen.setdefault(index, command) == command, f"two commands at {index}"
        self.applied.append((index, command))
        if command == "refuse":
            raise ValueError("refused")
        return len(self.applied)

    def snapshot(self) -> bytes:
        out: bytes = msgpack.packb(self.applied)
        return out

    def restore(self, data: bytes) -> None:
        self.applied = [(i, cmd) for i, cmd in msgpack.unpackb(data)]
        for index, command in self.applied:
            assert self.seen.setdefault(index, command) == command


class Cluster:
    """N cores, their disks, and a network that can lose, delay, reorder and partition.

    ``bootstrap=False``: the N servers share a static voter list. ``bootstrap=True``: each
    of them is bootstrapped with the same configuration (rule C1). ``spares`` more servers
    start unbootstrapped, for membership changes to add."""

    def __init__(
        self,
        n: int,
        seed: int,
        config: RaftConfig = CFG,
        *,
        bootstrap: bool = False,
        spares: int = 0,
    ) -> None:
        self.ids = [f"s{i}" for i in range(1, n + spares + 1)]
        self.initial = self.ids[:n]
        self.bootstrap = bootstrap
        self.rng = random.Random(seed)
        self.config = config
        self.now = 0.0
        self.disks = {i: MemoryDisk() for i in self.ids}
        self.machines: dict[str, Machine] = {}
        self.cores: dict[str, RaftCore | None] = {}
        self.in_flight: list[tuple[float, int, Message]] = []
        self.seq = 0
        self.cut: set[frozenset[str]] = set()
        self.loss = 0.0
        self.leaders: dict[int, str] = {}
        """term -> the leader elected in it (election safety is checked on insert)"""
        self.committed: dict[int, int] = {}
        """index -> the term of the entry some server applied there"""
        self.commands: dict[int, Any] = {}
        """index -> the command some server applied there"""
        self.results: dict[int, Any] = {}
        self.dropped: list[int] = []
        self.refused: dict[int, str] = {}
        self.announced: dict[str, Configuration] = {}
        self.installs_seen: dict[str, int] = {}
        self.reads: dict[int, int] = {}
        """read request -> its read index"""
        self.read_floor: dict[int, int] = {}
        """read request -> the highest index of a write acknowledged before it was asked"""
        self.acked = 0
        self.transfers: dict[int, str] = {}
        self.change_requests: list[int] = []
        self.snapshots = 0
        self.installed = 0
        self.chunks = 0
        """InstallSnapshot requests sent"""
        self.next_request = 1
        for i in self.ids:
            self.start(i)
        if bootstrap:
            conf = Configuration(tuple(ServerInfo(i) for i in self.initial))
            for i in self.initial:
                self.deliver(i, BootstrapRequested(conf))

    # ---------------------------------------------------------------- servers

    def start(self, sid: str) -> None:
        self.machines[sid] = Machine(self.commands)
        static = not self.bootstrap and sid in self.initial
        self.announced.pop(sid, None)
        self.installs_seen[sid] = 0
        self.cores[sid] = core = RaftCore(
            sid,
            self.initial if static else None,
            self.machines[sid],
            random.Random(self.rng.random()),
            self.config,
            self.disks[sid].persisted(),
            now=self.now,
        )
        self._effects(sid, core.take_effects())

    def crash(self, sid: str) -> None:
        self.cores[sid] = None
        self.in_flight = [f for f in self.in_flight if f[2].dst != sid]

    def live(self) -> list[str]:
        return [i for i in self.ids if self.cores[i] is not None]

    def core(self, sid: str) -> RaftCore:
        c = self.cores[sid]
        assert c is not None
        return c

    def leader(self) -> str | None:
        leads = [i for i in self.live() if self.core(i).role is Role.LEADER]
        if not leads:
            return None
        return max(leads, key=lambda i: self.core(i).term)

    def members(self, sid: str) -> list[str]:
        """The servers in ``sid``'s configuration."""
        return [s.id for s in self.core(sid).configuration.servers]

    # ---------------------------------------------------------------- driving

    def partition(self, *groups: set[str]) -> None:
        self.cut = set()
        for a in self.ids:
            for b in self.ids:
                if a != b and not any(a in g and b in g for g in groups):
                    self.cut.add(frozenset((a, b)))

    def purge(self) -> None:
        """Drop in-flight messages that now cross a cut (a partition that is instant)."""
        self.in_flight = [
            f for f in self.in_flight if frozenset((f[2].src, f[2].dst)) not in self.cut
        ]

    def run_until(self, cond: Any, limit_s: float = 30.0) -> None:
        end = self.now + limit_s
        while not cond():
            assert self.now < end and self.step(), "condition never held"

    def heal(self) -> None:
        self.cut = set()

    def deliver(self, sid: str, event: Any) -> None:
        core = self.core(sid)
        core.handle(self.now, event)
        self._effects(sid, core.take_effects())

    def _effects(self, sid: str, effects: list[Any]) -> None:
        disk = self.disks[sid]
        for eff in effects:
            if isinstance(eff, PersistSnapshot):
                self.snapshots += 1
                core = self.cores.get(sid)
                if core is not None and core.stats["snapshots_installed"] > self.installs_seen.get(
                    sid, 0
                ):
                    self.installs_seen[sid] = core.stats["snapshots_installed"]
                    self.installed += 1
            if disk.persist(eff):  # asserts the log stays contiguous
                continue
            if isinstance(eff, SendMessage):
                m = eff.message
                if isinstance(m, InstallSnapshotRequest):
                    self.chunks += 1
                if isinstance(m, TimeoutNow):  # rule T: only to a target that is up to date
                    core = self.core(sid)
                    assert core.match_index(m.dst) == core.last_index
                # persist-before-send: the disk already holds the term a message carries
                # (pre-vote messages carry the term asked about, not one adopted)
                assert getattr(m, "pre_vote", False) or disk.term >= m.term
                if frozenset((m.src, m.dst)) in self.cut or self.rng.random() < self.loss:
                    continue
                delay = 0.001 + self.rng.random() * 0.02
                self.seq += 1
                self.in_flight.append((self.now + delay, self.seq, m))
            elif isinstance(eff, LeaderElected):
                prev = self.leaders.setdefault(eff.term, eff.leader)
                assert prev == eff.leader, f"two leaders in term {eff.term}: {prev}, {eff.leader}"
            elif isinstance(eff, Applied):
                seen = self.committed.setdefault(eff.index, eff.term)
                assert seen == eff.term, f"state machine safety: index {eff.index} differs"
                if eff.request_id is not None:
                    self.results[eff.request_id] = eff.error or eff.result
                    self.acked = max(self.acked, eff.index)
            elif isinstance(eff, ReadIndexReady):
                # linearizable (thesis §6.4): the read index covers every write that was
                # acknowledged before the read was asked
                assert eff.index >= self.read_floor[eff.request_id], "stale read index"
                assert eff.index <= self.core(sid).commit_index
                self.reads[eff.request_id] = eff.index
            elif isinstance(eff, TransferDone):
                self.transfers[eff.request_id] = eff.leader
            elif isinstance(eff, ProposalDropped):
                self.dropped.append(eff.request_id)
            elif isinstance(eff, RequestRefused):
                self.refused[eff.request_id] = eff.reason
            elif isinstance(eff, ConfigurationChanged):
                # the change is durable already: its entry was persisted before it, or,
                # compacted, it is the configuration of the snapshot that covers it
                held = {e.index: e for e in disk.entries}
                snap = disk.snapshot
                entry = held.get(eff.index)
                assert (
                    eff.index == 0
                    or (entry is not None and entry.kind is EntryKind.CONFIGURATION)
                    or (
                        snap is not None
                        and eff.index <= snap.index
                        and snap.configuration == eff.configuration
                    )
                )
                self.announced[sid] = eff.configuration
        core = self.cores.get(sid)
        if core is not None and (core.configuration.servers or sid in self.announced):
            # every change of the configuration in force was announced
            assert self.announced[sid] == core.configuration

    def propose(self, sid: str, command: Any) -> int:
        rid = self.next_request
        self.next_request += 1
        self.deliver(sid, Proposed(rid, command))
        return rid

    def change(self, sid: str, change: Any) -> int:
        rid = self.next_request
        self.next_request += 1
        self.change_requests.append(rid)
        self.deliver(sid, ConfigurationChangeRequested(rid, change))
        return rid

    def read(self, sid: str) -> int:
        rid = self.next_request
        self.next_request += 1
        self.read_floor[rid] = self.acked
        self.deliver(sid, ReadIndexRequested(rid))
        return rid

    def transfer(self, sid: str, target: str | None) -> int:
        rid = self.next_request
        self.next_request += 1
        self.deliver(sid, LeadershipTransferRequested(rid, target))
        return rid

    def step(self) -> bool:
        """Deliver the next message or fire the next timer, whichever comes first."""
        deadlines = [(d, i) for i in self.live() if (d := self.core(i).next_deadline()) is not None]
        t_timer, who = min(deadlines) if deadlines else (float("inf"), "")
        if self.in_flight and min(self.in_flight)[0] <= t_timer:
            self.in_flight.sort()
            # reordering: sometimes take a later message first
            k = 0 if self.rng.random() < 0.8 else self.rng.randrange(min(3, len(self.in_flight)))
            t, _, m = self.in_flight.pop(k)
            self.now = max(self.now, t)
            if self.cores.get(m.dst) is not None:
                self.deliver(m.dst, MessageReceived(m))
            return True
        if t_timer == float("inf"):
            return False
        self.now = max(self.now, t_timer)
        self.deliver(who, TimerExpired())
        return True

    def run(self, seconds: float, max_steps: int = 200_000) -> None:
        end = self.now + seconds
        for _ in range(max_steps):
            if self.now >= end or not self.step():
                break
        self.check_logs()

    # ---------------------------------------------------------------- invariants

    def check_logs(self) -> None:
        """Log matching (§5.3) on the persisted logs, and leader completeness (§5.4): every
        applied entry is in the log of the current leader (sim/raftworld.py's checkers)."""
        problems = log_matching_violations({i: self.disks[i].entries for i in self.ids})
        lead = self.leader()
        if lead is not None:
            core = self.core(lead)
            problems += leader_completeness_violations(
                lead, core.entries(), self.committed, core.snapshot_index
            )
        assert problems == []


def elect(c: Cluster, limit_s: float = 30.0) -> str:
    end = c.now + limit_s
    while c.now < end:
        c.run(0.5)
        lead = c.leader()
        if lead is not None and all(
            c.core(i).leader == lead
            for i in c.live()
            if frozenset((i, lead)) not in c.cut and i in c.members(lead)
        ):
            return lead
    raise AssertionError("no leader elected")


# ==================================================================== basic behaviour


def test_single_server_leads_and_commits_at_once() -> None:
    c = Cluster(1, seed=1)
    assert elect(c) == "s1"
    rid = c.propose("s1", "x")
    assert c.results[rid] == 1  # applied synchronously, no network needed
    assert c.machines["s1"].applied == [(2, "x")]  # index 1 is the leader's no-op


@pytest.mark.parametrize("n", [3, 5])
def test_a_leader_is_elected_and_replicates_to_everyone(n: int) -> None:
    c = Cluster(n, seed=n)
    lead = elect(c)
    rids = [c.propose(lead, f"cmd{i}") for i in range(20)]
    c.run(2.0)
    assert [c.results[r] for r in rids] == list(range(1, 21))
    for sid in c.ids:
        assert [cmd for _, cmd in c.machines[sid].applied] == [f"cmd{i}" for i in range(20)]


def test_followers_drop_proposals_and_name_the_leader() -> None:
    c = Cluster(3, seed=7)
    lead = elect(c)
    follower = next(i for i in c.ids if i != lead)
    rid = c.propose(follower, "x")
    assert rid in c.dropped
    assert c.core(follower).leader == lead


def test_a_refused_command_is_an_outcome_on_every_replica() -> None:
    c = Cluster(3, seed=3)
    lead = elect(c)
    rid = c.propose(lead, "refuse")
    c.run(1.0)
    assert isinstance(c.results[rid], ValueError)
    assert all(c.machines[i].applied[-1][1] == "refuse" for i in c.ids)


def test_persist_comes_before_the_sends_that_depend_on_it() -> None:
    from federation.raft import VoteResponse

    core = Cluster(3, seed=11).core("s1")
    core.handle(5.0, TimerExpired())
    effects = core.take_effects()
    # a pre-vote changes no term and no vote: nothing to persist, only the requests
    assert core.role is Role.PRE_CANDIDATE and core.term == 0
    assert all(isinstance(e, SendMessage) and e.message.term == 1 for e in effects)
    core.handle(5.01, MessageReceived(VoteResponse("s2", "s1", 1, True, True)))
    effects = core.take_effects()
    assert core.role is Role.CANDIDATE and core.term == 1
    assert isinstance(effects[0], PersistState) and effects[0] == PersistState(1, "s1")
    assert all(isinstance(e, SendMessage) for e in effects[1:]) and len(effects) == 3


# ==================================================================== safety properties


def chaos(seed: int, n: int, seconds: float = 60.0, config: RaftConfig = CFG) -> Cluster:
    """A random schedule: proposals, partitions, crashes and restarts, 5 % message loss
    and reordering; invariants are checked on every step (assertions in Cluster)."""
    c = Cluster(n, seed=seed, config=config)
    rng = random.Random(seed * 7919)
    c.loss = 0.05
    end = c.now + seconds
    while c.now < end:
        action = rng.random()
        if action < 0.15:
            group = set(rng.sample(c.ids, rng.randint(1, n - 1)))
            c.partition(group, set(c.ids) - group)
        elif action < 0.25:
            c.heal()
        elif action < 0.32 and len(c.live()) > 1:
            c.crash(rng.choice(c.live()))
        elif action < 0.45:
            for sid in [i for i in c.ids if c.cores[i] is None]:
                c.start(sid)
        else:
            for sid in c.live():
                if c.core(sid).role is Role.LEADER:
                    c.propose(sid, f"v{c.next_request}")
        c.run(rng.uniform(0.05, 1.5))
    return c


@pytest.mark.parametrize("seed", range(1, 13))
def test_election_safety_at_most_one_leader_per_term(seed: int) -> None:
    """§5.2: Cluster.leaders asserts on every LeaderElected effect."""
    c = chaos(seed, 5)
    assert c.leaders, "the schedule elected nobody: the test would prove nothing"


@pytest.mark.parametrize("seed", range(13, 25))
def test_log_matching_and_leader_completeness(seed: int) -> None:
    """§5.3 and §5.4: checked after every run() by Cluster.check_logs."""
    c = chaos(seed, 3)
    assert c.committed, "nothing committed: the test would prove nothing"


@pytest.mark.parametrize("seed", range(25, 37))
def test_state_machine_safety_and_liveness_after_healing(seed: int) -> None:
    """§5.4.3: no two servers apply different commands at one index; and once the
    network heals and every server is back, a leader commits on all of them."""
    heal_and_check_everyone_applies(chaos(seed, 5))


def heal_and_check_everyone_applies(c: Cluster) -> None:
    c.heal()
    c.loss = 0.0
    for sid in [i for i in c.ids if c.cores[i] is None]:
        c.start(sid)
    lead = elect(c)
    rid = c.propose(lead, "final")
    c.run(3.0)
    assert rid in c.results
    applied = [c.machines[i].applied for i in c.ids]
    assert all(a == applied[0] for a in applied)
    assert applied[0][-1][1] == "final"


# ==================================================================== the tricky cases


def test_leader_in_a_minority_cannot_commit_and_steps_down() -> None:
    c = Cluster(5, seed=21)
    old = elect(c)
    others = [i for i in c.ids if i != old]
    c.partition({old, others[0]}, set(others[1:]))
    rid = c.propose(old, "lost")
    c.run(3.0)
    assert rid not in c.results  # never committed
    assert c.core(old).role is not Role.LEADER  # check-quorum stepped it down
    assert rid in c.dropped
    new = elect(c)
    assert new in others[1:]
    c.heal()
    c.run(3.0)
    # the stale leader's uncommitted entry was overwritten everywhere
    assert all("lost" not in [e.command for e in c.disks[i].entries] for i in c.ids)
    assert c.core(old).leader == c.leader()


def test_figure_8_an_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    """The paper's Figure 8 (§5.4.2): a leader must not commit an entry from an earlier
    term just because a majority stores it. X (term t1) reaches a majority under a later
    leader, which is then cut off before its own entry spreads; a server with a newer last
    term is elected and overwrites X. Counting replicas would have applied X first."""
    c = Cluster(5, seed=31, config=RaftConfig(max_entries_per_append=1))
    lead = elect(c)
    a, b, x1, x2 = (i for i in c.ids if i != lead)
    # 1. X reaches only lead and a
    c.partition({lead, a}, {b, x1, x2})
    c.purge()
    c.propose(lead, "X")
    c.run_until(lambda: c.core(a).last_index == 2)
    # 2. b, x1, x2 elect m; m is cut off at once, so its no-op stays with it
    c.run_until(lambda: any(c.core(i).role is Role.LEADER for i in (b, x1, x2)))
    m = next(i for i in (b, x1, x2) if c.core(i).role is Role.LEADER)
    rest = [i for i in (b, x1, x2) if i != m]
    c.partition({m}, {lead, a}, set(rest))
    c.purge()
    # 3. lead, a and one more (no m entries) re-elect lead, which copies X to the third
    third = rest[0]
    c.partition({m}, {lead, a, third}, {rest[1]})
    c.purge()
    c.run_until(lambda: c.core(lead).role is Role.LEADER and c.core(lead).term > c.core(m).term)
    # until the leader knows a majority (lead, a, third) stores X, and not one step more
    c.run_until(lambda: c.core(lead).match_index(third) >= 2)
    c.partition({m}, {lead, a}, {third}, {rest[1]})  # the next entry never reaches third
    c.purge()
    assert c.core(third).entry(2).command == "X" and c.core(third).last_index == 2
    assert all(idx != 2 for idx, _ in c.machines[lead].applied), "X was committed early"
    # 4. lead and a crash; m, third and rest[1] elect m (newer last term), X is overwritten
    c.crash(lead)
    c.crash(a)
    c.partition({m, third, rest[1]}, {lead, a})
    c.run(5.0)
    assert c.core(third).entry(2).command != "X"


def test_a_rejoining_partitioned_server_does_not_disrupt_the_leader() -> None:
    """Pre-vote (thesis §9.6): the isolated server's elections never raise its term, so
    when it returns the leader keeps leading in the same term."""
    c = Cluster(3, seed=5)
    lead = elect(c)
    term = c.core(lead).term
    loner = next(i for i in c.ids if i != lead)
    c.partition({loner}, set(c.ids) - {loner})
    c.run(10.0)
    assert c.core(loner).term == term
    assert c.core(loner).stats["pre_votes"] > 3
    c.heal()
    c.run(3.0)
    assert c.leader() == lead and c.core(lead).term == term


def test_without_pre_vote_a_rejoining_server_does_disrupt() -> None:
    """The same schedule with pre-vote off: the contrast shows the test above can fail."""
    c = Cluster(3, seed=5, config=RaftConfig(pre_vote=False, check_quorum=False))
    lead = elect(c)
    term = c.core(lead).term
    loner = next(i for i in c.ids if i != lead)
    c.partition({loner}, set(c.ids) - {loner})
    c.run(10.0)
    assert c.core(loner).term > term + 3
    c.heal()
    c.run(3.0)
    assert c.core(c.leader() or lead).term > term


def test_restart_from_disk_keeps_term_vote_and_log_and_catches_up() -> None:
    c = Cluster(3, seed=9)
    lead = elect(c)
    follower = next(i for i in c.ids if i != lead)
    for i in range(5):
        c.propose(lead, f"a{i}")
    c.run(1.0)
    disk = c.disks[follower]
    term, vote, n = disk.term, disk.voted_for, len(disk.entries)
    c.crash(follower)
    for i in range(5):
        c.propose(lead, f"b{i}")
    c.run(1.0)
    c.start(follower)
    core = c.core(follower)
    assert (core.term, core.voted_for, core.last_index) == (term, vote, n)
    c.run(2.0)
    assert [cmd for _, cmd in c.machines[follower].applied] == [
        *(f"a{i}" for i in range(5)),
        *(f"b{i}" for i in range(5)),
    ]


def run_exactly(c: Cluster, seconds: float) -> None:
    """Advance exactly ``seconds``: every message and timer due by then, nothing later
    (``Cluster.run`` always takes at least one step, which may overshoot)."""
    end = c.now + seconds
    for _ in range(10_000):
        due = [d for i in c.live() if (d := c.core(i).next_deadline()) is not None]
        due += [f[0] for f in c.in_flight]
        if not due or min(due) > end:
            break
        c.step()
    c.now = max(c.now, end)


def test_a_restarted_follower_catches_up_while_proposals_never_pause() -> None:
    """Heartbeats keep their own clock: a leader proposing more often than its heartbeat
    interval must still reach a follower whose in-flight appends were all lost while it
    was down (found by tests/test_raft_cluster.py: each proposal's broadcast pushed the
    heartbeat deadline back, and the follower at its in-flight limit got nothing)."""
    c = Cluster(3, seed=21)
    lead = elect(c)
    follower = next(i for i in c.ids if i != lead)
    c.crash(follower)
    step = CFG.heartbeat_interval_s / 4
    n = 0
    for _ in range(40):  # while it is down: more appends than it may have in flight
        c.propose(lead, f"p{n}")
        n += 1
        run_exactly(c, step)
    c.start(follower)
    for _ in range(120):  # after the restart the proposals go on, never a heartbeat apart
        c.propose(lead, f"p{n}")
        n += 1
        run_exactly(c, step)
    assert c.leader() == lead
    assert c.core(follower).commit_index >= c.core(lead).commit_index - 8
    applied = [cmd for _, cmd in c.machines[follower].applied]
    assert applied[:40] == [f"p{i}" for i in range(40)]


def test_a_stale_leaders_append_is_refused_and_it_learns_the_new_term() -> None:
    """With check-quorum off, a leader cut off alone keeps believing it leads; the others
    elect a new one. Once healed, its appends meet a higher term: it steps down, and its
    write, never committed, is applied nowhere (§5.1, §5.3)."""
    c = Cluster(3, seed=13, config=RaftConfig(check_quorum=False))
    old = elect(c)
    term = c.core(old).term
    c.partition({old}, set(c.ids) - {old})
    rid = c.propose(old, "stale")
    c.run(5.0)
    assert c.core(old).role is Role.LEADER and c.core(old).term == term
    new = next(i for i in c.live() if i != old and c.core(i).role is Role.LEADER)
    assert c.core(new).term > term
    c.heal()
    c.run(2.0)
    assert c.core(old).role is Role.FOLLOWER and c.core(old).leader == new
    assert rid in c.dropped and rid not in c.results
    assert all("stale" not in [cmd for _, cmd in c.machines[i].applied] for i in c.ids)


def test_messages_for_others_are_ignored_and_strangers_cannot_raise_our_term() -> None:
    """Rule C3: a vote request from a server outside our configuration is refused, its
    term not adopted; a message addressed to another server is dropped."""
    c = Cluster(3, seed=2)
    core = c.core("s1")
    before = (core.term, core.role)
    from federation.raft import VoteRequest, VoteResponse

    core.handle(0.0, MessageReceived(VoteRequest("s2", "s3", 99, 99, 99)))
    assert core.take_effects() == []
    core.handle(0.0, MessageReceived(VoteRequest("mallory", "s1", 99, 99, 99)))
    assert (core.term, core.role) == before
    assert core.take_effects() == [SendMessage(VoteResponse("s1", "mallory", 0, False))]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        RaftConfig(election_timeout_s=0.1, heartbeat_interval_s=0.1).validate()
    with pytest.raises(ValueError):
        RaftCore("x", ["a", "b"], Machine({}), random.Random(1))


# ==================================================================== membership (thesis ch. 4)


def conf_of(*servers: tuple[str, bool]) -> Configuration:
    return Configuration(tuple(ServerInfo(i, "", v) for i, v in servers))


def test_bootstrap_of_three_fresh_servers_elects_a_leader() -> None:
    """Rule C1: servers bootstrapped with one configuration hold the same entry 1 and
    elect a leader among themselves, with no static voter list."""
    c = Cluster(3, seed=41, bootstrap=True)
    first = [c.disks[i].entries[0] for i in c.ids]
    assert first[1:] == first[:-1]
    assert first[0] == Entry(1, 1, conf_of(*((i, True) for i in c.ids)).to_wire(),
                                EntryKind.CONFIGURATION)  # fmt: skip
    lead = elect(c)
    rid = c.propose(lead, "x")
    c.run(1.0)
    assert rid in c.results
    for i in c.ids:
        assert c.core(i).committed_configuration.voters() == ("s1", "s2", "s3")
        assert [cmd for _, cmd in c.machines[i].applied] == ["x"]  # entry 1 is not applied


def test_bootstrap_is_only_for_fresh_servers() -> None:
    c = Cluster(1, seed=42, bootstrap=True)
    core = c.core("s1")
    with pytest.raises(ValueError, match="fresh"):
        core.handle(0.0, BootstrapRequested(conf_of(("s1", True))))
    fresh = RaftCore("s9", None, Machine({}), random.Random(1))
    with pytest.raises(ValueError, match="voter"):
        fresh.handle(0.0, BootstrapRequested(conf_of(("s1", True), ("s9", False))))
    with pytest.raises(ValueError, match="duplicate"):
        conf_of(("s1", True), ("s1", False))


def test_an_unbootstrapped_server_never_campaigns_nor_votes() -> None:
    from federation.raft import VoteRequest, VoteResponse

    core = RaftCore("s1", None, Machine({}), random.Random(1))
    assert core.configuration == Configuration() and core.take_effects() == []
    for t in range(1, 30):
        core.handle(float(t), TimerExpired())
    assert core.take_effects() == [] and core.term == 0 and core.role is Role.FOLLOWER
    core.handle(30.0, MessageReceived(VoteRequest("s2", "s1", 5, 9, 4)))
    assert core.take_effects() == [SendMessage(VoteResponse("s1", "s2", 0, False))]
    assert core.term == 0


def test_add_a_non_voter_it_catches_up_then_promote_it() -> None:
    """An unbootstrapped server joins via AddNonVoter: it receives the whole log but
    counts toward no quorum and never campaigns (rule C2); promoted, it counts."""
    c = Cluster(3, seed=43, bootstrap=True, spares=1)
    lead = elect(c)
    for i in range(10):
        c.propose(lead, f"a{i}")
    rid = c.change(lead, AddNonVoter("s4", "10.0.0.4:8300"))
    c.run(2.0)
    assert c.results[rid] is None  # Applied, no result
    assert c.core("s4").configuration.get("s4") == ServerInfo("s4", "10.0.0.4:8300", False)
    assert [cmd for _, cmd in c.machines["s4"].applied] == [f"a{i}" for i in range(10)]
    assert c.core(lead).match_index("s4") == c.core(lead).last_index
    # a non-voter counts toward no quorum: the leader and s4 alone commit nothing
    others = [i for i in c.initial if i != lead]
    c.partition({lead, "s4"}, set(others))
    c.purge()
    lost = c.propose(lead, "minority")
    c.run(0.5)
    assert lost not in c.results and c.core("s4").last_index == c.core(lead).last_index
    c.heal()
    c.run(1.0)
    assert lost in c.results
    assert c.core("s4").stats["pre_votes"] == 0 and c.core("s4").stats["elections"] == 0
    rid = c.change(lead, PromoteVoter("s4"))
    c.run(1.0)
    assert rid in c.results
    assert c.core("s4").committed_configuration.voters() == ("s1", "s2", "s3", "s4")
    # four voters: the leader, s4 and one more are a quorum; the leader and s4 are not
    c.partition({lead, "s4"}, set(others))
    c.purge()
    two = c.propose(lead, "two of four")
    c.run(0.5)
    assert two not in c.results
    c.partition({lead, "s4", others[0]}, {others[1]})
    c.run(0.5)
    assert two in c.results


def test_configuration_changes_are_refused_with_a_reason() -> None:
    c = Cluster(3, seed=44, bootstrap=True, spares=1)
    c.run_until(lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None
    follower = next(i for i in c.initial if i != lead)
    early = c.change(lead, AddNonVoter("s4"))
    assert "not yet committed an entry of its term" in c.refused[early]
    c.run(1.0)
    dropped = c.change(follower, AddNonVoter("s4"))
    assert dropped in c.dropped
    for change, reason in (
        (AddNonVoter(follower), "already in the configuration"),
        (PromoteVoter(follower), "already a voter"),
        (PromoteVoter("s4"), "not in the configuration"),
        (RemoveServer("s9"), "not in the configuration"),
    ):
        rid = c.change(lead, change)
        assert reason in c.refused[rid], (change, c.refused.get(rid))
    # one change at a time: while the first is uncommitted, a second is refused
    c.partition({lead}, set(c.ids) - {lead})
    c.purge()
    first = c.change(lead, AddNonVoter("s4"))
    second = c.change(lead, RemoveServer(follower))
    assert first not in c.refused and "is not committed yet" in c.refused[second]
    # the last voter cannot be removed
    solo = Cluster(1, seed=45, bootstrap=True)
    elect(solo)
    rid = solo.change("s1", RemoveServer("s1"))
    assert "last voter" in solo.refused[rid]
    with pytest.raises(ValueError):
        AddNonVoter("")


def test_remove_a_follower() -> None:
    c = Cluster(3, seed=46, bootstrap=True)
    lead = elect(c)
    gone = next(i for i in c.ids if i != lead)
    rid = c.change(lead, RemoveServer(gone))
    c.run(1.0)
    assert rid in c.results
    assert c.core(lead).committed_configuration.get(gone) is None
    assert c.core(gone).configuration.get(gone) is None  # it received its removal
    assert c.core(lead).last_contact(gone) is None  # the leader no longer tracks it
    pre_votes = c.core(gone).stats["pre_votes"]
    c.run(10.0)
    assert c.core(gone).stats["pre_votes"] == pre_votes  # never campaigns (rule C2)
    # two voters remain; both are needed and suffice
    rid = c.propose(lead, "after")
    c.run(1.0)
    assert rid in c.results and ("after" not in [x for _, x in c.machines[gone].applied])


def test_remove_the_leader_it_steps_down_once_committed() -> None:
    """Rule C5: while its removal is uncommitted the leader does not count itself, so
    with one of the two remaining voters cut off the removal cannot commit; once it
    commits, the leader steps down and another voter leads."""
    c = Cluster(3, seed=47, bootstrap=True)
    lead = elect(c)
    a, b = (i for i in c.ids if i != lead)
    c.partition({lead, a}, {b})
    c.purge()
    rid = c.change(lead, RemoveServer(lead))
    index = c.core(lead).last_index
    c.run(0.5)  # under an election timeout: check-quorum has not stepped it down
    assert c.core(lead).role is Role.LEADER and c.core(lead).match_index(a) == index
    assert rid not in c.results and c.core(lead).commit_index < index
    c.heal()
    c.run_until(lambda: rid in c.results)
    c.run(0.2)
    assert c.core(lead).role is Role.FOLLOWER
    new = elect(c)
    assert new in (a, b)
    old_term = c.core(lead).term
    c.run(10.0)
    assert c.core(lead).stats["elections"] == 0 or c.core(lead).term == old_term
    assert c.core(lead).role is Role.FOLLOWER and c.core(lead).voted_for in (None, lead)
    assert c.core(new).role is Role.LEADER


def test_a_removed_server_that_never_learned_it_does_not_disrupt() -> None:
    """Rule C3 without pre-vote to hide behind: the removed server, cut off while it was
    removed, raises its term in endless elections; back on the network, its vote
    requests are refused without anyone adopting its term."""
    c = Cluster(3, seed=48, config=RaftConfig(pre_vote=False), bootstrap=True)
    lead = elect(c)
    gone = next(i for i in c.ids if i != lead)
    c.partition({gone}, set(c.ids) - {gone})
    c.purge()
    rid = c.change(lead, RemoveServer(gone))
    c.run(5.0)
    assert rid in c.results and c.core(gone).configuration.get(gone) is not None
    assert c.core(gone).term > c.core(lead).term + 2
    term = c.core(lead).term
    c.heal()
    c.run(5.0)
    assert c.leader() == lead and c.core(lead).term == term
    assert all(c.core(i).term == term for i in c.ids if i != gone)


def test_a_truncated_configuration_entry_reverts_the_configuration() -> None:
    """Rule C1: a configuration is used as soon as it is in the log, and undone with it
    (ConfigurationChanged announces both; Cluster checks every announcement)."""
    c = Cluster(3, seed=49, bootstrap=True, spares=1)
    old = elect(c)
    c.partition({old}, set(c.ids) - {old})
    c.purge()
    c.change(old, AddNonVoter("s4"))
    assert c.core(old).configuration.get("s4") is not None
    assert c.announced[old] == c.core(old).configuration
    c.run(3.0)
    new = c.leader()
    assert new is not None and new != old
    c.propose(new, "overwrites")
    c.heal()
    c.run(3.0)
    assert c.core(old).configuration.get("s4") is None
    assert c.announced[old] == c.core(old).configuration
    assert c.core(old).configuration_index == 1


def chaos_membership(seed: int, seconds: float = 60.0, config: RaftConfig = CFG) -> Cluster:
    """The random schedule of chaos() with membership changes mixed in: at random the
    leader adds a spare as a non-voter, promotes a non-voter, or removes a server (the
    removed may be added back later, its old log and term intact); it also transfers
    leadership, and reads (each read index is checked to cover acknowledged writes)."""
    c = Cluster(3, seed=seed, config=config, bootstrap=True, spares=2)
    rng = random.Random(seed * 7919)
    c.loss = 0.05
    end = c.now + seconds
    while c.now < end:
        action = rng.random()
        lead = c.leader()
        if action < 0.12:
            group = set(rng.sample(c.ids, rng.randint(1, len(c.ids) - 1)))
            c.partition(group, set(c.ids) - group)
        elif action < 0.22:
            c.heal()
        elif action < 0.28 and len(c.live()) > 1:
            c.crash(rng.choice(c.live()))
        elif action < 0.38:
            for sid in [i for i in c.ids if c.cores[i] is None]:
                c.start(sid)
        elif action < 0.58 and lead is not None:
            conf = c.core(lead).configuration
            outside = [i for i in c.ids if conf.get(i) is None]
            learners = [s.id for s in conf.servers if not s.voter]
            choice = rng.random()
            if choice < 0.4 and outside:
                c.change(lead, AddNonVoter(rng.choice(outside)))
            elif choice < 0.7 and learners:
                c.change(lead, PromoteVoter(rng.choice(learners)))
            else:
                c.change(lead, RemoveServer(rng.choice([s.id for s in conf.servers])))
        elif action < 0.66 and lead is not None:
            voters = list(c.core(lead).voters)
            c.transfer(lead, rng.choice([None, None, *voters, *voters, *c.ids]))
        elif lead is not None:
            c.propose(lead, f"v{c.next_request}")
            c.read(lead)
        c.run(rng.uniform(0.05, 1.5))
    return c


@pytest.mark.parametrize("seed", range(100, 112))
def test_safety_holds_while_membership_changes(seed: int) -> None:
    """§5.2-§5.4 and rule C4 under random membership changes, then liveness: once healed
    and restarted, the voters of the latest configuration elect a leader that commits
    on every member."""
    heal_and_check_members_apply(chaos_membership(seed))


def heal_and_check_members_apply(c: Cluster) -> None:
    assert c.committed and c.leaders
    changed = [rid for rid in c.change_requests if rid in c.results]
    assert changed, "no membership change happened: the schedule proves nothing"
    assert c.reads, "no read completed: reads went untested"
    c.heal()
    c.loss = 0.0
    for sid in [i for i in c.ids if c.cores[i] is None]:
        c.start(sid)
    lead = elect(c)
    rid = c.propose(lead, "final")
    c.run(3.0)
    assert rid in c.results
    for sid in c.members(lead):
        assert c.machines[sid].applied[-1][1] == "final", sid


# ==================================================================== ReadIndex (thesis §6.4)


def test_a_single_voter_confirms_a_read_at_once() -> None:
    c = Cluster(1, seed=61)
    elect(c)
    c.propose("s1", "x")
    rid = c.read("s1")
    assert c.reads[rid] == c.core("s1").commit_index == 2


def test_a_read_waits_for_a_quorum_round_sent_after_it() -> None:
    c = Cluster(3, seed=62)
    lead = elect(c)
    w = c.propose(lead, "w")
    c.run(0.5)
    assert w in c.results
    core = c.core(lead)
    core.handle(c.now, ReadIndexRequested(1000))
    effects = core.take_effects()
    rounds = [e.message for e in effects if isinstance(e, SendMessage)]
    # a heartbeat round leaves at once, to every follower, with a fresh round number
    assert sorted(m.dst for m in rounds) == sorted(i for i in c.ids if i != lead)
    assert len({m.seq for m in rounds}) == 1
    assert not any(isinstance(e, ReadIndexReady) for e in effects)
    # acknowledgements of an older round do not confirm it
    old = rounds[0].seq - 1
    for f in (m.dst for m in rounds):
        core.handle(c.now, MessageReceived(AppendResponse(f, lead, core.term, True, 2, old)))
    assert not any(isinstance(e, ReadIndexReady) for e in core.take_effects())
    f = rounds[0].dst
    core.handle(c.now, MessageReceived(AppendResponse(f, lead, core.term, True, 2, old + 1)))
    assert core.take_effects() == [ReadIndexReady(1000, core.commit_index)]


def test_reads_at_one_instant_share_a_round() -> None:
    c = Cluster(5, seed=63)
    lead = elect(c)
    core = c.core(lead)
    for rid in range(100, 110):
        core.handle(c.now, ReadIndexRequested(rid))
    sends = [e for e in core.take_effects() if isinstance(e, SendMessage)]
    assert len(sends) == 4  # one round to each follower, not one per read


def test_a_deposed_leader_never_confirms_a_read() -> None:
    """Without check-quorum a leader cut off alone still believes it leads; its reads must
    wait for a round the majority acknowledges, which never comes, and are dropped once
    it learns of the new term."""
    c = Cluster(3, seed=64, config=RaftConfig(check_quorum=False))
    old = elect(c)
    c.partition({old}, set(c.ids) - {old})
    c.purge()
    rid = c.read(old)
    c.run(5.0)
    new = c.leader()
    assert new != old and c.core(old).role is Role.LEADER
    w = c.propose(new, "newer")
    c.run(1.0)
    assert w in c.results and rid not in c.reads
    c.heal()
    c.run(2.0)
    assert rid in c.dropped and rid not in c.reads


def test_a_new_leader_reads_only_after_committing_an_entry_of_its_term() -> None:
    c = Cluster(3, seed=65)
    c.run_until(lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None
    core = c.core(lead)
    noop = core.last_index
    assert core.term_at(core.commit_index) != core.term  # its no-op is not committed yet
    rid = c.read(lead)
    assert rid not in c.reads
    c.run(1.0)
    assert c.reads[rid] >= noop


def test_a_follower_drops_a_read_and_names_the_leader() -> None:
    c = Cluster(3, seed=66)
    lead = elect(c)
    follower = next(i for i in c.ids if i != lead)
    rid = c.read(follower)
    assert rid in c.dropped and c.core(follower).leader == lead


# ==================================================================== leadership transfer (§3.10)


def test_transfer_to_a_named_voter() -> None:
    c = Cluster(3, seed=71)
    old = elect(c)
    term = c.core(old).term
    target = next(i for i in c.ids if i != old)
    rid = c.transfer(old, target)
    refused = c.propose(old, "during")
    change = c.change(old, RemoveServer(target))
    assert c.refused[refused] == c.refused[change] == "leadership transfer in progress"
    c.run(1.0)
    assert c.transfers[rid] == target
    # the target skipped pre-vote, and voters that had just heard from the old leader
    # set stickiness aside for it: one election, one term later
    assert c.core(target).role is Role.LEADER and c.core(target).term == term + 1
    assert c.core(old).role is Role.FOLLOWER and c.core(old).leader == target


def test_transfer_without_target_picks_the_most_up_to_date_voter() -> None:
    c = Cluster(3, seed=72)
    old = elect(c)
    behind, ahead = (i for i in c.ids if i != old)
    c.crash(behind)
    for i in range(5):
        c.propose(old, f"x{i}")
    c.run(0.5)
    c.start(behind)
    rid = c.transfer(old, None)
    c.run(1.0)
    assert c.transfers[rid] == ahead


def test_transfer_brings_a_lagging_target_up_to_date_first() -> None:
    """Cluster asserts that TimeoutNow leaves only once the target's log matches."""
    c = Cluster(3, seed=73, config=RaftConfig(max_entries_per_append=4))
    old = elect(c)
    target = next(i for i in c.ids if i != old)
    c.crash(target)
    for i in range(40):
        c.propose(old, f"x{i}")
    c.run(0.5)
    c.start(target)
    rid = c.transfer(old, target)
    assert c.core(old).match_index(target) < c.core(old).last_index
    c.run(1.0)
    assert c.transfers[rid] == target
    assert [x for _, x in c.machines[target].applied][-1] == "x39"


def test_transfer_to_an_unreachable_voter_times_out_and_the_leader_resumes() -> None:
    c = Cluster(3, seed=74)
    old = elect(c)
    target = next(i for i in c.ids if i != old)
    c.partition({target}, set(c.ids) - {target})
    c.purge()
    rid = c.transfer(old, target)
    c.run(0.5)
    assert "leadership transfer in progress" in c.refused[c.propose(old, "no")]
    c.run(1.0)
    assert c.refused[rid] == "leadership transfer timed out"
    assert c.core(old).role is Role.LEADER
    w = c.propose(old, "yes")
    c.run(0.5)
    assert w in c.results


def test_transfer_refusals() -> None:
    c = Cluster(3, seed=75, bootstrap=True, spares=1)
    lead = elect(c)
    add = c.change(lead, AddNonVoter("s4"))
    c.run(1.0)
    assert add in c.results
    follower = next(i for i in c.initial if i != lead)
    for target, reason in (
        (lead, "the leader already"),
        ("s9", "not in the configuration"),
        ("s4", "not a voter"),
    ):
        rid = c.transfer(lead, target)
        assert reason in c.refused[rid], (target, c.refused.get(rid))
    assert c.transfer(follower, None) in c.dropped
    c.partition({lead}, set(c.ids) - {lead})
    c.purge()
    c.transfer(lead, follower)
    assert c.refused[c.transfer(lead, None)] == "leadership transfer in progress"
    solo = Cluster(1, seed=76)
    elect(solo)
    assert "no other voter" in solo.refused[solo.transfer("s1", None)]


# ==================================================================== snapshots (§7, thesis ch. 5)

TINY = RaftConfig(snapshot_threshold=5, trailing_logs=2, snapshot_chunk_bytes=64)
"""Snapshots every 5 entries, 2 kept behind, 64-byte chunks: everything the random
schedules do happens across snapshots, compactions and chunked installs."""


def test_a_snapshot_every_threshold_entries_keeps_the_trailing_logs() -> None:
    config = RaftConfig(snapshot_threshold=10, trailing_logs=3)
    c = Cluster(1, seed=81, config=config)
    elect(c)
    for i in range(25):
        c.propose("s1", f"x{i}")
    core, disk = c.core("s1"), c.disks["s1"]
    # entries 1 (the no-op) to 26 applied: snapshots at 10 and 20
    assert c.snapshots == 2 and core.snapshot_index == 20 and disk.snapshot is not None
    assert disk.snapshot.index == 20 and disk.snapshot.term == core.term
    assert core.log_base == 17 and disk.entries[0].index == 18 and core.last_index == 26
    restored = Machine({})
    restored.restore(disk.snapshot.data)
    assert restored.applied == c.machines["s1"].applied[:19]  # x0..x18 at indexes 2..20
    c.deliver("s1", SnapshotRequested())
    assert core.snapshot_index == 26 and core.log_base == 23 and c.snapshots == 3
    c.deliver("s1", SnapshotRequested())  # nothing new applied: nothing to take
    assert c.snapshots == 3


def test_restart_from_a_snapshot_and_the_trailing_log() -> None:
    c = Cluster(3, seed=82, config=RaftConfig(snapshot_threshold=8, trailing_logs=3))
    lead = elect(c)
    for i in range(30):
        c.propose(lead, f"a{i}")
    c.run(1.0)
    follower = next(i for i in c.ids if i != lead)
    disk = c.disks[follower]
    assert disk.snapshot is not None and disk.entries[0].index > 1
    c.crash(follower)
    for i in range(3):
        c.propose(lead, f"b{i}")
    c.run(0.5)
    c.start(follower)
    core = c.core(follower)
    assert core.commit_index == core.last_applied == disk.snapshot.index  # rule S3
    assert c.machines[follower].applied[-1][0] <= disk.snapshot.index
    c.run(1.0)
    assert c.machines[follower].applied == c.machines[lead].applied
    assert c.machines[follower].applied[-1][1] == "b2"
    assert core.stats["snapshots_installed"] == 0  # the trailing log sufficed


def test_a_partitioned_follower_catches_up_by_install_snapshot() -> None:
    c = Cluster(3, seed=83, config=TINY)
    lead = elect(c)
    lagging = next(i for i in c.ids if i != lead)
    c.partition({lagging}, set(c.ids) - {lagging})
    c.purge()
    for i in range(40):
        c.propose(lead, f"p{i}")
    c.run(1.0)
    assert c.core(lead).log_base > c.core(lagging).last_index  # what it needs is gone
    c.heal()
    c.run(2.0)
    assert c.core(lagging).stats["snapshots_installed"] >= 1
    assert c.chunks > 3  # the snapshot crossed in 64-byte chunks
    assert c.machines[lagging].applied == c.machines[lead].applied
    assert c.core(lagging).commit_index == c.core(lead).commit_index


def test_a_new_server_joins_by_snapshot() -> None:
    c = Cluster(3, seed=84, config=TINY, bootstrap=True, spares=1)
    lead = elect(c)
    for i in range(30):
        c.propose(lead, f"j{i}")
    c.run(1.0)
    assert c.core(lead).log_base > 1
    rid = c.change(lead, AddNonVoter("s4"))
    c.run(2.0)
    assert rid in c.results
    s4 = c.core("s4")
    assert s4.stats["snapshots_installed"] >= 1
    assert s4.configuration.get("s4") == ServerInfo("s4", "", False)
    assert [x for _, x in c.machines["s4"].applied] == [f"j{i}" for i in range(30)]
    rid = c.change(lead, PromoteVoter("s4"))
    c.run(1.0)
    assert rid in c.results


class Recorder:
    """A state machine for single-core tests: records restores."""

    def __init__(self) -> None:
        self.restored: list[bytes] = []

    def apply(self, index: int, command: Any) -> Any:
        return None

    def snapshot(self) -> bytes:
        return b"state"

    def restore(self, data: bytes) -> None:
        self.restored.append(data)


def follower_with_log(n: int, config: RaftConfig = CFG) -> tuple[RaftCore, Recorder]:
    """s1 of {s1, s2}, holding entries 1..n of term 1 (none committed)."""
    sm = Recorder()
    log = tuple(Entry(1, i, f"e{i}") for i in range(1, n + 1))
    core = RaftCore("s1", ["s1", "s2"], sm, random.Random(1), config, Persisted(1, None, log))
    core.take_effects()
    return core, sm


CONF2 = Configuration((ServerInfo("s1"), ServerInfo("s2")))


def snap_chunk(offset: int, data: bytes, done: bool, last: tuple[int, int] = (3, 1)) -> Any:
    return MessageReceived(InstallSnapshotRequest("s2", "s1", 1, *last, CONF2, offset, data, done))


def test_install_snapshot_chunks_must_arrive_in_order() -> None:
    core, sm = follower_with_log(0)
    core.handle(1.0, snap_chunk(0, b"abc", False))
    assert core.take_effects()[-1] == SendMessage(InstallSnapshotResponse("s1", "s2", 1, True, 3))
    core.handle(1.0, snap_chunk(10, b"zz", False))  # a gap: refused with what it holds
    assert core.take_effects() == [SendMessage(InstallSnapshotResponse("s1", "s2", 1, False, 3))]
    core.handle(1.0, snap_chunk(3, b"de", True))
    effects = core.take_effects()
    assert sm.restored == [b"abcde"]
    assert effects[0] == PersistSnapshot(3, 1, CONF2, b"abcde")
    assert effects[-1] == SendMessage(InstallSnapshotResponse("s1", "s2", 1, True, 5))
    assert (core.commit_index, core.last_applied, core.last_index, core.last_term) == (3, 3, 3, 1)
    assert core.configuration == CONF2


def test_a_follower_keeps_its_log_after_a_matching_snapshot_and_drops_it_otherwise() -> None:
    """§7: entries after the snapshot's last entry survive only if that entry matches."""
    core, _ = follower_with_log(5)
    core.handle(1.0, snap_chunk(0, b"s", True, last=(3, 1)))
    effects = core.take_effects()
    assert CompactLog(3) in effects and core.last_index == 5 and core.log_base == 3
    assert core.entry(4) == Entry(1, 4, "e4")
    core, _ = follower_with_log(5)
    core.handle(1.0, snap_chunk(0, b"s", True, last=(3, 2)))  # another term at 3
    effects = core.take_effects()
    assert CompactLog(5) in effects and core.last_index == 3 and core.last_term == 2


def test_a_snapshot_over_the_limit_is_refused() -> None:
    core, sm = follower_with_log(0, RaftConfig(snapshot_bytes_max=4))
    core.handle(1.0, snap_chunk(0, b"abc", False))
    core.handle(1.0, snap_chunk(3, b"de", True))
    assert core.take_effects()[-1] == SendMessage(InstallSnapshotResponse("s1", "s2", 1, False, 0))
    assert sm.restored == [] and core.commit_index == 0 and core.stats["snapshot_chunks_refused"]


def test_a_snapshot_already_covered_by_the_commit_index_is_not_installed() -> None:
    core, sm = follower_with_log(5)
    core.handle(1.0, MessageReceived(AppendRequest("s2", "s1", 1, 5, 1, (), 5)))
    core.take_effects()
    core.handle(1.0, snap_chunk(0, b"abc", False))
    # nothing needed: the answer's offset is past any snapshot's end
    reply = core.take_effects()[-1]
    assert isinstance(reply, SendMessage) and isinstance(reply.message, InstallSnapshotResponse)
    assert reply.message.success and reply.message.next_offset > CFG.snapshot_bytes_max
    assert sm.restored == []


@pytest.mark.parametrize("seed", range(301, 307))
def test_safety_and_liveness_while_snapshotting_constantly(seed: int) -> None:
    """The random schedules of chaos() with a snapshot every 5 entries, 2 trailing logs
    and 64-byte chunks: the safety checks run on every step, then everyone converges."""
    c = chaos(seed, 5, config=TINY)
    assert c.snapshots > 20 and c.installed > 0, "snapshots went untested"
    heal_and_check_everyone_applies(c)


@pytest.mark.parametrize("seed", range(311, 317))
def test_membership_changes_while_snapshotting_constantly(seed: int) -> None:
    c = chaos_membership(seed, config=TINY)
    assert c.snapshots > 5 and c.installed > 0, "snapshots went untested"
    heal_and_check_members_apply(c)


def test_snapshot_config_is_validated() -> None:
    for bad in (
        RaftConfig(snapshot_threshold=0),
        RaftConfig(trailing_logs=-1),
        RaftConfig(snapshot_chunk_bytes=0),
        RaftConfig(snapshot_chunk_bytes=64 << 20),
        RaftConfig(snapshot_bytes_max=0),
    ):
        with pytest.raises(ValueError):
            bad.validate()
