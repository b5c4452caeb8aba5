"""`gossamer demo`: five real agents on 127.0.0.1, a crash, a graceful leave, with timings.

What it does, in order (every step bounded; every process stopped by PID at the end):

1. starts five ``gossamer agent`` processes; four join the first with ``-retry-join``;
2. waits until every agent lists all five alive and prints ``gossamer members``;
3. SIGKILLs one agent and reports when each survivor marked it failed;
4. sends SIGINT to another (a graceful leave) and reports when each survivor saw it left;
5. rehearses in the simulator (:mod:`sim`, virtual time, the same gossip cores): the same
   crash in the same pool over 20 seeds, beside what the real agents just did, then a
   datacenter of a 3-DC WAN pool going dark and coming back;
6. prints a summary and exits 0, or 1 if any step missed its deadline or a simulated
   check failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import signal
import subprocess
import sys
import time

from gossamer.cluster import Cluster, GossamerAgent, wait_for

__all__ = ["main"]

STEP_TIMEOUT_S = {"lan": 60.0, "local": 30.0, "wan": 180.0}


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _views(agents: list[GossamerAgent], node: str) -> dict[str, str | None]:
    """Each agent's idea of ``node``'s status, asked concurrently."""

    def ask(a: GossamerAgent) -> str | None:
        try:
            return a.status_of(node)
        except OSError:
            return "unreachable"

    with concurrent.futures.ThreadPoolExecutor(len(agents)) as ex:
        return dict(zip([a.name for a in agents], ex.map(ask, agents), strict=True))


def _watch(
    agents: list[GossamerAgent], node: str, want: str, timeout_s: float, t0: float
) -> dict[str, float]:
    """Poll until every agent reports ``node`` as ``want``; return when each first did."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(agents):
        now = time.monotonic()
        for name, status in _views(agents, node).items():
            if status == want and name not in seen:
                seen[name] = now - t0
                _say(f"   {now - t0:6.2f} s  {name} marks {node} {want}")
        if time.monotonic() > deadline:
            missing = sorted({a.name for a in agents} - set(seen))
            raise TimeoutError(
                f"{', '.join(missing)} did not mark {node} {want} in {timeout_s:.0f} s"
            )
        time.sleep(0.05)
    return seen


def _members_table(agent: GossamerAgent) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "gossamer", "members", f"-http-addr={agent.http_addr}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (r.stdout or r.stderr).rstrip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gossamer demo", description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=5, help="how many agents (at least 3)")
    p.add_argument(
        "--profile",
        default="lan",
        choices=sorted(STEP_TIMEOUT_S),
        help="gossip timing preset for every agent (memberlist's presets)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the agents' logs and data")
    args = p.parse_args(argv)
    if args.agents < 3:
        p.error("--agents must be at least 3")
    timeout = STEP_TIMEOUT_S[args.profile]
    c = Cluster(keep_logs=args.keep_logs)
    try:
        return _run(c, args.agents, args.profile, timeout)
    except (TimeoutError, RuntimeError) as e:
        _say(f"\ndemo failed: {e}")
        _say(f"agent logs are in {c.root}")
        c.keep_logs = True
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        c.close()


