"""The I/O of health-check probes: HTTP, TCP and script, on asyncio, each bounded.

Consul behaviour copied (agent/checks/check.go):

* **HTTP** (``CheckHTTP.check``): ``Method`` (default GET) to ``HTTP`` with ``Header``
  (``Host`` sets the host; ``User-Agent: Consul Health Check`` and
  ``Accept: text/plain, text/*, */*`` unless given), ``Body``; keep-alives off; redirects
  followed (at most 10, as Go's client does) unless ``DisableRedirects``. 2xx is
  ``passing``, 429 ``warning``, anything else ``critical``; the output is
  ``HTTP <METHOD> <url>: <code> <reason> Output: <body>`` where the body is the *last*
  ``OutputMaxSize`` bytes read (a circular buffer, ``armon/circbuf``). A failed request is
  ``critical`` with Go's error text, e.g. ``Get "http://127.0.0.1:1/": dial tcp
  127.0.0.1:1: connect: connection refused``. The whole exchange is bounded by
  ``Timeout`` (default 10 s), as Go's ``http.Client.Timeout``.
* **TCP** (``CheckTCP.check``): connect within ``Timeout`` (default 10 s): ``passing``
  with ``TCP connect <addr>: Success``, else ``critical`` with Go's dial error.
* **Script** (``CheckMonitor.check``): ``ScriptArgs`` executed directly (no shell), stdout
  and stderr together into a circular buffer of ``OutputMaxSize`` bytes (``Captured <n>
  of <total> bytes\\n...\\n<tail>`` when it overflowed); exit 0 ``passing``, 1
  ``warning``, anything else ``critical``; after ``Timeout`` (default 30 s) the process
  group is killed and the result is ``critical`` with ``Timed out (<timeout>) running
  check`` (plus the output so far).

Limits: response heads ``HEAD_BYTES_MAX``, redirects ``MAX_REDIRECTS``, output the
caller's ``output_max_size``; everything else is bounded by the timeout. A cancelled probe
closes its socket or kills its process group before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import ssl
from typing import Final
from urllib.parse import SplitResult, urljoin, urlsplit

import h11

from catalog.checks import CRITICAL, PASSING, WARNING, CheckType
from gossamer.duration import format_duration

__all__ = [
    "HEAD_BYTES_MAX",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "CircularBuffer",
    "http_probe",
    "run_probe",
    "script_probe",
    "tcp_probe",
]

USER_AGENT: Final = "Consul Health Check"
ACCEPT: Final = "text/plain, text/*, */*"
MAX_REDIRECTS: Final = 10
"""Go's default CheckRedirect policy stops after 10 redirects."""
HEAD_BYTES_MAX: Final = 64 * 1024
READ_CHUNK: Final = 16 * 1024
KILL_WAIT_S: Final = 5.0


class CircularBuffer:
    """armon/circbuf: keeps the last ``size`` bytes written and counts them all."""

    __slots__ = ("_buf", "size", "total")

    def __init__(self, size: int) -> None:
        assert size > 0
        self.size = size
        self.total = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if len(data) >= self.size:
            self._buf = bytearray(data[-self.size :])
            return
        self._buf += data
        extra = len(self._buf) - self.size
        if extra > 0:
            del self._buf[:extra]

    def bytes(self) -> bytes:
        return bytes(self._buf)

    def text(self) -> str:
        return self._buf.decode("utf-8", "replace")


async def run_probe(check: CheckType, timeout_s: float, output_max_size: int) -> tuple[str, str]:
    """Run the probe ``check`` asks for; returns ``(status, output)``."""
    runner = check.runner
    if runner == "http":
        return await http_probe(check, timeout_s, output_max_size)
    if runner == "tcp":
        return await tcp_probe(check.tcp, timeout_s)
    if runner == "script":
        return await script_probe(list(check.script_args), timeout_s, output_max_size)
    return CRITICAL, f"gossamer cannot run {runner or 'this'} checks yet"


# --------------------------------------------------------------------------- errors


