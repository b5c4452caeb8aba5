"""The agent's own services and checks, and anti-entropy with the catalog (sans-IO).

What this copies from Consul (hashicorp/consul):

* ``agent/local/state.go`` — :class:`LocalState` is ``local.State``: the services and
  checks this agent owns, each with ``InSync``/``Deleted`` flags and a version;
  ``updateSyncState`` (compare with the catalog's view of this node: local entries the
  catalog lacks or has differently are out of sync; catalog entries the agent does not
  know are marked deleted — except the ``serfHealth`` check and the ``consul`` service,
  which the servers own); ``SyncChanges`` (one register per out-of-sync service, with its
  out-of-sync checks riding along; one register per remaining check; a deregister per
  deleted entry; node info last, only if nothing else carried it); and ``UpdateCheck``'s
  rule that a change of *output only* is written back at most every
  ``check_update_interval`` (5 min: after ``interval/2 + stagger(interval)``), while a
  change of status is synced at once.
* ``agent/agent.go`` — ``addServiceInternal`` (service ID defaults to the name; the
  checks of a service are ``service:<id>``, or ``service:<id>:<n>`` (1-based) when there
  are several; a check's name defaults to ``Service '<name>' check``; default tagged
  addresses ``lan_ipv4``/``wan_ipv4`` (or ``_ipv6``) from the service address; a
  re-registered check keeps its status and output; ``replace-existing-checks``),
  ``AddCheck`` (a check naming an unknown service is refused), ``RemoveService`` (its
  checks go with it) and the maintenance checks ``_node_maintenance`` and
  ``_service_maintenance:<id>`` (critical, ``Notes`` the reason or Consul's default
  text; ``agent/structs/structs.go`` ``NodeMaint``/``ServiceMaintPrefix``).
* ``agent/ae/ae.go`` — the full-sync period: ``interval + stagger(scale * interval)``
  where ``scale`` doubles each time the cluster doubles past 128 nodes
  (:func:`full_sync_delay`), and a failed full sync is retried after ``15 s +
  stagger(15 s)``.

The sync itself is two steps, so the driver can do the I/O in between:

    state.update_sync_state(node_services, node_checks)   # full sync only
    for op in state.sync_changes(now):                      # what to write, in order
        write op.command; then state.sync_succeeded(op) or stop at the first failure

Rules:

1. Entries are dicts in Consul's JSON shapes (``structs.NodeService``,
   ``structs.HealthCheck``) and are replaced, never mutated, so readers may keep them.
2. Every change bumps the entry's version; a sync only marks an entry in sync if its
   version did not move while the write was under way (Consul's ``currentVersion``).
3. Iteration is in sorted ID order, so the commands of a sync are deterministic.
4. Timers (the deferred output syncs) follow the core contract: ``next_deadline`` and
   ``handle(now, TimerExpired())``; ``take_effects`` yields :class:`SyncRequested`
   whenever something needs syncing.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from catalog import commands as C
from catalog.checks import CRITICAL, CheckType
from catalog.store import SERF_CHECK_ID
from gossamer.core import Effect, Event, TimerExpired, TimerWheel, counting
from gossamer.duration import format_duration

__all__ = [
    "AE_INTERVAL_S",
    "CHECK_UPDATE_INTERVAL_S",
    "CONSUL_SERVICE_ID",
    "DEFAULT_NODE_MAINT_REASON",
    "DEFAULT_SERVICE_MAINT_REASON",
    "NODE_MAINT_CHECK_ID",
    "RETRY_FAIL_INTERVAL_S",
    "SERVICE_MAINT_PREFIX",
    "AgentError",
    "LocalConfig",
    "LocalState",
    "RegisteredChecks",
    "ServiceDefinition",
    "SyncOp",
    "SyncRequested",
    "full_sync_delay",
    "random_stagger",
    "retry_fail_delay",
    "scale_factor",
]

NODE_MAINT_CHECK_ID: Final = "_node_maintenance"
"""structs.NodeMaint."""
SERVICE_MAINT_PREFIX: Final = "_service_maintenance:"
"""structs.ServiceMaintPrefix."""
DEFAULT_NODE_MAINT_REASON: Final = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
DEFAULT_SERVICE_MAINT_REASON: Final = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
CONSUL_SERVICE_ID: Final = "consul"
"""structs.ConsulServiceID: the servers' own service, never deregistered by an agent."""
CHECK_UPDATE_INTERVAL_S: Final = 300.0
"""Consul's default ``check_update_interval`` (5 min)."""
AE_INTERVAL_S: Final = 60.0
"""Consul's non-user ``ae_interval`` (1 min)."""
RETRY_FAIL_INTERVAL_S: Final = 15.0
"""ae.go retryFailIntv."""
SERVER_UP_INTERVAL_S: Final = 3.0
"""ae.go serverUpIntv: the most a full sync waits after a server appeared."""
SCALE_THRESHOLD: Final = 128
"""ae.go scaleThreshold."""

