"""Gossip figures of gossamer side by side with HashiCorp serf, measured in the same run.

Usage::

    python bench/bench_gossip.py [--size 16] [--profile lan] [--trials 5] [--json out.json]

The benchmark starts two homogeneous clusters of ``--size`` real agents on 127.0.0.1, one
of serf agents and one of gossamer agents, with the same memberlist timing preset
(``-profile`` for serf, ``-gossip-profile`` for gossamer), and measures, in this order:

1. **Idle cost.** After every member sees all ``size`` alive and a further ``--settle-s``,
   each agent's CPU time (``/proc/PID/stat`` utime+stime) over a ``--idle-window-s`` window
   and its RSS (``/proc/PID/status`` VmRSS) at the window's end. Nothing polls the agents
   during the window. Then what one member-list poll costs an agent (shows how much the
   observers below load each kind).
2. **Join convergence**, ``--join-trials`` times (default twice ``--trials``: the figure is
   a few gossip rounds, so it needs more samples and finer polling, ``--join-poll-ms``
   50, and each trial takes a few seconds). A fresh agent (the ``size+1``-th) is started with
   no join, then told to join one member through its API (serf: RPC ``join``; gossamer:
   ``PUT /v1/agent/join/``); the clock starts just before that call, so process start-up
   (Go vs CPython) is not in the figure; it is reported separately. Figure: time until all
   ``size+1`` agents list it alive. The joiner then leaves gracefully before the next trial.
3. **Failure detection**, ``--trials`` times. One member (a different one each trial, never
   the seed) is killed with SIGKILL; figures: time until the first survivor and until all
   survivors list it ``failed``. The victim is then restarted (same name, ports and data dir)
   and the next trial starts once every member lists it alive again, plus ``--gap-s``.
   Restarting rather than building a fresh cluster per trial keeps a run short (a fresh
   16-agent gossamer cluster costs ~15 s of CPython start-up) and is what a real cluster
   sees; it is fair because both kinds get the same treatment, and the restarted member
   refutes its own death with a higher incarnation exactly as memberlist intends.

Polling: one thread per observed agent polls that agent's member list every ``--poll-ms``
(default 100) on a persistent connection: gossamer over HTTP keep-alive
(``GET /v1/agent/members``), serf over its msgpack RPC (:class:`gossamer.cluster.SerfRPC`)
rather than ``serf members``, whose process spawn costs about 10 ms of wall time and CPU
per call (measured and printed each run) and, with 15 observers at 10 Hz, would keep a
2-core machine busy. A change is dated at the midpoint between the last poll that did not
show it and the first that did (each poll dated at the midpoint of its request), so the
granularity is about half the poll interval plus the round trip; both are printed.

Interleaving. By default both clusters stay up for the whole run: the idle window is the
same window for both, and trials alternate (serf then gossamer on even trials, gossamer
then serf on odd ones). The machine this runs on is often shared (other people's tests,
builds), and a noisy neighbour that lands on one kind's phase in a sequential run skews
the ratio; interleaved, it hits both kinds alike. The price is the other cluster idling
beside the measured one: 16 idle agents of either kind use well under 10 % of one core
(printed). ``--sequential`` runs one kind's cluster at a time instead. Every idle window
and detection trial also records the CPU the rest of the machine used (``/proc/stat``
busy time minus our agents' and this process's), printed as "load from other processes":
when it is high, distrust that run.

Medians and p90 (linear interpolation between ranks) are over trials; the ratio is
gossamer / serf of the medians (or means, for idle cost). Nothing is asserted: this is a
benchmark, not a test (shared/STYLE.md).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.client
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gossamer.cluster import (
    SERF,
    Cluster,
    GossamerAgent,
    SerfAgent,
    SerfRPC,
    cluster,
)

GOSSAMER_STATUS = ("none", "alive", "leaving", "left", "failed")
"""serf.MemberStatus by number, as /v1/agent/members gives it."""

CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("serf", "gossamer")

View = dict[str, str]
"""One agent's member list: node name -> status ("alive", "failed", "left", ...)."""
Agent = GossamerAgent | SerfAgent


# --------------------------------------------------------------------------- statistics


