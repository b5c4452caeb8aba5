"""The agent process, the asyncio driver of the agent: the gossip core on its sockets, the
HTTP API, signals, joins, logs.

Lifecycle, following Consul's agent command:

1. Validate the configuration, load or create the node ID and the gossip keyring in the
   data dir (``node-id``, ``serf/local.keyring``), print the banner.
2. Bind the LAN gossip port (UDP + TCP) and the HTTP API; a bind failure is one line and
   exit 1.
3. Join the ``-retry-join`` addresses, every ``retry_interval_s`` until one succeeds
   (or ``retry_max`` attempts fail: exit 1).
4. Run until a signal or ``PUT /v1/agent/leave``. SIGINT leaves gracefully; SIGTERM
   leaves only when ``leave_on_terminate`` (clients by default, not servers); a second
   signal during a leave stops at once. Exit 0 after a clean stop.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import sys
import time
import uuid
from typing import Any

from catalog import commands, http_agent, http_catalog, http_kv, http_operator
from catalog.aio import HTTPServer
from catalog.localagent import LocalAgent
from catalog.reconcile import reconcile_member, reconcile_reaped
from catalog.server import CatalogAccess, CatalogServer
from catalog.store import SERF_CHECK_ID, CommandRejected
from federation.aio import RaftServer, RPCClient, RPCServer
from federation.autopilot import AutopilotConfig
from federation.bootstrap import bootstrap_plan, server_meta
from federation.disk import DiskCorrupt
from federation.raft import RaftConfig
from gossamer import __version__, goregexp
from gossamer.agent import (
    CONSUL_EVENT_PREFIX,
    agent_tags,
    decode_user_event,
    encode_user_event,
    multierror,
    validate_event_name,
)
from gossamer.config import AgentConfig, ConfigError
from gossamer.leader import ServerAdmin
from gossamer.rpc import RemoteCatalog, ServerCatalog, ServerRPC
from swim.aio import GossipDriver
from swim.config import SwimConfig
from swim.coordinate import Coordinate
from swim.events import (
    ForceLeaveRequested,
    JoinCompleted,
    JoinRequested,
    KeyOp,
    KeyOperationCompleted,
    KeyOperationRequested,
    KeyringChanged,
    LeaveCompleted,
    LeaveRequested,
    Member,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
    RequestCompleted,
    ShutdownRequired,
    UserEventReceived,
    UserEventRequested,
)
from swim.keyring import Keyring
from swim.serf import Serf, SerfConfig, SerfState

__all__ = ["Agent", "run_agent"]

log = logging.getLogger("gossamer.agent")

DEFAULT_SERF_PORT = 8301
JOIN_TIMEOUT_S = 30.0
KEY_OP_TIMEOUT_S = 60.0
EVENT_RING = 256
"""Consul keeps the last 256 user events for /v1/event/list (agent/user_event.go)."""


class StartError(Exception):
    """The agent cannot start; the message is the one line the user sees."""


class _ConsulFormatter(logging.Formatter):
    """``2026-11-25T12:00:00.123Z [INFO]  agent.serf: message`` as Consul's hclog prints."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        ms = int(record.msecs)
        level = {"WARNING": "WARN", "CRITICAL": "ERROR"}.get(record.levelname, record.levelname)
        name = record.name.removeprefix("gossamer.")
        msg = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + self.formatException(record.exc_info)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t)
        pad = " " * (5 - len(level))
        return f"{stamp}.{ms:03d}Z [{level}] {pad}{name}: {msg}"


def setup_logging(level: str) -> None:
    levels = {
        "trace": 5,
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warn": logging.WARNING,
        "warning": logging.WARNING,
        "err": logging.ERROR,
        "error": logging.ERROR,
    }
    root = logging.getLogger("gossamer")
    root.handlers.clear()
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(_ConsulFormatter())
    root.addHandler(h)
    root.setLevel(levels.get(level.lower(), logging.INFO))
    root.propagate = False


def parse_join_address(
    text: str, default_port: int = DEFAULT_SERF_PORT
) -> tuple[str | None, str, int]:
    """``[name/]host[:port]`` -> (name, host, port); memberlist's resolveAddr accepts this."""
    name = None
    if "/" in text:
        name, text = text.split("/", 1)
        if not name:
            raise ValueError("empty node name provided")
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = int(p)
    else:
        host, port = text, default_port
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}")
    return name, host, port