_INDEX_KEYS: Final = ("CreateIndex", "ModifyIndex")
_CHECK_COMPARED: Final = ("Name", "Status", "Notes", "Output", "ServiceID", "Type")
"""HealthCheck.IsSame's fields that the agent, not the server, decides (ServiceName and
ServiceTags are filled in by the server from the service; the store keeps Interval,
Timeout and Definition as given, and they are compared too)."""


class AgentError(Exception):
    """An agent API call refused, with Consul's HTTP status and plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class SyncRequested(Effect):
    """Something is out of sync: the driver should run a partial sync soon."""


# --------------------------------------------------------------------------- AE timing


def scale_factor(nodes: int) -> int:
    """ae.go scaleFactor: 1 up to 128 nodes, then +1 each time the cluster doubles."""
    if nodes <= SCALE_THRESHOLD:
        return 1
    return int(math.ceil(math.log2(nodes) - math.log2(SCALE_THRESHOLD)) + 1)


def random_stagger(rng: random.Random, interval_s: float) -> float:
    """lib.RandomStagger: uniform in [0, interval)."""
    return rng.random() * interval_s if interval_s > 0 else 0.0


def full_sync_delay(rng: random.Random, nodes: int, interval_s: float = AE_INTERVAL_S) -> float:
    """ae.go: the next full sync comes ``Interval + Jitter(Interval)`` after this one,
    the jitter scaled with the cluster size."""
    return interval_s + random_stagger(rng, scale_factor(nodes) * interval_s)


def retry_fail_delay(rng: random.Random, nodes: int) -> float:
    """ae.go retryFullSync: ``retryFailInterval + Jitter(retryFailInterval)``."""
    return RETRY_FAIL_INTERVAL_S + random_stagger(rng, scale_factor(nodes) * RETRY_FAIL_INTERVAL_S)


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class LocalConfig:
    node_name: str
    node_id: str
    address: str
    """The advertised address the node is registered with."""
    datacenter: str = "dc1"
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    node_meta: Mapping[str, str] = field(default_factory=dict)
    check_update_interval_s: float = CHECK_UPDATE_INTERVAL_S
    """0 syncs output changes at once, as Consul's ``check_update_interval = "0s"``."""