def percentile(xs: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks (numpy's default)."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/PID/status (VmRSS, VmHWM...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


# --------------------------------------------------------------------------- member views


def gossamer_client(agent: GossamerAgent) -> Callable[[], View]:
    """A member-list reader on one persistent HTTP connection (reconnects on failure)."""
    conn: list[http.client.HTTPConnection] = []

    def read() -> View:
        if not conn:
            conn.append(http.client.HTTPConnection("127.0.0.1", agent.http_port, timeout=5.0))
        try:
            conn[0].request("GET", "/v1/agent/members")
            r = conn[0].getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
        except Exception:
            conn.pop().close()
            raise
        return {m["Name"]: GOSSAMER_STATUS[m["Status"]] for m in json.loads(body)}

    return read


def serf_client(agent: SerfAgent) -> Callable[[], View]:
    """A member-list reader on one persistent serf RPC connection (reconnects on failure)."""
    rpc: list[SerfRPC] = []

    def read() -> View:
        if not rpc:
            rpc.append(agent.rpc(timeout_s=5.0))
        try:
            members = rpc[0].members()
        except Exception:
            rpc.pop().close()
            raise
        return {n: str(m["status"]) for n, m in members.items()}

    return read


def client_for(agent: Agent) -> Callable[[], View]:
    if isinstance(agent, SerfAgent):
        return serf_client(agent)
    return gossamer_client(agent)


# --------------------------------------------------------------------------- watching


@dataclass
class Observation:
    """What one observer's poll thread saw. Times are time.monotonic() values."""

    observer: str
    polls: int = 0
    errors: int = 0
    last_error: str = ""
    rtt_s_sum: float = 0.0
    first_mid: float | None = None
    """Midpoint of the first poll that succeeded."""
    last_false_mid: float | None = None
    """Midpoint of the last poll on which the predicate was false."""
    true_mid: float | None = None
    """Midpoint of the first poll on which the predicate was true."""

    def at(self, t0: float) -> float | None:
        """When the change happened, relative to t0: midway between the two polls around it
        (the lower bound clamped to t0, since nothing can change before the action)."""
        if self.true_mid is None:
            return None
        lo = max(self.last_false_mid if self.last_false_mid is not None else t0, t0)
        return max(0.0, (lo + self.true_mid) / 2 - t0)

    def gap(self) -> float | None:
        """Width of the window the change is known to lie in (the timing uncertainty)."""
        if self.true_mid is None or self.last_false_mid is None:
            return None
        return self.true_mid - self.last_false_mid


def watch(
    agents: list[Agent],
    pred: Callable[[View], bool],
    *,
    poll_s: float,
    timeout_s: float,
    action: Callable[[], float] | None = None,
    prime_timeout_s: float = 20.0,
) -> tuple[float, dict[str, Observation]]:
    """Poll every agent's view (one thread each) until ``pred`` holds on all, or timeout.

    With ``action``: wait until every observer has one successful poll on which ``pred`` is
    false (the baseline), then call ``action``, which returns the time the clock starts.
    Returns (t0, observations by agent name)."""
    stop = threading.Event()
    obs = {a.name: Observation(a.name) for a in agents}
    primed = threading.Semaphore(0)

    def run(agent: Agent, o: Observation) -> None:
        read = client_for(agent)
        primed_once = False
        try:
            while not stop.is_set():
                t_send = time.monotonic()
                try:
                    view = read()
                except Exception as e:  # a member that is starting or stopping
                    o.errors += 1
                    o.last_error = f"{type(e).__name__}: {e}"
                    stop.wait(poll_s)
                    continue
                t_recv = time.monotonic()
                mid = (t_send + t_recv) / 2
                o.polls += 1
                o.rtt_s_sum += t_recv - t_send
                if o.first_mid is None:
                    o.first_mid = mid
                if pred(view):
                    o.true_mid = mid
                    if not primed_once:
                        primed.release()
                    return
                o.last_false_mid = mid
                if not primed_once:
                    primed_once = True
                    primed.release()
                stop.wait(max(0.0, t_send + poll_s - time.monotonic()))
        finally:
            if not primed_once and o.true_mid is None:
                primed.release()

    threads = [
        threading.Thread(target=run, args=(a, obs[a.name]), daemon=True, name=f"poll-{a.name}")
        for a in agents
    ]
    for t in threads:
        t.start()
    try:
        t0 = time.monotonic()
        if action is not None:
            deadline = time.monotonic() + prime_timeout_s
            for _ in threads:
                if not primed.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("observers did not all answer before the action")
            early = [o.observer for o in obs.values() if o.true_mid is not None]
            if early:
                raise RuntimeError(f"condition already true before the action on {early}")
            t0 = action()
        deadline = t0 + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(10.0)
    return t0, obs


def all_alive(names: list[str]) -> Callable[[View], bool]:
    want = list(names)
    return lambda v: all(v.get(n) == "alive" for n in want)


def status_is(node: str, *statuses: str) -> Callable[[View], bool]:
    return lambda v: v.get(node) in statuses


def converge(agents: list[Agent], names: list[str], poll_s: float, timeout_s: float) -> float:
    """Wait until every agent lists every name alive; the seconds it took. Raises on timeout."""
    t0, obs = watch(agents, all_alive(names), poll_s=poll_s, timeout_s=timeout_s)
    late = [o.observer for o in obs.values() if o.true_mid is None]
    if late:
        errs = {o.observer: o.last_error for o in obs.values() if o.last_error}
        raise TimeoutError(f"no convergence after {timeout_s}s on {late}; errors {errs}")
    return max(o.true_mid for o in obs.values() if o.true_mid is not None) - t0


# --------------------------------------------------------------------------- agents


def start_agent(c: Cluster, kind: str, name: str, profile: str, join: list[str]) -> Agent:
    if kind == "serf":
        # cluster.py runs serf at debug level for the interop tests; gossamer logs at info,
        # so serf does too here (Go's flag package keeps the last value given).
        return c.serf(name, profile=profile, join=join, extra=["-log-level=info"])
    return c.gossamer(name, profile=profile, join=join)


def api_join(agent: Agent, addr: str) -> None:
    """Ask a running agent to join ``addr`` through its API; returns when the join is done."""
    if isinstance(agent, SerfAgent):
        with agent.rpc(timeout_s=30.0) as rpc:
            n = rpc.join([addr])
        if n < 1:
            raise RuntimeError(f"{agent.name}: join {addr} contacted no node")
        return
    status, text = agent.put(f"/v1/agent/join/{addr}", timeout_s=30.0)
    if status != 200:
        raise RuntimeError(f"{agent.name}: join {addr}: HTTP {status} {text}")


def poll_cost(agent: Agent, n: int = 1000) -> dict[str, float]:
    """What one member-list poll costs the polled agent (its CPU per call) and the poller
    (round trip): the load the detection and join observers put on each agent."""
    read = client_for(agent)
    read()
    cpu0 = cpu_seconds(agent.pid)
    t0 = time.perf_counter()
    for _ in range(n):
        read()
    wall = (time.perf_counter() - t0) / n
    cpu = (cpu_seconds(agent.pid) - cpu0) / n
    return {"agent_cpu_ms": cpu * 1e3, "rtt_ms": wall * 1e3, "calls": n}


def serf_cli_cost(agent: SerfAgent, n: int = 10) -> dict[str, float]:
    """Wall time and CPU (children's rusage) of ``serf members -format=json``, against one RPC
    round trip; the reason this benchmark polls serf over RPC."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for _ in range(n):
        agent.members()
    wall = (time.perf_counter() - t0) / n
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / n
    with agent.rpc() as rpc:
        t0 = time.perf_counter()
        for _ in range(10 * n):
            rpc.members()
        rpc_wall = (time.perf_counter() - t0) / (10 * n)
    return {"cli_wall_ms": wall * 1e3, "cli_cpu_ms": cpu * 1e3, "rpc_wall_ms": rpc_wall * 1e3}


# --------------------------------------------------------------------------- phases


@dataclass
class KindResult:
    kind: str
    start_s: list[float] = field(default_factory=list)
    """Per agent: spawn until its API answers."""
    converge_s: float | None = None
    idle: list[dict[str, Any]] = field(default_factory=list)
    idle_window_s: float = 0.0
    joins: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    # derived figures ------------------------------------------------------

    def detect_first(self) -> list[float]:
        return [d["first_s"] for d in self.detections if d["first_s"] is not None]

    def detect_all(self) -> list[float]:
        return [d["all_s"] for d in self.detections if d["all_s"] is not None]

    def join_all(self) -> list[float]:
        return [j["all_s"] for j in self.joins if j["all_s"] is not None]

    def idle_cpu_pct(self) -> list[float]:
        return [s["cpu_pct"] for s in self.idle]

    def idle_rss_mb(self) -> list[float]:
        return [s["rss_kb"] / 1024 for s in self.idle]

    def poll_rtt_ms(self) -> float | None:
        polls = sum(d["polls"] for d in self.detections)
        rtt = sum(d["rtt_s_sum"] for d in self.detections)
        return rtt / polls * 1e3 if polls else None

    def poll_gap_ms(self) -> float | None:
        gaps = [g for d in self.detections for g in d["gaps_s"]]
        return statistics.mean(gaps) * 1e3 if gaps else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_busy_s() -> float:
    """CPU time the whole machine spent busy (all cores; steal and iowait excluded), in s."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = v
    return (user + nice + system + irq + softirq) / CLK_TCK


class LoadMeter:
    """Over a window: the CPU our agents and this process used, and what the rest of the
    machine used (other users' tests, builds...), in % of one core. The second is the noisy
    neighbour gauge: when it is high the timings of that window are suspect."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.machine0 = machine_busy_s()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        t = os.times()
        return t.user + t.system + sum(cpu_seconds(p) for p in self.pids)

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        machine = machine_busy_s() - self.machine0
        ours = self._ours() - self.ours0
        return {
            "wall_s": wall,
            "machine_cpu_pct": 100.0 * machine / wall,
            "ours_cpu_pct": 100.0 * ours / wall,
            "foreign_cpu_pct": max(0.0, 100.0 * (machine - ours) / wall),
        }


class Side:
    """One kind's cluster through the phases: its agents, its results, its first error."""

    def __init__(self, kind: str, args: argparse.Namespace, c: Cluster) -> None:
        self.kind = kind
        self.args = args
        self.c = c
        self.members: list[Agent] = []
        self.res = KindResult(kind)
        self.poll_s = args.poll_ms / 1e3

    @property
    def ok(self) -> bool:
        return self.res.error is None

    def guard(self, what: str, fn: Callable[[], object]) -> None:
        """Run one phase step; the first failure is recorded and ends this side's run."""
        if not self.ok:
            return
        try:
            fn()
        except Exception as e:
            self.res.error = f"{what}: {type(e).__name__}: {e}"
            log(f"{self.kind}: FAILED: {self.res.error}")
            if self.args.keep_logs:
                log(f"{self.kind}: logs in {self.c.root}")

    def pids(self) -> list[int]:
        return [a.pid for a in self.members if a.alive()]

    def boot(self) -> None:
        args = self.args
        t_all = time.monotonic()
        for i in range(args.size):
            t = time.monotonic()
            join = [self.members[0].gossip_addr] if self.members else []
            name = f"{self.kind[0]}{i:02d}"
            self.members.append(start_agent(self.c, self.kind, name, args.profile, join))
            self.res.start_s.append(time.monotonic() - t)
        names = [a.name for a in self.members]
        self.res.converge_s = converge(self.members, names, self.poll_s, args.converge_timeout_s)
        log(
            f"{self.kind}: {args.size} agents up in {time.monotonic() - t_all:.1f}s, "
            "all see all alive"
        )

    def costs(self) -> None:
        if isinstance(self.members[0], SerfAgent):
            self.res.extra["serf_cli_cost"] = serf_cli_cost(self.members[0])
        self.res.extra["poll_cost"] = poll_cost(self.members[-1])

    def join(self, k: int) -> None:
        j = join_trial(self.c, self.kind, self.args, self.members, k)
        self.res.joins.append(j)
        log(f"{self.kind}: join {k + 1}/{self.args.join_trials}: all {_fmt(j['all_s'])}s")

    def detect(self, k: int, others: list[Side]) -> None:
        d = detection_trial(self.c, self.kind, self.args, self.members, k, others)
        self.res.detections.append(d)
        log(
            f"{self.kind}: detect {k + 1}/{self.args.trials} ({d['victim']}): first "
            f"{_fmt(d['first_s'])}s all {_fmt(d['all_s'])}s ({d['seen']}/{d['observers']}); "
            f"cluster CPU {d['cluster_cpu_pct']:.0f}%, other load "
            f"{d['load']['foreign_cpu_pct']:.0f}%"
        )


def measure_idle(sides: list[Side], window_s: float) -> None:
    """One window for every side's agents, nothing polling them."""
    agents = [(side, a) for side in sides for a in side.members]
    before = {a.pid: cpu_seconds(a.pid) for _, a in agents}
    meter = LoadMeter([a.pid for _, a in agents])
    t0 = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - t0
    load = meter.stop()
    for side, a in agents:
        cpu = cpu_seconds(a.pid) - before[a.pid]
        side.res.idle.append(
            {
                "agent": a.name,
                "pid": a.pid,
                "cpu_s": cpu,
                "window_s": elapsed,
                "cpu_pct": 100.0 * cpu / elapsed,
                "rss_kb": status_kb(a.pid, "VmRSS"),
                "hwm_kb": status_kb(a.pid, "VmHWM"),
            }
        )
    for side in sides:
        side.res.idle_window_s = elapsed
        side.res.extra["idle_load"] = load
        log(
            f"{side.kind}: idle CPU {statistics.mean(side.res.idle_cpu_pct()):.2f}% per agent, "
            f"RSS {statistics.mean(side.res.idle_rss_mb()):.1f} MB "
            f"(other load {load['foreign_cpu_pct']:.0f}%)"
        )


def join_trial(
    c: Cluster, kind: str, args: argparse.Namespace, members: list[Agent], k: int
) -> dict[str, Any]:
    name = f"{kind[0]}join{k}"
    seed = members[k % len(members)]
    t_spawn = time.monotonic()
    joiner = start_agent(c, kind, name, args.profile, join=[])
    start_s = time.monotonic() - t_spawn
    # The joiner lists itself alive from its start, so the observers are the others.
    observers = members
    join_call: list[float] = []

    def act() -> float:
        t0 = time.monotonic()
        api_join(joiner, seed.gossip_addr)
        join_call.append(time.monotonic() - t0)
        return t0

    try:
        t0, obs = watch(
            observers,
            status_is(name, "alive"),
            poll_s=args.join_poll_ms / 1e3,
            timeout_s=args.join_timeout_s,
            action=act,
        )
    finally:
        # Leave gracefully and let everyone see it, so the next trial starts quiet.
        joiner.stop(timeout_s=15.0)
    times = {o.observer: o.at(t0) for o in obs.values()}
    seen = [t for t in times.values() if t is not None]
    rec = {
        "joiner": name,
        "joined": seed.name,
        "joiner_start_s": start_s,
        "join_call_s": join_call[0] if join_call else None,
        "all_s": max(seen) if len(seen) == len(observers) else None,
        "seen": len(seen),
        "observers": len(observers),
        "per_observer_s": times,
        "raw": [asdict(o) for o in obs.values()],
    }
    with contextlib.suppress(TimeoutError):
        watch(
            members,
            status_is(name, "left", "failed"),
            poll_s=args.join_poll_ms / 1e3,
            timeout_s=args.join_timeout_s,
        )
    return rec


def detection_trial(
    c: Cluster,
    kind: str,
    args: argparse.Namespace,
    members: list[Agent],
    k: int,
    others: list[Side],
) -> dict[str, Any]:
    victim = members[1 + k % (len(members) - 1)]
    survivors = [a for a in members if a is not victim]
    cpu0 = {a.name: cpu_seconds(a.pid) for a in survivors}
    self0 = os.times()
    meter = LoadMeter([a.pid for a in survivors] + [p for o in others for p in o.pids()])

    def kill() -> float:
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL)
        return t0

    t0, obs = watch(
        survivors,
        status_is(victim.name, "failed"),
        poll_s=args.poll_ms / 1e3,
        timeout_s=args.detect_timeout_s,
        action=kill,
    )
    wall = time.monotonic() - t0
    self1 = os.times()
    load = meter.stop()
    cluster_cpu = sum(cpu_seconds(a.pid) - cpu0[a.name] for a in survivors)
    victim.wait(5.0)
    times = {o.observer: o.at(t0) for o in obs.values()}
    seen = [t for t in times.values() if t is not None]
    rec = {
        "victim": victim.name,
        "first_s": min(seen) if seen else None,
        "all_s": max(seen) if len(seen) == len(survivors) else None,
        "seen": len(seen),
        "observers": len(survivors),
        "per_observer_s": times,
        "gaps_s": [g for o in obs.values() if (g := o.gap()) is not None],
        "polls": sum(o.polls for o in obs.values()),
        "rtt_s_sum": sum(o.rtt_s_sum for o in obs.values()),
        "poll_errors": sum(o.errors for o in obs.values()),
        "cluster_cpu_pct": 100.0 * cluster_cpu / wall,
        "bench_cpu_pct": 100.0 * ((self1.user + self1.system) - (self0.user + self0.system)) / wall,
        "load": load,
        "raw": [asdict(o) for o in obs.values()],
    }
    # Restart the victim (same name, ports and data dir; its argv joins the seed) and wait
    # until everyone lists it alive again.
    t_restart = time.monotonic()
    c.restart(victim)
    rec["rejoin_s"] = converge(
        members, [a.name for a in members], args.poll_ms / 1e3, args.converge_timeout_s
    )
    rec["restart_to_all_alive_s"] = time.monotonic() - t_restart
    return rec


def run_sides(sides: list[Side], args: argparse.Namespace) -> None:
    """All phases for these sides together: one idle window for all, then trials that
    alternate between the sides (serf first on even trials, gossamer first on odd)."""
    for side in sides:
        side.guard("start", side.boot)
    log(f"settling {args.settle_s:.0f}s")
    time.sleep(args.settle_s)
    live = [s for s in sides if s.ok]
    if live:
        try:
            measure_idle(live, args.idle_window_s)
        except Exception as e:
            for side in live:
                side.res.error = f"idle: {type(e).__name__}: {e}"
    for side in sides:
        side.guard("costs", side.costs)
    time.sleep(args.gap_s)
    for k in range(args.join_trials):
        for side in sides if k % 2 == 0 else sides[::-1]:
            side.guard(f"join trial {k + 1}", functools.partial(side.join, k))
    time.sleep(args.gap_s)
    for k in range(args.trials):
        for side in sides if k % 2 == 0 else sides[::-1]:
            others = [o for o in sides if o is not side and o.ok]
            side.guard(f"detection trial {k + 1}", functools.partial(side.detect, k, others))
            time.sleep(args.gap_s)


def run(args: argparse.Namespace) -> dict[str, KindResult]:
    results: dict[str, KindResult] = {}
    if args.sequential:
        for kind in args.kinds:
            log(f"{kind}: starting {args.size} agents, profile {args.profile}")
            with cluster(keep_logs=args.keep_logs) as c:
                side = Side(kind, args, c)
                run_sides([side], args)
                results[kind] = side.res
        return results
    with contextlib.ExitStack() as stack:
        sides = [
            Side(kind, args, stack.enter_context(cluster(keep_logs=args.keep_logs)))
            for kind in args.kinds
        ]
        log(f"starting {args.size} agents of each of {', '.join(args.kinds)}, {args.profile}")
        run_sides(sides, args)
        for side in sides:
            results[side.kind] = side.res
    return results


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def machine_facts() -> dict[str, Any]:
    serf_version = ""
    if SERF is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([SERF, "version"], capture_output=True, text=True, timeout=10)
            serf_version = out.stdout.splitlines()[0] if out.stdout else ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "serf"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.returncode == 0:
                serf_version += f" (Debian package {out.stdout})"
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "serf": serf_version,
        "serf_path": SERF,
        "loadavg_at_start": os.getloadavg(),
        "git": git_state(),
    }


