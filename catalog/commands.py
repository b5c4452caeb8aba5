"""The commands that change the state store: plain, msgpack-encodable values.

Every write to the catalog, KV or sessions is one of these dicts, applied by
:meth:`catalog.store.StateStore.apply` at a log index. On one server the index comes from
a counter (:mod:`catalog.server`); under Raft (the federation issue) it is the index of
the committed entry, and every server applies the same commands in the same order.

Rules:

1. A command holds only ``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``, lists
   and dicts with ``str`` keys, so ``msgpack`` round-trips it exactly.
2. A command carries everything ``apply`` needs, including the proposer's wall-clock time
   ``Now`` (seconds since the epoch) and any generated IDs (session IDs): ``apply`` never
   reads a clock or draws randomness, so every replica computes the same state.
3. Field names are Consul's (``structs.RegisterRequest``, ``structs.KVSRequest``,
   ``structs.SessionRequest``, ``structs.TxnRequest``): the HTTP layer has already
   decoded the client's case-insensitive JSON into these exact spellings.

The builders below are the only place commands are spelled; they validate nothing beyond
their types (the HTTP layer validates input, ``apply`` validates against the state).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KV_VERBS",
    "OP_AUTOPILOT_SET",
    "OP_COORDINATES",
    "OP_DEREGISTER",
    "OP_KV",
    "OP_REGISTER",
    "OP_SESSION_CREATE",
    "OP_SESSION_DESTROY",
    "OP_TOMBSTONE_REAP",
    "OP_TXN",
    "TXN_KV_VERBS",
    "autopilot_set",
    "coordinates",
    "deregister",
    "kv",
    "register",
    "session_create",
    "session_destroy",
    "tombstone_reap",
    "txn",
]

OP_REGISTER = "register"
OP_DEREGISTER = "deregister"
OP_KV = "kv"
OP_TXN = "txn"
OP_SESSION_CREATE = "session-create"
OP_SESSION_DESTROY = "session-destroy"
OP_COORDINATES = "coordinates"
OP_TOMBSTONE_REAP = "tombstone-reap"
OP_AUTOPILOT_SET = "autopilot-set"

KV_VERBS = ("set", "cas", "delete", "delete-cas", "delete-tree", "lock", "unlock")
"""Consul's api.KVOp values accepted by /v1/kv (structs.KVSRequest.Op)."""
TXN_KV_VERBS = (
    *KV_VERBS,
    "get",
    "get-tree",
    "check-index",
    "check-session",
    "check-not-exists",
)
"""The KV verbs a /v1/txn operation may use (api.KVTxnOp)."""


def register(
    now: float,
    node: str,
    address: str,
    *,
    node_id: str = "",
    datacenter: str = "",
    tagged_addresses: dict[str, str] | None = None,
    node_meta: dict[str, str] | None = None,
    service: dict[str, Any] | None = None,
    checks: list[dict[str, Any]] | None = None,
    skip_node_update: bool = False,
) -> dict[str, Any]:
    """structs.RegisterRequest: upsert a node, optionally one service and some checks.
    ``service`` is a NodeService dict (``ID``, ``Service``, ``Tags``, ``Port`` …) and each
    check a HealthCheck dict (``CheckID``, ``Name``, ``Status``, ``ServiceID`` …)."""
    return {
        "Op": OP_REGISTER,
        "Now": now,
        "ID": node_id,
        "Node": node,
        "Address": address,
        "Datacenter": datacenter,
        "TaggedAddresses": dict(tagged_addresses or {}),
        "NodeMeta": dict(node_meta or {}),
        "Service": service,
        "Checks": list(checks or []),
        "SkipNodeUpdate": skip_node_update,
    }


def deregister(now: float, node: str, service_id: str = "", check_id: str = "") -> dict[str, Any]:
    """structs.DeregisterRequest: a service (and its checks), a check, or, with neither, the
    whole node with everything on it."""
    return {
        "Op": OP_DEREGISTER,
        "Now": now,
        "Node": node,
        "ServiceID": service_id,
        "CheckID": check_id,
    }


def kv(
    now: float,
    verb: str,
    key: str,
    value: bytes | None = None,
    *,
    flags: int = 0,
    index: int = 0,
    session: str = "",
) -> dict[str, Any]:
    """structs.KVSRequest: one KV write. ``index`` is the CAS index for ``cas`` and
    ``delete-cas``."""
    return {
        "Op": OP_KV,
        "Now": now,
        "Verb": verb,
        "Key": key,
        "Value": value,
        "Flags": flags,
        "Index": index,
        "Session": session,
    }


def txn(now: float, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """structs.TxnRequest with KV operations only: each op is ``{"Verb", "Key", "Value",
    "Flags", "Index", "Session"}``. All apply or none does."""
    return {"Op": OP_TXN, "Now": now, "Ops": ops}


def session_create(now: float, session: dict[str, Any]) -> dict[str, Any]:
    """structs.SessionRequest{Op: create}. ``session`` has its ``ID`` already (drawn by the
    proposer), ``Name``, ``Node``, ``NodeChecks``, ``ServiceChecks`` (``[{"ID",
    "Namespace"}]``), ``LockDelay`` (nanoseconds, as Consul stores it), ``Behavior`` and
    ``TTL`` (a Go duration string, or "")."""
    return {"Op": OP_SESSION_CREATE, "Now": now, "Session": session}


def session_destroy(now: float, session_id: str) -> dict[str, Any]:
    """structs.SessionRequest{Op: destroy}: also what an expired TTL turns into."""
    return {"Op": OP_SESSION_DESTROY, "Now": now, "ID": session_id}


def coordinates(now: float, updates: list[dict[str, Any]]) -> dict[str, Any]:
    """structs.CoordinateUpdateRequest batch: ``[{"Node", "Segment", "Coord"}]``."""
    return {"Op": OP_COORDINATES, "Now": now, "Updates": updates}


def tombstone_reap(now: float, index: int) -> dict[str, Any]:
    """Drop KV tombstones at or below ``index`` (Consul's TombstoneRequest{Op: reap})."""
    return {"Op": OP_TOMBSTONE_REAP, "Now": now, "Index": index}


def autopilot_set(now: float, config: dict[str, Any], cas: int | None = None) -> dict[str, Any]:
    """structs.AutopilotSetConfigRequest: ``config`` is Consul's AutopilotConfig JSON
    (without the indexes); with ``cas``, a check-and-set on the stored ModifyIndex."""
    return {"Op": OP_AUTOPILOT_SET, "Now": now, "Config": config, "CAS": cas}
