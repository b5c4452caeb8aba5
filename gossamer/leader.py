"""A server agent's management of its Raft cluster: the operator's view and commands
(:class:`catalog.http_operator.RaftAdmin`), and the leader's loop that keeps the Raft
configuration in step with the servers in gossip (Consul's leader.go
``joinConsulServer`` / ``removeConsulServer`` and hashicorp/raft-autopilot).

Rules of the leader's loop (every ``UPDATE_INTERVAL_S`` while this server leads):

1. An alive server of our datacenter that gossip shows and the configuration lacks is
   added as a **non-voter** (Consul does the same when autopilot is on); autopilot
   promotes it once it has been healthy for ``ServerStabilizationTime``.
2. A server that **left** gossip gracefully is removed from the configuration.
3. Autopilot (federation/autopilot.py) decides promotions and dead-server cleanup:
   a server failed in gossip for ``dead_server_grace_s`` is removed, never below a quorum
   of the voters, as raft-autopilot's pruneDeadServers.
4. One change at a time: Raft refuses a second while the first is uncommitted; the loop
   simply tries again at its next tick.

Each server's last log index and term come from its ``raft_stats`` over server RPC,
as Consul's autopilot asks ``Status.RaftStats``; a server that does not answer within
half a second is reported as not contacted.

The autopilot configuration is replicated in the state store (``autopilot-set``
commands), so a new leader applies what the operator set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from catalog import commands as C
from catalog.http_operator import AdminError
from federation.aio import NotLeader, RaftRefused
from federation.autopilot import (
    UPDATE_INTERVAL_S,
    Autopilot,
    AutopilotConfig,
    PromoteServer,
    RemoveServer,
    ServerState,
)
from federation.bootstrap import server_meta
from federation.raft import AddNonVoter, PromoteVoter
from federation.raft import RemoveServer as RaftRemoveServer
from swim.events import MemberStatus

if TYPE_CHECKING:
    from catalog.server import CatalogServer
    from federation.aio import RaftServer
    from gossamer.rpc import ServerRPC
    from swim.events import Member

__all__ = ["ServerAdmin"]

log = logging.getLogger("gossamer.agent.leader")

CHANGE_TIMEOUT_S = 10.0
STATS_TIMEOUT_S = 0.5
_SERF_STATUS = {
    MemberStatus.ALIVE: "alive",
    MemberStatus.LEAVING: "leaving",
    MemberStatus.LEFT: "left",
    MemberStatus.FAILED: "failed",
    MemberStatus.NONE: "none",
}


class ServerAdmin:
    def __init__(
        self,
        node_id: str,
        datacenter: str,
        raft: RaftServer,
        catalog: CatalogServer,
        rpc: ServerRPC,
        members: Callable[[], list[Member]],
        config: AutopilotConfig | None = None,
    ) -> None:
        self.node_id = node_id
        self.datacenter = datacenter
        self.raft = raft
        self.catalog = catalog
        self.rpc = rpc
        self.members = members
        self.defaults = config or AutopilotConfig()
        self.autopilot = Autopilot(self.autopilot_config()[0])
        self._task: asyncio.Task[None] | None = None
        self.stats = {"added": 0, "promoted": 0, "removed": 0, "refused": 0}

    # ------------------------------------------------------------------ the leader loop

    def leading(self, yes: bool) -> None:
        """Start or stop the leader's loop (the catalog's on_leadership)."""
        if yes and (self._task is None or self._task.done()):
            self.autopilot = Autopilot(self.autopilot_config()[0])
            self._task = asyncio.ensure_future(self._loop())
        elif not yes and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad tick must not stop the leader managing its cluster
                log.exception("raft membership: tick failed")
            await asyncio.sleep(UPDATE_INTERVAL_S)

    def _gossip_servers(self) -> dict[str, tuple[str, str, MemberStatus]]:
        """Raft ID -> (node name, RPC address, gossip status) of our datacenter's servers."""
        out = {}
        for m in self.members():
            meta = server_meta(m)
            if meta is not None and meta.datacenter == self.datacenter:
                out[meta.id] = (meta.name, meta.address, m.status)
        return out

    async def tick(self) -> None:
        """One pass of rules 1-3; at most one configuration change."""
        core = self.raft.core
        if core is None or not self.raft.is_leader:
            return
        gossip = self._gossip_servers()
        config = self.raft.configuration
        in_config = {s.id for s in config.servers}
        for sid, (name, addr, status) in sorted(gossip.items()):
            if sid not in in_config and status is MemberStatus.ALIVE:
                log.info("raft membership: adding server %s (%s) as a non-voter", name, addr)
                if await self._change(AddNonVoter(sid, addr)):
                    self.stats["added"] += 1
                return
        for s in config.servers:
            entry = gossip.get(s.id)
            if s.id != self.node_id and entry is not None and entry[2] is MemberStatus.LEFT:
                log.info("raft membership: removing server %s, which left", entry[0])
                if await self._change(RaftRemoveServer(s.id)):
                    self.stats["removed"] += 1
                return
        self.autopilot.reconfigure(self.autopilot_config()[0])
        states = await self._states(gossip)
        for action in self.autopilot.update(time.monotonic(), states, core.last_index, core.term):
            if isinstance(action, PromoteServer):
                log.info("autopilot: promoting %s to voter", action.id)
                if await self._change(PromoteVoter(action.id)):
                    self.stats["promoted"] += 1
            elif isinstance(action, RemoveServer):
                log.info("autopilot: removing %s (%s)", action.id, action.reason)
                if await self._change(RaftRemoveServer(action.id)):
                    self.stats["removed"] += 1
            return  # one change per tick (rule 4)

    async def _change(self, change: Any) -> bool:
        try:
            await self.raft.change_configuration(change, CHANGE_TIMEOUT_S)
        except RaftRefused as e:
            self.stats["refused"] += 1
            log.debug("raft membership: %s refused: %s", change, e)
            return False
        except (NotLeader, TimeoutError) as e:
            log.info("raft membership: %s not done: %s", change, e)
            return False
        return True

    async def _states(self, gossip: dict[str, tuple[str, str, MemberStatus]]) -> list[ServerState]:
        core = self.raft.core
        assert core is not None
        now = asyncio.get_running_loop().time()
        servers = list(self.raft.configuration.servers)

        async def stats(sid: str, addr: str) -> tuple[int, int]:
            if sid == self.node_id:
                return core.last_term, core.last_index
            try:
                resp = await asyncio.wait_for(
                    self.rpc.query_at(addr, "raft_stats", STATS_TIMEOUT_S), STATS_TIMEOUT_S
                )
            except Exception:
                return 0, 0
            value = resp.value if isinstance(resp.value, dict) else {}
            return int(value.get("LastTerm", 0) or 0), int(value.get("LastIndex", 0) or 0)

        got = await asyncio.gather(*(stats(s.id, s.address) for s in servers))
        out = []
        for s, (last_term, last_index) in zip(servers, got, strict=True):
            name, _, status = gossip.get(s.id, ("", s.address, MemberStatus.NONE))
            contact = core.last_contact(s.id)
            out.append(
                ServerState(
                    id=s.id,
                    name=name,
                    address=s.address,
                    voter=s.voter,
                    leader=s.id == self.node_id,
                    serf_status=_SERF_STATUS.get(status, "none"),
                    failed_since=None,
                    last_contact_s=0.0
                    if s.id == self.node_id
                    else (None if contact is None else max(0.0, now - contact)),
                    last_term=last_term,
                    last_index=last_index,
                )
            )
        return out

    # ------------------------------------------------------------------ RaftAdmin

    def configuration(self) -> tuple[int, list[dict[str, Any]]]:
        core = self.raft.core
        gossip = self._gossip_servers()
        servers = []
        for s in self.raft.configuration.servers:
            if core is not None and s.id == self.node_id:
                last = core.last_index
            else:
                last = core.match_index(s.id) if core is not None else 0
            servers.append(
                {
                    "ID": s.id,
                    "Node": gossip.get(s.id, ("",))[0],
                    "Address": s.address,
                    "Leader": s.id == self.raft.leader,
                    "ProtocolVersion": "3",
                    "Voter": s.voter,
                    "LastIndex": last,
                }
            )
        index = core.configuration_index if core is not None else 0
        return index, servers

    def _find(self, server_id: str | None, address: str | None) -> str:
        for s in self.raft.configuration.servers:
            if (server_id and s.id == server_id) or (address and s.address == address):
                return s.id
        if server_id:
            raise AdminError(f"id {server_id!r} was not found in the Raft configuration")
        raise AdminError(f"address {address!r} was not found in the Raft configuration")

    async def remove_peer(self, server_id: str | None, address: str | None) -> None:
        """Consul's Operator.RaftRemovePeerByID/Address, on the leader."""
        sid = self._find(server_id, address)
        try:
            await self.raft.change_configuration(RaftRemoveServer(sid), CHANGE_TIMEOUT_S)
        except RaftRefused as e:
            raise AdminError(str(e)) from None
        except NotLeader:
            raise AdminError("No cluster leader") from None
        log.warning("removed Raft peer %s", sid)

    async def transfer_leader(self, server_id: str | None) -> None:
        if server_id is not None:
            self._find(server_id, None)
        try:
            await self.raft.transfer_leadership(server_id, CHANGE_TIMEOUT_S)
        except RaftRefused as e:
            raise AdminError(str(e)) from None
        except NotLeader:
            raise AdminError("No cluster leader") from None

    def autopilot_config(self) -> tuple[AutopilotConfig, int, int]:
        stored = self.catalog.store.operator.get("autopilot")
        if stored is None:
            return self.defaults, 0, 0
        try:
            cfg = AutopilotConfig.from_json(dict(stored["Config"]), self.defaults)
        except ValueError as e:  # written by this code; a refusal here is a bug, not input
            log.error("stored autopilot configuration is unreadable: %s", e)
            return self.defaults, 0, 0
        return cfg, int(stored["CreateIndex"]), int(stored["ModifyIndex"])

    async def set_autopilot_config(self, cfg: AutopilotConfig, cas: int | None) -> bool:
        body = cfg.to_json(0, 0)
        body.pop("CreateIndex", None)
        body.pop("ModifyIndex", None)
        ok = bool(await self.catalog.write(C.autopilot_set(0.0, body, cas)))
        if ok:
            self.autopilot.reconfigure(cfg)
        return ok

    def autopilot_health(self) -> dict[str, Any]:
        return self.autopilot.health(time.time() - time.monotonic())
