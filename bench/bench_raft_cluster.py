"""A 3-server gossamer cluster against a 3-member etcd cluster, on 127.0.0.1, in the same
run with the same load generator (issue 5): durable writes, leader failover, and recovery
of a follower that missed many writes. Figures are printed, never asserted.

    python bench/bench_raft_cluster.py [--duration 5] [--clients 1,16,64] [--trials 5]
        [--recovery-writes 100000] [--only writes,failover,recovery] [--no-etcd]
        [--attempt-timeout-s 0.1] [--keep-logs]
    python bench/bench_raft_cluster.py --duration 2 --trials 2 --recovery-writes 5000

gossamer: three ``python -m gossamer agent -server -bootstrap-expect=3`` processes, each
with its own data dir (the Raft log in SQLite, WAL, ``synchronous=FULL``: an fsync per
batch), joined over gossip. etcd (Debian ``etcd-server`` 3.4): three members with a static
``--initial-cluster`` and their defaults (fsync on; heartbeat 100 ms, election 1000 ms).
Every phase gets fresh clusters, one system at a time (gossamer first), so the two never
share the CPU.

1. **Writes.** ``wrk -t1 -cN`` for ``--duration`` seconds per cell, N in ``--clients``:
   gossamer ``PUT /v1/kv/bench/w`` (body ``some value``), etcd's JSON gateway
   ``POST /v3/kv/put`` with the same key and value in base64; one key, overwritten. The
   load goes to the **leader** in both systems; one more row sends gossamer's load to a
   **follower** at the largest N (it forwards each write to the leader over gRPC). Figures:
   acknowledged writes/s, wrk's p50/p99 latency, ratio gossamer/etcd of writes/s (goal
   >= 0.5 at 64 clients), and the CPU each process used during the cell (100 % = one core:
   shows whether the leader is CPU-bound), and what the rest of the machine used.
2. **Failover**, ``--trials`` times per configuration. A writer thread issues writes one at
   a time (a fresh connection each), starting on the leader; an attempt fails when it is
   refused, answered with an error, or not answered within ``--attempt-timeout-s``
   (100 ms), and the writer then pauses 10 ms and tries the next member, round robin. Once
   it has written steadily for a moment, the leader is SIGKILLed. Figure: time from the
   kill to the first acknowledgement of a write *sent after* the kill (a write the old
   leader might have committed does not count); also printed, the time until a survivor
   first names a new leader (polled every 20 ms). The killed member is then restarted with
   the same data dir and the next trial waits until it has caught up and every member
   agrees on the leader. The short attempt timeout is the figure's resolution, and it is
   needed: both systems hold a write sent to a follower whose leader has just died (etcd
   forwards it to the dead leader and answers only at its 7 s request timeout; gossamer
   holds it until the election names a new leader), so with long timeouts the figure
   would time those, not the election. Configurations:
   gossamer default timing (goal median <= 2 s) and ``-raft-timing=low-latency`` (goal
   <= 500 ms); etcd default and ``--heartbeat-interval=50 --election-timeout=300`` (the
   like-for-like low-latency row).
3. **Recovery.** A follower is SIGKILLed, ``--recovery-writes`` writes are acknowledged
   through the leader (wrk, 64 connections, a Lua script that counts 200s; wrk is then
   stopped with SIGINT), the follower is restarted and polled every 50 ms. Figure: time from
   the restart until its applied index reaches the leader's commit index as it stood at
   the restart (gossamer: ``/v1/agent/self`` ``Stats.consul.applied_index`` against the
   leader's ``commit_index``; etcd: ``/v3/maintenance/status`` ``raftAppliedIndex`` against
   the leader's ``raftIndex``). It includes process start-up (CPython or Go, printed apart)
   and, for gossamer, replaying its own log into the store. Both compact their logs with
   their defaults: gossamer as Consul (a snapshot every 16,384 applied entries, 10,240
   kept behind it), etcd every 100,000 (``--snapshot-count``, 5,000 kept), so a follower
   that missed 100,000 writes gets a snapshot of the store and then the tail, while with a
   few thousand it gets the entries (gossamer sends 256 per AppendEntries). etcd opens its
   client API only once it has caught up, so its "API up" equals "caught up".

Caveats. Everything runs on one machine (2 cores here): wrk, the writer and the three
servers compete for the same cores, and a 3-member cluster on loopback has no network
latency, so the figures say where the CPU goes rather than what a real deployment would
see. etcd is Go and multi-threaded; each gossamer server is one CPython process (one core
at most). Fsync on a virtual disk is cheap (about 0.15 ms, bench_raft_disk.py) and etcd
batches more writes per fsync. Failover times include each system's randomised election
timeout, so they vary from trial to trial; medians over few trials move by tens of
percent. The machine may be shared: the background load (``/proc/stat`` busy time with
none of ours running) is printed at the start and the end, and per write cell the CPU of
processes other than ours; distrust a run where it is high.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench_catalog_http import Cell, free_port, lua, wrk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
KEY = "bench/w"
VALUE = "some value"
PHASES = ("writes", "failover", "recovery")


# ------------------------------------------------------------------ small helpers


def request(
    base: str, method: str, path: str, body: bytes | None, timeout_s: float
) -> tuple[int, bytes]:
    """One HTTP request on a fresh connection; raises OSError (or HTTPException) on failure."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def poll_until(what: str, check: Callable[[], bool], timeout_s: float, every_s: float) -> float:
    """Calls ``check`` until it is true; returns when it became so, raises after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return time.monotonic()
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(every_s)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    return (sum(parts) - parts[3] - parts[4]) * TICK_S


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def background_load_pct(seconds: float = 2.0) -> float:
    """Busy % of one core used by the machine while none of our processes run."""
    b0, s0, t0 = machine_busy_s(), self_cpu_s(), time.monotonic()
    time.sleep(seconds)
    return 100 * (machine_busy_s() - b0 - (self_cpu_s() - s0)) / (time.monotonic() - t0)


def fmt_ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:,.0f}"


# ------------------------------------------------------------------ clusters


@dataclass
class Member:
    name: str
    argv: list[str]
    base: str
    """Client API base URL, http://127.0.0.1:PORT."""
    log_path: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Status:
    is_leader: bool
    leader: str
    """Who this member believes leads: gossamer's leader address, etcd's member id ("" or
    "0": none)."""
    commit_index: int
    applied_index: int


