"""The state store: nodes, services, checks, KV, sessions and coordinates, with Consul's
indexes, changed only by applying commands (:mod:`catalog.commands`).

This is Consul's ``agent/consul/state`` and its FSM in one sans-IO object. Raft (the
federation issue) drives it through the three methods of the state-machine contract:

    store.apply(index, command) -> result      # the one way to change anything
    store.snapshot() -> dict                    # msgpack-encodable, all durable state
    store.restore(snapshot)                     # replaces the state wholesale

Rules:

1. ``apply`` is deterministic: it reads no clock (commands carry ``Now``), draws no
   randomness (commands carry generated IDs) and never iterates a set.
2. ``apply`` is all-or-nothing. Every mutation goes through :meth:`_put` / :meth:`_pop`,
   which journal the old value; a command that fails half-way (a transaction whose third
   operation is stale, a malformed command) is rolled back and raises
   :class:`CommandRejected` with Consul's message. Indexes, watch keys, everything is
   restored.
3. Stored entries (dicts in Consul's JSON shapes) are never mutated after insertion: an
   update stores a new dict. Readers may hold on to what they read.
4. Indexes, as Consul reports them: every entry has ``CreateIndex`` and ``ModifyIndex``
   (KV also ``LockIndex``); each table has the index of its last change; some keys (a
   service name, a node) have their own. A read returns the index that tells a blocking
   client whether *its* answer may have changed, and never 0.
5. Watches: every change records the watch keys it touched (``("table", name)``,
   ``("node", lower-case name)``, ``("service", name)``, ``("kv", key)``); a read returns
   the keys it depends on (``("kvprefix", p)`` for a KV listing).
   :class:`catalog.watch.WatchHub` matches the two to wake exactly the blocking queries a
   change can affect.

Node names, service names, service IDs and check IDs are case-insensitive, as in
Consul's memdb schema (``Lowercase: true`` on those indexes): entries keep the spelling
they were registered with, and are found by any.
KV lives in a ``SortedDict`` so prefix listings are range scans; deleted keys leave a
tombstone (the "graveyard") so a blocking listing sees its index move past a delete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from sortedcontainers import SortedDict

from catalog import commands as C

__all__ = [
    "SERF_CHECK_ID",
    "CommandRejected",
    "Read",
    "StateStore",
    "TxnFailed",
    "WatchKey",
]

WatchKey = tuple[str, str]

SERF_CHECK_ID: Final = "serfHealth"
"""The node-level check that gossip membership drives (Consul's structs.SerfCheckID)."""
SESSION_BEHAVIORS: Final = ("release", "delete")
SNAPSHOT_VERSION: Final = 1
NS_PER_S: Final = 1_000_000_000
MAX_LOCK_DELAY_NS: Final = 60 * NS_PER_S
"""structs.MaxLockDelay: a session keeps the LockDelay it was given, capped where applied."""


class CommandRejected(Exception):
    """``apply`` refused a command; the store is unchanged. The message is Consul's."""


@dataclass(frozen=True, slots=True)
class Read:
    """The answer to one read: its value, the index a blocking client compares, and the
    watch keys whose change may change the answer."""

    index: int
    value: Any
    watch: tuple[WatchKey, ...]


_MISSING: Final = object()

TABLES: Final = (
    "nodes",
    "services",
    "checks",
    "kvs",
    "tombstones",
    "sessions",
    "coordinates",
    "autopilot-config",
)


class StateStore:
    """See the module docstring. Reads are methods returning :class:`Read`."""

    def __init__(self) -> None:
        self.index = 0
        """Index of the last command applied (accepted or not)."""
        self._clear()
        self._undo: list[Callable[[], None]] | None = None
        self._changed: dict[WatchKey, None] = {}
        self._destroyed: list[str] = []
        self._cur = 0
        self._now = 0.0
        self.lock_delay: dict[str, float] = {}
        """KV key -> wall-clock time until which it cannot be acquired (not replicated
        state in Consul either: each server keeps it from the commands it applied)."""

    def _clear(self) -> None:
        self.table_index: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.key_index: dict[WatchKey, int] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        """lower-case node name -> structs.Node"""
        self.services: dict[str, dict[str, dict[str, Any]]] = {}
        """lower-case node name -> service ID -> structs.NodeService"""
        self.checks: dict[str, dict[str, dict[str, Any]]] = {}
        """lower-case node name -> check ID -> structs.HealthCheck"""
        self.service_nodes: dict[str, dict[tuple[str, str], None]] = {}
        """service name -> {(lower node, service ID)}: the service-name index"""
        self.kv: SortedDict = SortedDict()
        """key -> structs.DirEntry (Value as bytes or None)"""
        self.graveyard: SortedDict = SortedDict()
        """deleted key -> index of its deletion"""
        self.kv_by_session: dict[str, dict[str, None]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.sessions_by_node: dict[str, dict[str, None]] = {}
        self.sessions_by_check: dict[tuple[str, str], dict[str, None]] = {}
        """(lower node, check ID) -> sessions bound to it"""
        self.coords: dict[tuple[str, str], dict[str, Any]] = {}
        """(lower node, segment) -> {Node, Segment, Coord}"""
        self.operator: dict[str, dict[str, Any]] = {}
        """Operator settings replicated with the catalog; ``"autopilot"`` -> {"Config": the
        autopilot configuration as Consul's JSON, "CreateIndex", "ModifyIndex"}."""

    # ================================================================== the contract

    def apply(self, index: int, command: dict[str, Any]) -> Any:
        """Apply ``command`` at log ``index``; return its result or raise
        :class:`CommandRejected` with the store unchanged (but ``index`` advanced)."""
        if index <= self.index:
            raise ValueError(f"apply at index {index} after {self.index}")
        op = command.get("Op") if isinstance(command, dict) else None
        handler = self._OPS.get(op) if isinstance(op, str) else None
        self.index = index
        if handler is None:
            raise CommandRejected(f"unknown command {op!r}")
        self._undo = []
        self._changed = {}
        self._destroyed = []
        self._cur = index
        now = command.get("Now", 0.0)
        self._now = float(now) if isinstance(now, int | float) else 0.0
        try:
            result = handler(self, command)
        except CommandRejected:
            self._rollback()
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self._rollback()
            raise CommandRejected(f"malformed {op} command: {type(e).__name__}: {e}") from None
        self._undo = None
        return result

    def take_destroyed_sessions(self) -> list[str]:
        """The sessions the last ``apply`` destroyed (explicitly, or by invalidation), so
        the leader can drop their TTL timers without scanning them all."""
        out, self._destroyed = self._destroyed, []
        return out

    def take_changes(self) -> list[WatchKey]:
        """The watch keys the last ``apply`` touched (empty after a rejection)."""
        out = list(self._changed)
        self._changed = {}
        return out

    def snapshot(self) -> dict[str, Any]:
        """All durable state as a plain, msgpack-encodable value. Entries are shared with
        the live store (they are never mutated), so this is cheap; encode it before the
        next apply if it must outlive it."""
        return {
            "Version": SNAPSHOT_VERSION,
            "Index": self.index,
            "TableIndex": dict(self.table_index),
            "KeyIndex": [[k[0], k[1], v] for k, v in self.key_index.items()],
            "Nodes": list(self.nodes.values()),
            "Services": [[n, list(svcs.values())] for n, svcs in self.services.items() if svcs],
            "Checks": [[n, list(chks.values())] for n, chks in self.checks.items() if chks],
            "KV": list(self.kv.values()),
            "Tombstones": [[k, v] for k, v in self.graveyard.items()],
            "Sessions": list(self.sessions.values()),
            "Coordinates": list(self.coords.values()),
            "Operator": dict(self.operator),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace all state with a :meth:`snapshot` (possibly decoded from msgpack)."""
        if snap.get("Version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {snap.get('Version')!r}")
        self._clear()
        self.lock_delay = {}
        self.index = int(snap["Index"])
        self.table_index.update({str(k): int(v) for k, v in snap["TableIndex"].items()})
        self.key_index = {(str(a), str(b)): int(v) for a, b, v in snap["KeyIndex"]}
        for node in snap["Nodes"]:
            self.nodes[node["Node"].lower()] = node
        for lower, svcs in snap["Services"]:
            for svc in svcs:
                sid = svc["ID"].lower()
                self.services.setdefault(lower, {})[sid] = svc
                self.service_nodes.setdefault(svc["Service"].lower(), {})[(lower, sid)] = None
        for lower, chks in snap["Checks"]:
            for chk in chks:
                self.checks.setdefault(lower, {})[chk["CheckID"].lower()] = chk
        for ent in snap["KV"]:
            self.kv[ent["Key"]] = ent
            if ent.get("Session"):
                self.kv_by_session.setdefault(ent["Session"], {})[ent["Key"]] = None
        for k, v in snap["Tombstones"]:
            self.graveyard[k] = v
        for sess in snap["Sessions"]:
            self._index_session(sess)
        for c in snap["Coordinates"]:
            self.coords[(c["Node"].lower(), c.get("Segment", ""))] = c
        self.operator = {str(k): v for k, v in (snap.get("Operator") or {}).items()}

    def _index_session(self, sess: dict[str, Any]) -> None:
        sid = sess["ID"]
        self.sessions[sid] = sess
        lower = sess["Node"].lower()
        self.sessions_by_node.setdefault(lower, {})[sid] = None
        for check_id in _session_check_ids(sess):
            self.sessions_by_check.setdefault((lower, check_id.lower()), {})[sid] = None

    # ================================================================== journal

    def _put(self, table: Any, key: Any, value: Any) -> None:
        old = table.get(key, _MISSING)
        table[key] = value
        if self._undo is not None:
            self._undo.append(lambda: _restore(table, key, old))

    def _pop(self, table: Any, key: Any) -> Any:
        old = table.get(key, _MISSING)
        if old is _MISSING:
            return None
        del table[key]
        if self._undo is not None:
            self._undo.append(lambda: _restore(table, key, old))
        return old

    def _sub(self, table: dict[Any, dict[Any, Any]], key: Any) -> dict[Any, Any]:
        """The inner dict ``table[key]``, created (journaled) when missing. Inner dicts of
        secondary indexes are mutated in place through _put/_pop, which journal them."""
        inner = table.get(key)
        if inner is None:
            inner = {}
            self._put(table, key, inner)
        return inner

    def _rollback(self) -> None:
        undo = self._undo or []
        for fn in reversed(undo):
            fn()
        self._undo = None
        self._changed = {}
        self._destroyed = []

    def _touch(self, *keys: WatchKey) -> None:
        cur = self._cur
        for key in keys:
            if key[0] == "table":
                self._put(self.table_index, key[1], cur)
            elif key[0] != "kv":
                self._put(self.key_index, key, cur)
            self._changed[key] = None

    def _touch_node(self, lower: str, services_too: bool) -> None:
        """A change to a node, or to something that decides the health of everything on it
        (a node-level check): wake node reads and, when asked, every service on it."""
        self._touch(("node", lower))
        if services_too:
            for svc in self.services.get(lower, {}).values():
                self._touch(("service", svc["Service"].lower()))

    # ================================================================== catalog writes

    def _op_register(self, cmd: dict[str, Any]) -> bool:
        name = cmd["Node"]
        if not isinstance(name, str) or not name:
            raise CommandRejected("Must provide node")
        lower = name.lower()
        existing = self.nodes.get(lower)
        if not cmd.get("SkipNodeUpdate") or existing is None:
            self._ensure_node(cmd, existing)
        svc = cmd.get("Service")
        if svc:
            self._ensure_service(lower, name, svc)
        for chk in cmd.get("Checks") or ():
            self._ensure_check(lower, name, chk)
        return True

    def _ensure_node(self, cmd: dict[str, Any], existing: dict[str, Any] | None) -> None:
        name = cmd["Node"]
        lower = name.lower()
        address = cmd.get("Address") or ""
        if not address:
            raise CommandRejected("Must provide address")
        node_id = cmd.get("ID") or ""
        if node_id:
            for other in self.nodes.values():
                if other["ID"] == node_id and other["Node"].lower() != lower:
                    raise CommandRejected(
                        f'failed inserting node: Error while renaming Node ID: "{node_id}": '
                        f"Node name {name} is reserved by node {node_id} with name "
                        f"{other['Node']}"
                    )
        node = {
            "ID": node_id,
            "Node": name,
            "Address": address,
            "Datacenter": cmd.get("Datacenter") or "",
            "TaggedAddresses": dict(cmd.get("TaggedAddresses") or {}) or None,
            "Meta": dict(cmd.get("NodeMeta") or {}) or None,
            "CreateIndex": self._cur,
            "ModifyIndex": self._cur,
        }
        if existing is not None:
            if not node_id:
                node["ID"] = existing["ID"]
            if _same(existing, node, ("CreateIndex", "ModifyIndex")):
                return
            node["CreateIndex"] = existing["CreateIndex"]
        self._put(self.nodes, lower, node)
        self._touch(("table", "nodes"))
        self._touch_node(lower, services_too=True)

    def _ensure_service(self, lower: str, node: str, svc: dict[str, Any]) -> None:
        if lower not in self.nodes:
            raise CommandRejected(f"Missing node registration for {node!r}")
        sid = svc.get("ID") or svc.get("Service") or ""
        if not svc.get("Service"):
            raise CommandRejected("Must provide service name")
        entry = dict(svc)
        entry["ID"] = sid
        entry["CreateIndex"] = self._cur
        entry["ModifyIndex"] = self._cur
        key = sid.lower()
        name = entry["Service"].lower()
        old = self.services.get(lower, {}).get(key)
        if old is not None:
            if _same(old, entry, ("CreateIndex", "ModifyIndex")):
                return
            entry["CreateIndex"] = old["CreateIndex"]
            if old["Service"].lower() != name:
                self._drop_service_name(old["Service"], lower, key)
        self._put(self._sub(self.services, lower), key, entry)
        self._put(self._sub(self.service_nodes, name), (lower, key), None)
        self._touch(("table", "services"), ("service", name), ("node", lower))

    def _drop_service_name(self, name: str, lower: str, sid: str) -> None:
        name = name.lower()
        members = self.service_nodes.get(name)
        if members is None:
            return
        self._pop(members, (lower, sid.lower()))
        if not members:
            self._pop(self.service_nodes, name)
        self._touch(("service", name))

    def _ensure_check(self, lower: str, node: str, chk: dict[str, Any]) -> None:
        if lower not in self.nodes:
            raise CommandRejected(f"Missing node registration for {node!r}")
        check_id = chk.get("CheckID") or chk.get("Name") or ""
        if not check_id:
            raise CommandRejected("Missing check ID")
        if chk.get("Node") and str(chk["Node"]).lower() != lower:
            raise CommandRejected("Check node does not match node name")
        status = chk.get("Status") or "critical"
        if not isinstance(status, str):
            raise CommandRejected("Check status must be a string")
        # Consul stores whatever status catalog register sends; the agent's own checks
        # only ever report passing, warning or critical.
        entry = {
            "Node": self.nodes[lower]["Node"],
            "CheckID": check_id,
            "Name": chk.get("Name") or "",
            "Status": status,
            "Notes": chk.get("Notes") or "",
            "Output": chk.get("Output") or "",
            "ServiceID": chk.get("ServiceID") or "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": chk.get("Type") or "",
            "Interval": chk.get("Interval") or "",
            "Timeout": chk.get("Timeout") or "",
            "ExposedPort": chk.get("ExposedPort") or 0,
            "Definition": dict(chk.get("Definition") or {}),
            "CreateIndex": self._cur,
            "ModifyIndex": self._cur,
        }
        sid = entry["ServiceID"]
        if sid:
            svc = self.services.get(lower, {}).get(sid.lower())
            if svc is None:
                raise CommandRejected(f'Unknown service ID "{sid}" for check ID "{check_id}"')
            entry["ServiceName"] = svc["Service"]
            entry["ServiceTags"] = list(svc.get("Tags") or [])
        key = check_id.lower()
        old = self.checks.get(lower, {}).get(key)
        if old is not None:
            if _same(old, entry, ("CreateIndex", "ModifyIndex")):
                return
            entry["CreateIndex"] = old["CreateIndex"]
            if old["ServiceName"] and old["ServiceName"] != entry["ServiceName"]:
                self._touch(("service", old["ServiceName"].lower()))
        self._put(self._sub(self.checks, lower), key, entry)
        self._touch(("table", "checks"))
        if sid:
            self._touch(("node", lower), ("service", entry["ServiceName"].lower()))
        else:
            self._touch_node(lower, services_too=True)
        if status == "critical":
            # Consul's ensureCheckTxn: a critical check invalidates the sessions bound to it
            for session_id in list(self.sessions_by_check.get((lower, key), {})):
                self._destroy_session(session_id)

    def _op_deregister(self, cmd: dict[str, Any]) -> bool:
        name = cmd["Node"]
        if not isinstance(name, str) or not name:
            raise CommandRejected("Must provide node")
        lower = name.lower()
        if lower not in self.nodes:
            return True  # Consul: deregistering what is not there is not an error
        if cmd.get("ServiceID"):
            self._delete_service(lower, cmd["ServiceID"])
        elif cmd.get("CheckID"):
            self._delete_check(lower, cmd["CheckID"])
        else:
            self._delete_node(lower)
        return True

    def _delete_service(self, lower: str, sid: str) -> None:
        sid = sid.lower()
        svc = self.services.get(lower, {}).get(sid)
        if svc is None:
            return
        for check_id, chk in list(self.checks.get(lower, {}).items()):
            if chk["ServiceID"].lower() == sid:
                self._delete_check(lower, check_id)
        self._pop(self.services[lower], sid)
        if not self.services[lower]:
            self._pop(self.services, lower)
        self._drop_service_name(svc["Service"], lower, sid)
        self._touch(("table", "services"), ("node", lower))

    def _delete_check(self, lower: str, check_id: str) -> None:
        check_id = check_id.lower()
        chk = self.checks.get(lower, {}).get(check_id)
        if chk is None:
            return
        self._pop(self.checks[lower], check_id)
        if not self.checks[lower]:
            self._pop(self.checks, lower)
        self._touch(("table", "checks"))
        if chk["ServiceName"]:
            self._touch(("node", lower), ("service", chk["ServiceName"].lower()))
        else:
            self._touch_node(lower, services_too=True)
        for session_id in list(self.sessions_by_check.get((lower, check_id), {})):
            self._destroy_session(session_id)

    def _delete_node(self, lower: str) -> None:
        for sid in list(self.services.get(lower, {})):
            self._delete_service(lower, sid)
        for check_id in list(self.checks.get(lower, {})):
            self._delete_check(lower, check_id)
        for key in [k for k in self.coords if k[0] == lower]:
            self._pop(self.coords, key)
            self._touch(("table", "coordinates"))
        for session_id in list(self.sessions_by_node.get(lower, {})):
            self._destroy_session(session_id)
        self._pop(self.nodes, lower)
        self._touch(("table", "nodes"), ("node", lower))

    # ================================================================== KV writes

    def _op_kv(self, cmd: dict[str, Any]) -> bool:
        ok, _ = self._kv_op(cmd, in_txn=False)
        return ok

    def _kv_op(self, op: dict[str, Any], in_txn: bool) -> tuple[bool, dict[str, Any] | None]:
        """One KV operation: (succeeded, the entry to report). Outside a transaction a
        failed CAS or lock is ``False`` (the HTTP API's 200 ``false``); inside one the
        caller turns it into Consul's error text."""
        verb = op["Verb"]
        key = op["Key"]
        if not isinstance(key, str):
            raise CommandRejected("Key must be a string")
        value = op.get("Value")
        if value is not None and not isinstance(value, bytes):
            raise CommandRejected("Value must be bytes")
        flags = int(op.get("Flags") or 0)
        cas = int(op.get("Index") or 0)
        session = op.get("Session") or ""
        existing = self.kv.get(key)
        match verb:
            case "set":
                return True, self._kv_set(key, value, flags, existing)
            case "cas":
                if (cas == 0 and existing is not None) or (
                    cas != 0 and (existing is None or existing["ModifyIndex"] != cas)
                ):
                    return False, None
                return True, self._kv_set(key, value, flags, existing)
            case "delete":
                self._kv_delete(key)
                return True, None
            case "delete-cas":
                if existing is None or existing["ModifyIndex"] != cas:
                    return existing is None, None
                self._kv_delete(key)
                return True, None
            case "delete-tree":
                for k in list(self.kv.irange(minimum=key)):
                    if not k.startswith(key):
                        break
                    self._kv_delete(k)
                return True, None
            case "lock":
                return self._kv_lock(key, value, flags, session, existing)
            case "unlock":
                if not session:
                    raise CommandRejected("missing session")
                if existing is None or existing.get("Session") != session:
                    return False, None
                ent = self._kv_entry(key, value, flags, existing)
                ent["Session"] = ""
                self._kv_store(ent, existing)
                return True, ent
            case _ if in_txn:
                return self._kv_check(verb, key, op, existing)
            case _:
                raise CommandRejected(f"Invalid KV operation {verb!r}")

    def _kv_check(
        self, verb: str, key: str, op: dict[str, Any], existing: dict[str, Any] | None
    ) -> tuple[bool, dict[str, Any] | None]:
        """The read-only transaction verbs; they fail the transaction with Consul's text."""
        match verb:
            case "get":
                if existing is None:
                    raise CommandRejected(f'key "{key}" doesn\'t exist')
                return True, existing
            case "get-tree":
                return True, None
            case "check-index":
                if existing is None:
                    raise CommandRejected(f'key "{key}" doesn\'t exist')
                if existing["ModifyIndex"] != int(op.get("Index") or 0):
                    raise CommandRejected(
                        f"current modify index {existing['ModifyIndex']} != {op.get('Index')}"
                    )
                return True, existing
            case "check-session":
                if existing is None:
                    raise CommandRejected(f'key "{key}" doesn\'t exist')
                if existing.get("Session", "") != (op.get("Session") or ""):
                    raise CommandRejected(
                        f'current session "{existing.get("Session", "")}" != '
                        f'"{op.get("Session") or ""}"'
                    )
                return True, existing
            case "check-not-exists":
                if existing is not None:
                    raise CommandRejected(f'key "{key}" exists')
                return True, None
            case _:
                raise CommandRejected(f"unknown KV verb {verb!r}")

    def _kv_entry(
        self, key: str, value: bytes | None, flags: int, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "Key": key,
            "CreateIndex": existing["CreateIndex"] if existing else self._cur,
            "ModifyIndex": self._cur,
            "LockIndex": existing["LockIndex"] if existing else 0,
            "Flags": flags,
            "Value": value if value else None,
            "Session": existing.get("Session", "") if existing else "",
        }

    def _kv_set(
        self, key: str, value: bytes | None, flags: int, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        ent = self._kv_entry(key, value, flags, existing)
        self._kv_store(ent, existing)
        return ent

    def _kv_store(self, ent: dict[str, Any], existing: dict[str, Any] | None) -> None:
        key = ent["Key"]
        old_session = existing.get("Session", "") if existing else ""
        if old_session != ent["Session"]:
            if old_session:
                held = self.kv_by_session.get(old_session)
                if held is not None:
                    self._pop(held, key)
                    if not held:
                        self._pop(self.kv_by_session, old_session)
            if ent["Session"]:
                self._put(self._sub(self.kv_by_session, ent["Session"]), key, None)
        self._put(self.kv, key, ent)
        if key in self.graveyard:
            self._pop(self.graveyard, key)
        self._touch(("table", "kvs"), ("kv", key))

    def _kv_delete(self, key: str) -> None:
        existing = self.kv.get(key)
        if existing is None:
            return
        if existing.get("Session"):
            held = self.kv_by_session.get(existing["Session"])
            if held is not None:
                self._pop(held, key)
                if not held:
                    self._pop(self.kv_by_session, existing["Session"])
        self._pop(self.kv, key)
        self._put(self.graveyard, key, self._cur)
        self._touch(("table", "kvs"), ("table", "tombstones"), ("kv", key))

    def _kv_lock(
        self,
        key: str,
        value: bytes | None,
        flags: int,
        session: str,
        existing: dict[str, Any] | None,
    ) -> tuple[bool, dict[str, Any] | None]:
        if not session:
            raise CommandRejected("missing session")
        if session not in self.sessions:
            raise CommandRejected(f'invalid session "{session}"')
        if existing is not None and existing.get("Session"):
            if existing["Session"] != session:
                return False, None
            ent = self._kv_entry(key, value, flags, existing)  # re-acquire: LockIndex stays
        else:
            # Consul checks the lock delay in its KVS endpoint, before the command; here it
            # is part of apply so every replica agrees (the command carries Now).
            if self.lock_delay.get(key, 0.0) > self._now:
                return False, None
            ent = self._kv_entry(key, value, flags, existing)
            ent["LockIndex"] = (existing["LockIndex"] if existing else 0) + 1
            ent["Session"] = session
        self._kv_store(ent, existing)
        return True, ent

    def _op_txn(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """All KV operations or none (Consul's txnDispatcher): every operation runs, in
        order, each seeing the ones before it; the errors of all that failed are collected,
        and if there is any the whole command is rejected with :class:`TxnFailed` (the
        journal undoes the ones that took; the HTTP layer answers 409)."""
        ops = cmd["Ops"]
        if not isinstance(ops, list):
            raise CommandRejected("Ops must be a list")
        results: list[dict[str, Any]] = []
        errors: list[tuple[int, str]] = []
        for i, op in enumerate(ops):
            verb = op.get("Verb") if isinstance(op, dict) else None
            key = op.get("Key", "") if isinstance(op, dict) else ""
            try:
                if verb not in C.TXN_KV_VERBS:
                    raise CommandRejected(f'unknown KV verb "{verb}"')
                if verb == "get-tree":
                    results.extend({"KV": e} for e in self._kv_range(key))
                    continue
                ok, ent = self._kv_op(op, in_txn=True)
                if not ok:
                    raise CommandRejected(_txn_failure(verb, key))
            except CommandRejected as e:
                errors.append((i, str(e)))
                continue
            if ent is not None:
                if verb != "get":
                    ent = dict(ent)
                    ent["Value"] = None  # Consul blanks values except for get
                results.append({"KV": ent})
        if errors:
            raise TxnFailed(errors)
        return {"Results": results, "Errors": None}

    # ================================================================== sessions

    def _op_session_create(self, cmd: dict[str, Any]) -> str:
        sess = dict(cmd["Session"])
        sid = sess.get("ID")
        if not isinstance(sid, str) or not sid:
            raise CommandRejected("Session ID must be set by the proposer")
        if sid in self.sessions:
            raise CommandRejected(f"Session ID {sid!r} already exists")
        node = sess.get("Node") or ""
        lower = node.lower()
        if lower not in self.nodes:
            raise CommandRejected("Missing node registration")
        behavior = sess.get("Behavior") or "release"
        if behavior not in SESSION_BEHAVIORS:
            raise CommandRejected(f"Invalid Behavior setting '{behavior}'")
        node_checks = list(sess.get("NodeChecks") or [])
        service_checks = [
            {"ID": c["ID"], "Namespace": c.get("Namespace", "")}
            for c in sess.get("ServiceChecks") or []
        ]
        for check_id in [*node_checks, *(c["ID"] for c in service_checks)]:
            chk = self.checks.get(lower, {}).get(check_id.lower())
            if chk is None:
                raise CommandRejected(f"Missing check '{check_id}' registration")
            if chk["Status"] == "critical":
                raise CommandRejected(f"Check '{check_id}' is in critical state")
        entry = {
            "ID": sid,
            "Name": sess.get("Name") or "",
            "Node": self.nodes[lower]["Node"],
            "LockDelay": int(sess.get("LockDelay") or 0),
            "Behavior": behavior,
            "TTL": sess.get("TTL") or "",
            "NodeChecks": node_checks or None,
            "ServiceChecks": service_checks or None,
            "CreateIndex": self._cur,
            "ModifyIndex": self._cur,
        }
        self._put(self.sessions, sid, entry)
        self._put(self._sub(self.sessions_by_node, lower), sid, None)
        for check_id in _session_check_ids(entry):
            self._put(self._sub(self.sessions_by_check, (lower, check_id.lower())), sid, None)
        self._touch(("table", "sessions"))
        return sid

    def _op_session_destroy(self, cmd: dict[str, Any]) -> bool:
        sid = cmd["ID"]
        if not isinstance(sid, str):
            raise CommandRejected("Session ID must be a string")
        self._destroy_session(sid)
        return True

    def _destroy_session(self, sid: str) -> None:
        """Consul's deleteSessionTxn: release or delete what the session holds, start the
        lock delay on those keys, drop the session and its bindings."""
        sess = self.sessions.get(sid)
        if sess is None:
            return
        delay_s = min(sess["LockDelay"], MAX_LOCK_DELAY_NS) / NS_PER_S
        for key in list(self.kv_by_session.get(sid, {})):
            ent = self.kv.get(key)
            if ent is None:
                continue
            if delay_s > 0:
                self._put(self.lock_delay, key, self._now + delay_s)
            if sess["Behavior"] == "delete":
                self._kv_delete(key)
            else:
                new = dict(ent)
                new["Session"] = ""
                new["ModifyIndex"] = self._cur
                self._kv_store(new, ent)
        lower = sess["Node"].lower()
        self._destroyed.append(sid)
        self._pop(self.sessions, sid)
        by_node = self.sessions_by_node.get(lower)
        if by_node is not None:
            self._pop(by_node, sid)
            if not by_node:
                self._pop(self.sessions_by_node, lower)
        for check_id in _session_check_ids(sess):
            bound_key = (lower, check_id.lower())
            bound = self.sessions_by_check.get(bound_key)
            if bound is not None:
                self._pop(bound, sid)
                if not bound:
                    self._pop(self.sessions_by_check, bound_key)
        self._touch(("table", "sessions"))

    # ================================================================== coordinates

    def _op_coordinates(self, cmd: dict[str, Any]) -> bool:
        for upd in cmd["Updates"]:
            lower = str(upd["Node"]).lower()
            if lower not in self.nodes:
                continue  # Consul skips updates for nodes that are gone
            seg = upd.get("Segment") or ""
            entry = {"Node": self.nodes[lower]["Node"], "Segment": seg, "Coord": upd["Coord"]}
            self._put(self.coords, (lower, seg), entry)
            self._touch(("table", "coordinates"))
        return True

    def _op_tombstone_reap(self, cmd: dict[str, Any]) -> bool:
        limit = int(cmd["Index"])
        for key, idx in list(self.graveyard.items()):
            if idx <= limit:
                self._pop(self.graveyard, key)
        return True

    def _op_autopilot_set(self, cmd: dict[str, Any]) -> bool:
        """Consul's AutopilotSetConfig: store the configuration; with ``CAS`` set, only
        when the stored ModifyIndex equals it (0: only when none is stored)."""
        config = cmd["Config"]
        if not isinstance(config, dict):
            raise TypeError("Config must be a map")
        old = self.operator.get("autopilot")
        cas = cmd.get("CAS")
        if cas is not None and int(cas) != (old["ModifyIndex"] if old else 0):
            return False
        created = old["CreateIndex"] if old else self._cur
        self._put(
            self.operator,
            "autopilot",
            {"Config": config, "CreateIndex": created, "ModifyIndex": self._cur},
        )
        self._touch(("table", "autopilot-config"))
        return True

    _OPS: Final[dict[str, Callable[[StateStore, dict[str, Any]], Any]]] = {
        C.OP_REGISTER: _op_register,
        C.OP_DEREGISTER: _op_deregister,
        C.OP_KV: _op_kv,
        C.OP_TXN: _op_txn,
        C.OP_SESSION_CREATE: _op_session_create,
        C.OP_SESSION_DESTROY: _op_session_destroy,
        C.OP_COORDINATES: _op_coordinates,
        C.OP_TOMBSTONE_REAP: _op_tombstone_reap,
        C.OP_AUTOPILOT_SET: _op_autopilot_set,
    }

    # ================================================================== reads

    def _idx(self, *keys: WatchKey) -> int:
        best = 0
        for key in keys:
            v = self.table_index.get(key[1], 0) if key[0] == "table" else self.key_index.get(key, 0)
            best = max(best, v)
        return best

    @staticmethod
    def _nz(index: int) -> int:
        return index if index > 0 else 1

    # ---- catalog

    def catalog_nodes(self) -> Read:
        nodes = sorted(self.nodes.values(), key=lambda n: n["Node"])
        return Read(self._nz(self._idx(("table", "nodes"))), nodes, (("table", "nodes"),))

    def node(self, name: str) -> dict[str, Any] | None:
        return self.nodes.get(name.lower())

    def _node_read_index(self, lower: str) -> tuple[int, tuple[WatchKey, ...]]:
        keys: tuple[WatchKey, ...] = (("node", lower), ("table", "nodes"))
        idx = self._idx(("node", lower))
        return self._nz(idx or self._idx(("table", "nodes"))), keys

    def catalog_node(self, name: str) -> Read:
        """/v1/catalog/node/<n>: ``{"Node": …, "Services": {id: NodeService}}`` or None."""
        lower = name.lower()
        idx, keys = self._node_read_index(lower)
        node = self.nodes.get(lower)
        if node is None:
            return Read(idx, None, keys)
        services = dict(sorted(self.services.get(lower, {}).items()))
        return Read(idx, {"Node": node, "Services": services}, keys)

    def node_services(self, name: str) -> Read:
        """/v1/catalog/node-services/<n>: services as a sorted list."""
        lower = name.lower()
        idx, keys = self._node_read_index(lower)
        node = self.nodes.get(lower)
        if node is None:
            return Read(idx, None, keys)
        services = [v for _, v in sorted(self.services.get(lower, {}).items())]
        return Read(idx, {"Node": node, "Services": services}, keys)

    def catalog_services(self) -> Read:
        """/v1/catalog/services: name -> sorted union of tags (Consul's ServicesTxn)."""
        # grouped by each instance's own spelling, as Consul's ServicesTxn does
        folded: dict[str, dict[str, None]] = {}
        for members in self.service_nodes.values():
            for lower, sid in members:
                svc = self.services[lower][sid]
                tags = folded.setdefault(svc["Service"], {})
                for t in svc.get("Tags") or ():
                    tags[t] = None
        out = {name: sorted(folded[name]) for name in sorted(folded)}
        return Read(self._nz(self._idx(("table", "services"))), out, (("table", "services"),))

    def _service_index(self, name: str) -> tuple[int, tuple[WatchKey, ...]]:
        key: WatchKey = ("service", name.lower())
        idx = self._idx(key) or self._idx(("table", "services"))
        return self._nz(idx), (key, ("table", "services"))

    def _instances(self, name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(node, service) for each instance of ``name``, ordered by node name then ID."""
        members = self.service_nodes.get(name.lower(), {})
        for lower, sid in sorted(members, key=lambda m: (self.nodes[m[0]]["Node"], m[1])):
            yield self.nodes[lower], self.services[lower][sid]

    def catalog_service(self, name: str) -> Read:
        """/v1/catalog/service/<s>: Consul's ServiceNode rows."""
        idx, keys = self._service_index(name)
        rows = [service_node(node, svc) for node, svc in self._instances(name)]
        return Read(idx, rows, keys)

    def service_health(self, name: str) -> Read:
        """/v1/health/service/<s>: ``[{Node, Service, Checks}]`` with the node's own checks
        first, then the instance's, each group by check ID."""
        idx, keys = self._service_index(name)
        rows = []
        for node, svc in self._instances(name):
            lower = node["Node"].lower()
            chks = self.checks.get(lower, {})
            node_checks = [c for _, c in sorted(chks.items()) if not c["ServiceID"]]
            sid = svc["ID"].lower()
            svc_checks = [c for _, c in sorted(chks.items()) if c["ServiceID"].lower() == sid]
            rows.append({"Node": node, "Service": svc, "Checks": node_checks + svc_checks})
        return Read(idx, rows, keys)

    def connect_service_health(self, name: str) -> Read:
        """/v1/health/connect/<s> and /v1/catalog/connect/<s>: the Connect-capable
        instances for ``name``: ``connect-proxy`` services whose
        ``Proxy.DestinationServiceName`` is ``name`` and Connect-native instances of it
        (Consul's connect index). Rows shaped as :meth:`service_health`'s. Watched at the
        table level: a proxy's own name differs from the service it fronts."""
        keys: tuple[WatchKey, ...] = (
            ("table", "services"),
            ("table", "checks"),
            ("table", "nodes"),
        )
        found: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        for lower, svcs in self.services.items():
            for sid, svc in svcs.items():
                proxy = svc.get("Proxy") or {}
                connect = svc.get("Connect") or {}
                if (
                    svc.get("Kind") == "connect-proxy"
                    and str(proxy.get("DestinationServiceName", "")).lower() == name.lower()
                ) or (connect.get("Native") and svc["Service"].lower() == name.lower()):
                    found.append((self.nodes[lower]["Node"], sid, self.nodes[lower], svc))
        rows = []
        for _, _, node, svc in sorted(found, key=lambda f: (f[0], f[1])):
            chks = self.checks.get(node["Node"].lower(), {})
            node_checks = [c for _, c in sorted(chks.items()) if not c["ServiceID"]]
            sid = svc["ID"].lower()
            svc_checks = [c for _, c in sorted(chks.items()) if c["ServiceID"].lower() == sid]
            rows.append({"Node": node, "Service": svc, "Checks": node_checks + svc_checks})
        return Read(self._nz(self._idx(*keys)), rows, keys)

    def service_checks(self, name: str) -> Read:
        """/v1/health/checks/<s>: every check of every instance of the service."""
        idx, keys = self._service_index(name)
        out: list[dict[str, Any]] = []
        for node, svc in self._instances(name):
            chks = self.checks.get(node["Node"].lower(), {})
            sid = svc["ID"].lower()
            out.extend(c for _, c in sorted(chks.items()) if c["ServiceID"].lower() == sid)
        return Read(idx, out, keys)

    def node_checks(self, name: str) -> Read:
        lower = name.lower()
        idx, keys = self._node_read_index(lower)
        chks = [c for _, c in sorted(self.checks.get(lower, {}).items())]
        return Read(idx, chks, keys)

    def checks_in_state(self, state: str) -> Read:
        """/v1/health/state/<state>; ``any`` for all. Ordered by node, then check ID."""
        out = []
        for lower in sorted(self.checks, key=lambda n: self.nodes[n]["Node"]):
            for _, c in sorted(self.checks[lower].items()):
                if state == "any" or c["Status"] == state:
                    out.append(c)
        return Read(self._nz(self._idx(("table", "checks"))), out, (("table", "checks"),))

    def check(self, node: str, check_id: str) -> dict[str, Any] | None:
        return self.checks.get(node.lower(), {}).get(check_id.lower())

    def node_service(self, node: str, service_id: str) -> dict[str, Any] | None:
        return self.services.get(node.lower(), {}).get(service_id.lower())

    # ---- KV

    def kv_get(self, key: str) -> Read:
        """One entry; the index is its ModifyIndex, or the table's when missing (Consul's
        KVS.Get)."""
        ent = self.kv.get(key)
        watch: tuple[WatchKey, ...] = (("kv", key),)
        if ent is not None:
            return Read(ent["ModifyIndex"], ent, watch)
        idx = self._idx(("table", "kvs"), ("table", "tombstones"))
        return Read(self._nz(idx), None, watch)

    def _kv_range(self, prefix: str) -> list[dict[str, Any]]:
        out = []
        for k in self.kv.irange(minimum=prefix):
            if not k.startswith(prefix):
                break
            out.append(self.kv[k])
        return out

    def _prefix_index(self, prefix: str, entries: list[dict[str, Any]]) -> int:
        """Consul's kvsListTxn: the highest ModifyIndex under the prefix, tombstones
        included; the table index for the empty prefix or when nothing is there."""
        table = self._idx(("table", "kvs"), ("table", "tombstones"))
        if not prefix:
            return self._nz(table)
        best = max((e["ModifyIndex"] for e in entries), default=0)
        for k in self.graveyard.irange(minimum=prefix):
            if not k.startswith(prefix):
                break
            best = max(best, self.graveyard[k])
        return self._nz(best or table)

    def kv_list(self, prefix: str) -> Read:
        entries = self._kv_range(prefix)
        return Read(self._prefix_index(prefix, entries), entries, (("kvprefix", prefix),))

    def kv_keys(self, prefix: str, separator: str = "") -> Read:
        """Keys under ``prefix``; with a separator, everything past the first separator
        after the prefix is folded into one ``prefix…sep`` entry (Consul's KVS.ListKeys)."""
        entries = self._kv_range(prefix)
        keys: list[str] = []
        last = ""
        for e in entries:
            k = e["Key"]
            if separator:
                cut = k.find(separator, len(prefix))
                if cut >= 0:
                    k = k[: cut + len(separator)]
            if k != last:
                keys.append(k)
                last = k
        return Read(self._prefix_index(prefix, entries), keys, (("kvprefix", prefix),))

    # ---- sessions

    def _sessions_index(self) -> int:
        return self._nz(self._idx(("table", "sessions")))

    def session_get(self, sid: str) -> Read:
        sess = self.sessions.get(sid)
        return Read(self._sessions_index(), sess, (("table", "sessions"),))

    def session_list(self) -> Read:
        out = sorted(self.sessions.values(), key=lambda s: s["ID"])
        return Read(self._sessions_index(), out, (("table", "sessions"),))

    def node_sessions(self, node: str) -> Read:
        ids = self.sessions_by_node.get(node.lower(), {})
        out = sorted((self.sessions[s] for s in ids), key=lambda s: s["ID"])
        return Read(self._sessions_index(), out, (("table", "sessions"),))

    # ---- coordinates

    def coordinate_list(self) -> Read:
        out = [v for _, v in sorted(self.coords.items())]
        return Read(self._nz(self._idx(("table", "coordinates"))), out, (("table", "coordinates"),))

    def node_coordinates(self, node: str) -> Read:
        lower = node.lower()
        out = [v for k, v in sorted(self.coords.items()) if k[0] == lower]
        return Read(self._nz(self._idx(("table", "coordinates"))), out, (("table", "coordinates"),))


class TxnFailed(CommandRejected):
    """A transaction failed; ``errors`` are (OpIndex, What) pairs, Consul's TxnError."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"op {i}: {w}" for i, w in errors))
        self.errors = errors


def _txn_failure(verb: str, key: str) -> str:
    """Consul's txnKVS error texts for a CAS or lock that did not take."""
    if verb == "cas":
        return f'failed to set key "{key}", index is stale'
    if verb == "delete-cas":
        return f'failed to delete key "{key}", index is stale'
    if verb == "lock":
        return f'failed to lock key "{key}", lock is already held'
    if verb == "unlock":
        return f'failed to unlock key "{key}", lock isn\'t held, or is held by another session'
    return f'failed KV operation "{verb}" on key "{key}"'


def _restore(table: Any, key: Any, old: Any) -> None:
    if old is _MISSING:
        table.pop(key, None)
    else:
        table[key] = old


def _same(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...]) -> bool:
    keys = (set(a) | set(b)) - set(ignore)
    return all(a.get(k) == b.get(k) for k in keys)


def _session_check_ids(sess: dict[str, Any]) -> list[str]:
    ids = list(sess.get("NodeChecks") or [])
    ids.extend(c["ID"] for c in sess.get("ServiceChecks") or [])
    return ids


def service_node(node: dict[str, Any], svc: dict[str, Any]) -> dict[str, Any]:
    """Consul's structs.ServiceNode: a service instance flattened with its node."""
    return {
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"],
        "TaggedAddresses": node["TaggedAddresses"],
        "NodeMeta": node["Meta"],
        "ServiceKind": svc.get("Kind", ""),
        "ServiceID": svc["ID"],
        "ServiceName": svc["Service"],
        "ServiceTags": svc.get("Tags") or [],
        "ServiceAddress": svc.get("Address", ""),
        "ServiceTaggedAddresses": svc.get("TaggedAddresses"),
        "ServiceWeights": svc.get("Weights") or {"Passing": 1, "Warning": 1},
        "ServiceMeta": svc.get("Meta") or {},
        "ServicePort": svc.get("Port", 0),
        "ServiceEnableTagOverride": svc.get("EnableTagOverride", False),
        "ServiceProxy": svc.get("Proxy") or {},
        "ServiceConnect": svc.get("Connect") or {},
        "CreateIndex": svc["CreateIndex"],
        "ModifyIndex": svc["ModifyIndex"],
    }
