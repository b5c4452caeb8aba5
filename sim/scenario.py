"""Scenario files: a TOML description of a topology, its configuration, a workload, a
timeline of faults and the checks that judge the run — and its expansion, for one seed,
into a concrete :class:`Plan` the runner executes.

Sections (each documented in README.md, "Simulator"):

``[scenario]``  name, description, ``duration_s`` (the safety phase), default ``seed``.
``[swim]``      ``preset`` (lan | wan | local) and any :class:`swim.config.SwimConfig` field.
``[serf]``      any :class:`swim.serf.SerfConfig` field, plus ``encrypt`` (a shared key).
``[topology]``  ``pool`` (``lan``: one gossip pool per datacenter; ``wan``: one pool across
                them), ``datacenters = {dc1 = 5, ...}``, ``naming``, ``servers`` per DC.
``[network]``   ``same_host``, ``same_dc``, ``cross_dc`` link tables and ``[[network.pair]]``
                entries (``between = ["dc1", "dc2"]``).
``[workload]``  ``join_window_s``, ``seeds_per_pool``, ``user_events_per_s``.
``[[fault]]``   the timeline: ``at_s``, ``kind`` and the kind's keys (table ``_FAULT_KEYS``).
``[checks]``    bounds the checkers hold the run to (:mod:`sim.checks`).
``[swarm]``     bounds from which ``--swarm`` lets the seed choose configuration and faults.

Rules:

1. Unknown keys are errors, and so are values of the wrong type: a typo must never pass
   silently. Every error is one line that names the file and the key
   (``dc-dark.toml: fault #2: unknown key 'duraton_s' (did you mean 'duration_s'?)``).
2. One seed expands a scenario into one plan, whatever process does it: random target
   selectors draw from the child seed ``("faults", n)`` of fault number ``n``; swarm
   choices from ``("swarm", ...)`` children named after what they choose, so adding a
   fault or a swarm key never reshuffles the others. Nothing iterates a ``set``.
3. Target selectors name nodes, not moments: ``random:2`` picks two nodes of the topology
   whether or not they are up when the fault fires (a crash of a crashed node does
   nothing).
4. Every fault ends inside the safety phase (``at_s`` + staggering + ``duration_s`` <=
   ``duration_s`` of the scenario); what is left open (a partition with no duration and
   no heal, a loss or drift with no duration) is healed when the safety phase ends.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sim.engine import Seeds
from sim.network import Group, Latency, LinkModel, Partition
from sim.swimworld import NodeSpec
from swim.config import SwimConfig, suspicion_timeout
from swim.serf import SerfConfig

__all__ = [
    "FAULT_KINDS",
    "Checks",
    "Choice",
    "FaultAction",
    "FaultSpec",
    "LinkSpec",
    "Plan",
    "Scenario",
    "ScenarioError",
    "Swarm",
    "Target",
    "Topology",
    "Workload",
    "apply_link_changes",
    "load",
    "loads",
]

FAULT_KINDS = (
    "crash",
    "power_off",
    "restart",
    "stall",
    "slow",
    "partition",
    "heal",
    "flap",
    "drift",
    "loss",
    "latency",
)
NODE_FAULTS = ("crash", "power_off", "restart", "stall", "slow", "drift")
PARTITION_FAULTS = ("partition", "flap")
LINK_FAULTS = ("loss", "latency")
LINK_NAMES = ("same_host", "same_dc", "cross_dc")

_LINK_KEYS = (
    "latency_ms",
    "jitter_ms",
    "distribution",
    "loss",
    "duplicate",
    "reorder",
    "reorder_delay_ms",
    "bandwidth_mbps",
)
_FAULT_COMMON = ("at_s", "kind")
_FAULT_KEYS: dict[str, tuple[str, ...]] = {
    "crash": ("target", "duration_s", "stagger_s"),
    "power_off": ("target", "duration_s", "stagger_s"),
    "restart": ("target", "duration_s", "stagger_s"),
    "stall": ("target", "duration_s", "stagger_s"),
    "slow": ("target", "duration_s", "delay_s", "stagger_s"),
    "drift": ("target", "rate", "duration_s", "stagger_s"),
    "partition": ("between", "isolate", "one_way", "udp", "tcp", "duration_s", "name"),
    "flap": (
        "between",
        "isolate",
        "one_way",
        "udp",
        "tcp",
        "duration_s",
        "period_s",
        "down_fraction",
        "name",
    ),
    "heal": ("name",),
    "loss": ("link", "between", "duration_s", *_LINK_KEYS),
    "latency": ("link", "between", "duration_s", *_LINK_KEYS),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "crash": ("target",),
    "power_off": ("target",),
    "restart": ("target",),
    "stall": ("target", "duration_s"),
    "slow": ("target", "duration_s", "delay_s"),
    "drift": ("target", "rate"),
    "flap": ("duration_s", "period_s"),
    "loss": ("loss",),
    "latency": (),
    "partition": (),
    "heal": (),
}

GOSSIP_PORTS = {"lan": 8301, "wan": 8302}
DEFAULT_NAMING = {"lan": "{dc}-n{i}", "wan": "s{i}.{dc}"}
NODES_PER_DC_MAX = 10_000


class ScenarioError(ValueError):
    """The scenario file is wrong. The message is one line naming the file and the key."""


# --------------------------------------------------------------------------------------
# Reading TOML tables strictly
# --------------------------------------------------------------------------------------


class _Table:
    """A TOML table read key by key; :meth:`done` rejects whatever was not read."""

    def __init__(self, where: str, data: Mapping[str, Any]) -> None:
        self.where = where
        self.data = data
        self.used: dict[str, None] = {}

    def err(self, key: str | None, message: str) -> ScenarioError:
        at = f"{self.where}: {key}" if key else self.where
        return ScenarioError(f"{at}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used[key] = None
        return self.data.get(key)

    def text(self, key: str, default: str | None = None, choices: Sequence[str] = ()) -> str:
        v = self.raw(key)
        if v is None:
            if default is None:
                raise self.err(key, "is required")
            return default
        if not isinstance(v, str):
            raise self.err(key, f"must be a string, not {_tname(v)}")
        if choices and v not in choices:
            raise self.err(key, f"must be one of {', '.join(choices)}, not {v!r}")
        return v

    def flag(self, key: str, default: bool) -> bool:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, not {_tname(v)}")
        return v

    def integer(self, key: str, default: int | None = None, lo: int | None = None) -> int:
        v = self.raw(key)
        if v is None:
            if default is None:
                raise self.err(key, "is required")
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"must be an integer, not {_tname(v)}")
        if lo is not None and v < lo:
            raise self.err(key, f"must be at least {lo}, not {v}")
        return v

    def number(
        self,
        key: str,
        default: float | None = None,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
    ) -> float:
        v = self.raw(key)
        if v is None:
            if default is None:
                raise self.err(key, "is required")
            return default
        return _number(self, key, v, lo, hi, lo_open)

    def opt_float(
        self, key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False
    ) -> float | None:
        v = self.raw(key)
        return None if v is None else _number(self, key, v, lo, hi, lo_open)

    def table(self, key: str, where: str) -> _Table:
        v = self.raw(key)
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise self.err(key, f"must be a table, not {_tname(v)}")
        return _Table(where, v)

    def tables(self, key: str) -> list[dict[str, Any]]:
        v = self.raw(key)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
            raise self.err(key, "must be an array of tables ([[...]])")
        return v

    def done(self, allowed: Sequence[str] | None = None) -> None:
        for key in self.data:
            if key in self.used:
                continue
            pool = list(allowed) if allowed is not None else list(self.used)
            hint = difflib.get_close_matches(key, pool, n=1)
            tail = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise self.err(None, f"unknown key {key!r}{tail}")


def _tname(v: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(v), type(v).__name__)


def _number(
    t: _Table, key: str, v: object, lo: float | None, hi: float | None, lo_open: bool = False
) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise t.err(key, f"must be a number, not {_tname(v)}")
    x = float(v)
    if not math.isfinite(x):
        raise t.err(key, "must be finite")
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise t.err(key, f"must be {'above' if lo_open else 'at least'} {lo:g}, not {x:g}")
    if hi is not None and x > hi:
        raise t.err(key, f"must be at most {hi:g}, not {x:g}")
    return x


# --------------------------------------------------------------------------------------
# The parts of a scenario
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSpec:
    """A link model in the file's units (milliseconds, Mbit/s)."""

    latency_ms: float = 0.5
    jitter_ms: float = 0.0
    distribution: str = "constant"
    """constant | uniform (latency ± jitter) | normal (stddev jitter) | lognormal (median
    latency, sigma = jitter / latency)."""
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay_ms: float = 5.0
    bandwidth_mbps: float = 0.0

    def model(self) -> LinkModel:
        a, j = self.latency_ms / 1000, self.jitter_ms / 1000
        match self.distribution:
            case "constant":
                lat = Latency("constant", a)
            case "uniform":
                lat = Latency("uniform", max(0.0, a - j), a + j)
            case "normal":
                lat = Latency("normal", a, j)
            case _:
                lat = Latency("lognormal", a, j / a if a else 0.0)
        return LinkModel(
            latency=lat,
            loss=self.loss,
            duplicate=self.duplicate,
            reorder=self.reorder,
            reorder_delay_s=self.reorder_delay_ms / 1000,
            bandwidth_bps=self.bandwidth_mbps * 125_000,
        )

    def describe(self) -> str:
        s = f"{self.latency_ms:g} ms"
        if self.jitter_ms:
            s += f" ±{self.jitter_ms:g} ({self.distribution})"
        for name in ("loss", "duplicate", "reorder"):
            v = getattr(self, name)
            if v:
                s += f", {name} {v:.1%}"
        if self.bandwidth_mbps:
            s += f", {self.bandwidth_mbps:g} Mbit/s"
        return s


