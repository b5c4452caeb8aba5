"""Memory of a catalog: N nodes x S services x C checks per service, plus the node's
serfHealth, built by applying real register commands to the state store.

Figures: resident memory added (RSS, from /proc/self/statm) and Python heap added
(tracemalloc, with --tracemalloc: slower), per node and in all. Baseline, measured in
the same run: the size of the same catalog as Consul's JSON (the /v1/catalog and
/v1/health answers serialised with orjson), i.e. what the data weighs on the wire.

Goal (issue 4): 10,000 nodes x 5 services x 2 checks <= 1 GB.

    python bench/bench_catalog_memory.py                 # 10,000 x 5 x 2
    python bench/bench_catalog_memory.py --nodes 1000
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

import orjson

from catalog import commands as C
from catalog.store import StateStore


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(store: StateStore, nodes: int, services: int, checks: int) -> None:
    index = store.index
    for n in range(nodes):
        name = f"node-{n:05d}"
        addr = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        index += 1
        store.apply(
            index,
            C.register(
                0.0,
                name,
                addr,
                node_id=f"00000000-0000-4000-8000-{n:012d}",
                datacenter="dc1",
                tagged_addresses={"lan": addr, "wan": addr},
                node_meta={"rack": f"r{n % 40}"},
                checks=[{"CheckID": "serfHealth", "Name": "Serf Health Status",
                         "Status": "passing", "Output": "Agent alive and reachable"}],
            ),
        )  # fmt: skip
        for s in range(services):
            sid = f"svc{s}-{n}"
            index += 1
            store.apply(
                index,
                C.register(
                    0.0,
                    name,
                    addr,
                    service={"ID": sid, "Service": f"svc{s}", "Tags": ["v1", f"t{s}"],
                             "Port": 8000 + s, "Meta": {"version": "1.2.3"}},
                    checks=[{"CheckID": f"service:{sid}:{c + 1}", "Name": f"check {c}",
                             "ServiceID": sid, "Status": "passing",
                             "Output": "HTTP GET http://localhost/health: 200 OK"}
                            for c in range(checks)],
                    skip_node_update=True,
                ),
            )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--checks", type=int, default=2)
    ap.add_argument("--tracemalloc", action="store_true")
    a = ap.parse_args()
    gc.collect()
    if a.tracemalloc:
        tracemalloc.start()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    store = StateStore()
    build(store, a.nodes, a.services, a.checks)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss = rss_bytes() - rss0
    heap = tracemalloc.get_traced_memory()[0] if a.tracemalloc else None
    t0 = time.perf_counter()
    wire = len(orjson.dumps(store.catalog_nodes().value))
    for name in store.service_nodes:
        wire += len(orjson.dumps(store.service_health(name).value))
    json_s = time.perf_counter() - t0
    n_svc = a.nodes * a.services
    n_chk = a.nodes * (1 + a.services * a.checks)
    print(f"catalog: {a.nodes:,} nodes, {n_svc:,} services, {n_chk:,} checks "
          f"({store.index:,} commands applied in {build_s:.1f} s, "
          f"{store.index / build_s:,.0f} commands/s)")  # fmt: skip
    print(f"  RSS added            {rss / 2**20:8.1f} MiB  ({rss / a.nodes / 1024:.1f} KiB/node)")
    if heap is not None:
        print(f"  Python heap added    {heap / 2**20:8.1f} MiB")
    print(f"  baseline: as Consul JSON (nodes + health of every service) "
          f"{wire / 2**20:8.1f} MiB, serialised in {json_s:.1f} s")  # fmt: skip
    print(f"  ratio RSS / JSON     {rss / wire:8.2f}")
    print(f"  goal <= 1 GB for 10,000 x 5 x 2: {'met' if rss <= 2**30 else 'NOT met'} "
          f"(at {a.nodes:,} x {a.services} x {a.checks})")  # fmt: skip


if __name__ == "__main__":
    main()
