"""Autopilot as a sans-IO core: server health, promotion of stable non-voters and
dead-server cleanup for one datacenter's Raft servers, with the semantics of
hashicorp/raft-autopilot (``types.go``, ``state.go``, ``stable_promoter.go``,
``reconcile.go``) as Consul runs it (``agent/consul/autopilot.go``,
``agent/consul/operator_autopilot_endpoint.go``).

The leader's driver calls :meth:`Autopilot.update` periodically (raft-autopilot updates
its state every 2 s and reconciles every 10 s; :data:`UPDATE_INTERVAL_S`) with what it
knows about every server in the Raft configuration (:class:`ServerState`), and carries out
the actions it gets back, in order. :meth:`Autopilot.health` is Consul's
``OperatorHealthReply`` for ``/v1/operator/autopilot/health``. No clock, no I/O: ``now``
comes in (monotonic seconds), wall-clock times go out only through the offset given to
:meth:`~Autopilot.health`.

Rules (raft-autopilot, file and function in brackets):

1. Health [types.go ``isHealthy``]: a server is healthy when the leader's term and index
   are known (both non-zero), its gossip status is alive (Consul counts ``leaving`` as
   alive, ``autopilotServerFromMetadata``), its last contact is known and within
   ``last_contact_threshold_s`` (and not negative), its last term equals the leader's and
   ``last_index + max_trailing_logs >= leader_last_index``.
2. StableSince [state.go ``buildServerState``]: set when a server is first seen and each
   time its health flips; otherwise kept.
3. Overall health and failure tolerance [state.go ``nextStateWithInputs``]: healthy when
   every server is; ``FailureTolerance = max(0, healthy voters - (voters // 2 + 1))``,
   the leader counting as a voter.
4. Promotion [stable_promoter.go, reconcile.go ``applyPromotions``]: a healthy non-voter
   whose health has been stable for ``server_stabilization_time_s`` is promoted. Until
   Autopilot itself has run for longer than that time the required stability is zero
   (state.go ``ServerStabilizationTime``: a fresh leader would otherwise wait a full
   period before promoting anyone). Nothing happens without a leader. At most one
   promotion per update (the driver changes the configuration one server at a time).
5. Dead-server cleanup [reconcile.go ``pruneDeadServers``, ``adjudicateRemoval``], when
   ``cleanup_dead_servers`` is on. Candidates, in this order, each group sorted by ID:
   stale non-voters, stale voters (in the Raft configuration but unknown to gossip),
   failed non-voters, failed voters (known to gossip and not alive). Within each group,
   with ``P`` the potential voters left (servers gossip knows) and ``max = (P - 1) // 2``
   computed at the start of the group: a potential voter is skipped if removing it leaves
   fewer than ``min_quorum`` potential voters; a current voter is skipped once ``max``
   removals of potential voters have been made; anything else is removed. Removed
   servers leave the count before the next group. A cleanup never leaves fewer than
   ``min_quorum`` potential voters. gossamer adds one cap: over the whole cleanup at most
   ``(voters - 1) // 2`` current voters go, so a quorum of the current voters always
   remains (raft-autopilot's budgets count potential voters, so stale voters, which are
   not counted, or non-voters, which are, can let it remove half or more).
6. Grace (gossamer): a ``left`` server is removable at once (it said goodbye); a
   ``failed`` one only after ``dead_server_grace_s`` since ``failed_since`` (Consul
   instead relies on serf's reconnect timeout and cleans up on the next tick); a stale one
   only after the same grace since this Autopilot first saw it absent, because a newly
   elected leader's gossip view may still be filling in. The leader is never removed.

Invariants: outputs depend only on the inputs and their order of arrival (servers are
handled sorted by ID; no set iteration); ``update`` never sees time go backwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from gossamer.duration import format_duration, go_quote, parse_duration_ns

__all__ = [
    "SERF_STATUSES",
    "UPDATE_INTERVAL_S",
    "Action",
    "Autopilot",
    "AutopilotConfig",
    "PromoteServer",
    "RemoveServer",
    "ServerState",
]

UPDATE_INTERVAL_S: Final = 2.0
"""How often the driver should call :meth:`Autopilot.update` (raft-autopilot's
``DefaultUpdateInterval``; it reconciles every 10 s, which a 2 s update subsumes)."""

SERF_STATUSES: Final = ("alive", "leaving", "failed", "left", "none")
"""``none``: the server is in the Raft configuration but gossip does not know it."""

_NS_PER_S: Final = 1_000_000_000
_UINT64_MAX: Final = (1 << 64) - 1
_INT64_MIN: Final = -(1 << 63)
_GO_STRUCT: Final = "AutopilotConfiguration"


# --------------------------------------------------------------------------- config


def _s_to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


@dataclass(frozen=True)
class AutopilotConfig:
    """Consul's ``structs.AutopilotConfig`` (defaults: ``api.NewAutopilotConfiguration``),
    durations in seconds."""

    cleanup_dead_servers: bool = True
    """Remove dead servers from the Raft configuration (rules 5 and 6)."""
    last_contact_threshold_s: float = 0.2
    """A server not heard from by the leader for longer is unhealthy (s)."""
    max_trailing_logs: int = 250
    """A server more entries than this behind the leader's last index is unhealthy."""
    min_quorum: int = 0
    """Cleanup never leaves fewer potential voters than this."""
    server_stabilization_time_s: float = 10.0
    """How long a non-voter must be healthy before promotion (s)."""
    dead_server_grace_s: float = 30.0
    """gossamer: how long a server must be failed in gossip (or absent from it) before
    cleanup removes it (s). Not in Consul's JSON; an agent flag sets it."""
    redundancy_zone_tag: str = ""
    """Consul Enterprise only: stored and echoed, no effect."""
    disable_upgrade_migration: bool = False
    """Consul Enterprise only: stored and echoed, no effect."""
    upgrade_version_tag: str = ""
    """Consul Enterprise only: stored and echoed, no effect."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """The ranges Go's types enforce (uint64, uint, time.Duration); ValueError otherwise.
        Negative durations are allowed, as Consul allows them (they make every server
        unhealthy, or promotion immediate)."""
        for name in ("max_trailing_logs", "min_quorum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
            if not 0 <= value <= _UINT64_MAX:
                raise ValueError(f"{name} out of range: {value}")
        for name in ("last_contact_threshold_s", "server_stabilization_time_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if not (math.isfinite(self.dead_server_grace_s) and self.dead_server_grace_s >= 0):
            raise ValueError("dead_server_grace_s must be a finite number >= 0")

    def to_json(self, create_index: int, modify_index: int) -> dict[str, Any]:
        """``api.AutopilotConfiguration`` as Consul's GET answers it (field order kept)."""
        return {
            "CleanupDeadServers": self.cleanup_dead_servers,
            "LastContactThreshold": format_duration(_s_to_ns(self.last_contact_threshold_s)),
            "MaxTrailingLogs": self.max_trailing_logs,
            "MinQuorum": self.min_quorum,
            "ServerStabilizationTime": format_duration(_s_to_ns(self.server_stabilization_time_s)),
            "RedundancyZoneTag": self.redundancy_zone_tag,
            "DisableUpgradeMigration": self.disable_upgrade_migration,
            "UpgradeVersionTag": self.upgrade_version_tag,
            "CreateIndex": create_index,
            "ModifyIndex": modify_index,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any], base: AutopilotConfig) -> AutopilotConfig:
        """A PUT body decoded as Consul does (``agent/operator_endpoint.go``): Go's
        encoding/json with ``DisallowUnknownFields`` into ``api.NewAutopilotConfiguration()``,
        so a field the body leaves out takes Consul's default, not its current value.
        ``dead_server_grace_s`` is not in the JSON and comes from ``base``. ``CreateIndex``
        and ``ModifyIndex`` are accepted and ignored. ValueError carries Go's text."""
        values: dict[str, Any] = {}
        saved: str | None = None
        for key, value in body.items():
            name = key if key in _JSON_FIELDS else _JSON_FIELDS_LOWER.get(key.lower())
            if name is None:
                saved = saved or f"json: unknown field {go_quote(key)}"
                continue
            kind, attr = _JSON_FIELDS[name]
            if kind == "duration":
                # ReadableDuration.UnmarshalJSON: its error ends decoding at once
                values[attr] = None if value is None else _readable_duration_ns(value)
                continue
            if value is None:
                continue  # null leaves a non-pointer Go field as it was
            ok, shown = _go_accepts(kind, value)
            if not ok:
                saved = saved or (
                    f"json: cannot unmarshal {shown} into Go struct field "
                    f"{_GO_STRUCT}.{name} of type {kind}"
                )
                continue
            if attr:
                values[attr] = value
        if saved is not None:
            raise ValueError(saved)
        out = cls(dead_server_grace_s=base.dead_server_grace_s)
        for attr, value in values.items():
            if attr.endswith("_s"):
                value = 0.0 if value is None else value / _NS_PER_S
            out = replace(out, **{attr: value})
        return out