_DEFAULT_LINKS = {
    "same_host": LinkSpec(latency_ms=0.05),
    "same_dc": LinkSpec(latency_ms=0.5, jitter_ms=0.1, distribution="normal"),
    "cross_dc": LinkSpec(latency_ms=40.0, jitter_ms=4.0, distribution="normal"),
}


def _parse_link(t: _Table, base: LinkSpec, keys: Sequence[str] = _LINK_KEYS) -> LinkSpec:
    changes: dict[str, Any] = {}
    for key in keys:
        if not t.has(key):
            continue
        if key == "distribution":
            changes[key] = t.text(key, choices=("constant", "uniform", "normal", "lognormal"))
        elif key in ("loss", "duplicate", "reorder"):
            changes[key] = t.number(key, lo=0.0, hi=1.0)
        else:
            changes[key] = t.number(key, lo=0.0)
    if "jitter_ms" in changes and "distribution" not in changes and base.distribution == "constant":
        changes["distribution"] = "normal"
    spec = dataclasses.replace(base, **changes)
    if spec.distribution == "lognormal" and spec.latency_ms <= 0:
        raise t.err("latency_ms", "must be positive for a lognormal distribution")
    return spec


@dataclass(frozen=True)
class Topology:
    pool: Literal["lan", "wan"] = "lan"
    datacenters: tuple[tuple[str, int], ...] = (("dc1", 5),)
    naming: str = ""
    """Node names: ``{dc}``, ``{i}`` (1-based within the DC), ``{k}`` (1-based overall)."""
    servers: int | None = None
    """Per DC: the first N nodes are servers (``role=consul``); default: all in a WAN pool,
    none in LAN pools."""

    def nodes(self) -> list[tuple[NodeSpec, str]]:
        """(spec, role) for every node, DC by DC, in file order."""
        out: list[tuple[NodeSpec, str]] = []
        naming = self.naming or DEFAULT_NAMING[self.pool]
        port = GOSSIP_PORTS[self.pool]
        k = 0
        for d, (dc, count) in enumerate(self.datacenters):
            servers = (
                self.servers if self.servers is not None else (count if self.pool == "wan" else 0)
            )
            for i in range(1, count + 1):
                k += 1
                name = naming.format(dc=dc, i=i, k=k)
                addr = (f"10.{d + 1}.{(i - 1) // 250}.{(i - 1) % 250 + 1}", port)
                pool = dc if self.pool == "lan" else "wan"
                out.append((NodeSpec(name, dc, pool, addr), "server" if i <= servers else "client"))
        return out


@dataclass(frozen=True)
class Workload:
    join_window_s: float = 2.0
    seeds_per_pool: int = 1
    user_events_per_s: float = 0.0
    """User events fired by random live members (Poisson); their delivery is a figure."""
    user_event_bytes: int = 32


@dataclass(frozen=True)
class Checks:
    """What the checkers hold a run to (:mod:`sim.checks` defines each)."""

    converged_within_s: float = 60.0
    max_false_failures: int = 0
    max_echoed_failures: int | None = None
    """False failures echoed across a partition (see :mod:`sim.checks`); None = no limit."""
    incarnations_monotonic: bool = True
    max_failed: int | None = None
    """Distinct members anyone reported failed; None = the members the faults touched."""
    detection_within_s: float | None = None
    joined_before_faults: bool = True
    suspicion_window_s: float | None = None
    """The false-failure window; None = probe interval + minimum suspicion timeout."""
    check_interval_s: float = 0.5


