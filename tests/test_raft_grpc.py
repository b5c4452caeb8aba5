"""Three Raft servers talking gRPC on 127.0.0.1, with SQLite logs and the catalog's store:
a leader is elected, acknowledged writes reach every store, the leader is stopped and a
new one takes over, and the old one restarts from its disk and catches up. Every wait is
bounded; everything started is closed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from catalog import commands as C
from catalog.store import StateStore
from federation.aio import NotLeader, RaftServer, RPCClient, RPCServer
from federation.raft import RaftConfig
from gossamer.cluster import free_port

pytestmark = pytest.mark.integration

CFG = RaftConfig(election_timeout_s=0.5, heartbeat_interval_s=0.05)


async def converge(stores: dict[str, StateStore], key: str, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while loop.time() < end:
        if all(s.kv_get(key).value is not None for s in stores.values()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} did not reach every store")


async def write(servers: dict[str, RaftServer], key: str, value: bytes) -> None:
    """A client's loop: ask whoever leads, retry on NotLeader (bounded)."""
    for _ in range(100):
        lead = next((s for s in servers.values() if s.core and s.core.leader == s.id), None)
        if lead is not None:
            try:
                assert await lead.propose(C.kv(0.0, "set", key, value), 5.0) is True
                return
            except NotLeader:
                pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"no leader acknowledged {key}")


def test_three_servers_over_grpc_survive_losing_the_leader(tmp_path: Path) -> None:
    ids = ["s1", "s2", "s3"]
    addrs = {i: f"127.0.0.1:{free_port()}" for i in ids}

    rpcs: dict[str, tuple[RPCServer, RPCClient]] = {}

    async def make(i: str) -> tuple[RaftServer, StateStore]:
        store = StateStore()
        rpc, client = RPCServer(addrs[i]), RPCClient()
        srv = RaftServer(i, rpc, client, str(tmp_path / i / "raft.db"), store, CFG,
                         random.Random(i))  # fmt: skip
        await rpc.start()
        await srv.start()
        if not srv.bootstrapped:
            await srv.bootstrap(addrs)
        rpcs[i] = (rpc, client)
        return srv, store

    async def stop(i: str) -> None:
        rpc, client = rpcs.pop(i)
        await servers[i].close()
        await rpc.close()
        await client.close()

    servers: dict[str, RaftServer] = {}
    stores: dict[str, StateStore] = {}

    async def go() -> None:
        try:
            for i in ids:
                servers[i], stores[i] = await make(i)
            lead = await servers["s1"].wait_leader(10.0)
            assert lead in ids
            for n in range(30):
                await write(servers, f"k{n}", b"v")
            await converge(stores, "k29")
            # stop the leader; the other two elect a new one and keep acknowledging
            await stop(lead)
            del servers[lead], stores[lead]
            for n in range(30, 40):
                await write(servers, f"k{n}", b"v")
            new = next(s.id for s in servers.values() if s.core and s.core.leader == s.id)
            assert new != lead
            # the old leader restarts from its SQLite log and catches up
            servers[lead], stores[lead] = await make(lead)
            assert servers[lead].core is not None and servers[lead].core.last_index > 0
            await converge(stores, "k39")
            assert [stores[lead].kv_get(f"k{n}").value is not None for n in range(40)] == [
                True
            ] * 40
            assert servers[lead].stats["bad_messages"] == 0
        finally:
            for i in list(rpcs):
                await stop(i)

    asyncio.run(go())
