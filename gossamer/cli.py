"""The ``gossamer`` command line: Consul's verbs, flag spellings, output and exit codes.

What it copies, and from where (hashicorp/consul unless noted):

1. Flags parse like Go's ``flag`` package (``FlagSet`` below): ``-f`` and ``--f``,
   ``-f=v``, ``-f v`` for non-booleans, booleans as ``-f`` or ``-f=true|false``; parsing
   stops at the first non-flag argument or after ``--``; a repeated flag overwrites,
   except list flags, which accumulate. Error texts are Go's
   (``flag provided but not defined: -x``).
2. The verb table follows mitchellh/cli as Consul wires it: ``-h``/``-help``/``--help``
   anywhere before ``--`` prints the verb's help and exits 0; ``-v``/``--version`` before
   the verb is ``version``.
3. Each verb's output, messages and exit codes are those of ``command/<verb>/<verb>.go``;
   HTTP errors read as Consul's api client writes them
   (``Unexpected response code: 500 (body)``, ``Put "http://…": dial tcp …: connect:
   connection refused``).
4. Tables are laid out as github.com/ryanuber/columnize does (``columnize`` below).

Design notes. The CLI path imports only the standard library (``http.client``, not aiohttp)
so that ``gossamer members`` starts fast; the agent runtime, the demo and the coordinate
maths are imported inside the verbs that need them. Every failure ends as one line on
stderr (plus the verb's usage for usage mistakes, as Consul does) and a non-zero exit
status, never a traceback; set ``GOSSAMER_TRACEBACK=1`` to see one for an unexpected bug.
Adding a verb is a ``Verb(...)`` entry in ``_VERBS`` and a ``_run_<verb>`` function.
"""

from __future__ import annotations

import base64
import enum
import http.client
import importlib
import importlib.util
import ipaddress
import json
import os
import re
import socket
import sys
import textwrap
import types
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gossamer
from gossamer import goregexp
from gossamer.duration import go_quote as _go_quote
from gossamer.duration import parse_duration as parse_go_duration

__all__ = [
    "ApiClient",
    "CommandError",
    "Flag",
    "FlagError",
    "FlagKind",
    "FlagSet",
    "HelpRequested",
    "ParsedFlags",
    "columnize",
    "main",
    "parse_go_duration",
]

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
HTTP_TIMEOUT_S = 15.0
"""Per request. Consul's client has none; a CLI that can hang forever is worse."""

# Consul's RPC protocol numbers as `consul version` prints them (agent/consul/config.go).
_RPC_PROTOCOL_DEFAULT = 2
_RPC_PROTOCOL_MIN = 2
_RPC_PROTOCOL_MAX = 3

# --------------------------------------------------------------------------------------
# Small Go compatibility helpers
# --------------------------------------------------------------------------------------

# unicode.IsSpace, which strings.TrimSpace uses. str.strip() would also strip \x1c-\x1f,
# and \x1f is columnize's delimiter.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def _go_trim_space(text: str) -> str:
    return text.strip(_GO_SPACE)


def _go_parse_bool(text: str) -> bool:
    """``strconv.ParseBool``; ValueError otherwise."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError("parse error")


_INT64_MAX = (1 << 63) - 1


def _go_parse_int(text: str) -> int:
    """``strconv.ParseInt(text, 0, 64)`` as Go's ``flag.IntVar`` uses it."""
    body = text[1:] if text[:1] in ("+", "-") else text
    sign = -1 if text[:1] == "-" else 1
    value = sign * _go_parse_magnitude(body)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError("value out of range")
    return value


_UINT64_MAX = (1 << 64) - 1


def _go_parse_uint(text: str) -> int:
    """``strconv.ParseUint(text, 0, 64)`` as Go's ``flag.Uint64Var`` uses it: no sign."""
    value = _go_parse_magnitude(text)
    if value > _UINT64_MAX:
        raise ValueError("value out of range")
    return value


def _go_parse_magnitude(body: str) -> int:
    """The unsigned part of ``strconv.ParseInt``/``ParseUint`` with base 0."""
    if not body or body.startswith("_") or body.endswith("_") or "__" in body:
        raise ValueError("parse error")
    if not body.isascii() or not body.replace("_", "").isalnum():
        raise ValueError("parse error")  # no sign or spaces here (Python's int takes them)
    lowered = body.lower()
    try:
        if lowered.startswith(("0x", "0o", "0b")):
            return int(body, 0)
        if len(body) > 1 and body[0] == "0":
            return int(body[1:].replace("_", ""), 8)  # Go: a leading 0 means octal
        if "_" in body:
            raise ValueError("parse error")  # underscores only with a base prefix
        return int(body, 10)
    except ValueError:
        raise ValueError("parse error") from None


def columnize(lines: Sequence[str], delim: str = "\x1f", glue: str = "  ") -> str:
    """ryanuber/columnize ``Format``: split on ``delim``, trim, left-align, join with ``glue``.

    Every column but a row's last is padded to the widest cell of that column (counted in
    code points, as Go counts runes); the last cell is not padded; no trailing newline.
    """
    rows = [[_go_trim_space(cell) for cell in line.split(delim)] for line in lines]
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row):
            if len(widths) <= i:
                widths.append(len(cell))
            elif widths[i] < len(cell):
                widths[i] = len(cell)
    out = []
    for row in rows:
        last = len(row) - 1
        out.append(
            "".join(
                cell if i == last else cell.ljust(widths[i]) + glue for i, cell in enumerate(row)
            )
        )
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Go-style flag parsing
# --------------------------------------------------------------------------------------


