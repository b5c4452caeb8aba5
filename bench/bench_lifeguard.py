"""False positives with 1 %, 5 % and 10 % of members stalled or slow: Lifeguard on vs off.
Printed, never asserted.

Usage::

    python bench/bench_lifeguard.py [--seeds 1-10] [--faults stall,slow] [--fractions 1,5,10]
                                    [--slow-delays 10] [--lifeguard-part PART ...]
                                    [--jobs N] [--json out.json]

The figure of issue 3: healthy members wrongly declared failed while some members are
faulted, with Lifeguard (Dadgar, Phillips, Currey, 2018) ON — all three parts:
``lifeguard_awareness``, ``lifeguard_suspicion``, ``lifeguard_buddy`` — against OFF, none
of them (memberlist's plain SWIM with suspicion). Goal: Lifeguard cuts them at least
20-fold (the paper reports more than 50-fold).

**Runs.** One scenario file per fault in ``examples/scenarios/figures/``,
``false-positives-{stall,slow}.toml`` (Lifeguard on, 10 % faulted); each row's arms are that
file with ``--set`` overrides (the fraction; for OFF the three flags), run over the same
seeds with the simulator's own runner (``sim.run.run_seed``), so a row is exactly what

    gossamer sim run examples/scenarios/figures/false-positives-stall.toml --seeds 1-10 \
        --set fault.1.target=random_pct:5 --set swim.lifeguard_awareness=false \
        --set swim.lifeguard_suspicion=false --set swim.lifeguard_buddy=false

reports, seed for seed (same trace digests); the bench prints each arm's command. A LAN
pool of 100 members (memberlist's LAN preset, compression off, 0.5 +/- 0.1 ms links, no
loss) joins in 5 s; at 20 s P % of it
(1, 5 or 10 members) is faulted, all at once:

* ``stall``: 10 s of handling nothing (timers stop, input waits in the socket buffer);
* ``slow``: 30 s of handling every inbound packet 10 s late, timers and sends on time
  (CPU starvation, the paper's slow message processing). 10 s is past every probe
  deadline and past plain SWIM's minimum suspicion timeout at n = 100 (8 s), so a slow
  member suspects whoever it probes and reads the refutation after its timer would have
  fired. ``--slow-delays 2,10`` adds 2 s: late acks, but refutations read in time.

then the run continues 50 s past the end of the fault (longer than Lifeguard's longest
suspicion timeout, 48 s at n = 100), so every suspicion the fault raised has reached its
verdict.

**What is counted**, per row and arm, summed over the seeds (a *faulted* member is one the
scenario stalls or slows, ``Plan.touched``; the others were never faulted):

* false failures: ``MemberFailed`` events (the simulator's ``MembershipLog``) about members
  never faulted, (i) emitted by members never faulted, (ii) emitted by anyone (a faulted
  member's verdict only misleads itself, unless others take its word). Each event is also
  judged by the checkers' own definition (``sim.checks.Checkers``: the member was up,
  unstalled and reachable for the whole suspicion window before), imported, not
  re-implemented; the bench counts them through a :class:`~sim.checks.Checkers` subclass
  that notes, per event, whether the checker counted it (a never-faulted member's failure
  it does not count would be printed as a discrepancy);
* detections: ``MemberFailed`` events about the faulted members (by anyone): the price of
  fewer false positives is detecting real trouble later, or not at all;
* false suspicions: first-hand suspicions of never-faulted members — a prober's own failed
  probe (memberlist's "suspect X has failed, no acks received"), by anyone;

and the ratio OFF/ON with both sums, ON first: ``161.2x (6 vs 967)``, ``inf (0 vs 37)`` when
ON is 0, ``n/a (0 vs 0)`` when both are. ``--lifeguard-part awareness`` (or ``suspicion``,
``buddy``; repeatable) adds an arm with all of Lifeguard but that part.

Runs go to ``--jobs`` worker processes (default: one per CPU); progress goes to stderr, the
tables to stdout, ``--json PATH`` writes every count per seed. The default run (120 runs)
takes about 9 minutes on a 2-core machine; the slow rows cost most (a 10 %-slow pool
gossips suspicions and refutations all through its slow period).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

import sim.run  # noqa: E402
from sim.checks import Checkers  # noqa: E402
from sim.faults import Ledger  # noqa: E402
from sim.node import SimNode  # noqa: E402
from sim.run import parse_seeds, run_seed  # noqa: E402
from sim.scenario import Plan, Scenario, load  # noqa: E402
from sim.swimworld import SwimWorld  # noqa: E402
from swim.events import MemberFailed  # noqa: E402

FIGURES = ROOT / "examples" / "scenarios" / "figures"
PARTS = ("awareness", "suspicion", "buddy")
FLAGS = tuple(f"lifeguard_{p}" for p in PARTS)
SUSPECT_LOG = "%s: suspect %s has failed, no acks received"
"""memberlist.py's log line for a suspicion raised by the prober's own failed probe."""
METRICS = (
    ("false_untouched", "false failures seen by never-faulted members (i)"),
    ("false_any", "false failures seen by anyone (ii)"),
    ("detections", "detections: failures of the faulted members, by anyone"),
    ("suspicions", "false suspicions: first-hand suspicions of never-faulted members"),
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one run


class _Recording(Checkers):
    """The checkers, plus a note per ``MemberFailed``: (observer, member, and whether the
    checkers counted it a false failure). The checkers' own judgement is not touched."""

    last: _Recording | None = None

    def __init__(self, world: SwimWorld, plan: Plan, ledger: Ledger) -> None:
        super().__init__(world, plan, ledger)
        self.failed: list[tuple[str, str, bool]] = []
        _Recording.last = self

    def _member_event(self, t: float, node: SimNode, eff: Any) -> None:
        before = self.false_count
        super()._member_event(t, node, eff)
        if type(eff) is MemberFailed:
            self.failed.append((node.name, eff.member.name, self.false_count > before))