_JSON_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "CleanupDeadServers": ("bool", "cleanup_dead_servers"),
    "LastContactThreshold": ("duration", "last_contact_threshold_s"),
    "MaxTrailingLogs": ("uint64", "max_trailing_logs"),
    "MinQuorum": ("uint", "min_quorum"),
    "ServerStabilizationTime": ("duration", "server_stabilization_time_s"),
    "RedundancyZoneTag": ("string", "redundancy_zone_tag"),
    "DisableUpgradeMigration": ("bool", "disable_upgrade_migration"),
    "UpgradeVersionTag": ("string", "upgrade_version_tag"),
    "CreateIndex": ("uint64", ""),
    "ModifyIndex": ("uint64", ""),
}
_JSON_FIELDS_LOWER: Final = {k.lower(): k for k in _JSON_FIELDS}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_accepts(kind: str, value: Any) -> tuple[bool, str]:
    """Whether encoding/json stores ``value`` in a Go field of ``kind``; if not, how its
    UnmarshalTypeError shows the value (``string``, ``number -1``)."""
    shown = _json_kind(value)
    match kind:
        case "bool":
            return isinstance(value, bool), shown
        case "string":
            return isinstance(value, str), shown
        case "uint64" | "uint":
            if shown != "number":
                return False, shown
            # Go parses the literal with ParseUint: no sign, fraction or exponent
            ok = isinstance(value, int) and 0 <= value <= _UINT64_MAX
            return ok, f"number {value}"
    raise AssertionError(f"bad field kind {kind!r}")