def git_state() -> str:
    """The commit measured, and the files that differ from it (gossamer runs from the tree)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def code_digest() -> str:
    """A digest of the agent's source as it is now: agents (and restarts) import the work
    tree when they start, so a tree edited during a run mixes code versions."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for pkg in ("gossamer", "swim", "catalog", "federation", "proxy", "gateways"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    path = os.path.join(dirpath, fn)
                    h.update(os.path.relpath(path, root).encode())
                    with contextlib.suppress(OSError), open(path, "rb") as f:
                        h.update(f.read())
    return h.hexdigest()[:16]


def extra(s: KindResult, g: KindResult, key: str, name: str) -> tuple[float | None, float | None]:
    """One figure of ``KindResult.extra[key]`` for serf and for gossamer."""
    return s.extra.get(key, {}).get(name), g.extra.get(key, {}).get(name)


def rows(s: KindResult, g: KindResult) -> list[tuple[str, float | None, float | None, str]]:
    def med(f: Callable[[KindResult], list[float]]) -> tuple[float | None, float | None]:
        return median(f(s)), median(f(g))

    def p90(f: Callable[[KindResult], list[float]]) -> tuple[float | None, float | None]:
        return percentile(f(s), 0.9), percentile(f(g), 0.9)

    def mean(f: Callable[[KindResult], list[float]]) -> tuple[float | None, float | None]:
        a, b = f(s), f(g)
        return (statistics.mean(a) if a else None), (statistics.mean(b) if b else None)

    out = [
        ("detect: first failed, median (s)", *med(KindResult.detect_first), "ratio <= 1.0"),
        ("detect: first failed, p90 (s)", *p90(KindResult.detect_first), ""),
        ("detect: all failed, median (s)", *med(KindResult.detect_all), "ratio <= 1.0"),
        ("detect: all failed, p90 (s)", *p90(KindResult.detect_all), ""),
        ("join: seen by all, median (s)", *med(KindResult.join_all), "ratio <= 1.0"),
        ("join: seen by all, p90 (s)", *p90(KindResult.join_all), ""),
        ("idle CPU per agent, mean (%)", *mean(KindResult.idle_cpu_pct), "ratio <= 2.0"),
        ("idle RSS per agent, mean (MB)", *mean(KindResult.idle_rss_mb), "gossamer <= 40 MB"),
        ("agent start to API up, median (s)", *med(lambda r: r.start_s), "(info)"),
        ("agent CPU per members poll (ms)", *extra(s, g, "poll_cost", "agent_cpu_ms"), "(info)"),
    ]
    return out