class FlagKind(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    INT = "int"
    UINT = "uint"
    """Go's ``flag.Uint64Var``: no sign, up to 2**64 - 1."""
    DURATION = "duration"
    """Stored as float seconds."""
    LIST = "list"
    """A repeatable string flag; values accumulate."""


FlagValue = bool | str | int | float | tuple[str, ...]


@dataclass(frozen=True)
class Flag:
    name: str
    kind: FlagKind
    usage: str
    """Help text; a word in backquotes names the value in help (Go's ``UnquoteUsage``)."""
    default: FlagValue | None = None
    """None means the kind's zero value (False, "", 0, 0.0, ())."""
    dest: str = ""
    """Key the value is stored under; aliases share one (``-join`` -> ``retry-join``)."""

    @property
    def key(self) -> str:
        return self.dest or self.name

    def zero(self) -> FlagValue:
        if self.default is not None:
            return self.default
        match self.kind:
            case FlagKind.BOOL:
                return False
            case FlagKind.STRING:
                return ""
            case FlagKind.INT | FlagKind.UINT:
                return 0
            case FlagKind.DURATION:
                return 0.0
            case FlagKind.LIST:
                return ()

    def help_lines(self) -> list[str]:
        """Consul's ``flags.Usage`` layout: ``  -name=<value>`` then the text wrapped at 72."""
        match = re.search(r"`([^`]*)`", self.usage)
        text = self.usage.replace("`", "")
        if self.kind is FlagKind.BOOL:
            head = f"  -{self.name}"
        else:
            placeholder = match.group(1) if match else _PLACEHOLDER[self.kind]
            head = f"  -{self.name}=<{placeholder}>"
        body = textwrap.wrap(text, width=72 - 5) or [""]
        return [head, *("     " + line for line in body)]


_PLACEHOLDER = {
    FlagKind.STRING: "string",
    FlagKind.INT: "int",
    FlagKind.UINT: "uint",
    FlagKind.DURATION: "duration",
    FlagKind.LIST: "value",
}


class FlagError(Exception):
    """The command line is wrong; the message is Go's ``flag`` text, one line."""


class HelpRequested(Exception):
    """``-h`` or ``-help`` was given and is not a defined flag (Go's ``flag.ErrHelp``)."""


@dataclass
class ParsedFlags:
    values: dict[str, FlagValue]
    explicit: frozenset[str]
    """Keys set on the command line (not left at their default)."""
    args: list[str]
    """What is left after the flags."""

    def get_bool(self, key: str) -> bool:
        value = self.values[key]
        assert isinstance(value, bool)
        return value

    def get_str(self, key: str) -> str:
        value = self.values[key]
        assert isinstance(value, str)
        return value

    def get_int(self, key: str) -> int:
        value = self.values[key]
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    def get_float(self, key: str) -> float:
        value = self.values[key]
        assert isinstance(value, float)
        return value

    def get_list(self, key: str) -> tuple[str, ...]:
        value = self.values[key]
        assert isinstance(value, tuple)
        return value

    def is_set(self, key: str) -> bool:
        return key in self.explicit


class FlagSet:
    """Go's ``flag.FlagSet`` with ``ContinueOnError``, minus its printing."""

    def __init__(self, flags: Sequence[Flag]) -> None:
        self.flags = tuple(flags)
        self._by_name: dict[str, Flag] = {}
        for f in self.flags:
            if f.name in self._by_name:
                raise ValueError(f"flag redefined: {f.name}")
            self._by_name[f.name] = f

    def parse(self, argv: Sequence[str]) -> ParsedFlags:
        values: dict[str, FlagValue] = {f.key: f.zero() for f in self.flags}
        explicit: set[str] = set()
        args = list(argv)
        while args:
            s = args[0]
            if len(s) < 2 or s[0] != "-":
                break
            minuses = 1
            if s[1] == "-":
                minuses = 2
                if len(s) == 2:  # "--" ends the flags and is consumed
                    args.pop(0)
                    break
            name = s[minuses:]
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {s}")
            args.pop(0)
            has_value = False
            value = ""
            eq = name.find("=", 1)  # "=" cannot be first
            if eq != -1:
                name, value, has_value = name[:eq], name[eq + 1 :], True
            flag = self._by_name.get(name)
            if flag is None:
                if name in ("help", "h"):
                    raise HelpRequested()
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.kind is FlagKind.BOOL:
                if not has_value:
                    values[flag.key] = True
                else:
                    try:
                        values[flag.key] = _go_parse_bool(value)
                    except ValueError as e:
                        raise FlagError(
                            f"invalid boolean value {_go_quote(value)} for -{name}: {e}"
                        ) from None
            else:
                if not has_value:
                    if not args:
                        raise FlagError(f"flag needs an argument: -{name}")
                    value = args.pop(0)
                values[flag.key] = self._convert(flag, name, value, values[flag.key])
            explicit.add(flag.key)
        return ParsedFlags(values=values, explicit=frozenset(explicit), args=args)

    @staticmethod
    def _convert(flag: Flag, name: str, text: str, current: FlagValue) -> FlagValue:
        try:
            match flag.kind:
                case FlagKind.STRING:
                    return text
                case FlagKind.INT:
                    return _go_parse_int(text)
                case FlagKind.UINT:
                    return _go_parse_uint(text)
                case FlagKind.DURATION:
                    return parse_go_duration(text)
                case FlagKind.LIST:
                    assert isinstance(current, tuple)
                    return (*current, text)
                case FlagKind.BOOL:  # pragma: no cover - handled by the caller
                    raise AssertionError("bool flags are parsed by the caller")
        except ValueError as e:
            raise FlagError(f"invalid value {_go_quote(text)} for flag -{name}: {e}") from None


# --------------------------------------------------------------------------------------
# Output and errors
# --------------------------------------------------------------------------------------


class CommandError(Exception):
    """Ends the verb: ``message`` (may be several lines, e.g. error + usage) to stderr."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str = "") -> None:
    sys.stderr.write(text + "\n")


# --------------------------------------------------------------------------------------
# HTTP client (Consul's api package, the parts the verbs need)
# --------------------------------------------------------------------------------------


class ApiError(Exception):
    """A request failed; the text is what Consul's api client would say."""


@dataclass(frozen=True)
class _Endpoint:
    host: str
    """Without brackets, for the socket."""
    port: int
    hostport: str
    """As it appears in a URL: ``127.0.0.1:8500``, ``[::1]:8500``."""
    prefix: str
    """A reverse-proxy path prefix from ``http://host:port/prefix``, or ""."""


def _parse_http_addr(addr: str, ssl_env: str) -> _Endpoint:
    """Consul's ``api.NewClient`` address handling; ApiError for what we cannot serve."""
    if not addr:
        addr = DEFAULT_HTTP_ADDR
    scheme = "http"
    try:
        if ssl_env and _go_parse_bool(ssl_env):
            scheme = "https"
    except ValueError:
        pass  # Consul logs a warning and carries on with http
    prefix = ""
    if "://" in addr:
        given, addr = addr.split("://", 1)
        match given:
            case "http":
                pass  # never reverts to http if CONSUL_HTTP_SSL asked for TLS
            case "https":
                scheme = "https"
            case "unix":
                raise ApiError("unix sockets are not supported yet")
            case _:
                raise ApiError(f"Unknown protocol scheme: {given}")
        if "/" in addr:
            addr, path = addr.split("/", 1)
            prefix = "/" + path
    if scheme == "https":
        raise ApiError("https is not supported yet")
    host, port_text = addr, ""
    if addr.startswith("["):
        close = addr.find("]")
        if close == -1:
            raise ApiError(f"missing ']' in address {_go_quote(addr)}")
        host, tail = addr[1:close], addr[close + 1 :]
        if tail and not tail.startswith(":"):
            raise ApiError(f"invalid address {_go_quote(addr)}")
        port_text = tail[1:]
    elif addr.count(":") == 1:
        host, port_text = addr.split(":")
    port = 80  # net/http's default for an http URL without a port
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ApiError(f'invalid port ":{port_text}" after host')
        port = int(port_text)
    shown = f"[{host}]" if ":" in host else host
    hostport = f"{shown}:{port_text}" if port_text else shown
    return _Endpoint(host=host, port=port, hostport=hostport, prefix=prefix)


def _escape_path(path: str) -> str:
    """``url.URL.EscapedPath``: keep unreserved characters and ``$&+,/:;=@``."""
    return urllib.parse.quote(path, safe="$&+,/:;=@")


@dataclass(frozen=True)
class ApiResponse:
    """One HTTP answer, whatever its status (``ApiClient.request``)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def index(self) -> int:
        """``X-Consul-Index``; 0 when missing or malformed (api's parseQueryMeta, errors
        ignored as its callers do)."""
        try:
            return max(0, int(self.headers.get("X-Consul-Index", "") or "x"))
        except ValueError:
            return 0

    def error(self) -> ApiError:
        """Consul's api ``requireOK`` error for a non-2xx answer."""
        text = _go_trim_space(self.body.decode("utf-8", "replace"))
        return ApiError(f"Unexpected response code: {self.status} ({text})")


class ApiClient:
    """One agent's HTTP API over ``http.client``: a connection per request, a timeout each."""

    def __init__(
        self,
        endpoint: _Endpoint,
        token: str,
        timeout_s: float = HTTP_TIMEOUT_S,
        datacenter: str = "",
    ):
        self.endpoint = endpoint
        self.token = token
        self.timeout_s = timeout_s
        self.datacenter = datacenter
        """Sent as ``?dc=`` on every request, as the api client's Config.Datacenter is."""

    def call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: object = None,
        raw_body: bytes | None = None,
    ) -> bytes:
        """The response body of a 2xx answer; ApiError with Consul's wording otherwise.
        ``body`` is sent as JSON, ``raw_body`` as it is."""
        resp = self.request(method, path, params, body, raw_body)
        if not resp.ok:
            raise resp.error()
        return resp.body

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: object = None,
        raw_body: bytes | None = None,
        *,
        content_type: str = "",
        timeout_s: float | None = None,
    ) -> ApiResponse:
        """Any answer, with its status and headers; ApiError (Consul's wording) only when
        no answer came."""
        if self.datacenter:
            params = [*params, ("dc", self.datacenter)]
        # url.Values.Encode sorts by key; values of one key keep their order.
        query = urllib.parse.urlencode(sorted(params, key=lambda kv: kv[0]))
        target = _escape_path(self.endpoint.prefix + path) + (f"?{query}" if query else "")
        url = f"http://{self.endpoint.hostport}{target}"
        op = method[:1] + method[1:].lower()  # net/http's url.Error names the method so
        headers = {"User-Agent": f"gossamer/{gossamer.__version__}"}
        if self.token:
            headers["X-Consul-Token"] = self.token
        payload = None
        if body is not None:
            # encoding/json's Encoder: compact, then a newline.
            payload = (json.dumps(body, separators=(",", ":")) + "\n").encode()
            headers["Content-Type"] = "application/json"
        elif raw_body is not None:
            payload = raw_body
        if content_type:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection(
            self.endpoint.host,
            self.endpoint.port,
            timeout=self.timeout_s if timeout_s is None else timeout_s,
        )
        try:
            try:
                conn.connect()
            except OSError as e:
                raise ApiError(f"{op} {_go_quote(url)}: {self._dial_error(e)}") from None
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:
                detail = (
                    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )
                raise ApiError(f"{op} {_go_quote(url)}: {detail}") from None
            except (http.client.RemoteDisconnected, http.client.IncompleteRead):
                raise ApiError(f"{op} {_go_quote(url)}: EOF") from None
            except (OSError, http.client.HTTPException) as e:
                raise ApiError(f"{op} {_go_quote(url)}: {self._os_error_text(e)}") from None
        finally:
            conn.close()
        return ApiResponse(status=resp.status, headers=resp.headers, body=data)

    def call_json(self, method: str, path: str, params: Sequence[tuple[str, str]] = ()) -> object:
        data = self.call(method, path, params)
        try:
            decoded: object = json.loads(data)
        except ValueError as e:
            raise ApiError(f"invalid JSON in response: {e}") from None
        return decoded

    def _dial_error(self, e: OSError) -> str:
        if isinstance(e, socket.gaierror):
            return f"dial tcp: lookup {self.endpoint.host}: no such host"
        if isinstance(e, TimeoutError):
            return f"dial tcp {self.endpoint.hostport}: i/o timeout"
        return f"dial tcp {self.endpoint.hostport}: connect: {self._os_error_text(e)}"

    @staticmethod
    def _os_error_text(e: Exception) -> str:
        if isinstance(e, OSError) and e.errno is not None:
            return os.strerror(e.errno).lower()  # Go's syscall texts are lower case
        return str(e) or type(e).__name__