@dataclass(frozen=True)
class Target:
    """A node selector: ``all``, ``node:N``, ``nodes:A,B``, ``dc:D[,E]``, ``role:server``,
    ``role:client``, ``random:N[@SEL]``, ``random_pct:P[@SEL]``."""

    kind: str
    names: tuple[str, ...] = ()
    n: float = 0.0
    scope: Target | None = None
    text: str = ""

    @staticmethod
    def parse(where: _Table, key: str, v: object) -> Target:
        if isinstance(v, list):
            if not v or not all(isinstance(x, str) and x for x in v):
                raise where.err(key, "a list of targets must be non-empty node names")
            return Target("nodes", tuple(v), text="nodes:" + ",".join(v))
        if not isinstance(v, str):
            raise where.err(key, f"must be a selector string or a list of names, not {_tname(v)}")
        return Target._parse_text(where, key, v)

    @staticmethod
    def _parse_text(where: _Table, key: str, text: str) -> Target:
        if text == "all":
            return Target("all", text=text)
        kind, sep, rest = text.partition(":")
        if not sep or not rest:
            raise where.err(
                key,
                f"bad selector {text!r} (all, node:NAME, nodes:A,B, dc:NAME, role:server, "
                "random:N[@SELECTOR], random_pct:P[@SELECTOR])",
            )
        if kind in ("node", "nodes", "dc"):
            names = tuple(x.strip() for x in rest.split(","))
            if not all(names) or (kind == "node" and len(names) != 1):
                raise where.err(key, f"bad selector {text!r}")
            return Target("nodes" if kind == "node" else kind, names, text=text)
        if kind == "role":
            if rest not in ("server", "client"):
                raise where.err(key, f"role must be server or client, not {rest!r}")
            return Target("role", (rest,), text=text)
        if kind in ("random", "random_pct"):
            count, _, scope_text = rest.partition("@")
            try:
                n = float(count) if kind == "random_pct" else int(count)
            except ValueError:
                raise where.err(key, f"bad count in selector {text!r}") from None
            if n <= 0 or (kind == "random_pct" and n > 100):
                raise where.err(key, f"count out of range in selector {text!r}")
            scope = Target._parse_text(where, key, scope_text) if scope_text else None
            return Target(kind, n=n, scope=scope, text=text)
        raise where.err(key, f"unknown selector kind {kind!r} in {text!r}")

    def resolve(
        self, topo: Sequence[tuple[NodeSpec, str]], rng: random.Random, where: str
    ) -> list[str]:
        """The selected node names: topology order, or draw order for random picks."""
        if self.kind == "all":
            return [s.name for s, _ in topo]
        if self.kind == "nodes":
            known = {s.name for s, _ in topo}
            for name in self.names:
                if name not in known:
                    hint = difflib.get_close_matches(name, sorted(known), n=1)
                    tail = f" (did you mean {hint[0]!r}?)" if hint else ""
                    raise ScenarioError(f"{where}: no node named {name!r}{tail}")
            return list(self.names)
        if self.kind == "dc":
            dcs = {s.dc for s, _ in topo}
            for dc in self.names:
                if dc not in dcs:
                    raise ScenarioError(f"{where}: no datacenter named {dc!r}")
            return [s.name for s, _ in topo if s.dc in self.names]
        if self.kind == "role":
            return [s.name for s, role in topo if role == self.names[0]]
        pool = self.scope.resolve(topo, rng, where) if self.scope is not None else None
        if pool is None:
            pool = [s.name for s, _ in topo]
        count = int(self.n) if self.kind == "random" else max(1, round(len(pool) * self.n / 100))
        if count > len(pool):
            raise ScenarioError(f"{where}: {self.text} asks for {count} of {len(pool)} nodes")
        return rng.sample(pool, count)

    def dcs_only(self) -> bool:
        return self.kind == "dc"


@dataclass(frozen=True)
class FaultSpec:
    """One ``[[fault]]`` entry as written (targets not yet drawn)."""

    number: int
    """1-based position in the file; names the fault's child seed."""
    at_s: float
    kind: str
    target: Target | None = None
    duration_s: float | None = None
    stagger_s: float = 0.0
    between: tuple[Target, Target] | None = None
    isolate: Target | None = None
    one_way: bool = False
    udp: bool = True
    tcp: bool = True
    name: str | None = None
    period_s: float = 0.0
    down_fraction: float = 0.5
    rate: float = 0.0
    delay_s: float = 0.0
    """For a ``slow`` fault: how late the target handles each input."""
    link: str | None = None
    dc_pair: tuple[str, str] | None = None
    link_changes: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return f"fault #{self.number}"


@dataclass(frozen=True)
class FaultAction:
    """A fault with its targets drawn: what the injector schedules."""

    label: str
    kind: str
    at_s: float
    duration_s: float | None
    targets: tuple[str, ...] = ()
    stagger_s: float = 0.0
    partition: Partition | None = None
    partition_text: str = ""
    isolate: bool = False
    """The partition cuts side ``a`` off from everyone else."""
    healed_at_s: float | None = None
    """For an open-ended partition: when a later ``heal`` fault ends it."""
    name: str | None = None
    period_s: float = 0.0
    down_fraction: float = 0.5
    rate: float = 0.0
    delay_s: float = 0.0
    link: str | None = None
    dc_pair: tuple[str, str] | None = None
    link_changes: tuple[tuple[str, Any], ...] = ()

    def end_s(self) -> float | None:
        """When its last effect is undone; None if it stays until something heals it. A
        slow node reads the input that came in at the very end of its slow period
        ``delay_s`` later: that is when it has caught up."""
        if self.kind in ("heal",):
            return self.at_s
        if self.kind == "slow":
            assert self.duration_s is not None
            spread = self.stagger_s * max(0, len(self.targets) - 1)
            return self.at_s + spread + self.duration_s + self.delay_s
        if self.kind in ("crash", "power_off") and self.duration_s is None:
            return self.at_s + self.stagger_s * max(0, len(self.targets) - 1)
        if self.kind == "restart":
            d = self.duration_s or 0.0
            return self.at_s + self.stagger_s * max(0, len(self.targets) - 1) + d
        if self.duration_s is None:
            return self.healed_at_s
        return self.at_s + self.stagger_s * max(0, len(self.targets) - 1) + self.duration_s

    def describe(self) -> str:
        s = f"{self.at_s:g}s {self.kind}"
        if self.targets:
            shown = ",".join(self.targets[:6]) + (",…" if len(self.targets) > 6 else "")
            s += f" {shown}"
            if self.stagger_s:
                s += f" every {self.stagger_s:g}s"
        if self.partition_text:
            s += f" {self.partition_text}"
        if self.name:
            s += f" [{self.name}]"
        if self.kind == "drift":
            s += f" rate {self.rate:+g}"
        if self.kind == "slow":
            s += f" delay {self.delay_s:g}s"
        if self.kind == "flap":
            s += f" period {self.period_s:g}s"
        if self.link or self.dc_pair:
            s += f" {self.link or '-'.join(self.dc_pair or ())}"
            s += " " + ",".join(f"{k}={v}" for k, v in self.link_changes)
        if self.duration_s is not None and self.kind != "heal":
            s += f" for {self.duration_s:g}s"
        return s