def _run(c: Cluster, n: int, profile: str, timeout: float) -> int:
    _say(f"==> gossamer demo: {n} agents on 127.0.0.1, gossip profile '{profile}'")
    _say(f"    logs and data dirs under {c.root}\n")
    t0 = time.monotonic()
    first = c.gossamer("node-1", profile=profile)
    agents = [first]
    _say(
        f"   {time.monotonic() - t0:6.2f} s  started node-1 (pid {first.pid}) gossip "
        f"{first.gossip_addr}, HTTP {first.http_addr}"
    )
    for i in range(2, n + 1):
        a = c.gossamer(f"node-{i}", profile=profile, join=[first.gossip_addr])
        agents.append(a)
        _say(
            f"   {time.monotonic() - t0:6.2f} s  started node-{i} (pid {a.pid}) gossip "
            f"{a.gossip_addr}, HTTP {a.http_addr}, joining node-1"
        )

    _say("\n==> waiting for every agent to see all members alive")
    t_conv = time.monotonic()
    names = {a.name for a in agents}

    def converged() -> bool:
        for a in agents:
            ms = a.members()
            if set(ms) != names or any(m["Status"] != 1 for m in ms.values()):
                return False
        return True

    wait_for(converged, timeout, 0.05, "the cluster to converge")
    converge_s = time.monotonic() - t_conv
    _say(
        f"   converged: {n} agents each list {n} alive members, "
        f"{converge_s:.2f} s after the last start\n"
    )
    _say(_members_table(first))

    victim = agents[2]
    survivors = [a for a in agents if a is not victim]
    _say(f"\n==> SIGKILL {victim.name} (pid {victim.pid}): no goodbye, its peers must notice")
    t_kill = time.monotonic()
    victim.signal(signal.SIGKILL)
    victim.wait(5.0)
    failed = _watch(survivors, victim.name, "failed", timeout, t_kill)

    leaver = agents[3]
    rest = [a for a in survivors if a is not leaver]
    _say(f"\n==> SIGINT {leaver.name} (pid {leaver.pid}): a graceful leave")
    t_leave = time.monotonic()
    leaver.signal(signal.SIGINT)
    left = _watch(rest, leaver.name, "left", timeout, t_leave)
    code = leaver.wait(timeout)
    _say(f"   {time.monotonic() - t_leave:6.2f} s  {leaver.name} exited with status {code}")

    _say("")
    _say(_members_table(first))
    _say("\n==> what happened")
    _say(f"   convergence of {n} agents           {converge_s:6.2f} s")
    _say(f"   {victim.name} crash -> first 'failed'     {min(failed.values()):6.2f} s")
    _say(f"   {victim.name} crash -> all 'failed'       {max(failed.values()):6.2f} s")
    _say(f"   {leaver.name} leave -> first 'left'       {min(left.values()):6.2f} s")
    _say(f"   {leaver.name} leave -> all 'left'         {max(left.values()):6.2f} s")
    if code != 0:
        _say(f"   {leaver.name} did not exit cleanly (status {code})")
        return 1
    _say("\n==> stopping the remaining agents")
    for a in rest:
        a.stop()
    ok = _rehearse(n, profile, failed)
    _say(f"\n   done in {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


_CRASH = """
[scenario]
name = "demo-crash"
description = "the demo's crash, on virtual time"
duration_s = 40
[swim]
preset = "{profile}"
[topology]
datacenters = {{ dc1 = {n} }}
naming = "node-{{i}}"
[network.same_dc]
latency_ms = 0.25
jitter_ms = 0.06
[[fault]]
at_s = 10
kind = "crash"
target = "node:node-3"
[checks]
detection_within_s = 30
"""

_DC_DARK = """
[scenario]
name = "demo-dc-dark"
description = "dc3's servers lose power at 30 s and come back at 240 s"
duration_s = 240
[swim]
preset = "wan"
enable_compression = false
[topology]
pool = "wan"
datacenters = { dc1 = 3, dc2 = 3, dc3 = 3 }
[network.cross_dc]
latency_ms = 40
jitter_ms = 4
[[fault]]
at_s = 30
kind = "power_off"
target = "dc:dc3"
duration_s = 210
[checks]
converged_within_s = 60
max_failed = 3
detection_within_s = 120
"""


def _rehearse(n: int, profile: str, real_failed: dict[str, float]) -> bool:
    """The simulator's half of the demo: quick, deterministic, the same cores."""
    import statistics

    from sim.run import run_seeds
    from sim.scenario import loads

    _say("\n==> the same crash rehearsed in the simulator: 20 seeds on virtual time")
    crash = loads(_CRASH.format(profile=profile, n=n), "demo-crash.toml")
    t = time.monotonic()
    runs = run_seeds(crash, range(1, 21))
    firsts = [min(r.figures["detection_first_s"]) for r in runs]
    alls = [max(r.figures["detection_all_s"]) for r in runs]
    _say(
        f"   crash -> first 'failed'  sim median {statistics.median(firsts):5.2f} s "
        f"(real run above: {min(real_failed.values()):.2f} s)"
    )
    _say(
        f"   crash -> all 'failed'    sim median {statistics.median(alls):5.2f} s "
        f"(real run above: {max(real_failed.values()):.2f} s)"
    )
    _say(f"   {len(runs)} seeds in {time.monotonic() - t:.1f} s of wall time")

    _say("\n==> a datacenter goes dark: 3 DCs x 3 servers in one WAN pool, 5 seeds")
    dark = loads(_DC_DARK, "demo-dc-dark.toml")
    t = time.monotonic()
    runs += (dark_runs := run_seeds(dark, range(1, 6)))
    det = [x for r in dark_runs for x in r.figures["detection_all_s"]]
    conv = [r.figures["convergence_s"] for r in dark_runs]
    _say(
        f"   dc3 powered off at 30 s: every survivor reports each dc3 server failed after "
        f"{min(det):.0f}-{max(det):.0f} s (WAN timings)"
    )
    _say(f"   dc3 back at 240 s: the pool converged again after {max(conv):.1f} s at most")
    _say(f"   {len(dark_runs)} seeds, {time.monotonic() - t:.1f} s of wall time")
    failing = [r for r in runs if not r.passed]
    for r in failing:
        _say(f"   FAILED {r.scenario} seed {r.seed}: {r.failed_checks()[0].detail}")
    if not failing:
        _say("   every check passed: no false failures, detection and convergence in bound")
    return not failing


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