def report(args: argparse.Namespace, results: dict[str, KindResult], facts: dict[str, Any]) -> str:
    s = results.get("serf", KindResult("serf"))
    g = results.get("gossamer", KindResult("gossamer"))
    lines = [
        "gossip benchmark: gossamer vs serf, same machine, same run",
        f"command: {facts['command']}",
        f"machine: nproc={facts['nproc']} cpu={facts['cpu']!r} kernel={facts['kernel']} "
        f"python={facts['python']} serf={facts['serf']!r}",
        f"tree:    {facts['git']}",
        f"setup:   size={args.size} profile={args.profile} trials={args.trials} "
        f"(joins {args.join_trials}) poll={args.poll_ms:.0f}ms (joins {args.join_poll_ms:.0f}ms) "
        f"settle={args.settle_s:.0f}s "
        f"idle-window={args.idle_window_s:.0f}s; "
        + (
            "one kind at a time"
            if args.sequential
            else "both clusters up, one idle window, trials alternate"
        ),
        "",
        f"{'figure':<36}{'serf':>10}{'gossamer':>10}{'g/s':>8}   goal",
    ]
    for label, sv, gv, goal in rows(s, g):
        rt = ratio(gv, sv)
        lines.append(f"{label:<36}{_fmt(sv):>10}{_fmt(gv):>10}{_fmt(rt):>8}   {goal}")
    lines.append("")
    for r in (s, g):
        if not r.detections and not r.joins and not r.idle:
            continue
        d_inc = sum(1 for d in r.detections if d["all_s"] is None)
        j_inc = sum(1 for j in r.joins if j["all_s"] is None)
        cpu = [d["cluster_cpu_pct"] for d in r.detections]
        bench = [d["bench_cpu_pct"] for d in r.detections]
        lines.append(
            f"{r.kind}: detect first {[round(x, 2) for x in r.detect_first()]} "
            f"all {[round(x, 2) for x in r.detect_all()]} (incomplete {d_inc}); "
            f"join {[round(x, 2) for x in r.join_all()]} (incomplete {j_inc})"
        )
        cpu_pct = r.idle_cpu_pct()
        lines.append(
            f"{r.kind}: idle CPU per agent min/max {_fmt(min(cpu_pct, default=None))}/"
            f"{_fmt(max(cpu_pct, default=None))}%; poll round trip "
            f"{_fmt(r.poll_rtt_ms())} ms, detection window {_fmt(r.poll_gap_ms(), 0)} ms; "
            f"cluster CPU during detection {_fmt(median(cpu), 0)}% (bench process "
            f"{_fmt(median(bench), 0)}%)"
        )
        foreign = [d["load"]["foreign_cpu_pct"] for d in r.detections]
        idle_load = r.extra.get("idle_load", {}).get("foreign_cpu_pct")
        lines.append(
            f"{r.kind}: load from other processes on the machine (% of one core): idle window "
            f"{_fmt(idle_load, 0)}, detection trials median {_fmt(median(foreign), 0)} "
            f"max {_fmt(max(foreign, default=None), 0)}"
        )
        if r.error:
            lines.append(f"{r.kind}: ERROR {r.error}")
    cli = s.extra.get("serf_cli_cost")
    if cli:
        lines.append(
            f"serf poll cost: `serf members` CLI {cli['cli_wall_ms']:.1f} ms wall, "
            f"{cli['cli_cpu_ms']:.1f} ms CPU per call; persistent RPC "
            f"{cli['rpc_wall_ms']:.2f} ms per call (used here)"
        )
    if facts.get("code_digest_start") != facts.get("code_digest_end"):
        lines.append(
            "WARNING: gossamer's source changed during the run; agents started (or restarted) "
            "after the change ran different code. Rerun on a quiet tree."
        )
    lines.append(f"elapsed: {facts['elapsed_s']:.0f}s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--size", type=int, default=16, help="agents per cluster (default 16)")
    p.add_argument("--profile", choices=("lan", "wan", "local"), default="lan")
    p.add_argument("--trials", type=int, default=5, help="join and detection trials per kind")
    p.add_argument("--json", metavar="PATH", help="write every raw sample here")
    p.add_argument("--kinds", default=",".join(KINDS), help="which kinds, in order")
    p.add_argument("--poll-ms", type=float, default=100.0, help="poll interval per observer")
    p.add_argument("--join-trials", type=int, help="join trials per kind (default: 2 x --trials)")
    p.add_argument(
        "--join-poll-ms", type=float, default=50.0, help="poll interval during join trials"
    )
    p.add_argument("--settle-s", type=float, default=30.0, help="idle before the CPU window")
    p.add_argument("--idle-window-s", type=float, default=30.0, help="CPU sampling window")
    p.add_argument("--gap-s", type=float, default=5.0, help="quiet time between trials")
    p.add_argument("--detect-timeout-s", type=float, default=120.0)
    p.add_argument("--join-timeout-s", type=float, default=60.0)
    p.add_argument("--converge-timeout-s", type=float, default=120.0)
    p.add_argument("--keep-logs", action="store_true", help="keep the agents' logs")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="one kind's cluster at a time (default: both up, trials interleaved)",
    )
    args = p.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k]
    if not set(args.kinds) <= set(KINDS):
        p.error(f"--kinds: choose from {KINDS}")
    if args.size < 3:
        p.error("--size must be at least 3")
    if args.trials < 1:
        p.error("--trials must be at least 1")
    if args.join_trials is None:
        args.join_trials = 2 * args.trials
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "serf" in args.kinds and SERF is None:
        print("serf is not installed (apt-get install serf)", file=sys.stderr)
        return 2
    t_start = time.monotonic()
    facts = machine_facts()
    facts["code_digest_start"] = code_digest()
    facts["command"] = " ".join(
        shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv]
    )
    results = run(args)
    facts["elapsed_s"] = time.monotonic() - t_start
    facts["code_digest_end"] = code_digest()
    print(report(args, results, facts))
    if args.json:
        doc = {
            "args": {k: v for k, v in vars(args).items()},
            "machine": facts,
            "results": {k: asdict(r) for k, r in results.items()},
            "figures": {
                label: {"serf": sv, "gossamer": gv, "ratio": ratio(gv, sv), "goal": goal}
                for label, sv, gv, goal in rows(
                    results.get("serf", KindResult("serf")),
                    results.get("gossamer", KindResult("gossamer")),
                )
            },
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 1 if any(r.error for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
