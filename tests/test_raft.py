"""The Raft core through its contract, on a deterministic in-memory network: the paper's
safety properties as named tests over many random schedules (partitions, crashes with
restarts from what was persisted, lost and reordered messages), and the tricky cases
one at a time. Section numbers are the Raft paper's (Ongaro & Ousterhout, 2014)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from federation.raft import (
    Applied,
    Entry,
    LeaderElected,
    Message,
    MessageReceived,
    Persisted,
    PersistEntries,
    PersistState,
    ProposalDropped,
    Proposed,
    RaftConfig,
    RaftCore,
    Role,
    SendMessage,
)
from gossamer.core import TimerExpired

CFG = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1)


class Machine:
    """A state machine that records what it applied, in order."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, Any]] = []

    def apply(self, index: int, command: Any) -> Any:
        assert not self.applied or index > self.applied[-1][0]
        self.applied.append((index, command))
        if command == "refuse":
            raise ValueError("refused")
        return len(self.applied)


@dataclass
class Disk:
    term: int = 0
    voted_for: str | None = None
    entries: list[Entry] = field(default_factory=list)

    def persisted(self) -> Persisted:
        return Persisted(self.term, self.voted_for, tuple(self.entries))


class Cluster:
    """N cores, their disks, and a network that can lose, delay, reorder and partition."""

    def __init__(self, n: int, seed: int, config: RaftConfig = CFG) -> None:
        self.ids = [f"s{i}" for i in range(1, n + 1)]
        self.rng = random.Random(seed)
        self.config = config
        self.now = 0.0
        self.disks = {i: Disk() for i in self.ids}
        self.machines: dict[str, Machine] = {}
        self.cores: dict[str, RaftCore | None] = {}
        self.in_flight: list[tuple[float, int, Message]] = []
        self.seq = 0
        self.cut: set[frozenset[str]] = set()
        self.loss = 0.0
        self.leaders: dict[int, str] = {}
        """term -> the leader elected in it (election safety is checked on insert)"""
        self.committed: dict[int, Entry] = {}
        """index -> the entry some server applied there"""
        self.results: dict[int, Any] = {}
        self.dropped: list[int] = []
        self.next_request = 1
        for i in self.ids:
            self.start(i)

    # ---------------------------------------------------------------- servers

    def start(self, sid: str) -> None:
        self.machines[sid] = Machine()
        self.cores[sid] = RaftCore(
            sid,
            self.ids,
            self.machines[sid],
            random.Random(self.rng.random()),
            self.config,
            self.disks[sid].persisted(),
            now=self.now,
        )

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
            if isinstance(eff, PersistState):
                disk.term, disk.voted_for = eff.term, eff.voted_for
            elif isinstance(eff, PersistEntries):
                del disk.entries[eff.from_index - 1 :]
                disk.entries.extend(eff.entries)
                assert [e.index for e in disk.entries] == list(range(1, len(disk.entries) + 1))
            elif isinstance(eff, SendMessage):
                m = eff.message
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
                entry = self.core(sid).log[eff.index - 1]
                seen = self.committed.setdefault(eff.index, entry)
                assert seen == entry, f"state machine safety: index {eff.index} differs"
                if eff.request_id is not None:
                    self.results[eff.request_id] = eff.error or eff.result
            elif isinstance(eff, ProposalDropped):
                self.dropped.append(eff.request_id)

    def propose(self, sid: str, command: Any) -> int:
        rid = self.next_request
        self.next_request += 1
        self.deliver(sid, Proposed(rid, command))
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
        applied entry is in the log of the current leader."""
        logs = [self.disks[i].entries for i in self.ids]
        for a in logs:
            for b in logs:
                common = min(len(a), len(b))
                for k in range(common - 1, -1, -1):
                    if a[k].term == b[k].term:
                        assert a[: k + 1] == b[: k + 1], "log matching violated"
                        break
        lead = self.leader()
        if lead is not None:
            log = self.core(lead).log
            for index, entry in self.committed.items():
                assert index <= len(log) and log[index - 1] == entry, (
                    f"leader completeness: {lead} lacks committed entry {index}"
                )
        # state machine safety: every machine applied a prefix of one sequence
        for sid in self.live():
            for index, command in self.machines[sid].applied:
                assert self.committed[index].command == command


def elect(c: Cluster, limit_s: float = 30.0) -> str:
    end = c.now + limit_s
    while c.now < end:
        c.run(0.5)
        lead = c.leader()
        if lead is not None and all(
            c.core(i).leader == lead for i in c.live() if frozenset((i, lead)) not in c.cut
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


def chaos(seed: int, n: int, seconds: float = 60.0) -> Cluster:
    """A random schedule: proposals, partitions, crashes and restarts, 5 % message loss
    and reordering; invariants are checked on every step (assertions in Cluster)."""
    c = Cluster(n, seed=seed)
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
    c = chaos(seed, 5)
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
    assert c.core(third).log[1].command == "X" and c.core(third).last_index == 2
    assert all(idx != 2 for idx, _ in c.machines[lead].applied), "X was committed early"
    # 4. lead and a crash; m, third and rest[1] elect m (newer last term), X is overwritten
    c.crash(lead)
    c.crash(a)
    c.partition({m, third, rest[1]}, {lead, a})
    c.run(5.0)
    assert c.core(third).log[1].command != "X"


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


def test_messages_from_strangers_or_for_others_are_ignored() -> None:
    c = Cluster(3, seed=2)
    core = c.core("s1")
    before = (core.term, core.role)
    from federation.raft import VoteRequest

    core.handle(0.0, MessageReceived(VoteRequest("mallory", "s1", 99, 99, 99)))
    core.handle(0.0, MessageReceived(VoteRequest("s2", "s3", 99, 99, 99)))
    assert (core.term, core.role) == before and core.take_effects() == []


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        RaftConfig(election_timeout_s=0.1, heartbeat_interval_s=0.1).validate()
    with pytest.raises(ValueError):
        RaftCore("x", ["a", "b"], Machine(), random.Random(1))