def _readable_duration_ns(value: Any) -> int:
    """``api.ReadableDuration.UnmarshalJSON``: a quoted Go duration, or any other literal
    read as a float number of nanoseconds (truncated, as Go's conversion does)."""
    if isinstance(value, str):
        return parse_duration_ns(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raw = orjson.dumps(value).decode()
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(raw)}: invalid syntax")
    f = float(value)
    if not -(2.0**63) <= f < 2.0**63:
        return _INT64_MIN  # what amd64 makes of an out-of-range float-to-int conversion
    return int(f)


# --------------------------------------------------------------------------- inputs, actions


@dataclass(frozen=True)
class ServerState:
    """What the driver knows about one server in the Raft configuration."""

    id: str
    name: str
    address: str
    voter: bool
    leader: bool
    serf_status: str
    """One of :data:`SERF_STATUSES`."""
    failed_since: float | None
    """When gossip first reported it failed (monotonic s), if it is failed."""
    last_contact_s: float | None
    """Seconds since the leader last heard from it (0 for the leader); None if never."""
    last_term: int
    last_index: int
    version: str = ""

    def __post_init__(self) -> None:
        if self.serf_status not in SERF_STATUSES:
            raise ValueError(f"unknown serf status {self.serf_status!r}")
        if self.last_term < 0 or self.last_index < 0:
            raise ValueError("last_term and last_index must be >= 0")


@dataclass(frozen=True)
class PromoteServer:
    """Make this non-voter a voter (raft ``AddVoter``)."""

    id: str


@dataclass(frozen=True)
class RemoveServer:
    """Remove this server from the Raft configuration (raft ``RemoveServer``)."""

    id: str
    reason: str
    """``left``, ``failed`` or ``stale`` (in Raft, unknown to gossip)."""


Action = PromoteServer | RemoveServer


# --------------------------------------------------------------------------- the core


@dataclass
class _Tracked:
    """What Autopilot remembers about one server between updates."""

    input: ServerState
    healthy: bool
    stable_since: float
    failed_seen: float | None = None
    """When this Autopilot first saw it failed (a fallback for a missing failed_since)."""
    absent_since: float | None = None
    """When this Autopilot first saw it unknown to gossip."""