@dataclass(frozen=True)
class Choice:
    """A swarm bound: an inclusive range (``[lo, hi]`` of numbers) or a list of options."""

    lo: float = 0.0
    hi: float = 0.0
    options: tuple[Any, ...] = ()
    integer: bool = False

    def pick(self, rng: random.Random) -> Any:
        if self.options:
            return self.options[rng.randrange(len(self.options))]
        if self.integer:
            return rng.randint(int(self.lo), int(self.hi))
        return round(rng.uniform(self.lo, self.hi), 6)

    def top(self) -> float:
        return max(self.options) if self.options else self.hi

    @staticmethod
    def parse(t: _Table, key: str, v: object) -> Choice:
        if isinstance(v, dict):
            if set(v) != {"choose"} or not isinstance(v["choose"], list) or not v["choose"]:
                raise t.err(key, "a table bound must be {choose = [...]} with a non-empty list")
            return Choice(options=tuple(v["choose"]))
        if not isinstance(v, list) or not v:
            raise t.err(key, "must be [lo, hi], a list of options, or {choose = [...]}")
        nums = all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        if nums and len(v) == 2:
            lo, hi = v
            if lo > hi:
                raise t.err(key, f"range [{lo}, {hi}] is empty")
            return Choice(float(lo), float(hi), integer=isinstance(lo, int) and isinstance(hi, int))
        return Choice(options=tuple(v))


SWARM_FAULT_KINDS = ("crash", "power_off", "restart", "stall", "partition", "flap", "drift", "loss")


@dataclass(frozen=True)
class Swarm:
    """What ``--swarm`` lets the seed choose (each key from its own child seed)."""

    nodes: Choice | None = None
    """Nodes per datacenter."""
    swim: tuple[tuple[str, Choice], ...] = ()
    serf: tuple[tuple[str, Choice], ...] = ()
    network: tuple[tuple[str, str, Choice], ...] = ()
    """(link name, link key, bound)."""
    kinds: tuple[str, ...] = ()
    count: Choice = Choice(1, 3, integer=True)
    start_s: Choice = Choice(20, 60)
    duration_s: Choice = Choice(2, 20)
    targets: Choice = Choice(1, 2, integer=True)
    loss: Choice = Choice(0.05, 0.3)
    drift: Choice = Choice(0.001, 0.05)


