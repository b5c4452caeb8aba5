"""KV and catalog reads and writes through the HTTP API of one `gossamer agent -dev`:
requests/s and p50/p99 latency at 1, 16 and 64 concurrent clients.

The load comes from wrk (Debian package ``wrk``, C, one thread, keep-alive connections),
so the client is not the bottleneck. Baselines, measured in the same run with the same
wrk settings:

* **floor**: gossamer's own HTTP stack (h11 + asyncio, ``catalog/aio.py``) answering a
  constant JSON body from a handler that does nothing. The ratio to it is what the
  catalog's work costs on top of parsing and answering HTTP in Python.
* **etcd** (Debian ``etcd-server``, one member, its v3 JSON gateway), when installed:
  ``POST /v3/kv/range`` and ``/v3/kv/put`` for the KV rows. Not the same contract:
  etcd fsyncs each write to its WAL; a ``-dev`` agent keeps its store in memory (Raft and
  the durable log are the federation issue), so the write ratio flatters gossamer.

    python bench/bench_catalog_http.py                  # 5 s per cell
    python bench/bench_catalog_http.py --duration 10 --clients 1,16,64
    python bench/bench_catalog_http.py --no-etcd
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

WORKLOADS = ("kv-read", "kv-write", "catalog-read", "catalog-write")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 20.0, method: str = "GET", body: bytes = b"") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=body or None, method=method)
            with urllib.request.urlopen(req, timeout=1.0) as r:
                r.read()
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"not up after {timeout_s} s: {url}")


@contextlib.contextmanager
def process(argv: list[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(10)


def http(url: str, method: str = "GET", body: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return bytes(r.read())


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, clients: int, duration_s: float, script: str | None) -> Cell:
    argv = [
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{max(1, round(duration_s))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script:
        argv += ["-s", script]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration_s + 60)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    errs = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    return Cell(rps, p50, p99, errs)


def lua(tmp: str, name: str, method: str, body: str, headers: dict[str, str] | None = None) -> str:
    path = os.path.join(tmp, f"{name}.lua")
    lines = [f'wrk.method = "{method}"', f"wrk.body = {json.dumps(body)}"]
    for k, v in (headers or {}).items():
        lines.append(f'wrk.headers["{k}"] = "{v}"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


FLOOR_SERVER = """
import asyncio, sys
from catalog.aio import HTTPServer

async def main(port):
    srv = HTTPServer(object(), "127.0.0.1", port)
    body = [{"Key": "bench/key", "Value": "dmFsdWU=", "Flags": 0}]
    async def answer(request, arg):
        return body
    srv.route("/v1/kv/", {"GET": answer, "PUT": answer, "POST": answer})
    await srv.start()
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    clients = [int(c) for c in a.clients.split(",")]
    workloads = a.workloads.split(",")
    use_etcd = not a.no_etcd and shutil.which("etcd") is not None
    tmp = tempfile.mkdtemp(prefix="gossamer-bench-")
    port, serf, floor_port = free_port(), free_port(), free_port()
    agent_argv = [sys.executable, "-m", "gossamer", "agent", "-dev", "-node=bench",
                  f"-http-port={port}", f"-serf-lan-port={serf}",
                  f"-server-port={free_port()}", "-log-level=warn"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    results: dict[tuple[str, str, int], Cell] = {}
    with (
        process(agent_argv),
        process([sys.executable, "-c", FLOOR_SERVER, str(floor_port)]),
    ):
        wait_http(f"{base}/v1/status/leader")
        wait_http(f"http://127.0.0.1:{floor_port}/v1/kv/x")
        http(f"{base}/v1/kv/bench/key", "PUT", b"value")
        for i in range(20):
            reg = {"Node": f"n{i}", "Address": f"10.0.0.{i}",
                   "Service": {"ID": f"web{i}", "Service": "web", "Port": 80, "Tags": ["v1"]},
                   "Checks": [{"CheckID": f"service:web{i}", "ServiceID": f"web{i}",
                               "Status": "passing"}]}  # fmt: skip
            http(f"{base}/v1/catalog/register", "PUT", json.dumps(reg).encode())
        reg_body = json.dumps({"Node": "bench-writer", "Address": "10.9.9.9",
                               "Service": {"ID": "w", "Service": "writer", "Port": 1}})  # fmt: skip
        targets = {
            "kv-read": (f"{base}/v1/kv/bench/key", None),
            "kv-write": (f"{base}/v1/kv/bench/w", lua(tmp, "kvput", "PUT", "some value")),
            "catalog-read": (f"{base}/v1/health/service/web", None),
            "catalog-write": (f"{base}/v1/catalog/register", lua(tmp, "reg", "PUT", reg_body)),
        }
        for w in workloads:
            url, script = targets[w]
            for c in clients:
                results[("gossamer", w, c)] = wrk(url, c, a.duration, script)
                floor_script = lua(tmp, "floorput", "PUT", "x") if script else None
                results[("floor", w, c)] = wrk(
                    f"http://127.0.0.1:{floor_port}/v1/kv/bench/key", c, a.duration, floor_script
                )
    if use_etcd:
        etcd_port, peer_port = free_port(), free_port()
        data = os.path.join(tmp, "etcd")
        etcd_argv = ["etcd", "--data-dir", data, "--name", "bench",
                     "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                     "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                     "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                     "--initial-cluster", f"bench=http://127.0.0.1:{peer_port}"]  # fmt: skip
        with process(etcd_argv):
            eb = f"http://127.0.0.1:{etcd_port}"
            key = base64.b64encode(b"bench/key").decode()
            put = json.dumps({"key": key, "value": base64.b64encode(b"value").decode()})
            wait_http(f"{eb}/v3/kv/put", method="POST", body=put.encode())
            rng = json.dumps({"key": key})
            etcd_targets = {
                "kv-read": (f"{eb}/v3/kv/range", lua(tmp, "erange", "POST", rng)),
                "kv-write": (f"{eb}/v3/kv/put", lua(tmp, "eput", "POST", put)),
            }
            for w in workloads:
                if w in etcd_targets:
                    url, script = etcd_targets[w]
                    for c in clients:
                        results[("etcd", w, c)] = wrk(url, c, a.duration, script)
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nHTTP API on one agent, wrk -t1, {a.duration:g} s per cell "
          f"(floor = gossamer's HTTP stack answering a constant)")  # fmt: skip
    hdr = f"{'workload':<14}{'clients':>8}  {'gossamer req/s':>14} {'p50 ms':>8} {'p99 ms':>8}"
    hdr += f"  {'floor req/s':>11} {'ratio':>6}"
    if use_etcd:
        hdr += f"  {'etcd req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}"
    print(hdr)
    for w in workloads:
        for c in clients:
            g = results[("gossamer", w, c)]
            f = results[("floor", w, c)]
            line = f"{w:<14}{c:>8}  {g.rps:>14,.0f} {g.p50_ms:>8.2f} {g.p99_ms:>8.2f}"
            line += f"  {f.rps:>11,.0f} {g.rps / f.rps:>6.2f}"
            e = results.get(("etcd", w, c))
            if e is not None:
                line += f"  {e.rps:>10,.0f} {e.p50_ms:>8.2f} {e.p99_ms:>8.2f} {g.rps / e.rps:>6.2f}"
            if g.errors:
                line += f"  ({g.errors} errors)"
            print(line)


if __name__ == "__main__":
    main()
