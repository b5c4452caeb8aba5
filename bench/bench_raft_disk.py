"""Durable Raft log: SQLite (WAL, synchronous=FULL; federation/disk.py) against a plain
append-only segment file with a CRC per record and an fsync per batch, the design
etcd's WAL and hashicorp/raft-wal use. Issue 5 asks for "SQLite in WAL mode ... or a
segment file with checksums, whichever a benchmark favours": this prints the figures for
that choice, both run in the same process on the same disk.

Figures: durable batches per second and entries per second, at batch sizes 1, 16 and 64
(a batch is what one Raft step persists before it sends), and the p50/p99 time of one
durable batch.

    python bench/bench_raft_disk.py [--seconds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import time
import zlib
from collections.abc import Callable

import msgpack

from federation.disk import RaftDisk
from federation.raft import Entry, PersistEntries, PersistState


class SegmentLog:
    """The baseline: records ``len, crc32, msgpack(entry)`` appended to one file, fsync
    per batch. (Recovery would read records until the first bad CRC.)"""

    def __init__(self, path: str) -> None:
        self.f = open(path, "ab", buffering=0)  # noqa: SIM115

    def persist(self, effects: list[object]) -> None:
        out = bytearray()
        for e in effects:
            if isinstance(e, PersistEntries):
                for x in e.entries:
                    body = msgpack.packb((x.index, x.term, x.command), use_bin_type=True)
                    out += struct.pack(">II", len(body), zlib.crc32(body)) + body
            elif isinstance(e, PersistState):
                body = msgpack.packb(("state", e.term, e.voted_for), use_bin_type=True)
                out += struct.pack(">II", len(body), zlib.crc32(body)) + body
        self.f.write(out)
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def run(persist: Callable[[list[object]], object], batch: int, seconds: float) -> list[float]:
    times = []
    index = 1
    command = {"Op": "kv", "Verb": "set", "Key": "bench/key", "Value": b"x" * 100}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        effects: list[object] = [
            PersistEntries(index, tuple(Entry(1, index + i, command) for i in range(batch)))
        ]
        t = time.perf_counter()
        persist(effects)
        times.append(time.perf_counter() - t)
        index += batch
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="gossamer-raftdisk-", dir=a.dir)
    print(f"durable Raft log on {root}, {a.seconds:g} s per cell, 100-byte KV commands")
    print(
        f"{'batch':>6} {'store':>8} {'batches/s':>10} {'entries/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for batch in (1, 16, 64):
        rates = {}
        for name in ("sqlite", "segment"):
            path = os.path.join(root, f"{name}-{batch}")
            store: RaftDisk | SegmentLog = (
                RaftDisk(path + ".db") if name == "sqlite" else SegmentLog(path + ".log")
            )
            times = run(store.persist, batch, a.seconds)
            store.close()
            ms = sorted(t * 1000 for t in times)
            rate = len(times) / sum(times)
            rates[name] = rate
            p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
            print(
                f"{batch:>6} {name:>8} {rate:>10,.0f} {rate * batch:>10,.0f} "
                f"{statistics.median(ms):>8.3f} {p99:>8.3f}"
            )
        print(f"{'':>6} {'ratio':>8} {rates['sqlite'] / rates['segment']:>10.2f}  (sqlite/segment)")


if __name__ == "__main__":
    main()