@dataclass
class Cluster:
    """Three members of one system; the subclasses know how to talk to it."""

    label: str
    tmp: str
    members: list[Member] = field(default_factory=list)

    # What a subclass provides.
    def status(self, i: int, timeout_s: float = 2.0) -> Status:
        raise NotImplementedError

    def write(self, i: int, timeout_s: float) -> bool:
        raise NotImplementedError

    def leader_view(self, i: int, timeout_s: float) -> str:
        """Who member i believes leads, by the cheapest call ("" or "0": nobody)."""
        raise NotImplementedError

    def write_target(self, i: int) -> tuple[str, str]:
        """URL and wrk script that write the benchmark key through member i."""
        raise NotImplementedError

    def count_script(self, n: int, done_path: str) -> str:
        """A wrk script that writes until n writes were acknowledged, then stops and
        creates done_path."""
        raise NotImplementedError

    # Shared.
    def spawn(self, i: int) -> None:
        m = self.members[i]
        log = open(m.log_path, "ab")  # noqa: SIM115 - the child owns it; closed below
        try:
            m.proc = subprocess.Popen(m.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        finally:
            log.close()

    def start(self, timeout_s: float = 60.0) -> None:
        for i in range(len(self.members)):
            self.spawn(i)
        self.wait_stable(timeout_s)

    def kill(self, i: int) -> None:
        p = self.members[i].proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def stop(self) -> None:
        for i in range(len(self.members)):
            self.kill(i)

    def leader(self) -> int | None:
        """The member every live member agrees leads, or None."""
        views: set[str] = set()
        leader: int | None = None
        for i, m in enumerate(self.members):
            if not m.alive:
                continue
            s = self.status(i)
            views.add(s.leader)
            if s.is_leader:
                leader = i
        return leader if len(views) == 1 else None

    def wait_stable(self, timeout_s: float) -> int:
        """Until every member runs, agrees on one leader, has applied everything the leader
        committed, and the leader acknowledges a write; returns the leader."""
        # (leader, its commit index after one acknowledged write): written once, so that
        # the followers, who learn the commit index with the next heartbeat, can catch up.
        acked: list[tuple[int, int]] = []

        def check() -> bool:
            if not all(m.alive for m in self.members):
                dead = [m.name for m in self.members if not m.alive]
                raise SystemExit(f"{self.label}: {dead} exited (logs: rerun with --keep-logs)")
            lead = self.leader()
            if lead is None:
                return False
            if not acked or acked[0][0] != lead:
                if not self.write(lead, 2.0):
                    return False
                acked[:] = [(lead, self.status(lead).commit_index)]
            target = acked[0][1]
            return all(self.status(i).applied_index >= target for i in range(len(self.members)))

        try:
            poll_until(f"{self.label}: stable leader", check, timeout_s, 0.1)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; {self.describe()}") from None
        return acked[0][0]

    def describe(self) -> str:
        """Every member's view, for an error message."""
        views = []
        for i, m in enumerate(self.members):
            try:
                s = self.status(i)
                views.append(
                    f"{m.name}: leader={s.leader!r} is_leader={s.is_leader} "
                    f"commit={s.commit_index} applied={s.applied_index}"
                )
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                views.append(f"{m.name}: {'running' if m.alive else 'exited'}, {e!r}")
        return "; ".join(views)

    def caught_up(self, i: int, target: int) -> bool:
        return self.members[i].alive and self.status(i, 1.0).applied_index >= target


class GossamerCluster(Cluster):
    def __init__(self, label: str, tmp: str, low_latency: bool) -> None:
        super().__init__(label, tmp)
        n = 3
        serf = [free_port() for _ in range(n)]
        self.server_ports = [free_port() for _ in range(n)]
        for i in range(n):
            name = f"s{i + 1}"
            http_port = free_port()
            argv = [
                sys.executable,
                "-m",
                "gossamer",
                "agent",
                "-server",
                "-bootstrap-expect=3",
                f"-node={name}",
                "-bind=127.0.0.1",
                f"-serf-lan-port={serf[i]}",
                f"-http-port={http_port}",
                f"-server-port={self.server_ports[i]}",
                f"-data-dir={os.path.join(tmp, name)}",
                "-log-level=warn",
                "-retry-interval=1s",
            ]
            # Every member retries joining the others, so a restarted s1 finds them too.
            argv += [f"-retry-join=127.0.0.1:{serf[j]}" for j in range(n) if j != i]
            if low_latency:
                argv.append("-raft-timing=low-latency")
            self.members.append(
                Member(
                    name, argv, f"http://127.0.0.1:{http_port}", os.path.join(tmp, name + ".log")
                )
            )

    def status(self, i: int, timeout_s: float = 2.0) -> Status:
        code, body = request(self.members[i].base, "GET", "/v1/agent/self", None, timeout_s)
        if code != 200:
            raise ValueError(f"agent/self answered {code}")
        c = json.loads(body)["Stats"]["consul"]
        return Status(
            c["leader"] == "true",
            c.get("leader_addr", ""),
            int(c["commit_index"]),
            int(c["applied_index"]),
        )

    def write(self, i: int, timeout_s: float) -> bool:
        code, body = request(
            self.members[i].base, "PUT", f"/v1/kv/{KEY}", VALUE.encode(), timeout_s
        )
        return code == 200 and body.strip() == b"true"

    def leader_view(self, i: int, timeout_s: float) -> str:
        code, body = request(self.members[i].base, "GET", "/v1/status/leader", None, timeout_s)
        if code != 200:
            raise ValueError(f"status/leader answered {code}")
        return str(json.loads(body))

    def write_target(self, i: int) -> tuple[str, str]:
        return f"{self.members[i].base}/v1/kv/{KEY}", lua(self.tmp, "gput", "PUT", VALUE)

    def count_script(self, n: int, done_path: str) -> str:
        return _count_script(self.tmp, "gcount", "PUT", VALUE, n, done_path)


class EtcdCluster(Cluster):
    def __init__(self, label: str, tmp: str, heartbeat_ms: int | None, election_ms: int | None):
        super().__init__(label, tmp)
        n = 3
        peers = [free_port() for _ in range(n)]
        initial = ",".join(f"e{i + 1}=http://127.0.0.1:{peers[i]}" for i in range(n))
        for i in range(n):
            name = f"e{i + 1}"
            client = f"http://127.0.0.1:{free_port()}"
            peer = f"http://127.0.0.1:{peers[i]}"
            argv = [
                "etcd",
                "--name",
                name,
                "--data-dir",
                os.path.join(tmp, name),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                "new",
            ]
            if heartbeat_ms is not None and election_ms is not None:
                argv += [
                    f"--heartbeat-interval={heartbeat_ms}",
                    f"--election-timeout={election_ms}",
                ]
            self.members.append(Member(name, argv, client, os.path.join(tmp, name + ".log")))
        self.put_body = json.dumps(
            {
                "key": base64.b64encode(KEY.encode()).decode(),
                "value": base64.b64encode(VALUE.encode()).decode(),
            }
        )

    def status(self, i: int, timeout_s: float = 2.0) -> Status:
        code, body = request(
            self.members[i].base, "POST", "/v3/maintenance/status", b"{}", timeout_s
        )
        if code != 200:
            raise ValueError(f"maintenance/status answered {code}")
        d = json.loads(body)
        leader = d.get("leader", "0")
        return Status(
            leader == d["header"]["member_id"],
            leader,
            int(d["raftIndex"]),
            int(d["raftAppliedIndex"]),
        )

    def write(self, i: int, timeout_s: float) -> bool:
        code, body = request(
            self.members[i].base, "POST", "/v3/kv/put", self.put_body.encode(), timeout_s
        )
        return code == 200 and b'"header"' in body

    def leader_view(self, i: int, timeout_s: float) -> str:
        return self.status(i, timeout_s).leader

    def write_target(self, i: int) -> tuple[str, str]:
        return f"{self.members[i].base}/v3/kv/put", lua(self.tmp, "eput", "POST", self.put_body)

    def count_script(self, n: int, done_path: str) -> str:
        return _count_script(self.tmp, "ecount", "POST", self.put_body, n, done_path)


def _count_script(tmp: str, name: str, method: str, body: str, n: int, done_path: str) -> str:
    # wrk's main thread sleeps for the whole -d even after a thread stops, so the script
    # also drops a file the benchmark watches for, and the benchmark ends wrk with SIGINT
    # (wrk then prints its figures as usual).
    path = os.path.join(tmp, f"{name}.lua")
    with open(path, "w") as f:
        f.write(
            f'wrk.method = "{method}"\n'
            f"wrk.body = {json.dumps(body)}\n"
            "local acked = 0\n"
            "response = function(status, headers, body)\n"
            "  if status == 200 then acked = acked + 1 end\n"
            f"  if acked == {n} then\n"
            f"    local f = io.open({json.dumps(done_path)}, 'w')\n"
            "    f:write(acked) f:close()\n"
            "    wrk.thread:stop()\n"
            "  end\n"
            "end\n"
        )
    return path


@dataclass
class Config:
    """One cluster configuration: what to build, and its name in the tables."""

    kind: str
    label: str
    make: Callable[[str], Cluster]


def gossamer_config(low_latency: bool) -> Config:
    label = "gossamer " + ("low-latency (300/50 ms)" if low_latency else "default (1000/100 ms)")
    return Config("gossamer", label, lambda tmp: GossamerCluster(label, tmp, low_latency))


def etcd_config(low_latency: bool) -> Config:
    label = "etcd " + ("--election 300 --heartbeat 50" if low_latency else "default (1000/100 ms)")
    hb, el = (50, 300) if low_latency else (None, None)
    return Config("etcd", label, lambda tmp: EtcdCluster(label, tmp, hb, el))


class Run:
    """Owns the temporary directory and every cluster started in it."""

    def __init__(self, keep: bool) -> None:
        self.tmp = tempfile.mkdtemp(prefix="gossamer-raft-bench-")
        self.keep = keep
        self.count = 0

    def cluster(self, cfg: Config) -> Cluster:
        self.count += 1
        d = os.path.join(self.tmp, f"{self.count:02d}-{cfg.kind}")
        os.makedirs(d)
        return cfg.make(d)

    def close(self) -> None:
        if self.keep:
            print(f"logs and data kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ 1. writes


@dataclass
class WriteRow:
    label: str
    target: str
    clients: int
    cell: Cell
    cpu_pct: dict[str, float]
    """Percent of one core per member name, plus "wrk" and "other"."""


def measure_cell(c: Cluster, target: int, clients: int, duration_s: float) -> WriteRow:
    url, script = c.write_target(target)
    pids = {m.name: m.proc.pid for m in c.members if m.proc is not None}
    before = {n: proc_cpu_s(p) for n, p in pids.items()}
    b0, k0, s0, t0 = machine_busy_s(), children_cpu_s(), self_cpu_s(), time.monotonic()
    cell = wrk(url, clients, duration_s, script)
    dt = time.monotonic() - t0
    cpu = {n: 100 * (proc_cpu_s(p) - before[n]) / dt for n, p in pids.items()}
    cpu["wrk"] = 100 * (children_cpu_s() - k0) / dt
    ours = sum(cpu.values()) + 100 * (self_cpu_s() - s0) / dt
    cpu["other"] = max(0.0, 100 * (machine_busy_s() - b0) / dt - ours)
    return WriteRow(c.label, "", clients, cell, cpu)


def phase_writes(run: Run, cfgs: list[Config], clients: list[int], duration_s: float) -> None:
    rows: dict[tuple[str, int], WriteRow] = {}
    follower_row: WriteRow | None = None
    for cfg in cfgs:
        c = run.cluster(cfg)
        try:
            log(f"writes: starting {cfg.label}")
            c.start()
            lead = c.wait_stable(60)
            for n in clients:
                log(f"writes: {cfg.label}, {n} clients, to the leader {c.members[lead].name}")
                row = measure_cell(c, lead, n, duration_s)
                row.target = f"leader {c.members[lead].name}"
                rows[(cfg.kind, n)] = row
            if cfg.kind == "gossamer":
                follower = (lead + 1) % len(c.members)
                n = max(clients)
                log(f"writes: {cfg.label}, {n} clients, to follower {c.members[follower].name}")
                follower_row = measure_cell(c, follower, n, duration_s)
                follower_row.target = f"follower {c.members[follower].name}"
        finally:
            c.stop()

    print(
        f"\n1. Writes: wrk -t1 -cN, {duration_s:g} s per cell, one key overwritten with a "
        f"{len(VALUE)}-byte value, fsync on; load sent to the LEADER in both systems"
    )
    print("   gossamer PUT /v1/kv/bench/w; etcd POST /v3/kv/put (JSON gateway)")
    has_etcd = any(k == "etcd" for k, _ in rows)
    hdr = f"{'clients':>8}  {'gossamer w/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
    if has_etcd:
        hdr += f"  {'etcd w/s':>9} {'p50 ms':>7} {'p99 ms':>7}  {'ratio g/e':>9}"
    print(hdr)
    for n in clients:
        g = rows.get(("gossamer", n))
        e = rows.get(("etcd", n))
        line = f"{n:>8}  "
        line += (
            f"{g.cell.rps:>12,.0f} {g.cell.p50_ms:>7.2f} {g.cell.p99_ms:>7.2f}" if g else " " * 28
        )
        if e:
            line += f"  {e.cell.rps:>9,.0f} {e.cell.p50_ms:>7.2f} {e.cell.p99_ms:>7.2f}"
            if g:
                line += f"  {g.cell.rps / e.cell.rps:>9.3f}"
        errs = [
            f"{r.label.split()[0]} {r.cell.errors} errors" for r in (g, e) if r and r.cell.errors
        ]
        if errs:
            line += "  (" + ", ".join(errs) + ")"
        print(line)
    if follower_row is not None:
        f = follower_row.cell
        line = f"{follower_row.clients:>8}  {f.rps:>12,.0f} {f.p50_ms:>7.2f} {f.p99_ms:>7.2f}"
        print(line + "  <- gossamer load sent to a follower (forwards to the leader over gRPC)")
    g64, e64 = rows.get(("gossamer", 64)), rows.get(("etcd", 64))
    if g64 and e64:
        ratio = g64.cell.rps / e64.cell.rps
        verdict = "met" if ratio >= 0.5 else f"MISSED (needs {0.5 / ratio:.1f}x)"
        print(f"   goal gossamer/etcd >= 0.5 at 64 clients: {ratio:.3f}, {verdict}")
    print("   CPU during each cell, % of one core (leader marked *):")
    all_rows = [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "gossamer", k[1]))]
    if follower_row is not None:
        all_rows.append(follower_row)
    for r in all_rows:
        lead_name = r.target.split()[-1]
        parts = [
            f"{name}{'*' if r.target.startswith('leader') and name == lead_name else ''} {v:.0f}"
            for name, v in r.cpu_pct.items()
            if name not in ("wrk", "other")
        ]
        print(
            f"   {r.label.split()[0]:<9}{r.clients:>3} -> {r.target:<12} "
            f"{', '.join(parts)}; wrk {r.cpu_pct['wrk']:.0f}; other processes "
            f"{r.cpu_pct['other']:.0f}"
        )


