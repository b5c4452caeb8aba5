"""Raft consensus as a sans-IO core: Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm" (USENIX ATC 2014, "the paper"), with additions from Ongaro's thesis
("Consensus: Bridging Theory and Practice", 2014): pre-vote (§9.6), check-quorum with
leader stickiness (§6.2, §4.2.3), and single-server membership changes with the
configuration kept in the log (§4.1-§4.3).

The core follows gossamer's contract (gossamer/core.py): ``handle(now, event)``,
``next_deadline()``, ``take_effects()``; randomness (election timeouts) comes from the
``random.Random`` it is given. It owns the replicated state machine it applies committed
commands to (:class:`StateMachine`: the catalog's state store implements it), so a
simulator can run whole clusters deterministically.

Rules (the paper's Figure 2, numbered as there):

1. All servers: if commitIndex > lastApplied, apply log[lastApplied+1]; a message with a
   higher term makes us a follower in that term (except pre-votes, rule P, and vote
   requests refused by rule C3).
2. Followers answer RPCs; an election timeout without hearing from a leader or granting a
   vote starts an election (only on a voter: rule C2).
3. Candidates: increment the term, vote for themselves, ask every voter; a majority of
   the voters makes a leader; an AppendEntries from a leader of this term makes a
   follower; a timeout starts a new election.
4. Leaders: heartbeats; append proposals and replicate; on a rejection, back off
   nextIndex and retry; commit N when a majority of the voters has matchIndex >= N
   **and** log[N] is from the current term (§5.4.2).

Additions:

P. Pre-vote: before becoming a candidate, a server asks whether it could win at term+1
   without changing anyone's term. A server grants a pre-vote only if the asker's log is
   at least as up to date and it has not heard from a leader within the minimum election
   timeout. A partitioned server rejoining therefore cannot disrupt a healthy leader.
Q. Check-quorum: a leader that has not heard from a majority of the voters within an
   election timeout steps down, so a leader cut off in a minority stops accepting writes
   it cannot commit. Followers ignore vote requests within the minimum election timeout
   of hearing from a leader (leader stickiness).
N. A new leader appends a no-op entry of its term, so entries of earlier terms commit
   promptly (§5.4.2, thesis §6.4).

Configuration (thesis chapter 4):

C1. The configuration is an entry in the log (``EntryKind.CONFIGURATION``). Every server
    uses the **latest configuration in its log, committed or not** (§4.1); when that
    entry is truncated away it falls back to the one before. With no configuration in
    its log (and no static ``voters``) a server is *unbootstrapped*. Bootstrap writes the
    same entry 1 (term 1) on every initial server, as hashicorp/raft does.
C2. Only voters campaign: voters of the latest configuration, and voters of the committed
    one while a later configuration is uncommitted (hashicorp/raft's rule; without it a
    leader that stepped down before its own removal committed, holding the only
    up-to-date log, could never be replaced). Non-voters receive the log but count toward
    no quorum (elections, commitment, check-quorum): a candidate counts the ballots of the
    voters of its latest configuration only, its own included only if it is one. A
    non-voter still answers vote requests (thesis §4.1: "this vote may occasionally be
    needed to keep the cluster available"): a server promoted by an entry that has not
    reached it yet must vote, or a candidate whose log holds the promotion can never win
    (a deadlock the random membership schedules found when non-voters refused).
C3. Vote and pre-vote requests are refused, without adopting their term, when the
    candidate or we ourselves are in neither our latest nor our committed configuration:
    a removed server cannot disrupt (§4.2.3), and an unbootstrapped server or one whose
    removal committed neither campaigns nor votes. The test is looser than "the
    candidate is a voter of our latest configuration" on purpose, like hashicorp/raft's:
    a voter that has not yet received the candidate's promotion, or that holds an
    uncommitted entry removing it, must still be able to elect it (the random
    membership schedules deadlocked on both with the strict test). Likewise a server
    whose removal is in its log but not known committed still votes. Every other message
    is accepted from anyone: a leader that has just added us is not yet in our
    configuration; but a leader ignores a higher term in an answer from a server outside
    its configuration (a removed server that raised its term alone) and stops
    replicating to it.
C4. One change at a time, adding or removing one server (§4.2): a leader refuses a change
    while its latest configuration entry is uncommitted, and until it has committed an
    entry of its own term (the fix in Ongaro's 2015 raft-dev post "bug in single-server
    membership changes"). Any two successive configurations then share a majority. A
    server joins as a non-voter and is promoted only once it holds the leader's committed
    log (§4.2.1, catching up new servers): promoting an empty server could make its vote,
    which it cannot give, necessary for every election.
C5. A leader whose latest configuration does not hold it as a voter keeps leading but does
    not count itself in quorums (§4.2.2); once that configuration commits it steps down,
    and from then on neither campaigns nor votes.
C6. The leader replicates to every server of its latest and of its committed
    configuration, so a removed server still receives the entry that removes it; and,
    for up to an election timeout after that entry commits, until the removed server
    acknowledges a commit index that covers it, so it learns that its removal is final
    and stops campaigning (rule C2).

Reads and leadership (thesis chapters 6 and 3):

R. ReadIndex (§6.4): a read is answered with a read index, the commit index once this
   leader has committed an entry of its term (it waits until then), after a quorum of
   voters acknowledged a heartbeat round sent after the read arrived (a single voter
   confirms at once). Every AppendEntries carries the leader's round number ``seq`` and
   responses echo it; a read triggers a round at once, and reads that arrive at the same
   instant share it. The driver serves the read once ``last_applied >= index``. Losing
   leadership drops pending reads. (A follower receiving a snapshot confirms no round
   until it is back on AppendEntries: InstallSnapshot answers carry no ``seq``.)
T. Leadership transfer (§3.10): the leader stops accepting proposals and configuration
   changes, brings the target's log up to date, then sends it ``TimeoutNow``; the target
   starts an election at once, without pre-vote, and its vote requests carry
   ``transfer=True`` so voters set leader stickiness aside for them. The transfer ends
   when another leader is known (``TransferDone``) or after an election timeout
   (refused; the old leader, if it still leads, resumes).

Snapshots (the paper's §7, thesis chapter 5):

S1. Each server snapshots on its own: once ``snapshot_threshold`` entries were applied
    since its last snapshot (or on ``SnapshotRequested``) it takes the state machine's
    bytes at ``last_applied``, with the configuration in force at that index, emits
    ``PersistSnapshot`` and then ``CompactLog`` for the entries more than
    ``trailing_logs`` behind it (kept for followers that lag a little, as Consul does).
S2. A leader that no longer holds the entry before a follower's nextIndex sends its latest
    snapshot instead, in chunks of ``snapshot_chunk_bytes``, one chunk in flight per
    follower (re-sent after two heartbeat intervals without an answer). The follower
    buffers chunks keyed by (leader, term, last index, last term); a chunk whose offset
    is not its buffer's length is refused with that length so the leader resumes there;
    a buffer over ``snapshot_bytes_max`` is dropped. On the last chunk it persists the
    snapshot, keeps its log after the snapshot only if it holds the snapshot's last
    entry with the same term (§7), else discards it, restores the state machine and
    sets commit and applied to the snapshot's index. A follower whose commit index
    already covers the snapshot answers that it needs nothing (``next_offset`` at or past
    the end). The leader counts a follower's matchIndex only from AppendEntries answers,
    so a stale snapshot answer can move nextIndex but never the commit point.
S3. On start the core restores the persisted snapshot and starts with commit and applied
    at its index; the persisted log may start at or before the snapshot's index + 1.

Effects come out in causal order. Each ``SendMessage`` depends on every ``PersistState``,
``PersistEntries``, ``PersistSnapshot`` and ``CompactLog`` before it: the driver must make
those durable (fsync) before it sends (etcd-raft's "persist before send" rule).
``ConfigurationChanged`` follows the persist effects of the log change that caused it and
precedes the sends it may route. ``Applied`` effects follow commits.

Invariants (asserted): the log is contiguous; no committed entry is ever overwritten;
``log_base <= snapshot index <= last_applied <= commit_index <= last_index`` (the log
holds the entries after ``log_base``); a leader is a voter of a configuration when it is
elected.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gossamer.core import Effect, Event, TimerExpired

__all__ = [
    "AddNonVoter",
    "AppendRequest",
    "AppendResponse",
    "Applied",
    "BootstrapRequested",
    "CompactLog",
    "Configuration",
    "ConfigurationChangeRequested",
    "ConfigurationChanged",
    "Entry",
    "EntryKind",
    "InstallSnapshotRequest",
    "InstallSnapshotResponse",
    "LeaderElected",
    "LeadershipTransferRequested",
    "Message",
    "MessageReceived",
    "PersistEntries",
    "PersistSnapshot",
    "PersistState",
    "Persisted",
    "PromoteVoter",
    "ProposalDropped",
    "Proposed",
    "ProposedMany",
    "RaftConfig",
    "RaftCore",
    "ReadIndexReady",
    "ReadIndexRequested",
    "RemoveServer",
    "RequestRefused",
    "Role",
    "SendMessage",
    "ServerInfo",
    "Snapshot",
    "SnapshotRequested",
    "StateMachine",
    "TimeoutNow",
    "TransferDone",
    "VoteRequest",
    "VoteResponse",
]

SERVER_ID_MAX = 256
"""Longest server ID (the wire codec enforces the same)."""
SNAPSHOT_CHUNK_BYTES_MAX = 8 << 20
"""Largest snapshot chunk a leader sends (half the wire's MESSAGE_BYTES_MAX)."""


class StateMachine(Protocol):
    """What Raft applies committed commands to (the catalog's StateStore)."""

    def apply(self, index: int, command: Any) -> Any: ...

    def snapshot(self) -> bytes:
        """All state, as bytes (taken at ``last_applied``)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace all state with a :meth:`snapshot`'s bytes."""
        ...


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
    snapshot_threshold: int = 16384
    """Entries applied since the last snapshot that trigger one (Consul's default)."""
    trailing_logs: int = 10240
    """Entries kept behind a snapshot for followers that lag (Consul's default)."""
    snapshot_chunk_bytes: int = 1 << 20
    """Bytes of snapshot per InstallSnapshot message (at most SNAPSHOT_CHUNK_BYTES_MAX, so
    a chunk fits the wire's message limit)."""
    snapshot_bytes_max: int = 1 << 30
    """Largest snapshot a follower buffers; a larger one is refused."""

    def validate(self) -> None:
        if self.heartbeat_interval_s <= 0 or self.election_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.heartbeat_interval_s * 2 > self.election_timeout_s:
            raise ValueError("heartbeat_interval_s must be under half the election timeout")
        if self.max_entries_per_append < 1 or self.max_inflight_appends < 1:
            raise ValueError("max_entries_per_append and max_inflight_appends must be >= 1")
        if self.snapshot_threshold < 1 or self.trailing_logs < 0:
            raise ValueError("snapshot_threshold must be >= 1 and trailing_logs >= 0")
        if not 1 <= self.snapshot_chunk_bytes <= SNAPSHOT_CHUNK_BYTES_MAX:
            raise ValueError(f"snapshot_chunk_bytes must be in [1, {SNAPSHOT_CHUNK_BYTES_MAX}]")
        if self.snapshot_bytes_max < 1:
            raise ValueError("snapshot_bytes_max must be >= 1")

    @classmethod
    def low_latency(cls) -> RaftConfig:
        """For fast failover on a good network (issue 5's low-latency preset)."""
        return cls(election_timeout_s=0.3, heartbeat_interval_s=0.05)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# ------------------------------------------------------------------------ configuration


def _check_id(server_id: Any, what: str = "server ID") -> None:
    if not isinstance(server_id, str) or not 0 < len(server_id) <= SERVER_ID_MAX:
        raise ValueError(f"{what}: expected a string of 1-{SERVER_ID_MAX} characters")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    id: str
    address: str = ""
    """``host:port`` of the server's RPC; "" in tests."""
    voter: bool = True

    def __post_init__(self) -> None:
        _check_id(self.id)
        if not isinstance(self.address, str) or len(self.address) > SERVER_ID_MAX:
            raise ValueError(f"address: expected a string of at most {SERVER_ID_MAX} characters")
        if not isinstance(self.voter, bool):
            raise ValueError("voter: expected a boolean")


@dataclass(frozen=True, slots=True)
class Configuration:
    """The servers of a cluster, in order (thesis §4.1). IDs are unique."""

    servers: tuple[ServerInfo, ...] = ()

    def __post_init__(self) -> None:
        ids = [s.id for s in self.servers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate server IDs in {ids}")

    def voters(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.servers if s.voter)

    def get(self, server_id: str) -> ServerInfo | None:
        for s in self.servers:
            if s.id == server_id:
                return s
        return None

    def is_voter(self, server_id: str) -> bool:
        s = self.get(server_id)
        return s is not None and s.voter

    def to_wire(self) -> list[list[Any]]:
        return [[s.id, s.address, s.voter] for s in self.servers]

    @classmethod
    def from_wire(cls, raw: Any) -> Configuration:
        """The inverse of :meth:`to_wire`; raises ``ValueError`` on anything else."""
        if not isinstance(raw, list | tuple) or len(raw) > 1024:
            raise ValueError("configuration: expected a list of at most 1024 servers")
        servers = []
        for item in raw:
            if not isinstance(item, list | tuple) or len(item) != 3:
                raise ValueError("configuration: expected [id, address, voter] per server")
            servers.append(ServerInfo(item[0], item[1], item[2]))
        return cls(tuple(servers))


class EntryKind(enum.IntEnum):
    COMMAND = 0
    CONFIGURATION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    command: Any = None
    """A msgpack-encodable command, None for a leader's no-op, or for a configuration
    entry its ``Configuration.to_wire()``."""
    kind: EntryKind = EntryKind.COMMAND


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
    transfer: bool = False
    """Sent by a leadership-transfer target (rule T): voters ignore leader stickiness."""


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
    seq: int = 0
    """The leader's heartbeat round (rule R), echoed by the response."""


@dataclass(frozen=True, slots=True)
class AppendResponse(Message):
    success: bool
    match_index: int
    """On success, the last index the follower now holds from this request; on failure,
    a hint: the follower's last index that might match (for a quick back-off)."""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshotRequest(Message):
    """One chunk of the leader's snapshot (rule S2)."""

    last_index: int
    last_term: int
    configuration: Configuration
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse(Message):
    success: bool
    next_offset: int
    """The offset the follower wants next; at or past the snapshot's end: done."""


@dataclass(frozen=True, slots=True)
class TimeoutNow(Message):
    """Leader to transfer target: start an election now (rule T)."""


# ------------------------------------------------------------------------ events


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
class ProposedMany(Event):
    """Several client commands at once (a driver's group commit): one log append and one
    AppendEntries round for the lot, so each server makes them durable with one write.
    Each is answered as its own :class:`Proposed` would be."""

    proposals: tuple[Proposed, ...]


@dataclass(frozen=True, slots=True)
class BootstrapRequested(Event):
    """Write ``configuration`` as entry 1 of a fresh server's log (rule C1)."""

    configuration: Configuration


@dataclass(frozen=True, slots=True)
class AddNonVoter:
    id: str
    address: str = ""

    def __post_init__(self) -> None:
        ServerInfo(self.id, self.address)  # validates both


@dataclass(frozen=True, slots=True)
class PromoteVoter:
    """Make an existing non-voter a voter."""

    id: str

    def __post_init__(self) -> None:
        _check_id(self.id)


@dataclass(frozen=True, slots=True)
class RemoveServer:
    id: str

    def __post_init__(self) -> None:
        _check_id(self.id)


ConfigurationChange = AddNonVoter | PromoteVoter | RemoveServer


@dataclass(frozen=True, slots=True)
class ConfigurationChangeRequested(Event):
    """One membership change (rule C4); answered by :class:`Applied` once the new
    configuration commits, :class:`RequestRefused`, or :class:`ProposalDropped`."""

    request_id: int
    change: ConfigurationChange


@dataclass(frozen=True, slots=True)
class ReadIndexRequested(Event):
    """A linearizable read (rule R); answered by :class:`ReadIndexReady` or
    :class:`ProposalDropped`."""

    request_id: int


@dataclass(frozen=True, slots=True)
class LeadershipTransferRequested(Event):
    """Hand leadership to ``target`` (None: the most up-to-date voter), rule T."""

    request_id: int
    target: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotRequested(Event):
    """Take a snapshot now (operators, tests), rule S1."""


# ------------------------------------------------------------------------ effects


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine at ``index`` (whose entry has ``term``), and the configuration
    in force there."""

    index: int
    term: int
    configuration: Configuration
    data: bytes


@dataclass(frozen=True, slots=True)
class Persisted:
    """What a restarted server reads back from its disk: ``entries`` are contiguous and,
    with a snapshot, start at or before ``snapshot.index + 1`` (rule S3)."""

    term: int = 0
    voted_for: str | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None


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
class PersistSnapshot(Effect):
    """Store this snapshot durably, replacing the previous one (rule S1, S2)."""

    index: int
    term: int
    configuration: Configuration
    data: bytes


@dataclass(frozen=True, slots=True)
class CompactLog(Effect):
    """Drop every log entry at or before ``through_index``."""

    through_index: int


@dataclass(frozen=True, slots=True)
class SendMessage(Effect):
    message: Message


@dataclass(frozen=True, slots=True)
class Applied(Effect):
    """A committed entry was applied; ``request_id`` is set on the server that proposed
    it (while it still leads). ``error`` is the state machine's refusal, if any. A no-op
    or configuration entry is reported only when it answers a request."""

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
class RequestRefused(Effect):
    """The leader will not carry out the request now; ``reason`` says why in one line."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReadIndexReady(Effect):
    """Serve read ``request_id`` once ``last_applied >= index`` (rule R)."""

    request_id: int
    index: int


@dataclass(frozen=True, slots=True)
class TransferDone(Effect):
    """Leadership transfer ``request_id`` ended with ``leader`` leading (rule T)."""

    request_id: int
    leader: str


@dataclass(frozen=True, slots=True)
class LeaderElected(Effect):
    """Fact: this server learned of (or became) the leader of ``term``."""

    term: int
    leader: str


@dataclass(frozen=True, slots=True)
class ConfigurationChanged(Effect):
    """Fact: ``core.configuration`` is now ``configuration``, from the log entry at
    ``index`` (0: the static ``voters`` or none; a snapshot's index when it came with a
    snapshot). Emitted only when the servers change, not when the same configuration
    moves to another index."""

    configuration: Configuration
    index: int


@dataclass
class _Progress:
    next_index: int
    match_index: int = 0
    inflight: int = 0
    heard: bool = False
    """Heard from since the last check-quorum round."""
    last_contact: float | None = None
    acked_seq: int = 0
    """The highest heartbeat round it acknowledged in this term (rule R)."""
    snap_index: int = 0
    """The index of the snapshot being sent to it (0: none), rule S2."""
    snap_offset: int = 0
    snap_sent_at: float | None = None
    """When the chunk in flight left (None: none in flight)."""


@dataclass
class _SnapshotBuffer:
    key: tuple[str, int, int, int]
    """(leader, term, last index, last term) of the snapshot being received"""
    data: bytearray


@dataclass
class _Read:
    request_id: int
    seq: int
    """The round whose acknowledgement by a quorum confirms this read."""
    index: int | None
    """The read index; None until this leader has committed an entry of its term."""


@dataclass
class _Transfer:
    request_id: int
    target: str
    deadline: float
    timeout_sent: bool = False


@dataclass
class _Election:
    granted: dict[str, None] = field(default_factory=dict)
    refused: dict[str, None] = field(default_factory=dict)


class RaftCore:
    """One Raft server.

    ``voters`` lists every voting server, this one included, for a cluster whose
    membership is static (tests, the simulator); a configuration in the persisted log
    overrides it. ``None`` takes the configuration from the persisted log only: without
    one the server is unbootstrapped (rule C1) until a leader replicates to it or a
    :class:`BootstrapRequested` arrives."""

    def __init__(
        self,
        server_id: str,
        voters: Sequence[str] | None,
        state_machine: StateMachine,
        rng: random.Random,
        config: RaftConfig | None = None,
        persisted: Persisted | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or RaftConfig()
        self.config.validate()
        _check_id(server_id)
        if voters is not None:
            if server_id not in voters:
                raise ValueError(f"{server_id!r} is not among the voters {list(voters)}")
            if len(set(voters)) != len(voters):
                raise ValueError("duplicate voters")
            static = Configuration(tuple(ServerInfo(v) for v in voters))
        else:
            static = Configuration()
        self.id = server_id
        self.sm = state_machine
        self.rng = rng
        p = persisted or Persisted()
        self.term = p.term
        self.voted_for = p.voted_for
        entries = list(p.entries)
        for a, b in itertools.pairwise(entries):
            if b.index != a.index + 1:
                raise ValueError("persisted entries must be contiguous")
        snap = p.snapshot
        self._snapshot: Snapshot | None = snap
        self._base = 0
        """The index before the first entry held; entries up to it are compacted."""
        self._base_term = 0
        if snap is None:
            if entries and entries[0].index != 1:
                raise ValueError("persisted entries must start at index 1 without a snapshot")
        else:
            if entries and entries[0].index > snap.index + 1:
                raise ValueError("a gap between the persisted snapshot and the log")
            at = [e for e in entries if e.index == snap.index]
            if at and at[0].term != snap.term:
                raise ValueError("the persisted log disagrees with the snapshot")
            if not entries or entries[-1].index < snap.index:
                entries = []  # all covered by the snapshot
            if entries and entries[0].index <= snap.index:
                # the first entry held becomes the base: its term is what an append of
                # the next one needs
                self._base, self._base_term = entries[0].index, entries[0].term
                entries = entries[1:]
            else:
                self._base, self._base_term = snap.index, snap.term
        self._log: list[Entry] = entries
        confs = {0: static}
        for e in self._log:
            if e.kind is EntryKind.CONFIGURATION and snap is not None and e.index <= snap.index:
                confs[e.index] = Configuration.from_wire(e.command)
        if snap is not None:
            confs[snap.index] = snap.configuration
        self._configs: list[tuple[int, Configuration]] = sorted(confs.items())
        """(index, configuration) of the base and of every configuration entry in the
        log, by index; the last is the one in force (rule C1)."""
        self._configs_appended([e for e in self._log if snap is None or e.index > snap.index])
        self._announced: tuple[int, Configuration] | None = None
        self.commit_index = 0
        self.last_applied = 0
        self._snap_buffer: _SnapshotBuffer | None = None
        if snap is not None:
            state_machine.restore(snap.data)  # rule S3
            self.commit_index = self.last_applied = snap.index
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.now = now
        self._outbox: list[Effect] = []
        self._election = _Election()
        self._progress: dict[str, _Progress] = {}
        self._pending: dict[int, int] = {}
        """log index -> request_id of proposals this leader is waiting on"""
        self._departing: dict[str, tuple[int, int, float]] = {}
        """leader: removed server -> (index its removal committed at, the round then, give
        up at), rule C6"""
        self._seq = 0
        """leader: the current heartbeat round (rule R)"""
        self._read_round_at = -float("inf")
        self._reads: list[_Read] = []
        self._transfer: _Transfer | None = None
        self._leader_contact = -float("inf")
        self._election_deadline = 0.0
        self._heartbeat_deadline = float("inf")
        self._quorum_deadline = float("inf")
        self.stats = {
            "elections": 0,
            "pre_votes": 0,
            "stepped_down": 0,
            "dropped": 0,
            "snapshots": 0,
            "snapshots_installed": 0,
            "snapshot_chunks_refused": 0,
            "snapshot_restore_failed": 0,
        }
        self._reset_election_timer()
        if self.configuration.servers:
            self._announce_configuration()

    # ================================================================== contract

    def handle(self, now: float, event: Event) -> None:
        assert now >= self.now, "time went backwards"
        self.now = now
        if isinstance(event, MessageReceived):
            self._on_message(event.message)
        elif isinstance(event, Proposed):
            self._on_propose((event,))
        elif isinstance(event, ProposedMany):
            self._on_propose(event.proposals)
        elif isinstance(event, TimerExpired):
            self._on_timer()
        elif isinstance(event, ConfigurationChangeRequested):
            self._on_change(event)
        elif isinstance(event, BootstrapRequested):
            self._on_bootstrap(event.configuration)
        elif isinstance(event, ReadIndexRequested):
            self._on_read(event.request_id)
        elif isinstance(event, LeadershipTransferRequested):
            self._on_transfer(event)
        elif isinstance(event, SnapshotRequested):
            self._take_snapshot()
        else:
            raise TypeError(f"RaftCore cannot handle {type(event).__name__}")
        assert self._base <= self.snapshot_index <= self.last_applied
        assert self.last_applied <= self.commit_index <= self.last_index

    def next_deadline(self) -> float | None:
        transfer = self._transfer.deadline if self._transfer is not None else float("inf")
        if self.role is Role.LEADER:
            return min(self._heartbeat_deadline, self._quorum_deadline, transfer)
        return min(self._election_deadline, transfer)

    def take_effects(self) -> list[Effect]:
        out, self._outbox = self._outbox, []
        return out

    # ================================================================== accessors

    @property
    def last_index(self) -> int:
        return self._base + len(self._log)

    @property
    def last_term(self) -> int:
        return self._log[-1].term if self._log else self._base_term

    @property
    def log_base(self) -> int:
        """The log holds the entries after this index (0 until compacted)."""
        return self._base

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def snapshot_index(self) -> int:
        return self._snapshot.index if self._snapshot is not None else 0

    def term_at(self, index: int) -> int:
        """The term of the entry at ``index`` (log_base <= index <= last_index)."""
        assert self._base <= index <= self.last_index, f"no term for {index}"
        if index == self._base:
            return self._base_term
        return self._log[index - self._base - 1].term

    def _held(self, index: int) -> bool:
        return self._base <= index <= self.last_index

    def entry(self, index: int) -> Entry:
        """The entry at ``index`` (log_base < index <= last_index)."""
        assert self._base < index <= self.last_index, f"no entry {index}"
        return self._log[index - self._base - 1]

    def entries(self) -> tuple[Entry, ...]:
        """The log held in memory: the entries after ``log_base``."""
        return tuple(self._log)

    @property
    def configuration(self) -> Configuration:
        """The latest configuration in the log, committed or not (rule C1)."""
        return self._configs[-1][1]

    @property
    def configuration_index(self) -> int:
        return self._configs[-1][0]

    @property
    def committed_configuration(self) -> Configuration:
        """The latest committed configuration. Besides the commit index, rule C4 tells:
        a leader appends a configuration only once the one before it has committed, so
        the second-latest configuration in any log is committed, even when a restarted
        server does not know its commit index yet (hashicorp/raft relies on the same)."""
        floor = self._configs[-2][0] if len(self._configs) >= 2 else 0
        for index, conf in reversed(self._configs):
            if index <= max(self.commit_index, floor):
                return conf
        raise AssertionError("the base configuration is always committed")

    @property
    def voters(self) -> tuple[str, ...]:
        return self.configuration.voters()

    def match_index(self, peer: str) -> int:
        """The leader's matchIndex for ``peer`` (0 when not leading)."""
        pr = self._progress.get(peer)
        return pr.match_index if pr is not None else 0

    def last_contact(self, peer: str) -> float | None:
        """Leader: when it last heard a response from ``peer`` (None: never, or not
        leading)."""
        pr = self._progress.get(peer)
        return pr.last_contact if pr is not None else None

    @property
    def leader_contact(self) -> float | None:
        """When this server last heard from a leader; the leader itself: now."""
        if self.role is Role.LEADER:
            return self.now
        return None if self._leader_contact == -float("inf") else self._leader_contact

    def _is_voter(self) -> bool:
        return self.configuration.is_voter(self.id)

    def _may_campaign(self) -> bool:
        """Rule C2: a voter of the latest configuration, or of the committed one while a
        later configuration is uncommitted (hashicorp/raft's rule)."""
        if self.configuration.is_voter(self.id):
            return True
        return (
            self.configuration_index > self.commit_index
            and self.committed_configuration.is_voter(self.id)
        )

    def _ballots(self, tally: dict[str, None]) -> int:
        """Ballots that count: those of the voters of our latest configuration (C2)."""
        conf = self.configuration
        return sum(1 for sid in tally if conf.is_voter(sid))

    def _member(self, server_id: str) -> bool:
        """Rule C3: in the latest or in the committed configuration (voter or not)."""
        return (
            self.configuration.get(server_id) is not None
            or self.committed_configuration.get(server_id) is not None
        )

    def _quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def _up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: the candidate's log is at least as up to date as ours."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # ================================================================== configuration

    def _announce_configuration(self) -> None:
        """Emit ConfigurationChanged if the configuration in force changed (rule C1)."""
        now = self._configs[-1]
        if self._announced is None or now[1] != self._announced[1]:
            self._announced = now
            self._outbox.append(ConfigurationChanged(now[1], now[0]))

    def _configs_truncated(self, from_index: int) -> None:
        while self._configs[-1][0] >= from_index and len(self._configs) > 1:
            self._configs.pop()

    def _configs_appended(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            if e.kind is EntryKind.CONFIGURATION:
                assert e.index > self._configs[-1][0]
                self._configs.append((e.index, Configuration.from_wire(e.command)))

    def _sync_progress(self) -> None:
        """Leader: track every other server of the latest and committed configurations
        (rule C6)."""
        want: dict[str, None] = {}
        for conf in (self.configuration, self.committed_configuration):
            for s in conf.servers:
                if s.id != self.id:
                    want[s.id] = None
        for sid in self._progress:
            if sid not in want and sid not in self._departing:
                until = self.now + self.config.election_timeout_s
                self._departing[sid] = (self.commit_index, self._seq, until)
        for sid in list(self._departing):
            if sid in want:
                del self._departing[sid]  # added back
            else:
                want[sid] = None
        for sid in want:
            if sid not in self._progress:
                self._progress[sid] = _Progress(next_index=self.last_index + 1)
        for sid in [s for s in self._progress if s not in want]:
            del self._progress[sid]

    def _on_bootstrap(self, conf: Configuration) -> None:
        if self.term != 0 or self.last_index != 0 or self._snapshot is not None:
            raise ValueError("bootstrap needs a fresh server (term 0, empty log, no snapshot)")
        if not conf.is_voter(self.id):
            raise ValueError(f"bootstrap configuration must hold {self.id!r} as a voter")
        self.term = 1
        self._persist_state()
        entry = Entry(1, 1, conf.to_wire(), EntryKind.CONFIGURATION)
        self._log.append(entry)
        self._outbox.append(PersistEntries(1, (entry,)))
        self._configs_appended((entry,))
        self._announce_configuration()
        self._reset_election_timer()

    def _on_change(self, ev: ConfigurationChangeRequested) -> None:
        if self.role is not Role.LEADER:
            self.stats["dropped"] += 1
            self._outbox.append(ProposalDropped(ev.request_id, self.leader))
            return
        reason = self._refuse_change(ev.change)
        if self._transfer is not None:
            reason = "leadership transfer in progress"
        if reason is not None:
            self._outbox.append(RequestRefused(ev.request_id, reason))
            return
        conf = self.configuration
        ch = ev.change
        if isinstance(ch, AddNonVoter):
            new = (*conf.servers, ServerInfo(ch.id, ch.address, voter=False))
        elif isinstance(ch, PromoteVoter):
            new = tuple(ServerInfo(s.id, s.address, True) if s.id == ch.id else s
                        for s in conf.servers)  # fmt: skip
        else:
            new = tuple(s for s in conf.servers if s.id != ch.id)
        index = self._append_local([Configuration(new).to_wire()], EntryKind.CONFIGURATION)
        self._pending[index] = ev.request_id
        self._broadcast_append(heartbeat=False)
        self._maybe_commit()

    def _refuse_change(self, ch: ConfigurationChange) -> str | None:
        if self.term_at(self.commit_index) != self.term:
            return "this leader has not yet committed an entry of its term"
        if self.configuration_index > self.commit_index:
            return (f"configuration change at index {self.configuration_index} "
                    "is not committed yet")  # fmt: skip
        conf = self.configuration
        s = conf.get(ch.id)
        if isinstance(ch, AddNonVoter):
            if s is not None:
                return f"server {ch.id!r} is already in the configuration"
        elif s is None:
            return f"server {ch.id!r} is not in the configuration"
        elif isinstance(ch, PromoteVoter):
            if s.voter:
                return f"server {ch.id!r} is already a voter"
            if self.match_index(ch.id) < self.commit_index:
                return (f"server {ch.id!r} has not caught up (it holds {self.match_index(ch.id)}"
                        f" of {self.commit_index} committed entries)")  # fmt: skip
        elif s.voter and conf.voters() == (ch.id,):
            return f"server {ch.id!r} is the last voter"
        return None

    # ================================================================== timers

    def _reset_election_timer(self) -> None:
        t = self.config.election_timeout_s
        self._election_deadline = self.now + t + self.rng.random() * t

    def _on_timer(self) -> None:
        tr = self._transfer
        if tr is not None and self.now >= tr.deadline:
            self._transfer = None
            self._outbox.append(RequestRefused(tr.request_id, "leadership transfer timed out"))
        if self.role is Role.LEADER:
            for sid in [sid for sid, (*_, until) in self._departing.items() if self.now >= until]:
                del self._departing[sid]
                del self._progress[sid]
            if self.now >= self._quorum_deadline:
                self._check_quorum()
            if self.role is Role.LEADER and self.now >= self._heartbeat_deadline:
                self._broadcast_append(heartbeat=True)
            return
        if self.now >= self._election_deadline:
            if not self._may_campaign():  # rule C2: non-voters and strangers never do
                self.role = Role.FOLLOWER
                self._reset_election_timer()
            elif self.config.pre_vote:
                self._start_pre_vote()
            else:
                self._start_election()

    def _check_quorum(self) -> None:
        heard = sum(
            1
            for v in self.voters
            if v == self.id or ((p := self._progress.get(v)) is not None and p.heard)
        )
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
        self._departing = {}
        if was_leader:
            for request_id in self._pending.values():
                self._outbox.append(ProposalDropped(request_id, leader))
            self._pending = {}
            for read in self._reads:
                self._outbox.append(ProposalDropped(read.request_id, leader))
            self._reads = []
        tr = self._transfer
        if tr is not None and leader is not None and leader != self.id:
            self._transfer = None
            self._outbox.append(TransferDone(tr.request_id, leader))
        self._reset_election_timer()

    def _start_pre_vote(self) -> None:
        self.stats["pre_votes"] += 1
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._election = _Election({self.id: None})
        self._reset_election_timer()
        if self._ballots(self._election.granted) >= self._quorum():
            self._start_election()
            return
        for peer in self.voters:
            if peer != self.id:
                self._send(
                    VoteRequest(self.id, peer, self.term + 1, self.last_index, self.last_term,
                                True)
                )  # fmt: skip

    def _start_election(self, transfer: bool = False) -> None:
        assert self._may_campaign()
        self.stats["elections"] += 1
        self.role = Role.CANDIDATE
        self.term += 1
        self.voted_for = self.id
        self.leader = None
        self._persist_state()
        self._election = _Election({self.id: None})
        self._reset_election_timer()
        if self._ballots(self._election.granted) >= self._quorum():
            self._become_leader()
            return
        for peer in self.voters:
            if peer != self.id:
                self._send(
                    VoteRequest(self.id, peer, self.term, self.last_index, self.last_term,
                                transfer=transfer)
                )  # fmt: skip

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE and self._may_campaign()
        self.role = Role.LEADER
        self.leader = self.id
        self._outbox.append(LeaderElected(self.term, self.id))
        tr = self._transfer
        if tr is not None:  # we stepped down for a transfer, yet were elected again
            self._transfer = None
            self._outbox.append(RequestRefused(tr.request_id, "leadership transfer failed"))
        self._progress = {}
        self._read_round_at = -float("inf")
        self._sync_progress()
        self._quorum_deadline = self.now + self.config.election_timeout_s
        self._append_local([None])  # rule N: a no-op of this term
        self._broadcast_append(heartbeat=False)
        self._heartbeat_deadline = self.now + self.config.heartbeat_interval_s
        self._maybe_commit()

    # ================================================================== proposals

    def _on_propose(self, proposals: Sequence[Proposed]) -> None:
        if not proposals:
            return
        if self.role is not Role.LEADER:
            for p in proposals:
                self.stats["dropped"] += 1
                self._outbox.append(ProposalDropped(p.request_id, self.leader))
            return
        if self._transfer is not None:
            for p in proposals:
                self._outbox.append(RequestRefused(p.request_id, "leadership transfer in progress"))
            return
        first = self.last_index + 1
        self._append_local([p.command for p in proposals])
        for i, p in enumerate(proposals):
            self._pending[first + i] = p.request_id
        self._broadcast_append(heartbeat=False)
        self._maybe_commit()  # a single-server cluster commits at once

    def _append_local(self, commands: Sequence[Any], kind: EntryKind = EntryKind.COMMAND) -> int:
        first = self.last_index + 1
        new = tuple(Entry(self.term, first + i, c, kind) for i, c in enumerate(commands))
        self._log.extend(new)
        self._outbox.append(PersistEntries(first, new))
        if kind is EntryKind.CONFIGURATION:
            self._configs_appended(new)
            self._announce_configuration()
            self._sync_progress()
        return self.last_index

    # ================================================================== replication

    def _broadcast_append(self, heartbeat: bool) -> None:
        self._seq += 1  # a new round (rule R)
        for peer in self._progress:
            self._send_append(peer, heartbeat)
        if heartbeat:
            # only a heartbeat round reschedules the next: a proposal's broadcast skips
            # followers at their in-flight limit, so letting proposals push the heartbeat
            # back would starve a follower that lost its in-flight appends (a restarted
            # one) for as long as writes keep coming
            self._heartbeat_deadline = self.now + self.config.heartbeat_interval_s

    def _send_append(self, peer: str, heartbeat: bool) -> None:
        pr = self._progress[peer]
        if pr.inflight >= self.config.max_inflight_appends and not heartbeat:
            return
        prev = pr.next_index - 1
        if prev < self._base:
            # the entry before what it needs is compacted: it gets the snapshot (rule S2)
            self._send_snapshot_chunk(peer, pr)
            return
        end = min(self.last_index, prev + self.config.max_entries_per_append)
        entries = tuple(self._log[prev - self._base : end - self._base])
        self._send(
            AppendRequest(self.id, peer, self.term, prev, self.term_at(prev), entries,
                          self.commit_index, self._seq)
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
        prev_index, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev_index < self._base:
            # what we compacted is committed, hence the same in every leader's log: skip it
            skip = self._base - prev_index
            if len(entries) < skip:
                match = prev_index + len(entries)
                self._send(AppendResponse(self.id, m.src, self.term, True, match, m.seq))
                return
            prev_index, prev_term = self._base, entries[skip - 1].term
            entries = entries[skip:]
        if prev_index > self.last_index or self.term_at(prev_index) != prev_term:
            hint = min(self.last_index, prev_index - 1)
            self._send(AppendResponse(self.id, m.src, self.term, False, max(hint, 0), m.seq))
            return
        # §5.3: delete a conflicting suffix, then append what is new
        new_from = None
        for e in entries:
            if e.index <= self.last_index:
                if self.term_at(e.index) == e.term:
                    continue
                assert e.index > self.commit_index, "a committed entry would be overwritten"
                del self._log[e.index - self._base - 1 :]
                self._configs_truncated(e.index)
            new_from = e.index
            break
        if new_from is not None:
            tail = tuple(e for e in entries if e.index >= new_from)
            self._log.extend(tail)
            self._outbox.append(PersistEntries(new_from, tail))
            self._configs_appended(tail)
            self._announce_configuration()
        match = prev_index + len(entries)
        self._send(AppendResponse(self.id, m.src, self.term, True, match, m.seq))
        if m.commit > self.commit_index:
            self._commit_to(min(m.commit, match))

    def _on_append_response(self, m: AppendResponse) -> None:
        if self.role is not Role.LEADER or m.term != self.term:
            return
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.heard = True
        pr.last_contact = self.now
        pr.inflight = max(0, pr.inflight - 1)
        if m.seq > pr.acked_seq:
            pr.acked_seq = m.seq
            if self._reads:
                self._advance_reads()
        farewell = self._departing.get(m.src)
        if (
            farewell is not None
            and m.success
            and m.match_index >= farewell[0]
            and m.seq > farewell[1]  # sent after the removal committed, so it carried that
        ):
            # it now knows its removal committed (rule C6): stop replicating to it
            del self._departing[m.src]
            del self._progress[m.src]
            return
        if m.success:
            if m.match_index > pr.match_index:
                pr.match_index = m.match_index
            pr.next_index = max(pr.next_index, pr.match_index + 1)
            if pr.match_index >= self.last_index:
                pr.inflight = 0  # caught up: whatever was lost in between no longer counts
            self._maybe_commit()
            if self.role is not Role.LEADER:
                return
            tr = self._transfer
            if tr is not None and tr.target == m.src:
                self._maybe_send_timeout_now()
            if pr.next_index <= self.last_index:
                self._send_append(m.src, heartbeat=False)
            return
        # rejected: back off to the follower's hint and resend (§5.3), dropping the
        # optimistic pipeline
        pr.next_index = max(pr.match_index + 1, min(pr.next_index - 1, m.match_index + 1))
        pr.inflight = 0
        self._send_append(m.src, heartbeat=False)

    def _maybe_commit(self) -> None:
        # rule C5: the leader counts itself only while it is a voter of the latest
        # configuration; non-voters never count (rule C2)
        voters = self.voters
        if not voters:
            return
        matches = sorted(
            (self.last_index if v == self.id else self.match_index(v) for v in voters),
            reverse=True,
        )
        n = matches[self._quorum() - 1]
        if n > self.commit_index and self.term_at(n) == self.term:
            self._commit_to(n)

    def _commit_to(self, index: int) -> None:
        index = min(index, self.last_index)
        if index <= self.commit_index:
            return
        self.commit_index = index
        while self.last_applied < self.commit_index:
            self.last_applied += 1
            e = self.entry(self.last_applied)
            request_id = self._pending.pop(e.index, None)
            if e.command is None or e.kind is EntryKind.CONFIGURATION:
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
        if self.last_applied - self.snapshot_index >= self.config.snapshot_threshold:
            self._take_snapshot()
        if self.role is Role.LEADER:
            if self._reads:
                self._advance_reads()
            self._sync_progress()  # servers the committed configuration dropped (rule C6)
            if not self.committed_configuration.is_voter(self.id):
                # rule C5: our removal committed; step down without a successor in mind
                self.stats["stepped_down"] += 1
                self._become_follower(self.term, None)

    # ================================================================== reads, transfer

    def _on_read(self, request_id: int) -> None:
        if self.role is not Role.LEADER:
            self.stats["dropped"] += 1
            self._outbox.append(ProposalDropped(request_id, self.leader))
            return
        if self._read_round_at != self.now:
            # a round that started before the read arrived proves nothing about it
            self._broadcast_append(heartbeat=True)
            self._read_round_at = self.now
        own_term = self.term_at(self.commit_index) == self.term
        self._reads.append(_Read(request_id, self._seq, self.commit_index if own_term else None))
        self._advance_reads()

    def _advance_reads(self) -> None:
        """Answer the reads whose round a quorum of voters acknowledged (rule R)."""
        assert self.role is Role.LEADER
        if self.term_at(self.commit_index) == self.term:
            for read in self._reads:
                if read.index is None:
                    read.index = self.commit_index
        voters = self.voters
        if not voters:
            return
        acked = sorted(
            (self._seq if v == self.id else self._acked(v) for v in voters), reverse=True
        )
        confirmed = acked[self._quorum() - 1]
        waiting = []
        for read in self._reads:
            if read.index is not None and read.seq <= confirmed:
                self._outbox.append(ReadIndexReady(read.request_id, read.index))
            else:
                waiting.append(read)
        self._reads = waiting

    def _acked(self, peer: str) -> int:
        pr = self._progress.get(peer)
        return pr.acked_seq if pr is not None else 0

    def _on_transfer(self, ev: LeadershipTransferRequested) -> None:
        if self.role is not Role.LEADER:
            self.stats["dropped"] += 1
            self._outbox.append(ProposalDropped(ev.request_id, self.leader))
            return
        target = ev.target
        if target is None:
            candidates = [v for v in self.voters if v != self.id]
            if candidates:
                target = max(candidates, key=lambda v: (self.match_index(v), -candidates.index(v)))
        reason = None
        if self._transfer is not None:
            reason = "leadership transfer in progress"
        elif target is None:
            reason = "no other voter to transfer leadership to"
        elif target == self.id:
            reason = f"server {target!r} is this server, the leader already"
        elif self.configuration.get(target) is None:
            reason = f"server {target!r} is not in the configuration"
        elif not self.configuration.is_voter(target):
            reason = f"server {target!r} is not a voter"
        if reason is not None:
            self._outbox.append(RequestRefused(ev.request_id, reason))
            return
        assert target is not None
        self._transfer = _Transfer(ev.request_id, target, self.now + self.config.election_timeout_s)
        self._maybe_send_timeout_now()
        if not self._transfer.timeout_sent:
            self._send_append(target, heartbeat=True)

    def _maybe_send_timeout_now(self) -> None:
        tr = self._transfer
        assert tr is not None and self.role is Role.LEADER
        if not tr.timeout_sent and self.match_index(tr.target) >= self.last_index:
            tr.timeout_sent = True
            self._send(TimeoutNow(self.id, tr.target, self.term))

    # ================================================================== snapshots

    def _configuration_at(self, index: int) -> Configuration:
        """The configuration in force at ``index`` (at or before it in the log)."""
        for at, conf in reversed(self._configs):
            if at <= index:
                return conf
        raise AssertionError("the base configuration is at index 0")

    def _take_snapshot(self) -> None:
        """Rule S1: snapshot at last_applied, then compact all but the trailing logs."""
        index = self.last_applied
        if index <= self.snapshot_index:
            return
        snap = Snapshot(index, self.term_at(index), self._configuration_at(index),
                        self.sm.snapshot())  # fmt: skip
        self._snapshot = snap
        self.stats["snapshots"] += 1
        self._outbox.append(PersistSnapshot(snap.index, snap.term, snap.configuration, snap.data))
        self._compact(index - self.config.trailing_logs)
        # configurations before the one in force at the snapshot are of no more use
        keep = [c for c in self._configs if c[0] >= self._configs_index_at(index)]
        self._configs = [self._configs[0], *(c for c in keep if c[0] > 0)]

    def _configs_index_at(self, index: int) -> int:
        return max(at for at, _ in self._configs if at <= index)

    def _compact(self, through: int) -> None:
        if through <= self._base:
            return
        assert through <= self.snapshot_index, "only what a snapshot covers is compacted"
        term = self.term_at(through)
        del self._log[: through - self._base]
        self._base, self._base_term = through, term
        self._outbox.append(CompactLog(through))

    def _send_snapshot_chunk(self, peer: str, pr: _Progress) -> None:
        snap = self._snapshot
        assert snap is not None and snap.index >= self._base, "compacted without a snapshot"
        if pr.snap_index != snap.index:  # a newer snapshot: start it over
            pr.snap_index, pr.snap_offset, pr.snap_sent_at = snap.index, 0, None
        if (
            pr.snap_sent_at is not None
            and self.now < pr.snap_sent_at + 2 * self.config.heartbeat_interval_s
        ):
            return  # one chunk in flight
        off = min(pr.snap_offset, len(snap.data))
        chunk = snap.data[off : off + self.config.snapshot_chunk_bytes]
        done = off + len(chunk) >= len(snap.data)
        self._send(
            InstallSnapshotRequest(self.id, peer, self.term, snap.index, snap.term,
                                   snap.configuration, off, chunk, done)
        )  # fmt: skip
        pr.snap_sent_at = self.now

    def _on_install_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        if self.role is not Role.LEADER or m.term != self.term:
            return
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.heard = True
        pr.last_contact = self.now
        snap = self._snapshot
        if snap is None or pr.snap_index != snap.index:
            return  # an answer about a snapshot we no longer send
        pr.snap_sent_at = None
        if m.success and m.next_offset >= len(snap.data):
            # installed (or not needed): carry on with entries; matchIndex moves only
            # when an append is acknowledged (rule S2)
            pr.snap_index, pr.snap_offset = 0, 0
            pr.next_index = snap.index + 1
            pr.inflight = 0
            self._send_append(m.src, heartbeat=False)
            return
        if not m.success:
            self.stats["snapshot_chunks_refused"] += 1
        pr.snap_offset = m.next_offset
        self._send_snapshot_chunk(m.src, pr)

    def _on_install_snapshot(self, m: InstallSnapshotRequest) -> None:
        # m.term >= self.term here (older terms were answered in _on_message)
        if self.role is not Role.FOLLOWER or self.leader != m.src:
            self._become_follower(m.term, m.src)
        self._leader_contact = self.now
        self._reset_election_timer()

        def answer(success: bool, next_offset: int) -> None:
            self._send(InstallSnapshotResponse(self.id, m.src, self.term, success, next_offset))

        if m.last_index <= self.commit_index:
            self._snap_buffer = None
            answer(True, m.offset + len(m.data) if m.done else self.config.snapshot_bytes_max + 1)
            return
        key = (m.src, m.term, m.last_index, m.last_term)
        buf = self._snap_buffer
        if m.offset == 0 and (buf is None or buf.key != key or len(buf.data) > 0):
            buf = self._snap_buffer = _SnapshotBuffer(key, bytearray())
        if buf is None or buf.key != key or m.offset != len(buf.data):
            self.stats["snapshot_chunks_refused"] += 1
            answer(False, len(buf.data) if buf is not None and buf.key == key else 0)
            return
        if len(buf.data) + len(m.data) > self.config.snapshot_bytes_max:
            self.stats["snapshot_chunks_refused"] += 1
            self._snap_buffer = None
            answer(False, 0)
            return
        buf.data += m.data
        if not m.done:
            answer(True, len(buf.data))
            return
        self._snap_buffer = None
        data = bytes(buf.data)
        try:
            self.sm.restore(data)
        except Exception:  # the leader sent what its state machine cannot read
            self.stats["snapshot_restore_failed"] += 1
            answer(False, 0)
            return
        self._install(Snapshot(m.last_index, m.last_term, m.configuration, data))
        answer(True, len(data))

    def _install(self, snap: Snapshot) -> None:
        """Rule S2: the state machine holds ``snap`` already; make the log agree."""
        assert snap.index > self.commit_index
        self._snapshot = snap
        self.stats["snapshots_installed"] += 1
        self._outbox.append(PersistSnapshot(snap.index, snap.term, snap.configuration, snap.data))
        later: list[tuple[int, Configuration]] = []
        if self._held(snap.index) and self.term_at(snap.index) == snap.term:
            self._compact(snap.index)  # §7: keep the entries that follow it
            later = [c for c in self._configs if c[0] > snap.index]
        else:
            through = max(self.last_index, snap.index)
            self._log = []
            self._base, self._base_term = snap.index, snap.term
            self._outbox.append(CompactLog(through))
        self.commit_index = self.last_applied = snap.index
        self._configs = [self._configs[0], (snap.index, snap.configuration), *later]
        self._announce_configuration()

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
            sticky = recent_leader or (self.role is Role.LEADER and self.config.check_quorum)
            if sticky and not m.transfer:
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
        if not self.configuration.is_voter(m.src):
            return  # rule C2: only voters' ballots count
        if m.pre_vote:
            if self.role is not Role.PRE_CANDIDATE or (m.granted and m.term != self.term + 1):
                return
            tally = self._election.granted if m.granted else self._election.refused
            tally[m.src] = None
            if self._ballots(self._election.granted) >= self._quorum():
                self._start_election()
            elif self._ballots(self._election.refused) >= self._quorum():
                self._become_follower(self.term, None)
            return
        if self.role is not Role.CANDIDATE or m.term != self.term:
            return
        tally = self._election.granted if m.granted else self._election.refused
        tally[m.src] = None
        if self._ballots(self._election.granted) >= self._quorum():
            self._become_leader()
        elif self._ballots(self._election.refused) >= self._quorum():
            self._become_follower(self.term, None)

    # ================================================================== dispatch

    def _send(self, m: Message) -> None:
        self._outbox.append(SendMessage(m))

    def _on_message(self, m: Message) -> None:
        if m.dst != self.id or m.src == self.id:
            return  # not for us: dropped (counted by the driver)
        if isinstance(m, VoteRequest):
            if m.term < self.term or not self._member(self.id) or not self._member(m.src):
                # rule C3: a server outside its configurations (unbootstrapped, removed)
                # takes no part in elections, and a candidate outside ours (a removed
                # server) must not disrupt us with its term
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
                self._send(AppendResponse(self.id, m.src, self.term, False, 0, m.seq))
            elif isinstance(m, InstallSnapshotRequest):
                self._send(InstallSnapshotResponse(self.id, m.src, self.term, False, 0))
            return
        if m.term > self.term:
            if (
                isinstance(m, AppendResponse | InstallSnapshotResponse)
                and self.configuration.get(m.src) is None
            ):
                # rule C3 again: a removed server's term (raised in elections it could not
                # win while cut off) does not depose us; we stop replicating to it
                self._departing.pop(m.src, None)
                self._progress.pop(m.src, None)
                return
            from_leader = isinstance(m, AppendRequest | InstallSnapshotRequest)
            self._become_follower(m.term, m.src if from_leader else None)
        if isinstance(m, AppendRequest):
            self._on_append(m)
        elif isinstance(m, InstallSnapshotRequest):
            self._on_install_snapshot(m)
        elif isinstance(m, InstallSnapshotResponse):
            self._on_install_snapshot_response(m)
        elif isinstance(m, AppendResponse):
            self._on_append_response(m)
        elif isinstance(m, TimeoutNow) and self.role is Role.FOLLOWER and self._may_campaign():
            # rule T: our leader hands over; campaign now, skipping pre-vote
            self._start_election(transfer=True)
