"""Running a scenario: one seed, or a range of them with a progress bar on stderr.

One run (``run_seed``):

1. Expand the scenario for the seed (``Scenario.expand``; with ``swarm`` the seed also
   picks configuration and faults within the ``[swarm]`` bounds).
2. Build the world from child seeds of the one seed: the network draws from
   ``("network",)``, start times from ``("workload", "start")``, user events from
   ``("workload", "events")``, each core from ``("node", name, boot)``, fault targets from
   ``("faults", n)``, swarm choices from ``("swarm", ...)``.
3. Schedule everything as simulator events: the boots, the fault timeline, the end of
   the safety phase (which heals what is still open), the check ticks, the workload.
4. **Safety phase** until the last fault has ended; **liveness phase** from then until
   ``converged_within_s`` later (and at least until ``[scenario] duration_s``). The loop
   advances in slices only to draw the progress bar; slicing cannot change the run.
5. An exception out of a core (cores assert their invariants) ends the run: the seed
   fails with ``no_core_errors`` and the exception's text.

The result carries every check's verdict, the figures, the trace digest (SHA-256 over
every delivered packet and member event) and the command that reproduces the run.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from sim.checks import Checkers, CheckResult
from sim.engine import Sim
from sim.faults import FaultInjector
from sim.network import Network
from sim.scenario import Plan, Scenario, ScenarioError
from sim.swimworld import SwimWorld, TraceDigest
from swim.events import MemberStatus, UserEventRequested

__all__ = ["Progress", "RunResult", "parse_seeds", "reproduce_command", "run_seed", "run_seeds"]

SLICE_S = 5.0
"""Virtual seconds between progress updates."""


@dataclass
class RunResult:
    scenario: str
    path: str
    seed: int
    swarm: bool
    passed: bool
    checks: list[CheckResult]
    figures: dict[str, Any]
    choices: dict[str, Any]
    faults: list[str]
    digest: str
    reproduce: str
    sim_s: float
    wall_s: float
    events: int
    nodes: int
    plot: dict[str, Any] = field(default_factory=dict)

    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "swarm": self.swarm,
            "passed": self.passed,
            "reproduce": self.reproduce,
            "digest": self.digest,
            "nodes": self.nodes,
            "sim_s": round(self.sim_s, 3),
            "wall_s": round(self.wall_s, 3),
            "events": self.events,
            "choices": self.choices,
            "faults": self.faults,
            "checks": [c.as_dict() for c in self.checks],
            "figures": _rounded(self.figures),
        }


def _rounded(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    return v


def reproduce_command(path: str, seed: int, swarm: bool, overrides: Sequence[str] = ()) -> str:
    parts = ["gossamer", "sim", "run", path, "--seed", str(seed)]
    if swarm:
        parts.append("--swarm")
    for item in overrides:
        parts += ["--set", item]
    return shlex.join(parts)


def parse_seeds(text: str) -> list[int]:
    """``7``, ``1-100``, or a comma list of either (``1-5,9``)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError(f"bad seed range {text!r} (use N, A-B or A-B,C)") from None
        if a < 0 or b < a or b >= 2**64:
            raise ValueError(f"bad seed range {text!r} (use N, A-B or A-B,C)")
        if b - a >= 1_000_000:
            raise ValueError(f"seed range {text!r} is too large")
        out.extend(range(a, b + 1))
    return out