class Agent:
    """One running agent. Implements :class:`catalog.aio.AgentAPI` for the HTTP server."""

    def __init__(self, config: AgentConfig) -> None:
        config.validate()
        if config.data_dir is None and not config.dev:
            raise StartError("data_dir cannot be empty")
        self.config = config
        try:
            self.advertise = config.advertise(host_ipv4_addresses())
        except ConfigError as e:
            raise StartError(str(e)) from None
        self.node_id = self._load_node_id()
        self.gossip_keyring = self._load_keyring()
        swim_cfg = SwimConfig.preset(config.gossip_profile)
        self.serf_config = SerfConfig(swim=swim_cfg, reconnect_timeout_s=72 * 3600.0)
        seed = int.from_bytes(os.urandom(8), "big")
        self.serf = Serf(
            name=config.node_name,
            addr=self.advertise,
            port=config.serf_lan_port,
            config=self.serf_config,
            tags=agent_tags(config, self.node_id, config.server_port),
            rng=random.Random(seed),
            entropy=os.urandom,
            keyring=self.gossip_keyring,
        )
        self.driver: GossipDriver | None = None
        self.http: HTTPServer | None = None
        self.local: LocalAgent | None = None
        self.catalog: CatalogServer | None = None
        """On servers: the state store, Raft's state machine, with its write path and
        blocking reads. Clients reach a server's over server RPC."""
        self.rpc_client = RPCClient()
        self.rpc_server: RPCServer | None = None
        self.raft: RaftServer | None = None
        if config.server:
            self.catalog = CatalogServer(config.datacenter, self.server_address)
            self.rpc_server = RPCServer(f"{_host(config.bind_addr)}:{config.server_port}")
            self.raft = RaftServer(
                self.node_id,
                self.rpc_server,
                self.rpc_client,
                self._raft_path(),
                self.catalog,
                raft_config(config),
                random.Random(seed ^ 0x5AF7),
                on_leader=self.catalog.leader_changed,
                resolve=self._server_address,
            )
        self.server_rpc = ServerRPC(
            config.node_name,
            config.datacenter,
            self.serf.member_list,
            self.rpc_client,
            random.Random(seed ^ 0x59C),
            self.catalog,
            self.raft,
        )
        access: CatalogAccess
        self.raft_admin: ServerAdmin | None = None
        """The operator's Raft and autopilot interface (catalog/http_operator.py), and the
        leader's management of the server set; servers only."""
        if self.catalog is not None and self.raft is not None and self.rpc_server is not None:
            self.catalog.attach(self.raft, self.server_rpc.apply)
            self.raft_admin = ServerAdmin(
                self.node_id,
                config.datacenter,
                self.raft,
                self.catalog,
                self.server_rpc,
                self.serf.member_list,
                AutopilotConfig(dead_server_grace_s=config.autopilot_dead_server_grace_s),
            )
            self.catalog.on_leadership = self._on_leadership
            self.server_rpc.register(self.rpc_server)
            access = ServerCatalog(self.server_rpc, self.catalog)
        else:
            access = RemoteCatalog(self.server_rpc)

        def catalog_access() -> CatalogAccess | None:
            # no server in gossip yet: anti-entropy waits quietly instead of failing
            if self.catalog is None and not self.server_rpc.servers():
                return None
            return access

        self.local = LocalAgent(
            config,
            self.node_id,
            self.advertise,
            catalog_access,
            cluster_size=lambda: len(self.serf.members),
        )
        self._bootstrap_task: asyncio.Task[None] | None = None
        self._members_changed = asyncio.Event()
        self.stopped = asyncio.Event()
        self.exit_code = 0
        self._leaving = False
        self._leave_task: asyncio.Future[None] | None = None
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENT_RING)
        self._event_signal = asyncio.Event()
        self._reconcile_queue: list[tuple[Member | None, str | None]] = []
        self._reconcile_wake: asyncio.Event | None = None
        self._catalog_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ data dir

    @property
    def server_address(self) -> str:
        """``ip:port`` of this server's RPC, as other servers and /v1/status show it."""
        return f"{_host(self.advertise)}:{self.config.server_port}"

    def _server_address(self, server_id: str) -> str | None:
        """A server's RPC address from its gossip tags (any status), by its Raft ID."""
        for m in self.serf.member_list():
            meta = server_meta(m)
            if meta is not None and meta.id == server_id:
                return meta.address
        return None

    def _raft_path(self) -> str:
        if self.config.dev or self.config.data_dir is None:
            return ":memory:"  # -dev keeps nothing, as Consul's in-memory dev mode
        return os.path.join(self.config.data_dir, "raft", "raft.db")

    def _path(self, *parts: str) -> str | None:
        if self.config.data_dir is None:
            return None
        return os.path.join(self.config.data_dir, *parts)

    def _load_node_id(self) -> str:
        path = self._path("node-id")
        if path is None:
            return str(uuid.uuid4())
        try:
            os.makedirs(self.config.data_dir or ".", exist_ok=True)
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read().strip()
                return str(uuid.UUID(text))
            node_id = str(uuid.uuid4())
            _write_atomic(path, node_id.encode())
            return node_id
        except (OSError, ValueError) as e:
            raise StartError(f"Failed to set up node ID in {path}: {e}") from None

    def _load_keyring(self) -> Keyring | None:
        path = self._path("serf", "local.keyring")
        key = self.config.encrypt_key
        if path is not None and os.path.exists(path):
            try:
                with open(path) as f:
                    keys = [base64.b64decode(k) for k in json.load(f)]
                ring = Keyring(keys)
            except (OSError, ValueError, TypeError) as e:
                raise StartError(f"Failed to load keyring file {path}: {e}") from None
            if key is not None and key not in ring.keys:
                log.warning(
                    "loaded the keyring from %s; the -encrypt key is not in it and is ignored",
                    path,
                )
            return ring if len(ring) else None
        if key is None:
            return None
        ring = Keyring([key])
        self._save_keyring(ring.keys)
        return ring

    def _save_keyring(self, keys: list[bytes] | tuple[bytes, ...]) -> None:
        path = self._path("serf", "local.keyring")
        if path is None:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = json.dumps([base64.b64encode(k).decode() for k in keys], indent=2).encode()
        _write_atomic(path, data, mode=0o600)

    # ------------------------------------------------------------------ running

    async def start(self) -> None:
        cfg = self.config
        self.driver = GossipDriver(self.serf, (cfg.bind_addr, cfg.serf_lan_port), self._on_event)
        try:
            await self.driver.start()
        except OSError as e:
            raise StartError(
                f"Failed to start the LAN gossip on {cfg.bind_addr}:{cfg.serf_lan_port}: "
                f"{e.strerror or e}"
            ) from None
        if self.rpc_server is not None:
            try:
                await self.rpc_server.start()
            except (OSError, RuntimeError) as e:
                await self.driver.close()
                raise StartError(
                    f"Failed to start the server RPC on {self.rpc_server.bind}: {e}"
                ) from None
        self.http = HTTPServer(self, cfg.client_addr, cfg.http_port)
        register_endpoints(self.http)
        self.http.forward = self.server_rpc.route
        self.server_rpc.handle_http = self.http.handle
        if self.catalog is not None and self.raft is not None:
            self._reconcile_wake = asyncio.Event()
            await self.catalog.start()
            try:
                await self.raft.start()
            except (ValueError, OSError, DiskCorrupt) as e:
                await self.driver.close()
                raise StartError(f"Failed to start Raft: {e}") from None
            if self.raft.bootstrapped:
                log.info("raft: starting from the state in %s", self._raft_path())
            elif cfg.dev or cfg.bootstrap_expect == 1:
                await self.raft.bootstrap({self.node_id: self.server_address})
            elif cfg.bootstrap_expect > 1:
                self._bootstrap_task = asyncio.ensure_future(self._bootstrap_loop())
        assert self.local is not None
        await self.local.start()
        try:
            await self.http.start()
        except OSError as e:
            await self.driver.close()
            raise StartError(
                f"Failed to start the HTTP API on {cfg.client_addr}:{cfg.http_port}: "
                f"{e.strerror or e}"
            ) from None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        join_task = None
        if self.config.retry_join:
            join_task = asyncio.ensure_future(self._retry_join())
        await self.stopped.wait()
        if join_task is not None:
            join_task.cancel()
            with contextlib.suppress(BaseException):
                await join_task
        await self.close()
        return self.exit_code

    async def close(self) -> None:
        self.serf.shutdown()
        if self.http is not None:
            await self.http.close()
        if self.local is not None:
            await self.local.close()
        for task in (self._catalog_task, self._bootstrap_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.raft_admin is not None:
            await self.raft_admin.close()
        if self.catalog is not None:
            await self.catalog.close()
        if self.raft is not None:
            await self.raft.close()
        if self.rpc_server is not None:
            await self.rpc_server.close()
        await self.rpc_client.close()
        if self.driver is not None:
            await self.driver.close()
        log.info("shutdown complete")

    def stop(self, code: int = 0) -> None:
        self.exit_code = code
        self.stopped.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            log.info("caught SIGHUP; gossamer has no reloadable configuration yet")
            return
        if self._leaving:
            log.warning("caught %s again: stopping without waiting for the leave", sig.name)
            self.stop(1)
            return
        graceful = sig == signal.SIGINT or self.config.leaves_on_terminate
        log.info("caught signal: %s", sig.name)
        if not graceful:
            log.info("leave_on_terminate is off for servers: stopping without leaving")
            self.stop(0)
            return
        self._leave_task = asyncio.ensure_future(self._leave_and_stop())

    async def _leave_and_stop(self) -> None:
        err = await self.leave()
        if err:
            log.error("error leaving: %s", err)
        self.stop(0)

    async def _retry_join(self) -> None:
        cfg = self.config
        attempt = 0
        while True:
            attempt += 1
            log.info("joining cluster: addresses=%s attempt=%d", list(cfg.retry_join), attempt)
            n, err = await self._join_many(list(cfg.retry_join))
            if n > 0:
                log.info("join completed: number_of_nodes=%d", n)
                return
            log.warning("join failed: %s", (err or "").strip().replace("\n", " "))
            if cfg.retry_max and attempt >= cfg.retry_max:
                log.error("join failed, max attempts reached")
                self.stop(1)
                return
            await asyncio.sleep(cfg.retry_interval_s)

    # ------------------------------------------------------------------ catalog

    RECONCILE_INTERVAL_S = 60.0
    """Consul's ReconcileInterval: a full pass that repairs the catalog's view of members."""
    COORDINATE_INTERVAL_S = 15.0

    def _on_leadership(self, leading: bool) -> None:
        """The catalog established (or lost) leadership: run the leader's loop only then
        (Consul's leaderLoop)."""
        if self.raft_admin is not None:
            self.raft_admin.leading(leading)
        if leading:
            if self._catalog_task is None or self._catalog_task.done():
                self._reconcile_queue = []
                self._catalog_task = asyncio.ensure_future(self._catalog_loop())
        elif self._catalog_task is not None:
            self._catalog_task.cancel()
            self._catalog_task = None

    async def _bootstrap_loop(self) -> None:
        """Consul's maybeBootstrap, on every membership change until it is done (rules in
        federation/bootstrap.py)."""
        assert self.raft is not None
        cfg = self.config
        said = ""
        while not self.raft.bootstrapped:
            plan = bootstrap_plan(
                self.serf.member_list(), cfg.datacenter, cfg.bootstrap_expect, self.node_id
            )
            if plan.ready:
                servers = {s.id: s.address for s in plan.servers}
                verdict = await self._peers_agree(plan.servers, servers)
                if verdict == "existing":
                    log.info("Existing Raft peers reported by server, disabling bootstrap mode")
                    return
                if verdict == "ok" and not self.raft.bootstrapped:
                    log.info(
                        "Found expected number of peers, attempting bootstrap: %s",
                        ",".join(servers.values()),
                    )
                    await self.raft.bootstrap(servers)
                    return
            elif plan.reason != said:
                (log.error if plan.conflict else log.info)("bootstrap: %s", plan.reason)
                said = plan.reason
            self._members_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._members_changed.wait(), 1.0)

    async def _peers_agree(self, servers: Any, config: dict[str, str]) -> str:
        """Ask every other server for its Raft state: "ok" when none has any, or each has
        exactly the configuration we would bootstrap (it got there first); "existing" when
        one belongs to a cluster already; "retry" when one could not be asked."""
        for s in servers:
            if s.id == self.node_id:
                continue
            try:
                resp = await self.server_rpc.query_at(s.address, "raft_stats", 2.0)
            except Exception as e:
                log.warning("Failed to confirm peer status for %s: %s", s.name, e)
                return "retry"
            value = resp.value if isinstance(resp.value, dict) else {}
            if value.get("Servers") and value.get("Servers") != config:
                return "existing"
            if not value.get("Servers") and resp.index > 0:
                return "existing"
        return "ok"

    def _reconcile_soon(self, member: Member | None = None, reaped: str | None = None) -> None:
        """Queue a reconcile of one member (or, with neither argument, of all)."""
        if self.catalog is None or not self.catalog.leading:
            return
        self._reconcile_queue.append((member, reaped))
        if self._reconcile_wake is not None:
            self._reconcile_wake.set()

    async def _catalog_loop(self) -> None:
        """The leader's membership reconcile and coordinate batches (leader.go)."""
        assert self.catalog is not None and self._reconcile_wake is not None
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        next_coords = loop.time() + 1.0
        while True:
            now = loop.time()
            if now >= next_full:
                self._reconcile_queue.append((None, None))
                next_full = now + self.RECONCILE_INTERVAL_S
            queue, self._reconcile_queue = self._reconcile_queue, []
            for member, reaped in queue:
                await self._reconcile(member, reaped)
            if now >= next_coords:
                await self._write_coordinates()
                next_coords = now + self.COORDINATE_INTERVAL_S
            self._reconcile_wake.clear()
            if self._reconcile_queue:
                continue
            timeout = max(0.0, min(next_full, next_coords) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_wake.wait(), timeout)

    async def _reconcile(self, member: Member | None, reaped: str | None) -> None:
        assert self.catalog is not None
        store = self.catalog.store
        now = self.catalog.now()
        name = self.config.node_name
        dc = self.config.datacenter
        cmds: list[dict[str, Any]] = []
        if reaped is not None:
            cmds = reconcile_reaped(store, reaped, name, now)
        elif member is not None:
            cmds = reconcile_member(store, member, dc, name, now)
        else:
            members = self.serf.member_list()
            for m in members:
                cmds.extend(reconcile_member(store, m, dc, name, now))
            known = {m.name.lower() for m in members}
            for node in list(store.nodes.values()):
                check = store.check(node["Node"], SERF_CHECK_ID)
                # a node registered from gossip whose member is gone for good
                if check is not None and node["Node"].lower() not in known:
                    cmds.extend(reconcile_reaped(store, node["Node"], name, now))
        for cmd in cmds:
            try:
                await self.catalog.write(cmd)
            except CommandRejected as e:
                log.warning("catalog reconcile: %s", e)

    async def _write_coordinates(self) -> None:
        """Gossip's coordinates of the catalog's nodes into the store, when they moved."""
        assert self.catalog is not None
        store = self.catalog.store
        updates = []
        for name, coord in self.lan_coordinates().items():
            wire = coord.to_wire()
            old = store.coords.get((name.lower(), ""))
            if store.node(name) is not None and (old is None or old["Coord"] != wire):
                updates.append({"Node": name, "Segment": "", "Coord": wire})
        if updates:
            await self.catalog.write(commands.coordinates(0.0, updates))

    def _on_event(self, eff: Any) -> None:
        if isinstance(eff, MemberJoined | MemberFailed | MemberLeft | MemberUpdated):
            self._members_changed.set()
            self._reconcile_soon(eff.member)
        elif isinstance(eff, MemberReaped):
            self._reconcile_soon(reaped=eff.member.name)
        if isinstance(eff, MemberJoined):
            log.info("serf.lan: EventMemberJoin: %s %s", eff.member.name, eff.member.addr)
        elif isinstance(eff, MemberFailed):
            log.info("serf.lan: EventMemberFailed: %s %s", eff.member.name, eff.member.addr)
        elif isinstance(eff, MemberLeft):
            log.info("serf.lan: EventMemberLeave: %s %s", eff.member.name, eff.member.addr)
        elif isinstance(eff, MemberUpdated):
            log.info("serf.lan: EventMemberUpdate: %s", eff.member.name)
        elif isinstance(eff, MemberReaped):
            log.info("serf.lan: EventMemberReap: %s", eff.member.name)
        elif isinstance(eff, UserEventReceived):
            self._user_event(eff)
        elif isinstance(eff, KeyringChanged):
            try:
                self._save_keyring(eff.keys)
            except OSError as e:
                log.error("failed to persist the keyring: %s", e)
        elif isinstance(eff, ShutdownRequired):
            log.error("%s", eff.reason)
            self.stop(1)

    def _user_event(self, eff: UserEventReceived) -> None:
        """Consul's handleEvents: keep Consul events that pass our filters, ignore the rest."""
        ev = decode_user_event(eff.name, eff.payload, eff.ltime)
        if ev is None:
            log.info(
                "new event: event_name=%s ltime=%d (not a Consul event, not stored)",
                eff.name,
                eff.ltime,
            )
            return
        if not self._event_matches(ev):
            log.debug("ignoring event %s: filters do not match this node", ev["Name"])
            return
        if any(e["ID"] == ev["ID"] for e in self.events):
            return
        self.events.append(ev)
        signal_, self._event_signal = self._event_signal, asyncio.Event()
        signal_.set()
        log.info("new event: event_name=%s event_id=%s ltime=%d", ev["Name"], ev["ID"], eff.ltime)

    def _event_matches(self, ev: dict[str, Any]) -> bool:
        if ev["NodeFilter"]:
            try:
                if not goregexp.search(ev["NodeFilter"], self.config.node_name):
                    return False
            except goregexp.RegexpError:
                return False
        if not ev["ServiceFilter"]:
            return True
        # Consul's shouldProcessUserEvent: a local service whose ID matches the service
        # filter and, when there is a tag filter, with a tag that matches it
        services = self.local.services() if self.local is not None else {}
        try:
            for sid, svc in services.items():
                if not goregexp.search(ev["ServiceFilter"], sid):
                    continue
                if not ev["TagFilter"] or any(
                    goregexp.search(ev["TagFilter"], tag) for tag in svc.get("Tags") or ()
                ):
                    return True
        except goregexp.RegexpError:
            return False
        return False

    async def fire_event(
        self, name: str, payload: bytes, node: str = "", service: str = "", tag: str = ""
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Consul's UserEvent: wrap, gossip as ``consul:event:<name>``, return the event."""
        err = validate_event_name(name)
        if err is None and tag and not service:
            err = "Cannot provide tag filter without service filter"
        for what, rx in (("node", node), ("service", service), ("tag", tag)):
            try:
                goregexp.compile_check(rx)
            except goregexp.RegexpError as e:
                err = err or f"Invalid {what} filter: {e}"
        if err:
            return None, err
        assert self.driver is not None
        ev = {
            "ID": str(uuid.uuid4()),
            "Name": name,
            "Payload": payload,
            "NodeFilter": node,
            "ServiceFilter": service,
            "TagFilter": tag,
            "Version": 1,
            "LTime": 0,
        }
        raw = encode_user_event(ev)
        res = await self.driver.request(
            lambda rid: UserEventRequested(rid, CONSUL_EVENT_PREFIX + name, raw, False), 10.0
        )
        assert isinstance(res, RequestCompleted)
        if res.error:
            return None, res.error
        return ev, None

    async def wait_event(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event_signal.wait(), timeout_s)

    def event_list(self, name: str = "") -> list[dict[str, Any]]:
        return [e for e in self.events if not name or e["Name"] == name]

    # ------------------------------------------------------------------ AgentAPI

    def lan_members(self) -> list[Member]:
        return sorted(self.serf.member_list(), key=lambda m: m.name)

    def local_member(self) -> Member:
        return self.serf.local_member()

    def stats(self) -> dict[str, dict[str, str]]:
        return {
            "agent": self.local.stats() if self.local is not None else {},
            "build": {"prerelease": "", "revision": "gossamer", "version": __version__},
            "consul": self._consul_stats(),
            "runtime": {
                "arch": os.uname().machine,
                "os": sys.platform,
                "version": f"python{sys.version.split()[0]}",
                "cpu_count": str(os.cpu_count() or 1),
            },
            "serf_lan": self.serf.stats_map(),
        }

    def _consul_stats(self) -> dict[str, str]:
        """Consul's Stats()["consul"]; ``leader_addr`` equals /v1/status/leader."""
        if self.catalog is None or self.raft is None:
            return {
                "server": str(self.config.server).lower(),
                "known_servers": str(len(self.server_rpc.servers())),
            }
        store = self.catalog.store
        core = self.raft.core
        return {
            "server": "true",
            "leader": str(self.raft.is_leader).lower(),
            "leader_addr": self.catalog.leader_addr,
            "bootstrap": str(self.config.bootstrap_expect == 1 or self.config.dev).lower(),
            "known_datacenters": "1",
            "known_servers": str(len(self.server_rpc.servers())),
            "last_log_index": str(core.last_index if core is not None else 0),
            "commit_index": str(core.commit_index if core is not None else 0),
            "applied_index": str(core.last_applied if core is not None else 0),
            "term": str(core.term if core is not None else 0),
            "last_snapshot_index": str(core.snapshot_index if core is not None else 0),
            "last_snapshot_term": str(
                core.snapshot.term if core is not None and core.snapshot is not None else 0
            ),
            "catalog_nodes": str(len(store.nodes)),
            "kv_entries": str(len(store.kv)),
            "sessions": str(len(store.sessions)),
            "blocking_queries": str(len(self.catalog.hub)),
            "raft_messages_sent": str(self.raft.stats["sent"]),
            "raft_messages_dropped": str(self.raft.stats["send_dropped"]),
            "raft_messages_received": str(self.raft.stats["received"]),
            "raft_persists": str(self.raft.stats["persists"]),
            "raft_persist_ms": str(self.raft.stats["persist_us"] // 1000),
            "raft_entries_persisted": str(self.raft.stats["entries_persisted"]),
        }

    def lan_coordinate(self) -> Coordinate | None:
        return self.serf.coordinate()

    def lan_coordinates(self) -> dict[str, Coordinate]:
        alive = {m.name for m in self.serf.member_list()}
        return {n: c for n, c in self.serf.coord_cache.items() if n in alive}

    async def _join_many(self, addresses: list[str]) -> tuple[int, str | None]:
        assert self.driver is not None
        loop = asyncio.get_running_loop()
        targets: list[tuple[str | None, tuple[str, int]]] = []
        errors: list[str] = []
        for text in addresses:
            try:
                name, host, port = parse_join_address(text)
            except ValueError as e:
                errors.append(f"Failed to resolve {text}: {e}")
                continue
            try:
                ipaddress.ip_address(host)
                ips = [host]
            except ValueError:
                try:
                    infos = await asyncio.wait_for(
                        loop.getaddrinfo(host, port, type=0, proto=0), 10.0
                    )
                    ips = sorted({str(i[4][0]) for i in infos})
                except (OSError, TimeoutError) as e:
                    errors.append(f"Failed to resolve {text}: {e}")
                    continue
            targets.extend((name, (ip, port)) for ip in ips)
        if not targets:
            return 0, multierror(errors or ["no addresses to join"])
        res = await self.driver.request(
            lambda rid: JoinRequested(rid, tuple(targets)), JOIN_TIMEOUT_S
        )
        assert isinstance(res, JoinCompleted)
        errors.extend(res.errors)
        if res.contacted > 0:
            return res.contacted, None
        return 0, multierror(errors or ["no nodes contacted"])

    async def join_lan(self, address: str) -> tuple[int, str | None]:
        if self.serf.state != SerfState.ALIVE:
            return 0, "Serf can't Join after Leave or Shutdown"
        return await self._join_many([address])

    async def leave(self) -> str | None:
        """Leave gracefully, then stop the agent (Consul's /v1/agent/leave shuts it down)."""
        if self._leaving:
            return None
        self._leaving = True
        assert self.driver is not None
        log.info("gracefully leaving the cluster")
        timeout = (
            3 * self.serf_config.broadcast_timeout_s + self.serf_config.leave_propagate_delay_s
        )
        try:
            res = await self.driver.request(lambda rid: LeaveRequested(rid), timeout)
        except TimeoutError:
            res = LeaveCompleted(0, "timeout while leaving")
        assert isinstance(res, LeaveCompleted)
        asyncio.get_running_loop().call_soon(self.stop, 0)
        return res.error or None

    async def force_leave(self, node: str, prune: bool) -> str | None:
        if node not in {m.name for m in self.serf.member_list()}:
            return f"agent: No node found with name '{node}'"
        assert self.driver is not None
        log.info("force leaving node: node=%s prune=%s", node, prune)
        res = await self.driver.request(lambda rid: ForceLeaveRequested(rid, node, prune), 30.0)
        assert isinstance(res, RequestCompleted)
        return res.error or None

    async def keyring(self, op: KeyOp, key: bytes, relay_factor: int) -> KeyOperationCompleted:
        assert self.driver is not None
        res = await self.driver.request(
            lambda rid: KeyOperationRequested(rid, op, key, relay_factor), KEY_OP_TIMEOUT_S
        )
        assert isinstance(res, KeyOperationCompleted)
        return res


def register_endpoints(http: HTTPServer) -> None:
    """The catalog's HTTP endpoints, each module adding its routes (after the agent
    endpoints of catalog/aio.py, so /v1/coordinate/nodes moves to the store)."""
    for module in (http_kv, http_catalog, http_agent, http_operator):
        module.register(http)


def host_ipv4_addresses() -> list[str]:
    """This host's IPv4 interface addresses (Linux: SIOCGIFADDR per interface; elsewhere the
    source address the kernel would use for a private destination, found without sending)."""
    out: list[str] = []
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                req = struct.pack("256s", name.encode()[:15])
                try:
                    res = fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR
                except OSError:
                    continue  # an interface without an IPv4 address
                out.append(socket.inet_ntoa(res[20:24]))
    except (ImportError, OSError):
        pass
    if not out:
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing
            out.append(s.getsockname()[0])
    return out


def _write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def banner(agent: Agent) -> str:
    c = agent.config
    enc = "true" if agent.gossip_keyring is not None else "false"
    lines = [
        "==> Starting gossamer agent...",
        f"           Version: '{__version__}'",
        f"           Node ID: '{agent.node_id}'",
        f"         Node name: '{c.node_name}'",
        f"        Datacenter: '{c.datacenter}' (Segment: '{'<all>' if c.server else ''}')",
        f"            Server: {str(c.server).lower()} (Bootstrap: false)",
        f"       Client Addr: [{c.client_addr}] (HTTP: {c.http_port})",
        f"      Cluster Addr: {agent.advertise} (LAN: {c.serf_lan_port})",
        f"           Gossip: profile {c.gossip_profile}, encrypt: {enc}",
        "",
        "==> Log data will now stream in as it occurs:",
        "",
    ]
    return "\n".join(lines)


async def _main(config: AgentConfig) -> int:
    agent = Agent(config)
    print(banner(agent), flush=True)
    await agent.start()
    log.info(
        "started: gossip on %s:%d, HTTP on %s:%d",
        config.bind_addr,
        config.serf_lan_port,
        config.client_addr,
        config.http_port,
    )
    return await agent.run()


def run_agent(config: AgentConfig) -> int:
    setup_logging(config.log_level)
    try:
        return asyncio.run(_main(config))
    except (StartError, ConfigError) as e:
        print(f"==> {e}", file=sys.stderr)
        return 1


def raft_config(config: AgentConfig) -> RaftConfig:
    """The Raft timing for this agent: ``-raft-timing=low-latency`` (and ``-dev``) elect in
    a few hundred milliseconds on a good network; the default tolerates slower ones."""
    base = (
        RaftConfig.low_latency()
        if config.dev or config.raft_timing == "low-latency"
        else RaftConfig()
    )
    return dataclasses.replace(
        base,
        snapshot_threshold=config.raft_snapshot_threshold,
        trailing_logs=config.raft_trailing_logs,
    )


def _host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr
