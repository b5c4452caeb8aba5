"""Health-check definitions and the sans-IO check scheduler of the local agent.

What this copies from Consul (hashicorp/consul):

* ``agent/structs/check_type.go`` — the check definition (:class:`CheckType`), its JSON
  spellings (``args``/``ScriptArgs``, snake_case aliases, durations as Go strings or
  nanoseconds), ``Validate`` with Consul's messages and ``Type()``.
* ``agent/structs/check_definition.go`` — a check registered on its own (``ID``,
  ``ServiceID``); :func:`parse_check` reads both shapes.
* ``agent/checks/check.go`` — what the runners report: ``CheckTTL`` (expires to
  ``critical`` with ``TTL expired``, keeps the last output, truncates updates to
  ``OutputMaxSize``), ``CheckHTTP``/``CheckTCP``/``CheckMonitor`` (run every interval after
  a random initial stagger of up to one interval, never two at once for one check), and
  ``StatusHandler`` (``SuccessBeforePassing``, ``FailuresBeforeWarning``,
  ``FailuresBeforeCritical``; counters start at their thresholds so the first result
  counts at once).
* ``agent/agent.go`` ``addCheck`` — intervals under ``MinInterval`` (1 s) are raised to it
  with a warning; ``DeregisterCriticalServiceAfter`` under
  ``check_deregister_interval_min`` (1 min) likewise; ``reapServicesInternal`` — a
  service whose check has been critical longer than that is deregistered.

The scheduler's contract is the project's core contract (``gossamer/core.py``):

    scheduler.handle(now, event)   # CheckAdded, CheckRemoved, ProbeFinished, TTLUpdated,
                                   # TimerExpired
    scheduler.next_deadline()
    scheduler.take_effects()       # RunProbe, CheckStatusChanged, DeregisterService

Rules:

1. Statuses are exactly ``passing``, ``warning`` and ``critical``.
2. A probe check has at most one probe in flight; the next run is armed ``interval``
   after the previous one finished (Consul's ``next = time.After(c.Interval)`` after a
   synchronous ``check()``). Each run has an id; a ``ProbeFinished`` for a run that is not
   the check's current one (the check was removed or re-added meanwhile) is dropped and
   counted.
3. ``CheckStatusChanged`` is emitted for every result the thresholds let through whose
   status or output differs from the last one reported; the local state decides what to
   sync and when (``catalog/local.py``).
4. The reap clock starts at the first *reported* critical result, not at registration
   (Consul's ``CheckState.CriticalTime`` is set by ``UpdateCheck``), and stops at the
   first non-critical one. Unlike Consul, which looks every ``check_reap_interval``
   (30 s), the deregistration is due exactly when the timeout passes.

The driver (``catalog/localagent.py``) carries out ``RunProbe`` with ``catalog/probes.py``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gossamer.core import Effect, Event, TimerExpired, TimerWheel, counting
from gossamer.duration import format_duration, parse_duration_ns

__all__ = [
    "CRITICAL",
    "DEFAULT_BUF_SIZE",
    "MIN_INTERVAL_S",
    "PASSING",
    "SCRIPTS_DISABLED",
    "STATUSES",
    "WARNING",
    "CheckAdded",
    "CheckDecodeError",
    "CheckInvalid",
    "CheckRemoved",
    "CheckScheduler",
    "CheckStatusChanged",
    "CheckType",
    "DeregisterService",
    "ProbeFinished",
    "RunProbe",
    "SchedulerConfig",
    "TTLUpdated",
    "parse_check",
    "truncate_output",
]

log = logging.getLogger("gossamer.agent.checks")

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
STATUSES: Final = (PASSING, WARNING, CRITICAL)
"""api.HealthPassing/HealthWarning/HealthCritical; structs.ValidStatus accepts only these."""

MIN_INTERVAL_S: Final = 1.0
"""checks.MinInterval: "Do not allow for a interval below this value. Otherwise we risk
fork bombing a system."""
DEFAULT_BUF_SIZE: Final = 4 * 1024
"""checks.DefaultBufSize: the most output kept from one check run, in bytes."""
DEFAULT_HTTP_TIMEOUT_S: Final = 10.0
DEFAULT_TCP_TIMEOUT_S: Final = 10.0
DEFAULT_SCRIPT_TIMEOUT_S: Final = 30.0
DEREGISTER_INTERVAL_MIN_S: Final = 60.0
"""Consul's non-user setting ``check_deregister_interval_min = "1m"``."""

