"""The catalog, health, coordinate and status endpoints of Consul's HTTP API.

Copied from hashicorp/consul (main, the 1.20 line): the HTTP handlers in
agent/catalog_endpoint.go, agent/health_endpoint.go, agent/coordinate_endpoint.go and
agent/status_endpoint.go; the RPCs behind them in agent/consul/catalog_endpoint.go,
health_endpoint.go, coordinate_endpoint.go, status_endpoint.go and rtt.go; the JSON
shapes of agent/structs/structs.go (RegisterRequest, Node, NodeService, ServiceNode,
HealthCheck, CheckServiceNode) and agent/structs/connect_proxy_config.go.

Rules, each as Consul applies it:

1. **Bodies** (``PUT /v1/catalog/register``, ``/deregister``, ``/v1/coordinate/update``)
   are decoded like Consul's ``decodeBody`` (lib.DecodeJSON): Go's encoding/json with
   ``DisallowUnknownFields``. Keys match field names case-insensitively; snake_case is
   accepted only where Consul's structs declare it (inside ``Proxy``, its ``Upstreams``,
   ``Expose``, ``TransparentProxy``, ``AccessLogs`` and ``Connect.sidecar_service``); an
   unknown key, a wrong JSON type or an empty body is 400 ``Request decode failed: …``
   with Go's text (``json: unknown field "X"``, ``json: cannot unmarshal string into Go
   struct field NodeService.Service.Port of type int``, ``EOF``; the field path is
   approximate inside structs with their own UnmarshalJSON, such as ``Proxy``). ``null``
   leaves a field unset. Nothing is written on any error.
2. **Register** then runs Catalog.Register's checks, in its order, each a 500 with
   Consul's text: PeerName set (``cannot register requests with PeerName in them``), a
   ``Datacenter`` other than ours (``No path to datacenter``), ``Must provide node``,
   ``Bad node ID: …`` (go-uuid), ``Must provide address if SkipNodeUpdate is not set``,
   NodeService.Validate (a go-multierror list), ``Must provide service name
   (Service.Service) when service ID is provided``, ``Invalid service address``, the
   check/node match and unknown-service checks of vetRegisterWithACL, and the state
   store's service-meta validation. The service ID defaults to its name, a check's ID to
   its name and its ``Type`` to the one its definition implies; the single ``Check``
   joins the end of ``Checks``. The answer is ``true``.
3. **Reads** go through :func:`catalog.http_common.blocking_read` (index headers, ``dc``,
   ``stale``/``consistent``, blocking). The value is computed inside the read, in
   Consul's order: the ``node-meta`` and ``tag`` selections, then ``?filter=`` (for
   ``/v1/catalog/services`` on the ServiceNode rows before they are folded into
   ``{name: [tags]}``; for ``/v1/catalog/node/<n>`` on its ``Services`` map), then the
   ``?near=`` sort, then — health/service only — ``?passing``, which removes an entry
   by moving the last one into its place (filterNonPassing), so the order changes.
4. ``?near=<node>`` (``_agent`` is this agent) sorts by the estimated RTT from that node's
   coordinate (lib.CoordinateSet.Intersect + ComputeDistance); entries without one go
   last in their original order; no sort when the source has no coordinate.
5. Unknown node: ``/v1/catalog/node/<n>`` is 200 ``null`` (hashicorp/consul#9330, still
   open), ``/v1/catalog/node-services/<n>`` is ``{"Node": null, "Services": null}``,
   health reads are ``[]``; ``/v1/coordinate/node/<n>`` with no coordinate is 404.
   ``/v1/health/state/<s>`` does not validate ``s``: an unknown state matches nothing.
6. Shapes: the stored dicts are encoded through Go field lists below (declaration order,
   ``omitempty``, nil → ``null``, maps with sorted keys), so every answer has the fields
   Consul always emits: ``Weights`` (``{"Passing":1,"Warning":1}`` unless valid ones were
   registered), ``Tags``/``ServiceTags`` as ``[]`` rather than null, ``Proxy`` as
   ``{"Mode":"","MeshGateway":{},"Expose":{}}``, ``Connect`` as ``{}``,
   ``PeerName`` ``""`` on a NodeService; no ``Partition``/``Namespace`` (OSS).
7. ``?ns=``/``X-Consul-Namespace`` and ``?partition=``/``X-Consul-Partition`` are 400
   (Consul CE's EnterpriseMetaHelperOSS).
8. Status: ``/v1/status/leader`` is the leader's ``"ip:port"``, ``/v1/status/peers`` the
   Raft peers; a server that has no leader yet answers ``""`` and ``null``; an agent
   with no server to ask answers 500 ``No known Consul servers``, as a Consul client with
   no servers does. ``/v1/catalog/datacenters`` and ``/v1/coordinate/datacenters`` work
   on any server (they need no leader) and carry no index headers.
9. Until server RPC exists, an agent without a catalog server answers
   ``/v1/coordinate/nodes`` and ``/node/<n>`` from its own gossip, so ``rtt`` keeps
   working on clients; every other read is 500 ``No known Consul servers``.

Shapes are computed once per stored entry and reused (entries are immutable once stored,
the store's rule 3): a health read of a hundred instances costs a fraction of a
millisecond rather than several.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from catalog import commands as C
from catalog.aio import HTTPError, HTTPServer, Request, Response
from catalog.http_common import (
    blocking_read,
    compile_filter_or_400,
    filter_items,
    query_options,
    require_server,
)
from catalog.server import CatalogServer
from catalog.store import CommandRejected, Read, StateStore, WatchKey
from gossamer.duration import format_duration, parse_duration_ns
from swim.coordinate import Coordinate, CoordinateError
from swim.events import MemberStatus

__all__ = [
    "check_json",
    "node_json",
    "register",
    "service_json",
    "service_node_json",
]

AREA_WAN = "wan"
"""types.AreaWAN: the AreaID Consul's router reports (the API docs show "WAN")."""
GATEWAY_KINDS = ("mesh-gateway", "terminating-gateway", "ingress-gateway", "api-gateway")
META_KEY_RE = re.compile(r"[a-zA-Z0-9_-]+")
META_PAIRS_MAX = 64
META_KEY_BYTES_MAX = 128
META_VALUE_BYTES_MAX = 512
MIN_UUID_LOOKUP_LEN = 2
"""A node not found by name is looked up by ID prefix when at least this long."""

# =========================================================================== Go types
#
# A small model of the Go types behind the JSON: enough to decode like encoding/json
# (strict, case-insensitive, Go's error texts) and to encode like it (declaration order,
# omitempty, nil as null).


@dataclass(frozen=True)
class _Scalar:
    kind: str  # "str" | "int" | "uint" | "float" | "bool"
    go: str


@dataclass(frozen=True)
class _List:
    elem: Any
    go: str
    pointers: bool = False
    """Elements are pointers ([]*T): a JSON null element stays nil."""


@dataclass(frozen=True)
class _Map:
    elem: Any
    go: str


@dataclass(frozen=True)
class _Any:
    """interface{} (``shape`` "value"), map[string]interface{} ("object") or a list of
    them ("array"): kept as given."""

    shape: str
    go: str


@dataclass(frozen=True)
class _Dur:
    """A HealthCheckDefinition duration: a Go duration string or a number of ns on the
    way in; kept in its wire form (``"10s"``, or ns for TTL) in the store."""

    ttl: bool = False


@dataclass(frozen=True)
class _Field:
    name: str
    type: Any
    omitempty: bool = False
    pointer: bool = False
    """A pointer to a struct: nil is ``null`` (or omitted with omitempty)."""
    omitzero: bool = False
    """ConnectProxyConfig.MarshalJSON leaves out TransparentProxy/AccessLogs when zero."""


