"""How fast the simulator runs, and how big a SWIM world fits: printed, never asserted.

Usage::

    python bench/bench_sim.py [--sizes 100,1000] [--steady-s 60] [--compressed-size 100]
                              [--engine-events 1000000] [--compare PATH] [--json out.json]

Two parts, each against a baseline measured in the same run (shared/STYLE.md):

1. **Engine**: simulated events per second with no-op nodes, beside a bare ``heapq``
   push/pop loop doing the same number of events (the floor any Python event loop pays),
   so the overhead ratio of ``Sim`` and of ``SimNode`` is visible on any machine. Three
   rows: the bare loop; ``Sim`` alone (an event that reschedules itself); and ``SimNode``
   hosts whose no-op core asks for a timer every few milliseconds and sends one datagram
   through ``Network`` every tenth tick (the path every SWIM event takes: engine, driver,
   core contract, wake-up bookkeeping, link model). Goal: >= 500,000 events/s.
2. **SWIM on the engine**, one fresh process per size (so peak RSS is that size's): real
   :class:`swim.serf.Serf` cores exchanging their encoded bytes, LAN preset, compression off
   unless stated. The N nodes boot at random moments in a join window of N/100 s (at least
   1 s) and each joins node 0, as ``-retry-join`` to one server would. Phases:

   * **join**: until every node lists all N alive (virtual and wall seconds);
   * **settle**: until no broadcast queue holds anything (every joiner re-gossips each
     member it learned by push/pull, memberlist's own behaviour: for N nodes, N^2 queued
     messages that drain at a few hundred per node per second);
   * **steady**: ``--steady-s`` virtual seconds of a converged, quiet cluster (probes,
     acks with coordinates, push/pulls, idle gossip rounds). Figures: wall and CPU
     seconds, virtual/wall ratio, events/s, datagrams/s, push/pulls, peak RSS.

   Goals: 1,000 nodes x 60 s in <= 3 s wall (>= 20x real time); 10,000 x 60 s in <= 60 s.
   Memory decides whether a size is feasible at all: each node holds a view of every
   member, so RSS grows as N^2 x (bytes per member view, printed). ``--max-rss-gib``
   (default: 90 % of MemTotal) refuses sizes whose estimate from the smallest size
   exceeds it, and says so.

``--compare PATH`` runs every SWIM size a second time with ``PATH`` (another checkout,
e.g. ``git worktree add /tmp/before <commit>``) first on ``sys.path``, and prints both side
by side: before/after figures from one run on one machine.

Garbage collection: the world is millions of long-lived objects (N^2 member views), and
CPython's cyclic collector rescans them at every full collection, which at 1,000 nodes cost
~20 % of the join and the steady phase. So by default the worker switches the collector off
while the world is built (join and settle make almost no reference cycles; reference
counting frees the rest), then calls ``gc.collect(); gc.freeze()`` (one real collection,
then the survivors leave the collector's generations) and measures the steady phase with
the collector on. ``--no-gc-freeze`` measures with the collector as Python ships it; the GC
seconds of the steady phase are printed either way. A long simulation would do the same.

Progress goes to stderr; the table to stdout; ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import functools
import gc
import heapq
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing it


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- engine


def bench_heapq(n: int) -> float:
    """The floor: push and pop ``n`` (time, seq, fn, arg) entries, calling a no-op."""

    def noop(arg: Any) -> None:
        return None

    q: list[tuple[float, int, Any, Any]] = []
    push, pop = heapq.heappush, heapq.heappop
    width = 1000  # events in flight, like a world of a thousand timers
    seq = 0
    for i in range(width):
        seq += 1
        push(q, (i * 0.001, seq, noop, None))
    t0 = time.perf_counter()
    for _ in range(n):
        t, _, fn, arg = pop(q)
        fn(arg)
        seq += 1
        push(q, (t + 1.0, seq, noop, None))
    return n / (time.perf_counter() - t0)


def _noop_factory(period: float, peer: tuple[str, int], node: Any, now: float) -> NoopCore:
    return NoopCore(period, peer, now)


def bench_sim_alone(n: int) -> float:
    from sim.engine import Sim

    sim = Sim(1)
    width = 1000

    def tick(i: int) -> None:
        sim.at(sim.now + 1.0, tick, i)

    for i in range(width):
        sim.at(i * 0.001, tick, i)
    t0 = time.perf_counter()
    sim.run(max_events=n)
    return n / (time.perf_counter() - t0)


from swim.events import SendPacket  # noqa: E402  (after ROOT; bench runs from a checkout)

_PAYLOAD = b"x" * 64


class NoopCore:
    """The core contract and nothing else: a timer every ``period`` (local) seconds and,
    every tenth tick, one datagram to a neighbour."""

    __slots__ = ("deadline", "now", "out", "peer", "period", "ticks")

    def __init__(self, period: float, peer: tuple[str, int], now: float) -> None:
        self.period = period
        self.peer = peer
        self.now = now
        self.deadline = now + period
        self.out: list[Any] = []
        self.ticks = 0

    def handle(self, now: float, event: Any) -> None:
        self.now = now
        if now >= self.deadline:
            self.deadline = now + self.period
            self.ticks += 1
            if self.ticks % 10 == 0:
                self.out.append(SendPacket(self.peer, _PAYLOAD))

    def next_deadline(self) -> float | None:
        return self.deadline

    def take_effects(self) -> list[Any]:
        out = self.out
        if not out:
            return out
        self.out = []
        return out


def bench_nodes(n: int, nodes: int = 1000) -> dict[str, float]:
    from sim.engine import Sim
    from sim.network import Network
    from sim.node import SimNode

    sim = Sim(1)
    net = Network(sim, sim.seeds.rng("network"))
    rng = sim.seeds.rng("bench")
    addrs = [(f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 7946) for i in range(nodes)]
    for i, addr in enumerate(addrs):
        period = 0.05 + rng.random() * 0.05
        peer = addrs[(i + 1) % nodes]
        SimNode(
            sim,
            net,
            name=f"n{i}",
            addr=addr,
            dc="dc1",
            factory=functools.partial(_noop_factory, period, peer),
        ).start()
    sim.run(max_events=nodes)  # warm up
    t0 = time.perf_counter()
    ran = sim.run(max_events=n)
    dt = time.perf_counter() - t0
    return {"events_s": ran / dt, "packets": float(net.stats.packets_sent)}


# --------------------------------------------------------------------------- SWIM worker


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _queued(q: Any) -> int:
    n: int = q.queued if hasattr(q, "queued") else len(q)
    return n


def _addr(i: int) -> tuple[str, int]:
    return (f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 7946)


def swim_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One size, in this process. Uses only APIs the pre-optimisation tree also has, so
    ``--compare`` can run it against an older checkout."""
    logging.disable(logging.CRITICAL)
    from sim.engine import Sim
    from sim.network import Network
    from sim.node import SimNode
    from swim.config import SwimConfig
    from swim.events import JoinRequested
    from swim.serf import Serf, SerfConfig

    n = args.worker
    rss0 = _rss_mib()
    sim = Sim(args.seed)
    net = Network(sim, sim.seeds.rng("network"))
    cfg = SerfConfig(swim=SwimConfig.lan().replace(enable_compression=args.compression))
    member_events = [0]

    def observe(node: Any, eff: Any) -> None:
        member_events[0] += 1

    def factory(node: Any, now: float) -> Serf:
        core = Serf(
            name=node.name,
            addr=node.addr[0],
            port=node.addr[1],
            config=cfg,
            tags={"role": "node", "dc": node.dc},
            rng=sim.seeds.rng("node", node.name, node.boots),
            entropy=sim.seeds.entropy("node", node.name, node.boots),
        )
        core.start(now)
        return core

    def converged() -> bool:
        return all(node.up and len(node.core.members) == n for node in nodes)

    def queued() -> int:
        total = 0
        for node in nodes:
            c = node.core
            total += _queued(c.ml.broadcasts) + _queued(c.broadcasts)
            total += _queued(c.event_broadcasts) + _queued(c.query_broadcasts)
        return total

    nodes: list[Any] = []
    out: dict[str, Any] = {"size": n, "compression": args.compression, "start": args.start}
    if args.gc_freeze:
        gc.disable()
    if args.start == "converged":
        from sim.swimworld import NodeSpec, SwimWorld

        specs = [NodeSpec(f"n{i}", "dc1", "lan", _addr(i)) for i in range(n)]
        world = SwimWorld(sim, net, specs, swim=cfg.swim, serf=cfg)
        for node in world.nodes.values():
            node.observer = observe
        w0 = time.perf_counter()
        world.start_converged(log_joins=False)
        nodes[:] = world.nodes.values()
        out["converged_start_wall_s"] = time.perf_counter() - w0
        log(f"  {n}: converged start in {out['converged_start_wall_s']:.1f} s wall")
        t = 0.0
    else:
        nodes[:] = [
            SimNode(
                sim,
                net,
                name=f"n{i}",
                addr=_addr(i),
                dc="dc1",
                factory=factory,
                observer=observe,
            )
            for i in range(n)
        ]
        seed_addr = nodes[0].addr
        window = max(1.0, n / 100) if args.join_window_s is None else args.join_window_s
        rng = sim.seeds.rng("workload", "start")

        def boot(node: Any) -> None:
            node.start()
            if node.addr != seed_addr:
                node.deliver(JoinRequested(0, ((None, seed_addr),)))

        for i, node in enumerate(nodes):
            sim.at(0.0 if i == 0 else rng.uniform(0.0, window), boot, node)

        w0, c0 = time.perf_counter(), time.process_time()
        t = 0.0
        step = 1.0
        while True:
            t += step
            sim.run_until(t)
            if t >= window and converged():
                break
            if time.perf_counter() - w0 > args.max_phase_s:
                out["error"] = f"not converged after {t:.0f} virtual s"
                return out
        out["join_virtual_s"] = t
        out["join_wall_s"] = time.perf_counter() - w0
        out["join_cpu_s"] = time.process_time() - c0
        out["join_events"] = sim.events_run
        log(f"  {n}: joined at {t:.0f} virtual s, {out['join_wall_s']:.1f} s wall")
        w1 = time.perf_counter()
        while queued():
            t += step
            sim.run_until(t)
            if time.perf_counter() - w1 > args.max_phase_s:
                out["error"] = f"queues not drained after {t:.0f} virtual s"
                return out
        out["settle_virtual_s"] = t - out["join_virtual_s"]
        out["settle_wall_s"] = time.perf_counter() - w1
        out["settled_converged"] = converged()
        log(f"  {n}: queues empty at {t:.0f} virtual s, {out['settle_wall_s']:.1f} s wall")

    gc.collect()
    out["rss_converged_mib"] = _rss_mib()
    out["bytes_per_member_view"] = (out["rss_converged_mib"] - rss0) * 2**20 / (n * n)
    if args.gc_freeze:
        gc.freeze()
        gc.enable()
    gc_time = [0.0, 0.0]

    def gc_cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(gc_cb)
    e0, p0, s0 = sim.events_run, net.stats.packets_sent, net.stats.streams
    w2, c2 = time.perf_counter(), time.process_time()
    sim.run_until(t + args.steady_s)
    wall = time.perf_counter() - w2
    cpu = time.process_time() - c2
    gc.callbacks.remove(gc_cb)
    events = sim.events_run - e0
    packets = net.stats.packets_sent - p0
    out.update(
        steady_virtual_s=args.steady_s,
        steady_wall_s=wall,
        steady_cpu_s=cpu,
        steady_gc_s=gc_time[0],
        ratio=args.steady_s / wall,
        events=events,
        events_s=events / wall,
        packets=packets,
        packets_s=packets / wall,
        push_pulls=net.stats.streams - s0,
        still_converged=converged(),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        member_events=member_events[0],
    )
    return out