SCRIPTS_DISABLED: Final = (
    "Scripts are disabled on this agent from remote calls; to enable, configure "
    "'enable_script_checks' to true"
)
"""agent.go addCheck, for a script check that arrives over the HTTP API."""

_NS_PER_S: Final = 1_000_000_000


class CheckDecodeError(ValueError):
    """The check's JSON does not decode (a wrong type, a bad duration): Consul answers
    ``Request decode failed: <this>``."""


class CheckInvalid(ValueError):
    """CheckType.Validate refused the check; the message is Consul's."""


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class CheckType:
    """structs.CheckType (with CheckDefinition's ``ID``/``ServiceID`` folded in).

    Durations are Go ``time.Duration`` values in nanoseconds, as Consul keeps them, so the
    ``Interval``/``Timeout`` strings it reports (``Duration.String()``) come out the same.
    """

    check_id: str = ""
    name: str = ""
    notes: str = ""
    status: str = ""
    service_id: str = ""
    script_args: tuple[str, ...] = ()
    http: str = ""
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    method: str = ""
    body: str = ""
    disable_redirects: bool = False
    tcp: str = ""
    tcp_use_tls: bool = False
    udp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    h2ping: str = ""
    os_service: str = ""
    alias_node: str = ""
    alias_service: str = ""
    docker_container_id: str = ""
    shell: str = ""
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    interval_ns: int = 0
    timeout_ns: int = 0
    ttl_ns: int = 0
    deregister_critical_service_after_ns: int = 0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    output_max_size: int = 0

    # ---- Consul's predicates

    @property
    def is_script(self) -> bool:
        return len(self.script_args) > 0

    @property
    def is_alias(self) -> bool:
        return bool(self.alias_node or self.alias_service)

    @property
    def is_ttl(self) -> bool:
        return self.ttl_ns > 0

    def empty(self) -> bool:
        """CheckType.Empty: nothing set (a service's ``"Check": {}``)."""
        return self == CheckType()

    @property
    def type_name(self) -> str:
        """CheckType.Type(): what the catalog's ``Type`` field says."""
        iv = self.interval_ns > 0
        if self.grpc and iv:
            return "grpc"
        if self.http and iv:
            return "http"
        if self.is_ttl:
            return "ttl"
        if self.tcp and iv:
            return "tcp"
        if self.udp and iv:
            return "udp"
        if self.is_alias:
            return "alias"
        if self.is_script and self.docker_container_id and iv:
            return "docker"
        if self.is_script:
            return "script"
        if self.h2ping and iv:
            return "h2ping"
        if self.os_service and iv:
            return "os_service"
        return ""

    @property
    def runner(self) -> str:
        """Which runner agent.go addCheck would start (its switch order): ``ttl``,
        ``http``, ``tcp``, ``script``, or the name of a kind gossamer cannot run yet."""
        iv = self.interval_ns > 0
        if self.is_ttl:
            return "ttl"
        if self.http and iv:
            return "http"
        if self.tcp and iv:
            return "tcp"
        if self.udp and iv:
            return "udp"
        if self.grpc and iv:
            return "grpc"
        if self.is_script and self.docker_container_id and iv:
            return "docker"
        if self.os_service and iv:
            return "os_service"
        if self.is_script and iv:
            return "script"
        if self.h2ping and iv:
            return "h2ping"
        if self.is_alias:
            return "alias"
        return ""

    def validate(self) -> None:
        """CheckType.Validate, with Consul's messages (raises :class:`CheckInvalid`)."""
        interval_check = bool(
            self.is_script
            or self.http
            or self.tcp
            or self.udp
            or self.grpc
            or self.h2ping
            or self.os_service
        )
        if self.interval_ns > 0 and self.ttl_ns > 0:
            raise CheckInvalid("Interval and TTL cannot both be specified")
        if interval_check and self.interval_ns <= 0:
            raise CheckInvalid(
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
            )
        if interval_check and self.is_alias:
            raise CheckInvalid("Interval cannot be set for Alias checks")
        if self.is_alias and self.ttl_ns > 0:
            raise CheckInvalid("TTL must be not be set for Alias checks")
        if not interval_check and not self.is_alias and self.ttl_ns <= 0:
            raise CheckInvalid("TTL must be > 0 for TTL checks")
        if self.output_max_size < 0:
            raise CheckInvalid("MaxOutputMaxSize must be positive")
        if self.failures_before_warning > self.failures_before_critical:
            raise CheckInvalid("FailuresBeforeWarning can't be higher than FailuresBeforeCritical")

    # ---- what the HealthCheck reports

    @property
    def interval_text(self) -> str:
        """``Interval`` of a service's check: Go's Duration.String(), "" when unset."""
        return format_duration(self.interval_ns) if self.interval_ns else ""

    @property
    def timeout_text(self) -> str:
        return format_duration(self.timeout_ns) if self.timeout_ns else ""

    @property
    def interval_s(self) -> float:
        return self.interval_ns / _NS_PER_S

    @property
    def timeout_s(self) -> float:
        return self.timeout_ns / _NS_PER_S

    @property
    def ttl_s(self) -> float:
        return self.ttl_ns / _NS_PER_S

    @property
    def deregister_after_s(self) -> float:
        return self.deregister_critical_service_after_ns / _NS_PER_S