@dataclass(frozen=True)
class _Struct:
    name: str
    go: str
    fields: tuple[_Field, ...]
    strict: bool = True
    """False for structs whose UnmarshalJSON uses plain json.Unmarshal (unknown keys are
    ignored there even though the outer decoder disallows them)."""
    aliases: tuple[tuple[str, str], ...] = ()
    by_name: dict[str, _Field] = field(default_factory=dict, compare=False, repr=False)
    by_fold: dict[str, _Field] = field(default_factory=dict, compare=False, repr=False)
    alias_exact: dict[str, _Field] = field(default_factory=dict, compare=False, repr=False)
    alias_fold: dict[str, _Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            self.by_name[f.name] = f
            self.by_fold[f.name.lower()] = f
        for alias, target in self.aliases:
            self.alias_exact[alias] = self.by_name[target]
            self.alias_fold[alias.lower()] = self.by_name[target]

    def lookup(self, key: str) -> tuple[_Field | None, bool]:
        """Go's field matching: an exact name first, then a case-insensitive one; the
        bool says the key was a snake_case alias."""
        if key in self.by_name:
            return self.by_name[key], False
        if key in self.alias_exact:
            return self.alias_exact[key], True
        low = key.lower()
        if low in self.by_fold:
            return self.by_fold[low], False
        if low in self.alias_fold:
            return self.alias_fold[low], True
        return None, False


STR = _Scalar("str", "string")
INT = _Scalar("int", "int")
UINT64 = _Scalar("uint", "uint64")
FLOAT = _Scalar("float", "float64")
BOOL = _Scalar("bool", "bool")
STRLIST = _List(STR, "[]string")
STRMAP = _Map(STR, "map[string]string")
ANYMAP = _Any("object", "map[string]interface {}")


def _f(name: str, t: Any, omitempty: bool = False, **kw: bool) -> _Field:
    return _Field(name, t, omitempty, **kw)


_RAFT = (_f("CreateIndex", UINT64), _f("ModifyIndex", UINT64))

WEIGHTS = _Struct("Weights", "structs.Weights", (_f("Passing", INT), _f("Warning", INT)))
SERVICE_ADDRESS = _Struct(
    "ServiceAddress", "structs.ServiceAddress", (_f("Address", STR), _f("Port", INT))
)
LOCALITY = _Struct("Locality", "structs.Locality", (_f("Region", STR, True), _f("Zone", STR, True)))
MESH_GATEWAY = _Struct(
    "MeshGatewayConfig",
    "structs.MeshGatewayConfig",
    (_f("Mode", _Scalar("str", "structs.MeshGatewayMode"), True),),
)
EXPOSE_PATH = _Struct(
    "ExposePath",
    "structs.ExposePath",
    (
        _f("ListenerPort", INT, True),
        _f("Path", STR, True),
        _f("LocalPathPort", INT, True),
        _f("Protocol", STR, True),
        _f("ParsedFromCheck", BOOL, True),
    ),
    aliases=(("listener_port", "ListenerPort"), ("local_path_port", "LocalPathPort")),
)
EXPOSE = _Struct(
    "ExposeConfig",
    "structs.ExposeConfig",
    (_f("Checks", BOOL, True), _f("Paths", _List(EXPOSE_PATH, "[]structs.ExposePath"), True)),
)
TRANSPARENT_PROXY = _Struct(
    "TransparentProxyConfig",
    "structs.TransparentProxyConfig",
    (_f("OutboundListenerPort", INT, True), _f("DialedDirectly", BOOL, True)),
    aliases=(
        ("outbound_listener_port", "OutboundListenerPort"),
        ("dialed_directly", "DialedDirectly"),
    ),
)
ACCESS_LOGS = _Struct(
    "AccessLogsConfig",
    "structs.AccessLogsConfig",
    (
        _f("Enabled", BOOL, True),
        _f("DisableListenerLogs", BOOL, True),
        _f("Type", STR, True),
        _f("Path", STR, True),
        _f("JSONFormat", STR, True),
        _f("TextFormat", STR, True),
    ),
    aliases=(
        ("disable_listener_logs", "DisableListenerLogs"),
        ("json_format", "JSONFormat"),
        ("text_format", "TextFormat"),
    ),
)
UPSTREAM = _Struct(
    "Upstream",
    "structs.Upstream",
    (
        _f("DestinationType", STR),
        _f("DestinationNamespace", STR, True),
        _f("DestinationPartition", STR, True),
        _f("DestinationPeer", STR, True),
        _f("DestinationName", STR),
        _f("Datacenter", STR),
        _f("LocalBindAddress", STR, True),
        _f("LocalBindPort", INT, True),
        _f("LocalBindSocketPath", STR, True),
        _f("LocalBindSocketMode", STR, True),
        _f("Config", ANYMAP, True),
        _f("MeshGateway", MESH_GATEWAY),
        _f("CentrallyConfigured", BOOL, True),
    ),
    aliases=(
        ("destination_type", "DestinationType"),
        ("destination_partition", "DestinationPartition"),
        ("destination_namespace", "DestinationNamespace"),
        ("destination_peer", "DestinationPeer"),
        ("destination_name", "DestinationName"),
        ("local_bind_address", "LocalBindAddress"),
        ("local_bind_port", "LocalBindPort"),
        ("local_bind_socket_path", "LocalBindSocketPath"),
        ("local_bind_socket_mode", "LocalBindSocketMode"),
        ("mesh_gateway", "MeshGateway"),
    ),
)
PROXY = _Struct(
    "ConnectProxyConfig",
    "structs.ConnectProxyConfig",
    (
        _f("TransparentProxy", TRANSPARENT_PROXY, omitzero=True),
        _f("AccessLogs", ACCESS_LOGS, omitzero=True),
        _f("EnvoyExtensions", _Any("array", "[]structs.EnvoyExtension"), True),
        _f("DestinationServiceName", STR, True),
        _f("DestinationServiceID", STR, True),
        _f("LocalServiceAddress", STR, True),
        _f("LocalServicePort", INT, True),
        _f("LocalServiceSocketPath", STR, True),
        _f("Mode", _Scalar("str", "structs.ProxyMode")),
        _f("Config", ANYMAP, True),
        _f("Upstreams", _List(UPSTREAM, "structs.Upstreams"), True),
        _f("MeshGateway", MESH_GATEWAY),
        _f("Expose", EXPOSE),
    ),
    aliases=(
        ("destination_service_name", "DestinationServiceName"),
        ("destination_service_id", "DestinationServiceID"),
        ("local_service_address", "LocalServiceAddress"),
        ("local_service_port", "LocalServicePort"),
        ("local_service_socket_path", "LocalServiceSocketPath"),
        ("mesh_gateway", "MeshGateway"),
        ("transparent_proxy", "TransparentProxy"),
        ("access_logs", "AccessLogs"),
    ),
)
CONNECT = _Struct(
    "ServiceConnect",
    "structs.ServiceConnect",
    (
        _f("Native", BOOL, True),
        _f("SidecarService", _Any("object", "structs.ServiceDefinition"), True),
        _f("PeerMeta", _Any("object", "structs.PeeringServiceMeta"), True),
    ),
    strict=False,
    aliases=(("sidecar_service", "SidecarService"),),
)
NODE_SERVICE = _Struct(
    "NodeService",
    "structs.NodeService",
    (
        _f("Kind", _Scalar("str", "structs.ServiceKind"), True),
        _f("ID", STR),
        _f("Service", STR),
        _f("Tags", STRLIST),
        _f("Address", STR),
        _f("TaggedAddresses", _Map(SERVICE_ADDRESS, "map[string]structs.ServiceAddress"), True),
        _f("Meta", STRMAP),
        _f("Port", INT, True),
        _f("SocketPath", STR, True),
        _f("Weights", WEIGHTS, pointer=True),
        _f("EnableTagOverride", BOOL),
        _f("Locality", LOCALITY, True, pointer=True),
        _f("Proxy", PROXY),
        _f("Connect", CONNECT),
        _f("PeerName", STR),
        *_RAFT,
    ),
)
SERVICE_NODE = _Struct(
    "ServiceNode",
    "structs.ServiceNode",
    (
        _f("ID", _Scalar("str", "types.NodeID")),
        _f("Node", STR),
        _f("Address", STR),
        _f("Datacenter", STR),
        _f("TaggedAddresses", STRMAP),
        _f("NodeMeta", STRMAP),
        _f("ServiceKind", _Scalar("str", "structs.ServiceKind")),
        _f("ServiceID", STR),
        _f("ServiceName", STR),
        _f("ServiceTags", STRLIST),
        _f("ServiceAddress", STR),
        _f(
            "ServiceTaggedAddresses",
            _Map(SERVICE_ADDRESS, "map[string]structs.ServiceAddress"),
            True,
        ),
        _f("ServiceWeights", WEIGHTS),
        _f("ServiceMeta", STRMAP),
        _f("ServicePort", INT),
        _f("ServiceSocketPath", STR),
        _f("ServiceEnableTagOverride", BOOL),
        _f("ServiceProxy", PROXY),
        _f("ServiceConnect", CONNECT),
        _f("ServiceLocality", LOCALITY, pointer=True),
        _f("PeerName", STR, True),
        *_RAFT,
    ),
)
DEFINITION = _Struct(
    "HealthCheckDefinition",
    "structs.HealthCheckDefinition",
    (
        # MarshalJSON's order: the four re-typed fields first, then the rest.
        _f("Interval", _Dur(), True),
        _f("OutputMaxSize", _Scalar("uint", "uint"), True),
        _f("Timeout", _Dur(), True),
        _f("DeregisterCriticalServiceAfter", _Dur(), True),
        _f("HTTP", STR, True),
        _f("TLSServerName", STR, True),
        _f("TLSSkipVerify", BOOL, True),
        _f("Header", _Map(STRLIST, "map[string][]string"), True),
        _f("Method", STR, True),
        _f("Body", STR, True),
        _f("DisableRedirects", BOOL, True),
        _f("TCP", STR, True),
        _f("UDP", STR, True),
        _f("H2PING", STR, True),
        _f("OSService", STR, True),
        _f("H2PingUseTLS", BOOL, True),
        _f("ScriptArgs", STRLIST, True),
        _f("DockerContainerID", STR, True),
        _f("Shell", STR, True),
        _f("GRPC", STR, True),
        _f("GRPCUseTLS", BOOL, True),
        _f("AliasNode", STR, True),
        _f("AliasService", STR, True),
        _f("TTL", _Dur(ttl=True), True),
    ),
    strict=False,
)
HEALTH_CHECK = _Struct(
    "HealthCheck",
    "structs.HealthCheck",
    (
        _f("Node", STR),
        _f("CheckID", _Scalar("str", "types.CheckID")),
        _f("Name", STR),
        _f("Status", STR),
        _f("Notes", STR),
        _f("Output", STR),
        _f("ServiceID", STR),
        _f("ServiceName", STR),
        _f("ServiceTags", STRLIST),
        _f("Type", STR),
        _f("Interval", STR),
        _f("Timeout", STR),
        _f("ExposedPort", INT),
        _f("PeerName", STR, True),
        _f("Definition", DEFINITION),
        *_RAFT,
    ),
)
NODE = _Struct(
    "Node",
    "structs.Node",
    (
        _f("ID", _Scalar("str", "types.NodeID")),
        _f("Node", STR),
        _f("Address", STR),
        _f("Datacenter", STR),
        _f("Partition", STR, True),
        _f("PeerName", STR, True),
        _f("TaggedAddresses", STRMAP),
        _f("Meta", STRMAP),
        _f("Locality", LOCALITY, True, pointer=True),
        *_RAFT,
    ),
)
REGISTER_REQUEST = _Struct(
    "RegisterRequest",
    "structs.RegisterRequest",
    (
        _f("Datacenter", STR),
        _f("ID", _Scalar("str", "types.NodeID")),
        _f("Node", STR),
        _f("Address", STR),
        _f("TaggedAddresses", STRMAP),
        _f("NodeMeta", STRMAP),
        _f("Service", NODE_SERVICE, pointer=True),
        _f("Check", HEALTH_CHECK, pointer=True),
        _f("Checks", _List(HEALTH_CHECK, "structs.HealthChecks", pointers=True)),
        _f("Locality", LOCALITY, pointer=True),
        _f("SkipNodeUpdate", BOOL),
        _f("PeerName", STR),
        _f("Token", STR),  # the embedded WriteRequest
        *_RAFT,
    ),
)
DEREGISTER_REQUEST = _Struct(
    "DeregisterRequest",
    "structs.DeregisterRequest",
    (
        _f("Datacenter", STR),
        _f("Node", STR),
        _f("ServiceID", STR),
        _f("CheckID", _Scalar("str", "types.CheckID")),
        _f("PeerName", STR),
        _f("Token", STR),
        _f("Address", STR),  # "obsolete field - but we want to explicitly allow it"
    ),
)
COORDINATE = _Struct(
    "Coordinate",
    "coordinate.Coordinate",
    (
        _f("Vec", _List(FLOAT, "[]float64")),
        _f("Error", FLOAT),
        _f("Adjustment", FLOAT),
        _f("Height", FLOAT),
    ),
)
COORDINATE_UPDATE = _Struct(
    "CoordinateUpdateRequest",
    "structs.CoordinateUpdateRequest",
    (
        _f("Datacenter", STR),
        _f("Node", STR),
        _f("Segment", STR),
        _f("Coord", COORDINATE, pointer=True),
        _f("Token", STR),
    ),
)


class _DecodeError(Exception):
    pass


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_error(what: str, go: str, struct: str | None, path: tuple[str, ...]) -> _DecodeError:
    if struct is None:
        return _DecodeError(f"json: cannot unmarshal {what} into Go value of type {go}")
    where = ".".join(path)
    return _DecodeError(
        f"json: cannot unmarshal {what} into Go struct field {struct}.{where} of type {go}"
    )


def _go_quote(text: str) -> str:
    """strconv.Quote, closely enough for error messages."""
    return orjson.dumps(text).decode()


def _decode(value: Any, t: Any, struct: str | None, path: tuple[str, ...]) -> Any:
    """``value`` (decoded JSON, not None) as Go would decode it into type ``t``."""
    if isinstance(t, _Struct):
        if not isinstance(value, dict):
            raise _type_error(_json_kind(value), t.go, struct, path)
        return _decode_struct(value, t, path)
    if isinstance(t, _Scalar):
        return _decode_scalar(value, t, struct, path)
    if isinstance(t, _List):
        if not isinstance(value, list):
            raise _type_error(_json_kind(value), t.go, struct, path)
        return [
            (None if t.pointers else _zero(t.elem))
            if e is None
            else _decode(e, t.elem, struct, path)
            for e in value
        ]
    if isinstance(t, _Map):
        if not isinstance(value, dict):
            raise _type_error(_json_kind(value), t.go, struct, path)
        return {
            k: _zero(t.elem) if e is None else _decode(e, t.elem, struct, path)
            for k, e in value.items()
        }
    if isinstance(t, _Any):
        if (t.shape == "object" and not isinstance(value, dict)) or (
            t.shape == "array" and not isinstance(value, list)
        ):
            raise _type_error(_json_kind(value), t.go, struct, path)
        return value
    if isinstance(t, _Dur):
        return _decode_duration(value, t)
    raise AssertionError(f"unknown Go type {t!r}")


def _decode_struct(obj: dict[str, Any], t: _Struct, path: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    snake: dict[str, Any] = {}
    for key, value in obj.items():
        f, via_alias = t.lookup(key)
        if f is None:
            if t.strict:
                raise _DecodeError(f"json: unknown field {_go_quote(key)}")
            continue
        target = snake if via_alias else out
        if value is None:
            # Go: null sets a pointer, slice, map or interface to nil; other kinds keep
            # whatever they had.
            if f.pointer or isinstance(f.type, _List | _Map | _Any):
                target[f.name] = None
            continue
        decoded = _decode(value, f.type, t.name, (*path, f.name))
        if decoded is None:  # a duration of a type the definition ignores
            continue
        target[f.name] = decoded
    for name, v in snake.items():
        # the UnmarshalJSON methods use the snake_case value only when the other is empty
        if _is_empty(out.get(name)):
            out[name] = v
    return out


def _decode_scalar(v: Any, t: _Scalar, struct: str | None, path: tuple[str, ...]) -> Any:
    kind = t.kind
    if kind == "str":
        if isinstance(v, str):
            return v
    elif kind == "bool":
        if isinstance(v, bool):
            return v
    elif isinstance(v, int | float) and not isinstance(v, bool):
        if kind == "float":
            if isinstance(v, float) and not math.isfinite(v):
                raise _type_error(f"number {v!r}", t.go, struct, path)
            return float(v)
        lo, hi = (-(1 << 63), (1 << 63) - 1) if kind == "int" else (0, (1 << 64) - 1)
        if isinstance(v, float) or not lo <= v <= hi:
            # strconv.ParseInt/ParseUint on the literal failed: Go names the literal
            raise _type_error(f"number {v!r}", t.go, struct, path)
        return v
    raise _type_error(_json_kind(v), t.go, struct, path)


def _decode_duration(v: Any, t: _Dur) -> Any:
    """HealthCheckDefinition.UnmarshalJSON: a string is parsed, a number is nanoseconds,
    anything else is ignored. Returns the wire form, or None for zero."""
    if isinstance(v, str):
        try:
            ns = parse_duration_ns(v)
        except ValueError as e:
            raise _DecodeError(str(e)) from None
    elif isinstance(v, int | float) and not isinstance(v, bool):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        ns = max(min(int(v), (1 << 63) - 1), -(1 << 63))
    else:
        return None
    if ns == 0:
        return None
    return ns if t.ttl else format_duration(ns)


def _zero(t: Any) -> Any:
    if isinstance(t, _Scalar):
        return {"str": "", "int": 0, "uint": 0, "float": 0.0, "bool": False}[t.kind]
    if isinstance(t, _Struct):
        return {}
    return None


def _is_empty(v: Any) -> bool:
    """Go's omitempty test, on JSON-like values."""
    if v is None or v is False:
        return True
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v == 0
    if isinstance(v, str | list | dict):
        return len(v) == 0
    return False


def decode_go_body(request: Request, t: _Struct) -> dict[str, Any]:
    """Consul's ``decodeBody``: the body decoded into ``t`` or 400 ``Request decode
    failed: …``. An empty body is ``EOF``."""
    body = request.body
    if not body.strip():
        raise HTTPError(400, "Request decode failed: EOF")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise HTTPError(400, f"Request decode failed: {e}") from None
    if raw is None:
        return {}
    try:
        out = _decode(raw, t, None, ())
    except _DecodeError as e:
        msg = str(e)
        if msg == 'json: unknown field "Namespace"':
            msg += " - Namespaces are a Consul Enterprise feature"
        raise HTTPError(400, f"Request decode failed: {msg}") from None
    assert isinstance(out, dict)
    return out


def _encode(value: Any, t: Any) -> Any:
    """``value`` as encoding/json would write the Go value of type ``t``. Values of an
    unexpected type (written by other code) pass through unchanged; this never raises."""
    if isinstance(t, _Struct):
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for f in t.fields:
            v = value.get(f.name)
            ft = f.type
            if isinstance(ft, _Struct):
                if v is None and (f.pointer or f.omitempty):
                    if not f.omitempty:
                        out[f.name] = None
                    continue
                if f.omitzero and (
                    not isinstance(v, dict) or all(_is_empty(v.get(s.name)) for s in ft.fields)
                ):
                    continue
                out[f.name] = _encode({} if v is None else v, ft)
                continue
            if v is None:
                v = _zero(ft)
            if f.omitempty and _is_empty(v):
                continue
            out[f.name] = _encode(v, ft)
        return out
    if isinstance(t, _List):
        if isinstance(value, list):
            return [_encode(e, t.elem) for e in value]
        return value
    if isinstance(t, _Map):
        if isinstance(value, dict):
            return {k: _encode(value[k], t.elem) for k in sorted(value, key=str)}
        return value
    return value


# =========================================================================== shapes

DEFAULT_WEIGHTS = {"Passing": 1, "Warning": 1}


def _weights(w: Any) -> dict[str, int]:
    """NodeService.ToServiceNode: valid weights (ValidateWeights) or the default."""
    if isinstance(w, dict):
        p, wa = w.get("Passing", 0), w.get("Warning", 0)
        if (
            isinstance(p, int)
            and isinstance(wa, int)
            and not isinstance(p, bool)
            and not isinstance(wa, bool)
            and 1 <= p <= 65535
            and 0 <= wa <= 65535
        ):
            return {"Passing": p, "Warning": wa}
    return dict(DEFAULT_WEIGHTS)


def node_json(node: Mapping[str, Any]) -> Any:
    """structs.Node as the HTTP API writes it."""
    return _encode(node, NODE)


def service_json(svc: Mapping[str, Any]) -> Any:
    """structs.NodeService as read back from the catalog (ServiceNode.ToNodeService, so
    ``Weights`` is always set), ``Tags`` null made ``[]`` as the HTTP handlers do."""
    d = dict(svc)
    d["Weights"] = _weights(svc.get("Weights"))
    if d.get("Tags") is None:
        d["Tags"] = []
    return _encode(d, NODE_SERVICE)


def service_node_json(node: Mapping[str, Any], svc: Mapping[str, Any]) -> Any:
    """structs.ServiceNode, as parseServiceNodes fills it in (PartialClone: ServiceTags
    and ServiceMeta are never null, empty ServiceTaggedAddresses are left out)."""
    return _encode(
        {
            "ID": node.get("ID"),
            "Node": node.get("Node"),
            "Address": node.get("Address"),
            "Datacenter": node.get("Datacenter"),
            "TaggedAddresses": node.get("TaggedAddresses"),
            "NodeMeta": node.get("Meta"),
            "ServiceKind": svc.get("Kind"),
            "ServiceID": svc.get("ID"),
            "ServiceName": svc.get("Service"),
            "ServiceTags": list(svc.get("Tags") or ()),
            "ServiceAddress": svc.get("Address"),
            "ServiceTaggedAddresses": svc.get("TaggedAddresses") or None,
            "ServiceWeights": _weights(svc.get("Weights")),
            "ServiceMeta": dict(svc.get("Meta") or {}),
            "ServicePort": svc.get("Port"),
            "ServiceSocketPath": svc.get("SocketPath"),
            "ServiceEnableTagOverride": svc.get("EnableTagOverride"),
            "ServiceProxy": svc.get("Proxy"),
            "ServiceConnect": svc.get("Connect"),
            "ServiceLocality": svc.get("Locality"),
            "PeerName": svc.get("PeerName"),
            "CreateIndex": svc.get("CreateIndex"),
            "ModifyIndex": svc.get("ModifyIndex"),
        },
        SERVICE_NODE,
    )


def check_json(check: Mapping[str, Any]) -> Any:
    """structs.HealthCheck, ``ServiceTags`` null made ``[]`` as the handlers do."""
    if check.get("ServiceTags") is None:
        check = {**check, "ServiceTags": []}
    return _encode(check, HEALTH_CHECK)


class _Shapes:
    """The JSON shapes above, memoised per stored entry. The store never mutates an entry
    once stored (an update stores a new dict), so an entry's shape is fixed; the cache
    holds the entry itself, so its ``id`` cannot be reused while cached. Shapes are
    shared between answers and never mutated. One per HTTP server (one event loop)."""

    ENTRIES_MAX = 8192
    """Bounds the memory the cache can hold (a shape is around a kilobyte)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[Any, Any, Any]] = {}

    def _get(self, a: Any, b: Any, make: Callable[[], Any]) -> Any:
        key = (id(a), id(b))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is a and hit[1] is b:
            return hit[2]
        out = make()
        if len(self._cache) >= self.ENTRIES_MAX:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (a, b, out)
        return out

    def node(self, node: Mapping[str, Any]) -> Any:
        return self._get(node, None, lambda: node_json(node))

    def service(self, svc: Mapping[str, Any]) -> Any:
        return self._get(svc, None, lambda: service_json(svc))

    def check(self, check: Mapping[str, Any]) -> Any:
        return self._get(check, None, lambda: check_json(check))

    def service_node(self, node: Mapping[str, Any], svc: Mapping[str, Any]) -> Any:
        return self._get(node, svc, lambda: service_node_json(node, svc))

    def csn(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """structs.CheckServiceNode."""
        return {
            "Node": self.node(row["Node"]),
            "Service": self.service(row["Service"]),
            "Checks": [self.check(c) for c in row.get("Checks") or ()],
        }


# =========================================================================== request bits


def _values(request: Request, name: str) -> list[str]:
    """Every value of a repeated query parameter (Go's ``url.Values[name]``). Falls back to
    the first one while :class:`catalog.aio.Request` keeps only that."""
    multi = getattr(request, "query_all", None)
    if isinstance(multi, dict) and name in multi:
        return [str(v) for v in multi[name]]
    return [request.query[name]] if name in request.query else []


def _ent_meta(request: Request, namespaces: bool = True) -> None:
    """Consul CE's ParseEntMeta / ParseEntMetaPartition."""
    if namespaces:
        if request.headers.get("x-consul-namespace"):
            raise HTTPError(
                400,
                'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature',
            )
        if request.query.get("ns"):
            raise HTTPError(
                400,
                'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature',
            )
    if request.headers.get("x-consul-partition"):
        raise HTTPError(
            400,
            'Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature',
        )
    if request.query.get("partition"):
        raise HTTPError(
            400,
            'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature',
        )


def _meta_filters(request: Request) -> dict[str, str] | None:
    """parseMetaFilter: each ``?node-meta=key:value`` (split at the first colon)."""
    if "node-meta" not in request.query:
        return None
    out: dict[str, str] = {}
    for raw in _values(request, "node-meta"):
        key, _, value = raw.partition(":")
        out[key] = value
    return out


def _satisfies(meta: Any, filters: Mapping[str, str]) -> bool:
    """structs.SatisfiesMetaFilters."""
    if not isinstance(meta, dict):
        meta = {}
    return all(k in meta and meta[k] == v for k, v in filters.items())


def _has_tags(svc: Mapping[str, Any], tags: list[str]) -> bool:
    """state.serviceTagsFilter, negated: every wanted tag, compared case-insensitively."""
    have = {str(t).lower() for t in svc.get("Tags") or ()}
    return all(t.lower() in have for t in tags)


def _parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


def _no_filter(request: Request) -> Request:
    """The request without ``?filter=``: these endpoints apply it themselves, in Consul's
    order, or (coordinates) ignore it as Consul does."""
    if "filter" not in request.query:
        return request
    query = {k: v for k, v in request.query.items() if k != "filter"}
    return dataclasses.replace(request, query=query)


# =========================================================================== near

CoordSet = dict[str, Coordinate]


def _coordinates(store: StateStore) -> dict[str, CoordSet]:
    """lower-case node -> segment -> coordinate, from the store's coordinate table."""
    out: dict[str, CoordSet] = {}
    for ent in store.coordinate_list().value:
        try:
            coord = Coordinate.from_wire(ent.get("Coord"))
        except (CoordinateError, TypeError, ValueError):
            continue
        out.setdefault(str(ent.get("Node", "")).lower(), {})[str(ent.get("Segment") or "")] = coord
    return out


def _distance(source: CoordSet, other: CoordSet | None) -> float:
    """lib.CoordinateSet.Intersect then lib.ComputeDistance (+Inf when either is missing)."""
    if not other:
        return math.inf
    segment = ""
    if len(source) == 1:
        segment = next(iter(source))
    if len(other) == 1:
        segment = next(iter(other))
    a, b = source.get(segment), other.get(segment)
    if a is None or b is None:
        return math.inf
    try:
        d = a.distance_to(b)
    except (CoordinateError, ValueError, OverflowError):
        return math.inf
    return d if math.isfinite(d) else math.inf


def _sort_near(
    items: list[Any], node_of: Callable[[Any], str], store: StateStore, source: str
) -> list[Any]:
    """Server.sortNodesByDistanceFrom: a stable sort by RTT from ``source``; a no-op when
    there is no source or it has no coordinate."""
    if not source or len(items) < 2:
        return items
    coords = _coordinates(store)
    mine = coords.get(source.lower())
    if not mine:
        return items
    keyed = [(_distance(mine, coords.get(str(node_of(it)).lower())), it) for it in items]
    keyed.sort(key=lambda p: p[0])  # Python's sort is stable, like sort.Stable
    return [it for _, it in keyed]


def _filter_non_passing(rows: list[Any]) -> list[Any]:
    """agent/health_endpoint.go filterNonPassing: drop every entry with a check that is not
    passing by swapping the last entry into its place (so the order changes)."""
    out = list(rows)
    n = len(out)
    i = 0
    while i < n:
        if any(c.get("Status") != "passing" for c in out[i]["Checks"]):
            out[i] = out[n - 1]
            n -= 1
            continue
        i += 1
    return out[:n]


# =========================================================================== register


def _fail(message: str) -> HTTPError:
    """An RPC error: Consul's HTTP layer answers it 500 with the text."""
    return HTTPError(500, message)


def _multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror's ListFormatFunc."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def _go_rune(b: int) -> str:
    """fmt's %#U of a byte turned rune: ``U+0067 'g'``."""
    ch = chr(b)
    return f"U+{b:04X} '{ch}'" if ch.isprintable() else f"U+{b:04X}"


def _uuid_error(text: str) -> str | None:
    """hashicorp/go-uuid ParseUUID's error for ``text``, or None when it parses."""
    raw = text.encode()
    if len(raw) != 36:
        return "uuid string is wrong length"
    if raw[8] != 0x2D or raw[13] != 0x2D or raw[18] != 0x2D or raw[23] != 0x2D:
        return "uuid is improperly formatted"
    hexpart = raw[0:8] + raw[9:13] + raw[14:18] + raw[19:23] + raw[24:36]
    for b in hexpart:
        if chr(b) not in "0123456789abcdefABCDEF":
            return f"encoding/hex: invalid byte: {_go_rune(b)}"
    return None


def _meta_error(meta: Mapping[str, Any], kind: str) -> str | None:
    """structs.ValidateServiceMetadata (the state store runs it on every service)."""
    if len(meta) > META_PAIRS_MAX:
        return f"Node metadata cannot contain more than {META_PAIRS_MAX} key/value pairs"
    for key in sorted(meta):
        value = str(meta[key])
        err = None
        if key == "":
            err = "Key cannot be blank"
        elif not META_KEY_RE.fullmatch(key):
            err = "Key contains invalid characters"
        elif len(key.encode()) > META_KEY_BYTES_MAX:
            err = f"Key is too long (limit: {META_KEY_BYTES_MAX} characters)"
        elif key.startswith("consul-") and not (
            kind == "mesh-gateway" and key == "consul-wan-federation"
        ):
            err = "Key prefix 'consul-' is reserved for internal use"
        elif len(value.encode()) > META_VALUE_BYTES_MAX:
            err = f"Value is too long (limit: {META_VALUE_BYTES_MAX} characters)"
        if err:
            return f"Couldn't load metadata pair ('{key}', '{value}'): {err}"
    return None


def _upstream_errors(upstreams: list[Any]) -> list[str]:
    """The upstream part of NodeService.ValidateForAgent (default partition, no peers)."""
    errs: list[str] = []
    keys: set[tuple[str, ...]] = set()
    binds: set[str] = set()
    for u in upstreams:
        if not isinstance(u, dict):
            continue
        dtype = u.get("DestinationType") or ""
        name = u.get("DestinationName") or ""
        peer = u.get("DestinationPeer") or ""
        dc = u.get("Datacenter") or ""
        port = u.get("LocalBindPort") or 0
        sock = u.get("LocalBindSocketPath") or ""
        central = bool(u.get("CentrallyConfigured"))
        if dtype not in ("", "service", "prepared_query"):
            errs.append(f"unknown upstream destination type: {_go_quote(dtype)}")
            continue
        if not name:
            errs.append("upstream destination name cannot be empty")
            continue
        if name == "*" and not central:
            errs.append("upstream destination name cannot be a wildcard")
            continue
        if peer and dc:
            errs.append("upstream cannot specify both destination peer and datacenter")
            continue
        if port == 0 and not sock and not central:
            errs.append("upstream local bind port or local socket path must be defined and nonzero")
            continue
        if port != 0 and sock and not central:
            errs.append(
                "only one of upstream local bind port or local socket path can be defined "
                "and nonzero"
            )
            continue
        part = u.get("DestinationPartition") or ""
        ns = u.get("DestinationNamespace") or ""
        key = (dtype, name, part, ns, peer, dc)
        if key in keys:
            errs.append(
                "upstreams cannot contain duplicates of "
                f"[type={_go_quote(dtype)}, name={_go_quote(name)}, "
                f"partition={_go_quote(part)}, namespace={_go_quote(ns)}, "
                f"peer={_go_quote(peer)}, datacenter={_go_quote(dc)}]"
            )
            continue
        keys.add(key)
        if port == 0 and not u.get("LocalBindAddress") and sock:
            addr = sock
        else:
            host = u.get("LocalBindAddress") or "127.0.0.1"
            addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if addr in binds and not central:
            errs.append(
                "upstreams cannot contain duplicates by local bind address and port or unix "
                f"path; {_go_quote(addr)} is specified twice"
            )
            continue
        binds.add(addr)
    return errs


def _service_errors(svc: Mapping[str, Any]) -> list[str]:
    """NodeService.Validate: what Catalog.Register refuses before anything else about a
    service (connect proxies, gateways, Connect-native services)."""
    errs: list[str] = []
    kind = svc.get("Kind") or ""
    port = svc.get("Port") or 0
    sock = svc.get("SocketPath") or ""
    proxy = svc.get("Proxy") or {}
    connect = svc.get("Connect") or {}
    if kind == "connect-proxy":
        if port == 0 and not sock:
            errs.append(f"Port or SocketPath must be set for a {kind}")
        dest = proxy.get("DestinationServiceName") or ""
        if not dest.strip():
            errs.append("Proxy.DestinationServiceName must be non-empty for Connect proxy services")
        if dest == "*":
            errs.append(
                "Proxy.DestinationServiceName must not be a wildcard for Connect proxy services"
            )
        if connect.get("Native"):
            errs.append("A Proxy cannot also be Connect Native, only typical services")
        errs.extend(_upstream_errors(proxy.get("Upstreams") or []))
        seen_ports: set[int] = set()
        for path in (proxy.get("Expose") or {}).get("Paths") or ():
            if not isinstance(path, dict):
                continue
            lport = path.get("ListenerPort") or 0
            if not path.get("Path"):
                errs.append("expose.paths: empty path exposed")
            if lport in seen_ports:
                errs.append("expose.paths: duplicate listener ports exposed")
            seen_ports.add(lport)
            if lport <= 0 or lport > 65535:
                errs.append(f"expose.paths: invalid listener port: {lport}")
            proto = str(path.get("Protocol") or "").lower()
            if proto and proto not in ("http", "http2"):
                errs.append(
                    f"protocol '{proto}' not supported for path: {path.get('Path') or ''}, "
                    "must be in: [http http2]"
                )
    if kind in GATEWAY_KINDS:
        if port == 0 and kind not in ("ingress-gateway", "api-gateway"):
            errs.append(f"Port must be non-zero for a {kind}")
        if connect.get("SidecarService") is not None:
            errs.append(f"A {kind} cannot have a sidecar service defined")
        for name in (
            "DestinationServiceName",
            "DestinationServiceID",
            "LocalServiceAddress",
            "LocalServicePort",
            "LocalServiceSocketPath",
        ):
            if proxy.get(name):
                errs.append(f"The Proxy.{name} configuration is invalid for a {kind}")
        if proxy.get("Upstreams"):
            errs.append(f"The Proxy.Upstreams configuration is invalid for a {kind}")
    sidecar = connect.get("SidecarService")
    if isinstance(sidecar, dict):
        fields = {str(k).lower(): v for k, v in sidecar.items()}
        if fields.get("id"):
            errs.append("A SidecarService cannot specify an ID as this is managed by the agent")
        nested = fields.get("connect")
        if isinstance(nested, dict) and any(
            str(k).lower().replace("_", "") == "sidecarservice" and v is not None
            for k, v in nested.items()
        ):
            errs.append("A SidecarService cannot have a nested SidecarService")
    if connect.get("Native") and port == 0 and not sock:
        errs.append("Port or SocketPath must be set for a Connect native service.")
    return errs


def _check_type(definition: Mapping[str, Any]) -> str:
    """CheckType.Type() of HealthCheck.CheckType(): what Catalog.Register fills in when a
    check comes without a Type."""
    interval = bool(definition.get("Interval"))

    def has(name: str) -> bool:
        return bool(definition.get(name))

    if has("GRPC") and interval:
        return "grpc"
    if has("HTTP") and interval:
        return "http"
    if has("TTL"):
        return "ttl"
    if has("TCP") and interval:
        return "tcp"
    if has("UDP") and interval:
        return "udp"
    if has("AliasNode") or has("AliasService"):
        return "alias"
    if has("ScriptArgs") and has("DockerContainerID") and interval:
        return "docker"
    if has("ScriptArgs"):
        return "script"
    if has("H2PING") and interval:
        return "h2ping"
    if has("OSService") and interval:
        return "os_service"
    return ""


_INTERNAL = ("CreateIndex", "ModifyIndex", "PeerName")


def _register_command(args: dict[str, Any], datacenter: str, store: StateStore) -> dict[str, Any]:
    """Catalog.Register's validation and fix-ups, then the ``register`` command. Raises
    HTTPError (500, Consul's text) without touching the store."""
    node = args.get("Node") or ""
    if not node:
        raise _fail("Must provide node")
    node_id = args.get("ID") or ""
    if node_id:
        err = _uuid_error(node_id)
        if err:
            raise _fail(f"Bad node ID: {err}")
    address = args.get("Address") or ""
    skip = bool(args.get("SkipNodeUpdate"))
    if not address and not skip:
        raise _fail("Must provide address if SkipNodeUpdate is not set")

    svc = args.get("Service")
    if svc is not None:
        errs = _service_errors(svc)
        if errs:
            raise _fail(_multierror(errs))
        if not svc.get("ID") and svc.get("Service"):
            svc["ID"] = svc["Service"]
        if svc.get("ID") and not svc.get("Service"):
            raise _fail("Must provide service name (Service.Service) when service ID is provided")
        if svc.get("Address") in ("0.0.0.0", "::", "[::]"):
            raise _fail("Invalid service address")
        svc = {k: v for k, v in svc.items() if k not in _INTERNAL}
        svc["Weights"] = _weights(svc.get("Weights"))

    checks = [c for c in args.get("Checks") or () if c is not None]
    if args.get("Check") is not None:
        checks.append(args["Check"])
    for chk in checks:
        if not chk.get("Node"):
            chk["Node"] = node
        if not chk.get("CheckID") and chk.get("Name"):
            chk["CheckID"] = chk["Name"]
        if not chk.get("Type"):
            chk["Type"] = _check_type(chk.get("Definition") or {})

    # vetRegisterWithACL: run whether or not ACLs are enabled
    lower = node.lower()
    existing = store.services.get(lower, {}) if lower in store.nodes else None
    for chk in checks:
        cid = chk.get("CheckID") or ""
        if chk["Node"].lower() != lower:
            raise _fail(
                f"Node '{chk['Node']}' for check '{cid}' doesn't match register request "
                f"node '{node}'"
            )
        sid = chk.get("ServiceID") or ""
        if not sid or (svc is not None and str(svc.get("ID", "")).lower() == sid.lower()):
            continue
        if existing is None or sid.lower() not in existing:
            raise _fail(f"Unknown service ID '{sid}' for check ID '{cid}'")

    if svc is not None:
        meta = svc.get("Meta") or {}
        err = _meta_error(meta, svc.get("Kind") or "")
        if err:
            raise _fail(
                f"failed inserting service: Invalid Service Meta for node {node} and "
                f"serviceID {svc.get('ID', '')}: {err}"
            )

    return C.register(
        0.0,
        node,
        address,
        node_id=node_id,
        datacenter=datacenter,
        tagged_addresses=args.get("TaggedAddresses"),
        node_meta=args.get("NodeMeta"),
        service=svc,
        checks=[{k: v for k, v in c.items() if k not in _INTERNAL} for c in checks],
        skip_node_update=skip,
    )


async def _write(server: CatalogServer, command: dict[str, Any]) -> Any:
    try:
        return await server.write(command)
    except CommandRejected as e:
        raise _fail(str(e)) from None


# =========================================================================== endpoints


def _lookup_node(store: StateStore, name: str) -> str | None:
    """state.nodeServices' node lookup: by name (case-insensitively), else, from two
    characters on, by a unique ID prefix. The node's name, or None."""
    node = store.node(name)
    if node is not None:
        return str(node["Node"])
    if len(name) < MIN_UUID_LOOKUP_LEN:
        return None
    key = name[: len(name) - len(name) % 2].lower().replace("-", "")
    if not key or any(ch not in "0123456789abcdef" for ch in key):
        return None
    found = [
        n["Node"]
        for n in store.nodes.values()
        if str(n.get("ID") or "").lower().replace("-", "").startswith(key)
    ]
    return str(found[0]) if len(found) == 1 else None


def register(srv: HTTPServer) -> None:
    """Add the catalog, health, coordinate and status routes to ``srv``."""
    agent: Any = srv.agent
    shapes = _Shapes()

    def our_dc() -> str:
        return str(agent.config.datacenter)

    def begin(request: Request, namespaces: bool = True) -> Any:
        """The checks every read makes before it reads: enterprise parameters, query
        options (400s) and the filter (compiled now, applied inside the read)."""
        _ent_meta(request, namespaces)
        opts = query_options(request, our_dc())
        return compile_filter_or_400(opts.filter) if opts.filter else None

    def near(request: Request) -> str:
        source = request.query.get("near", "")
        if source == "_agent":  # the agent the request reached, not the server answering
            return request.origin or str(agent.config.node_name)
        return source

    def flt_list(flt: Any, items: list[Any]) -> list[Any]:
        if flt is None:
            return items
        return list(filter_items(flt, items))

    async def read(
        request: Request,
        fn: Callable[[StateStore], Read],
        not_found: Callable[[Any], bool] | None = None,
    ) -> Response:
        return await blocking_read(agent, _no_filter(request), fn, not_found=not_found)

    # ------------------------------------------------------------------ catalog writes

    async def catalog_register(request: Request, _: str) -> Any:
        _ent_meta(request)
        args = decode_go_body(request, REGISTER_REQUEST)
        dc = args.get("Datacenter") or our_dc()
        server = require_server(agent)
        peered = [args, args.get("Service") or {}, args.get("Check") or {}]
        peered += [c for c in args.get("Checks") or () if c]
        if any(p.get("PeerName") for p in peered):
            raise _fail("cannot register requests with PeerName in them")
        if dc != server.datacenter:
            raise _fail("No path to datacenter")
        await _write(server, _register_command(args, dc, server.store))
        return True

    async def catalog_deregister(request: Request, _: str) -> Any:
        _ent_meta(request)
        args = decode_go_body(request, DEREGISTER_REQUEST)
        dc = args.get("Datacenter") or our_dc()
        server = require_server(agent)
        if dc != server.datacenter:
            raise _fail("No path to datacenter")
        node = args.get("Node") or ""
        if not node:
            raise _fail("Must provide node")
        if args.get("PeerName"):
            return True  # nothing imported from peers lives in this catalog
        cmd = C.deregister(0.0, node, args.get("ServiceID") or "", args.get("CheckID") or "")
        await _write(server, cmd)
        return True

    # ------------------------------------------------------------------ catalog reads

    async def catalog_datacenters(request: Request, _: str) -> Any:
        if getattr(agent, "catalog", None) is None and not agent.config.server:
            require_server(agent)
        # Catalog.ListDatacenters: by RTT over the WAN; with no WAN federation, ours alone
        return [our_dc()]

    async def catalog_nodes(request: Request, _: str) -> Any:
        flt = begin(request, namespaces=False)
        meta = _meta_filters(request)
        source = near(request)

        def fn(store: StateStore) -> Read:
            r = store.catalog_nodes()
            nodes = r.value
            if meta is not None:
                nodes = [n for n in nodes if _satisfies(n.get("Meta"), meta)]
            out = flt_list(flt, [shapes.node(n) for n in nodes])
            out = _sort_near(out, lambda n: n["Node"], store, source)
            return Read(r.index, out, r.watch)

        return await read(request, fn)

    async def catalog_services(request: Request, _: str) -> Any:
        flt = begin(request)
        meta = _meta_filters(request)

        def fn(store: StateStore) -> Read:
            r = store.catalog_services()
            index, watch = r.index, r.watch
            if meta is not None:  # ServicesByNodeMeta: the nodes' index counts too
                rn = store.catalog_nodes()
                index, watch = max(index, rn.index), (*watch, *rn.watch)
            # ServiceNode rows (shaped only when a filter needs to see them), then
            # servicesTagsByName: every service with a row left, with the union of tags
            rows: list[tuple[str, Any]] = []
            for name in sorted(store.service_nodes):
                for lower, sid in store.service_nodes[name]:
                    node, svc = store.nodes[lower], store.services[lower][sid]
                    if meta is None or _satisfies(node.get("Meta"), meta):
                        row = shapes.service_node(node, svc) if flt else svc
                        rows.append((svc["Service"], row))
            if flt is not None:
                rows = [(r["ServiceName"], r) for r in filter_items(flt, [r for _, r in rows])]
            folded: dict[str, dict[str, None]] = {}
            for name, row in rows:
                tags = folded.setdefault(name, {})
                for t in row.get("ServiceTags" if flt is not None else "Tags") or ():
                    tags[t] = None
            out = {name: sorted(folded[name]) for name in sorted(folded)}
            return Read(index, out, watch)

        return await read(request, fn)

    def instances(
        request: Request, name: str
    ) -> Callable[[StateStore], tuple[Read, list[dict[str, Any]]]]:
        """What catalog/service and health/service (and their connect forms) share: the
        instances of ``name`` selected by ?tag (all must match), ?node-meta and ?peer."""
        meta = _meta_filters(request)
        tagged = "tag" in request.query
        tags = _values(request, "tag")
        if not name:
            raise HTTPError(400, "Missing service name")
        connect = request.path.startswith(("/v1/catalog/connect/", "/v1/health/connect/"))
        peer = request.query.get("peer", "")

        def select(store: StateStore) -> tuple[Read, list[dict[str, Any]]]:
            r = _service_rows(store, name, connect, peer)
            rows = [
                row
                for row in r.value
                if (not tagged or _has_tags(row["Service"], tags))
                and (meta is None or _satisfies(row["Node"].get("Meta"), meta))
            ]
            return r, rows

        return select

    async def catalog_service(request: Request, name: str) -> Any:
        flt = begin(request)
        select = instances(request, name)
        source = near(request)

        def fn(store: StateStore) -> Read:
            r, rows = select(store)
            out = flt_list(flt, [shapes.service_node(row["Node"], row["Service"]) for row in rows])
            out = _sort_near(out, lambda s: s["Node"], store, source)
            return Read(r.index, out, r.watch)

        return await read(request, fn)

    async def catalog_node(request: Request, name: str) -> Any:
        flt = begin(request)
        if not name:
            raise HTTPError(400, "Missing node name")

        def fn(store: StateStore) -> Read:
            found = _lookup_node(store, name)
            r = store.catalog_node(found or name)
            if found is None or r.value is None:
                return Read(r.index, None, r.watch)
            services = {sid: shapes.service(s) for sid, s in r.value["Services"].items()}
            if flt is not None:
                services = dict(filter_items(flt, services))
            return Read(
                r.index, {"Node": shapes.node(r.value["Node"]), "Services": services}, r.watch
            )

        return await read(request, fn)

    async def catalog_node_services(request: Request, name: str) -> Any:
        flt = begin(request)
        if not name:
            raise HTTPError(400, "Missing node name")

        def fn(store: StateStore) -> Read:
            found = _lookup_node(store, name)
            r = store.node_services(found or name)
            if found is None or r.value is None:
                return Read(r.index, {"Node": None, "Services": None}, r.watch)
            listed = [shapes.service(s) for s in r.value["Services"]]
            # NodeServiceList appends to a nil slice: no services is null
            services = flt_list(flt, listed) if listed else None
            value = {"Node": shapes.node(r.value["Node"]), "Services": services}
            return Read(r.index, value, r.watch)

        return await read(request, fn)

    # ------------------------------------------------------------------ health

    async def health_node(request: Request, name: str) -> Any:
        flt = begin(request)
        if not name:
            raise HTTPError(400, "Missing node name")

        def fn(store: StateStore) -> Read:
            r = store.node_checks(name)
            return Read(r.index, flt_list(flt, [shapes.check(c) for c in r.value]), r.watch)

        return await read(request, fn)

    async def health_checks(request: Request, name: str) -> Any:
        flt = begin(request)
        meta = _meta_filters(request)
        source = near(request)
        if not name:
            raise HTTPError(400, "Missing service name")

        def fn(store: StateStore) -> Read:
            r = store.service_checks(name)
            checks = r.value
            if meta is not None:
                checks = [
                    c for c in checks if _satisfies((store.node(c["Node"]) or {}).get("Meta"), meta)
                ]
            out = flt_list(flt, [shapes.check(c) for c in checks])
            out = _sort_near(out, lambda c: c["Node"], store, source)
            return Read(r.index, out, r.watch)

        return await read(request, fn)

    async def health_service(request: Request, name: str) -> Any:
        flt = begin(request)
        select = instances(request, name)
        source = near(request)
        passing = False
        if "passing" in request.query:
            value = request.query["passing"]
            try:
                passing = value == "" or _parse_bool(value)
            except ValueError:
                raise HTTPError(400, "Invalid value for ?passing") from None

        def fn(store: StateStore) -> Read:
            r, rows = select(store)
            out = flt_list(flt, [shapes.csn(row) for row in rows])
            out = _sort_near(out, lambda e: e["Node"]["Node"], store, source)
            if passing:
                out = _filter_non_passing(out)
            return Read(r.index, out, r.watch)

        return await read(request, fn)

    async def health_ingress(request: Request, name: str) -> Any:
        """Ingress gateways for ``name`` come from ingress-gateway config entries, which
        arrive with the config-entry issue: until then none, with the service's index."""
        begin(request)
        if not name:
            raise HTTPError(400, "Missing service name")

        def fn(store: StateStore) -> Read:
            r = store.service_health(name)
            return Read(r.index, [], r.watch)

        return await read(request, fn)

    async def health_state(request: Request, state: str) -> Any:
        flt = begin(request)
        meta = _meta_filters(request)
        source = near(request)
        if not state:
            raise HTTPError(400, "Missing check state")
        # checksInStateTxn: "any" is every check; anything else is looked up in the
        # status index, which lower-cases; no state is refused.
        wanted = state.lower()

        def fn(store: StateStore) -> Read:
            r = store.checks_in_state("any")
            checks = r.value
            if state != "any":
                checks = [c for c in checks if str(c.get("Status", "")).lower() == wanted]
            if meta is not None:
                checks = [
                    c for c in checks if _satisfies((store.node(c["Node"]) or {}).get("Meta"), meta)
                ]
            out = flt_list(flt, [shapes.check(c) for c in checks])
            out = _sort_near(out, lambda c: c["Node"], store, source)
            return Read(r.index, out, r.watch)

        return await read(request, fn)

    # ------------------------------------------------------------------ coordinates

    def segment_filter(request: Request, entries: Iterable[Any]) -> list[Any]:
        """filterCoordinates: ``?segment=`` keeps that segment's entries only."""
        if "segment" not in request.query:
            return list(entries)
        segment = request.query["segment"]
        return [e for e in entries if e.get("Segment", "") == segment]

    def gossip_coordinates(request: Request, node: str | None) -> Response:
        """An agent with no catalog server answers from its own gossip (no server RPC
        exists yet, and `gossamer rtt` must keep working on client agents)."""
        coords = agent.lan_coordinates()
        entries = [
            {"Node": n, "Segment": "", "Coord": _coord_json(c.to_wire())}
            for n, c in sorted(coords.items())
            if node is None or n.lower() == node.lower()
        ]
        if node is not None:
            for e in entries:
                e["Node"] = node
        entries = segment_filter(request, entries)
        headers = {
            "X-Consul-Index": "1",
            "X-Consul-KnownLeader": "false",
            "X-Consul-LastContact": "0",
        }
        if node is not None and not entries:
            return Response(raw=b"", status=404, headers=headers, content_type="text/plain")
        return Response(entries, headers=headers)

    async def coordinate_datacenters(request: Request, _: str) -> Any:
        if getattr(agent, "catalog", None) is None and not agent.config.server:
            require_server(agent)
        # Router.GetDatacenterMaps over the WAN area: every known server that has not
        # left and has a coordinate, grouped by datacenter. Until WAN federation exists
        # the servers are those of our LAN pool, with their LAN coordinates.
        coords = agent.lan_coordinates()
        by_dc: dict[str, list[dict[str, Any]]] = {}
        for m in agent.lan_members():
            if m.tags.get("role") != "consul" or m.status == MemberStatus.LEFT:
                continue
            c = coords.get(m.name)
            if c is None:
                continue
            dc = m.tags.get("dc", "")
            entry = {"Node": m.name, "Segment": "", "Coord": _coord_json(c.to_wire())}
            by_dc.setdefault(dc, []).append(entry)
        return [
            {
                "Datacenter": dc,
                "AreaID": AREA_WAN,
                "Coordinates": sorted(by_dc[dc], key=lambda e: e["Node"]),
            }
            for dc in sorted(by_dc)
        ]

    async def coordinate_nodes(request: Request, _: str) -> Any:
        query_options(request, our_dc())
        _ent_meta(request, namespaces=False)
        if getattr(agent, "catalog", None) is None:
            return gossip_coordinates(request, None)

        def fn(store: StateStore) -> Read:
            r = store.coordinate_list()
            out = [_coordinate_entry(e["Node"], e) for e in r.value]
            return Read(r.index, segment_filter(request, out), r.watch)

        return await read(request, fn)

    async def coordinate_node(request: Request, name: str) -> Any:
        query_options(request, our_dc())
        _ent_meta(request, namespaces=False)
        if getattr(agent, "catalog", None) is None:
            return gossip_coordinates(request, name)

        def fn(store: StateStore) -> Read:
            r = store.node_coordinates(name)
            out = [_coordinate_entry(name, e) for e in r.value]  # Node is as asked
            return Read(r.index, segment_filter(request, out), r.watch)

        return await read(request, fn, not_found=lambda v: not v)

    async def coordinate_update(request: Request, _: str) -> Any:
        args = decode_go_body(request, COORDINATE_UPDATE)
        dc = request.query.get("dc") or args.get("Datacenter") or our_dc()
        _ent_meta(request)
        server = require_server(agent)
        if dc != server.datacenter:
            raise _fail("No path to datacenter")
        coord = args.get("Coord")
        if coord is None:
            raise _fail("invalid coordinate")  # Go dereferences the nil pointer; refuse it
        vec = coord.get("Vec") or []
        values = [*vec, *(coord.get(k, 0.0) for k in ("Error", "Adjustment", "Height"))]
        if not all(math.isfinite(v) for v in values):
            raise _fail("invalid coordinate")  # Coordinate.IsValid
        ours = agent.lan_coordinate()
        dims = len(ours.vec) if ours is not None else 8
        if len(vec) != dims:
            raise _fail("incompatible coordinate")  # Coordinate.IsCompatibleWith
        wire = _coord_json(
            {
                "Vec": list(vec),
                "Error": coord.get("Error", 0.0),
                "Adjustment": coord.get("Adjustment", 0.0),
                "Height": coord.get("Height", 0.0),
            }
        )
        update = {"Node": args.get("Node") or "", "Segment": args.get("Segment") or ""}
        await _write(server, C.coordinates(0.0, [{**update, "Coord": wire}]))
        return Response(raw=b"")  # the handler returns nil: an empty 200

    # ------------------------------------------------------------------ status

    def status_server(request: Request) -> CatalogServer | None:
        query_options(request, our_dc())
        server: CatalogServer | None = getattr(agent, "catalog", None)
        if server is None and not agent.config.server:
            require_server(agent)
        return server

    async def status_leader(request: Request, _: str) -> Any:
        server = status_server(request)
        return server.leader_addr if server is not None else ""

    async def status_peers(request: Request, _: str) -> Any:
        server = status_server(request)
        # the Raft configuration's servers; none (a nil slice, so null) before bootstrap
        peers = server.peer_addresses() if server is not None else []
        return peers or None

    srv.route("/v1/catalog/register", {"PUT": catalog_register})
    srv.route("/v1/catalog/deregister", {"PUT": catalog_deregister})
    srv.route("/v1/catalog/datacenters", {"GET": catalog_datacenters})
    srv.route("/v1/catalog/nodes", {"GET": catalog_nodes})
    srv.route("/v1/catalog/services", {"GET": catalog_services})
    srv.route("/v1/catalog/service/", {"GET": catalog_service})
    srv.route("/v1/catalog/node/", {"GET": catalog_node})
    srv.route("/v1/catalog/node-services/", {"GET": catalog_node_services})
    srv.route("/v1/health/node/", {"GET": health_node})
    srv.route("/v1/health/checks/", {"GET": health_checks})
    srv.route("/v1/health/service/", {"GET": health_service})
    srv.route("/v1/health/state/", {"GET": health_state})
    srv.route("/v1/catalog/connect/", {"GET": catalog_service})
    srv.route("/v1/health/connect/", {"GET": health_service})
    srv.route("/v1/health/ingress/", {"GET": health_ingress})
    srv.route("/v1/coordinate/datacenters", {"GET": coordinate_datacenters})
    srv.route("/v1/coordinate/nodes", {"GET": coordinate_nodes})
    srv.route("/v1/coordinate/node/", {"GET": coordinate_node})
    srv.route("/v1/coordinate/update", {"PUT": coordinate_update})

    async def operator_usage(request: Request, _: str) -> Any:
        """Consul's OperatorUsage (agent/operator_endpoint_ce.go): counts of the catalog
        for this datacenter, with the query meta in the body as Consul puts it."""
        begin(request)

        def fn(store: StateStore) -> Read:
            instances = sum(len(svcs) for svcs in store.services.values())
            connect = 0
            for svcs in store.services.values():
                for svc in svcs.values():
                    if svc.get("Kind") == "connect-proxy" or (svc.get("Connect") or {}).get(
                        "Native"
                    ):
                        connect += 1
            usage = {
                "Services": len(store.service_nodes),
                "ServiceInstances": instances,
                "ConnectServiceInstances": {"connect-native": 0, "connect-proxy": connect},
                "BillableServiceInstances": instances - connect,
                "Nodes": len(store.nodes),
            }
            keys: tuple[WatchKey, ...] = (("table", "services"), ("table", "nodes"))
            return Read(max(1, store._idx(*keys)), usage, keys)

        r = await read(request, fn)
        server = require_server(agent)
        r.body = {
            "Usage": {server.datacenter: r.body},
            "Index": int(r.headers.get("X-Consul-Index", "1")),
            "LastContact": 0,
            "KnownLeader": server.known_leader,
            "ConsistencyLevel": "leader",
            "NotModified": False,
            "Backend": 0,
            "ResultsFilteredByACLs": False,
        }
        return r

    srv.route("/v1/operator/usage", {"GET": operator_usage})
    srv.route("/v1/status/leader", {"GET": status_leader})
    srv.route("/v1/status/peers", {"GET": status_peers})


def _service_rows(store: StateStore, name: str, connect: bool, peer: str) -> Read:
    """The instances a service read starts from: the service's own, or its Connect-capable
    ones; none at all for a cluster peer (``?peer=``), since gossamer imports no services
    from peers (Consul answers [] for a peer it does not know)."""
    r = store.connect_service_health(name) if connect else store.service_health(name)
    if peer:
        return Read(r.index, [], r.watch)
    return r


def _coord_json(wire: Mapping[str, Any]) -> dict[str, Any]:
    """coordinate.Coordinate in its Go field order (Vec, Error, Adjustment, Height)."""
    return {
        "Vec": list(wire.get("Vec") or ()),
        "Error": wire.get("Error", 0.0),
        "Adjustment": wire.get("Adjustment", 0.0),
        "Height": wire.get("Height", 0.0),
    }


def _coordinate_entry(node: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """structs.Coordinate (no Partition in OSS)."""
    coord = entry.get("Coord")
    return {
        "Node": node,
        "Segment": entry.get("Segment", ""),
        "Coord": _coord_json(coord) if isinstance(coord, dict) else coord,
    }
