"""`gossamer demo`: three servers and two clients on 127.0.0.1, a leader killed during
writes, a crash, a graceful leave, with timings.

What it does, in order (every step bounded; every process stopped by PID at the end):

1. starts three ``gossamer agent -server -bootstrap-expect=3`` processes, which find
   each other in gossip and bootstrap Raft, and two clients; every agent is given the
   servers' gossip addresses with ``-retry-join``, as Consul deployments are;
2. waits until every agent lists all members alive, prints ``gossamer members`` and
   ``gossamer operator raft list-peers``;
3. the catalog, through a client agent (which forwards to the servers): every member
   registered from gossip, two ``web`` instances with HTTP checks against two small web
   servers the demo runs, and a ``db`` with a TTL check; discovery
   (``/v1/health/service/web?passing``); a blocking query answered when one web server
   stops and its check turns critical; KV with the CLI;
4. Raft failover: a writer issues writes through a client while the demo SIGKILLs the
   leader; it reports when a new leader was elected and when the first write was
   acknowledged after the kill, restarts the old leader, waits for it to catch up, and
   checks that every acknowledged write is readable from every server;
5. SIGKILLs one client and reports when each survivor marked it failed, and when the
   catalog turned its ``serfHealth`` critical;
6. sends SIGINT to the other client (a graceful leave) and reports when each survivor saw
   it left, and when the catalog deregistered it;
7. rehearses in the simulator (:mod:`sim`, virtual time, the same gossip cores): the same
   crash in the same pool over 20 seeds, beside what the real agents just did, then a
   datacenter of a 3-DC WAN pool going dark and coming back;
8. prints a summary and exits 0, or 1 if any step missed its deadline, an acknowledged
   write was lost, or a simulated check failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

from gossamer.cluster import Cluster, GossamerAgent, free_port, wait_for

__all__ = ["main"]

STEP_TIMEOUT_S = {"lan": 60.0, "local": 30.0, "wan": 180.0}
SERVERS = 3


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
    p.add_argument(
        "--agents", type=int, default=5, help="how many agents: 3 servers and the rest clients"
    )
    p.add_argument(
        "--profile",
        default="lan",
        choices=sorted(STEP_TIMEOUT_S),
        help="gossip timing preset for every agent (memberlist's presets)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the agents' logs and data")
    args = p.parse_args(argv)
    if args.agents < 5:
        p.error("--agents must be at least 5 (3 servers, 2 clients)")
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
    _say(f"==> gossamer demo: {n} agents on 127.0.0.1 (3 servers), gossip profile '{profile}'")
    _say(f"    logs and data dirs under {c.root}\n")
    t0 = time.monotonic()
    agents: list[GossamerAgent] = []
    # every agent is told every server's gossip address (Consul's retry_join), so a
    # server that restarts finds the others again, whichever it is
    serf_ports = [free_port() for _ in range(SERVERS)]
    for i in range(1, n + 1):
        server = i <= SERVERS
        extra = ["-server", f"-bootstrap-expect={SERVERS}", f"-server-port={free_port()}"]
        join = [f"127.0.0.1:{p}" for k, p in enumerate(serf_ports, 1) if k != i]
        a = c.gossamer(
            f"node-{i}",
            profile=profile,
            join=join,
            extra=extra if server else [],
            serf_port=serf_ports[i - 1] if server else None,
        )
        agents.append(a)
        _say(
            f"   {time.monotonic() - t0:6.2f} s  started node-{i} (pid {a.pid}), "
            f"{'a server' if server else 'a client'}, gossip {a.gossip_addr}, HTTP {a.http_addr}"
        )
    first = agents[0]
    servers = agents[:SERVERS]
    client = agents[SERVERS]

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
    _say("\n==> the servers found each other in gossip and bootstrapped Raft")
    leader = _leader(servers, timeout)
    _say(
        f"   {time.monotonic() - t0:6.2f} s  {leader.name} leads. "
        "$ gossamer operator raft list-peers"
    )
    for line in _cli(client, "operator", "raft list-peers").splitlines():
        _say("   " + line)
    web_servers = _catalog_demo(client, timeout)
    failover = _failover(c, servers, client, timeout)

    victim = agents[SERVERS + 1]
    survivors = [a for a in agents if a is not victim]
    _say(f"\n==> SIGKILL {victim.name} (pid {victim.pid}): no goodbye, its peers must notice")
    t_kill = time.monotonic()
    victim.signal(signal.SIGKILL)
    victim.wait(5.0)
    crit = _when(
        lambda: _serf_health(first, victim.name) == "critical",
        timeout,
        t_kill,
        f"catalog: {victim.name}'s serfHealth is critical",
    )
    failed = _watch(survivors, victim.name, "failed", timeout, t_kill)
    crit_s = crit.result()

    leaver = client
    rest = [a for a in survivors if a is not leaver]
    _say(f"\n==> SIGINT {leaver.name} (pid {leaver.pid}): a graceful leave")
    t_leave = time.monotonic()
    leaver.signal(signal.SIGINT)
    dereg = _when(
        lambda: leaver.name not in {n["Node"] for n in first.get("/v1/catalog/nodes")},
        timeout,
        t_leave,
        f"catalog: {leaver.name} deregistered",
    )
    left = _watch(rest, leaver.name, "left", timeout, t_leave)
    dereg_s = dereg.result()
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
    _say(f"   {victim.name} crash -> catalog critical   {crit_s:6.2f} s")
    _say(f"   {leaver.name} leave -> deregistered       {dereg_s:6.2f} s")
    _say(f"   leader killed -> new leader           {failover['elected_s']:6.2f} s")
    _say(f"   leader killed -> first acked write    {failover['first_ack_s']:6.2f} s")
    _say(
        f"   acknowledged writes kept              {failover['kept']:.0f} of "
        f"{failover['acked']:.0f} on each of {SERVERS} servers"
    )
    for w in web_servers:
        w.shutdown()
    if code != 0:
        _say(f"   {leaver.name} did not exit cleanly (status {code})")
        return 1
    _say("\n==> stopping the remaining agents")
    for a in rest:
        a.stop()
    ok = _rehearse(n, profile, failed, victim.name) and failover["kept"] == failover["acked"]
    _say(f"\n   done in {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


def _leader_addr(a: GossamerAgent) -> str:
    try:
        return str(a.get("/v1/status/leader", 2.0))
    except (OSError, ValueError):
        return ""


def _leader(servers: list[GossamerAgent], timeout: float) -> GossamerAgent:
    """The live server every live server names as leader (by its server RPC port)."""
    live = [a for a in servers if a.alive()]
    ports = {str(a.members()[a.name]["Tags"]["port"]): a for a in live}
    found: list[GossamerAgent] = []

    def agreed() -> bool:
        seen = {_leader_addr(a) for a in live}
        port = next(iter(seen)).rpartition(":")[2] if len(seen) == 1 else ""
        if port in ports:
            found[:] = [ports[port]]
        return bool(found)

    wait_for(agreed, timeout, 0.02, "the servers to agree on a leader")
    return found[0]


class _Writer(threading.Thread):
    """Writes demo/w/0, 1, ... through one agent, one at a time; remembers which were
    acknowledged (200 true), when each was sent and when it was acknowledged."""

    def __init__(self, via: GossamerAgent) -> None:
        super().__init__(daemon=True)
        self.via = via
        self.acked: list[tuple[int, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 1_000_000:
            sent = time.monotonic()
            try:
                status, text = self.via.put(f"/v1/kv/demo/w/{n}", str(n), timeout_s=15.0)
            except OSError:
                status, text = 0, ""
            if status == 200 and text == "true":
                self.acked.append((n, sent, time.monotonic()))
            else:
                time.sleep(0.02)
            n += 1


def _failover(
    c: Cluster, servers: list[GossamerAgent], client: GossamerAgent, timeout: float
) -> dict[str, float]:
    _say(f"\n==> Raft: writes through {client.name} while the leader is SIGKILLed")
    writer = _Writer(client)
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) >= 100, timeout, 0.02, "100 acknowledged writes")
        lead = _leader(servers, timeout)
        _say(f"   {len(writer.acked)} writes acknowledged; SIGKILL {lead.name} (pid {lead.pid})")
        t_kill = time.monotonic()
        lead.signal(signal.SIGKILL)
        lead.wait(5.0)
        new = _leader(servers, timeout)
        elected_s = time.monotonic() - t_kill
        _say(f"   {elected_s:6.2f} s  {new.name} leads")
        # the first write sent after the kill and acknowledged: the new leader's
        wait_for(
            lambda: any(s > t_kill for _, s, _ in writer.acked), timeout, 0.01, "a write after"
        )
        first_ack_s = min(t for _, s, t in writer.acked if s > t_kill) - t_kill
        _say(f"   {first_ack_s:6.2f} s  first write sent after the kill is acknowledged")
        after = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= after + 100, timeout, 0.02, "100 more writes")
        _say(f"   restarting {lead.name} from its data dir")
        c.restart(lead)
    finally:
        writer.stop.set()
        writer.join(30.0)
    acked = {n for n, _, _ in writer.acked}
    last = max(acked)
    t_restart = time.monotonic()
    wait_for(
        lambda: lead.put(f"/v1/kv/demo/w/{last}?stale", method="GET")[0] == 200,
        timeout,
        0.05,
        f"{lead.name} to catch up",
    )
    _say(f"   {time.monotonic() - t_restart:6.2f} s  {lead.name} caught up")
    kept = len(acked)
    for a in servers:
        keys = set(a.get("/v1/kv/demo/w/?keys&stale", 30.0))
        missing = sorted(n for n in acked if f"demo/w/{n}" not in keys)
        if missing:
            _say(f"   {a.name} LACKS acknowledged writes {missing[:10]}")
            kept = min(kept, len(acked) - len(missing))
    _say(
        f"   {len(acked)} writes acknowledged; {kept} of them readable from every server "
        f"(?stale, each server's own replica)"
    )
    return {
        "elected_s": elected_s,
        "first_ack_s": first_ack_s,
        "acked": float(len(acked)),
        "kept": float(kept),
    }


def _when(
    condition: Callable[[], bool], timeout_s: float, t0: float, what: str
) -> concurrent.futures.Future[float]:
    """Poll ``condition`` in a thread; the future gives the seconds from ``t0`` until it
    held (and the line is printed then), or raises TimeoutError."""

    def poll() -> float:
        wait_for(condition, timeout_s, 0.05, what)
        elapsed = time.monotonic() - t0
        _say(f"   {elapsed:6.2f} s  {what}")
        return elapsed

    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(poll)
    pool.shutdown(wait=False)
    return future


def _serf_health(agent: GossamerAgent, node: str) -> str | None:
    for check in agent.get(f"/v1/health/node/{node}"):
        if check["CheckID"] == "serfHealth":
            return str(check["Status"])
    return None


def _cli(agent: GossamerAgent, verb: str, sub: str, *args: str) -> str:
    """``gossamer VERB SUB -http-addr=<agent> ARGS...`` (flags go after the subcommand;
    ``sub`` may be two words: ``raft list-peers``)."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gossamer",
            verb,
            *sub.split(),
            f"-http-addr={agent.http_addr}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (r.stdout + r.stderr).rstrip()


