"""/v1/agent/* endpoints for the agent's own services and checks, maintenance, metrics
and reload, in Consul's shapes (agent/agent_endpoint.go, api/agent.go).

Consul behaviour copied:

* ``GET /v1/agent/services`` — ID → ``api.AgentService`` (``buildAgentService``:
  ``Tags`` and ``Meta`` never null, ``Weights`` defaulted, ``Proxy`` only for proxies and
  gateways, ``Connect`` only when native, ``Datacenter`` the agent's); ``?filter=``.
* ``GET /v1/agent/service/<id>`` — one AgentService with ``ContentHash`` and the
  ``X-Consul-ContentHash`` header; ``?hash=<h>&wait=<d>`` blocks until it changes
  (``LocalBlockingQuery``); unknown: 404 ``unknown service ID: <id>``.
* ``PUT /v1/agent/service/register`` — ``AgentRegisterService``: 400 ``Missing service
  name``, ``Invalid service address``, ``Invalid Weights: …``, ``Invalid Service Meta:
  …``, ``Validation failed: …``, ``Invalid check: …``, ``Status for checks must
  'passing', 'warning', 'critical'``; ``?replace-existing-checks``. Body keys match
  case-insensitively and in snake_case. ``Connect.SidecarService`` is answered 400
  ``Invalid SidecarService: …`` (gossamer does not register sidecars yet).
* ``PUT /v1/agent/service/deregister/<id>``, ``PUT /v1/agent/service/maintenance/<id>
  ?enable=&reason=`` (400 ``Missing value for enable`` / ``Invalid value for enable:
  "x"``; unknown service 404 ``No service registered with ID "x"``), ``PUT
  /v1/agent/maintenance?enable=&reason=``.
* ``GET /v1/agent/checks`` — ID → HealthCheck (``ServiceTags`` never null); ``?filter=``.
* ``PUT /v1/agent/check/register`` — 400 ``Missing check name``, ``Bad check status``,
  ``Invalid check: …``; 404 ``ServiceID "x" does not exist``.
* ``PUT /v1/agent/check/deregister/<id>``, ``…/check/pass|warn|fail/<id>?note=``,
  ``…/check/update/<id>`` (``{"Status", "Output"}``; 400 ``Invalid check status:
  'x'``); a check without a TTL: 500 ``CheckID "x" does not have associated TTL``.
* ``GET /v1/agent/metrics`` — go-metrics JSON; ``?format=prometheus`` (or an
  OpenMetrics ``Accept``) in Prometheus text format from a registry of our own (Consul
  answers 415 unless ``prometheus_retention_time`` is set; gossamer always serves it).
* ``PUT /v1/agent/reload`` — nothing is reloadable yet: logged, answered 200 as a
  successful reload is.

Writes answer 200 with an empty body, after pushing the change to the catalog (Consul's
``syncChanges``). Every write handler validates fully before it changes anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from catalog.aio import HTTPError, Request, Response, read_json
from catalog.checks import STATUSES, CheckDecodeError, CheckInvalid, CheckType, parse_check
from catalog.http_common import (
    ANY,
    BOOL,
    INT,
    MAP,
    STR,
    STRLIST,
    canon,
    compile_filter_or_400,
    decode_body,
    filter_items,
)
from catalog.local import AgentError, ServiceDefinition
from gossamer.agent import multierror
from gossamer.duration import parse_duration

if TYPE_CHECKING:
    from catalog.aio import HTTPServer
    from catalog.localagent import LocalAgent

__all__ = ["agent_check", "agent_service", "prometheus_text", "register"]

log = logging.getLogger("gossamer.http")

PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_WAIT_S: Final = 300.0
MAX_WAIT_S: Final = 600.0
META_MAX_PAIRS: Final = 64
META_KEY_MAX: Final = 128
META_VALUE_MAX: Final = 512
_META_KEY: Final = re.compile(r"^[a-zA-Z0-9_-]+$")
GATEWAY_KINDS: Final = ("mesh-gateway", "terminating-gateway", "ingress-gateway", "api-gateway")

SERVICE_ADDRESS_SCHEMA: Final = {"Address": STR, "Port": INT}
PROXY_SCHEMA: Final = {
    "DestinationServiceName": STR,
    "DestinationServiceID": STR,
    "LocalServiceAddress": STR,
    "LocalServicePort": INT,
    "LocalServiceSocketPath": STR,
    "Mode": STR,
    "TransparentProxy": ANY,
    "Config": ANY,
    "Upstreams": ANY,
    "MeshGateway": ANY,
    "Expose": ANY,
}
CONNECT_SCHEMA: Final = {"Native": BOOL, "SidecarService": ANY}
SERVICE_SCHEMA: Final = {
    "Kind": STR,
    "ID": STR,
    "Name": STR,
    "Tags": STRLIST,
    "Address": STR,
    "TaggedAddresses": ANY,
    "Meta": MAP,
    "Port": INT,
    "SocketPath": STR,
    "Check": ANY,
    "Checks": ANY,
    "Weights": {"Passing": INT, "Warning": INT},
    "Token": STR,
    "EnableTagOverride": BOOL,
    "Proxy": PROXY_SCHEMA,
    "Connect": CONNECT_SCHEMA,
    "Locality": {"Region": STR, "Zone": STR},
    "Namespace": STR,
    "Partition": STR,
}
CHECK_UPDATE_SCHEMA: Final = {"Status": STR, "Output": STR}


# --------------------------------------------------------------------------- shapes


def agent_service(svc: dict[str, Any], datacenter: str) -> dict[str, Any]:
    """buildAgentService: a NodeService as api.AgentService."""
    weights = {"Passing": 1, "Warning": 1}
    w = svc.get("Weights")
    if w:
        if (w.get("Passing") or 0) > 0:
            weights["Passing"] = w["Passing"]
        weights["Warning"] = w.get("Warning") or 0
    kind = svc.get("Kind") or ""
    out: dict[str, Any] = {}
    if kind:
        out["Kind"] = kind
    out["ID"] = svc["ID"]
    out["Service"] = svc["Service"]
    out["Tags"] = list(svc.get("Tags") or [])
    out["Meta"] = dict(svc.get("Meta") or {})
    out["Port"] = svc.get("Port") or 0
    out["Address"] = svc.get("Address") or ""
    if svc.get("SocketPath"):
        out["SocketPath"] = svc["SocketPath"]
    if svc.get("TaggedAddresses"):
        out["TaggedAddresses"] = svc["TaggedAddresses"]
    out["Weights"] = weights
    out["EnableTagOverride"] = bool(svc.get("EnableTagOverride"))
    if kind == "connect-proxy" or kind in GATEWAY_KINDS:
        out["Proxy"] = dict(svc.get("Proxy") or {})
    connect = svc.get("Connect") or {}
    if connect.get("Native"):
        out["Connect"] = {"Native": True}
    out["Datacenter"] = datacenter
    if svc.get("Locality"):
        out["Locality"] = svc["Locality"]
    return out


def agent_check(check: dict[str, Any]) -> dict[str, Any]:
    """A local HealthCheck as /v1/agent/checks shows it (``ServiceTags`` never null;
    the Raft indexes of a check that only lives on the agent are 0)."""
    out = dict(check)
    out["ServiceTags"] = list(check.get("ServiceTags") or [])
    out.setdefault("CreateIndex", 0)
    out.setdefault("ModifyIndex", 0)
    return out


def content_hash(reply: dict[str, Any]) -> str:
    """A stable hash of an AgentService (Consul hashes the struct with hashstructure;
    the value differs, its use — compare and block — is the same)."""
    data = orjson.dumps(reply, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


# --------------------------------------------------------------------------- validation


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_bool(raw: str) -> bool | None:
    """strconv.ParseBool."""
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _validate_meta(kind: str, meta: dict[str, str]) -> None:
    """structs.ValidateServiceMetadata (keys in sorted order, so the error is stable)."""
    if len(meta) > META_MAX_PAIRS:
        raise HTTPError(
            400,
            f"Invalid Service Meta: Node metadata cannot contain more than {META_MAX_PAIRS} "
            "key/value pairs",
        )
    allowed = {"consul-wan-federation"} if kind == "mesh-gateway" else set()
    for key in sorted(meta):
        value = meta[key]
        err = ""
        if key == "":
            err = "Key cannot be blank"
        elif not _META_KEY.match(key):
            err = "Key contains invalid characters"
        elif len(key) > META_KEY_MAX:
            err = f"Key is too long (limit: {META_KEY_MAX} characters)"
        elif key.startswith("consul-") and key not in allowed:
            err = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > META_VALUE_MAX:
            err = f"Value is too long (limit: {META_VALUE_MAX} characters)"
        if err:
            raise HTTPError(
                400,
                f"Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value}'): {err}",
            )


def _validate_weights(weights: dict[str, int] | None) -> None:
    """structs.ValidateWeights."""
    if weights is None:
        return
    passing = weights.get("Passing", 0)
    warning = weights.get("Warning", 0)
    err = ""
    if passing < 1:
        err = "Passing must be greater than 0"
    elif warning < 0:
        err = "Warning must be greater or equal than 0"
    elif passing > 65535 or warning > 65535:
        err = "DNS Weight must be between 0 and 65535"
    if err:
        raise HTTPError(400, f"Invalid Weights: {err}")


def _is_any(address: str) -> bool:
    """ipaddr.IsAny."""
    a = address.strip("[]")
    try:
        return ipaddress.ip_address(a).is_unspecified
    except ValueError:
        return False


def _checks_of(body: dict[str, Any]) -> tuple[CheckType, ...]:
    """ServiceDefinition.CheckTypes: ``Check`` (skipped when empty) then ``Checks``,
    each validated, then the status rule of AgentRegisterService."""
    raw_checks = body.get("Checks")
    if raw_checks is not None and not isinstance(raw_checks, list):
        raise HTTPError(400, "Request decode failed: Checks: expected a list")
    try:
        out: list[CheckType] = []
        ct = parse_check(body.get("Check"), "Check")
        if not ct.empty():
            ct.validate()
            out.append(ct)
        for i, raw in enumerate(raw_checks or []):
            ct = parse_check(raw, f"Checks[{i}]")
            ct.validate()
            out.append(ct)
    except CheckDecodeError as e:
        raise HTTPError(400, f"Request decode failed: {e}") from None
    except CheckInvalid as e:
        raise HTTPError(400, f"Invalid check: {e}") from None
    for ct in out:
        if ct.status and ct.status not in STATUSES:
            raise HTTPError(400, "Status for checks must 'passing', 'warning', 'critical'")
    return tuple(out)


def service_definition(body: dict[str, Any]) -> ServiceDefinition:
    """AgentRegisterService's checks, in its order, on a body decoded with
    :data:`SERVICE_SCHEMA`; raises :class:`HTTPError` 400 with Consul's texts."""
    name = body.get("Name", "")
    if not name:
        raise HTTPError(400, "Missing service name")
    address = body.get("Address", "")
    if _is_any(address):
        raise HTTPError(400, "Invalid service address")
    tagged: dict[str, dict[str, Any]] = {}
    raw_tagged = body.get("TaggedAddresses")
    if raw_tagged is not None:
        if not isinstance(raw_tagged, dict):
            raise HTTPError(400, "Request decode failed: TaggedAddresses: expected an object")
        for k, v in raw_tagged.items():
            sa = canon(v, SERVICE_ADDRESS_SCHEMA, f"TaggedAddresses.{k}")
            tagged[str(k)] = {"Address": sa.get("Address", ""), "Port": sa.get("Port", 0)}
    weights = body.get("Weights")
    if weights is not None:
        weights = {"Passing": weights.get("Passing", 0), "Warning": weights.get("Warning", 0)}
    _validate_weights(weights)
    kind = body.get("Kind", "")
    meta = body.get("Meta") or {}
    _validate_meta(kind, meta)
    proxy = body.get("Proxy") or None
    port = body.get("Port", 0)
    socket_path = body.get("SocketPath", "")
    if kind == "connect-proxy":
        errors = []
        if not (proxy or {}).get("DestinationServiceName"):
            errors.append(
                "Proxy.DestinationServiceName must be non-empty for Connect proxy services"
            )
        if not port and not socket_path:
            errors.append("Port or SocketPath must be set for a Connect proxy")
        if errors:
            raise HTTPError(400, f"Validation failed: {multierror(errors)}")
    checks = _checks_of(body)
    connect = body.get("Connect") or None
    if connect is not None and connect.get("SidecarService") is not None:
        raise HTTPError(
            400,
            "Invalid SidecarService: sidecar_service registration is not supported by "
            "gossamer yet; register the proxy as a service of kind connect-proxy",
        )
    return ServiceDefinition(
        name=name,
        id=body.get("ID", ""),
        kind=kind,
        tags=tuple(body.get("Tags") or ()),
        address=address,
        tagged_addresses=tagged,
        meta=meta,
        port=port,
        socket_path=socket_path,
        weights=weights,
        enable_tag_override=body.get("EnableTagOverride", False),
        proxy=proxy,
        connect={"Native": True} if connect and connect.get("Native") else None,
        locality=body.get("Locality") or None,
        checks=checks,
    )