# ------------------------------------------------------------------ 2. failover


class Writer(threading.Thread):
    """Writes one at a time; after a failed attempt, pauses 10 ms and tries the next member."""

    def __init__(self, c: Cluster, first: int, attempt_timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.target = first
        self.attempt_timeout_s = attempt_timeout_s
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.attempts: list[tuple[float, float, bool, int]] = []
        """(sent, answered, acknowledged, member) per attempt."""

    def run(self) -> None:
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                ok = self.c.write(self.target, self.attempt_timeout_s)
            except (OSError, http.client.HTTPException):
                ok = False
            with self.lock:
                self.attempts.append((t0, time.monotonic(), ok, self.target))
            if not ok:
                self.target = (self.target + 1) % len(self.c.members)
                self.halt.wait(0.01)

    def acks(self) -> int:
        with self.lock:
            return sum(1 for a in self.attempts if a[2])

    def first_ack_after(self, t: float) -> tuple[float, int, int] | None:
        """(answered, member, failed attempts before it) of the first write sent after t."""
        with self.lock:
            failed = 0
            for sent, answered, ok, member in self.attempts:
                if sent < t:
                    continue
                if ok:
                    return answered, member, failed
                failed += 1
        return None


class Observer(threading.Thread):
    """Polls the survivors' view of the leader every 20 ms; dates the first new one."""

    def __init__(self, c: Cluster, survivors: list[int], old: str) -> None:
        super().__init__(daemon=True)
        self.c, self.survivors, self.old = c, survivors, old
        self.halt = threading.Event()
        self.seen_at: float | None = None

    def run(self) -> None:
        while not self.halt.is_set() and self.seen_at is None:
            for i in self.survivors:
                try:
                    v = self.c.leader_view(i, 0.5)
                except (OSError, http.client.HTTPException, ValueError, KeyError):
                    continue
                if v not in ("", "0", self.old):
                    self.seen_at = time.monotonic()
                    return
            self.halt.wait(0.02)


@dataclass
class Trial:
    failover_s: float
    elected_s: float | None
    """Kill until a survivor first names a new leader (polled every 20 ms)."""
    killed: str
    acked_by: str
    failed_attempts: int
    rejoin_s: float


def failover_trial(c: Cluster, attempt_timeout_s: float, timeout_s: float) -> Trial:
    lead = c.wait_stable(120)
    old_view = c.leader_view(lead, 2.0)
    w = Writer(c, lead, attempt_timeout_s)
    w.start()
    obs = Observer(c, [i for i in range(len(c.members)) if i != lead], old_view)
    found: list[tuple[float, int, int]] = []
    try:
        poll_until("writer warm-up", lambda: w.acks() >= 20, 30, 0.02)
        time.sleep(0.3)
        obs.start()
        t_kill = time.monotonic()
        c.kill(lead)

        def acked() -> bool:
            r = w.first_ack_after(t_kill)
            found[:] = [r] if r else []
            return r is not None

        poll_until(f"{c.label}: a write acknowledged after the kill", acked, timeout_s, 0.005)
    finally:
        w.halt.set()
        w.join(attempt_timeout_s + 5)
        obs.join(2.0)
        obs.halt.set()
        obs.join(2.0)
    answered, member, failed = found[0]
    t0 = time.monotonic()
    c.spawn(lead)
    c.wait_stable(180)
    return Trial(
        answered - t_kill,
        None if obs.seen_at is None else obs.seen_at - t_kill,
        c.members[lead].name,
        c.members[member].name,
        failed,
        time.monotonic() - t0,
    )


def phase_failover(run: Run, cfgs: list[Config], trials: int, attempt_timeout_s: float) -> None:
    results: list[tuple[Config, list[Trial], str]] = []
    for cfg in cfgs:
        c = run.cluster(cfg)
        got: list[Trial] = []
        error = ""
        try:
            log(f"failover: starting {cfg.label}")
            c.start()
            for k in range(trials):
                t = failover_trial(c, attempt_timeout_s, 60)
                log(
                    f"failover: {cfg.label} trial {k + 1}: {t.failover_s * 1e3:.0f} ms "
                    f"(killed {t.killed}, acked by {t.acked_by})"
                )
                got.append(t)
                time.sleep(1.0)
        except (TimeoutError, SystemExit) as e:
            error = str(e)
            log(f"failover: {cfg.label}: {error}")
        finally:
            c.stop()
        results.append((cfg, got, error))

    print(
        f"\n2. Failover: SIGKILL the leader -> first acknowledged write sent after the kill "
        f"(ms), {trials} trials each. One writer, one write at a time; after a failed "
        f"attempt (refused, error, or no answer within {attempt_timeout_s * 1e3:.0f} ms) it "
        f"pauses 10 ms and tries the next member: resolution about "
        f"{(attempt_timeout_s + 0.01) * 1e3:.0f} ms"
    )
    print(f"   {'configuration':<38} {'median':>7} {'goal':>13}  {'elected':>7}  trials")
    medians: dict[str, float] = {}
    for cfg, got, error in results:
        if not got:
            print(f"   {cfg.label:<38} failed: {error}")
            continue
        med = statistics.median(t.failover_s for t in got)
        medians[cfg.label] = med
        goal = ""
        if cfg.kind == "gossamer":
            g = 0.5 if "low-latency" in cfg.label else 2.0
            goal = f"<= {g * 1e3:.0f} " + ("met" if med <= g else "MISSED")
        el = [t.elected_s for t in got if t.elected_s is not None]
        elected = fmt_ms(statistics.median(el)) if el else "-"
        print(
            f"   {cfg.label:<38} {fmt_ms(med):>7} {goal:>13}  {elected:>7}  "
            + ", ".join(fmt_ms(t.failover_s) for t in got)
        )
        if error:
            print(f"   {'':<38} then failed: {error}")
    for g_tag, e_tag in (("default", "default"), ("low-latency", "--election 300")):
        gm = [m for lab, m in medians.items() if lab.startswith("gossamer") and g_tag in lab]
        em = [m for lab, m in medians.items() if lab.startswith("etcd") and e_tag in lab]
        if gm and em:
            print(f"   ratio gossamer/etcd of medians, {g_tag}: {gm[0] / em[0]:.2f}")
    print("   elected = median time until a survivor names a new leader (polled every 20 ms)")
    print(
        "   per trial: killed -> acked by, failed attempts after the kill, elected ms, "
        "restart to caught up s"
    )
    for cfg, got, _ in results:
        desc = "; ".join(
            f"{t.killed}->{t.acked_by} {t.failed_attempts} {fmt_ms(t.elected_s)} {t.rejoin_s:.1f}"
            for t in got
        )
        print(f"   {cfg.label:<38} {desc}")


# ------------------------------------------------------------------ 3. recovery


@dataclass
class Recovery:
    label: str
    writes: int
    write_rate: float
    gap: int
    """Entries the restarted follower missed (leader commit index at restart minus the
    follower's applied index when it was stopped)."""
    up_s: float
    caught_up_s: float


def run_counted_wrk(url: str, script: str, done_path: str, timeout_s: float) -> tuple[int, float]:
    """Runs wrk with a counting script until it drops done_path; returns (requests, s)."""
    argv = ["wrk", "-t1", "-c64", f"-d{int(timeout_s)}s", "--timeout", "10s", "-s", script, url]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        poll_until("counted writes", lambda: os.path.exists(done_path), timeout_s, 0.05)
        dt = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    with open(done_path) as f:
        n = int(f.read())
    if "requests in" not in out:
        raise RuntimeError(f"wrk: {out}")
    return n, dt


def recovery_trial(c: Cluster, writes: int, timeout_s: float) -> Recovery:
    lead = c.wait_stable(120)
    follower = (lead + 1) % len(c.members)
    stopped_at = c.status(follower).applied_index
    c.kill(follower)
    url, _ = c.write_target(lead)
    done = os.path.join(c.tmp, "recovery.done")
    log(f"recovery: {c.label}: {c.members[follower].name} down, {writes} writes to the leader")
    n, dt = run_counted_wrk(url, c.count_script(writes, done), done, timeout_s)
    time.sleep(0.5)
    target = c.status(lead).commit_index
    log(
        f"recovery: {c.label}: {n} writes in {dt:.1f} s; restarting "
        f"{c.members[follower].name}, target index {target}"
    )
    t0 = time.monotonic()
    c.spawn(follower)
    up = poll_until(
        "restarted member answers", lambda: c.status(follower, 1.0) is not None, timeout_s, 0.05
    )
    done_at = poll_until(
        f"{c.label}: restarted member caught up",
        lambda: c.caught_up(follower, target),
        timeout_s,
        0.05,
    )
    return Recovery(c.label, n, n / dt, target - stopped_at, up - t0, done_at - t0)


def phase_recovery(run: Run, cfgs: list[Config], writes: int) -> None:
    results: list[Recovery] = []
    errors: list[str] = []
    for cfg in cfgs:
        c = run.cluster(cfg)
        try:
            log(f"recovery: starting {cfg.label}")
            c.start()
            results.append(recovery_trial(c, writes, 3600))
        except (TimeoutError, SystemExit, RuntimeError) as e:
            errors.append(f"{cfg.label}: {e}")
            log(f"recovery: {errors[-1]}")
        finally:
            c.stop()
    print(
        f"\n3. Recovery: a follower is SIGKILLed, {writes:,} writes are acknowledged "
        f"(wrk, 64 connections, to the leader), the follower restarts; time until its "
        f"applied index reaches the leader's commit index"
    )
    print(
        f"   {'configuration':<30} {'writes':>8} {'w/s':>7} {'missed':>8} "
        f"{'API up s':>8} {'caught up s':>11} {'entries/s':>10}"
    )
    for r in results:
        rate = r.gap / r.caught_up_s
        print(
            f"   {r.label:<30} {r.writes:>8,} {r.write_rate:>7,.0f} {r.gap:>8,} "
            f"{r.up_s:>8.2f} {r.caught_up_s:>11.2f} {rate:>10,.0f}"
        )
    for err in errors:
        print(f"   failed: {err}")
    if len(results) == 2:
        print(
            f"   ratio gossamer/etcd of catch-up time: "
            f"{results[0].caught_up_s / results[1].caught_up_s:.2f}"
        )


# ------------------------------------------------------------------ main


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    n = len(dirty.splitlines())
    return f"{head}" + (
        f" + {n} modified tracked files (servers run from the work tree)" if n else ""
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per write cell")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--trials", type=int, default=5, help="failover trials per configuration")
    ap.add_argument("--recovery-writes", type=int, default=100_000)
    ap.add_argument("--only", default=",".join(PHASES), help="phases: writes,failover,recovery")
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument(
        "--attempt-timeout-s",
        type=float,
        default=0.1,
        help="failover writer: give up on one member after this long",
    )
    ap.add_argument("--keep-logs", action="store_true", help="keep data dirs and server logs")
    a = ap.parse_args()
    phases = [p for p in a.only.split(",") if p]
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(f"unknown phase(s) {sorted(unknown)}; use {','.join(PHASES)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    use_etcd = not a.no_etcd
    if use_etcd and shutil.which("etcd") is None:
        print("etcd is not installed (apt-get install etcd-server): gossamer only", file=sys.stderr)
        use_etcd = False
    clients = [int(c) for c in a.clients.split(",")]

    print(f"bench_raft_cluster: {' '.join(sys.argv[1:]) or '(defaults)'}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"gossamer at {git_state()}"
    )
    if use_etcd:
        v = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=10)
        print(f"etcd: {v.stdout.splitlines()[0] if v.stdout else '?'}")
    print(f"background load before the run: {background_load_pct():.0f} % of one core")
    print("same machine for everything: wrk, the writer and the 3 servers share the cores")

    run = Run(a.keep_logs)
    try:
        if "writes" in phases:
            cfgs = [gossamer_config(False)] + ([etcd_config(False)] if use_etcd else [])
            phase_writes(run, cfgs, clients, a.duration)
        if "failover" in phases:
            cfgs = [gossamer_config(False), gossamer_config(True)]
            if use_etcd:
                cfgs = [cfgs[0], etcd_config(False), cfgs[1], etcd_config(True)]
            phase_failover(run, cfgs, a.trials, a.attempt_timeout_s)
        if "recovery" in phases:
            cfgs = [gossamer_config(False)] + ([etcd_config(False)] if use_etcd else [])
            phase_recovery(run, cfgs, a.recovery_writes)
    finally:
        run.close()
    print(f"\nbackground load after the run: {background_load_pct():.0f} % of one core")


if __name__ == "__main__":
    main()