@dataclass
class _Registry:
    """raft-autopilot's voterRegistry: for each server still in the configuration, whether
    it votes now and whether it could (gossip knows it)."""

    current: dict[str, bool] = field(default_factory=dict)
    potential: dict[str, bool] = field(default_factory=dict)

    def potential_voters(self) -> int:
        return sum(1 for v in self.potential.values() if v)

    def remove(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.current.pop(i, None)
            self.potential.pop(i, None)


class Autopilot:
    """The leader's autopilot. Feed it :meth:`update`; read :meth:`health`."""

    def __init__(self, config: AutopilotConfig) -> None:
        self._config = config
        self._servers: dict[str, _Tracked] = {}
        self._first_update: float | None = None
        self._last_now: float | None = None
        self._leader_term = 0
        self._leader_last_index = 0

    @property
    def config(self) -> AutopilotConfig:
        return self._config

    def reconfigure(self, config: AutopilotConfig) -> None:
        """A new configuration (an operator's PUT); it applies from the next update."""
        self._config = config

    # ------------------------------------------------------------------ update

    def update(
        self,
        now: float,
        servers: Sequence[ServerState],
        leader_last_index: int,
        leader_term: int,
    ) -> list[Action]:
        """Take the current view of every server in the Raft configuration; return what to
        change, to be applied in order (all of it is safe to apply; the next update sees
        the result)."""
        if self._last_now is not None and now < self._last_now:
            raise ValueError(f"time went backwards: {now} < {self._last_now}")
        ids = [s.id for s in servers]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate server IDs")
        if sum(1 for s in servers if s.leader) > 1:
            raise ValueError("more than one leader")
        if leader_last_index < 0 or leader_term < 0:
            raise ValueError("leader_last_index and leader_term must be >= 0")
        self._last_now = now
        if self._first_update is None:
            self._first_update = now
        self._leader_term = leader_term
        self._leader_last_index = leader_last_index

        ordered = sorted(servers, key=lambda s: s.id)
        tracked: dict[str, _Tracked] = {}
        for s in ordered:
            healthy = self._is_healthy(s)
            prev = self._servers.get(s.id)
            if prev is None or prev.healthy != healthy:
                t = _Tracked(s, healthy, now)
            else:
                t = _Tracked(s, healthy, prev.stable_since)
            if s.serf_status == "failed":
                t.failed_seen = prev.failed_seen if prev and prev.failed_seen is not None else now
            if s.serf_status == "none":
                absent = prev.absent_since if prev else None
                t.absent_since = absent if absent is not None else now
            tracked[s.id] = t
        self._servers = tracked

        leader = next((s for s in ordered if s.leader), None)
        if leader is None:
            return []  # reconcile.go: no changes without a valid leader
        actions: list[Action] = []
        promotion = self._promotion(now)
        if promotion is not None:
            actions.append(promotion)
        if self._config.cleanup_dead_servers:
            actions.extend(self._prune(now, leader.id))
        return actions

    def _is_healthy(self, s: ServerState) -> bool:
        """Rule 1 (types.go ``isHealthy``)."""
        c = self._config
        if self._leader_last_index == 0 or self._leader_term == 0:
            return False  # Raft not bootstrapped, or no leader known
        if s.serf_status not in ("alive", "leaving"):
            return False
        if s.last_contact_s is None or s.last_contact_s < 0:
            return False
        if s.last_contact_s > c.last_contact_threshold_s:
            return False
        if s.last_term != self._leader_term:
            return False
        return s.last_index + c.max_trailing_logs >= self._leader_last_index

    def _promotion(self, now: float) -> PromoteServer | None:
        """Rule 4 (stable_promoter.go ``CalculatePromotionsAndDemotions``)."""
        assert self._first_update is not None
        needed = self._config.server_stabilization_time_s
        if now - self._first_update <= needed:
            needed = 0.0
        for sid, t in self._servers.items():
            candidate = not t.input.voter and not t.input.leader and t.healthy
            if candidate and now - t.stable_since >= needed:
                return PromoteServer(sid)
        return None

    def _prune(self, now: float, leader_id: str) -> list[RemoveServer]:
        """Rules 5 and 6 (reconcile.go ``pruneDeadServers``)."""
        registry = _Registry()
        stale_nv: list[str] = []
        stale_v: list[str] = []
        failed_nv: list[tuple[str, str]] = []
        failed_v: list[tuple[str, str]] = []
        grace = self._config.dead_server_grace_s
        for sid, t in self._servers.items():
            s = t.input
            votes = s.voter or s.leader
            registry.current[sid] = votes
            registry.potential[sid] = s.serf_status != "none"
            if sid == leader_id:
                continue
            match s.serf_status:
                case "none":
                    assert t.absent_since is not None
                    if now - t.absent_since >= grace:
                        (stale_v if votes else stale_nv).append(sid)
                case "left":
                    (failed_v if votes else failed_nv).append((sid, "left"))
                case "failed":
                    assert t.failed_seen is not None
                    since = s.failed_since if s.failed_since is not None else t.failed_seen
                    if now - min(since, now) >= grace:
                        (failed_v if votes else failed_nv).append((sid, "failed"))
                case "alive" | "leaving":
                    pass
                case _:
                    raise AssertionError(s.serf_status)
        # gossamer's cap over raft-autopilot: the groups' budgets count potential voters,
        # which leaves room to remove half or more of the current voters when some are
        # stale (not counted) or when non-voters pad the count; never do that.
        voter_budget = (sum(1 for v in registry.current.values() if v) - 1) // 2
        out: list[RemoveServer] = []
        for group in (
            [(sid, "stale") for sid in stale_nv],
            [(sid, "stale") for sid in stale_v],
            failed_nv,
            failed_v,
        ):
            reasons = dict(group)
            removed = []
            for sid in self._adjudicate(
                [sid for sid, _ in group if sid in registry.current], registry
            ):
                if registry.current[sid]:
                    if voter_budget < 1:
                        continue
                    voter_budget -= 1
                removed.append(sid)
            out.extend(RemoveServer(sid, reasons[sid]) for sid in removed)
            registry.remove(removed)
        assert all(r.id != leader_id for r in out)
        return out

    def _adjudicate(self, ids: list[str], registry: _Registry) -> list[str]:
        """reconcile.go ``adjudicateRemoval``, line for line."""
        result: list[str] = []
        initial = registry.potential_voters()
        removed_potential = 0
        max_removal = (initial - 1) // 2
        min_quorum = self._config.min_quorum
        for sid in ids:
            potential = registry.potential[sid]
            if potential and initial - removed_potential - 1 < min_quorum:
                continue  # would leave fewer voters than min_quorum
            if registry.current[sid] and max_removal < 1:
                continue  # removing a majority of voters is not safe
            if potential:
                max_removal -= 1
                removed_potential += 1
            result.append(sid)
        return result

    # ------------------------------------------------------------------ reading

    def health(self, wall_offset_s: float = 0.0) -> dict[str, Any]:
        """Consul's ``api.OperatorHealthReply`` from the last update, servers sorted by ID.
        ``wall_offset_s`` turns this core's monotonic times into Unix time for
        ``StableSince`` (RFC 3339, rounded to the second, UTC, as Consul sends it). Before
        the first update: unhealthy, no servers."""
        if self._first_update is None:
            return {"Healthy": False, "FailureTolerance": 0, "Servers": []}
        voters = healthy_voters = 0
        servers: list[dict[str, Any]] = []
        for sid, t in self._servers.items():
            s = t.input
            votes = s.voter or s.leader
            if votes:
                voters += 1
                healthy_voters += 1 if t.healthy else 0
            servers.append(
                {
                    "ID": sid,
                    "Name": s.name,
                    "Address": s.address,
                    "SerfStatus": _CONSUL_SERF_STATUS[s.serf_status],
                    "Version": s.version,
                    "Leader": s.leader,
                    "LastContact": format_duration(_s_to_ns(s.last_contact_s or 0.0)),
                    "LastTerm": s.last_term,
                    "LastIndex": s.last_index,
                    "Healthy": t.healthy,
                    "Voter": votes,
                    "StableSince": _rfc3339_second(t.stable_since + wall_offset_s),
                }
            )
        return {
            "Healthy": all(t.healthy for t in self._servers.values()),
            "FailureTolerance": max(0, healthy_voters - (voters // 2 + 1)),
            "Servers": servers,
        }


_CONSUL_SERF_STATUS: Final = {
    "alive": "alive",
    "leaving": "alive",  # Consul treats leaving as alive (autopilotServerFromMetadata)
    "failed": "failed",
    "left": "left",
    # raft-autopilot marks a Raft server the application does not know as NodeLeft
    # (state.go buildServerState), which Consul reports as serf's "left"
    "none": "left",
}


def _rfc3339_second(unix_s: float) -> str:
    """Go's ``t.Round(time.Second).UTC()`` marshalled: ``2024-05-01T12:00:00Z``."""
    rounded = math.floor(unix_s + 0.5)  # Go rounds half up
    return datetime.fromtimestamp(rounded, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
