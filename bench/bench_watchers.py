"""Blocking-query fan-out: N watchers hold ``GET /v1/kv/<prefix>?recurse&index=I`` on one
`gossamer agent -dev`; one write under the prefix must answer them all. Figure: time
from sending the write to the last watcher's complete answer, over several rounds (each
round re-arms every watcher with the new index), p50 / p99 / max.

Baseline, same client code in the same run: **floor**, gossamer's HTTP stack (h11 +
asyncio) holding the same N requests on one asyncio event that a PUT sets, answering the
same body. The ratio is what the store, the watch hub and the blocking-query loop add on
top of writing N HTTP answers from one Python process.

Goal (issue 4): 1,000 watchers, p99 <= 300 ms.

    python bench/bench_watchers.py                      # 1,000 watchers, 20 rounds
    python bench/bench_watchers.py --watchers 2000 --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from bench_catalog_http import free_port, http, process, wait_http

FLOOR_SERVER = """
import asyncio, sys
from catalog.aio import HTTPServer, Response

async def main(port):
    srv = HTTPServer(object(), "127.0.0.1", port)
    state = {"index": 10, "event": asyncio.Event()}
    body = [{"Key": "app/k", "Value": "dmFsdWU=", "Flags": 0, "LockIndex": 0,
             "CreateIndex": 1, "ModifyIndex": 10}]
    async def get(request, arg):
        if int(request.query.get("index", "0")) >= state["index"]:
            await state["event"].wait()
        return Response(body, headers={"X-Consul-Index": str(state["index"])})
    async def put(request, arg):
        state["index"] += 1
        ev, state["event"] = state["event"], asyncio.Event()
        ev.set()
        return True
    srv.route("/v1/kv/", {"GET": get, "PUT": put})
    await srv.start()
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


class Watcher:
    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def send(self, index: int) -> None:
        assert self.writer is not None
        req = f"GET {self.path}?recurse&index={index}&wait=120s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        self.writer.write(req.encode())

    async def answer(self) -> tuple[float, int]:
        """(monotonic time the whole answer was read, its X-Consul-Index)."""
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        index = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"x-consul-index":
                index = int(value)
        await self.reader.readexactly(length)
        return time.monotonic(), index

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def fanout(port: int, n: int, rounds: int, settle_s: float) -> list[float]:
    path = "/v1/kv/app/"
    watchers = [Watcher(port, path) for _ in range(n)]
    for i in range(0, n, 100):
        await asyncio.gather(*(w.connect() for w in watchers[i : i + 100]))
    writer = Watcher(port, path)
    await writer.connect()
    assert writer.writer is not None and writer.reader is not None
    # the current index, read the way every watcher would
    writer.send(0)
    _, index = await writer.answer()
    latencies = []
    try:
        for r in range(rounds):
            for w in watchers:
                w.send(index)
            tasks = [asyncio.ensure_future(w.answer()) for w in watchers]
            await asyncio.sleep(settle_s)  # let the server park every request
            early = sum(t.done() for t in tasks)
            if early:
                raise SystemExit(f"{early} watchers answered before the write (index moved?)")
            body = f"round {r}".encode()
            put = (
                f"PUT /v1/kv/app/k HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.monotonic()
            writer.writer.write(put)
            await writer.answer()
            done = await asyncio.wait_for(asyncio.gather(*tasks), 60.0)
            last = max(t for t, _ in done)
            latencies.append(last - t0)
            index = max(i for _, i in done)
    finally:
        for w in [*watchers, writer]:
            w.close()
    return latencies


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def summary(xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"p50 {statistics.median(ms):7.1f} ms  p99 {p99(ms):7.1f} ms  max {max(ms):7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--settle", type=float, default=0.5, help="seconds to let requests park")
    a = ap.parse_args()
    port, serf, floor_port = free_port(), free_port(), free_port()
    agent = [sys.executable, "-m", "gossamer", "agent", "-dev", "-node=bench",
             f"-http-port={port}", f"-serf-lan-port={serf}",
                  f"-server-port={free_port()}", "-log-level=warn"]  # fmt: skip
    with (
        process(agent),
        process([sys.executable, "-c", FLOOR_SERVER, str(floor_port)], stdin=subprocess.DEVNULL),
    ):
        wait_http(f"http://127.0.0.1:{port}/v1/status/leader")
        wait_http(f"http://127.0.0.1:{floor_port}/v1/kv/x")
        http(f"http://127.0.0.1:{port}/v1/kv/app/k", "PUT", b"seed")
        g = asyncio.run(fanout(port, a.watchers, a.rounds, a.settle))
        f = asyncio.run(fanout(floor_port, a.watchers, a.rounds, a.settle))
    print(f"\n{a.watchers:,} watchers on one prefix, {a.rounds} rounds: write -> last answer")
    print(f"  gossamer  {summary(g)}")
    print(f"  floor     {summary(f)}")
    print(f"  ratio of medians {statistics.median(g) / statistics.median(f):.2f}")
    print(f"  goal p99 <= 300 ms: {'met' if p99(g) <= 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