def run_seed(
    scenario: Scenario,
    seed: int,
    *,
    swarm: bool = False,
    trace: TextIO | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> RunResult:
    """Run one seed to the end of its liveness phase and judge it."""
    started = time.perf_counter()
    plan = scenario.expand(seed, swarm=swarm)
    sim = Sim(seed)
    net = Network(
        sim,
        sim.seeds.rng("network"),
        same_host=plan.links["same_host"].model(),
        same_dc=plan.links["same_dc"].model(),
        cross_dc=plan.links["cross_dc"].model(),
        dc_pairs={pair: spec.model() for pair, spec in plan.pairs.items()},
    )
    roles = {s.name: role for s, role in plan.nodes}
    keys = [sim.seeds.entropy("keyring")(32)] if plan.encrypt else None
    world = SwimWorld(
        sim,
        net,
        [s for s, _ in plan.nodes],
        swim=plan.swim,
        serf=plan.serf,
        keyring_keys=keys,
        tags=lambda s: {"role": "consul" if roles[s.name] == "server" else "node", "dc": s.dc},
    )
    if trace is not None:
        trace.write(f"# {reproduce_command(scenario.path, seed, swarm, scenario.overrides)}\n")
    digest = TraceDigest(world, out=trace)
    injector = FaultInjector(world, plan, trace=trace)
    checkers = Checkers(world, plan, injector.ledger)
    checkers.attach()
    injector.schedule()
    world.start(plan.workload.join_window_s, plan.workload.seeds_per_pool)
    _schedule_events(world, plan, checkers)

    end = plan.run_end_s()
    t = 0.0
    corelog = _CoreLog(sim, trace)
    try:
        while t < end:
            t = min(end, t + SLICE_S)
            sim.run_until(t)
            if on_progress is not None:
                on_progress(t / end)
    except Exception as e:  # a core's assertion (or any bug) fails the seed
        where = traceback.extract_tb(e.__traceback__)[-1]
        first_line = (str(e).splitlines() or [""])[0]
        checkers.fail_with(
            f"{type(e).__name__}: {first_line} at t={sim.now:.3f}s "
            f"({os.path.basename(where.filename)}:{where.lineno})"
        )
        end = sim.now
    finally:
        corelog.close()
    checks, figures = checkers.results(end)
    passed = all(c.passed for c in checks)
    result = RunResult(
        scenario=scenario.name,
        path=scenario.path,
        seed=seed,
        swarm=swarm,
        passed=passed,
        checks=checks,
        figures=figures,
        choices=plan.choices,
        faults=[f"{t:.2f}s {text}" for t, text in injector.ledger.applied],
        digest=digest.hexdigest(),
        reproduce=reproduce_command(scenario.path, seed, swarm, scenario.overrides),
        sim_s=end,
        wall_s=time.perf_counter() - started,
        events=sim.events_run,
        nodes=len(plan.nodes),
        plot=_plot_data(world, plan, injector, checkers),
    )
    result.figures["core_warnings"] = corelog.warnings
    return result


class _CoreLog(logging.Handler):
    """While a run lasts, the cores' log records (``gossamer.*``) go to the trace with the
    virtual time, not to the terminal; warnings are counted."""

    def __init__(self, sim: Sim, trace: TextIO | None) -> None:
        super().__init__(logging.INFO if trace is not None else logging.WARNING)
        self.sim = sim
        self.trace = trace
        self.warnings = 0
        self.logger = logging.getLogger("gossamer")
        self._saved = (self.logger.level, self.logger.propagate)
        self.logger.addHandler(self)
        self.logger.setLevel(self.level)
        self.logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings += 1
        if self.trace is not None:
            msg = record.getMessage().replace("\n", " ")
            self.trace.write(f"{self.sim.now:.6f} log {record.levelname.lower()} {msg}\n")

    def close(self) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
        super().close()


def _schedule_events(world: SwimWorld, plan: Plan, checkers: Checkers) -> None:
    """User events at Poisson times, each fired by a random live member."""
    rate = plan.workload.user_events_per_s
    if not rate:
        return
    rng = world.sim.seeds.rng("workload", "events")
    names = [s.name for s, _ in plan.nodes]
    payload = bytes(plan.workload.user_event_bytes)
    t = plan.workload.join_window_s + rng.expovariate(rate)
    k = 0
    while t < plan.duration_s:
        k += 1
        world.sim.at(t, _fire, (world, checkers, names, rng.random(), f"ev-{k}", payload))
        t += rng.expovariate(rate)


def _fire(arg: tuple[SwimWorld, Checkers, list[str], float, str, bytes]) -> None:
    world, checkers, names, u, name, payload = arg
    live = [n for n in names if world.nodes[n].up and not world.nodes[n].stalled]
    if not live:
        return
    origin = live[int(u * len(live))]
    checkers.fired(world.sim.now, origin, name)
    world.nodes[origin].deliver(UserEventRequested(0, name, payload, False))


def _plot_data(
    world: SwimWorld, plan: Plan, injector: FaultInjector, checkers: Checkers
) -> dict[str, Any]:
    """What the plot needs: one member's status in every observer's eyes over time, the
    agreement curve, the fault steps and the phases."""
    member = None
    outages = injector.ledger.outages
    if outages:
        member = outages[0][0]
    else:
        for a in plan.faults:
            if a.targets:
                member = a.targets[0]
                break
        if member is None and checkers.failed_by_anyone:
            member = min(checkers.failed_by_anyone, key=lambda m: checkers.failed_by_anyone[m])
    events: list[tuple[float, str, str]] = []
    observers: list[str] = []
    if member is not None:
        pool = plan.nodes[[s.name for s, _ in plan.nodes].index(member)][0].pool
        observers = [n for n in world.pools[pool] if n != member]
        events = [
            (t, o, MemberStatus(st).name.lower()) for t, o, m, st in world.log.events if m == member
        ]
    cut: list[list[float]] = []
    if member is not None:
        spec = next(s for s, _ in plan.nodes if s.name == member)
        for (start, stop), p, isolate in injector.ledger.partitions:
            if p.a.contains(spec.addr, spec.dc) or (
                not isolate and p.b.contains(spec.addr, spec.dc)
            ):
                cut.append([start, stop])
    return {
        "member": member,
        "cut": cut,
        "observers": observers,
        "events": events,
        "down": {n: [list(s) for s in spans] for n, spans in injector.ledger.down.items()},
        "stalled": {n: [list(s) for s in spans] for n, spans in injector.ledger.stalled.items()},
        "agreement": checkers.agreement,
        "faults": injector.ledger.applied,
        "last_heal_s": plan.last_heal_s(),
        "run_end_s": plan.run_end_s(),
    }


class Progress:
    """A one-line bar on stderr when it is a terminal; one plain line per seed otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, label: str = "") -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.failed = 0
        self.label = label
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def seed_progress(self, seed: int) -> Callable[[float], None]:
        def update(frac: float) -> None:
            if self.tty:
                now = time.perf_counter()
                if now - self._last_draw >= 0.1 or frac >= 1.0:
                    self._last_draw = now
                    self._draw(self.done + frac, f"seed {seed}")

        return update

    def _draw(self, progress: float, what: str) -> None:
        width = 30
        filled = int(width * progress / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self.started
        eta = ""
        if progress > 0:
            left = elapsed * (self.total - progress) / progress
            eta = f" eta {left:4.0f}s"
        fails = f" {self.failed} failed" if self.failed else ""
        line = (
            f"\r{self.label}[{bar}] {int(progress)}/{self.total} seeds{fails} {what}"
            f" {elapsed:4.0f}s{eta}"
        )
        self.stream.write(line[:120].ljust(80))
        self.stream.flush()

    def seed_done(self, r: RunResult) -> None:
        self.done += 1
        if not r.passed:
            self.failed += 1
        if self.tty:
            self._draw(self.done, f"seed {r.seed} {'ok' if r.passed else 'FAILED'}")
        else:
            bad = ", ".join(c.name for c in r.failed_checks())
            verdict = "ok" if r.passed else f"FAILED ({bad})"
            self.stream.write(
                f"{self.label}seed {r.seed}: {verdict}  [{self.done}/{self.total}, "
                f"{r.wall_s:.1f}s wall, {r.sim_s:.0f}s simulated]\n"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_seeds(
    scenario: Scenario,
    seeds: Sequence[int],
    *,
    swarm: bool = False,
    trace: TextIO | None = None,
    progress: Progress | None = None,
) -> list[RunResult]:
    """Run every seed in order (a scenario error for one seed aborts the lot)."""
    results: list[RunResult] = []
    for seed in seeds:
        hook = progress.seed_progress(seed) if progress is not None else None
        try:
            r = run_seed(scenario, seed, swarm=swarm, trace=trace, on_progress=hook)
        except ScenarioError:
            if progress is not None:
                progress.close()
            raise
        results.append(r)
        if progress is not None:
            progress.seed_done(r)
    if progress is not None:
        progress.close()
    return results