class _Suspicions(logging.Handler):
    """Collects (prober, member) of every first-hand suspicion from the cores' log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == SUSPECT_LOG and isinstance(record.args, tuple):
            self.seen.append((str(record.args[0]), str(record.args[1])))


@contextmanager
def _recording() -> Iterator[_Suspicions]:
    """run_seed builds its checkers from ``sim.run.Checkers``: hand it the recording
    subclass, and listen to the swim logger at INFO (run_seed's own handler only takes
    warnings from it, so nothing else changes; logging never feeds back into a run)."""
    logger = logging.getLogger("gossamer.swim")
    handler = _Suspicions()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with mock.patch.object(sim.run, "Checkers", _Recording):
            yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_one(task: tuple[Scenario, int]) -> dict[str, Any]:
    scenario, seed = task
    with _recording() as susp:
        result = run_seed(scenario, seed)
    rec = _Recording.last
    assert rec is not None
    faulted = rec.touched
    c = {m: 0 for m, _ in METRICS}
    missed_by_checker = 0
    for observer, member, judged_false in rec.failed:
        if member in faulted:
            c["detections"] += 1
            continue
        c["false_any"] += 1
        if observer not in faulted:
            c["false_untouched"] += 1
        if not judged_false:
            missed_by_checker += 1
    c["suspicions"] = sum(1 for _, m in susp.seen if m not in faulted)
    return {
        "seed": seed,
        **c,
        "checker_false_failures": result.figures["false_failures"],
        "checker_echoed_failures": result.figures["echoed_failures"],
        "not_judged_false": missed_by_checker,
        "faulted": sorted(faulted),
        "digest": result.digest,
        "passed": result.passed,
        "wall_s": result.wall_s,
    }


# --------------------------------------------------------------------------- the rows


@dataclasses.dataclass
class Row:
    fault: str
    pct: float
    label: str
    arms: dict[str, Scenario]
    """arm name ("off", "on", "on-awareness", ...) -> the scenario it runs."""
    commands: dict[str, str]
    """arm -> the ``gossamer sim run`` command that reproduces it."""


OFF = tuple(f"swim.{flag}=false" for flag in FLAGS)


def _overrides(sc: Scenario, pct: float, delay_s: float | None) -> list[str]:
    """``--set`` items aiming the file's one fault at ``pct`` % (and, for slow, a delay)."""
    if len(sc.faults) != 1 or sc.faults[0].target is None:
        raise SystemExit(f"{sc.path}: expected exactly one targeted [[fault]]")
    out = [f"fault.1.target=random_pct:{pct:g}"]
    if delay_s is not None:
        out.append(f"fault.1.delay_s={delay_s:g}")
    return out


def build_rows(args: argparse.Namespace) -> list[Row]:
    rows = []
    for fault in args.faults:
        path = FIGURES / f"false-positives-{fault}.toml"
        shipped = load(path)
        on_flags = {k: v for k, v in shipped.swim_fields if k in FLAGS}
        if on_flags != dict.fromkeys(FLAGS, True):
            raise SystemExit(f"{path}: the three lifeguard_* flags must be on in the file")
        f = shipped.faults[0]
        assert f.duration_s is not None
        delays: list[float | None] = [None] if fault != "slow" else list(args.slow_delays)
        for delay in delays:
            for pct in args.fractions:
                sets = _overrides(shipped, pct, delay)
                variants = {"off": [*sets, *OFF], "on": sets}
                for part in args.lifeguard_part:
                    variants[f"on-{part}"] = [*sets, f"swim.lifeguard_{part}=false"]
                arms = {a: load(path, v) for a, v in variants.items()}
                label = f"{fault} {f.duration_s:g}s"
                if fault == "slow":
                    label += f" +{delay if delay is not None else f.delay_s:g}s"
                rel = str(path.relative_to(ROOT))
                commands = {
                    a: shlex.join(["gossamer", "sim", "run", rel, "--seeds", args.seeds_text])
                    + "".join(f" --set {shlex.quote(x)}" for x in v)
                    for a, v in variants.items()
                }
                rows.append(Row(fault, pct, label, arms, commands))
    return rows


# --------------------------------------------------------------------------- printing