def _web_server() -> http.server.ThreadingHTTPServer:
    """A tiny web server on 127.0.0.1 that an HTTP health check can probe."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _catalog_demo(server: GossamerAgent, timeout: float) -> list[http.server.ThreadingHTTPServer]:
    _say(f"\n==> the catalog through {server.name}, a client: it forwards to the servers over")
    _say("    gRPC; every member is registered from gossip with a passing serfHealth check")
    wait_for(
        lambda: len(server.get("/v1/catalog/nodes")) == len(server.members()),
        timeout,
        0.05,
        "the catalog to list every member",
    )
    _say(_cli(server, "catalog", "nodes"))

    webs = [_web_server(), _web_server()]
    _say(f"\n==> register services on {server.name}'s agent: two web instances with HTTP checks")
    _say("    (against two web servers this demo runs), a db with a TTL check")
    for i, w in enumerate(webs, 1):
        port = w.server_address[1]
        svc = {
            "ID": f"web-{i}",
            "Name": "web",
            "Tags": ["v1", "http"],
            "Port": port,
            "Check": {"HTTP": f"http://127.0.0.1:{port}/health", "Interval": "1s"},
        }
        status, text = server.put("/v1/agent/service/register", svc)
        if status != 200:
            raise RuntimeError(f"registering web-{i}: {status} {text}")
    db = {"Name": "db", "Port": 5432, "Check": {"TTL": "30s", "CheckID": "db-ttl"}}
    server.put("/v1/agent/service/register", db)
    server.put("/v1/agent/check/pass/db-ttl?note=replication%20ok")

    def passing(name: str) -> list[str]:
        rows = server.get(f"/v1/health/service/{name}?passing")
        return sorted(r["Service"]["ID"] for r in rows)

    t = time.monotonic()
    wait_for(
        lambda: passing("web") == ["web-1", "web-2"] and passing("db") == ["db"],
        timeout,
        0.05,
        "web and db to pass their checks",
    )
    _say(f"   {time.monotonic() - t:6.2f} s  every check passing")
    _say(_cli(server, "catalog", "services", "-tags"))
    _say(f"   discovery: /v1/health/service/web?passing -> {passing('web')}")

    _say("\n==> a blocking query waits on web's health; stop web-2's web server")
    status, headers, _ = _raw(server, "/v1/health/service/web?passing")
    index = headers["X-Consul-Index"]
    answer: list[tuple[float, list[str]]] = []

    def block() -> None:
        rows = server.get(f"/v1/health/service/web?passing&index={index}&wait=60s", 90.0)
        answer.append((time.monotonic(), sorted(r["Service"]["ID"] for r in rows)))

    waiter = threading.Thread(target=block, daemon=True)
    waiter.start()
    time.sleep(0.2)
    t_stop = time.monotonic()
    webs[1].shutdown()
    webs[1].server_close()
    waiter.join(timeout)
    if not answer:
        raise TimeoutError("the blocking query did not return")
    _say(
        f"   {answer[0][0] - t_stop:6.2f} s  the blocking query (index {index}) returned: "
        f"passing web instances {answer[0][1]}"
    )
    check = next(ch for ch in server.get("/v1/health/checks/web") if ch["ServiceID"] == "web-2")
    _say(f"   web-2's check: {check['Status']}: {check['Output'][:70]}")

    _say("\n==> KV with the CLI")
    _say("   $ gossamer kv put config/web/replicas 3")
    _say("   " + _cli(server, "kv", "put", "config/web/replicas", "3"))
    _say("   $ gossamer kv get -detailed config/web/replicas")
    for line in _cli(server, "kv", "get", "-detailed", "config/web/replicas").splitlines():
        _say("   " + line)
    return [webs[0]]


def _raw(agent: GossamerAgent, path: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(f"http://{agent.http_addr}{path}", timeout=10) as r:
        return r.status, dict(r.headers), r.read()


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
target = "node:{victim}"
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


def _rehearse(n: int, profile: str, real_failed: dict[str, float], victim: str) -> bool:
    """The simulator's half of the demo: quick, deterministic, the same cores."""
    import statistics

    from sim.run import run_seeds
    from sim.scenario import loads

    _say("\n==> the same crash rehearsed in the simulator: 20 seeds on virtual time")
    crash = loads(_CRASH.format(profile=profile, n=n, victim=victim), "demo-crash.toml")
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
