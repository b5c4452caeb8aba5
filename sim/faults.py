"""The fault timeline of a plan, applied to a :class:`~sim.swimworld.SwimWorld` on virtual
time — and the ledger of what was broken when, which the checkers consult.

Rules:

1. Every fault is a scheduled simulator event, never a call made between two
   ``run_until`` steps, so splitting a run into steps (for a progress bar) cannot change it.
2. Node faults go through the world (``crash``, ``power_off``, ``restart``) or the node
   (``stall``, ``slow``, ``set_drift``); a fault on a node in no state to take it (a crash
   of a crashed node, a stall of a stalled one, a slow of a slow one) does nothing and
   leaves no ledger entry.
3. Link faults never mutate a link model: the network's attribute (``net.same_dc``) or
   pair entry is replaced by a new frozen :class:`~sim.network.LinkModel` computed from
   the scenario's link and every link fault active on it, in the order they began; when
   one ends, the model is recomputed from the ones left.
4. Partitions are the network's (``net.partition`` / ``net.heal``); a ``flap`` is a train
   of partition/heal pairs. ``heal`` ends the named partition (or every fault partition).
5. :meth:`FaultInjector.end_safety_phase` runs at the end of the safety phase and heals
   what is still open (partitions, link faults, drift); crashed and powered-off nodes stay
   down unless the timeline restarts them — convergence then means everyone agrees they
   are gone.

The :class:`Ledger` keeps, per node, the intervals in which its process was down, stalled
or slow (from the start of a slow period until its last delayed input was read), and every
partition with the interval it was in force. "Healthy" and "reachable" in
:mod:`sim.checks` are questions put to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from sim.network import LinkModel, Partition
from sim.scenario import FaultAction, LinkSpec, Plan, apply_link_changes
from sim.swimworld import SwimWorld

__all__ = ["FaultInjector", "Ledger"]

INF = float("inf")


@dataclass
class Ledger:
    """What was broken, when. Intervals are ``[start, end]``; ``end`` is ``inf`` while open."""

    down: dict[str, list[list[float]]] = field(default_factory=dict)
    stalled: dict[str, list[list[float]]] = field(default_factory=dict)
    slow: dict[str, list[list[float]]] = field(default_factory=dict)
    """Slow periods, each ending when the input that came in last was finally read."""
    partitions: list[tuple[list[float], Partition, bool]] = field(default_factory=list)
    """(interval, partition, isolate?) of every partition a fault put in force."""
    outages: list[tuple[str, str, list[float]]] = field(default_factory=list)
    """(node, fault kind, the ``down`` interval it opened): what detection is measured on."""
    applied: list[tuple[float, str]] = field(default_factory=list)
    """(time, description) of every fault step, in order, for reports and traces."""

    def _open(self, table: dict[str, list[list[float]]], name: str, t: float) -> list[float]:
        span = [t, INF]
        table.setdefault(name, []).append(span)
        return span

    def went_down(self, name: str, kind: str, t: float) -> None:
        self.outages.append((name, kind, self._open(self.down, name, t)))

    def _close(self, table: dict[str, list[list[float]]], name: str, t: float) -> None:
        spans = table.get(name)
        if spans and spans[-1][1] == INF:
            spans[-1][1] = t

    def unhealthy_during(self, name: str, t0: float, t1: float) -> bool:
        """Was the process down, stalled or slow at any moment of ``[t0, t1]``?"""
        for table in (self.down, self.stalled, self.slow):
            for a, b in table.get(name, ()):
                if a <= t1 and b >= t0:
                    return True
        return False

    def down_during(self, name: str, t0: float, t1: float) -> bool:
        return any(a <= t1 and b >= t0 for a, b in self.down.get(name, ()))

    def separated_during(
        self, a: tuple[tuple[str, int], str], b: tuple[tuple[str, int], str], t0: float, t1: float
    ) -> bool:
        """Did a partition that blocks UDP between the two (either direction) stand at any
        moment of ``[t0, t1]``? Arguments are ``(addr, dc)``. A TCP-only partition does not
        count: SWIM probes over UDP."""
        for (s, e), p, _ in self.partitions:
            if s <= t1 and e >= t0 and p.udp and (p.blocks(*a, *b) or p.blocks(*b, *a)):
                return True
        return False

    def cut_off_during(
        self,
        m: tuple[tuple[str, int], str],
        pool: list[tuple[tuple[str, int], str]],
        t0: float,
        t1: float,
    ) -> bool:
        """Was ``m`` separated (UDP, either direction) from any member of ``pool`` by a
        partition in force at some moment of ``[t0, t1]``?"""
        for (s, e), p, _ in self.partitions:
            if s <= t1 and e >= t0 and p.udp:
                for x in pool:
                    if x != m and (p.blocks(*m, *x) or p.blocks(*x, *m)):
                        return True
        return False

    def touched_during(
        self, name: str, where: tuple[tuple[str, int], str], t0: float, t1: float
    ) -> bool:
        """Was the node down, stalled, or on a cut side of a partition (the isolated side,
        or either side of a ``between``) at any moment of ``[t0, t1]``?"""
        if self.unhealthy_during(name, t0, t1):
            return True
        for (s, e), p, isolate in self.partitions:
            if (
                s <= t1
                and e >= t0
                and (p.a.contains(*where) or (not isolate and p.b.contains(*where)))
            ):
                return True
        return False


class FaultInjector:
    def __init__(self, world: SwimWorld, plan: Plan, trace: TextIO | None = None) -> None:
        self.world = world
        self.plan = plan
        self.sim = world.sim
        self.net = world.net
        self.ledger = Ledger()
        self.trace = trace
        self._tokens: dict[int, tuple[Partition, list[float], str | None]] = {}
        self._flaps: dict[int, str | None] = {}
        """Live flap generations (so a heal stops the train) -> name."""
        self._flap_gen = 0
        self._link_faults: list[tuple[int, str, FaultAction]] = []
        self._next_link = 0
        self._drifting: dict[str, None] = {}
        self.base_links: dict[str, LinkSpec] = dict(plan.links)
        self.base_pairs = dict(plan.pairs)

    # ------------------------------------------------------------------ scheduling

    def schedule(self) -> None:
        for a in self.plan.faults:
            self.sim.at(a.at_s, self._begin, a)
        self.sim.at(self.plan.duration_s, self._end_safety, None)

    def _note(self, text: str) -> None:
        t = self.sim.now
        self.ledger.applied.append((t, text))
        if self.trace is not None:
            self.trace.write(f"{t:.6f} fault {text}\n")

    def _begin(self, a: FaultAction) -> None:
        k = a.kind
        if k in ("crash", "power_off", "restart", "stall", "slow", "drift"):
            for i, name in enumerate(a.targets):
                self.sim.at(a.at_s + i * a.stagger_s, self._node_fault, (a, name))
        elif k == "partition":
            assert a.partition is not None
            token = self._cut(a.partition, a.name, a.partition_text, a.isolate)
            if a.duration_s is not None:
                self.sim.at(a.at_s + a.duration_s, self._mend, token)
        elif k == "flap":
            self._flap_gen += 1
            self._flaps[self._flap_gen] = a.name
            self._flap_step((a, self._flap_gen, a.at_s))
        elif k == "heal":
            self._heal(a.name)
        elif k in ("loss", "latency"):
            self._next_link += 1
            key = a.link or _pair_key(a.dc_pair)
            self._link_faults.append((self._next_link, key, a))
            self._relink(key)
            self._note(a.describe())
            if a.duration_s is not None:
                self.sim.at(a.at_s + a.duration_s, self._unlink, self._next_link)
        else:  # pragma: no cover - the scenario parser only lets known kinds through
            raise AssertionError(f"unknown fault kind {k}")

    # ------------------------------------------------------------------ node faults

    def _node_fault(self, arg: tuple[FaultAction, str]) -> None:
        a, name = arg
        node = self.world.nodes[name]
        t = self.sim.now
        led = self.ledger
        if a.kind in ("crash", "power_off"):
            if not node.up and not (a.kind == "power_off" and node.host_up):
                return
            was_up = node.up
            if a.kind == "crash":
                self.world.crash(name)
            else:
                self.world.power_off(name)
            if was_up:
                led._close(led.stalled, name, t)
                led.went_down(name, a.kind, t)
            self._note(f"{a.kind} {name}")
            if a.duration_s is not None:
                self.sim.at(t + a.duration_s, self._start, name)
        elif a.kind == "restart":
            if node.up:
                self.world.crash(name)
                led._close(led.stalled, name, t)
                led.went_down(name, "restart", t)
            self._note(f"restart {name}" + (f" (down {a.duration_s:g}s)" if a.duration_s else ""))
            if a.duration_s:
                self.sim.at(t + a.duration_s, self._start, name)
            else:
                self._start(name)
        elif a.kind == "stall":
            assert a.duration_s is not None
            if not node.up or node.stalled:
                return
            node.stall(a.duration_s)
            led.stalled.setdefault(name, []).append([t, t + a.duration_s])
            self._note(f"stall {name} for {a.duration_s:g}s")
        elif a.kind == "slow":
            assert a.duration_s is not None
            if not node.up or node.slowed:
                return
            node.slow(a.duration_s, a.delay_s)
            led.slow.setdefault(name, []).append([t, t + a.duration_s + a.delay_s])
            self._note(f"slow {name} for {a.duration_s:g}s (input {a.delay_s:g}s late)")
        elif a.kind == "drift":
            if not node.up:
                return
            node.set_drift(a.rate)
            self._drifting[name] = None
            self._note(f"drift {name} {a.rate:+g}")
            if a.duration_s is not None:
                self.sim.at(t + a.duration_s, self._undrift, name)

    def _start(self, name: str) -> None:
        node = self.world.nodes[name]
        if node.up:
            return
        self.world.restart(name)
        self.ledger._close(self.ledger.down, name, self.sim.now)
        self._note(f"start {name}")

    def _undrift(self, name: str) -> None:
        node = self.world.nodes[name]
        self._drifting.pop(name, None)
        if node.up:
            node.set_drift(0.0)
        self._note(f"drift {name} 0")

    # ------------------------------------------------------------------ partitions

    def _cut(self, p: Partition, name: str | None, text: str, isolate: bool) -> int:
        token = self.net.partition(p)
        span = [self.sim.now, INF]
        self.ledger.partitions.append((span, p, isolate))
        self._tokens[token] = (p, span, name)
        self._note(f"partition {text}" + (f" [{name}]" if name else ""))
        return token

    def _mend(self, token: int) -> None:
        entry = self._tokens.pop(token, None)
        if entry is None:
            return
        self.net.heal(token)
        entry[1][1] = self.sim.now
        self._note("heal" + (f" [{entry[2]}]" if entry[2] else f" partition #{token}"))

    def _heal(self, name: str | None) -> None:
        for token, (_, _, pname) in list(self._tokens.items()):
            if name is None or pname == name:
                self._mend(token)
        for gen, fname in list(self._flaps.items()):
            if name is None or fname == name:
                del self._flaps[gen]

    def _flap_step(self, arg: tuple[FaultAction, int, float]) -> None:
        a, gen, t0 = arg
        assert a.partition is not None and a.duration_s is not None
        end = a.at_s + a.duration_s
        if gen not in self._flaps or t0 >= end - 1e-9:
            return
        token = self._cut(a.partition, a.name, a.partition_text, a.isolate)
        down_until = min(end, t0 + a.period_s * a.down_fraction)
        self.sim.at(down_until, self._mend, token)
        self.sim.at(t0 + a.period_s, self._flap_step, (a, gen, t0 + a.period_s))

    # ------------------------------------------------------------------ links

    def _relink(self, key: str) -> None:
        if key in self.base_links:
            spec = self.base_links[key]
        else:
            x, y = key.split("\x1f")
            spec = (
                self.base_pairs.get((x, y))
                or self.base_pairs.get((y, x))
                or (self.base_links["cross_dc"])
            )
        for _, k, a in self._link_faults:
            if k == key:
                spec = apply_link_changes(spec, a.link_changes)
        model: LinkModel = spec.model()
        if key in self.base_links:
            setattr(self.net, key, model)
        else:
            x, y = key.split("\x1f")
            self.net.dc_pairs[(x, y)] = model
            self.net.dc_pairs[(y, x)] = model

    def _unlink(self, ident: int) -> None:
        for i, (n, key, a) in enumerate(self._link_faults):
            if n == ident:
                del self._link_faults[i]
                self._relink(key)
                self._note(f"end {a.kind} on {a.link or '-'.join(a.dc_pair or ())}")
                return

    # ------------------------------------------------------------------ end of safety

    def _end_safety(self, _: object) -> None:
        if self._tokens or self._flaps:
            self._heal(None)
        while self._link_faults:
            self._unlink(self._link_faults[0][0])
        for name in list(self._drifting):
            self._undrift(name)
        self._note("safety phase over: every fault healed")


def _pair_key(pair: tuple[str, str] | None) -> str:
    assert pair is not None
    return "\x1f".join(pair)
