"""Fidelity: does the simulator predict what real agents do?

The same 16-member cluster and the same memberlist timing preset, twice in one run:

* **real**: 16 ``gossamer agent`` processes on 127.0.0.1, SIGKILL one member per trial
  and time, from the kill, until the first and until every survivor lists it ``failed``
  (bench_gossip.py's detection trial: HTTP polling every 100 ms per observer, each change
  dated midway between polls; the victim restarts between trials);
* **sim**: 16 Serf cores in :mod:`sim`, the same preset and codec settings (compression on,
  as the agents run), a crash per trial at a random moment, exact virtual times.

It prints both distributions and the ratio of medians (goal: within 20%). Run:

    python bench/bench_fidelity.py [--size 16] [--profile lan] [--trials 8] [--sim-trials 60]

Never run in CI; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_gossip

from sim.engine import Sim
from sim.network import Latency, LinkModel, Network
from sim.swimworld import NodeSpec, SwimWorld
from swim.config import SwimConfig
from swim.events import MemberStatus


def sim_trial(seed: int, size: int, profile: str, one_way_s: float) -> dict[str, Any]:
    """One simulated detection: converge, crash one member at a random moment, time it."""
    sim = Sim(seed)
    loopback = LinkModel(Latency("normal", one_way_s, one_way_s / 4))
    net = Network(sim, sim.seeds.rng("network"), same_host=loopback, same_dc=loopback)
    specs = [NodeSpec(f"g{i:02d}", "dc1", "dc1", (f"127.0.0.{i + 1}", 7946)) for i in range(size)]
    world = SwimWorld(sim, net, specs, swim=SwimConfig.preset(profile))
    world.start(join_window_s=2.0)
    sim.run_until(30.0)
    rng = sim.seeds.rng("fidelity", "kill")
    victim = specs[1 + rng.randrange(size - 1)].name
    t_kill = 30.0 + rng.uniform(0.0, 5.0)
    sim.at(t_kill, lambda _: world.crash(victim))
    sim.run_until(t_kill + 120.0)
    survivors = {s.name for s in specs if s.name != victim}
    seen = world.log.first(victim, MemberStatus.FAILED, after=t_kill, by=survivors)
    times = sorted(t - t_kill for t in seen.values())
    return {
        "victim": victim,
        "first_s": times[0] if times else None,
        "all_s": times[-1] if len(times) == len(survivors) else None,
        "seen": len(times),
    }


def summarize(xs: list[float]) -> dict[str, float | None]:
    return {
        "n": len(xs),
        "p50": statistics.median(xs) if xs else None,
        "p90": bench_gossip.percentile(xs, 0.9),
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--profile", choices=("lan", "wan", "local"), default="lan")
    p.add_argument("--trials", type=int, default=8, help="real-agent detection trials")
    p.add_argument("--sim-trials", type=int, default=60, help="simulated detection trials")
    p.add_argument(
        "--one-way-ms",
        type=float,
        default=0.25,
        help="simulated one-way delay (loopback plus a Python agent's handling, measured "
        "RTT/2 of a gossamer ping on this machine is about this)",
    )
    args = p.parse_args(argv)

    t0 = time.monotonic()
    sims = [
        sim_trial(seed, args.size, args.profile, args.one_way_ms / 1e3)
        for seed in range(1, args.sim_trials + 1)
    ]
    sim_wall = time.monotonic() - t0

    real_args = bench_gossip.parse_args(
        [
            f"--size={args.size}",
            f"--profile={args.profile}",
            f"--trials={args.trials}",
            "--join-trials=1",
            "--kinds=gossamer",
            "--settle-s=5",
            "--idle-window-s=1",
            "--gap-s=3",
        ]
    )
    t1 = time.monotonic()
    real = bench_gossip.run(real_args)["gossamer"]
    real_wall = time.monotonic() - t1
    if real.error:
        print(f"real agents failed: {real.error}", file=sys.stderr)
        return 1

    rows = []
    for key, label in (
        ("first_s", "SIGKILL -> first 'failed'"),
        ("all_s", "SIGKILL -> all 'failed'"),
    ):
        r = summarize([d[key] for d in real.detections if d[key] is not None])
        s = summarize([d[key] for d in sims if d[key] is not None])
        ratio = (s["p50"] / r["p50"]) if r["p50"] and s["p50"] else None
        rows.append((label, r, s, ratio))

    print(f"fidelity: {args.size}-member cluster, memberlist preset '{args.profile}'")
    print(f"  real: {args.trials} trials on 127.0.0.1 ({real_wall:.0f} s wall)")
    print(
        f"  sim:  {args.sim_trials} seeds, one-way delay {args.one_way_ms} ms "
        f"({sim_wall:.1f} s wall)\n"
    )
    print(f"  {'figure':28} {'real p50 / p90':>18} {'sim p50 / p90':>18} {'sim/real':>9}")
    for label, r, s, ratio in rows:
        print(
            f"  {label:28} {r['p50']:8.2f} / {r['p90']:5.2f} s {s['p50']:8.2f} / {s['p90']:5.2f} s"
            f" {ratio:9.2f}"
        )
    print("\n  goal: medians within 20% (0.80 <= sim/real <= 1.20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
