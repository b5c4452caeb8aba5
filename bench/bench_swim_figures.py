"""SWIM's textbook figures, measured on the simulator: printed, never asserted.

Usage::

    python bench/bench_swim_figures.py [--sizes 1000] [--trials 20] [--detections 10]
                                       [--seed 1] [--loss 0] [--json out.json]

Each size is one simulated LAN pool of real :class:`swim.serf.Serf` cores (memberlist's
LAN preset: probe every 1 s, gossip to 3 members every 200 ms, compression off), started
converged (:meth:`sim.swimworld.SwimWorld.start_converged`: a pool that has been quiet for
a while), on a 0.5 ms +/- 0.1 ms one-way network. Two experiments, each against the
analytic baseline the SWIM paper gives:

**Dissemination.** A random member changes its tags (``TagsUpdateRequested``): memberlist
re-announces it with a higher incarnation, and the ``alive`` spreads by gossip and by
piggybacking on probes. For each trial: when each other member emitted ``MemberUpdated``
for it. Rounds are elapsed time over the gossip interval (every member gossips once per
interval, at its own phase), so "rounds to reach everyone" is the last member's time
divided by 0.2 s. Baseline: ceil(log_{k+1} N) with fanout k = 3, the floor for push
gossip where every informed member tells k new ones per round. Goal: median within 2
rounds of the floor at 0 % loss. Trials run one after another in the same pool, each after
the previous update stopped being retransmitted.

**Detection.** A random member crashes at a random moment. Per trial: time to the first
datagram sent to it (a probe: nothing else travels to a member by datagram in a quiet
pool), to the first suspicion anywhere, to the first member reporting it failed
(``MemberFailed``), and to every live member reporting it failed; in probe intervals.
Baseline: SWIM's expected number of protocol periods from a crash to the end of the period
in which some member first probes it, e/(e-1) = 1.58 when each member picks one target per
period (with N members, a given member is probed in a period with probability
1 - (1 - 1/N)^N -> 1 - 1/e). memberlist pings, waits the probe timeout, asks three others,
and raises the suspicion at the end of its probe interval, so in continuous time first
suspicion = first probe + one interval. Both are printed: the SWIM-period figure against
1.58, and the continuous-time one against the issue's goal of 1.7 intervals.

Memory: every member holds a view of every member, N^2 views; ``--max-rss-gib`` (default
90 % of MemTotal) refuses sizes whose estimate (bytes per view measured on a 300-node pool
in this run, times N^2) does not fit, and prints the estimate instead of a figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

from bench_sim import mem_total_gib  # noqa: E402  (bench/ is on sys.path: run as a script)

from sim.engine import Sim  # noqa: E402
from sim.network import Latency, LinkModel, Network  # noqa: E402
from sim.node import SimNode  # noqa: E402
from sim.swimworld import NodeSpec, SwimWorld  # noqa: E402
from swim.config import SwimConfig  # noqa: E402
from swim.events import MemberEvent, MemberFailed, MemberUpdated, TagsUpdateRequested  # noqa: E402
from swim.memberlist import NodeState  # noqa: E402

E_OVER_E_MINUS_1 = math.e / (math.e - 1)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def build(n: int, seed: int, loss: float) -> tuple[Sim, SwimWorld]:
    sim = Sim(seed)
    link = LinkModel(Latency("normal", 0.0005, 0.0001), loss=loss)
    net = Network(sim, sim.seeds.rng("network"), same_dc=link)
    specs = [
        NodeSpec(f"n{i}", "dc1", "lan", (f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 7946))
        for i in range(n)
    ]
    cfg = SwimConfig.lan().replace(enable_compression=False)
    world = SwimWorld(sim, net, specs, swim=cfg)
    world.start_converged(log_joins=False)
    return sim, world


class Watch:
    """First time each observer emitted a member event of one type about one member."""

    def __init__(self, world: SwimWorld) -> None:
        self.kind: type[MemberEvent] | None = None
        self.member = ""
        self.seen: dict[str, float] = {}
        world.on_member_event.append(self._event)

    def arm(self, kind: type[MemberEvent], member: str) -> None:
        self.kind, self.member, self.seen = kind, member, {}

    def _event(self, t: float, node: SimNode, eff: MemberEvent) -> None:
        if type(eff) is self.kind and eff.member.name == self.member:
            self.seen.setdefault(node.name, t)


def dissemination(sim: Sim, world: SwimWorld, trials: int) -> dict[str, Any]:
    cfg = world.serf_config.swim
    n = len(world.nodes)
    rng = sim.seeds.rng("workload", "dissemination")
    watch = Watch(world)
    rounds_all: list[float] = []
    rounds_half: list[float] = []
    reached: list[int] = []
    # an update is retransmitted retransmit_mult * ceil(log10(n+1)) times by each member;
    # the next trial starts once that many gossip rounds (and then some) have passed
    gap = cfg.retransmit_mult * math.ceil(math.log10(n + 1)) * cfg.gossip_interval_s + 5.0
    for i in range(trials):
        t0 = sim.now + rng.random() * cfg.gossip_interval_s
        sim.run_until(t0)
        who = rng.choice(sorted(world.live()))
        watch.arm(MemberUpdated, who)
        world.nodes[who].deliver(TagsUpdateRequested(0, (("role", "node"), ("trial", str(i)))))
        sim.run_until(t0 + gap)
        times = sorted(t - t0 for obs, t in watch.seen.items() if obs != who)
        reached.append(len(times))
        if len(times) == n - 1:
            rounds_all.append(times[-1] / cfg.gossip_interval_s)
        rounds_half.append(times[len(times) // 2] / cfg.gossip_interval_s if times else math.inf)
        log(
            f"  dissemination {i + 1}/{trials}: {len(times)}/{n - 1} reached, last after "
            f"{(times[-1] if times else math.inf):.2f} s"
        )
    floor = math.ceil(math.log(n) / math.log(cfg.gossip_nodes + 1))
    return {
        "trials": trials,
        "fanout": cfg.gossip_nodes,
        "gossip_interval_s": cfg.gossip_interval_s,
        "floor_rounds": floor,
        "reached_all": sum(1 for r in reached if r == n - 1),
        "rounds_all_p50": statistics.median(rounds_all) if rounds_all else None,
        "rounds_all_p99": pct(rounds_all, 0.99) if rounds_all else None,
        "rounds_all_max": max(rounds_all) if rounds_all else None,
        "rounds_half_p50": statistics.median(rounds_half),
    }


def detection(sim: Sim, world: SwimWorld, trials: int) -> dict[str, Any]:
    cfg = world.serf_config.swim
    rng = sim.seeds.rng("workload", "detection")
    interval = cfg.probe_interval_s
    watch = Watch(world)
    first_suspect: dict[str, float] = {}
    first_probe: dict[str, float] = {}
    victim = [""]

    # instrumentation, not behaviour: note the first suspicion of the victim anywhere and
    # the first probe aimed at it (a ping datagram to its address after the crash)
    for node in world.nodes.values():
        ml = node.core.ml
        orig = ml.suspect_node

        def suspect(s: Any, _orig: Any = orig, _ml: Any = ml) -> None:
            _orig(s)
            if s.node == victim[0] and victim[0] not in first_suspect:
                st = _ml.nodes.get(s.node)
                if st is not None and st.state == NodeState.SUSPECT:
                    first_suspect[victim[0]] = sim.now

        ml.suspect_node = suspect

    def on_packet(t: float, src: Any, dst: Any, data: bytes) -> None:
        # after the crash, nothing but probes (direct or on someone's behalf) is sent to it
        # as datagrams: idle gossip rounds send nothing, push/pull uses streams
        if dst.name == victim[0] and victim[0] not in first_probe:
            first_probe[victim[0]] = t

    world.net.on_packet = on_packet
    rows: list[dict[str, float]] = []
    for i in range(trials):
        t0 = sim.now + 5.0 + rng.random() * interval
        sim.run_until(t0)
        who = rng.choice(sorted(world.live()))
        victim[0] = who
        watch.arm(MemberFailed, who)
        world.crash(who)
        live = set(world.live())
        deadline = t0 + 200.0
        while sim.now < deadline and not live <= set(watch.seen):
            sim.run_until(sim.now + 1.0)
        row = {
            "first_probe": first_probe.get(who, math.inf) - t0,
            "first_suspect": first_suspect.get(who, math.inf) - t0,
            "first_failed": min(watch.seen.values(), default=math.inf) - t0,
            "all_failed": (max(watch.seen.values()) - t0) if live <= set(watch.seen) else math.inf,
        }
        rows.append(row)
        log(
            f"  detection {i + 1}/{trials}: probed {row['first_probe']:.2f} s, suspected "
            f"{row['first_suspect']:.2f} s, first failed {row['first_failed']:.2f} s, "
            f"all {row['all_failed']:.2f} s"
        )
    world.net.on_packet = None
    out: dict[str, Any] = {"trials": trials, "probe_interval_s": interval}
    # SWIM counts whole protocol periods from the crash to the end of the period in which
    # the dead member is first probed: ceil(first probe / interval), mean e/(e-1) in theory
    periods = [math.ceil(r["first_probe"] / interval) for r in rows]
    out["swim_periods_mean"] = statistics.fmean(periods)
    for key in ("first_probe", "first_suspect", "first_failed", "all_failed"):
        xs = [r[key] for r in rows]
        out[f"{key}_p50_s"] = statistics.median(xs)
        out[f"{key}_p99_s"] = pct(xs, 0.99)
    return out


def measure(n: int, args: argparse.Namespace, view_bytes: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"size": n}
    if view_bytes is not None:
        need_gib = view_bytes * n * n / 2**30
        out["estimated_gib"] = need_gib
        if need_gib > args.max_rss_gib:
            out["error"] = (
                f"not run: {n} members need ~{need_gib:.0f} GiB ({view_bytes:.0f} B per member "
                f"view x {n}^2 views), over --max-rss-gib {args.max_rss_gib:.0f}"
            )
            return out
    gc.disable()
    r0 = rss_mib()
    w0 = time.perf_counter()
    sim, world = build(n, args.seed, args.loss)
    gc.collect()
    gc.freeze()
    gc.enable()
    out["start_wall_s"] = time.perf_counter() - w0
    out["bytes_per_view"] = (rss_mib() - r0) * 2**20 / (n * n)
    log(f"{n}: converged start in {out['start_wall_s']:.1f} s wall")
    sim.run_until(sim.now + 5.0)
    w1 = time.perf_counter()
    if args.trials:
        out["dissemination"] = dissemination(sim, world, args.trials)
    if args.detections:
        out["detection"] = detection(sim, world, args.detections)
    out["wall_s"] = time.perf_counter() - w1
    out["virtual_s"] = sim.now
    return out


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nSWIM figures on the simulator (LAN preset, seed {args.seed}, loss {args.loss:.1%})")
    for r in results:
        n = r["size"]
        print(f"\n{n} members")
        if "error" in r:
            print(f"  {r['error']}")
            continue
        d = r.get("dissemination")
        if d:
            print(
                f"  dissemination, {d['trials']} updates, fanout {d['fanout']} every "
                f"{d['gossip_interval_s']:.1f} s; reached everyone in {d['reached_all']}/"
                f"{d['trials']}"
            )
            floor = d["floor_rounds"]
            p50 = d["rounds_all_p50"]
            print(f"    floor ceil(log_{d['fanout'] + 1} {n})           {floor:>8d} rounds")
            if p50 is not None:
                print(
                    f"    rounds to reach all, p50 / p99      {p50:>8.1f} / "
                    f"{d['rounds_all_p99']:.1f}   (p50 - floor = {p50 - floor:+.1f}; goal <= +2)"
                )
            print(f"    rounds to reach half, p50           {d['rounds_half_p50']:>8.1f}")
        t = r.get("detection")
        if t:
            iv = t["probe_interval_s"]
            print(f"  detection of a crashed member, {t['trials']} crashes (probe interval {iv} s)")
            for key, label in (
                ("first_probe", "first probe of the dead member"),
                ("first_suspect", "first suspicion (detection)"),
                ("first_failed", "first member reports it failed"),
                ("all_failed", "every member reports it failed"),
            ):
                p50, p99 = t[f"{key}_p50_s"], t[f"{key}_p99_s"]
                print(
                    f"    {label:34} p50 {p50:6.2f} s = {p50 / iv:5.2f} intervals, p99 {p99:6.2f} s"
                )
            print(
                f"    in SWIM's protocol periods (crash to the end of the period of the first "
                f"probe), mean {t['swim_periods_mean']:.2f}; SWIM's e/(e-1) = "
                f"{E_OVER_E_MINUS_1:.2f}"
            )
        print(
            f"  cost: converged start {r['start_wall_s']:.1f} s wall, "
            f"{r['virtual_s']:.0f} virtual s in {r['wall_s']:.1f} s wall, "
            f"{r['bytes_per_view']:.0f} B per member view"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000", help="comma-separated pool sizes")
    p.add_argument("--trials", type=int, default=20, help="dissemination trials per size")
    p.add_argument("--detections", type=int, default=10, help="crashes per size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss on every link")
    p.add_argument("--max-rss-gib", type=float, default=0.9 * mem_total_gib())
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.disable(logging.CRITICAL)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    view_bytes = None
    if any(n > 1000 for n in sizes):
        gc.disable()
        r0 = rss_mib()
        _, probe = build(300, args.seed, args.loss)
        view_bytes = (rss_mib() - r0) * 2**20 / 300**2
        del probe
        gc.enable()
    results = []
    for n in sizes:
        log(f"SWIM figures, {n} members")
        results.append(measure(n, args, view_bytes if n > 1000 else None))
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, {mem_total_gib():.1f} GiB; load {load[0]:.2f}")


if __name__ == "__main__":
    main()