@dataclass(frozen=True)
class Plan:
    """One seed's concrete run: configuration, nodes, links and faults, all decided."""

    scenario: Scenario
    seed: int
    swarm: bool
    swim: SwimConfig
    serf: SerfConfig
    encrypt: bool
    nodes: tuple[tuple[NodeSpec, str], ...]
    links: dict[str, LinkSpec]
    pairs: dict[tuple[str, str], LinkSpec]
    faults: tuple[FaultAction, ...]
    workload: Workload
    checks: Checks
    choices: dict[str, Any] = field(default_factory=dict)
    """What the swarm chose, for the report."""

    @property
    def duration_s(self) -> float:
        return self.scenario.duration_s

    def last_heal_s(self) -> float:
        """When the last fault ended (open-ended ones end with the safety phase)."""
        ends = [a.end_s() for a in self.faults]
        if not ends:
            return 0.0
        return max(self.duration_s if e is None else e for e in ends)

    def first_fault_s(self) -> float | None:
        return min((a.at_s for a in self.faults), default=None)

    def run_end_s(self) -> float:
        return max(self.duration_s, self.last_heal_s() + self.checks.converged_within_s)

    def pool_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s, _ in self.nodes:
            out[s.pool] = out.get(s.pool, 0) + 1
        return out

    def suspicion_window_s(self, pool_size: int) -> float:
        """Probe interval + the minimum suspicion timeout: the shortest path from a last
        answered probe to a declaration of death (see :mod:`sim.checks`)."""
        if self.checks.suspicion_window_s is not None:
            return self.checks.suspicion_window_s
        c = self.swim
        return c.probe_interval_s + suspicion_timeout(
            c.suspicion_mult, pool_size, c.probe_interval_s
        )

    def echo_window_s(self, pool_size: int) -> float:
        """Probe interval + the longest suspicion timeout: how far back a verdict reached
        across a partition can still arrive (see :mod:`sim.checks`)."""
        c = self.swim
        lo = suspicion_timeout(c.suspicion_mult, pool_size, c.probe_interval_s)
        hi = c.suspicion_max_timeout_mult * lo if c.lifeguard_suspicion else lo
        return max(self.suspicion_window_s(pool_size), c.probe_interval_s + hi)

    def touched(self) -> list[str]:
        """Members the faults touch, sorted: targets of crash, power_off, restart, stall and
        slow faults; the isolated side of an ``isolate`` partition; both sides of a
        ``between`` partition. (Drift and link faults touch nobody: SWIM is meant to ride
        them out.)"""
        out: dict[str, None] = {}
        for a in self.faults:
            if a.kind in ("crash", "power_off", "restart", "stall", "slow"):
                out.update(dict.fromkeys(a.targets))
            elif a.partition is not None:
                p = a.partition
                for s, _ in self.nodes:
                    if p.a.contains(s.addr, s.dc) or (not a.isolate and p.b.contains(s.addr, s.dc)):
                        out[s.name] = None
        return sorted(out)


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    description: str
    duration_s: float
    seed: int
    swim_preset: str
    swim_fields: tuple[tuple[str, Any], ...]
    serf_fields: tuple[tuple[str, Any], ...]
    encrypt: bool
    topology: Topology
    links: dict[str, LinkSpec]
    pairs: dict[tuple[str, str], LinkSpec]
    workload: Workload
    faults: tuple[FaultSpec, ...]
    checks: Checks
    swarm: Swarm | None
    overrides: tuple[str, ...] = ()
    """The ``--set KEY=VALUE`` overrides applied to the file, in order."""

    # ---------------------------------------------------------------- expansion

    def expand(self, seed: int, swarm: bool = False) -> Plan:
        """The plan for one seed. Raises ScenarioError when a choice cannot be honoured."""
        if swarm and self.swarm is None:
            raise ScenarioError(f"{self.path}: --swarm needs a [swarm] table in the scenario")
        seeds = Seeds(seed)
        choices: dict[str, Any] = {}
        swim_fields = dict(self.swim_fields)
        serf_fields = dict(self.serf_fields)
        preset = self.swim_preset
        topology = self.topology
        links = dict(self.links)
        sw = self.swarm if swarm else None
        if sw is not None:
            for key, ch in sw.swim:
                v = ch.pick(seeds.rng("swarm", "swim", key))
                choices[f"swim.{key}"] = v
                if key == "preset":
                    preset = str(v)
                else:
                    swim_fields[key] = v
            for key, ch in sw.serf:
                v = ch.pick(seeds.rng("swarm", "serf", key))
                choices[f"serf.{key}"] = v
                serf_fields[key] = v
            if sw.nodes is not None:
                dcs = []
                for dc, _ in topology.datacenters:
                    n = int(sw.nodes.pick(seeds.rng("swarm", "nodes", dc)))
                    dcs.append((dc, n))
                    choices[f"nodes.{dc}"] = n
                topology = dataclasses.replace(topology, datacenters=tuple(dcs))
            for link, key, ch in sw.network:
                v = ch.pick(seeds.rng("swarm", "network", link, key))
                choices[f"network.{link}.{key}"] = v
                links[link] = dataclasses.replace(links[link], **{key: v})
        try:
            swim = SwimConfig.preset(preset).replace(**swim_fields)
        except (ValueError, TypeError) as e:
            raise ScenarioError(f"{self.path}: [swim]: {e}") from None
        try:
            serf = dataclasses.replace(SerfConfig(), swim=swim, **serf_fields)
            serf.validate()
        except (ValueError, TypeError) as e:
            raise ScenarioError(f"{self.path}: [serf]: {e}") from None
        nodes = tuple(topology.nodes())
        names = [s.name for s, _ in nodes]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ScenarioError(f"{self.path}: topology.naming: two nodes named {dup!r}")
        actions: list[FaultAction] = []
        partition_names: dict[str, float] = {}
        for f in self.faults:
            rng = seeds.rng("faults", f.number)
            actions.append(_resolve(self.path, f, nodes, rng, partition_names))
        if sw is not None:
            actions += _swarm_faults(self, sw, nodes, seeds, choices)
        actions.sort(key=lambda a: a.at_s)  # stable: file order among equal times
        actions = _attach_heals(actions)
        plan = Plan(
            scenario=self,
            seed=seed,
            swarm=swarm,
            swim=swim,
            serf=serf,
            encrypt=self.encrypt,
            nodes=nodes,
            links=links,
            pairs=dict(self.pairs),
            faults=tuple(actions),
            workload=self.workload,
            checks=self.checks,
            choices=choices,
        )
        for a in plan.faults:
            end = a.end_s()
            if end is not None and end > self.duration_s + 1e-9:
                raise ScenarioError(
                    f"{self.path}: {a.label}: ends at {end:g} s, after [scenario] duration_s = "
                    f"{self.duration_s:g} (lengthen the scenario or shorten the fault)"
                )
        return plan


def _group(
    t: Target, topo: Sequence[tuple[NodeSpec, str]], rng: random.Random, where: str
) -> Group:
    if t.dcs_only():
        t.resolve(topo, rng, where)  # validates the names
        return Group(dcs=frozenset(t.names))
    addrs = {s.name: s.addr for s, _ in topo}
    return Group(addrs=frozenset(addrs[n] for n in t.resolve(topo, rng, where)))


def _resolve(
    path: str,
    f: FaultSpec,
    topo: Sequence[tuple[NodeSpec, str]],
    rng: random.Random,
    partition_names: dict[str, float],
) -> FaultAction:
    where = f"{path}: {f.label}"
    base = FaultAction(
        label=f.label,
        kind=f.kind,
        at_s=f.at_s,
        duration_s=f.duration_s,
        stagger_s=f.stagger_s,
        name=f.name,
        period_s=f.period_s,
        down_fraction=f.down_fraction,
        rate=f.rate,
        delay_s=f.delay_s,
        link=f.link,
        dc_pair=f.dc_pair,
        link_changes=f.link_changes,
    )
    if f.kind in NODE_FAULTS:
        assert f.target is not None
        return dataclasses.replace(base, targets=tuple(f.target.resolve(topo, rng, where)))
    if f.kind in PARTITION_FAULTS:
        if f.between is not None:
            a = _group(f.between[0], topo, rng, where)
            b = _group(f.between[1], topo, rng, where)
            text = f"{f.between[0].text} {'->' if f.one_way else '|'} {f.between[1].text}"
        else:
            assert f.isolate is not None
            a = _group(f.isolate, topo, rng, where)
            b = dataclasses.replace(a, negate=True)
            text = f"isolate {f.isolate.text}"
            if f.isolate.kind.startswith("random"):
                picked = [s.name for s, _ in topo if a.contains(s.addr, s.dc)]
                text += f" ({','.join(picked)})"
        part = Partition(a=a, b=b, one_way=f.one_way, udp=f.udp, tcp=f.tcp)
        if f.name is not None:
            partition_names[f.name] = f.at_s
        return dataclasses.replace(
            base, partition=part, partition_text=text, isolate=f.isolate is not None
        )
    if f.kind == "heal":
        if f.name is not None and f.name not in partition_names:
            raise ScenarioError(
                f"{where}: heal names {f.name!r}, but no earlier partition or flap has that name"
            )
        return base
    if f.dc_pair is not None:
        dcs = {s.dc for s, _ in topo}
        for dc in f.dc_pair:
            if dc not in dcs:
                raise ScenarioError(f"{where}: between: no datacenter named {dc!r}")
    return base