def run_worker(size: int, args: argparse.Namespace, tree: str | None) -> dict[str, Any]:
    """Run one size in a fresh interpreter (with ``tree`` first on sys.path)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(size),
        "--steady-s",
        str(args.steady_s),
        "--seed",
        str(args.seed),
        "--max-phase-s",
        str(args.max_phase_s),
    ]
    if args.compression:
        cmd.append("--compression")
    if args.start != "converged":
        cmd += ["--start", args.start]
    if not args.gc_freeze:
        cmd.append("--no-gc-freeze")
    if args.join_window_s is not None:
        cmd += ["--join-window-s", str(args.join_window_s)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([tree or str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return {"size": size, "error": f"worker exited with {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- the report


def mem_total_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float | int):
        return format(v, spec)
    return str(v)


ROWS: list[tuple[str, str, str]] = [
    ("converged start: wall s", "converged_start_wall_s", ".1f"),
    ("join: virtual s", "join_virtual_s", ".0f"),
    ("join: wall s", "join_wall_s", ".1f"),
    ("settle: virtual s (queues drain)", "settle_virtual_s", ".0f"),
    ("settle: wall s", "settle_wall_s", ".1f"),
    ("steady: virtual s", "steady_virtual_s", ".0f"),
    ("steady: wall s", "steady_wall_s", ".2f"),
    ("steady: CPU s", "steady_cpu_s", ".2f"),
    ("steady: of which GC s", "steady_gc_s", ".2f"),
    ("steady: virtual/wall", "ratio", ".1f"),
    ("steady: events/s (wall)", "events_s", ",.0f"),
    ("steady: datagrams/s (wall)", "packets_s", ",.0f"),
    ("steady: push/pulls", "push_pulls", "d"),
    ("steady: still converged", "still_converged", ""),
    ("RSS converged, MiB", "rss_converged_mib", ",.0f"),
    ("peak RSS, MiB", "peak_rss_mib", ",.0f"),
    ("bytes per member view", "bytes_per_member_view", ",.0f"),
]


def print_table(results: list[dict[str, Any]], compare: dict[int, dict[str, Any]]) -> None:
    for r in results:
        n = r["size"]
        label = f"SWIM, {n} nodes, LAN, compression {'on' if r.get('compression') else 'off'}"
        print(f"\n{label}")
        if "error" in r and "steady_wall_s" not in r:
            print(f"  failed: {r['error']}")
        before = compare.get(n) if not r.get("compression") else None
        head = f"  {'':34} {'this tree':>12}"
        if before is not None:
            head += f" {'--compare':>12} {'ratio':>7}"
        print(head)
        for title, key, spec in ROWS:
            line = f"  {title:34} {fmt(r.get(key), spec):>12}"
            if before is not None:
                b = before.get(key)
                line += f" {fmt(b, spec):>12}"
                v = r.get(key)
                numbers = isinstance(v, float | int) and isinstance(b, float | int)
                if numbers and v and b and not isinstance(v, bool):
                    line += f" {b / v:>6.1f}x"
            print(line)
        if r.get("steady_wall_s"):
            goal = {1000: 3.0, 10000: 60.0}.get(n)
            if goal is not None:
                scaled = r["steady_wall_s"] * 60.0 / r["steady_virtual_s"]
                print(f"  goal: 60 virtual s in <= {goal:.0f} s wall; this run: {scaled:.1f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="comma-separated node counts")
    p.add_argument("--steady-s", type=float, default=60.0, help="virtual seconds measured")
    p.add_argument("--compressed-size", type=int, default=100, help="0 = skip that row")
    p.add_argument("--engine-events", type=int, default=1_000_000)
    p.add_argument("--skip-engine", action="store_true")
    p.add_argument("--skip-swim", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--start",
        choices=("converged", "join"),
        default="converged",
        help="converged: every node starts knowing all (SwimWorld.start_converged); "
        "join: boot in a window and join node 0, then wait for the queues to drain",
    )
    p.add_argument("--join-window-s", type=float, default=None, help="default N/100, >= 1")
    p.add_argument("--max-phase-s", type=float, default=7200.0, help="wall bound per phase")
    p.add_argument("--max-rss-gib", type=float, default=None)
    p.add_argument("--compare", default=None, help="another checkout, run side by side")
    p.add_argument("--json", default=None)
    p.add_argument("--compression", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker is not None:
        print(json.dumps(swim_worker(args)))
        return 0

    report: dict[str, Any] = {
        "argv": sys.argv,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "mem_total_gib": round(mem_total_gib(), 1),
        "load_before": os.getloadavg(),
    }
    if not args.skip_engine:
        n = args.engine_events
        log(f"engine: {n} events each")
        base = bench_heapq(n)
        alone = bench_sim_alone(n)
        nodes = bench_nodes(n)
        report["engine"] = {"heapq_s": base, "sim_s": alone, "nodes_s": nodes["events_s"]}
        print(f"\nEngine, {n:,} events each (goal: >= 500,000 events/s with no-op nodes)")
        print(f"  {'bare heapq push/pop loop (baseline)':44} {base:>12,.0f} /s  1.00x")
        print(
            f"  {'Sim alone (self-rescheduling events)':44} {alone:>12,.0f} /s  {base / alone:.2f}x"
        )
        print(
            f"  {'Sim + 1,000 SimNodes, no-op cores, datagrams':44} "
            f"{nodes['events_s']:>12,.0f} /s  {base / nodes['events_s']:.2f}x"
        )
        print("  (the last column: how many times the bare loop's cost each event takes)")

    if not args.skip_swim:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        limit = args.max_rss_gib or 0.9 * mem_total_gib()
        results: list[dict[str, Any]] = []
        per_view: float | None = None
        for size in sizes:
            if per_view is not None:
                need = per_view * size * size / 2**30
                if need > limit:
                    log(f"  {size}: needs ~{need:.1f} GiB by the smaller sizes' bytes per view")
                    results.append(
                        {
                            "size": size,
                            "error": f"skipped: needs ~{need:.1f} GiB "
                            f"({per_view:.0f} B per member view x {size}^2) > {limit:.1f} GiB",
                        }
                    )
                    continue
            log(f"SWIM {size} nodes")
            r = run_worker(size, args, None)
            results.append(r)
            if r.get("bytes_per_member_view") and size >= 300:
                per_view = r["bytes_per_member_view"]
        if args.compressed_size:
            log(f"SWIM {args.compressed_size} nodes, compression on")
            args.compression = True
            results.append(run_worker(args.compressed_size, args, None))
            args.compression = False
        compare: dict[int, dict[str, Any]] = {}
        if args.compare:
            for size in sizes:
                if any(r["size"] == size and "steady_wall_s" in r for r in results):
                    log(f"SWIM {size} nodes, --compare tree")
                    compare[size] = run_worker(size, args, args.compare)
        report["swim"] = results
        report["compare"] = compare
        print_table(results, compare)

    report["load_after"] = os.getloadavg()
    print(
        f"\nmachine: {report['cpus']} CPUs, {report['mem_total_gib']} GiB, Python "
        f"{report['python']}; load average before/after: "
        f"{report['load_before'][0]:.2f} / {report['load_after'][0]:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