# --------------------------------------------------------------------------------------
# Verbs
# --------------------------------------------------------------------------------------


@dataclass
class _Context:
    verb: Verb
    flags: ParsedFlags

    def client(self) -> ApiClient:
        """Consul's ``c.http.APIClient()``, with the same error prefix."""
        f = self.flags
        if f.is_set("http-addr"):
            addr = f.get_str("http-addr")
        else:
            addr = os.environ.get("GOSSAMER_HTTP_ADDR") or os.environ.get("CONSUL_HTTP_ADDR", "")
        token = f.get_str("token") if f.is_set("token") else os.environ.get("CONSUL_HTTP_TOKEN", "")
        try:
            endpoint = _parse_http_addr(addr, os.environ.get("CONSUL_HTTP_SSL", ""))
        except ApiError as e:
            raise CommandError(f"Error connecting to Consul agent: {e}") from None
        datacenter = f.get_str("datacenter") if self.verb.server_flags else ""
        return ApiClient(endpoint, token, datacenter=datacenter)

    def usage_error(self, *lines: str) -> CommandError:
        """Consul's pattern: the error lines, a blank line, the verb's help, all on stderr."""
        return CommandError("\n".join([*lines, "", _verb_help(self.verb)]))


def _fetch(api: ApiClient, what: str, path: str, params: Sequence[tuple[str, str]] = ()) -> object:
    try:
        return api.call_json("GET", path, params)
    except ApiError as e:
        raise CommandError(f"{what}: {e}") from None


def _send(
    api: ApiClient,
    what: str,
    method: str,
    path: str,
    params: Sequence[tuple[str, str]] = (),
    body: object = None,
) -> None:
    try:
        api.call(method, path, params, body)
    except ApiError as e:
        raise CommandError(f"{what}: {e}") from None


def _as_list(value: object, what: str) -> list[object]:
    if value is None:
        return []  # Go decodes null into a nil slice
    if not isinstance(value, list):
        raise CommandError(f"{what}: unexpected response: expected a JSON array")
    return value


def _as_dict(value: object) -> dict[str, object]:
    if isinstance(value, dict):
        return value
    return {}  # Go: null or a missing object decodes to the zero value