def _attach_heals(actions: list[FaultAction]) -> list[FaultAction]:
    """Give each open-ended partition the time of the first later heal that ends it."""
    out = []
    for a in actions:
        if a.kind == "partition" and a.duration_s is None:
            for h in actions:
                if h.kind == "heal" and h.at_s >= a.at_s and h.name in (None, a.name):
                    a = dataclasses.replace(a, healed_at_s=h.at_s)
                    break
        out.append(a)
    return out


def apply_link_changes(spec: LinkSpec, changes: Sequence[tuple[str, Any]]) -> LinkSpec:
    """A link with a fault's changes on top (jitter on a constant link makes it normal)."""
    d = dict(changes)
    if "jitter_ms" in d and "distribution" not in d and spec.distribution == "constant":
        d["distribution"] = "normal"
    return dataclasses.replace(spec, **d)


def _swarm_faults(
    sc: Scenario,
    sw: Swarm,
    topo: Sequence[tuple[NodeSpec, str]],
    seeds: Seeds,
    choices: dict[str, Any],
) -> list[FaultAction]:
    count = int(sw.count.pick(seeds.rng("swarm", "fault-count")))
    out: list[FaultAction] = []
    names = [s.name for s, _ in topo]
    summary: list[str] = []
    for j in range(1, count + 1):
        rng = seeds.rng("swarm", "fault", j)
        kind = sw.kinds[rng.randrange(len(sw.kinds))]
        at = round(sw.start_s.pick(rng), 3)
        dur = round(sw.duration_s.pick(rng), 3)
        k = min(len(names) - 1, max(1, int(sw.targets.pick(rng))))
        targets = tuple(rng.sample(names, k))
        label = f"swarm fault #{j}"
        a = FaultAction(label=label, kind=kind, at_s=at, duration_s=dur)
        if kind in ("crash", "power_off", "restart", "stall"):
            a = dataclasses.replace(a, targets=targets)
        elif kind == "drift":
            rate = sw.drift.pick(rng) * (1 if rng.random() < 0.5 else -1)
            a = dataclasses.replace(a, targets=targets, rate=round(rate, 6))
        elif kind in ("partition", "flap"):
            addrs = {s.name: s.addr for s, _ in topo}
            g = Group(addrs=frozenset(addrs[n] for n in targets))
            part = Partition(a=g, b=dataclasses.replace(g, negate=True))
            a = dataclasses.replace(
                a,
                partition=part,
                isolate=True,
                partition_text=f"isolate {','.join(sorted(targets))}",
                period_s=max(1.0, round(dur / 4, 3)) if kind == "flap" else 0.0,
            )
        else:  # loss
            link = "same_dc" if sc.topology.pool == "lan" or rng.random() < 0.5 else "cross_dc"
            loss = round(min(1.0, sw.loss.pick(rng)), 4)
            a = dataclasses.replace(a, link=link, link_changes=(("loss", loss),))
        out.append(a)
        summary.append(a.describe())
    choices["faults"] = summary
    return out


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------

_TOP_KEYS = (
    "scenario",
    "swim",
    "serf",
    "topology",
    "network",
    "workload",
    "fault",
    "checks",
    "swarm",
)


def load(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read and validate a scenario file (and expand it once to surface every error)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror or e}") from None
    return loads(text, str(path), overrides)


def loads(text: str, path: str = "<scenario>", overrides: Sequence[str] = ()) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    for item in overrides:
        apply_override(data, item, path)
    top = _Table(path, data)

    def T(key: str) -> _Table:
        return top.table(key, where=f"{path}: [{key}]")

    sc = T("scenario")
    name = sc.text("name", default=Path(path).stem)
    description = sc.text("description", default="")
    duration_s = sc.number("duration_s", lo=0.0, lo_open=True)
    seed = sc.integer("seed", default=1, lo=0)
    if seed >= 2**64:
        raise sc.err("seed", "must be below 2**64")
    sc.done()

    sw_t = T("swim")
    preset = sw_t.text("preset", default="lan", choices=("lan", "wan", "local"))
    swim_fields = _config_fields(sw_t, SwimConfig, exclude=("preset",))

    serf_t = T("serf")
    encrypt = serf_t.flag("encrypt", False)
    serf_fields = _config_fields(serf_t, SerfConfig, exclude=("swim", "encrypt"))

    topology = _parse_topology(T("topology"))

    net = T("network")
    links = dict(_DEFAULT_LINKS)
    for link in LINK_NAMES:
        t = net.table(link, where=f"{path}: [network.{link}]")
        links[link] = _parse_link(t, links[link])
        t.done(_LINK_KEYS)
    pairs: dict[tuple[str, str], LinkSpec] = {}
    dcs = [dc for dc, _ in topology.datacenters]
    for i, raw in enumerate(net.tables("pair"), 1):
        t = _Table(f"{path}: [[network.pair]] #{i}", raw)
        pair = _dc_pair(t, "between", dcs)
        if pair in pairs or (pair[1], pair[0]) in pairs:
            raise t.err("between", f"{pair[0]}-{pair[1]} is listed twice")
        pairs[pair] = _parse_link(t, links["cross_dc"])
        t.done(("between", *_LINK_KEYS))
    net.done(("pair", *LINK_NAMES))

    wl = T("workload")
    workload = Workload(
        join_window_s=wl.number("join_window_s", default=2.0, lo=0.0),
        seeds_per_pool=wl.integer("seeds_per_pool", default=1, lo=1),
        user_events_per_s=wl.number("user_events_per_s", default=0.0, lo=0.0),
        user_event_bytes=wl.integer("user_event_bytes", default=32, lo=0),
    )
    if workload.user_event_bytes > 400:
        raise wl.err("user_event_bytes", "must be at most 400 (Serf's 512-byte event limit)")
    wl.done()

    faults = tuple(
        _parse_fault(_Table(f"{path}: fault #{i}", raw), i, duration_s, dcs)
        for i, raw in enumerate(top.tables("fault"), 1)
    )

    ck = T("checks")
    max_failed_raw = ck.raw("max_failed")
    if max_failed_raw is None or max_failed_raw == "expected":
        max_failed = None
    elif isinstance(max_failed_raw, int) and not isinstance(max_failed_raw, bool):
        max_failed = max_failed_raw
        if max_failed < 0:
            raise ck.err("max_failed", "must not be negative")
    else:
        raise ck.err("max_failed", 'must be an integer or "expected"')
    checks = Checks(
        converged_within_s=ck.number("converged_within_s", default=60.0, lo=0.0, lo_open=True),
        max_false_failures=ck.integer("max_false_failures", default=0, lo=0),
        max_echoed_failures=(
            ck.integer("max_echoed_failures", lo=0) if ck.has("max_echoed_failures") else None
        ),
        incarnations_monotonic=ck.flag("incarnations_monotonic", True),
        max_failed=max_failed,
        detection_within_s=ck.opt_float("detection_within_s", lo=0.0, lo_open=True),
        joined_before_faults=ck.flag("joined_before_faults", True),
        suspicion_window_s=ck.opt_float("suspicion_window_s", lo=0.0),
        check_interval_s=ck.number("check_interval_s", default=0.5, lo=0.01),
    )
    ck.done()

    swarm = _parse_swarm(T("swarm"), path) if top.has("swarm") else None
    if swarm is not None and swarm.kinds:
        hi = swarm.start_s.top() + swarm.duration_s.top()
        if hi > duration_s:
            raise ScenarioError(
                f"{path}: [swarm.faults]: start_s + duration_s can reach {hi:g} s, after "
                f"[scenario] duration_s = {duration_s:g}"
            )
    top.done(_TOP_KEYS)

    scenario = Scenario(
        path=path,
        name=name,
        description=description,
        duration_s=duration_s,
        seed=seed,
        swim_preset=preset,
        swim_fields=tuple(swim_fields.items()),
        serf_fields=tuple(serf_fields.items()),
        encrypt=encrypt,
        topology=topology,
        links=links,
        pairs=pairs,
        workload=workload,
        faults=faults,
        checks=checks,
        swarm=swarm,
        overrides=tuple(overrides),
    )
    scenario.expand(seed)  # resolve names and timings now: errors before any run
    if swarm is not None:
        scenario.expand(seed, swarm=True)
    return scenario


