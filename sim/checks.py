"""Checkers: what a run is judged by, watched while it runs, and the figures it yields.

A run has two phases. The **safety phase** runs from the start to the moment the last
fault ended (``Plan.last_heal_s``; open-ended faults end with ``[scenario] duration_s``).
The **liveness phase** follows, with no faults, until ``converged_within_s`` after that
moment. Safety checks hold over both phases; liveness checks judge the second.

Definitions (the ledger of :mod:`sim.faults` answers the questions):

* A member is **healthy** at time t when its process is up (started, not crashed, not
  powered off), not stalled and not slow.
* A member m is **reachable** from an observer o at time t when no partition in force at
  t drops UDP between o and m in either direction.
* The **suspicion window** W of a pool of n members is ``probe_interval_s +
  suspicion_timeout(suspicion_mult, n, probe_interval_s)``: one probe round plus the
  minimum suspicion timeout, the shortest path SWIM has from the last answered probe to a
  declaration of death. ``[checks] suspicion_window_s`` overrides it.
* A **false failure** is an observer o emitting ``MemberFailed`` for m at time t while m
  was healthy, and reachable from o, over the whole of ``[t - W, t]``: nothing the faults
  did to m or to the path between o and m explains it. Stalled and slow members are not
  healthy, so a member declared dead while stalled or slow is not a false failure; a
  healthy member that a stalled or slow member accuses is (the case Lifeguard exists for).
* An **echoed failure** is a false failure of a member that a partition separated from
  some member of its pool at any moment of ``[t - E, t]``, where E is the echo window:
  ``probe_interval_s`` + the longest suspicion timeout (``suspicion_max_timeout_mult`` x
  the minimum with Lifeguard's suspicion, the minimum without). Such a verdict may have
  been reached across the partition and carried over: a suspicion formed on the far side
  outlives the heal until its timer fires or the buddy ping lets the member refute, and
  memberlist accepts ``dead`` from anyone at an equal incarnation, so one late timer
  declares the member dead for everyone (who then hear it refute). SWIM does this by
  design, so echoes are counted apart, with their own optional limit.

Checks (each a pass/fail per run, named as in the reports):

``no_core_errors``        no core raised (cores assert their invariants on every step).
``joined``                the pools converged before the first fault (``joined_before_faults``).
``false_failures``        at most ``max_false_failures`` false failures (echoes excluded),
                          judged on every ``MemberFailed`` as it is emitted.
``echoed_failures``       (with ``max_echoed_failures``) at most that many echoed failures.
``max_failed``            at most ``max_failed`` distinct members reported failed by
                          observers no fault touched around the report (not down, stalled,
                          slow or on a cut side of a partition within W before it), echoes
                          aside: what the intact part of the cluster concluded. By
                          default, the number of members the faults touch
                          (``Plan.touched``).
``incarnations_monotonic`` on every check tick, no observer's memberlist holds a lower
                          incarnation for a member than it held at the previous tick
                          (same boot of the observer, same entry: an entry forgotten and
                          re-learned starts afresh).
``converged``             in the liveness phase every live member sees exactly the live
                          members of its pool alive (and the dead ones not alive) within
                          ``converged_within_s`` of the last heal, and still at the end.
``detection``             (with ``detection_within_s``) every member crashed, powered off
                          or restarted with a downtime longer than the bound was reported
                          failed by every member of its pool that stayed up, within the
                          bound.

Figures: join convergence time; detection time per outage (first report, all reports);
convergence time after the last heal; false and echoed failures; failed members; UDP packets and
bytes sent per node per second, the busiest node's UDP bytes per second, TCP (push/pull,
fallback ping) bytes per node per second; the user event delivery ratio when the workload
fires events (events received / members that stayed up after each was fired).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gossamer.core import Effect
from sim.faults import INF, Ledger
from sim.node import SimNode
from sim.scenario import Plan
from sim.swimworld import SwimWorld
from swim.events import MemberEvent, MemberFailed, MemberStatus, UserEventReceived

__all__ = ["CheckResult", "Checkers", "percentile"]

ITEMS_KEPT = 20
"""Violations kept per check, for the report (the count is exact)."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    items: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "items": self.items,
        }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(p / 100 * len(s)) - 1)
    return s[min(k, len(s) - 1)]