def ratio(off: int, on: int) -> str:
    if on == 0:
        return f"n/a (0 vs {off})" if off == 0 else f"inf (0 vs {off})"
    return f"{off / on:.1f}x ({on} vs {off})"


def report(
    rows: list[Row], results: dict[tuple[int, str], list[dict[str, Any]]], args: Any
) -> None:
    n_seeds = len(args.seeds)
    arms = ["off", "on", *(f"on-{p}" for p in args.lifeguard_part)]
    pool = sum(n for _, n in rows[0].arms["on"].topology.datacenters)
    print(
        f"Lifeguard and false positives: a LAN pool of {pool} members (lan preset), "
        f"{n_seeds} seeds ({args.seeds_text}), the same seeds for every arm"
    )
    print(
        "arms: off = no Lifeguard part; on = all three"
        + "".join(f"; on-{p} = all but lifeguard_{p}" for p in args.lifeguard_part)
    )
    for key, title in METRICS:
        print()
        print(title + f" (sum over {n_seeds} seeds)")
        head = f"  {'fault':<16} {'faulted':>10}" + "".join(f" {a:>14}" for a in arms)
        head += "   OFF/ON (ON vs OFF)"
        for p in args.lifeguard_part:
            head += f" | OFF/on-{p}"
        print(head)
        for i, row in enumerate(rows):
            sums = {a: sum(r[key] for r in results[(i, a)]) for a in arms}
            k = len(results[(i, "on")][0]["faulted"])
            line = f"  {row.label:<16} {f'{k} ({row.pct:g}%)':>10}"
            line += "".join(f" {sums[a]:>14}" for a in arms)
            line += f"   {ratio(sums['off'], sums['on'])}"
            for p in args.lifeguard_part:
                line += f" | {ratio(sums['off'], sums[f'on-{p}'])}"
            print(line)
    print()
    odd = [
        (row.label, row.pct, a, r["seed"], r["not_judged_false"])
        for i, row in enumerate(rows)
        for a in arms
        for r in results[(i, a)]
        if r["not_judged_false"]
    ]
    if odd:
        print("false failures of never-faulted members that sim.checks did not count as false:")
        for label, pct, a, seed, k in odd:
            print(f"  {label} {pct:g}% {a} seed {seed}: {k}")
    else:
        print("every false failure counted here is one sim.checks counts too (same definition)")
    print("reproduce a row (each arm):")
    for row in rows:
        for cmd in row.commands.values():
            print(f"  {cmd}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", default="1-10", help="seed range, e.g. 1-10 or 1-5,9")
    p.add_argument("--faults", default="stall,slow", help="stall, slow or both")
    p.add_argument("--fractions", default="1,5,10", help="percent of the pool faulted")
    p.add_argument("--slow-delays", default="10", help="seconds a slow member reads its input late")
    p.add_argument(
        "--lifeguard-part",
        action="append",
        default=[],
        choices=PARTS,
        help="add an arm with all of Lifeguard but this part (repeatable)",
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", default=None, help="write every count per seed here")
    args = p.parse_args(argv)
    args.seeds_text = args.seeds
    args.seeds = parse_seeds(args.seeds)
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    for f in args.faults:
        if f not in ("stall", "slow"):
            p.error(f"unknown fault {f!r} (stall, slow)")
    args.fractions = [float(x) for x in args.fractions.split(",")]
    args.slow_delays = [float(x) for x in args.slow_delays.split(",")]
    args.lifeguard_part = list(dict.fromkeys(args.lifeguard_part))

    rows = build_rows(args)
    arms = ["off", "on", *(f"on-{p}" for p in args.lifeguard_part)]
    tasks = [(i, a, s) for i in range(len(rows)) for a in arms for s in args.seeds]
    log(
        f"{len(tasks)} runs ({len(rows)} rows x {len(arms)} arms x {len(args.seeds)} seeds) "
        f"on {args.jobs} worker(s)"
    )
    started = time.perf_counter()
    results: dict[tuple[int, str], list[dict[str, Any]]] = {
        (i, a): [] for i, _, _ in tasks for a in arms
    }
    work = [(rows[i].arms[a], s) for i, a, s in tasks]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for k, ((i, a, s), r) in enumerate(zip(tasks, pool.map(run_one, work), strict=True), 1):
            results[(i, a)].append(r)
            row = rows[i]
            log(
                f"[{k}/{len(tasks)}] {row.label} {row.pct:g}% {a:<6} seed {s}: "
                f"false {r['false_untouched']}/{r['false_any']}, detections {r['detections']}, "
                f"suspicions {r['suspicions']} ({r['wall_s']:.1f}s; "
                f"{time.perf_counter() - started:.0f}s elapsed)"
            )
    wall = time.perf_counter() - started
    report(rows, results, args)
    print(f"\nwall time: {wall:.0f} s for {len(tasks)} runs on {args.jobs} worker(s)")
    if args.json:
        out = {
            "seeds": args.seeds,
            "wall_s": wall,
            "rows": [
                {
                    "fault": row.label,
                    "pct": row.pct,
                    "commands": row.commands,
                    "arms": {a: results[(i, a)] for a in arms},
                }
                for i, row in enumerate(rows)
            ],
        }
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