def _as_str(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


# ---- members -------------------------------------------------------------------------

_MEMBER_STATUS = ("none", "alive", "leaving", "left", "failed")
_ROLE_SERVER = "consul"
_ROLE_CLIENT = "node"


def _status_string(value: object) -> str:
    """serf ``MemberStatus.String()``; serf panics on other values, we say "unknown"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 5:
        return _MEMBER_STATUS[value]
    return "unknown"


def _tcp_addr(addr: object, port: object) -> str:
    """``net.TCPAddr{IP: net.ParseIP(addr), Port: port}.String()``."""
    try:
        ip = ipaddress.ip_address(_as_str(addr))
    except ValueError:
        host = ""  # ParseIP gives nil, which prints as ""
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # Go prints v4-in-v6 addresses as v4
        host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{host}:{_as_int(port)}"


@dataclass
class _Member:
    raw: dict[str, object]
    tags: dict[str, str]
    """The tags after Consul's in-place rewrite of ``ap`` and ``segment`` (shown by -detailed)."""
    status: str

    @property
    def name(self) -> str:
        return _as_str(self.raw.get("Name"))

    def sort_key(self) -> tuple[bool, bool, str, str, str]:
        """``ByMemberNamePartitionAndSegment.Less``: servers, default partition, segment,
        partition, name."""
        partition = self.tags.get("ap", "")
        return (
            self.tags.get("role", "") != _ROLE_SERVER,
            partition not in ("", "default"),
            self.tags.get("segment", ""),
            partition,
            self.name,
        )


def _prepare_member(raw: dict[str, object]) -> _Member:
    tags = {str(k): _as_str(v) for k, v in _as_dict(raw.get("Tags")).items()}
    if tags.get("ap", "") == "":
        tags["ap"] = "default"
    # Consul CE's acl.IsDefaultPartition is always true, so only this branch applies there.
    if tags.get("role", "") == _ROLE_SERVER:
        tags["segment"] = "<all>"  # we always ask for segment=_all
    elif tags.get("segment", "") == "":
        tags["segment"] = "<default>"
    return _Member(raw=raw, tags=tags, status=_status_string(raw.get("Status")))


def _members_standard(members: Sequence[_Member]) -> list[str]:
    lines = ["Node\x1fAddress\x1fStatus\x1fType\x1fBuild\x1fProtocol\x1fDC\x1fPartition\x1fSegment"]
    for m in members:
        addr = _tcp_addr(m.raw.get("Addr"), m.raw.get("Port"))
        build = m.tags.get("build", "")
        build = build.split(":", 1)[0] if build else "< 0.3"
        role = m.tags.get("role", "")
        kind = {_ROLE_CLIENT: "client", _ROLE_SERVER: "server"}.get(role)
        if kind is None:
            lines.append(f"{m.name}\x1f{addr}\x1f{m.status}\x1funknown\x1f\x1f\x1f\x1f\x1f")
            continue
        cells = [
            m.name,
            addr,
            m.status,
            kind,
            build,
            m.tags.get("vsn", ""),
            m.tags.get("dc", ""),
            m.tags.get("ap", ""),
            m.tags.get("segment", ""),
        ]
        lines.append("\x1f".join(cells))
    return lines


def _members_detailed(members: Sequence[_Member]) -> list[str]:
    lines = ["Node\x1fAddress\x1fStatus\x1fTags"]
    for m in members:
        tags = ",".join(f"{k}={m.tags[k]}" for k in sorted(m.tags))
        addr = _tcp_addr(m.raw.get("Addr"), m.raw.get("Port"))
        lines.append(f"{m.name}\x1f{addr}\x1f{m.status}\x1f{tags}")
    return lines


def _run_members(ctx: _Context) -> int:
    f = ctx.flags
    output_format = f.get_str("format")
    if output_format not in ("pretty", "json"):
        raise CommandError(f"Unknown format: {output_format}")
    try:
        status_re = re.compile(f.get_str("status"))
    except re.error as e:
        raise CommandError(f"Failed to compile status regexp: {e}") from None
    api = ctx.client()
    params = [("segment", "_all")]
    if f.get_bool("wan"):
        params.append(("wan", "1"))
    what = "Error retrieving members"
    raw_members = _as_list(_fetch(api, what, "/v1/agent/members", params), what)
    members = [_prepare_member(_as_dict(raw)) for raw in raw_members]
    members = [m for m in members if status_re.search(m.status)]  # Go's MatchString: unanchored
    members.sort(key=_Member.sort_key)
    if output_format == "json":
        _out(json.dumps([m.raw for m in members], indent=2, ensure_ascii=False))
        return 0 if members else 2
    if not members:
        return 2
    rows = _members_detailed(members) if f.get_bool("detailed") else _members_standard(members)
    _out(columnize(rows))
    return 0


# ---- join, leave, force-leave --------------------------------------------------------


def _run_join(ctx: _Context) -> int:
    addrs = ctx.flags.args
    if not addrs:
        raise ctx.usage_error("At least one address to join must be specified.")
    api = ctx.client()
    params = [("wan", "1")] if ctx.flags.get_bool("wan") else []
    joins = 0
    for addr in addrs:
        try:
            api.call("PUT", f"/v1/agent/join/{addr}", params)
        except ApiError as e:
            _err(f"Error joining address '{addr}': {e}")
        else:
            joins += 1
    if joins == 0:
        raise CommandError("Failed to join any nodes.")
    _out(f"Successfully joined cluster by contacting {joins} nodes.")
    return 0


def _run_leave(ctx: _Context) -> int:
    extra = ctx.flags.args
    if extra:
        _err(f"Error found unexpected args: [{' '.join(extra)}]")
        _out(_verb_help(ctx.verb))  # Consul prints this help with UI.Output (stdout)
        return 1
    api = ctx.client()
    _send(api, "Error leaving", "PUT", "/v1/agent/leave")
    _out("Graceful leave complete")
    return 0


def _run_force_leave(ctx: _Context) -> int:
    nodes = ctx.flags.args
    if len(nodes) != 1:
        raise ctx.usage_error("A single node name must be specified to force leave.")
    api = ctx.client()
    params = []
    if ctx.flags.get_bool("prune"):
        params.append(("prune", "1"))
    if ctx.flags.get_bool("wan"):
        params.append(("wan", "1"))
    _send(api, "Error force leaving", "PUT", f"/v1/agent/force-leave/{nodes[0]}", params)
    return 0  # Consul prints nothing on success


# ---- event ----------------------------------------------------------------------------


def _run_event(ctx: _Context) -> int:
    """command/event/event.go; the name may also be the first argument (gossamer extension)."""
    f = ctx.flags
    args = list(f.args)
    name = f.get_str("name")
    if not name and args:
        name = args.pop(0)
    if not name:
        raise ctx.usage_error("Event name must be specified")
    node, service, tag = f.get_str("node"), f.get_str("service"), f.get_str("tag")
    for what, rx in (("node", node), ("service", service), ("tag", tag)):
        if rx:
            try:
                goregexp.compile_check(rx)
            except goregexp.RegexpError as e:
                raise CommandError(f"Failed to compile {what} filter regexp: {e}") from None
    if tag and not service:
        raise CommandError("Cannot provide tag filter without service filter.")
    if len(args) > 1:
        raise ctx.usage_error("Too many command line arguments.")
    payload = args[0].encode() if args else b""
    api = ctx.client()
    try:
        api.call_json("GET", "/v1/agent/self")
    except ApiError as e:
        raise CommandError(f"Error querying Consul agent: {e}") from None
    params = [(k, v) for k, v in (("node", node), ("service", service), ("tag", tag)) if v]
    try:
        data = api.call("PUT", f"/v1/event/fire/{name}", params, raw_body=payload)
        event = json.loads(data)
    except ApiError as e:
        raise CommandError(f"Error firing event: {e}") from None
    except ValueError as e:
        raise CommandError(f"Error firing event: invalid JSON in response: {e}") from None
    _out(f"Event ID: {event.get('ID', '') if isinstance(event, dict) else ''}")
    return 0


# ---- keygen, keyring -----------------------------------------------------------------


def _run_keygen(ctx: _Context) -> int:
    _out(base64.standard_b64encode(os.urandom(32)).decode("ascii"))
    return 0


def _keyring_pool_name(response: dict[str, object]) -> str:
    """keyring.go ``poolName``; CE never adds a partition suffix (IsDefaultPartition)."""
    pool = "WAN" if response.get("WAN") is True else f"{_as_str(response.get('Datacenter'))} (LAN)"
    segment = _as_str(response.get("Segment"))
    suffix = f" [{segment}]" if segment else ""
    return f"{pool}{suffix}:\n"


def _keyring_format(response: dict[str, object], keys_field: str) -> str:
    """keyring.go ``formatResponse``. Go iterates maps in random order; we keep the server's."""
    total = _as_int(response.get("NumNodes"))
    text = "\n" + _keyring_pool_name(response)
    for node, message in _as_dict(response.get("Messages")).items():
        text += f"  ===> {node}: {_as_str(message)}\n"
    for key, count in _as_dict(response.get(keys_field)).items():
        text += f"  {key} [{_as_int(count)}/{total}]\n"
    return text.rstrip("\n")


def _run_keyring(ctx: _Context) -> int:
    f = ctx.flags
    install, use, remove = f.get_str("install"), f.get_str("use"), f.get_str("remove")
    list_keys, list_primary = f.get_bool("list"), f.get_bool("list-primary")
    actions = int(list_keys) + int(list_primary) + sum(1 for k in (install, use, remove) if k)
    if actions == 0:
        raise CommandError(_verb_help(ctx.verb))
    if actions > 1:
        raise CommandError("Only a single action is allowed")
    relay = f.get_int("relay-factor")
    if not 0 <= relay <= 5:
        raise CommandError("Error parsing relay factor: Relay factor must be in range: [0, 5]")
    local_only = f.get_bool("local-only")
    if local_only and not list_keys:
        raise CommandError(
            "Error validating local-only: local-only can only be set for list requests"
        )
    api = ctx.client()
    params = [("relay-factor", str(relay))] if relay else []

    if list_keys or list_primary:
        if local_only:
            params.append(("local-only", "true"))
        primary = "primary " if list_primary else ""
        _out(f"==> Gathering installed {primary}encryption keys...")
        responses = _as_list(_fetch(api, "error", "/v1/operator/keyring", params), "error")
        for response in responses:
            _out(_keyring_format(_as_dict(response), "PrimaryKeys" if list_primary else "Keys"))
        return 0

    if install:
        method, key, banner = "POST", install, "Installing new gossip encryption key..."
    elif use:
        method, key, banner = "PUT", use, "Changing primary gossip encryption key..."
    else:
        method, key, banner = "DELETE", remove, "Removing gossip encryption key..."
    _out(f"==> {banner}")
    _send(api, "error", method, "/v1/operator/keyring", params, body={"Key": key})
    return 0


# ---- rtt -----------------------------------------------------------------------------


def _equal_fold(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _run_rtt(ctx: _Context) -> int:
    nodes = list(ctx.flags.args)
    if not 1 <= len(nodes) <= 2:
        raise ctx.usage_error("One or two node names must be specified")
    api = ctx.client()
    coord1: object = None
    coord2: object = None
    if ctx.flags.get_bool("wan"):
        source = "WAN"
        if len(nodes) < 2:
            config = _agent_config(api)
            nodes.append(f"{_as_str(config.get('NodeName'))}.{_as_str(config.get('Datacenter'))}")
        parts1, parts2 = nodes[0].split("."), nodes[1].split(".")
        if len(parts1) != 2 or len(parts2) != 2:
            raise CommandError("Node names must be specified as <node name>.<datacenter> with -wan")
        (node1, dc1), (node2, dc2) = parts1, parts2
        what = "Error getting coordinates"
        dcs = _as_list(_fetch(api, what, "/v1/coordinate/datacenters"), what)
        area1 = area2 = ""
        found = False
        for dc_raw in dcs:
            dc = _as_dict(dc_raw)
            dc_name, area = _as_str(dc.get("Datacenter")), _as_str(dc.get("AreaID"))
            for entry_raw in _as_list(dc.get("Coordinates"), what):
                entry = _as_dict(entry_raw)
                node = _as_str(entry.get("Node"))
                if dc_name == dc1 and _equal_fold(node, node1):
                    area1, coord1 = area, entry.get("Coord")
                if dc_name == dc2 and _equal_fold(node, node2):
                    area2, coord2 = area, entry.get("Coord")
                if area1 == area2 and coord1 is not None and coord2 is not None:
                    found = True
                    break
            if found:
                break
        if not found:
            coord1 = coord2 = None  # never compare coordinates across areas
    else:
        source = "LAN"
        if len(nodes) < 2:
            nodes.append(_as_str(_agent_config(api).get("NodeName")))
        what = "Error getting coordinates"
        entries = _as_list(_fetch(api, what, "/v1/coordinate/nodes"), what)
        cs1: dict[str, object] = {}
        cs2: dict[str, object] = {}
        for entry_raw in entries:
            entry = _as_dict(entry_raw)
            node, segment = _as_str(entry.get("Node")), _as_str(entry.get("Segment"))
            if _equal_fold(node, nodes[0]):
                cs1[segment] = entry.get("Coord")
            if _equal_fold(node, nodes[1]):
                cs2[segment] = entry.get("Coord")
        # lib.CoordinateSet.Intersect: a node in a single segment decides the segment.
        segment = ""
        if len(cs1) == 1:
            segment = next(iter(cs1))
        if len(cs2) == 1:
            segment = next(iter(cs2))
        coord1, coord2 = cs1.get(segment), cs2.get(segment)

    if coord1 is None:
        raise CommandError(f"Could not find a coordinate for node {_go_quote(nodes[0])}")
    if coord2 is None:
        raise CommandError(f"Could not find a coordinate for node {_go_quote(nodes[1])}")

    from swim.coordinate import Coordinate  # lazily: it pulls in msgpack

    try:
        seconds = Coordinate.from_wire(coord1).distance_to(Coordinate.from_wire(coord2))
    except ValueError as e:  # CoordinateError, dimensionality mismatch (Go panics)
        raise CommandError(f"Error computing distance: {e}") from None
    dist = f"{seconds * 1000.0:.3f} ms"
    _out(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {dist} (using {source} coordinates)")
    return 0


def _agent_config(api: ApiClient) -> dict[str, object]:
    what = "Unable to look up agent info"
    info = _as_dict(_fetch(api, what, "/v1/agent/self"))
    config = _as_dict(info.get("Config"))
    if not isinstance(config.get("NodeName"), str):
        raise CommandError(f"{what}: Config.NodeName missing from /v1/agent/self")
    return config


# ---- version -------------------------------------------------------------------------


def _run_version(ctx: _Context) -> int:
    supplement = ""
    if _RPC_PROTOCOL_DEFAULT < _RPC_PROTOCOL_MAX:
        supplement = (
            f" (agent will automatically use protocol >{_RPC_PROTOCOL_DEFAULT}"
            " when speaking to compatible agents)"
        )
    # Consul's pretty formatter ends its text with a newline and UI.Output adds one more.
    _out(
        f"gossamer v{gossamer.__version__}\n"
        f"Protocol {_RPC_PROTOCOL_DEFAULT} spoken by default, understands "
        f"{_RPC_PROTOCOL_MIN} to {_RPC_PROTOCOL_MAX}{supplement}\n"
    )
    return 0


# ---- agent, demo ---------------------------------------------------------------------

# flag key -> AgentConfig field, for flags whose value is passed through unchanged.
_AGENT_FIELDS = {
    "node": "node_name",
    "bind": "bind_addr",
    "advertise": "advertise_addr",
    "serf-lan-port": "serf_lan_port",
    "http-port": "http_port",
    "datacenter": "datacenter",
    "data-dir": "data_dir",
    "retry-interval": "retry_interval_s",
    "retry-max": "retry_max",
    "client": "client_addr",
    "server": "server",
    "dev": "dev",
    "log-level": "log_level",
    "gossip-profile": "gossip_profile",
    "enable-script-checks": "enable_script_checks",
    "bootstrap-expect": "bootstrap_expect",
    "server-port": "server_port",
    "raft-timing": "raft_timing",
    "raft-snapshot-threshold": "raft_snapshot_threshold",
    "raft-trailing-logs": "raft_trailing_logs",
    "autopilot-dead-server-grace": "autopilot_dead_server_grace_s",
}


def _run_agent(ctx: _Context) -> int:
    from gossamer.config import AgentConfig, ConfigError, decode_gossip_key

    f = ctx.flags
    if f.args:
        raise CommandError(f"==> Unexpected extra arguments: [{' '.join(f.args)}]")
    kwargs: dict[str, object] = {
        field: f.values[key] for key, field in _AGENT_FIELDS.items() if f.is_set(key)
    }
    if f.is_set("retry-join"):
        kwargs["retry_join"] = f.get_list("retry-join")
    if f.get_bool("dev"):
        # Consul's DevSource: bind_addr 127.0.0.1, server = true, log_level DEBUG, fast gossip.
        # Advertise follows bind unless given, so a dev agent told -bind advertises that.
        if not f.is_set("bind") and not f.is_set("advertise"):
            kwargs["advertise_addr"] = "127.0.0.1"
        for key, field, value in (
            ("bind", "bind_addr", "127.0.0.1"),
            ("client", "client_addr", "127.0.0.1"),
            ("server", "server", True),
            ("log-level", "log_level", "debug"),
            ("gossip-profile", "gossip_profile", "local"),
        ):
            if not f.is_set(key):
                kwargs[field] = value
    try:
        if f.is_set("encrypt"):
            kwargs["encrypt_key"] = decode_gossip_key(f.get_str("encrypt"))
        config = AgentConfig(**kwargs)  # type: ignore[arg-type]
        config.validate()
    except ConfigError as e:
        raise CommandError(f"==> {e}") from None
    runtime = _import_lazily("gossamer.aio")
    code: int = runtime.run_agent(config)
    return code


def _run_demo(args: list[str]) -> int:
    demo = _import_lazily("gossamer.demo")
    code: int = demo.main(args)
    return code


_SIM_FLAGS = (
    Flag("seed", FlagKind.INT, "Run this one `seed` (default: the scenario's own seed)."),
    Flag(
        "seeds",
        FlagKind.STRING,
        "Run a `range` of seeds: A-B, or a comma list of seeds and ranges (1-50,77).",
    ),
    Flag(
        "swarm",
        FlagKind.BOOL,
        "Swarm testing: each seed also picks the configuration and the fault mix within "
        "the scenario's [swarm] bounds.",
    ),
    Flag(
        "set",
        FlagKind.LIST,
        "Override one scenario value, as `key=value` with a dotted key "
        "(swim.lifeguard_awareness=false, fault.2.target=random_pct:5; [[fault]] entries "
        "count from 1). The value is read as TOML, else as a string. Repeatable.",
    ),
    Flag("report", FlagKind.STRING, "Write the JSON report to this `file`."),
    Flag(
        "junit", FlagKind.STRING, "Write JUnit XML (a testcase per seed and check) to this `file`."
    ),
    Flag(
        "plot",
        FlagKind.STRING,
        "Draw the first failing run (else the first) into this PNG `file` (needs matplotlib).",
    ),
    Flag(
        "trace",
        FlagKind.STRING,
        "Write every delivered packet, member event and fault step to this `file`.",
    ),
    Flag("verbose", FlagKind.BOOL, "Print the whole fault timeline in the summary."),
)

_SIM_USAGE = """
Usage: gossamer sim run SCENARIO.toml [options]
       gossamer sim check SCENARIO.toml [-seed N] [-swarm]

  Runs a scenario in the deterministic simulator: the real gossip cores on
  virtual time, a simulated network and a timeline of faults. Each seed is
  a safety phase under faults, then a liveness phase with a deadline for
  convergence; checkers judge every step. Prints a summary (and for each
  failing seed the one command that reproduces it) and exits 0 when every
  check passed, 1 when one failed, 2 when the command line or the scenario
  file is wrong. "check" validates the file and prints the expanded plan.
  Flags may come before or after SCENARIO.
"""


def _parse_interspersed(flags: FlagSet, argv: Sequence[str]) -> tuple[ParsedFlags, list[str]]:
    """Flags before and after positional arguments (``sim run FILE -seed 3``); ``--``
    ends the flags."""
    head = list(argv)
    tail: list[str] = []
    if "--" in head:
        i = head.index("--")
        head, tail = head[:i], head[i + 1 :]
    defaults = flags.parse(())
    values = dict(defaults.values)
    explicit: set[str] = set()
    positional: list[str] = []
    rest = head
    while True:
        parsed = flags.parse(rest)
        for key in parsed.explicit:
            old, new = values[key], parsed.values[key]
            if key in explicit and isinstance(old, tuple) and isinstance(new, tuple):
                new = (*old, *new)  # a list flag given on both sides of the file
            values[key] = new
            explicit.add(key)
        if not parsed.args:
            break
        positional.append(parsed.args[0])
        rest = parsed.args[1:]
    return ParsedFlags(values, frozenset(explicit), positional + tail), positional + tail


def _run_sim(args: list[str]) -> int:
    if not args or args[0] in _HELP_ARGS:
        text = _verb_help(_VERB_BY_NAME["sim"])
        if not args:
            raise CommandError(text, code=2)
        _out(text)
        return 0
    sub, rest = args[0], args[1:]
    if sub not in ("run", "check"):
        raise CommandError(
            f"Unknown sim command {_go_quote(sub)} (run or check)\n"
            + _verb_help(_VERB_BY_NAME["sim"]),
            code=2,
        )
    flag_part = rest[: rest.index("--")] if "--" in rest else rest
    if any(a in _HELP_ARGS for a in flag_part):
        _out(_verb_help(_VERB_BY_NAME["sim"]))
        return 0
    try:
        f, positional = _parse_interspersed(FlagSet(_SIM_FLAGS), rest)
    except FlagError as e:
        raise CommandError(f"{e}\n{_verb_help(_VERB_BY_NAME['sim'])}", code=2) from None
    if len(positional) != 1:
        raise CommandError(
            f"sim {sub} takes one scenario file, got {len(positional)} arguments", code=2
        )
    if f.is_set("seed") and f.is_set("seeds"):
        raise CommandError("-seed and -seeds are alternatives; give one", code=2)
    scenario_mod = _import_lazily("sim.scenario")
    run_mod = _import_lazily("sim.run")
    try:
        scenario = scenario_mod.load(positional[0], f.get_list("set"))
        if f.is_set("seeds"):
            seeds = run_mod.parse_seeds(f.get_str("seeds"))
        elif f.is_set("seed"):
            seeds = [f.get_int("seed")]
        else:
            seeds = [scenario.seed]
        if any(not 0 <= s < 2**64 for s in seeds):
            raise CommandError("seeds must be in [0, 2**64)", code=2)
        swarm = f.get_bool("swarm")
        if sub == "check":
            for seed in seeds[:1]:
                _out(_describe_plan(scenario.expand(seed, swarm=swarm)))
            return 0
        if swarm and scenario.swarm is None:
            raise CommandError(
                f"{scenario.path}: --swarm needs a [swarm] table in the scenario", code=2
            )
    except (scenario_mod.ScenarioError, ValueError) as e:
        raise CommandError(str(e), code=2) from None
    if f.get_str("plot") and not _has_module("matplotlib"):
        raise CommandError("--plot needs matplotlib: pip install 'gossamer[plot]'")
    report_mod = _import_lazily("sim.report")
    trace_path = f.get_str("trace")
    trace = open(trace_path, "w", encoding="utf-8") if trace_path else None  # noqa: SIM115
    try:
        progress = run_mod.Progress(len(seeds))
        try:
            results = run_mod.run_seeds(
                scenario, seeds, swarm=swarm, trace=trace, progress=progress
            )
        except scenario_mod.ScenarioError as e:
            raise CommandError(str(e), code=2) from None
    finally:
        if trace is not None:
            trace.close()
    _out(report_mod.summary(scenario, results, verbose=f.get_bool("verbose")))
    if f.get_str("report"):
        report_mod.write_json(f.get_str("report"), scenario, results)
    if f.get_str("junit"):
        report_mod.write_junit(f.get_str("junit"), scenario, results)
    if f.get_str("plot"):
        try:
            report_mod.plot(scenario, results, f.get_str("plot"))
        except report_mod.PlotUnavailable as e:
            raise CommandError(str(e)) from None
    return 0 if all(r.passed for r in results) else 1


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
        return False


def _describe_plan(plan: object) -> str:
    """``sim check``: what one seed expands the scenario into."""
    from sim.scenario import Plan

    assert isinstance(plan, Plan)
    sc = plan.scenario
    lines = [
        f"scenario {sc.name} ({sc.path}): valid",
        f"  seed {plan.seed}" + (" (swarm)" if plan.swarm else ""),
    ]
    for k, v in plan.choices.items():
        if k != "faults":
            lines.append(f"  swarm chose {k} = {v}")
    pools: dict[str, list[str]] = {}
    for spec, role in plan.nodes:
        pools.setdefault(spec.pool, []).append(spec.name + ("*" if role == "server" else ""))
    for pool, names in pools.items():
        shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
        lines.append(f"  pool {pool}: {len(names)} nodes ({shown}; * = server)")
    for name, link in plan.links.items():
        lines.append(f"  link {name}: {link.describe()}")
    for (a, b), link in plan.pairs.items():
        lines.append(f"  link {a}-{b}: {link.describe()}")
    lines.append(
        f"  safety phase 0-{plan.last_heal_s():g}s, liveness until {plan.run_end_s():g}s; "
        f"suspicion window {plan.suspicion_window_s(max(plan.pool_sizes().values())):.1f}s"
    )
    for action in plan.faults:
        lines.append(f"  {action.label}: {action.describe()}")
    return "\n".join(lines)


def _import_lazily(name: str) -> types.ModuleType:
    """Import a heavy module only for the verb that needs it; a missing one is one line."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise CommandError(f"Error: {name} is not available in this installation") from None


# --------------------------------------------------------------------------------------
# The verb table
# --------------------------------------------------------------------------------------

_HTTP_FLAGS = (
    Flag(
        "http-addr",
        FlagKind.STRING,
        "The `address` and port of the gossamer HTTP agent. The value can be an IP address "
        "or DNS address, but it must also include the port. This can also be specified via "
        "the GOSSAMER_HTTP_ADDR or CONSUL_HTTP_ADDR environment variable (the first wins). "
        "The default value is http://127.0.0.1:8500.",
    ),
    Flag(
        "token",
        FlagKind.STRING,
        "ACL token to use in the request. This can also be specified via the "
        "CONSUL_HTTP_TOKEN environment variable. If unspecified, the query will default to "
        "the token of the agent at the HTTP address.",
    ),
)


_SERVER_FLAGS = (
    Flag(
        "datacenter",
        FlagKind.STRING,
        "Name of the datacenter to query. If unspecified, this will default to the "
        "datacenter of the queried agent.",
    ),
    Flag(
        "stale",
        FlagKind.BOOL,
        "Permit any gossamer server (non-leader) to respond to this request. This allows for "
        "lower latency and higher throughput, but can result in stale data. This option has "
        "no effect on non-read operations. The default value is false.",
    ),
)
"""Consul's ``flags.HTTPFlags.ServerFlags``: -datacenter goes out as ``?dc=`` on every
request; -stale as ``?stale`` where the command asks for it."""


@dataclass(frozen=True)
class Verb:
    name: str
    synopsis: str
    usage: str
    """Consul-style help text: a ``Usage:`` line and a paragraph."""
    run: Callable[[_Context], int] | None = None
    flags: tuple[Flag, ...] = ()
    http: bool = True
    """Takes -http-addr and -token."""
    passthrough: Callable[[list[str]], int] | None = None
    """Gets the raw arguments: no flag parsing, no -h interception."""
    server_flags: bool = False
    """Also takes -datacenter and -stale (with ``http``)."""
    subcommands: tuple[Verb, ...] = ()
    """``gossamer kv put``: a verb with subcommands and no ``run`` prints its help (listing
    them) and exits 1, as mitchellh/cli does for Consul's ``cli.RunResultHelp``."""

    def http_flags(self) -> tuple[Flag, ...]:
        """Consul's help lists these sorted by name (flag.VisitAll)."""
        if not self.http:
            return ()
        flags = (*_HTTP_FLAGS, *(_SERVER_FLAGS if self.server_flags else ()))
        return tuple(sorted(flags, key=lambda f: f.name))

    def flag_set(self) -> FlagSet:
        return FlagSet((*self.flags, *self.http_flags()))


_VERBS: tuple[Verb, ...] = (
    Verb(
        "agent",
        "Runs a gossamer agent",
        """
Usage: gossamer agent [options]

  Starts the gossamer agent and runs until an interrupt is received. The
  agent represents a single node in a cluster.
""",
        _run_agent,
        http=False,
        flags=(
            Flag("node", FlagKind.STRING, "Name of this node. Must be unique in the cluster."),
            Flag("bind", FlagKind.STRING, "Sets the bind `address` for cluster communication."),
            Flag(
                "advertise",
                FlagKind.STRING,
                "Sets the `address` to advertise to other members instead of the bind address.",
            ),
            Flag("serf-lan-port", FlagKind.INT, "Sets the Serf LAN port to listen on."),
            Flag("http-port", FlagKind.INT, "Sets the HTTP API port to listen on."),
            Flag("datacenter", FlagKind.STRING, "Datacenter of the agent."),
            Flag("data-dir", FlagKind.STRING, "Path to a data `directory` to store agent state."),
            Flag(
                "retry-join",
                FlagKind.LIST,
                "Address of an agent to join at start time with retries enabled. Can be "
                "specified multiple times.",
            ),
            Flag(
                "join",
                FlagKind.LIST,
                "Deprecated alias of -retry-join: address of an agent to join at start time.",
                dest="retry-join",
            ),
            Flag("retry-interval", FlagKind.DURATION, "Time to wait between join attempts."),
            Flag(
                "retry-max",
                FlagKind.INT,
                "Maximum number of join attempts. Defaults to 0, which will retry indefinitely.",
            ),
            Flag("encrypt", FlagKind.STRING, "Provides the gossip encryption `key`."),
            Flag(
                "client",
                FlagKind.STRING,
                "Sets the `address` to bind for client access (the HTTP API).",
            ),
            Flag("server", FlagKind.BOOL, "Switches agent to server mode."),
            Flag(
                "bootstrap-expect",
                FlagKind.INT,
                "Sets server to expect bootstrap mode: the number of servers to wait for "
                "before electing a leader.",
            ),
            Flag("server-port", FlagKind.INT, "Sets the server RPC port to listen on."),
            Flag(
                "raft-timing",
                FlagKind.STRING,
                "Raft's timing preset: default (1s election timeout) or low-latency "
                "(300ms), for fast failover on a good network.",
            ),
            Flag(
                "raft-snapshot-threshold",
                FlagKind.INT,
                "Log entries applied between two snapshots of the state store. Defaults to 16384.",
            ),
            Flag(
                "raft-trailing-logs",
                FlagKind.INT,
                "Log entries kept behind a snapshot for followers that lag. Defaults to 10240.",
            ),
            Flag(
                "autopilot-dead-server-grace",
                FlagKind.DURATION,
                "How long a server must be failed before autopilot removes it from the Raft "
                "configuration. Defaults to 30s.",
            ),
            Flag(
                "enable-script-checks",
                FlagKind.BOOL,
                "Enables health check scripts (checks with Args).",
            ),
            Flag(
                "dev",
                FlagKind.BOOL,
                "Starts the agent in development mode: a server bound to 127.0.0.1 with debug "
                "logging and fast gossip timings.",
            ),
            Flag("log-level", FlagKind.STRING, "Log level of the agent."),
            Flag(
                "gossip-profile",
                FlagKind.STRING,
                "Memberlist timing preset for the LAN pool: lan, wan or local (a gossamer "
                "extension).",
            ),
        ),
    ),
    Verb(
        "demo",
        "Runs the gossamer demonstration",
        """
Usage: gossamer demo [args]

  Runs the demonstration; its arguments are its own.
""",
        http=False,
        passthrough=_run_demo,
    ),
    Verb(
        "event",
        "Fire a new event",
        """
Usage: gossamer event [options] [-name=]NAME [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.
""",
        _run_event,
        flags=(
            Flag("name", FlagKind.STRING, "Name of the event."),
            Flag("node", FlagKind.STRING, "Regular expression to filter on node names."),
            Flag("service", FlagKind.STRING, "Regular expression to filter on service instances."),
            Flag(
                "tag",
                FlagKind.STRING,
                "Regular expression to filter on service tags. Must be used with -service.",
            ),
        ),
    ),
    Verb(
        "force-leave",
        'Forces a member of the cluster to enter the "left" state',
        """
Usage: gossamer force-leave [options] name

  Forces a member of a gossamer cluster to enter the "left" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster. This command is most useful for cleaning out "failed" nodes
  that are never coming back. If you do not force leave a failed node,
  gossamer will attempt to reconnect to those failed nodes for some period of
  time before eventually reaping them.
""",
        _run_force_leave,
        flags=(
            Flag("prune", FlagKind.BOOL, "Remove agent completely from list of members"),
            Flag("wan", FlagKind.BOOL, "Exclusively leave the agent from the WAN serf pool."),
        ),
    ),
    Verb(
        "join",
        "Tell gossamer agent to join cluster",
        """
Usage: gossamer join [options] address ...

  Tells a running gossamer agent (with "gossamer agent") to join the cluster
  by specifying at least one existing member.
""",
        _run_join,
        flags=(Flag("wan", FlagKind.BOOL, "Joins a server to another server in the WAN pool."),),
    ),
    Verb(
        "keygen",
        "Generates a new encryption key",
        """
Usage: gossamer keygen

  Generates a new 32-byte encryption key that can be used to configure the
  agent to encrypt traffic. The output of this command is already
  in the proper format that the agent expects.
""",
        _run_keygen,
        http=False,
    ),
    Verb(
        "keyring",
        "Manages gossip layer encryption keys",
        """
Usage: gossamer keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All operations performed by this command can only be run against server nodes,
  and affect both the LAN and WAN keyrings in lock-step.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.
""",
        _run_keyring,
        flags=(
            Flag(
                "install",
                FlagKind.STRING,
                "Install a new encryption key. This will broadcast the new key to all "
                "members in the cluster.",
            ),
            Flag(
                "use",
                FlagKind.STRING,
                "Change the primary encryption key, which is used to encrypt messages. The "
                "key must already be installed before this operation can succeed.",
            ),
            Flag(
                "remove",
                FlagKind.STRING,
                "Remove the given key from the cluster. This operation may only be performed "
                "on keys which are not currently the primary key.",
            ),
            Flag("list", FlagKind.BOOL, "List all keys currently in use within the cluster."),
            Flag(
                "list-primary",
                FlagKind.BOOL,
                "List all primary keys currently in use within the cluster.",
            ),
            Flag(
                "relay-factor",
                FlagKind.INT,
                "Setting this to a non-zero value will cause nodes to relay their response to "
                "the operation through this many randomly-chosen other nodes in the cluster. "
                "The maximum allowed value is 5.",
            ),
            Flag(
                "local-only",
                FlagKind.BOOL,
                "Setting this to true will force the keyring query to only hit local servers "
                "(no WAN traffic). This flag can only be set for list queries.",
            ),
        ),
    ),
    Verb(
        "leave",
        "Gracefully leaves the gossamer cluster and shuts down",
        """
Usage: gossamer leave [options]

  Causes the agent to gracefully leave the gossamer cluster and shutdown.
""",
        _run_leave,
    ),
    Verb(
        "members",
        "Lists the members of a gossamer cluster",
        """
Usage: gossamer members [options]

  Outputs the members of a running gossamer agent.
""",
        _run_members,
        flags=(
            Flag("detailed", FlagKind.BOOL, "Provides detailed information about nodes."),
            Flag(
                "wan",
                FlagKind.BOOL,
                "If the agent is in server mode, this can be used to return the other peers "
                "in the WAN pool.",
            ),
            Flag(
                "status",
                FlagKind.STRING,
                "If provided, output is filtered to only nodes matching the regular "
                "expression for status.",
                default=".*",
            ),
            Flag(
                "format",
                FlagKind.STRING,
                "Output format {pretty|json}. json prints the member objects as the HTTP API "
                "returns them, filtered and sorted like the table (a gossamer extension).",
                default="pretty",
            ),
        ),
    ),
    Verb(
        "rtt",
        "Estimates network round trip time between nodes",
        """
Usage: gossamer rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using the network
  coordinate model of the cluster.

  At least one node name is required. If the second node name isn't given, it
  is set to the agent's node name. Note that these are node names as known to
  gossamer as "gossamer members" would show, not IP addresses.

  By default, the two nodes are assumed to be nodes in the local datacenter
  and the LAN coordinates are used. If the -wan option is given, then the WAN
  coordinates are used, and the node names must be suffixed by a period and
  the datacenter (eg. "myserver.dc1").

  It is not possible to measure between LAN coordinates and WAN coordinates
  because they are maintained by independent Serf gossip areas, so they are
  not compatible.
""",
        _run_rtt,
        flags=(Flag("wan", FlagKind.BOOL, "Use WAN coordinates instead of LAN coordinates."),),
    ),
    Verb(
        "sim",
        "Runs scenarios in the deterministic simulator",
        _SIM_USAGE,
        http=False,
        flags=_SIM_FLAGS,
        passthrough=_run_sim,
    ),
    Verb(
        "version",
        "Prints the gossamer version",
        """
Usage: gossamer version
""",
        _run_version,
        http=False,
    ),
)

_VERB_BY_NAME = {v.name: v for v in _VERBS}


def _all_verbs() -> tuple[Verb, ...]:
    """The table above plus the catalog/KV verbs (``gossamer.cli_catalog``) and the
    operator verbs (``gossamer.cli_operator``), imported here, not at the top, because
    those modules build their tables from this one."""
    from gossamer import cli_catalog, cli_operator

    return (*_VERBS, *cli_catalog.VERBS, *cli_operator.VERBS)


def _find_verb(name: str) -> Verb | None:
    verb = _VERB_BY_NAME.get(name)
    if verb is None:
        verb = next((v for v in _all_verbs() if v.name == name), None)
    return verb


def _verb_help(verb: Verb) -> str:
    """Consul's ``flags.Usage``: the text, then HTTP API Options, then Command Options; for
    a verb with subcommands, mitchellh/cli's help template adds the list of them."""
    lines = [verb.usage.strip(), ""]
    for title, flags in (
        ("HTTP API Options", verb.http_flags()),
        ("Command Options", verb.flags),
    ):
        if flags:
            lines += [title, ""]
            for flag in flags:
                lines += [*flag.help_lines(), ""]
    text = "\n".join(lines).rstrip("\n")
    if verb.subcommands:
        width = max(len(v.name) for v in verb.subcommands)
        text += "\n\nSubcommands:"
        for sub in sorted(verb.subcommands, key=lambda v: v.name):
            text += f"\n    {sub.name.ljust(width)}    {sub.synopsis}"
    return text


def _verb_list() -> str:
    """mitchellh/cli ``BasicHelpFunc``."""
    verbs = _all_verbs()
    width = max(len(v.name) for v in verbs)
    lines = [
        "Usage: gossamer [--version] [--help] <command> [<args>]",
        "",
        "Available commands are:",
    ]
    lines += [
        f"    {v.name.ljust(width)}    {v.synopsis}" for v in sorted(verbs, key=lambda v: v.name)
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------

_HELP_ARGS = ("-h", "-help", "--help")
_VERSION_ARGS = ("-v", "-version", "--version")


def main(argv: list[str] | None = None) -> int:
    """Run one ``gossamer`` command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except CommandError as e:
        _err(e.message)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # never a traceback for users; GOSSAMER_TRACEBACK=1 shows it
        if os.environ.get("GOSSAMER_TRACEBACK"):
            raise
        _err(f"Error: unexpected {type(e).__name__}: {e}")
        return 1


def _dispatch(args: list[str]) -> int:
    # mitchellh/cli: the first argument not starting with "-" is the verb; -h/-help/--help
    # anywhere before "--" asks for help; -v/--version before the verb means `version`.
    verb_at = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg and not arg.startswith("-"):
            verb_at = i
            break
    before = args if verb_at is None else args[:verb_at]
    wants_help = any(a in _HELP_ARGS for a in before)
    wants_version = any(a in _VERSION_ARGS for a in before)
    unknown_top = [a for a in before if a not in _HELP_ARGS + _VERSION_ARGS]
    if unknown_top and not wants_help:
        raise CommandError(f"flag provided but not defined: {unknown_top[0]}\n{_verb_list()}")
    if verb_at is None:
        if wants_help:
            _out(_verb_list())
            return 0
        if wants_version:
            return _run_version(_Context(_VERB_BY_NAME["version"], FlagSet(()).parse(())))
        raise CommandError(_verb_list())

    name, rest = args[verb_at], args[verb_at + 1 :]
    if name == "help":
        if not rest:
            _out(_verb_list())
            return 0
        name, rest, wants_help = rest[0], rest[1:], True
    verb = _find_verb(name)
    if verb is None:
        raise CommandError(
            f"Unknown command {_go_quote(name)}; run 'gossamer help' for the list of commands"
        )
    # Nested verbs (`kv put`): mitchellh/cli takes the longest run of leading words that
    # names a command; what follows is that command's.
    while verb.subcommands and rest:
        sub = next((v for v in verb.subcommands if v.name == rest[0]), None)
        if sub is None:
            break
        verb, rest = sub, rest[1:]
    if not wants_help and verb.passthrough is not None:
        return verb.passthrough(rest)
    rest_flags = rest[: rest.index("--")] if "--" in rest else rest
    if wants_help or any(a in _HELP_ARGS for a in rest_flags):
        _out(_verb_help(verb))
        return 0
    if verb.run is None:  # a verb that only groups subcommands: help, exit 1
        raise CommandError(_verb_help(verb))
    try:
        parsed = verb.flag_set().parse(rest)
    except HelpRequested:
        _out(_verb_help(verb))
        return 0
    except FlagError as e:
        raise CommandError(f"{e}\n{_verb_help(verb)}") from None
    assert verb.run is not None
    return verb.run(_Context(verb, parsed))
