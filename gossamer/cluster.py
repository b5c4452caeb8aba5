"""Local clusters of real processes on 127.0.0.1: used by `gossamer demo`, the integration and
interop tests, and the benchmarks.
Every process is started by us, remembered by PID, and stopped by PID (never by name).
Ports come from the kernel (bind to port 0, release) and are checked free for both UDP
and TCP. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
SERF = shutil.which("serf")


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((HOST, 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((HOST, port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port found")


def wait_for(
    pred: Callable[[], Any], timeout_s: float, interval_s: float = 0.05, what: str = ""
) -> Any:
    """Poll ``pred`` until it returns something truthy; raise TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout_s}s waiting for {what or pred}: {last_exc}"
            )
        time.sleep(interval_s)


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: str
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            os.kill(self.popen.pid, sig)

    def wait(self, timeout_s: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT, then SIGKILL if it has not gone within timeout_s."""
        if not self.alive():
            return
        self.signal(signal.SIGINT)
        if self.wait(timeout_s) is None:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            self.wait(5.0)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@dataclass
class GossamerAgent(Proc):
    serf_port: int = 0
    http_port: int = 0
    data_dir: str = ""

    @property
    def http_addr(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def gossip_addr(self) -> str:
        return f"{HOST}:{self.serf_port}"

    def get(self, path: str, timeout_s: float = 10.0) -> Any:
        with urllib.request.urlopen(f"http://{self.http_addr}{path}", timeout=timeout_s) as r:
            body = r.read()
        return json.loads(body) if body else None

    def put(
        self, path: str, body: Any = None, method: str = "PUT", timeout_s: float = 60.0
    ) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.http_addr}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def members(self) -> dict[str, dict[str, Any]]:
        return {m["Name"]: m for m in self.get("/v1/agent/members")}

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``python -m gossamer <verb> -http-addr=<this agent> <rest...>``."""
        verb, *rest = args
        return subprocess.run(
            [sys.executable, "-m", "gossamer", verb, f"-http-addr={self.http_addr}", *rest],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def status_of(self, node: str) -> str | None:
        m = self.members().get(node)
        return None if m is None else ["none", "alive", "leaving", "left", "failed"][m["Status"]]

    def ready(self) -> bool:
        try:
            self.get("/v1/agent/self", timeout_s=1.0)
            return True
        except (OSError, ValueError):
            return False


@dataclass
class SerfAgent(Proc):
    bind_port: int = 0
    rpc_port: int = 0
    keyring_file: str = ""
    """``-keyring-file`` when started with ``keyring=``; serf rewrites it on key changes."""

    @property
    def gossip_addr(self) -> str:
        return f"{HOST}:{self.bind_port}"

    @property
    def rpc_addr(self) -> str:
        return f"{HOST}:{self.rpc_port}"

    def cli(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        assert SERF is not None
        verb, *rest = args
        return subprocess.run(
            [SERF, verb, f"-rpc-addr={self.rpc_addr}", *rest],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def members(self) -> dict[str, dict[str, Any]]:
        r = self.cli("members", "-format=json")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def status_of(self, node: str) -> str | None:
        m = self.members().get(node)
        return None if m is None else m["status"]

    def keyring_keys(self) -> list[str]:
        """The keys in this agent's keyring file, primary first (serf writes it that way)."""
        with open(self.keyring_file) as f:
            keys: list[str] = json.load(f)
        return keys

    def ready(self) -> bool:
        try:
            return self.cli("members", timeout_s=2.0).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def rpc(self, timeout_s: float = 10.0) -> SerfRPC:
        """A persistent msgpack-RPC connection to this agent (no process spawn per call)."""
        return SerfRPC(self.rpc_addr, timeout_s)


@dataclass
class Cluster:
    """A set of processes sharing a temporary directory; ``close`` stops every one by PID."""

    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="gossamer-test-"))
    procs: list[Proc] = field(default_factory=list)
    keep_logs: bool = False

    def gossamer(
        self,
        name: str,
        *,
        join: list[str] | tuple[str, ...] = (),
        encrypt: str | None = None,
        profile: str | None = "local",
        extra: list[str] | tuple[str, ...] = (),
        data_dir: str | None = None,
        serf_port: int | None = None,
        http_port: int | None = None,
        start: bool = True,
    ) -> GossamerAgent:
        serf_port = serf_port or free_port()
        http_port = http_port or free_port()
        data_dir = data_dir or os.path.join(self.root, name)
        argv = [
            sys.executable,
            "-m",
            "gossamer",
            "agent",
            f"-node={name}",
            f"-bind={HOST}",
            f"-serf-lan-port={serf_port}",
            f"-http-port={http_port}",
            f"-data-dir={data_dir}",
        ]
        if profile:
            argv.append(f"-gossip-profile={profile}")
        argv += [f"-retry-join={j}" for j in join]
        if join:
            argv.append("-retry-interval=1s")
        if encrypt:
            argv.append(f"-encrypt={encrypt}")
        argv += list(extra)
        if any(x in ("-server", "-dev") for x in extra) and not any(
            x.startswith("-server-port") for x in extra
        ):
            # a server binds its RPC port (8300 by default): give each its own
            argv.append(f"-server-port={free_port()}")
        agent = GossamerAgent(
            name,
            argv,
            os.path.join(self.root, f"{name}.log"),
            serf_port=serf_port,
            http_port=http_port,
            data_dir=data_dir,
        )
        self.procs.append(agent)
        if start:
            self.start(agent)
        return agent

    def serf(
        self,
        name: str,
        *,
        join: list[str] | tuple[str, ...] = (),
        encrypt: str | None = None,
        profile: str | None = "local",
        tags: dict[str, str] | None = None,
        extra: list[str] | tuple[str, ...] = (),
        start: bool = True,
        keyring: list[str] | tuple[str, ...] | None = None,
    ) -> SerfAgent:
        """``keyring``: base64 keys, primary first, written to ``<root>/<name>.keyring`` and
        passed as ``-keyring-file`` (serf refuses ``-encrypt`` together with a keyring file)."""
        if SERF is None:
            raise RuntimeError("serf is not installed (apt-get install serf)")
        if keyring is not None and encrypt:
            raise ValueError("serf takes either encrypt= or keyring=, not both")
        bind_port = free_port()
        rpc_port = free_port()
        argv = [
            SERF,
            "agent",
            f"-node={name}",
            f"-bind={HOST}:{bind_port}",
            f"-rpc-addr={HOST}:{rpc_port}",
            "-log-level=debug",
        ]
        if profile:
            argv.append(f"-profile={profile}")
        argv += [f"-join={j}" for j in join]
        if encrypt:
            argv.append(f"-encrypt={encrypt}")
        keyring_file = ""
        if keyring is not None:
            keyring_file = os.path.join(self.root, f"{name}.keyring")
            with open(keyring_file, "w") as f:
                json.dump(list(keyring), f)
            argv.append(f"-keyring-file={keyring_file}")
        for k, v in (tags or {}).items():
            argv.append(f"-tag={k}={v}")
        argv += list(extra)
        agent = SerfAgent(
            name,
            argv,
            os.path.join(self.root, f"{name}.log"),
            bind_port=bind_port,
            rpc_port=rpc_port,
            keyring_file=keyring_file,
        )
        self.procs.append(agent)
        if start:
            self.start(agent)
        return agent

    def start(self, p: Proc, ready_timeout_s: float = 20.0) -> None:
        log = open(p.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            p.popen = subprocess.Popen(
                p.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()
        ready = getattr(p, "ready", None)
        if ready is not None:
            try:
                wait_for(
                    lambda: ready() or not p.alive(), ready_timeout_s, 0.05, f"{p.name} to start"
                )
            except TimeoutError:
                raise RuntimeError(f"{p.name} did not start:\n{p.log()[-3000:]}") from None
            if not p.alive():
                raise RuntimeError(f"{p.name} exited at start:\n{p.log()[-3000:]}")

    def restart(self, p: Proc) -> None:
        assert not p.alive()
        self.start(p)

    def close(self) -> None:
        for p in self.procs:
            if p.alive():
                p.signal(signal.SIGKILL)
        for p in self.procs:
            p.wait(5.0)
        if not self.keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.popen.pid if p.popen else '-'})\n{p.log()[-4000:]}"
            for p in self.procs
        )


@contextlib.contextmanager
def cluster(keep_logs: bool = False) -> Iterator[Cluster]:
    c = Cluster(keep_logs=keep_logs)
    try:
        yield c
    finally:
        c.close()


class SerfRPCError(RuntimeError):
    """The serf agent answered a request with an error string."""


class SerfRPC:
    """A minimal client for serf's agent RPC (msgpack over TCP, serf/client/rpc_client.go).

    Each request is a header map ``{Command, Seq}`` and, for some commands, a body map; each
    answer is a header map ``{Seq, Error}`` and, for some commands, a body map. Calls are
    synchronous and one at a time, so answers arrive in order (no streams or monitors here).
    ``serf members`` spawns a process per call (tens of ms of CPU); this costs one round trip.
    Not thread-safe: use one client per thread.
    """

    IPC_VERSION = 1

    def __init__(self, addr: str, timeout_s: float = 10.0) -> None:
        import msgpack  # a gossamer dependency; imported here so cluster.py stays light

        host, port = addr.rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Go's old msgpack spec writes strings as raw bytes, and Addr is a raw net.IP; decode
        # the known string fields ourselves rather than guess at the bytes.
        self._unpacker = msgpack.Unpacker(raw=True)
        self._packb = msgpack.packb
        self._seq = 0
        self._call("handshake", {"Version": self.IPC_VERSION}, has_body=False)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> SerfRPC:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_object(self) -> Any:
        while True:
            for obj in self._unpacker:
                return obj
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("serf RPC connection closed")
            self._unpacker.feed(chunk)

    def _call(self, command: str, body: dict[str, Any] | None, *, has_body: bool) -> Any:
        seq = self._seq
        self._seq += 1
        data = self._packb({"Command": command, "Seq": seq})
        if body is not None:
            data += self._packb(body)
        self._sock.sendall(data)
        header = self._next_object()
        if header.get(b"Seq") != seq:
            raise SerfRPCError(f"out-of-order answer: {header!r} for seq {seq}")
        error = header.get(b"Error", b"")
        if error:
            # An error answer carries no body (serf's genericRPC reads none either); serf
            # may close the connection after some errors, so a client is not reused then.
            raise SerfRPCError(error.decode(errors="replace"))
        return self._next_object() if has_body else None

    def members(self) -> dict[str, dict[str, Any]]:
        """The agent's member list, shaped as ``serf members -format=json`` prints it."""
        body = self._call("members", None, has_body=True)
        out: dict[str, dict[str, Any]] = {}
        for m in body[b"Members"]:
            name = m[b"Name"].decode()
            ip = bytes(m[b"Addr"])
            port = int(m[b"Port"])
            out[name] = {
                "name": name,
                "addr": f"{_ip_text(ip)}:{port}",
                "port": port,
                "tags": {k.decode(): v.decode() for k, v in (m[b"Tags"] or {}).items()},
                "status": m[b"Status"].decode(),
            }
        return out

    def status_of(self, node: str) -> str | None:
        m = self.members().get(node)
        return None if m is None else str(m["status"])

    def join(self, addrs: list[str], replay: bool = False) -> int:
        """Join the given gossip addresses; the number of nodes contacted."""
        body = self._call("join", {"Existing": addrs, "Replay": replay}, has_body=True)
        return int(body[b"Num"])


def _ip_text(ip: bytes) -> str:
    """net.IP bytes as Go prints them: IPv4 (or IPv4-mapped IPv6) dotted, else IPv6."""
    if len(ip) == 4:
        return socket.inet_ntop(socket.AF_INET, ip)
    if len(ip) == 16 and ip[:12] == b"\x00" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, ip[12:])
    if len(ip) == 16:
        return socket.inet_ntop(socket.AF_INET6, ip)
    return ip.hex()
