"""The local agent's asyncio driver: services and checks on this node, their probes, and
anti-entropy with the catalog.

It composes two sans-IO cores and does their I/O:

* :class:`catalog.local.LocalState` — the services and checks (Consul's ``local.State``
  plus the agent.go rules on top), and what must be written to the catalog;
* :class:`catalog.checks.CheckScheduler` — when each check runs, TTLs, thresholds,
  ``DeregisterCriticalServiceAfter``.

and runs the probes of :mod:`catalog.probes` as tasks (at most ``probe_concurrency`` at
once, each bounded by its timeout plus a grace period).

Syncing follows Consul's ``agent/ae/ae.go`` StateSyncer: a full sync at start and then
every ``ae_interval + stagger(scale * ae_interval)`` (60–120 s on clusters up to 128
nodes), retried after ``15 s + stagger`` when it fails; a partial sync of what changed,
``sync_debounce_s`` after a change (the HTTP layer also awaits :meth:`sync_changes` after
each write, as Consul's handlers call ``syncChanges`` before answering). The full sync
reads the catalog's view of this node, so a catalog edited behind the agent's back is
repaired. An agent with no server (a client, until server RPC exists) keeps its local
state working and skips syncs with a debug log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from catalog.checks import (
    CRITICAL,
    SCRIPTS_DISABLED,
    STATUSES,
    CheckAdded,
    CheckRemoved,
    CheckScheduler,
    CheckStatusChanged,
    CheckType,
    DeregisterService,
    ProbeFinished,
    RunProbe,
    SchedulerConfig,
    TTLUpdated,
)
from catalog.local import (
    AE_INTERVAL_S,
    CHECK_UPDATE_INTERVAL_S,
    SERVER_UP_INTERVAL_S,
    AgentError,
    LocalConfig,
    LocalState,
    ServiceDefinition,
    SyncOp,
    SyncRequested,
    full_sync_delay,
    random_stagger,
    retry_fail_delay,
    scale_factor,
)
from catalog.probes import run_probe
from catalog.reconcile import tagged_addresses
from gossamer.core import TimerExpired
from gossamer.duration import format_duration

if TYPE_CHECKING:
    from catalog.server import CatalogAccess
    from gossamer.config import AgentConfig

__all__ = ["AgentError", "LocalAgent", "ProbeRunner"]

log = logging.getLogger("gossamer.agent.local")

ProbeRunner = Callable[[CheckType, float, int], Awaitable[tuple[str, str]]]
"""``(check, timeout_s, output_max_size) -> (status, output)``; :func:`run_probe`."""

PROBE_GRACE_S: Final = 5.0
"""A probe that overruns its own timeout by this much is abandoned as critical."""
PROBE_CONCURRENCY: Final = 64
SYNC_DEBOUNCE_S: Final = 0.02
METRICS_PREFIX: Final = "consul"


class _Sampled:
    """go-metrics' SampledValue aggregate: count, sum, min, max, mean, stddev."""

    __slots__ = ("count", "max", "min", "sum", "sumsq")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, v: float) -> None:
        self.count += 1
        self.sum += v
        self.sumsq += v * v
        self.min = min(self.min, v)
        self.max = max(self.max, v)

    def json(self, name: str, labels: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        mean = self.sum / self.count if self.count else 0.0
        var = self.sumsq / self.count - mean * mean if self.count > 1 else 0.0
        return {
            "Name": name,
            "Count": self.count,
            "Sum": self.sum,
            "Min": self.min if self.count else 0.0,
            "Max": self.max if self.count else 0.0,
            "Mean": mean,
            "Stddev": math.sqrt(max(var, 0.0)),
            "Labels": dict(labels),
        }


class LocalAgent:
    """See the module docstring. Every method runs on the event loop's thread."""

    def __init__(
        self,
        config: AgentConfig,
        node_id: str,
        address: str,
        server: Callable[[], CatalogAccess | None],
        *,
        rng: random.Random | None = None,
        cluster_size: Callable[[], int] = lambda: 1,
        scheduler_config: SchedulerConfig | None = None,
        check_update_interval_s: float = CHECK_UPDATE_INTERVAL_S,
        ae_interval_s: float = AE_INTERVAL_S,
        sync_debounce_s: float = SYNC_DEBOUNCE_S,
        probe_concurrency: int = PROBE_CONCURRENCY,
        probe_runner: ProbeRunner = run_probe,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.address = address
        self._server = server
        self._rng = rng or random.Random()
        self._cluster_size = cluster_size
        self._ae_interval_s = ae_interval_s
        self._debounce_s = sync_debounce_s
        self._runner = probe_runner
        self._wall = wall_clock
        self.local = LocalState(
            LocalConfig(
                node_name=config.node_name,
                node_id=node_id,
                address=address,
                datacenter=config.datacenter,
                tagged_addresses=tagged_addresses(address),
                check_update_interval_s=check_update_interval_s,
            ),
            self._rng,
        )
        self.scheduler = CheckScheduler(self._rng, scheduler_config)
        self._probe_sem = asyncio.Semaphore(max(1, probe_concurrency))
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._sync_lock: asyncio.Lock | None = None
        self._sync_due: float | None = None
        self._full_due = 0.0
        self._last_now = -math.inf
        self._seen_generation = -1
        self._closed = False
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], _Sampled] = {}
        self._samples: dict[tuple[str, tuple[tuple[str, str], ...]], _Sampled] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._full_due = self._now()  # ae.go starts in fullSyncState
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._task, *self._probes.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._task = None
        self._probes.clear()

    def trigger_full_sync(self) -> None:
        """ae.go SyncFull.Trigger (a server joined): a full sync within a staggered
        ``serverUpInterval`` (3 s)."""
        now = self._now()
        scale = scale_factor(self._cluster_size())
        self._full_due = min(
            self._full_due, now + random_stagger(self._rng, scale * SERVER_UP_INTERVAL_S)
        )
        self._kick()

    # ------------------------------------------------------------------ API (HTTP layer)

    def services(self) -> dict[str, dict[str, Any]]:
        return self.local.services()

    def service(self, service_id: str) -> dict[str, Any] | None:
        return self.local.service(service_id)

    def checks(self) -> dict[str, dict[str, Any]]:
        return self.local.checks()

    @property
    def generation(self) -> int:
        """Moves whenever what :meth:`services` or :meth:`checks` return may have."""
        return self.local.generation

    def wait_jitter(self, max_s: float) -> float:
        """Random jitter in [0, max_s) for blocking waits (Consul adds wait/16)."""
        return random_stagger(self._rng, max_s)

    async def wait_change(self, generation: int, timeout_s: float) -> None:
        """Return when :attr:`generation` moves past ``generation`` or after
        ``timeout_s`` (hash-based blocking of /v1/agent/service/<id>)."""
        if self.local.generation != generation or self._changed is None:
            return
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({waiter}, timeout=max(timeout_s, 0.0))
        finally:
            waiter.cancel()

    def add_service(
        self, defn: ServiceDefinition, *, replace_existing_checks: bool = False
    ) -> None:
        """Agent.AddService: the service and its checks (runners restarted)."""
        for ct in defn.checks:
            self._vet(ct)
        res = self.local.register_service(defn, replace_existing_checks=replace_existing_checks)
        for hc, ct in res.added:
            self._start_check(hc, ct)
        for cid in res.removed:
            self._stop_check(cid)
        log.debug("added service: service=%s", defn.id or defn.name)
        self._pump()

    def remove_service(self, service_id: str) -> None:
        """Agent.RemoveService; an unknown ID is logged, not an error (as Consul)."""
        self._remove_service(service_id)
        self._pump()

    def _remove_service(self, service_id: str) -> None:
        if service_id and self.local.service(service_id) is None:
            log.warning(
                'Failed to deregister service: service=%s error=Unknown service ID "%s". '
                "Ensure that the service ID is passed, not the service name.",
                service_id,
                service_id,
            )
        for cid in self.local.deregister_service(service_id):
            self._stop_check(cid)

    def add_check(self, check: CheckType) -> dict[str, Any]:
        """Agent.AddCheck for /v1/agent/check/register; returns the HealthCheck."""
        self._vet(check)
        hc = self.local.register_check(check)
        self._start_check(hc, check)
        self._pump()
        return hc

    def remove_check(self, check_id: str) -> None:
        self.local.deregister_check(check_id)
        self._stop_check(check_id)
        self._pump()

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """Agent.updateTTLCheck: /v1/agent/check/pass|warn|fail|update."""
        if status not in STATUSES:
            raise AgentError(400, f"Invalid check status: '{status}'")
        if not self.scheduler.is_ttl(check_id):
            raise AgentError(500, f'CheckID "{check_id}" does not have associated TTL')
        self.scheduler.handle(self._now(), TTLUpdated(check_id, status, output))
        self._pump()

    def enable_service_maintenance(self, service_id: str, reason: str) -> None:
        if self.local.enable_service_maintenance(service_id, reason):
            log.info("Service entered maintenance mode: service=%s", service_id)
        self._pump()

    def disable_service_maintenance(self, service_id: str) -> None:
        if self.local.disable_service_maintenance(service_id):
            log.info("Service left maintenance mode: service=%s", service_id)
        self._pump()

    def enable_node_maintenance(self, reason: str) -> None:
        if self.local.enable_node_maintenance(reason):
            log.info("Node entered maintenance mode")
        self._pump()

    def disable_node_maintenance(self) -> None:
        if self.local.disable_node_maintenance():
            log.info("Node left maintenance mode")
        self._pump()

    async def sync_changes(self) -> None:
        """Consul's HTTP ``syncChanges`` helper: push what is out of sync now; a failure
        is logged (the write did succeed locally, anti-entropy will retry)."""
        self._sync_due = None
        await self._sync(full=False)

    def stats(self) -> dict[str, str]:
        """The ``agent`` section of /v1/agent/self's Stats (Agent.Stats)."""
        return {
            "check_monitors": str(self.scheduler.count("script")),
            "check_ttls": str(self.scheduler.count("ttl")),
            **self.local.counts(),
        }

    def metrics(self) -> dict[str, Any]:
        """Consul's /v1/agent/metrics JSON (go-metrics' inmem DisplayMetrics shape):
        ``Timestamp``, ``Gauges``, ``Points``, ``Counters``, ``Samples``. Counters and
        samples are totals since start, not one 10 s interval as go-metrics shows."""
        p = METRICS_PREFIX
        gauges: list[dict[str, Any]] = [
            {"Name": f"{p}.agent.local.services", "Value": len(self.local.services()), "Labels": {}}
        ]
        by_status = dict.fromkeys(STATUSES, 0)
        for c in self.local.checks().values():
            by_status[c["Status"]] = by_status.get(c["Status"], 0) + 1
        for status, n in by_status.items():
            gauges.append(
                {"Name": f"{p}.agent.local.checks", "Value": n, "Labels": {"status": status}}
            )
        for runner in CheckScheduler.RUNNERS:
            gauges.append(
                {
                    "Name": f"{p}.agent.check.runners",
                    "Value": self.scheduler.count(runner),
                    "Labels": {"type": runner},
                }
            )
        gauges.append(
            {"Name": f"{p}.agent.check.in_flight", "Value": len(self._probes), "Labels": {}}
        )
        return {
            "Timestamp": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(self._wall())),
            "Gauges": gauges,
            "Points": [],
            "Counters": [v.json(n, lb) for (n, lb), v in sorted(self._counters.items())],
            "Samples": [v.json(n, lb) for (n, lb), v in sorted(self._samples.items())],
        }

    # ------------------------------------------------------------------ internals

    def _now(self) -> float:
        try:
            t = asyncio.get_running_loop().time()
        except RuntimeError:
            t = time.monotonic()
        self._last_now = max(self._last_now, t)
        return self._last_now

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _count(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (f"{METRICS_PREFIX}.{name}", tuple(sorted(labels.items())))
        self._counters.setdefault(key, _Sampled()).add(value)

    def _sample(self, name: str, value: float, **labels: str) -> None:
        key = (f"{METRICS_PREFIX}.{name}", tuple(sorted(labels.items())))
        self._samples.setdefault(key, _Sampled()).add(value)

    def _vet(self, ct: CheckType) -> None:
        """agent.go addCheck's refusals, before anything changes."""
        if ct.is_script and not self.config.enable_script_checks:
            raise AgentError(500, SCRIPTS_DISABLED)
        if ct.runner not in CheckScheduler.RUNNERS:
            kind = ct.type_name or ct.runner or "this kind of"
            raise AgentError(400, f"Invalid check: {kind} checks are not supported by gossamer yet")

    def _start_check(self, hc: dict[str, Any], ct: CheckType) -> None:
        cid = hc["CheckID"]
        self._cancel_probe(cid)
        self.scheduler.handle(
            self._now(),
            CheckAdded(cid, ct, hc["ServiceID"], hc["Status"], hc["Output"]),
        )

    def _stop_check(self, check_id: str) -> None:
        self._cancel_probe(check_id)
        if check_id in self.scheduler:
            self.scheduler.handle(self._now(), CheckRemoved(check_id))

    def _cancel_probe(self, check_id: str) -> None:
        task = self._probes.pop(check_id, None)
        if task is not None:
            task.cancel()

    def _pump(self) -> None:
        """Carry out what the cores asked for; called after every input."""
        now = self._now()
        for _ in range(1000):  # each round consumes effects; bounded all the same
            effects = self.scheduler.take_effects()
            if not effects:
                break
            for eff in effects:
                if isinstance(eff, RunProbe):
                    self._start_probe(eff)
                elif isinstance(eff, CheckStatusChanged):
                    self._count("agent.check.status_change", status=eff.status)
                    self.local.update_check(now, eff.check_id, eff.status, eff.output)
                elif (
                    isinstance(eff, DeregisterService)
                    and self.local.service(eff.service_id) is not None
                ):
                    self._remove_service(eff.service_id)
                    self._count("agent.service.reaped")
                    log.info(
                        "deregistered service with critical health due to exceeding "
                        "health check's 'deregister_critical_service_after' timeout: "
                        "service=%s check=%s timeout=%s",
                        eff.service_id,
                        eff.check_id,
                        format_duration(int(eff.timeout_s * 1e9)),
                    )
        for eff in self.local.take_effects():
            if isinstance(eff, SyncRequested) and self._sync_due is None:
                self._sync_due = now + self._debounce_s
        if self.local.generation != self._seen_generation:
            self._seen_generation = self.local.generation
            if self._changed is not None:
                self._changed.set()
                self._changed = asyncio.Event()
        # wake the loop so it re-reads the deadlines, unless this is the loop itself (it
        # reads them before it sleeps; waking itself would make it spin)
        if self._task is None or asyncio.current_task() is not self._task:
            self._kick()

    def _start_probe(self, eff: RunProbe) -> None:
        if self._closed:
            return
        self._cancel_probe(eff.check_id)
        self._probes[eff.check_id] = asyncio.get_running_loop().create_task(self._probe(eff))

    async def _probe(self, eff: RunProbe) -> None:
        me = asyncio.current_task()
        try:
            async with self._probe_sem:
                status, output = await asyncio.wait_for(
                    self._runner(eff.check, eff.timeout_s, eff.output_max_size),
                    eff.timeout_s + PROBE_GRACE_S,
                )
        except TimeoutError:
            status = CRITICAL
            output = f"Timed out ({format_duration(int(eff.timeout_s * 1e9))}) running check"
        except Exception as e:  # a probe bug must not stop the check for good
            log.exception("check %s: probe failed", eff.check_id)
            status, output = CRITICAL, f"{type(e).__name__}: {e}"
        finally:
            if self._probes.get(eff.check_id) is me:
                del self._probes[eff.check_id]
        if self._closed:
            return
        self._count("agent.check.run", type=eff.check.runner)
        self.scheduler.handle(self._now(), ProbeFinished(eff.check_id, eff.run_id, status, output))
        self._pump()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closed:
            self._wake.clear()
            now = self._now()
            d = self.scheduler.next_deadline()
            if d is not None and d <= now:
                self.scheduler.handle(now, TimerExpired())
            d = self.local.next_deadline()
            if d is not None and d <= now:
                self.local.handle(now, TimerExpired())
            self._pump()
            if self._full_due <= now:
                ok = await self._sync(full=True)
                nodes = self._cluster_size()
                delay = (
                    full_sync_delay(self._rng, nodes, self._ae_interval_s)
                    if ok
                    else retry_fail_delay(self._rng, nodes)
                )
                self._full_due = self._now() + delay
            elif self._sync_due is not None and self._sync_due <= now:
                self._sync_due = None
                await self._sync(full=False)
            deadlines = [
                x
                for x in (
                    self.scheduler.next_deadline(),
                    self.local.next_deadline(),
                    self._sync_due,
                    self._full_due,
                )
                if x is not None
            ]
            timeout = max(0.0, min(deadlines) - self._now()) if deadlines else 3600.0
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the event is set, and close() would hang
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=min(timeout, 3600.0))
            finally:
                waiter.cancel()

    async def _sync(self, full: bool) -> bool:
        """One sync (Consul's SyncFull or SyncChanges); True when it went through."""
        assert self._sync_lock is not None
        kind = "full" if full else "changes"
        async with self._sync_lock:
            srv = self._server()
            if srv is None:
                log.debug("anti-entropy: no server known, %s sync skipped", kind)
                return False
            started = time.perf_counter()
            try:
                if full:
                    node = self.config.node_name
                    services, checks = await srv.node_state(node)
                    self.local.update_sync_state(services, checks)
                for op in self.local.sync_changes(self._now()):
                    try:
                        await srv.write(op.command)
                    except Exception as e:  # CommandRejected, or a server going away
                        self._count("agent.anti_entropy.sync_failed", kind=kind)
                        log.warning("Syncing %s failed. %s", _describe(op), e)
                        return False
                    self.local.sync_succeeded(op)
                    log.info("%s", _describe(op, done=True))
            except Exception as e:
                self._count("agent.anti_entropy.sync_failed", kind=kind)
                log.error("failed to sync remote state: %s", e)
                return False
            finally:
                self._sample(
                    "agent.anti_entropy.sync_ms", (time.perf_counter() - started) * 1000, kind=kind
                )
                self._pump()
            self._count("agent.anti_entropy.sync", kind=kind)
            return True


def _describe(op: SyncOp, done: bool = False) -> str:
    """Consul's anti-entropy log lines (local/state.go)."""
    match op.kind:
        case "service":
            return f'Synced service "{op.id}"' if done else f'service "{op.id}"'
        case "check":
            return f'Synced check "{op.id}"' if done else f'check "{op.id}"'
        case "delete-service":
            return f'Deregistered service "{op.id}"' if done else f'deregistering service "{op.id}"'
        case "delete-check":
            return f'Deregistered check "{op.id}"' if done else f'deregistering check "{op.id}"'
        case _:
            return "Synced node info" if done else "node info"