@dataclass(frozen=True)
class ServiceDefinition:
    """structs.ServiceDefinition, decoded (catalog/http_agent.py does the JSON)."""

    name: str
    id: str = ""
    kind: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    tagged_addresses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """name -> {"Address", "Port"} (structs.ServiceAddress)."""
    meta: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    socket_path: str = ""
    weights: Mapping[str, int] | None = None
    enable_tag_override: bool = False
    proxy: Mapping[str, Any] | None = None
    connect: Mapping[str, Any] | None = None
    locality: Mapping[str, Any] | None = None
    checks: tuple[CheckType, ...] = ()

    def node_service(self) -> dict[str, Any]:
        """ServiceDefinition.NodeService plus the defaults addServiceLocked and
        addServiceInternal fill in (ID, Weights, tagged addresses)."""
        tagged = {
            k: {"Address": v["Address"], "Port": v["Port"]}
            for k, v in self.tagged_addresses.items()
        }
        try:
            ip = ipaddress.ip_address(self.address) if self.address else None
        except ValueError:
            ip = None
        if ip is not None:
            suffix = "ipv4" if ip.version == 4 else "ipv6"
            for prefix in ("lan", "wan"):
                tagged.setdefault(
                    f"{prefix}_{suffix}", {"Address": self.address, "Port": self.port}
                )
        weights = dict(self.weights) if self.weights is not None else {"Passing": 1, "Warning": 1}
        svc: dict[str, Any] = {
            "Kind": self.kind,
            "ID": self.id or self.name,
            "Service": self.name,
            "Tags": list(self.tags),
            "Address": self.address,
            "Meta": dict(self.meta),
            "Port": self.port,
            "Weights": {"Passing": weights.get("Passing", 0), "Warning": weights.get("Warning", 0)},
            "EnableTagOverride": self.enable_tag_override,
        }
        if tagged:
            svc["TaggedAddresses"] = tagged
        if self.socket_path:
            svc["SocketPath"] = self.socket_path
        if self.proxy:
            svc["Proxy"] = dict(self.proxy)
        if self.connect:
            svc["Connect"] = dict(self.connect)
        if self.locality:
            svc["Locality"] = dict(self.locality)
        return svc


@dataclass(frozen=True)
class RegisteredChecks:
    """What a registration did to the checks: the driver (re)starts their runners."""

    added: list[tuple[dict[str, Any], CheckType]]
    removed: list[str]


@dataclass(frozen=True)
class SyncOp:
    """One write of a sync: ``command`` for the catalog, and what it brings in sync."""

    kind: str
    """``service``, ``check``, ``node``, ``delete-service`` or ``delete-check``."""
    id: str
    command: dict[str, Any]
    versions: tuple[tuple[str, str, int], ...]
    """(``service``|``check``, ID, version) of each entry this write carries."""


class _Service:
    __slots__ = ("deleted", "in_sync", "service", "version")

    def __init__(self, service: dict[str, Any] | None, deleted: bool = False) -> None:
        self.service = service
        self.in_sync = False
        self.deleted = deleted
        self.version = 0


class _Check:
    __slots__ = ("check", "defer_at", "deleted", "in_sync", "version")

    def __init__(self, check: dict[str, Any] | None, deleted: bool = False) -> None:
        self.check = check
        self.in_sync = False
        self.deleted = deleted
        self.version = 0
        self.defer_at: float | None = None


def health_check(
    node: str,
    check_id: str,
    name: str,
    *,
    status: str = CRITICAL,
    notes: str = "",
    output: str = "",
    service: dict[str, Any] | None = None,
    type_: str = "",
    interval: str = "",
    timeout: str = "",
) -> dict[str, Any]:
    """A structs.HealthCheck in the shape the store keeps."""
    return {
        "Node": node,
        "CheckID": check_id,
        "Name": name,
        "Status": status,
        "Notes": notes,
        "Output": output,
        "ServiceID": service["ID"] if service else "",
        "ServiceName": service["Service"] if service else "",
        "ServiceTags": list(service.get("Tags") or []) if service else [],
        "Type": type_,
        "Interval": interval,
        "Timeout": timeout,
        "ExposedPort": 0,
        "Definition": {},
    }


def same_service(local: Mapping[str, Any], remote: Mapping[str, Any]) -> bool:
    """NodeService.IsSame: every field but the Raft indexes."""
    keys = (set(local) | set(remote)) - set(_INDEX_KEYS)
    return all(local.get(k) == remote.get(k) for k in sorted(keys))


def same_check(local: Mapping[str, Any], remote: Mapping[str, Any], ignore_output: bool) -> bool:
    """HealthCheck.IsSame on the fields the agent owns."""
    for k in (*_CHECK_COMPARED, "Interval", "Timeout"):
        if ignore_output and k == "Output":
            continue
        if (local.get(k) or "") != (remote.get(k) or ""):
            return False
    return True


# --------------------------------------------------------------------------- the state