class Checkers:
    """Watches one run: member events as they happen, and a tick every check interval."""

    def __init__(self, world: SwimWorld, plan: Plan, ledger: Ledger) -> None:
        self.world = world
        self.plan = plan
        self.ledger = ledger
        self.sim = world.sim
        self.interval = plan.checks.check_interval_s
        self.last_heal = plan.last_heal_s()
        self.run_end = plan.run_end_s()
        self.first_fault = plan.first_fault_s()
        self.touched = set(plan.touched())
        self.pools = {p: list(names) for p, names in world.pools.items()}
        self.pool_of = {s.name: s.pool for s, _ in plan.nodes}
        self.where = {s.name: (s.addr, s.dc) for s, _ in plan.nodes}
        self.pool_where = {p: [self.where[n] for n in names] for p, names in self.pools.items()}
        sizes = plan.pool_sizes()
        self.window = {p: plan.suspicion_window_s(n) for p, n in sizes.items()}
        self.echo_window = {p: plan.echo_window_s(n) for p, n in sizes.items()}
        # findings
        self.false_failures: list[str] = []
        self.false_count = 0
        self.failed_by_untouched: dict[str, tuple[float, str]] = {}
        self.failed_by_anyone: dict[str, tuple[float, str]] = {}
        self.echoes: list[str] = []
        self.echo_count = 0
        self.inc_violations: list[str] = []
        self.inc_count = 0
        self._inc: dict[tuple[str, str], tuple[int, object, int]] = {}
        self.joined_at: float | None = None
        self.converged_at: float | None = None
        self.converged_last: bool | None = None
        self.agreement: list[tuple[float, float]] = []
        self.error: str | None = None
        self.events_fired: list[tuple[float, str, str]] = []
        self.events_seen: dict[str, int] = {}

    # ------------------------------------------------------------------ wiring

    def attach(self) -> None:
        self.world.on_member_event.append(self._member_event)
        if self.plan.workload.user_events_per_s:
            self.world.on_effect.append(self._effect)
        n = int(self.run_end / self.interval)
        for k in range(1, n + 1):
            self.sim.at(k * self.interval, self._tick, None)
        if n * self.interval < self.run_end - 1e-9:
            self.sim.at(self.run_end, self._tick, None)

    # ------------------------------------------------------------------ events

    def _member_event(self, t: float, node: SimNode, eff: MemberEvent) -> None:
        if type(eff) is not MemberFailed:
            return
        m = eff.member.name
        o = node.name
        if m not in self.pool_of:
            return  # a stranger (cannot happen in a closed world; be safe)
        self.failed_by_anyone.setdefault(m, (t, o))
        pool = self.pool_of[m]
        w = self.window[pool]
        t0 = t - w
        led = self.ledger
        false = (
            self.world.started_at.get(m, INF) <= t0
            and not led.unhealthy_during(m, t0, t)
            and not led.separated_during(self.where[o], self.where[m], t0, t)
        )
        echo = false and led.cut_off_during(
            self.where[m], self.pool_where[pool], t - self.echo_window[pool], t
        )
        if not echo and not led.touched_during(o, self.where[o], t0, t):
            self.failed_by_untouched.setdefault(m, (t, o))
        if not false:
            return
        if echo:
            self.echo_count += 1
            if len(self.echoes) < ITEMS_KEPT:
                self.echoes.append(
                    f"t={t:.2f}s {o} declared {m} failed on the word of members that a "
                    "partition had cut off from it"
                )
            return
        self.false_count += 1
        if len(self.false_failures) < ITEMS_KEPT:
            why = ""
            if led.unhealthy_during(o, t0, t):
                why = f" ({o} had itself been stalled, slow or down in that window)"
            self.false_failures.append(
                f"t={t:.2f}s {o} declared {m} failed; {m} had been up and reachable from "
                f"everyone for the whole {w:.1f}s window before{why}"
            )

    def _effect(self, t: float, node: SimNode, eff: Effect) -> None:
        if type(eff) is UserEventReceived:
            name = eff.name
            self.events_seen[name] = self.events_seen.get(name, 0) + 1

    def fired(self, t: float, origin: str, name: str) -> None:
        self.events_fired.append((t, origin, name))

    # ------------------------------------------------------------------ ticks

    def _tick(self, _: object) -> None:
        t = self.sim.now
        nodes = self.world.nodes
        agree = total = 0
        check_inc = self.plan.checks.incarnations_monotonic
        inc = self._inc
        alive_status = MemberStatus.ALIVE
        for names in self.pools.values():
            up = [n for n in names if nodes[n].up]
            for o in up:
                node = nodes[o]
                core = node.core
                members = core.members
                for m in names:
                    ms = members.get(m)
                    seen = ms is not None and ms.status == alive_status
                    if seen == nodes[m].up:
                        agree += 1
                total += len(names)
                if check_inc:
                    boot = node.boots
                    for m, entry in core.ml.nodes.items():
                        key = (o, m)
                        prev = inc.get(key)
                        i = entry.incarnation
                        if (
                            prev is not None
                            and prev[0] == boot
                            and prev[1] is entry
                            and i < prev[2]
                        ):
                            self.inc_count += 1
                            if len(self.inc_violations) < ITEMS_KEPT:
                                self.inc_violations.append(
                                    f"t={t:.2f}s {o} holds incarnation {i} for {m}, "
                                    f"down from {prev[2]}"
                                )
                        inc[key] = (boot, entry, i)
        frac = agree / total if total else 1.0
        self.agreement.append((round(t, 6), frac))
        converged = agree == total
        if converged and self.joined_at is None:
            self.joined_at = t
        if t > self.last_heal + 1e-9:  # a tick at the heal instant may run before the heal
            if converged and self.converged_at is None:
                self.converged_at = t
            self.converged_last = converged

    # ------------------------------------------------------------------ verdicts

    def fail_with(self, error: str) -> None:
        self.error = error

    def results(self, t_end: float) -> tuple[list[CheckResult], dict[str, Any]]:
        ck = self.plan.checks
        out: list[CheckResult] = []
        figures: dict[str, Any] = {}

        out.append(
            CheckResult("no_core_errors", self.error is None, self.error or "no core raised")
        )

        figures["join_convergence_s"] = self.joined_at
        if ck.joined_before_faults and self.first_fault is not None:
            ok = self.joined_at is not None and self.joined_at <= self.first_fault
            if ok and self.joined_at is not None:
                detail = (
                    f"converged at {self.joined_at:.1f}s, before the first fault at "
                    f"{self.first_fault:g}s"
                )
            elif self.error is not None and t_end < self.first_fault:
                detail = "the run ended early"
            else:
                detail = f"the pools had not converged by the first fault at {self.first_fault:g}s"
            out.append(CheckResult("joined", ok, detail))

        figures["false_failures"] = self.false_count
        figures["echoed_failures"] = self.echo_count
        out.append(
            CheckResult(
                "false_failures",
                self.false_count <= ck.max_false_failures,
                f"{self.false_count} false failure(s), {ck.max_false_failures} allowed"
                + (f"; {self.echo_count} echoed across a partition" if self.echo_count else ""),
                self.false_failures,
            )
        )
        if ck.max_echoed_failures is not None:
            out.append(
                CheckResult(
                    "echoed_failures",
                    self.echo_count <= ck.max_echoed_failures,
                    f"{self.echo_count} echoed failure(s), {ck.max_echoed_failures} allowed",
                    self.echoes,
                )
            )

        counted = self.failed_by_untouched
        limit = ck.max_failed if ck.max_failed is not None else len(self.touched)
        figures["failed_members"] = len(counted)
        unexpected = sorted(m for m in counted if m not in self.touched)
        detail = f"{len(counted)} member(s) reported failed, at most {limit} expected"
        if unexpected:
            detail += f"; untouched by faults: {', '.join(unexpected[:8])}"
            detail += "…" if len(unexpected) > 8 else ""
        out.append(
            CheckResult(
                "max_failed",
                len(counted) <= limit,
                detail,
                [
                    f"{m} first reported failed at {t:.2f}s by {o}"
                    for m, (t, o) in sorted(counted.items(), key=lambda kv: kv[1])
                ][:ITEMS_KEPT],
            )
        )

        if ck.incarnations_monotonic:
            out.append(
                CheckResult(
                    "incarnations_monotonic",
                    self.inc_count == 0,
                    f"{self.inc_count} decrease(s)" if self.inc_count else "never decreased",
                    self.inc_violations,
                )
            )

        conv = None if self.converged_at is None else self.converged_at - self.last_heal
        figures["convergence_s"] = conv
        bound = ck.converged_within_s
        if self.error is not None:
            ok, detail = False, "the run ended early"
        elif conv is None:
            ok, detail = (
                False,
                f"not converged {bound:g}s after the last heal at {self.last_heal:g}s",
            )
        elif conv > bound + 1e-9:
            ok, detail = False, f"converged {conv:.1f}s after the last heal; bound {bound:g}s"
        elif not self.converged_last:
            ok, detail = (
                False,
                f"converged {conv:.1f}s after the last heal, diverged again by the end",
            )
        else:
            ok, detail = True, f"converged {conv:.1f}s after the last heal at {self.last_heal:g}s"
        out.append(CheckResult("converged", ok, detail))

        first, every, det_items, missed = self._detection(t_end)
        figures["detection_first_s"] = first
        figures["detection_all_s"] = every
        if ck.detection_within_s is not None:
            out.append(
                CheckResult(
                    "detection",
                    not missed,
                    f"{len(every)} outage(s) detected by all within {ck.detection_within_s:g}s"
                    if not missed
                    else f"{len(missed)} outage(s) not detected by all within "
                    f"{ck.detection_within_s:g}s",
                    missed[:ITEMS_KEPT] or det_items[:ITEMS_KEPT],
                )
            )

        st = self.world.net.stats
        n = max(1, len(self.pool_of))
        span = max(t_end, 1e-9)
        figures["msgs_per_node_s"] = st.packets_sent / n / span
        figures["bytes_per_node_s"] = st.bytes_sent / n / span
        figures["busiest_node_bytes_s"] = max(st.per_node_bytes.values(), default=0) / span
        figures["tcp_bytes_per_node_s"] = st.stream_bytes / n / span
        figures["packets_dropped"] = st.packets_dropped
        if self.events_fired:
            figures["user_event_delivery"] = self._delivery(t_end)
        return out, figures

    def _detection(self, t_end: float) -> tuple[list[float], list[float], list[str], list[str]]:
        """Per outage (crash, power_off, restart with downtime): time to the first FAILED
        report and to the last report of the pool members that stayed up throughout; an
        outage too short to be noticed yields no sample."""
        first: list[float] = []
        every: list[float] = []
        items: list[str] = []
        missed: list[str] = []
        bound = self.plan.checks.detection_within_s
        by_member: dict[str, list[tuple[float, str]]] = {}
        for t, obs, m, st in self.world.log.events:
            if st == MemberStatus.FAILED:
                by_member.setdefault(m, []).append((t, obs))
        for m, kind, span in self.ledger.outages:
            a, b = span[0], min(span[1], t_end)
            observers = [
                o
                for o in self.pools[self.pool_of[m]]
                if o != m
                and self.world.started_at.get(o, INF) <= a
                and not self.ledger.down_during(o, a, b)
            ]
            seen: dict[str, float] = {}
            for t, o in by_member.get(m, ()):
                if a <= t <= b and o not in seen:
                    seen[o] = t
            if seen:
                first.append(min(seen.values()) - a)
            done = observers and all(o in seen for o in observers)
            if done:
                every.append(max(seen[o] for o in observers) - a)
                items.append(f"{m} ({kind} at {a:.1f}s): all {len(observers)} in {every[-1]:.1f}s")
            if bound is not None and b - a > bound and observers:
                late = [o for o in observers if o not in seen or seen[o] - a > bound]
                if late:
                    missed.append(
                        f"{m} ({kind} at {a:.1f}s): {len(late)} of {len(observers)} had not "
                        f"reported it failed {bound:g}s later (e.g. {late[0]})"
                    )
        return first, every, items, missed

    def _delivery(self, t_end: float) -> float:
        got = want = 0
        for t, origin, name in self.events_fired:
            pool = self.pools[self.pool_of[origin]]
            stayed = [
                n
                for n in pool
                if self.world.started_at.get(n, INF) <= t
                and not self.ledger.down_during(n, t, t_end)
            ]
            want += len(stayed)
            got += min(len(stayed), self.events_seen.get(name, 0))
        return got / want if want else 1.0