def apply_override(data: dict[str, Any], item: str, path: str = "<scenario>") -> None:
    """Apply one ``--set KEY=VALUE`` to a parsed scenario, before validation.

    KEY is a dotted path of table keys (``swim.lifeguard_awareness``); a number selects an
    element of an array of tables, from 1 (``fault.2.target``: the second ``[[fault]]``).
    Missing tables are created. VALUE is read as a TOML value (``false``, ``12``, ``0.5``,
    ``[1, 3]``, ``"text"``); anything that is not one is taken as a string
    (``random_pct:5``). The result is validated like the file itself, so a misspelt key
    fails with the same message a misspelt key in the file would.
    """
    where = f"{path}: --set {item}"
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ScenarioError(f"{where}: want KEY=VALUE, e.g. swim.lifeguard_awareness=false")
    try:
        value: Any = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        part = part.strip()
        if isinstance(node, list):
            node = _override_index(node, part, ".".join(parts[:i]), where)
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ScenarioError(f"{where}: {'.'.join(parts[:i])} is a value, not a table")
    last = parts[-1].strip()
    parent = ".".join(p.strip() for p in parts[:-1])
    if isinstance(node, list):
        _override_index(node, last, parent, where)  # raises: a field is missing after it
        raise ScenarioError(f"{where}: name a field of {parent}.{last}")
    if not isinstance(node, dict):
        raise ScenarioError(f"{where}: {parent} is a value, not a table")
    if isinstance(node.get(last), list) and all(isinstance(x, dict) for x in node[last]):
        raise ScenarioError(
            f"{where}: {'.'.join([*parts[:-1], last]).strip('.')} is an array of tables; "
            f"name an entry and a field ({last}.1.KEY=VALUE)"
        )
    node[last] = value


def _override_index(node: list[Any], part: str, name: str, where: str) -> Any:
    if not part.isdigit() or not 1 <= int(part) <= len(node):
        raise ScenarioError(
            f"{where}: {name} has {len(node)} entries; select one with a number from 1"
        )
    return node[int(part) - 1]