class LocalState:
    """See the module docstring."""

    def __init__(self, config: LocalConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._services: dict[str, _Service] = {}
        self._checks: dict[str, _Check] = {}
        self.node_info_in_sync = False
        self._wheel = TimerWheel()
        self._effects: list[Effect] = []
        self._now = -math.inf
        self.generation = 0
        """Bumped on every change a reader of /v1/agent/* could see."""
        self.stats: dict[str, int] = {}

    # ------------------------------------------------------------------ the contract

    def handle(self, now: float, event: Event) -> None:
        if not isinstance(event, TimerExpired):
            raise TypeError(f"LocalState cannot handle {type(event).__name__}")
        self._advance(now)

    def next_deadline(self) -> float | None:
        return self._wheel.next_deadline()

    def take_effects(self) -> list[Effect]:
        out, self._effects = self._effects, []
        return out

    def _advance(self, now: float) -> None:
        assert now >= self._now, f"time went backwards: {now} < {self._now}"
        self._now = now
        self._wheel.run_due(now)

    def _trigger(self) -> None:
        self.generation += 1
        if not any(isinstance(e, SyncRequested) for e in self._effects):
            self._effects.append(SyncRequested())

    # ------------------------------------------------------------------ reads

    def service(self, service_id: str) -> dict[str, Any] | None:
        s = self._services.get(service_id)
        return None if s is None or s.deleted else s.service

    def services(self) -> dict[str, dict[str, Any]]:
        return {
            sid: s.service
            for sid, s in sorted(self._services.items())
            if not s.deleted and s.service is not None
        }

    def check(self, check_id: str) -> dict[str, Any] | None:
        c = self._checks.get(check_id)
        return None if c is None or c.deleted else c.check

    def checks(self) -> dict[str, dict[str, Any]]:
        return {
            cid: c.check
            for cid, c in sorted(self._checks.items())
            if not c.deleted and c.check is not None
        }

    def checks_for_service(self, service_id: str) -> list[str]:
        return [cid for cid, c in self.checks().items() if c["ServiceID"] == service_id]

    def in_sync(self, kind: str, entry_id: str) -> bool:
        """Whether a service or check is in sync (for tests and debugging)."""
        table: Mapping[str, _Service | _Check] = (
            self._services if kind == "service" else self._checks
        )
        e = table.get(entry_id)
        return e is not None and e.in_sync

    def counts(self) -> dict[str, str]:
        """local.State.Stats, for /v1/agent/self."""
        return {"services": str(len(self.services())), "checks": str(len(self.checks()))}

    # ------------------------------------------------------------------ local.State writes

    def add_service(self, service: dict[str, Any]) -> None:
        """local.State.AddService: the service (its ID defaulting to its name)."""
        if not service.get("ID"):
            service = {**service, "ID": service["Service"]}
        sid = service["ID"]
        old = self._services.get(sid)
        s = _Service(service)
        s.version = (old.version if old is not None else 0) + 1
        self._services[sid] = s
        self._trigger()

    def remove_service(self, service_id: str) -> bool:
        s = self._services.get(service_id)
        if s is None or s.deleted:
            return False
        s.deleted = True
        s.in_sync = False
        s.version += 1
        self._trigger()
        return True

    def add_check(self, check: dict[str, Any]) -> None:
        """local.State.AddCheck: the node name is forced to ours."""
        sid = check.get("ServiceID") or ""
        if sid and self.service(sid) is None:
            raise AgentError(
                500, f'Check "{check["CheckID"]}" refers to non-existent service "{sid}"'
            )
        check = {**check, "Node": self.config.node_name}
        cid = check["CheckID"]
        old = self._checks.get(cid)
        c = _Check(check)
        c.version = (old.version if old is not None else 0) + 1
        self._wheel.cancel(("defer", cid))
        self._checks[cid] = c
        self._trigger()

    def remove_check(self, check_id: str) -> bool:
        c = self._checks.get(check_id)
        if c is None or c.deleted:
            return False
        c.deleted = True
        c.in_sync = False
        c.version += 1
        c.defer_at = None
        self._wheel.cancel(("defer", check_id))
        self._trigger()
        return True

    def update_check(self, now: float, check_id: str, status: str, output: str) -> None:
        """local.State.UpdateCheck: a status change syncs at once; an output change alone
        is kept locally and written back after ``interval/2 + stagger(interval)``."""
        self._advance(now)
        c = self._checks.get(check_id)
        if c is None or c.deleted or c.check is None:
            return
        cur = c.check
        if cur["Status"] == status and cur["Output"] == output:
            return
        interval = self.config.check_update_interval_s
        if interval > 0 and cur["Status"] == status:
            c.check = {**cur, "Output": output}
            self.generation += 1
            if c.defer_at is None:
                c.defer_at = now + interval / 2 + random_stagger(self._rng, interval)
                self._wheel.set(("defer", check_id), c.defer_at, self._deferred(check_id, c))
                counting(self.stats, "output_syncs_deferred")
            return
        c.check = {**cur, "Status": status, "Output": output}
        c.in_sync = False
        c.version += 1
        self._trigger()

    def _deferred(self, check_id: str, c: _Check) -> Any:
        def fire(now: float) -> None:
            if self._checks.get(check_id) is not c:
                return
            c.defer_at = None
            if c.deleted:
                return
            c.in_sync = False
            c.version += 1
            self._trigger()

        return fire

    # ------------------------------------------------------------------ agent.go on top

    def register_service(
        self, defn: ServiceDefinition, *, replace_existing_checks: bool = False
    ) -> RegisteredChecks:
        """Agent.addServiceInternal: the service and the checks of its definition."""
        svc = defn.node_service()
        sid = svc["ID"]
        keep: dict[str, bool] = dict.fromkeys(self.checks_for_service(sid), False)
        snapshot = self.checks()
        added: list[tuple[dict[str, Any], CheckType]] = []
        n = len(defn.checks)
        for i, ct in enumerate(defn.checks):
            cid = ct.check_id or (f"service:{sid}:{i + 1}" if n > 1 else f"service:{sid}")
            keep[cid] = True
            hc = health_check(
                self.config.node_name,
                cid,
                ct.name or f"Service '{svc['Service']}' check",
                status=ct.status or CRITICAL,
                notes=ct.notes,
                service=svc,
                type_=ct.type_name,
                interval=ct.interval_text,
                timeout=ct.timeout_text,
            )
            prev = snapshot.get(cid)
            if prev is not None:
                hc["Status"] = prev["Status"]
                hc["Output"] = prev["Output"]
            added.append((hc, ct))
        self.add_service(svc)
        for hc, _ in added:
            self.add_check(hc)
        removed: list[str] = []
        if replace_existing_checks:
            for cid, kept in keep.items():
                if not kept and self.remove_check(cid):
                    removed.append(cid)
        return RegisteredChecks(added, removed)

    def register_check(self, ct: CheckType) -> dict[str, Any]:
        """Agent.AddCheck for /v1/agent/check/register (CheckDefinition.HealthCheck):
        the ID defaults to the name; a check that already exists keeps its status and
        output, so re-registering does not flap."""
        service = None
        if ct.service_id:
            service = self.service(ct.service_id)
            if service is None:
                raise AgentError(404, f'ServiceID "{ct.service_id}" does not exist')
        hc = health_check(
            self.config.node_name,
            ct.check_id or ct.name,
            ct.name,
            status=ct.status or CRITICAL,
            notes=ct.notes,
            service=service,
            type_=ct.type_name,
            interval=format_duration(ct.interval_ns),
            timeout=format_duration(ct.timeout_ns),
        )
        if not hc["CheckID"]:
            raise AgentError(500, "CheckID missing")
        prev = self.check(hc["CheckID"])
        if prev is not None:
            hc["Status"] = prev["Status"]
            hc["Output"] = prev["Output"]
        self.add_check(hc)
        return hc

    def deregister_service(self, service_id: str) -> list[str]:
        """Agent.RemoveService: the service and every check on it; returns the check
        IDs removed. An unknown service removes nothing (Consul logs and answers 200)."""
        if not service_id:
            raise AgentError(500, "ServiceID missing")
        if self.service(service_id) is None:
            return []
        checks = self.checks_for_service(service_id)
        self.remove_service(service_id)
        for cid in checks:
            self.remove_check(cid)
        return checks

    def deregister_check(self, check_id: str) -> bool:
        if not check_id:
            raise AgentError(500, "CheckID missing")
        return self.remove_check(check_id)

    def enable_service_maintenance(self, service_id: str, reason: str) -> bool:
        """Agent.EnableServiceMaintenance; False when it already was."""
        svc = self.service(service_id)
        if svc is None:
            raise AgentError(404, f'No service registered with ID "{service_id}"')
        cid = SERVICE_MAINT_PREFIX + service_id
        if self.check(cid) is not None:
            return False
        self.add_check(
            health_check(
                self.config.node_name,
                cid,
                "Service Maintenance Mode",
                notes=reason or DEFAULT_SERVICE_MAINT_REASON,
                service=svc,
                type_="maintenance",
            )
        )
        return True

    def disable_service_maintenance(self, service_id: str) -> bool:
        if self.service(service_id) is None:
            raise AgentError(404, f'No service registered with ID "{service_id}"')
        return self.remove_check(SERVICE_MAINT_PREFIX + service_id)

    def enable_node_maintenance(self, reason: str) -> bool:
        if self.check(NODE_MAINT_CHECK_ID) is not None:
            return False
        self.add_check(
            health_check(
                self.config.node_name,
                NODE_MAINT_CHECK_ID,
                "Node Maintenance Mode",
                notes=reason or DEFAULT_NODE_MAINT_REASON,
                type_="maintenance",
            )
        )
        return True

    def disable_node_maintenance(self) -> bool:
        return self.remove_check(NODE_MAINT_CHECK_ID)

    # ------------------------------------------------------------------ anti-entropy

    def update_sync_state(
        self, node_services: Mapping[str, Any] | None, node_checks: Sequence[Mapping[str, Any]]
    ) -> None:
        """local.State.updateSyncState against the catalog's view of this node:
        ``node_services`` as ``StateStore.node_services(node).value`` (``{"Node",
        "Services"}`` or None) and ``node_checks`` as ``StateStore.node_checks``."""
        cfg = self.config
        node = node_services.get("Node") if node_services else None
        if (
            node is None
            or node.get("ID") != cfg.node_id
            or node.get("Address") != cfg.address
            or dict(node.get("TaggedAddresses") or {}) != dict(cfg.tagged_addresses)
            or dict(node.get("Meta") or {}) != dict(cfg.node_meta)
        ):
            self.node_info_in_sync = False
        remote_services: dict[str, Mapping[str, Any]] = {}
        for svc in (node_services or {}).get("Services") or ():
            remote_services[svc["ID"]] = svc
        remote_checks = {c["CheckID"]: c for c in node_checks}

        for sid, s in self._services.items():
            if sid not in remote_services:
                s.in_sync = False
        for sid, rs in sorted(remote_services.items()):
            ls = self._services.get(sid)
            if ls is None:
                if sid == CONSUL_SERVICE_ID:
                    continue
                self._services[sid] = _Service(None, deleted=True)
                counting(self.stats, "foreign_services")
                continue
            if ls.deleted or ls.service is None:
                continue
            if ls.service.get("EnableTagOverride"):
                remote_tags = list(rs.get("Tags") or [])
                if ls.service.get("Tags") != remote_tags:
                    ls.service = {**ls.service, "Tags": remote_tags}
                    self.generation += 1
            ls.in_sync = same_service(ls.service, rs)

        for cid, c in self._checks.items():
            if cid not in remote_checks:
                c.in_sync = False
        for cid, rc in sorted(remote_checks.items()):
            lc = self._checks.get(cid)
            if lc is None:
                if cid == SERF_CHECK_ID:
                    continue
                self._checks[cid] = _Check(None, deleted=True)
                counting(self.stats, "foreign_checks")
                continue
            if lc.deleted or lc.check is None:
                continue
            # a deferred output sync is pending: the timer will sync the output, so do
            # not count it as a difference now (Consul's DeferCheck rule)
            ignore_output = self.config.check_update_interval_s > 0 and lc.defer_at is not None
            lc.in_sync = same_check(lc.check, rc, ignore_output)

    def sync_changes(self, now: float) -> list[SyncOp]:
        """local.State.SyncChanges: the writes that bring the catalog in line with what
        is marked out of sync or deleted, in order. Write them one by one and report each
        with :meth:`sync_succeeded`; stop at the first failure, as Consul does."""
        self._advance(now)
        ops: list[SyncOp] = []
        carried: set[str] = set()
        for sid, s in sorted(self._services.items()):
            if s.deleted:
                ops.append(
                    SyncOp(
                        "delete-service",
                        sid,
                        C.deregister(0.0, self.config.node_name, service_id=sid),
                        (("service", sid, s.version),),
                    )
                )
            elif not s.in_sync and s.service is not None:
                riders = [
                    (cid, c)
                    for cid, c in sorted(self._checks.items())
                    if not c.deleted
                    and not c.in_sync
                    and c.check is not None
                    and c.check["ServiceID"] == sid
                ]
                versions = [("service", sid, s.version)]
                for cid, c in riders:
                    self._undefer(cid, c)
                    versions.append(("check", cid, c.version))
                    carried.add(cid)
                ops.append(
                    SyncOp(
                        "service",
                        sid,
                        self._register(s.service, [c.check for _, c in riders if c.check]),
                        tuple(versions),
                    )
                )
        for cid, c in sorted(self._checks.items()):
            if c.deleted:
                ops.append(
                    SyncOp(
                        "delete-check",
                        cid,
                        C.deregister(0.0, self.config.node_name, check_id=cid),
                        (("check", cid, c.version),),
                    )
                )
            elif not c.in_sync and c.check is not None and cid not in carried:
                self._undefer(cid, c)
                svc = self.service(c.check["ServiceID"]) if c.check["ServiceID"] else None
                versions = [("check", cid, c.version)]
                ops.append(SyncOp("check", cid, self._register(svc, [c.check]), tuple(versions)))
        if not self.node_info_in_sync and not any(op.kind in ("service", "check") for op in ops):
            ops.append(SyncOp("node", self.config.node_name, self._register(None, []), ()))
        return ops

    def _undefer(self, check_id: str, c: _Check) -> None:
        """This sync carries the latest output: no deferred write-back is needed."""
        if c.defer_at is not None:
            c.defer_at = None
            self._wheel.cancel(("defer", check_id))

    def _register(
        self, service: dict[str, Any] | None, checks: list[dict[str, Any]]
    ) -> dict[str, Any]:
        cfg = self.config
        return C.register(
            0.0,  # the server stamps Now
            cfg.node_name,
            cfg.address,
            node_id=cfg.node_id,
            datacenter=cfg.datacenter,
            tagged_addresses=dict(cfg.tagged_addresses),
            node_meta=dict(cfg.node_meta),
            service=service,
            checks=checks,
        )

    def sync_succeeded(self, op: SyncOp) -> None:
        """The catalog took ``op``: what it carried is in sync unless it changed while
        the write was under way; deleted entries are forgotten."""
        if op.kind in ("service", "check", "node"):
            self.node_info_in_sync = True
        for kind, entry_id, version in op.versions:
            table: dict[str, Any] = self._services if kind == "service" else self._checks
            e = table.get(entry_id)
            if e is None or e.version != version:
                continue
            if e.deleted:
                del table[entry_id]
            else:
                e.in_sync = True
        counting(self.stats, f"synced_{op.kind}")

    def diff(
        self,
        now: float,
        node_services: Mapping[str, Any] | None,
        node_checks: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """A full anti-entropy pass as commands: :meth:`update_sync_state` then the
        commands of :meth:`sync_changes` (nothing is marked in sync until
        :meth:`sync_succeeded`)."""
        self.update_sync_state(node_services, node_checks)
        return [op.command for op in self.sync_changes(now)]
