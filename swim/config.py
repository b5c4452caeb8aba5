"""Timing and behaviour of the SWIM core, with memberlist's presets (ML/config.go).

Each field says its unit and where it is used; the presets copy memberlist's
``DefaultLANConfig``/``DefaultWANConfig``/``DefaultLocalConfig`` so a gossamer agent and a
serf agent on the same preset detect failures on the same schedule.

The three parts of Lifeguard (Dadgar et al., "Lifeguard: Local Health Awareness for More
Accurate Failure Detection", 2018) can each be turned off, so the simulator can measure
what they buy: ``lifeguard_awareness`` (local health multiplier on the probe interval,
fed by nacks), ``lifeguard_suspicion`` (suspicion timeouts that start long and shrink with
independent confirmations, instead of a fixed timeout) and ``lifeguard_buddy`` (a ping to
a suspect carries the suspicion so the suspect can refute at once).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = [
    "SwimConfig",
    "push_pull_scale",
    "retransmit_limit",
    "suspicion_timeout",
]

PROTOCOL_MIN = 1
PROTOCOL_MAX = 5


@dataclass(frozen=True, slots=True)
class SwimConfig:
    probe_interval_s: float = 1.0
    """Time between probes of successive members (scaled by the health score)."""
    probe_timeout_s: float = 0.5
    """How long to wait for a direct ack before asking others; should exceed the 99th
    percentile RTT. Not scaled by health."""
    indirect_checks: int = 3
    """k members asked to probe on our behalf when a direct probe fails."""
    retransmit_mult: int = 4
    """Broadcast retransmits = retransmit_mult × ceil(log10(n + 1))."""
    suspicion_mult: int = 4
    """Minimum suspicion timeout = suspicion_mult × max(1, log10(n)) × probe_interval_s."""
    suspicion_max_timeout_mult: int = 6
    """Maximum suspicion timeout = this × the minimum (Lifeguard's starting timeout)."""
    push_pull_interval_s: float = 30.0
    """Full state sync with one random member, scaled up above 32 members (0 = off)."""
    gossip_interval_s: float = 0.2
    """Time between gossip rounds."""
    gossip_nodes: int = 3
    """Members each gossip round sends queued broadcasts to (the fanout)."""
    gossip_to_the_dead_s: float = 30.0
    """Dead members keep receiving gossip this long, so they can learn and refute."""
    awareness_max_multiplier: int = 8
    """The health score lives in [0, this - 1]; the probe interval is × (score + 1)."""
    tcp_timeout_s: float = 10.0
    """Deadline for a TCP push/pull or fallback ping."""
    udp_buffer_bytes: int = 1400
    """Piggybacked broadcasts fill a packet up to this size."""
    disable_tcp_pings: bool = False
    enable_compression: bool = True
    dead_node_reclaim_s: float = 0.0
    """A dead member's name may be taken by a new address after this long (0 = never)."""
    protocol_version: int = 2
    """memberlist protocol spoken; Serf always uses 2, encryption version follows it."""
    gossip_verify_incoming: bool = True
    gossip_verify_outgoing: bool = True
    lifeguard_awareness: bool = True
    lifeguard_suspicion: bool = True
    lifeguard_buddy: bool = True
    stagger: bool = True
    """Start the probe/gossip/push-pull tickers after a random fraction of their interval,
    as memberlist does, so members do not fire in lockstep."""

    @classmethod
    def lan(cls) -> SwimConfig:
        return cls()

    @classmethod
    def wan(cls) -> SwimConfig:
        return cls(
            tcp_timeout_s=30.0,
            suspicion_mult=6,
            push_pull_interval_s=60.0,
            probe_timeout_s=3.0,
            probe_interval_s=5.0,
            gossip_nodes=4,
            gossip_interval_s=0.5,
            gossip_to_the_dead_s=60.0,
        )

    @classmethod
    def local(cls) -> SwimConfig:
        return cls(
            tcp_timeout_s=1.0,
            indirect_checks=1,
            retransmit_mult=2,
            suspicion_mult=3,
            push_pull_interval_s=15.0,
            probe_timeout_s=0.2,
            probe_interval_s=1.0,
            gossip_interval_s=0.1,
            gossip_to_the_dead_s=15.0,
        )

    @classmethod
    def preset(cls, name: str) -> SwimConfig:
        presets = {"lan": cls.lan, "wan": cls.wan, "local": cls.local}
        if name not in presets:
            raise ValueError(f"unknown gossip preset {name!r} (lan, wan or local)")
        return presets[name]()

    def replace(self, **changes: object) -> SwimConfig:
        new = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        new.validate()
        return new

    def validate(self) -> None:
        positive = (
            "probe_interval_s",
            "probe_timeout_s",
            "gossip_interval_s",
            "tcp_timeout_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.probe_timeout_s > self.probe_interval_s:
            raise ValueError("probe_timeout_s must not exceed probe_interval_s")
        for name in ("indirect_checks", "gossip_nodes", "retransmit_mult"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ValueError("suspicion multipliers must be at least 1")
        if self.awareness_max_multiplier < 1:
            raise ValueError("awareness_max_multiplier must be at least 1")
        if self.push_pull_interval_s < 0 or self.gossip_to_the_dead_s < 0:
            raise ValueError("intervals must not be negative")
        if self.udp_buffer_bytes < 100:
            raise ValueError("udp_buffer_bytes is too small to carry a message")
        if not PROTOCOL_MIN <= self.protocol_version <= PROTOCOL_MAX:
            raise ValueError("protocol_version must be in 1..5")


def suspicion_timeout(suspicion_mult: int, n: int, interval_s: float) -> float:
    """ML/util.go suspicionTimeout: mult × max(1, log10(max(1, n))) × interval, with the node
    scale truncated to thousandths as Go does."""
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * math.floor(node_scale * 1000) * interval_s / 1000


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """ML/util.go retransmitLimit: mult × ceil(log10(n + 1))."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def push_pull_scale(interval_s: float, n: int) -> float:
    """ML/util.go pushPullScale: the interval, times ceil(log2 n - log2 32) + 1 above 32 nodes."""
    if n <= 32:
        return interval_s
    return (math.ceil(math.log2(n) - math.log2(32)) + 1) * interval_s