def _config_fields(t: _Table, cls: type, exclude: Sequence[str]) -> dict[str, Any]:
    """Every key of ``t`` must be a field of the config dataclass, with a matching type."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}
    defaults = cls()
    out: dict[str, Any] = {}
    for key, v in t.data.items():
        if key in exclude:
            continue
        if key not in fields:
            hint = difflib.get_close_matches(key, sorted(fields), n=1)
            tail = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise t.err(None, f"unknown key {key!r}{tail}")
        t.used[key] = None
        out[key] = _typed_like(t, key, v, getattr(defaults, key))
    return out


def _typed_like(t: _Table, key: str, v: object, default: object) -> object:
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise t.err(key, f"must be true or false, not {_tname(v)}")
    elif isinstance(default, int):
        if isinstance(v, bool) or not isinstance(v, int):
            raise t.err(key, f"must be an integer, not {_tname(v)}")
    elif isinstance(default, float):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise t.err(key, f"must be a number, not {_tname(v)}")
        return float(v)
    return v


def _parse_topology(t: _Table) -> Topology:
    pool = t.text("pool", default="lan", choices=("lan", "wan"))
    raw = t.raw("datacenters")
    if raw is None:
        raise t.err("datacenters", "is required, e.g. datacenters = { dc1 = 5 }")
    if not isinstance(raw, dict) or not raw:
        raise t.err("datacenters", "must be a table of datacenter = node count")
    dcs: list[tuple[str, int]] = []
    for dc, n in raw.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= NODES_PER_DC_MAX:
            raise t.err(f"datacenters.{dc}", f"must be a node count in 1..{NODES_PER_DC_MAX}")
        dcs.append((dc, n))
    if len(dcs) > 250:
        raise t.err("datacenters", "at most 250 datacenters")
    naming = t.text("naming", default="")
    if naming:
        try:
            naming.format(dc="dc", i=1, k=1)
        except (KeyError, IndexError, ValueError) as e:
            raise t.err("naming", f"bad template ({e}); use {{dc}}, {{i}} and {{k}}") from None
        if "{i}" not in naming and "{k}" not in naming:
            raise t.err("naming", "must contain {i} or {k} so that names are unique")
    servers = t.integer("servers", lo=0) if t.has("servers") else None
    t.done()
    return Topology(pool=pool, datacenters=tuple(dcs), naming=naming, servers=servers)  # type: ignore[arg-type]


def _dc_pair(t: _Table, key: str, dcs: Sequence[str]) -> tuple[str, str]:
    v = t.raw(key)
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)):
        raise t.err(key, 'must be two datacenter names, e.g. ["dc1", "dc2"]')
    a, b = v
    for dc in (a, b):
        if dc not in dcs:
            raise t.err(key, f"no datacenter named {dc!r} in [topology] datacenters")
    if a == b:
        raise t.err(key, "names the same datacenter twice")
    return (a, b)


def _parse_fault(t: _Table, number: int, duration: float, dcs: Sequence[str]) -> FaultSpec:
    at_s = t.number("at_s", lo=0.0)
    kind = t.text("kind", choices=FAULT_KINDS)
    allowed = (*_FAULT_COMMON, *_FAULT_KEYS[kind])
    for key in t.data:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            tail = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise t.err(None, f"unknown key {key!r} for a {kind} fault{tail}")
    for key in _REQUIRED[kind]:
        if not t.has(key):
            raise t.err(key, f"is required for a {kind} fault")
    if at_s >= duration:
        raise t.err("at_s", f"{at_s:g} is not inside [scenario] duration_s = {duration:g}")
    spec = FaultSpec(number=number, at_s=at_s, kind=kind)
    changes: dict[str, Any] = {}
    if t.has("target"):
        changes["target"] = Target.parse(t, "target", t.raw("target"))
    if t.has("duration_s"):
        changes["duration_s"] = t.number("duration_s", lo=0.0, lo_open=kind != "restart")
    if t.has("stagger_s"):
        changes["stagger_s"] = t.number("stagger_s", lo=0.0)
    if t.has("name"):
        changes["name"] = t.text("name")
    if kind in PARTITION_FAULTS:
        if t.has("between") == t.has("isolate"):
            raise t.err(None, f"a {kind} fault needs exactly one of between or isolate")
        if t.has("between"):
            v = t.raw("between")
            if not isinstance(v, list) or len(v) != 2:
                raise t.err("between", 'must be two selectors, e.g. ["dc:dc1", "dc:dc2"]')
            changes["between"] = (
                Target.parse(t, "between", v[0]),
                Target.parse(t, "between", v[1]),
            )
        else:
            changes["isolate"] = Target.parse(t, "isolate", t.raw("isolate"))
        changes["one_way"] = t.flag("one_way", False)
        changes["udp"] = t.flag("udp", True)
        changes["tcp"] = t.flag("tcp", True)
        if not (changes["udp"] or changes["tcp"]):
            raise t.err("udp", "a partition that blocks neither udp nor tcp blocks nothing")
    if kind == "flap":
        changes["period_s"] = t.number("period_s", lo=0.0, lo_open=True)
        changes["down_fraction"] = t.number(
            "down_fraction", default=0.5, lo=0.0, hi=1.0, lo_open=True
        )
    if kind == "drift":
        changes["rate"] = t.number("rate", lo=-0.5, hi=0.5)
    if kind == "slow":
        changes["delay_s"] = t.number("delay_s", lo=0.0, lo_open=True)
    if kind in LINK_FAULTS:
        if t.has("link") == t.has("between"):
            raise t.err(None, f"a {kind} fault needs exactly one of link or between")
        if t.has("link"):
            changes["link"] = t.text("link", choices=LINK_NAMES)
        else:
            changes["dc_pair"] = _dc_pair(t, "between", dcs)
        if kind == "latency" and not (t.has("latency_ms") or t.has("jitter_ms")):
            raise t.err("latency_ms", "is required for a latency fault (or jitter_ms)")
        parsed = _parse_link(t, LinkSpec(latency_ms=1.0, distribution="uniform"))
        changes["link_changes"] = tuple(
            (key, getattr(parsed, key)) for key in _LINK_KEYS if t.has(key)
        )
    t.done(allowed)
    return dataclasses.replace(spec, **changes)


def _parse_swarm(t: _Table, path: str) -> Swarm:
    nodes = Choice.parse(t, "nodes", t.raw("nodes")) if t.has("nodes") else None
    if nodes is not None and (nodes.options or not nodes.integer or nodes.lo < 2):
        raise t.err("nodes", "must be an integer range [lo, hi] with lo >= 2")
    swim_t = t.table("swim", where=f"{path}: [swarm.swim]")
    swim: list[tuple[str, Choice]] = []
    swim_names = {f.name for f in dataclasses.fields(SwimConfig)} | {"preset"}
    for key, v in swim_t.data.items():
        if key not in swim_names:
            hint = difflib.get_close_matches(key, sorted(swim_names), n=1)
            tail = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise swim_t.err(None, f"unknown key {key!r}{tail}")
        swim_t.used[key] = None
        swim.append((key, Choice.parse(swim_t, key, v)))
    serf_t = t.table("serf", where=f"{path}: [swarm.serf]")
    serf: list[tuple[str, Choice]] = []
    serf_names = {f.name for f in dataclasses.fields(SerfConfig)} - {"swim"}
    for key, v in serf_t.data.items():
        if key not in serf_names:
            raise serf_t.err(None, f"unknown key {key!r}")
        serf_t.used[key] = None
        serf.append((key, Choice.parse(serf_t, key, v)))
    net_t = t.table("network", where=f"{path}: [swarm.network]")
    network: list[tuple[str, str, Choice]] = []
    for link in LINK_NAMES:
        lt = net_t.table(link, where=f"{path}: [swarm.network.{link}]")
        for key, v in lt.data.items():
            if key not in _LINK_KEYS or key == "distribution":
                raise lt.err(None, f"unknown key {key!r}")
            lt.used[key] = None
            ch = Choice.parse(lt, key, v)
            if key in ("loss", "duplicate", "reorder") and (ch.top() > 1 or ch.lo < 0):
                raise lt.err(key, "probabilities must be in [0, 1]")
            network.append((link, key, ch))
    net_t.done(LINK_NAMES)
    ft = t.table("faults", where=f"{path}: [swarm.faults]")
    kinds_raw = ft.raw("kinds") or []
    if not isinstance(kinds_raw, list) or not all(k in SWARM_FAULT_KINDS for k in kinds_raw):
        raise ft.err("kinds", f"must be a list drawn from {', '.join(SWARM_FAULT_KINDS)}")

    def bound(key: str, default: Choice) -> Choice:
        return Choice.parse(ft, key, ft.raw(key)) if ft.has(key) else default

    sw = Swarm(
        nodes=nodes,
        swim=tuple(swim),
        serf=tuple(serf),
        network=tuple(network),
        kinds=tuple(kinds_raw),
        count=bound("count", Swarm.count),
        start_s=bound("start_s", Swarm.start_s),
        duration_s=bound("duration_s", Swarm.duration_s),
        targets=bound("targets", Swarm.targets),
        loss=bound("loss", Swarm.loss),
        drift=bound("drift", Swarm.drift),
    )
    ft.done(("kinds", "count", "start_s", "duration_s", "targets", "loss", "drift"))
    t.done(("nodes", "swim", "serf", "network", "faults"))
    return sw