def _split_host_port(addr: str) -> tuple[str, int]:
    """net.SplitHostPort plus a port number; ValueError with Go's wording."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {addr}: missing port in address")
        port_text = rest[1:]
    else:
        host, sep, port_text = addr.rpartition(":")
        if not sep:
            raise ValueError(f"address {addr}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {addr}: too many colons in address")
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"address {addr}: invalid port")
    return host, int(port_text)


def _go_dial_error(addr: str, e: BaseException) -> str:
    """Go's *net.OpError text for a failed dial."""
    if isinstance(e, TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {addr}: connect: connection refused"
    if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        what = "network is unreachable" if e.errno == errno.ENETUNREACH else "no route to host"
        return f"dial tcp {addr}: connect: {what}"
    if isinstance(e, OSError) and e.strerror:
        return f"dial tcp {addr}: {e.strerror.lower()}"
    return f"dial tcp {addr}: {e}"


# --------------------------------------------------------------------------- TCP


async def tcp_probe(addr: str, timeout_s: float) -> tuple[str, str]:
    """CheckTCP.check."""
    try:
        host, port = _split_host_port(addr)
    except ValueError as e:
        return CRITICAL, f"dial tcp: {e}"
    writer: asyncio.StreamWriter | None = None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as e:
        return CRITICAL, _go_dial_error(addr, e)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
    return PASSING, f"TCP connect {addr}: Success"


# --------------------------------------------------------------------------- HTTP


class _HTTPFailure(Exception):
    """A request that got no response: Go's *url.Error text follows the method and URL."""


def _go_method_op(method: str) -> str:
    """net/http's urlErrorOp: "Get", "Post", …"""
    return method[:1] + method[1:].lower()


async def http_probe(check: CheckType, timeout_s: float, output_max_size: int) -> tuple[str, str]:
    """CheckHTTP.check. The timeout bounds connecting, every redirect and reading the
    body; a timeout while reading the body keeps what was read, as Go's ``io.Copy``
    error is only logged there."""
    method = check.method or "GET"
    target = check.http
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    url = target
    body = check.body.encode()
    headers = dict(check.header)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            code, reason, location, buf = await _http_once(
                method, url, headers, body, check, deadline, output_max_size
            )
        except _HTTPFailure as e:
            return CRITICAL, f'{_go_method_op(method)} "{url}": {e}'
        if check.disable_redirects or code not in (301, 302, 303, 307, 308) or not location:
            status_text = f"{code} {reason}".rstrip()
            result = f"HTTP {method} {target}: {status_text} Output: {buf.text()}"
            if 200 <= code <= 299:
                return PASSING, result
            if code == 429:
                return WARNING, result
            return CRITICAL, result
        url = urljoin(url, location)
        if code in (301, 302, 303) and method not in ("GET", "HEAD"):
            method, body = "GET", b""
    return CRITICAL, f'{_go_method_op(method)} "{url}": stopped after {MAX_REDIRECTS} redirects'


async def _http_once(
    method: str,
    url: str,
    headers: dict[str, tuple[str, ...]],
    body: bytes,
    check: CheckType,
    deadline: float,
    output_max_size: int,
) -> tuple[int, str, str, CircularBuffer]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _HTTPFailure(f'unsupported protocol scheme "{parts.scheme}"')
    host = parts.hostname
    if not host:
        raise _HTTPFailure("no Host in request URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _HTTPFailure(f"invalid port in URL {url!r}") from None
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    if parts.scheme == "https":
        tls = ssl.create_default_context()
        if check.tls_skip_verify:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        server_hostname = check.tls_server_name or host
    remaining = deadline - loop.time()
    if remaining <= 0:
        raise _HTTPFailure(
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=server_hostname),
            remaining,
        )
    except TimeoutError:
        raise _HTTPFailure(
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ) from None
    except ssl.SSLError as e:
        raise _HTTPFailure(f"tls: {e.reason or e}") from None
    except OSError as e:
        raise _HTTPFailure(_go_dial_error(addr, e)) from None
    try:
        return await _exchange(
            reader, writer, method, parts, headers, body, deadline, output_max_size
        )
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    parts: SplitResult,
    headers: dict[str, tuple[str, ...]],
    body: bytes,
    deadline: float,
    output_max_size: int,
) -> tuple[int, str, str, CircularBuffer]:
    loop = asyncio.get_running_loop()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = parts.netloc.rpartition("@")[2]
    out: list[tuple[str, str]] = []
    lower = {k.lower() for k in headers}
    for name, values in headers.items():
        if name.lower() == "host":
            if values:
                host_header = values[0]
            continue
        if name.lower() in ("content-length", "connection", "transfer-encoding"):
            continue
        out.extend((name, v) for v in values)
    if "user-agent" not in lower:
        out.append(("User-Agent", USER_AGENT))
    if "accept" not in lower:
        out.append(("Accept", ACCEPT))
    if body:
        out.append(("Content-Length", str(len(body))))
    out.append(("Connection", "close"))
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_BYTES_MAX)
    try:
        data = conn.send(
            h11.Request(method=method, target=path, headers=[("Host", host_header), *out])
        )
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError as e:
        raise _HTTPFailure(f"net/http: invalid request: {e}") from None
    awaiting = "awaiting headers"
    try:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), max(deadline - loop.time(), 0.001))
        code, reason, location = 0, "", ""
        buf = CircularBuffer(output_max_size)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(reader.read(READ_CHUNK), remaining)
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                code = event.status_code
                reason = event.reason.decode("latin-1")
                for k, v in event.headers:
                    if k == b"location":
                        location = v.decode("latin-1")
                awaiting = "reading body"
                if method == "HEAD":
                    return code, reason, location, buf
                continue
            if isinstance(event, h11.Data):
                buf.write(bytes(event.data))
                continue
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if not code:
                    raise _HTTPFailure("EOF")
                return code, reason, location, buf
            if event is h11.PAUSED:
                return code, reason, location, buf
    except TimeoutError:
        if code:
            return code, reason, location, buf  # Go logs the body read error, keeps going
        raise _HTTPFailure(
            f"context deadline exceeded (Client.Timeout exceeded while {awaiting})"
        ) from None
    except h11.RemoteProtocolError as e:
        if code:
            return code, reason, location, buf
        raise _HTTPFailure(f"net/http: HTTP/1.x transport connection broken: {e}") from None
    except (ConnectionError, OSError) as e:
        if code:
            return code, reason, location, buf
        raise _HTTPFailure(f"read tcp: {e}") from None