# JSON key (lower-cased, without "_" and "-") -> (attribute, kind)
_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "checkid": ("check_id", "str"),
    "id": ("id", "str"),
    "name": ("name", "str"),
    "notes": ("notes", "str"),
    "status": ("status", "str"),
    "serviceid": ("service_id", "str"),
    "scriptargs": ("script_args", "strlist"),
    "args": ("args", "strlist"),
    "http": ("http", "str"),
    "header": ("header", "header"),
    "method": ("method", "str"),
    "body": ("body", "str"),
    "disableredirects": ("disable_redirects", "bool"),
    "tcp": ("tcp", "str"),
    "tcpusetls": ("tcp_use_tls", "bool"),
    "udp": ("udp", "str"),
    "grpc": ("grpc", "str"),
    "grpcusetls": ("grpc_use_tls", "bool"),
    "h2ping": ("h2ping", "str"),
    "h2pingusetls": ("h2ping_use_tls", "bool"),
    "osservice": ("os_service", "str"),
    "aliasnode": ("alias_node", "str"),
    "aliasservice": ("alias_service", "str"),
    "dockercontainerid": ("docker_container_id", "str"),
    "shell": ("shell", "str"),
    "tlsservername": ("tls_server_name", "str"),
    "tlsskipverify": ("tls_skip_verify", "bool"),
    "interval": ("interval_ns", "duration"),
    "timeout": ("timeout_ns", "duration"),
    "ttl": ("ttl_ns", "duration"),
    "deregistercriticalserviceafter": ("deregister_critical_service_after_ns", "duration"),
    "successbeforepassing": ("success_before_passing", "int"),
    "failuresbeforewarning": ("failures_before_warning", "int"),
    "failuresbeforecritical": ("failures_before_critical", "int"),
    "outputmaxsize": ("output_max_size", "int"),
}


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _duration_ns(value: Any, where: str) -> int:
    """Go's CheckType.UnmarshalJSON: a string is time.ParseDuration, a number is
    nanoseconds (truncated toward zero, as time.Duration(float64) does)."""
    if isinstance(value, bool):
        raise CheckDecodeError(f"{where}: expected a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) >= 2**63:
            raise CheckDecodeError(f"{where}: duration out of range")
        return int(value)
    if isinstance(value, str):
        if value.endswith("ns") and value[:-2].lstrip("-").isdigit():
            return int(value[:-2])  # what catalog.http_common.canon makes of a number
        try:
            return parse_duration_ns(value)
        except ValueError as e:
            raise CheckDecodeError(str(e)) from None
    raise CheckDecodeError(f"{where}: expected a duration")


def _decode(value: Any, kind: str, where: str) -> Any:
    match kind:
        case "str":
            if not isinstance(value, str):
                raise CheckDecodeError(f"{where}: expected a string")
            return value
        case "bool":
            if not isinstance(value, bool):
                raise CheckDecodeError(f"{where}: expected true or false")
            return value
        case "int":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CheckDecodeError(f"{where}: expected a number")
            if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
                raise CheckDecodeError(f"{where}: expected an integer")
            v = int(value)
            if not -(1 << 63) <= v < (1 << 63):
                raise CheckDecodeError(f"{where}: number out of range")
            return v
        case "strlist":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CheckDecodeError(f"{where}: expected a list of strings")
            return tuple(value)
        case "header":
            if not isinstance(value, dict):
                raise CheckDecodeError(f"{where}: expected an object of string lists")
            out: dict[str, tuple[str, ...]] = {}
            for k, v in value.items():
                if v is None:
                    continue
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise CheckDecodeError(f"{where}.{k}: expected a list of strings")
                out[str(k)] = tuple(v)
            return out
        case "duration":
            return _duration_ns(value, where)
    raise AssertionError(kind)


def parse_check(raw: Any, where: str = "Check") -> CheckType:
    """A check definition decoded from Consul's JSON: keys match case-insensitively and
    in snake_case (``script_args``, ``deregister_critical_service_after``,
    ``tls_skip_verify``…), ``args`` is ``ScriptArgs``, durations are Go strings or
    nanoseconds, unknown keys are ignored, as Go's decoder does. ``ID`` (a
    CheckDefinition) and ``CheckID`` (a service's CheckType) both name the check.
    Raises :class:`CheckDecodeError`; validation is :meth:`CheckType.validate`."""
    if raw is None:
        return CheckType()
    if not isinstance(raw, dict):
        raise CheckDecodeError(f"{where}: expected an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or value is None:
            continue
        spec = _FIELDS.get(_norm(key))
        if spec is None:
            continue
        attr, kind = spec
        values.setdefault(attr, _decode(value, kind, f"{where}.{key}"))
    args = values.pop("args", ())
    if not values.get("script_args"):
        values["script_args"] = args
    check_id = values.pop("id", "")
    if check_id:
        values["check_id"] = check_id
    values.pop("h2ping_use_tls", None)
    return CheckType(**values)


def truncate_output(output: str, max_size: int) -> str:
    """CheckTTL.SetStatus: keep the first ``max_size`` bytes and say so."""
    data = output.encode("utf-8", "surrogateescape")
    total = len(data)
    if total <= max_size:
        return output
    head = data[:max_size].decode("utf-8", "replace")
    return f"{head} ... (captured {max_size} of {total} bytes)"


# --------------------------------------------------------------------------- the scheduler


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    min_interval_s: float = MIN_INTERVAL_S
    """Intervals below this are raised to it (checks.MinInterval, seconds)."""
    output_max_size: int = DEFAULT_BUF_SIZE
    """The agent's ``check_output_max_size`` (bytes); a check may ask for less."""
    deregister_interval_min_s: float = DEREGISTER_INTERVAL_MIN_S
    """``check_deregister_interval_min`` (seconds); tests lower it."""

    def validate(self) -> None:
        if self.min_interval_s < 0 or self.deregister_interval_min_s < 0:
            raise ValueError("scheduler intervals cannot be negative")
        if self.output_max_size < 1:
            raise ValueError("output_max_size must be positive")


@dataclass(frozen=True, slots=True)
class CheckAdded(Event):
    """A check with a type was registered (or re-registered: its runner restarts)."""

    check_id: str
    check: CheckType
    service_id: str = ""
    status: str = CRITICAL
    output: str = ""


@dataclass(frozen=True, slots=True)
class CheckRemoved(Event):
    check_id: str


@dataclass(frozen=True, slots=True)
class ProbeFinished(Event):
    """The driver's probe for ``RunProbe(check_id, run_id, …)`` came back."""

    check_id: str
    run_id: int
    status: str
    output: str


@dataclass(frozen=True, slots=True)
class TTLUpdated(Event):
    """``/v1/agent/check/pass|warn|fail|update``: set the status, renew the TTL."""

    check_id: str
    status: str
    output: str = ""


@dataclass(frozen=True, slots=True)
class RunProbe(Effect):
    check_id: str
    run_id: int
    check: CheckType
    """The definition, with the interval already raised to the minimum."""
    timeout_s: float
    output_max_size: int


@dataclass(frozen=True, slots=True)
class CheckStatusChanged(Effect):
    check_id: str
    status: str
    output: str


@dataclass(frozen=True, slots=True)
class DeregisterService(Effect):
    """A check of ``service_id`` has been critical for ``timeout_s``: deregister it."""

    service_id: str
    check_id: str
    timeout_s: float


class _Entry:
    __slots__ = (
        "check",
        "check_id",
        "critical_since",
        "deregister_after_s",
        "failures",
        "interval_s",
        "last_ttl_output",
        "max_output",
        "output",
        "run_id",
        "runner",
        "service_id",
        "status",
        "successes",
        "timeout_s",
    )

    def __init__(self, check_id: str, check: CheckType, service_id: str) -> None:
        self.check_id = check_id
        self.check = check
        self.service_id = service_id
        self.runner = check.runner
        self.interval_s = 0.0
        self.timeout_s = 0.0
        self.max_output = DEFAULT_BUF_SIZE
        self.deregister_after_s = 0.0
        self.status = CRITICAL
        self.output = ""
        self.critical_since: float | None = None
        self.successes = check.success_before_passing
        self.failures = check.failures_before_critical
        self.run_id = 0
        self.last_ttl_output = ""


class CheckScheduler:
    """See the module docstring."""

    RUNNERS: Final = ("ttl", "http", "tcp", "script")
    """The runners gossamer has; other kinds are refused before they get here."""

    def __init__(self, rng: random.Random, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.config.validate()
        self._rng = rng
        self._wheel = TimerWheel()
        self._checks: dict[str, _Entry] = {}
        self._effects: list[Effect] = []
        self._now = -math.inf
        self._run_seq = 0
        self.stats: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    # ------------------------------------------------------------------ queries

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._checks

    def __len__(self) -> int:
        return len(self._checks)

    def is_ttl(self, check_id: str) -> bool:
        e = self._checks.get(check_id)
        return e is not None and e.runner == "ttl"

    def count(self, runner: str) -> int:
        return sum(1 for e in self._checks.values() if e.runner == runner)

    def in_flight(self) -> int:
        return sum(1 for e in self._checks.values() if e.run_id)

    def critical_since(self, check_id: str) -> float | None:
        e = self._checks.get(check_id)
        return None if e is None else e.critical_since

    # ------------------------------------------------------------------ the contract

    def next_deadline(self) -> float | None:
        return self._wheel.next_deadline()

    def take_effects(self) -> list[Effect]:
        out, self._effects = self._effects, []
        return out

    def handle(self, now: float, event: Event) -> None:
        assert now >= self._now, f"time went backwards: {now} < {self._now}"
        self._now = now
        self._wheel.run_due(now)
        match event:
            case TimerExpired():
                pass
            case CheckAdded():
                self._add(now, event)
            case CheckRemoved():
                self._remove(event.check_id)
            case ProbeFinished():
                self._probe_finished(now, event)
            case TTLUpdated():
                self._ttl_updated(now, event)
            case _:
                raise TypeError(f"CheckScheduler cannot handle {type(event).__name__}")

    # ------------------------------------------------------------------ events

    def _add(self, now: float, ev: CheckAdded) -> None:
        if ev.status not in STATUSES:
            raise ValueError(f"bad check status {ev.status!r}")
        check = ev.check
        runner = check.runner
        if runner not in self.RUNNERS:
            raise ValueError(f"check {ev.check_id!r}: gossamer cannot run {runner or 'it'}")
        self._remove(ev.check_id)
        cfg = self.config
        e = _Entry(ev.check_id, check, ev.service_id)
        e.status = ev.status
        e.output = ev.output
        e.max_output = cfg.output_max_size
        if 0 < check.output_max_size < e.max_output:
            e.max_output = check.output_max_size
        if check.deregister_critical_service_after_ns > 0:
            e.deregister_after_s = check.deregister_after_s
            if e.deregister_after_s < cfg.deregister_interval_min_s:
                log.warning(
                    "check has deregister interval below minimum: check=%s minimum_interval=%ss",
                    ev.check_id,
                    cfg.deregister_interval_min_s,
                )
                e.deregister_after_s = cfg.deregister_interval_min_s
        self._checks[ev.check_id] = e
        if runner == "ttl":
            self._wheel.set(("ttl", ev.check_id), now + check.ttl_s, self._ttl_expired_cb(e))
            return
        interval = check.interval_s
        if interval < cfg.min_interval_s:
            log.warning(
                "check has interval below minimum: check=%s minimum_interval=%ss",
                ev.check_id,
                cfg.min_interval_s,
            )
            interval = cfg.min_interval_s
        e.interval_s = interval
        default = {
            "http": DEFAULT_HTTP_TIMEOUT_S,
            "tcp": DEFAULT_TCP_TIMEOUT_S,
            "script": DEFAULT_SCRIPT_TIMEOUT_S,
        }[runner]
        e.timeout_s = check.timeout_s if check.timeout_ns > 0 else default
        # lib.RandomStagger(interval): uniform in [0, interval)
        first = now + self._rng.random() * interval
        self._wheel.set(("run", ev.check_id), first, self._run_cb(e))

    def _remove(self, check_id: str) -> None:
        e = self._checks.pop(check_id, None)
        if e is None:
            return
        for kind in ("run", "ttl", "reap"):
            self._wheel.cancel((kind, check_id))

    def _probe_finished(self, now: float, ev: ProbeFinished) -> None:
        if ev.status not in STATUSES:
            raise ValueError(f"bad check status {ev.status!r}")
        e = self._checks.get(ev.check_id)
        if e is None or e.run_id == 0 or e.run_id != ev.run_id:
            counting(self.dropped, "stale_probe_result")
            return
        e.run_id = 0
        counting(self.stats, "probes_finished")
        self._status_handler(now, e, ev.status, ev.output)
        self._wheel.set(("run", e.check_id), now + e.interval_s, self._run_cb(e))

    def _ttl_updated(self, now: float, ev: TTLUpdated) -> None:
        if ev.status not in STATUSES:
            raise ValueError(f"bad check status {ev.status!r}")
        e = self._checks.get(ev.check_id)
        if e is None or e.runner != "ttl":
            raise ValueError(f"CheckID {ev.check_id!r} does not have associated TTL")
        output = truncate_output(ev.output, e.max_output)
        self._report(now, e, ev.status, output)
        e.last_ttl_output = output
        self._wheel.set(("ttl", e.check_id), now + e.check.ttl_s, self._ttl_expired_cb(e))

    # ------------------------------------------------------------------ timers

    def _run_cb(self, e: _Entry) -> Any:
        def run(now: float) -> None:
            if self._checks.get(e.check_id) is not e:
                return
            self._run_seq += 1
            e.run_id = self._run_seq
            counting(self.stats, "probes_started")
            self._effects.append(RunProbe(e.check_id, e.run_id, e.check, e.timeout_s, e.max_output))

        return run

    def _ttl_expired_cb(self, e: _Entry) -> Any:
        def expired(now: float) -> None:
            if self._checks.get(e.check_id) is not e:
                return
            log.warning("Check missed TTL, is now critical: check=%s", e.check_id)
            counting(self.stats, "ttl_expired")
            output = "TTL expired"
            if e.last_ttl_output:
                output = f"TTL expired (last output before timeout follows): {e.last_ttl_output}"
            self._report(now, e, CRITICAL, output)

        return expired

    def _reap_cb(self, e: _Entry) -> Any:
        def reap(now: float) -> None:
            if self._checks.get(e.check_id) is not e or e.critical_since is None:
                return
            counting(self.stats, "deregistrations")
            self._effects.append(DeregisterService(e.service_id, e.check_id, e.deregister_after_s))

        return reap

    # ------------------------------------------------------------------ results

    def _status_handler(self, now: float, e: _Entry, status: str, output: str) -> None:
        """checks.StatusHandler.updateCheck."""
        check = e.check
        if status in (PASSING, WARNING):
            e.successes += 1
            e.failures = 0
            if e.successes >= check.success_before_passing:
                self._report(now, e, status, output)
                return
            log.warning(
                "Check passed but has not reached success threshold: check=%s status=%s "
                "success_count=%d success_threshold=%d",
                e.check_id,
                status,
                e.successes,
                check.success_before_passing,
            )
            return
        e.failures += 1
        e.successes = 0
        before_warning = check.failures_before_warning or check.failures_before_critical
        if e.failures >= check.failures_before_critical:
            self._report(now, e, status, output)
            return
        if e.failures >= before_warning:
            self._report(now, e, WARNING, output)
            return
        log.warning(
            "Check failed but has not reached warning/failure threshold: check=%s "
            "status=%s failure_count=%d warning_threshold=%d failure_threshold=%d",
            e.check_id,
            status,
            e.failures,
            before_warning,
            check.failures_before_critical,
        )

    def _report(self, now: float, e: _Entry, status: str, output: str) -> None:
        if status == CRITICAL:
            if e.critical_since is None:
                e.critical_since = now
                if e.deregister_after_s > 0 and e.service_id:
                    self._wheel.set(
                        ("reap", e.check_id), now + e.deregister_after_s, self._reap_cb(e)
                    )
        else:
            e.critical_since = None
            self._wheel.cancel(("reap", e.check_id))
        if status == e.status and output == e.output:
            return
        e.status = status
        e.output = output
        counting(self.stats, "status_reports")
        self._effects.append(CheckStatusChanged(e.check_id, status, output))
