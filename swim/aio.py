"""The asyncio driver for a gossip core (:class:`swim.serf.Serf`): UDP via asyncio-dgram,
TCP via asyncio streams, the core's clock from ``loop.time()``.

What the driver owns and bounds:

* one UDP socket and one TCP listener on the same port (memberlist's convention);
* inbound streams: at most ``MAX_INBOUND_STREAMS`` at once (memberlist's push/pull cap),
  each read until one complete frame (``swim.codec.stream_frame_length``), at most
  ``codec.STREAM_BYTES_MAX`` bytes, within the core's ``tcp_timeout_s``;
* outbound streams: connect, write, read one frame back, all within the effect's timeout;
* requests (join, leave, key operations...): :meth:`GossipDriver.request` hands the core a
  request event with a fresh id and awaits the completion effect with that id.

Notifications (member events, user events, queries) go to the ``on_event`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncio_dgram

from gossamer.core import Effect, Event, TimerExpired
from swim import codec
from swim.events import (
    CloseStream,
    JoinCompleted,
    KeyOperationCompleted,
    LeaveCompleted,
    OpenStream,
    PacketReceived,
    QueryFinished,
    RequestCompleted,
    SendPacket,
    SendStreamResponse,
    StreamFailed,
    StreamRequestReceived,
    StreamResponseReceived,
)
from swim.serf import Serf

__all__ = ["GossipDriver"]

log = logging.getLogger("gossamer.swim.aio")

MAX_INBOUND_STREAMS = 128
READ_CHUNK = 65536
_COMPLETIONS = (
    JoinCompleted,
    LeaveCompleted,
    RequestCompleted,
    KeyOperationCompleted,
    QueryFinished,
)


class GossipDriver:
    """Runs one :class:`Serf` core on real sockets."""

    def __init__(
        self,
        core: Serf,
        bind: tuple[str, int],
        on_event: Callable[[Effect], None] | None = None,
    ) -> None:
        self.core = core
        self.bind = bind
        self.on_event = on_event or (lambda e: None)
        self.loop = asyncio.get_running_loop()
        self._udp: Any = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._inbound: dict[int, asyncio.Future[bytes | None]] = {}
        self._next_inbound = 0
        self._pending: dict[int, asyncio.Future[Effect]] = {}
        self._next_request = 0
        self._closed = False
        self.stats = {"udp_send_errors": 0, "streams_refused": 0}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        host, port = self.bind
        self._udp = await asyncio_dgram.bind((host, port))
        self._tcp = await asyncio.start_server(
            self._serve_stream, host, port, limit=READ_CHUNK, reuse_address=True
        )
        self._spawn(self._udp_loop())
        self.core.start(self.loop.time())
        self._after()

    async def close(self) -> None:
        """Stop the sockets; the core is left as it is (call its shutdown first)."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ feeding the core

    def feed(self, event: Event) -> None:
        if self._closed:
            return
        self.core.handle(self.loop.time(), event)
        self._after()

    def _after(self) -> None:
        for eff in self.core.take_effects():
            self._execute(eff)
        self._arm()

    def _arm(self) -> None:
        d = self.core.next_deadline()
        if d == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = d
        if d is not None and d != float("inf"):
            self._timer = self.loop.call_at(d, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.feed(TimerExpired())

    async def request(self, make: Callable[[int], Event], timeout_s: float = 60.0) -> Effect:
        """Give the core a request event built with a fresh id; await its completion."""
        self._next_request += 1
        rid = self._next_request
        fut: asyncio.Future[Effect] = self.loop.create_future()
        self._pending[rid] = fut
        try:
            self.feed(make(rid))
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._pending.pop(rid, None)

    # ------------------------------------------------------------------ effects

    def _execute(self, eff: Effect) -> None:
        if isinstance(eff, SendPacket):
            try:
                # asyncio-dgram's send() is a coroutine that waits for the transport to
                # drain; effects are carried out synchronously and in order, so we hand the
                # datagram to its transport directly (UDP sendto never blocks; a full
                # buffer drops the datagram, which gossip tolerates by design).
                self._udp._transport.sendto(eff.data, eff.addr)
            except Exception as e:  # a full socket buffer or an unroutable address
                self.stats["udp_send_errors"] += 1
                log.debug("udp send to %s failed: %s", eff.addr, e)
        elif isinstance(eff, OpenStream):
            self._spawn(self._outbound(eff))
        elif isinstance(eff, SendStreamResponse):
            fut = self._inbound.get(eff.stream_id)
            if fut is not None and not fut.done():
                fut.set_result(eff.data)
        elif isinstance(eff, CloseStream):
            fut = self._inbound.get(eff.stream_id)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif isinstance(eff, _COMPLETIONS):
            fut2 = self._pending.get(eff.request_id)
            if fut2 is not None and not fut2.done():
                fut2.set_result(eff)
            else:
                self.on_event(eff)
        else:
            self.on_event(eff)

    # ------------------------------------------------------------------ UDP

    async def _udp_loop(self) -> None:
        udp = self._udp
        while True:
            try:
                data, addr = await udp.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError as e:  # ICMP errors surface here on Linux; keep listening
                log.debug("udp recv error: %s", e)
                continue
            self.feed(PacketReceived(bytes(data), (addr[0], addr[1])))

    # ------------------------------------------------------------------ TCP

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        timeout = self.core.config.swim.tcp_timeout_s
        if len(self._inbound) >= MAX_INBOUND_STREAMS:
            self.stats["streams_refused"] += 1
            writer.close()
            return
        self._next_inbound += 1
        sid = self._next_inbound
        fut: asyncio.Future[bytes | None] = self.loop.create_future()
        self._inbound[sid] = fut
        try:
            frame = await asyncio.wait_for(_read_frame(reader), timeout)
            if frame is None:
                return
            self.feed(StreamRequestReceived(sid, frame, (peer[0], peer[1])))
            reply = await asyncio.wait_for(fut, timeout)
            if reply:
                writer.write(reply)
                await asyncio.wait_for(writer.drain(), timeout)
        except (TimeoutError, ConnectionError, OSError, codec.DecodeError) as e:
            log.debug("inbound stream from %s: %s", peer, e)
        finally:
            self._inbound.pop(sid, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _outbound(self, eff: OpenStream) -> None:
        deadline = self.loop.time() + eff.timeout_s
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(
                    eff.addr[0], eff.addr[1], limit=READ_CHUNK
                )
                writer.write(eff.data)
                await writer.drain()
                if not eff.expect_response:
                    self.feed(StreamFailed(eff.stream_id, ""))
                    return
                frame = await _read_frame(reader)
            if frame is None:
                self.feed(StreamFailed(eff.stream_id, "EOF"))
            else:
                self.feed(StreamResponseReceived(eff.stream_id, frame))
        except TimeoutError:
            self.feed(StreamFailed(eff.stream_id, "i/o timeout"))
        except (ConnectionError, OSError, codec.DecodeError) as e:
            self.feed(StreamFailed(eff.stream_id, _describe(e, eff.addr)))
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """Read exactly one memberlist stream frame; None on a clean EOF before any byte."""
    frames = codec.FrameReader()
    buf = bytearray()
    while True:
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            if not buf:
                return None
            raise codec.DecodeError("EOF in the middle of a frame")
        buf += chunk
        n = frames.feed(chunk)
        if n is not None:
            return bytes(buf[:n])


def _describe(e: BaseException, addr: tuple[str, int]) -> str:
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {addr[0]}:{addr[1]}: connect: connection refused"
    return str(e) or type(e).__name__