def _wait_s(request: Request) -> float:
    """parseWait for the hash-blocking endpoint: default 5 min, at most 10, plus up to
    wait/16 of jitter (added by the caller)."""
    text = request.query.get("wait", "")
    if not text:
        return DEFAULT_WAIT_S
    try:
        w = parse_duration(text)
    except ValueError:
        raise HTTPError(400, "Invalid wait time") from None
    if w < 0:
        raise HTTPError(400, "Invalid wait time")
    return min(w, MAX_WAIT_S) if w > 0 else DEFAULT_WAIT_S


# --------------------------------------------------------------------------- prometheus


def _prom_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name)


class _Snapshot(Collector):
    """One /v1/agent/metrics snapshot as Prometheus metric families."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._families("Gauges", "gauge")
        yield from self._families("Counters", "counter")
        yield from self._families("Samples", "summary")

    def _families(self, section: str, kind: str) -> Iterator[Metric]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for m in self._metrics.get(section) or ():
            groups.setdefault(m["Name"], []).append(m)
        for name, items in sorted(groups.items()):
            labels = sorted({k for m in items for k in (m.get("Labels") or {})})
            pname = _prom_name(name)
            doc = f"{name} ({section.lower()[:-1]})"
            fam: GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily
            if kind == "gauge":
                fam = GaugeMetricFamily(pname, doc, labels=labels)
            elif kind == "counter":
                fam = CounterMetricFamily(pname, doc, labels=labels)
            else:
                fam = SummaryMetricFamily(pname, doc, labels=labels)
            for m in items:
                values = [str((m.get("Labels") or {}).get(k, "")) for k in labels]
                if isinstance(fam, SummaryMetricFamily):
                    fam.add_metric(values, count_value=m["Count"], sum_value=m["Sum"])
                elif isinstance(fam, CounterMetricFamily):
                    fam.add_metric(values, m["Sum"])
                else:
                    fam.add_metric(values, m["Value"])
            yield fam


def prometheus_text(metrics: dict[str, Any]) -> bytes:
    """The snapshot in Prometheus' text format, from a registry of our own (never the
    process-wide default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))
    return generate_latest(registry)