# --------------------------------------------------------------------------- script


async def script_probe(args: list[str], timeout_s: float, output_max_size: int) -> tuple[str, str]:
    """CheckMonitor.check with ScriptArgs (exec.Subprocess: no shell)."""
    if not args:
        return CRITICAL, "exec: no command"
    buf = CircularBuffer(output_max_size)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills the subtree
        )
    except FileNotFoundError:
        return CRITICAL, f'exec: "{args[0]}": executable file not found in $PATH'
    except PermissionError:
        return CRITICAL, f"fork/exec {args[0]}: permission denied"
    except OSError as e:
        return CRITICAL, f"fork/exec {args[0]}: {e.strerror or e}"
    assert proc.stdout is not None

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(READ_CHUNK):
            buf.write(chunk)

    try:
        await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), timeout_s)
    except TimeoutError:
        await _kill_group(proc)
        msg = f"Timed out ({format_duration(int(timeout_s * 1e9))}) running check"
        out = _captured(buf)
        if out:
            msg += "\n\n" + out
        return CRITICAL, msg
    except asyncio.CancelledError:
        await _kill_group(proc)
        raise
    out = _captured(buf)
    code = proc.returncode
    if code == 0:
        return PASSING, out
    if code == 1:
        return WARNING, out
    return CRITICAL, out


def _captured(buf: CircularBuffer) -> str:
    text = buf.text()
    if buf.total > buf.size:
        return f"Captured {buf.size} of {buf.total} bytes\n...\n{text}"
    return text


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """exec.KillCommandSubtree: SIGKILL the process group, then reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), KILL_WAIT_S)
