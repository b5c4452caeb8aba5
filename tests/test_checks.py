"""Check definitions and the check scheduler (sans-IO, virtual time), then the probes
against real servers and processes on 127.0.0.1 (Consul's agent/checks/check.go)."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from catalog.checks import (
    CheckAdded,
    CheckDecodeError,
    CheckInvalid,
    CheckRemoved,
    CheckScheduler,
    CheckStatusChanged,
    CheckType,
    DeregisterService,
    ProbeFinished,
    RunProbe,
    SchedulerConfig,
    TTLUpdated,
    parse_check,
    truncate_output,
)
from catalog.probes import CircularBuffer, http_probe, run_probe, script_probe, tcp_probe
from gossamer.core import Effect, TimerExpired

MS = 1_000_000
S = 1_000_000_000

# --------------------------------------------------------------------------- definitions


def test_parse_check_accepts_consul_spellings() -> None:
    ct = parse_check(
        {
            "name": "web",
            "ID": "chk",
            "args": ["/bin/true"],
            "interval": 10,  # a bare number is nanoseconds, as Go decodes a Duration
            "Timeout": "2s",
            "deregister_critical_service_after": "90s",
            "TLS_Skip_Verify": True,
            "serviceid": "web-1",
            "Header": {"X-A": ["1", "2"]},
            "unknown": "ignored",
            "SuccessBeforePassing": 2,
        }
    )
    assert ct.check_id == "chk" and ct.name == "web" and ct.service_id == "web-1"
    assert ct.script_args == ("/bin/true",)
    assert ct.interval_ns == 10 and ct.timeout_ns == 2 * S
    assert ct.deregister_critical_service_after_ns == 90 * S
    assert ct.tls_skip_verify is True and ct.header == {"X-A": ("1", "2")}
    assert ct.success_before_passing == 2
    assert ct.type_name == "script" and ct.runner == "script"
    # ScriptArgs wins over args; CheckID is the service-check spelling of ID
    ct = parse_check({"ScriptArgs": ["a"], "args": ["b"], "CheckID": "x", "ttl": "1s"})
    assert ct.script_args == ("a",) and ct.check_id == "x"
    assert parse_check({"ttl": "100ms"}).ttl_ns == 100 * MS
    assert parse_check({"http": "http://x", "interval": "10s"}).interval_text == "10s"
    assert parse_check(None).empty() and parse_check({}).empty()


@pytest.mark.parametrize(
    "raw",
    [
        {"name": 3},
        {"interval": "ten"},
        {"interval": True},
        {"args": "sh -c x"},
        {"header": {"a": "b"}},
        {"SuccessBeforePassing": 1.5},
        [],
    ],
)
def test_parse_check_refuses_wrong_types(raw: Any) -> None:
    with pytest.raises(CheckDecodeError):
        parse_check(raw)


VALIDATION = [
    ({"ttl": "1s", "interval": "1s"}, "Interval and TTL cannot both be specified"),
    (
        {"http": "http://x"},
        "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
    ),
    (
        {"tcp": "x:1", "interval": "-1s"},
        "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
    ),
    ({}, "TTL must be > 0 for TTL checks"),
    ({"ttl": "-1s"}, "TTL must be > 0 for TTL checks"),
    ({"alias_service": "a", "ttl": "1s"}, "TTL must be not be set for Alias checks"),
    (
        {"alias_service": "a", "http": "h", "interval": "1s"},
        "Interval cannot be set for Alias checks",
    ),
    ({"ttl": "1s", "OutputMaxSize": -1}, "MaxOutputMaxSize must be positive"),
    (
        {"ttl": "1s", "FailuresBeforeWarning": 2, "FailuresBeforeCritical": 1},
        "FailuresBeforeWarning can't be higher than FailuresBeforeCritical",
    ),
]


@pytest.mark.parametrize(("raw", "message"), VALIDATION)
def test_validate_uses_consuls_messages(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(CheckInvalid) as e:
        parse_check(raw).validate()
    assert str(e.value) == message


def test_type_names_follow_consul() -> None:
    cases = {
        "http": {"http": "h", "interval": "1s"},
        "tcp": {"tcp": "h:1", "interval": "1s"},
        "ttl": {"ttl": "1s"},
        "script": {"args": ["x"], "interval": "1s"},
        "grpc": {"grpc": "h:1", "interval": "1s"},
        "docker": {"args": ["x"], "docker_container_id": "c", "interval": "1s"},
        "alias": {"alias_service": "a"},
    }
    for name, raw in cases.items():
        assert parse_check(raw).type_name == name, name


def test_truncate_output_is_consuls_ttl_rule() -> None:
    assert truncate_output("abc", 3) == "abc"
    assert truncate_output("abcdef", 3) == "abc ... (captured 3 of 6 bytes)"


# --------------------------------------------------------------------------- scheduler


class Sim:
    """A scheduler on virtual time: advance, feed events, collect effects."""

    def __init__(self, seed: int = 1, **cfg: Any) -> None:
        self.sched = CheckScheduler(random.Random(seed), SchedulerConfig(**cfg))
        self.now = 0.0
        self.effects: list[tuple[float, Effect]] = []

    def feed(self, event: Any) -> list[Effect]:
        self.sched.handle(self.now, event)
        out = self.sched.take_effects()
        self.effects.extend((self.now, e) for e in out)
        return out

    def run_until(self, t: float) -> list[Effect]:
        """Deliver every timer up to ``t``; returns the effects."""
        got: list[Effect] = []
        while True:
            d = self.sched.next_deadline()
            if d is None or d > t:
                break
            self.now = max(self.now, d)
            got.extend(self.feed(TimerExpired()))
        self.now = t
        return got


def changes(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.status, e.output) for e in effects if isinstance(e, CheckStatusChanged)]


def ttl(ttl_ns: int) -> CheckType:
    return CheckType(ttl_ns=ttl_ns)


def test_ttl_expires_to_critical_with_consuls_output() -> None:
    sim = Sim()
    sim.feed(CheckAdded("t", ttl(100 * MS), status="passing", output="fine"))
    assert sim.run_until(0.099) == []
    assert changes(sim.run_until(0.1)) == [("critical", "TTL expired")]
    # it fires once; nothing more until someone sets the status again
    assert sim.run_until(10.0) == []
    sim.feed(TTLUpdated("t", "passing", "ok"))
    assert sim.sched.next_deadline() == pytest.approx(10.1)
    sim.run_until(10.05)
    assert changes(sim.feed(TTLUpdated("t", "warning", "meh"))) == [("warning", "meh")]
    # renewed at 10.05: expires at 10.15, quoting the last output
    assert sim.run_until(10.149) == []
    assert changes(sim.run_until(10.15)) == [
        ("critical", "TTL expired (last output before timeout follows): meh")
    ]


def test_ttl_update_truncates_output_and_refuses_non_ttl_checks() -> None:
    sim = Sim(output_max_size=8)
    sim.feed(CheckAdded("t", ttl(S)))
    got = changes(sim.feed(TTLUpdated("t", "passing", "0123456789")))
    assert got == [("passing", "01234567 ... (captured 8 of 10 bytes)")]
    sim.feed(CheckAdded("h", CheckType(http="http://x", interval_ns=S)))
    with pytest.raises(ValueError):
        sim.feed(TTLUpdated("h", "passing", ""))
    with pytest.raises(ValueError):
        sim.feed(TTLUpdated("nope", "passing", ""))
    with pytest.raises(ValueError):
        sim.feed(TTLUpdated("t", "maintenance", ""))


def probes(effects: list[Effect]) -> list[RunProbe]:
    return [e for e in effects if isinstance(e, RunProbe)]


def test_interval_checks_stagger_then_run_an_interval_after_each_finish() -> None:
    sim = Sim(seed=7)
    http = CheckType(http="http://127.0.0.1:1/", interval_ns=10 * S)
    sim.feed(CheckAdded("h", http))
    first = sim.sched.next_deadline()
    assert first is not None and 0.0 <= first < 10.0  # lib.RandomStagger(interval)
    run = probes(sim.run_until(first))
    assert len(run) == 1 and run[0].timeout_s == 10.0 and run[0].output_max_size == 4096
    # in flight: no second probe however long it takes
    assert probes(sim.run_until(first + 100.0)) == []
    sim.feed(ProbeFinished("h", run[0].run_id, "passing", "ok"))
    assert sim.sched.next_deadline() == pytest.approx(first + 110.0)
    assert changes([e for _, e in sim.effects]) == [("passing", "ok")]


def test_stagger_is_deterministic_per_seed_and_spread_across_checks() -> None:
    def firsts(seed: int) -> list[float]:
        sim = Sim(seed=seed)
        out = []
        for i in range(20):
            sim.feed(CheckAdded(f"c{i}", CheckType(tcp="h:1", interval_ns=10 * S)))
            d = sim.sched._wheel.deadline_of(("run", f"c{i}"))
            assert d is not None
            out.append(d)
        return out

    assert firsts(3) == firsts(3)
    assert firsts(3) != firsts(4)
    spread = firsts(5)
    assert all(0.0 <= d < 10.0 for d in spread) and max(spread) - min(spread) > 2.0


def test_interval_below_minimum_is_raised_to_one_second() -> None:
    sim = Sim()
    sim.feed(CheckAdded("h", CheckType(http="http://x/", interval_ns=100 * MS, timeout_ns=2 * S)))
    run = probes(sim.run_until(1.0))
    assert len(run) == 1 and run[0].timeout_s == 2.0
    sim.feed(ProbeFinished("h", run[0].run_id, "passing", ""))
    assert sim.sched.next_deadline() == pytest.approx(sim.now + 1.0)


def test_default_timeouts_per_kind() -> None:
    sim = Sim()
    sim.feed(CheckAdded("t", CheckType(tcp="h:1", interval_ns=S)))
    sim.feed(CheckAdded("s", CheckType(script_args=("x",), interval_ns=S)))
    run = {p.check_id: p.timeout_s for p in probes(sim.run_until(1.0))}
    assert run == {"t": 10.0, "s": 30.0}


def drive(sim: Sim, cid: str, results: list[str]) -> list[tuple[str, str]]:
    """Run a probe check through ``results`` (one probe each); the reported changes."""
    out: list[tuple[str, str]] = []
    for i, status in enumerate(results):
        run = probes(sim.run_until(sim.now + 1.0))
        assert len(run) == 1, f"probe {i}"
        out.extend(changes(sim.feed(ProbeFinished(cid, run[0].run_id, status, f"#{i}"))))
    return out


def test_success_before_passing_and_failures_before_critical() -> None:
    sim = Sim()
    check = CheckType(
        tcp="h:1", interval_ns=S, success_before_passing=2, failures_before_critical=3
    )
    sim.feed(CheckAdded("c", check))
    # counters start at their thresholds: the first result counts at once
    got = drive(sim, "c", ["passing", "critical", "critical", "critical", "passing", "passing"])
    assert got == [("passing", "#0"), ("critical", "#3"), ("passing", "#5")]


def test_failures_before_warning_reports_warning_first() -> None:
    sim = Sim()
    check = CheckType(
        tcp="h:1", interval_ns=S, failures_before_warning=1, failures_before_critical=3
    )
    sim.feed(CheckAdded("c", check, status="passing", output="#start"))
    got = drive(sim, "c", ["passing", "critical", "critical", "critical"])
    assert got == [("passing", "#0"), ("warning", "#1"), ("warning", "#2"), ("critical", "#3")]


def test_unchanged_results_are_not_reported_again() -> None:
    sim = Sim()
    sim.feed(CheckAdded("c", CheckType(tcp="h:1", interval_ns=S), status="passing", output="x"))
    run = probes(sim.run_until(1.0))
    assert changes(sim.feed(ProbeFinished("c", run[0].run_id, "passing", "x"))) == []


def test_stale_probe_results_are_dropped() -> None:
    sim = Sim()
    check = CheckType(tcp="h:1", interval_ns=S)
    sim.feed(CheckAdded("c", check))
    old = probes(sim.run_until(1.0))[0]
    sim.feed(CheckAdded("c", check))  # re-registered while the probe ran
    assert changes(sim.feed(ProbeFinished("c", old.run_id, "passing", "late"))) == []
    sim.feed(CheckRemoved("c"))
    assert changes(sim.feed(ProbeFinished("c", old.run_id, "passing", "late"))) == []
    assert sim.sched.dropped["stale_probe_result"] == 2
    assert sim.sched.next_deadline() is None


def test_deregister_critical_service_after_fires_once_critical_that_long() -> None:
    sim = Sim(deregister_interval_min_s=0.0)
    check = CheckType(ttl_ns=S, deregister_critical_service_after_ns=5 * S)
    sim.feed(CheckAdded("c", check, service_id="web", status="critical"))
    # registered critical: the clock starts only at the first reported critical (t=1)
    got = sim.run_until(5.99)
    assert changes(got) == [("critical", "TTL expired")]
    assert not [e for e in got if isinstance(e, DeregisterService)]
    got = sim.run_until(6.0)
    assert got == [DeregisterService("web", "c", 5.0)]


def test_deregister_clock_stops_when_the_check_recovers() -> None:
    sim = Sim(deregister_interval_min_s=0.0)
    check = CheckType(ttl_ns=10 * S, deregister_critical_service_after_ns=5 * S)
    sim.feed(CheckAdded("c", check, service_id="web", status="passing"))
    sim.run_until(1.0)
    sim.feed(TTLUpdated("c", "critical", "down"))
    sim.run_until(4.0)
    sim.feed(TTLUpdated("c", "passing", "up"))
    sim.run_until(8.0)
    sim.feed(TTLUpdated("c", "critical", "down again"))
    assert sim.sched.critical_since("c") == 8.0
    got = sim.run_until(13.0)
    assert got == [DeregisterService("web", "c", 5.0)]


def test_deregister_interval_is_raised_to_the_minimum() -> None:
    sim = Sim()  # Consul's check_deregister_interval_min: 1 minute
    check = CheckType(ttl_ns=S, deregister_critical_service_after_ns=S)
    sim.feed(CheckAdded("c", check, service_id="web"))
    assert not [e for e in sim.run_until(60.9) if isinstance(e, DeregisterService)]
    assert sim.run_until(61.0) == [DeregisterService("web", "c", 60.0)]


def test_node_checks_are_never_reaped() -> None:
    sim = Sim(deregister_interval_min_s=0.0)
    sim.feed(CheckAdded("c", CheckType(ttl_ns=S, deregister_critical_service_after_ns=S)))
    assert not [e for e in sim.run_until(100.0) if isinstance(e, DeregisterService)]


def test_scheduler_refuses_misuse() -> None:
    sim = Sim()
    with pytest.raises(ValueError):
        sim.feed(CheckAdded("g", CheckType(grpc="h:1", interval_ns=S)))
    with pytest.raises(ValueError):
        sim.feed(CheckAdded("t", ttl(S), status="maintenance"))
    with pytest.raises(TypeError):
        sim.feed(object())
    sim.now = 5.0
    sim.feed(TimerExpired())
    sim.now = 4.0
    with pytest.raises(AssertionError):
        sim.feed(TimerExpired())


# --------------------------------------------------------------------------- probes


def test_circular_buffer_keeps_the_tail() -> None:
    b = CircularBuffer(4)
    b.write(b"ab")
    b.write(b"cdef")
    assert b.bytes() == b"cdef" and b.total == 6
    b.write(b"0123456789")
    assert b.bytes() == b"6789" and b.total == 16


Route = Callable[[str, dict[str, str]], tuple[int, str, dict[str, str], bytes]]


@asynccontextmanager
async def http_server(route: Route) -> AsyncIterator[int]:
    """A tiny HTTP/1.1 server on 127.0.0.1: ``route(path, headers)`` answers."""
    seen: list[Any] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
            headers["x-method"] = method
            headers["x-body"] = body.decode()
            code, reason, extra, payload = route(path, headers)
            if code == 0:  # stall
                await asyncio.sleep(10)
                return
            out = f"HTTP/1.1 {code} {reason}\r\nContent-Length: {len(payload)}\r\n"
            for k, v in extra.items():
                out += f"{k}: {v}\r\n"
            writer.write(out.encode() + b"\r\n" + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    seen.append(server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def routes(path: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str], bytes]:
    if path == "/ok":
        return 200, "OK", {}, b"all good"
    if path == "/busy":
        return 429, "Too Many Requests", {}, b"slow down"
    if path == "/down":
        return 503, "Service Unavailable", {}, b"nope"
    if path == "/big":
        return 200, "OK", {}, b"a" * 5000 + b"TAIL"
    if path == "/moved":
        return 302, "Found", {"Location": "/ok"}, b""
    if path == "/loop":
        return 302, "Found", {"Location": "/loop"}, b""
    if path == "/echo":
        text = "|".join(
            f"{k}={headers.get(k, '')}"
            for k in ("x-method", "host", "user-agent", "accept", "x-a", "x-body")
        )
        return 200, "OK", {}, text.encode()
    if path == "/stall":
        return 0, "", {}, b""
    return 404, "Not Found", {}, b"404 page not found"


def http_check(url: str, **kw: Any) -> CheckType:
    return CheckType(http=url, interval_ns=S, **kw)


def test_http_probe_statuses_and_consuls_output() -> None:
    async def main() -> None:
        async with http_server(routes) as port:
            base = f"http://127.0.0.1:{port}"
            assert await http_probe(http_check(f"{base}/ok"), 5.0, 4096) == (
                "passing",
                f"HTTP GET {base}/ok: 200 OK Output: all good",
            )
            status, out = await http_probe(http_check(f"{base}/busy"), 5.0, 4096)
            assert status == "warning" and out.endswith("429 Too Many Requests Output: slow down")
            status, out = await http_probe(http_check(f"{base}/down"), 5.0, 4096)
            assert status == "critical" and ": 503 Service Unavailable Output: nope" in out
            status, out = await http_probe(http_check(f"{base}/big"), 5.0, 64)
            assert status == "passing" and out.endswith("Output: " + "a" * 60 + "TAIL")
            # redirects are followed; the output names the URL that was configured
            assert await http_probe(http_check(f"{base}/moved"), 5.0, 4096) == (
                "passing",
                f"HTTP GET {base}/moved: 200 OK Output: all good",
            )
            status, _ = await http_probe(http_check(f"{base}/moved", disable_redirects=True), 5, 99)
            assert status == "critical"
            status, out = await http_probe(http_check(f"{base}/loop"), 5.0, 4096)
            assert status == "critical" and "stopped after 10 redirects" in out

    asyncio.run(main())


def test_http_probe_sends_consuls_headers_method_and_body() -> None:
    async def main() -> None:
        async with http_server(routes) as port:
            url = f"http://127.0.0.1:{port}/echo"
            _, out = await http_probe(http_check(url), 5.0, 4096)
            assert out.endswith(
                f"x-method=GET|host=127.0.0.1:{port}|user-agent=Consul Health Check|"
                "accept=text/plain, text/*, */*|x-a=|x-body="
            )
            check = http_check(
                url,
                method="POST",
                body="ping",
                header={"Host": ("example.test",), "X-A": ("1",), "User-Agent": ("me",)},
            )
            status, out = await http_probe(check, 5.0, 4096)
            assert status == "passing" and out.startswith(f"HTTP POST {url}: 200 OK")
            assert out.endswith(
                "x-method=POST|host=example.test|user-agent=me|"
                "accept=text/plain, text/*, */*|x-a=1|x-body=ping"
            )

    asyncio.run(main())


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_http_probe_failures_are_critical_with_go_error_texts() -> None:
    async def main() -> None:
        port = closed_port()
        url = f"http://127.0.0.1:{port}/"
        assert await http_probe(http_check(url), 2.0, 4096) == (
            "critical",
            f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused',
        )
        async with http_server(routes) as live:
            stall = f"http://127.0.0.1:{live}/stall"
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, out = await http_probe(http_check(stall), 0.3, 4096)
            assert loop.time() - t0 < 3.0
            assert status == "critical"
            assert out == (
                f'Get "{stall}": context deadline exceeded '
                "(Client.Timeout exceeded while awaiting headers)"
            )
        status, out = await http_probe(http_check("ftp://x/"), 1.0, 4096)
        assert status == "critical" and 'unsupported protocol scheme "ftp"' in out

    asyncio.run(main())


def test_tcp_probe() -> None:
    async def main() -> None:
        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            addr = f"127.0.0.1:{port}"
            assert await tcp_probe(addr, 2.0) == ("passing", f"TCP connect {addr}: Success")
        finally:
            server.close()
            await server.wait_closed()
        dead = f"127.0.0.1:{closed_port()}"
        assert await tcp_probe(dead, 2.0) == (
            "critical",
            f"dial tcp {dead}: connect: connection refused",
        )
        status, out = await tcp_probe("no-port", 1.0)
        assert status == "critical" and "missing port in address" in out

    asyncio.run(main())


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_script_probe_exit_codes_output_and_truncation() -> None:
    async def main() -> None:
        assert await script_probe(list(py("print('hi')")), 10.0, 4096) == ("passing", "hi\n")
        code = "import sys; sys.stderr.write('warn'); sys.exit(1)"
        assert await script_probe(list(py(code)), 10.0, 4096) == ("warning", "warn")
        assert await script_probe(list(py("raise SystemExit(2)")), 10.0, 4096) == ("critical", "")
        status, out = await script_probe(list(py("print('x' * 100 + 'END')")), 10.0, 16)
        assert status == "passing"
        assert out == "Captured 16 of 104 bytes\n...\n" + "x" * 12 + "END\n"
        status, out = await script_probe(["/nonexistent/checker"], 10.0, 4096)
        assert status == "critical" and "/nonexistent/checker" in out

    asyncio.run(main())


def test_script_probe_is_killed_at_its_timeout() -> None:
    async def main() -> None:
        code = "import sys, time; print('started', flush=True); time.sleep(30)"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, out = await script_probe(list(py(code)), 0.5, 4096)
        assert loop.time() - t0 < 10.0
        assert status == "critical"
        assert out == "Timed out (500ms) running check\n\nstarted\n"

    asyncio.run(main())


def test_run_probe_dispatches_on_the_check() -> None:
    async def main() -> None:
        ok = CheckType(script_args=py("pass"), interval_ns=S)
        assert await run_probe(ok, 10.0, 4096) == ("passing", "")
        status, out = await run_probe(CheckType(grpc="h:1", interval_ns=S), 1.0, 4096)
        assert status == "critical" and "cannot run grpc" in out

    asyncio.run(main())