def _wants_prometheus(request: Request) -> bool:
    """enablePrometheusOutput: ``?format=prometheus`` or an OpenMetrics Accept."""
    if request.query.get("format") == "prometheus":
        return True
    for part in request.headers.get("accept", "").split(","):
        fields = [f.strip() for f in part.split(";")]
        mime = fields[0].lower()
        if mime == "application/openmetrics-text":
            return True
        if mime == "text/plain" and len(fields) > 1 and fields[1] == "version=0.0.4":
            return True
    return False


# --------------------------------------------------------------------------- routes


def _empty() -> Response:
    return Response(raw=b"", content_type="text/plain; charset=utf-8")


def _filter(request: Request, value: dict[str, Any]) -> Any:
    text = request.query.get("filter", "")
    if not text:
        return value
    return filter_items(compile_filter_or_400(text), value)


_LOG_LEVELS: Final = ("trace", "debug", "info", "warn", "err", "error", "off")
"""The levels hclog accepts (LevelFromString), which AgentMonitor validates."""


def register(srv: HTTPServer) -> None:
    """Add the /v1/agent service, check, maintenance, metrics and reload routes."""

    def local() -> LocalAgent:
        la = getattr(srv.agent, "local", None)
        if la is None:
            raise HTTPError(500, "the local agent is not running")
        return la  # type: ignore[no-any-return]

    def datacenter() -> str:
        return str(srv.agent.config.datacenter)

    def fail(e: AgentError) -> HTTPError:
        return HTTPError(e.status, e.message)

    async def change(apply: Callable[[LocalAgent], object]) -> Response:
        """A write to the agent's local state, then Consul's syncChanges before answering
        (a failed sync is logged; anti-entropy retries it)."""
        la = local()
        try:
            apply(la)
        except AgentError as e:
            raise fail(e) from None
        await la.sync_changes()
        return _empty()

    async def services(request: Request, _: str) -> Any:
        la = local()
        dc = datacenter()
        out = {sid: agent_service(svc, dc) for sid, svc in la.services().items()}
        return _filter(request, out)

    async def service(request: Request, service_id: str) -> Any:
        la = local()
        dc = datacenter()
        want = request.query.get("hash", "")
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        if want:
            wait = _wait_s(request)
            deadline += wait + la.wait_jitter(wait / 16)
        else:
            _wait_s(request)
        while True:
            generation = la.generation
            svc = la.service(service_id)
            if svc is None:
                raise HTTPError(404, f"unknown service ID: {service_id}")
            reply = agent_service(svc, dc)
            h = content_hash(reply)
            shaped: dict[str, Any] = {}
            for k, v in reply.items():  # api.AgentService's field order
                shaped[k] = v
                if k == "EnableTagOverride":
                    shaped["ContentHash"] = h
            remaining = deadline - loop.time()
            if not want or want != h or remaining <= 0:
                return Response(shaped, headers={"X-Consul-ContentHash": h})
            await la.wait_change(generation, remaining)

    async def service_register(request: Request, _: str) -> Any:
        body = decode_body(request, SERVICE_SCHEMA)
        defn = service_definition(body)
        q = request.query
        replace = "replace-existing-checks" in q and q["replace-existing-checks"] in ("", "true")
        return await change(lambda la: la.add_service(defn, replace_existing_checks=replace))

    async def service_deregister(request: Request, service_id: str) -> Any:
        return await change(lambda la: la.remove_service(service_id))

    def enable_flag(request: Request) -> bool:
        if "enable" not in request.query:
            raise HTTPError(400, "Missing value for enable")
        raw = request.query["enable"]
        enable = _parse_bool(raw)
        if enable is None:
            raise HTTPError(400, f"Invalid value for enable: {_go_quote(raw)}")
        return enable

    async def service_maintenance(request: Request, service_id: str) -> Any:
        if not service_id:
            raise HTTPError(400, "Missing service ID")
        enable = enable_flag(request)
        la = local()
        try:
            if enable:
                la.enable_service_maintenance(service_id, request.query.get("reason", ""))
            else:
                la.disable_service_maintenance(service_id)
        except AgentError as e:
            raise HTTPError(404, e.message) from None
        await la.sync_changes()
        return _empty()

    async def node_maintenance(request: Request, _: str) -> Any:
        enable = enable_flag(request)
        la = local()
        if enable:
            la.enable_node_maintenance(request.query.get("reason", ""))
        else:
            la.disable_node_maintenance()
        await la.sync_changes()
        return _empty()

    async def checks(request: Request, _: str) -> Any:
        out = {cid: agent_check(c) for cid, c in local().checks().items()}
        return _filter(request, out)

    async def check_register(request: Request, _: str) -> Any:
        raw = read_json(request)
        try:
            ct = parse_check(raw, "body")
        except CheckDecodeError as e:
            raise HTTPError(400, f"Request decode failed: {e}") from None
        if not ct.name:
            raise HTTPError(400, "Missing check name")
        if ct.status and ct.status not in STATUSES:
            raise HTTPError(400, "Bad check status")
        try:
            ct.validate()
        except CheckInvalid as e:
            raise HTTPError(400, f"Invalid check: {e}") from None
        return await change(lambda la: la.add_check(ct))

    async def check_deregister(request: Request, check_id: str) -> Any:
        return await change(lambda la: la.remove_check(check_id))

    async def ttl(check_id: str, status: str, output: str) -> Any:
        return await change(lambda la: la.update_ttl(check_id, status, output))

    async def check_pass(request: Request, check_id: str) -> Any:
        return await ttl(check_id, "passing", request.query.get("note", ""))

    async def check_warn(request: Request, check_id: str) -> Any:
        return await ttl(check_id, "warning", request.query.get("note", ""))

    async def check_fail(request: Request, check_id: str) -> Any:
        return await ttl(check_id, "critical", request.query.get("note", ""))

    async def check_update(request: Request, check_id: str) -> Any:
        body = decode_body(request, CHECK_UPDATE_SCHEMA)
        status = body.get("Status", "")
        if status not in STATUSES:
            raise HTTPError(400, f"Invalid check status: '{status}'")
        return await ttl(check_id, status, body.get("Output", ""))

    async def metrics(request: Request, _: str) -> Any:
        snapshot = local().metrics()
        if _wants_prometheus(request):
            return Response(raw=prometheus_text(snapshot), content_type=PROMETHEUS_CONTENT_TYPE)
        return snapshot

    async def reload(request: Request, _: str) -> Any:
        log.info("reload requested: gossamer has no reloadable configuration yet")
        return _empty()

    srv.route("/v1/agent/services", {"GET": services})
    srv.route("/v1/agent/service/", {"GET": service})
    srv.route("/v1/agent/service/register", {"PUT": service_register})
    srv.route("/v1/agent/service/deregister/", {"PUT": service_deregister})
    srv.route("/v1/agent/service/maintenance/", {"PUT": service_maintenance})
    srv.route("/v1/agent/maintenance", {"PUT": node_maintenance})
    srv.route("/v1/agent/checks", {"GET": checks})
    srv.route("/v1/agent/check/register", {"PUT": check_register})
    srv.route("/v1/agent/check/deregister/", {"PUT": check_deregister})
    srv.route("/v1/agent/check/pass/", {"PUT": check_pass})
    srv.route("/v1/agent/check/warn/", {"PUT": check_warn})
    srv.route("/v1/agent/check/fail/", {"PUT": check_fail})
    srv.route("/v1/agent/check/update/", {"PUT": check_update})
    srv.route("/v1/agent/metrics", {"GET": metrics})
    srv.route("/v1/agent/reload", {"PUT": reload})

    async def acl_disabled(request: Request, _: str) -> Any:
        """Consul with ACLs off answers every token and ACL endpoint this way
        (agent/acl_endpoint.go aclDisabled); ACLs arrive with their own issue."""
        raise HTTPError(401, "ACL support disabled")

    async def monitor(request: Request, _: str) -> Any:
        """Consul's AgentMonitor checks the level before it streams; streaming the agent's
        log over HTTP is not built yet, and says so rather than answering 404."""
        level = request.query.get("loglevel", "").strip() or "INFO"
        if level.lower() not in _LOG_LEVELS:
            raise HTTPError(400, f"Unknown log level: {level}")
        raise HTTPError(
            500, "Streaming the agent's log (agent/monitor) is not supported by gossamer yet"
        )

    srv.route("/v1/agent/token/", {"PUT": acl_disabled})
    srv.route(
        "/v1/acl/",
        {"GET": acl_disabled, "PUT": acl_disabled, "POST": acl_disabled, "DELETE": acl_disabled},
    )
    srv.route("/v1/agent/monitor", {"GET": monitor})
