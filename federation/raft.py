"""Raft consensus as a sans-IO core: Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm" (USENIX ATC 2014, "the paper"), with two additions from Ongaro's
thesis ("Consensus: Bridging Theory and Practice", 2014): pre-vote (§9.6) and
check-quorum with leader stickiness (§6.2, §4.2.3).

The core follows gossamer's contract (gossamer/core.py): ``handle(now, event)``,
``next_deadline()``, ``take_effects()``; randomness (election timeouts) comes from the
``random.Random`` it is given. It owns the replicated state machine it applies committed
commands to (:class:`StateMachine`: the catalog's state store implements it), so a
simulator can run whole clusters deterministically.

Rules (the paper's Figure 2, numbered as there):

1. All servers: if commitIndex > lastApplied, apply log[lastApplied+1]; a message with a
   higher term makes us a follower in that term (except pre-votes, rule P below).
2. Followers answer RPCs; an election timeout without hearing from a leader or granting a
   vote starts an election.
3. Candidates: increment the term, vote for themselves, ask everyone; a majority makes a
   leader; an AppendEntries from a leader of this term makes a follower; a timeout
   starts a new election.
4. Leaders: heartbeats; append proposals and replicate; on a rejection, back off
   nextIndex and retry; commit N when a majority has matchIndex >= N **and** log[N] is
   from the current term (§5.4.2).

Additions:

P. Pre-vote: before becoming a candidate, a server asks whether it could win at term+1
   without changing anyone's term. A server grants a pre-vote only if the asker's log is
   at least as up to date and it has not heard from a leader within the minimum election
   timeout. A partitioned server rejoining therefore cannot disrupt a healthy leader.
Q. Check-quorum: a leader that has not heard from a majority within an election timeout
   steps down, so a leader cut off in a minority stops accepting writes it cannot commit.
   Followers ignore vote requests within the minimum election timeout of hearing from a
   leader (leader stickiness).
N. A new leader appends a no-op entry of its term, so entries of earlier terms commit
   promptly (§5.4.2, thesis §6.4).

Effects come out in causal order. Each ``SendMessage`` depends on every ``PersistState``
and ``PersistEntries`` before it: the driver must make those durable (fsync) before it
sends (etcd-raft's "persist before send" rule). ``Applied`` effects follow commits.

Not yet here (issue 5 continues): snapshots and log compaction, InstallSnapshot,
membership changes, leadership transfer and ReadIndex reads.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gossamer.core import Effect, Event, TimerExpired

__all__ = [
    "AppendRequest",
    "AppendResponse",
    "Applied",
    "Entry",
    "LeaderElected",
    "Message",
    "MessageReceived",
    "PersistEntries",
    "PersistState",
    "Persisted",
    "ProposalDropped",
    "Proposed",
    "RaftConfig",
    "RaftCore",
    "Role",
    "SendMessage",
    "StateMachine",
    "VoteRequest",
    "VoteResponse",
]


class StateMachine(Protocol):
    """What Raft applies committed commands to (the catalog's StateStore)."""

    def apply(self, index: int, command: Any) -> Any: ...


@dataclass(frozen=True)
class RaftConfig:
    election_timeout_s: float = 1.0
    """Minimum election timeout; each wait is drawn from [T, 2T) (the paper's §5.2)."""
    heartbeat_interval_s: float = 0.1
    """Leader heartbeats; well under the election timeout (the paper: broadcastTime <<
    electionTimeout)."""
    max_entries_per_append: int = 256
    """Entries per AppendEntries; larger batches amortise the per-message cost."""
    max_inflight_appends: int = 8
    """Appends a leader keeps in flight per follower before it waits (pipelining)."""
    pre_vote: bool = True
    check_quorum: bool = True

    def validate(self) -> None:
        if self.heartbeat_interval_s <= 0 or self.election_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.heartbeat_interval_s * 2 > self.election_timeout_s:
            raise ValueError("heartbeat_interval_s must be under half the election timeout")
        if self.max_entries_per_append < 1 or self.max_inflight_appends < 1:
            raise ValueError("max_entries_per_append and max_inflight_appends must be >= 1")

    @classmethod
    def low_latency(cls) -> RaftConfig:
        """For fast failover on a good network (issue 5's low-latency preset)."""
        return cls(election_timeout_s=0.3, heartbeat_interval_s=0.05)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    command: Any = None
    """A msgpack-encodable command, or None for a leader's no-op."""


# ------------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class Message:
    src: str
    dst: str
    term: int


@dataclass(frozen=True, slots=True)
class VoteRequest(Message):
    last_index: int
    last_term: int
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse(Message):
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendRequest(Message):
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse(Message):
    success: bool
    match_index: int
    """On success, the last index the follower now holds from this request; on failure,
    a hint: the follower's last index that might match (for a quick back-off)."""


# ------------------------------------------------------------------------ events, effects


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    message: Message


@dataclass(frozen=True, slots=True)
class Proposed(Event):
    """A client command for the leader to replicate; ``request_id`` comes back in
    :class:`Applied` or :class:`ProposalDropped`."""

    request_id: int
    command: Any


@dataclass(frozen=True, slots=True)
class Persisted:
    """What a restarted server reads back from its disk."""

    term: int = 0
    voted_for: str | None = None
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class PersistState(Effect):
    term: int
    voted_for: str | None


@dataclass(frozen=True, slots=True)
class PersistEntries(Effect):
    """Drop every entry at ``from_index`` and after, then append ``entries`` (which start
    at ``from_index``)."""

    from_index: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class SendMessage(Effect):
    message: Message


@dataclass(frozen=True, slots=True)
class Applied(Effect):
    """A committed entry was applied; ``request_id`` is set on the server that proposed
    it (while it still leads). ``error`` is the state machine's refusal, if any."""

    index: int
    term: int
    request_id: int | None
    result: Any
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class ProposalDropped(Effect):
    """Not the leader (``leader`` is who is, when known), or leadership was lost before
    the entry committed (it may still commit under the next leader)."""

    request_id: int
    leader: str | None


@dataclass(frozen=True, slots=True)
class LeaderElected(Effect):
    """Fact: this server learned of (or became) the leader of ``term``."""

    term: int
    leader: str


@dataclass
class _Progress:
    next_index: int
    match_index: int = 0
    inflight: int = 0
    heard: bool = False
    """Heard from since the last check-quorum round."""


@dataclass
class _Election:
    granted: dict[str, None] = field(default_factory=dict)
    refused: dict[str, None] = field(default_factory=dict)


class RaftCore:
    """One Raft server. ``voters`` lists every voting server, this one included."""

    def __init__(
        self,
        server_id: str,
        voters: Sequence[str],
        state_machine: StateMachine,
        rng: random.Random,
        config: RaftConfig | None = None,
        persisted: Persisted | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or RaftConfig()
        self.config.validate()
        if server_id not in voters:
            raise ValueError(f"{server_id!r} is not among the voters {list(voters)}")
        if len(set(voters)) != len(voters):
            raise ValueError("duplicate voters")
        self.id = server_id
        self.voters = tuple(voters)
        self.peers = tuple(v for v in voters if v != server_id)
        self.sm = state_machine
        self.rng = rng
        p = persisted or Persisted()
        self.term = p.term
        self.voted_for = p.voted_for
        self.log: list[Entry] = list(p.entries)
        for i, e in enumerate(self.log, 1):
            assert e.index == i, "persisted entries must be contiguous from index 1"
        self.commit_index = 0
        self.last_applied = 0
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.now = now
        self._outbox: list[Effect] = []
        self._election = _Election()
        self._progress: dict[str, _Progress] = {}
        self._pending: dict[int, int] = {}
        """log index -> request_id of proposals this leader is waiting on"""
        self._leader_contact = -float("inf")
        self._election_deadline = 0.0
        self._heartbeat_deadline = float("inf")
        self._quorum_deadline = float("inf")
        self.stats = {"elections": 0, "pre_votes": 0, "stepped_down": 0, "dropped": 0}
        self._reset_election_timer()

    # ================================================================== contract

    def handle(self, now: float, event: Event) -> None:
        assert now >= self.now, "time went backwards"
        self.now = now
        if isinstance(event, MessageReceived):
            self._on_message(event.message)
        elif isinstance(event, Proposed):
            self._on_propose(event)
        elif isinstance(event, TimerExpired):
            self._on_timer()
        else:
            raise TypeError(f"RaftCore cannot handle {type(event).__name__}")

    def next_deadline(self) -> float | None:
        if self.role is Role.LEADER:
            return min(self._heartbeat_deadline, self._quorum_deadline)
        return self._election_deadline

    def take_effects(self) -> list[Effect]:
        out, self._outbox = self._outbox, []
        return out

    # ================================================================== log helpers

    @property
    def last_index(self) -> int:
        return len(self.log)

    @property
    def last_term(self) -> int:
        return self.log[-1].term if self.log else 0

    def term_at(self, index: int) -> int:
        if index == 0:
            return 0
        return self.log[index - 1].term

    def match_index(self, peer: str) -> int:
        """The leader's matchIndex for ``peer`` (0 when not leading)."""
        pr = self._progress.get(peer)
        return pr.match_index if pr is not None else 0

    def _quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def _up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: the candidate's log is at least as up to date as ours."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # ================================================================== timers

    def _reset_election_timer(self) -> None:
        t = self.config.election_timeout_s
        self._election_deadline = self.now + t + self.rng.random() * t

    def _on_timer(self) -> None:
        if self.role is Role.LEADER:
            if self.now >= self._quorum_deadline:
                self._check_quorum()
            if self.role is Role.LEADER and self.now >= self._heartbeat_deadline:
                self._broadcast_append(heartbeat=True)
            return
        if self.now >= self._election_deadline:
            if self.config.pre_vote:
                self._start_pre_vote()
            else:
                self._start_election()

    def _check_quorum(self) -> None:
        heard = 1 + sum(1 for p in self._progress.values() if p.heard)
        for p in self._progress.values():
            p.heard = False
        if self.config.check_quorum and heard < self._quorum():
            self.stats["stepped_down"] += 1
            self._become_follower(self.term, None)
            return
        self._quorum_deadline = self.now + self.config.election_timeout_s

    # ================================================================== roles

    def _persist_state(self) -> None:
        self._outbox.append(PersistState(self.term, self.voted_for))

    def _become_follower(self, term: int, leader: str | None) -> None:
        was_leader = self.role is Role.LEADER
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._persist_state()
        self.role = Role.FOLLOWER
        if leader is not None and leader != self.leader:
            self._outbox.append(LeaderElected(term, leader))
        self.leader = leader
        self._progress = {}
        if was_leader:
            for request_id in self._pending.values():
                self._outbox.append(ProposalDropped(request_id, leader))
            self._pending = {}
        self._reset_election_timer()

    def _start_pre_vote(self) -> None:
        self.stats["pre_votes"] += 1
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._election = _Election({self.id: None})
        self._reset_election_timer()
        if len(self._election.granted) >= self._quorum():
            self._start_election()
            return
        for peer in self.peers:
            self._send(
                VoteRequest(self.id, peer, self.term + 1, self.last_index, self.last_term, True)
            )

    def _start_election(self) -> None:
        self.stats["elections"] += 1
        self.role = Role.CANDIDATE
        self.term += 1
        self.voted_for = self.id
        self.leader = None
        self._persist_state()
        self._election = _Election({self.id: None})
        self._reset_election_timer()
        if len(self._election.granted) >= self._quorum():
            self._become_leader()
            return
        for peer in self.peers:
            self._send(VoteRequest(self.id, peer, self.term, self.last_index, self.last_term))

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE
        self.role = Role.LEADER
        self.leader = self.id
        self._outbox.append(LeaderElected(self.term, self.id))
        self._progress = {p: _Progress(next_index=self.last_index + 1) for p in self.peers}
        self._quorum_deadline = self.now + self.config.election_timeout_s
        self._append_local((None,))  # rule N: a no-op of this term
        self._broadcast_append(heartbeat=False)
        self._maybe_commit()

    # ================================================================== proposals

    def _on_propose(self, ev: Proposed) -> None:
        if self.role is not Role.LEADER:
            self.stats["dropped"] += 1
            self._outbox.append(ProposalDropped(ev.request_id, self.leader))
            return
        index = self._append_local((ev.command,))
        self._pending[index] = ev.request_id
        self._broadcast_append(heartbeat=False)
        self._maybe_commit()  # a single-server cluster commits at once

    def _append_local(self, commands: Sequence[Any]) -> int:
        first = self.last_index + 1
        new = tuple(Entry(self.term, first + i, c) for i, c in enumerate(commands))
        self.log.extend(new)
        self._outbox.append(PersistEntries(first, new))
        return self.last_index

    # ================================================================== replication

    def _broadcast_append(self, heartbeat: bool) -> None:
        for peer in self.peers:
            self._send_append(peer, heartbeat)
        self._heartbeat_deadline = self.now + self.config.heartbeat_interval_s

    def _send_append(self, peer: str, heartbeat: bool) -> None:
        pr = self._progress[peer]
        if pr.inflight >= self.config.max_inflight_appends and not heartbeat:
            return
        prev = pr.next_index - 1
        end = min(self.last_index, prev + self.config.max_entries_per_append)
        entries = tuple(self.log[prev:end])
        self._send(
            AppendRequest(self.id, peer, self.term, prev, self.term_at(prev), entries,
                          self.commit_index)
        )  # fmt: skip
        if entries:
            pr.next_index = end + 1  # optimistic: pipelined until a rejection says otherwise
            pr.inflight += 1

    def _on_append(self, m: AppendRequest) -> None:
        # m.term >= self.term here (older terms were answered in _on_message)
        if self.role is not Role.FOLLOWER or self.leader != m.src:
            self._become_follower(m.term, m.src)
        self._leader_contact = self.now
        self._reset_election_timer()
        if m.prev_index > self.last_index or self.term_at(m.prev_index) != m.prev_term:
            hint = min(self.last_index, m.prev_index - 1)
            self._send(AppendResponse(self.id, m.src, self.term, False, max(hint, 0)))
            return
        # §5.3: delete a conflicting suffix, then append what is new
        new_from = None
        for e in m.entries:
            if e.index <= self.last_index:
                if self.term_at(e.index) == e.term:
                    continue
                assert e.index > self.commit_index, "a committed entry would be overwritten"
                del self.log[e.index - 1 :]
            new_from = e.index
            break
        if new_from is not None:
            tail = tuple(e for e in m.entries if e.index >= new_from)
            self.log.extend(tail)
            self._outbox.append(PersistEntries(new_from, tail))
        match = m.prev_index + len(m.entries)
        self._send(AppendResponse(self.id, m.src, self.term, True, match))
        if m.commit > self.commit_index:
            self._commit_to(min(m.commit, match))

    def _on_append_response(self, m: AppendResponse) -> None:
        if self.role is not Role.LEADER or m.term != self.term:
            return
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.heard = True
        pr.inflight = max(0, pr.inflight - 1)
        if m.success:
            if m.match_index > pr.match_index:
                pr.match_index = m.match_index
            pr.next_index = max(pr.next_index, pr.match_index + 1)
            if pr.match_index >= self.last_index:
                pr.inflight = 0  # caught up: whatever was lost in between no longer counts
            self._maybe_commit()
            if pr.next_index <= self.last_index:
                self._send_append(m.src, heartbeat=False)
            return
        # rejected: back off to the follower's hint and resend (§5.3), dropping the
        # optimistic pipeline
        pr.next_index = max(pr.match_index + 1, min(pr.next_index - 1, m.match_index + 1))
        pr.inflight = 0
        self._send_append(m.src, heartbeat=False)

    def _maybe_commit(self) -> None:
        matches = sorted([self.last_index, *(p.match_index for p in self._progress.values())])
        n = matches[len(matches) - self._quorum()]
        if n > self.commit_index and self.term_at(n) == self.term:
            self._commit_to(n)

    def _commit_to(self, index: int) -> None:
        index = min(index, self.last_index)
        if index <= self.commit_index:
            return
        self.commit_index = index
        while self.last_applied < self.commit_index:
            self.last_applied += 1
            e = self.log[self.last_applied - 1]
            request_id = self._pending.pop(e.index, None)
            if e.command is None:
                if request_id is not None:
                    self._outbox.append(Applied(e.index, e.term, request_id, None))
                continue
            result: Any = None
            error: Exception | None = None
            try:
                result = self.sm.apply(e.index, e.command)
            except Exception as exc:  # the state machine's refusal is an outcome, not a crash
                error = exc
            self._outbox.append(Applied(e.index, e.term, request_id, result, error))

    # ================================================================== votes

    def _on_vote_request(self, m: VoteRequest) -> None:
        recent_leader = (
            self.config.check_quorum
            and self.now - self._leader_contact < self.config.election_timeout_s
        )
        if m.pre_vote:
            grant = (
                m.term > self.term
                and self._up_to_date(m.last_index, m.last_term)
                and not recent_leader
                and self.role is not Role.LEADER
            )
            self._send(VoteResponse(self.id, m.src, m.term if grant else self.term, grant, True))
            return
        if m.term > self.term:
            if recent_leader or (self.role is Role.LEADER and self.config.check_quorum):
                # leader stickiness (thesis §4.2.3): keep our term, refuse
                self._send(VoteResponse(self.id, m.src, self.term, False))
                return
            self._become_follower(m.term, None)
        grant = (
            m.term == self.term
            and self.voted_for in (None, m.src)
            and self._up_to_date(m.last_index, m.last_term)
        )
        if grant:
            self.voted_for = m.src
            self._persist_state()
            self._reset_election_timer()
        self._send(VoteResponse(self.id, m.src, self.term, grant))

    def _on_vote_response(self, m: VoteResponse) -> None:
        if m.pre_vote:
            if self.role is not Role.PRE_CANDIDATE or (m.granted and m.term != self.term + 1):
                return
            tally = self._election.granted if m.granted else self._election.refused
            tally[m.src] = None
            if len(self._election.granted) >= self._quorum():
                self._start_election()
            elif len(self._election.refused) >= self._quorum():
                self._become_follower(self.term, None)
            return
        if self.role is not Role.CANDIDATE or m.term != self.term:
            return
        tally = self._election.granted if m.granted else self._election.refused
        tally[m.src] = None
        if len(self._election.granted) >= self._quorum():
            self._become_leader()
        elif len(self._election.refused) >= self._quorum():
            self._become_follower(self.term, None)

    # ================================================================== dispatch

    def _send(self, m: Message) -> None:
        self._outbox.append(SendMessage(m))

    def _on_message(self, m: Message) -> None:
        if m.dst != self.id or m.src not in self.voters or m.src == self.id:
            return  # not for us, or from a stranger: dropped (counted by the driver)
        if isinstance(m, VoteRequest):
            if m.term < self.term:
                self._send(VoteResponse(self.id, m.src, self.term, False, m.pre_vote))
                return
            self._on_vote_request(m)
            return
        if isinstance(m, VoteResponse):
            # a granted pre-vote carries the term we asked about (ours + 1); any other
            # response from a higher term means we are behind
            if m.term > self.term and not (m.pre_vote and m.granted):
                self._become_follower(m.term, None)
                return
            self._on_vote_response(m)
            return
        if m.term < self.term:
            if isinstance(m, AppendRequest):  # a stale leader learns our term and steps down
                self._send(AppendResponse(self.id, m.src, self.term, False, 0))
            return
        if m.term > self.term:
            self._become_follower(m.term, m.src if isinstance(m, AppendRequest) else None)
        if isinstance(m, AppendRequest):
            self._on_append(m)
        elif isinstance(m, AppendResponse):
            self._on_append_response(m)
