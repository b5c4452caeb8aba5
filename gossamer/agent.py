"""The agent's Consul-shaped logic that needs no I/O: the tags an agent gossips, the JSON
shapes of its HTTP answers, and the text of Consul's errors.

Consul (agent/consul/client.go, server.go setupSerf) puts these tags on every LAN member:
``role`` ("node" for clients, "consul" for servers), ``dc``, ``segment``, ``id`` (node
ID), ``vsn``/``vsn_min``/``vsn_max`` (Consul protocol), ``build`` (version:revision);
servers add ``port`` (server RPC) and a few more. ``consul members`` reads them back.
"""

from __future__ import annotations

import base64
from typing import Any

from gossamer import __version__
from gossamer.config import AgentConfig
from swim.codec import DecodeError, pack, struct_fields, unpack
from swim.coordinate import Coordinate
from swim.events import KeyOperationCompleted, Member

__all__ = [
    "CONSUL_EVENT_PREFIX",
    "CONSUL_PROTOCOL",
    "agent_tags",
    "coordinate_entry",
    "decode_user_event",
    "encode_user_event",
    "event_json",
    "keyring_entry",
    "keyring_errors",
    "member_json",
    "multierror",
    "uuid_to_index",
    "validate_event_name",
]

CONSUL_PROTOCOL = (2, 2, 3)
"""(current, min, max) Consul protocol, the ``vsn`` tags."""
BUILD = f"{__version__}:gossamer"


def agent_tags(config: AgentConfig, node_id: str, server_port: int = 8300) -> dict[str, str]:
    cur, lo, hi = CONSUL_PROTOCOL
    tags = {
        "role": "consul" if config.server else "node",
        "dc": config.datacenter,
        "segment": "",
        "id": node_id,
        "vsn": str(cur),
        "vsn_min": str(lo),
        "vsn_max": str(hi),
        "build": BUILD,
    }
    if config.server:
        tags["port"] = str(server_port)
        tags["raft_vsn"] = "3"
        if config.dev or config.bootstrap_expect == 1:
            tags["bootstrap"] = "1"
        elif config.bootstrap_expect:
            tags["expect"] = str(config.bootstrap_expect)
    return tags


def member_json(m: Member) -> dict[str, Any]:
    """Consul's api.AgentMember."""
    return {
        "Name": m.name,
        "Addr": m.addr,
        "Port": m.port,
        "Tags": dict(m.tags),
        "Status": int(m.status),
        "ProtocolMin": m.protocol_min,
        "ProtocolMax": m.protocol_max,
        "ProtocolCur": m.protocol_cur,
        "DelegateMin": m.delegate_min,
        "DelegateMax": m.delegate_max,
        "DelegateCur": m.delegate_cur,
    }


def coordinate_entry(node: str, c: Coordinate) -> dict[str, Any]:
    """One entry of /v1/coordinate/nodes."""
    return {"Node": node, "Segment": "", "Coord": c.to_wire()}


def keyring_entry(datacenter: str, r: KeyOperationCompleted, wan: bool = False) -> dict[str, Any]:
    """Consul's structs.KeyringResponse as the HTTP API shows it (Error is internal)."""
    return {
        "WAN": wan,
        "Datacenter": datacenter,
        "Segment": "",
        "Messages": dict(r.messages),
        "Keys": dict(r.keys),
        "PrimaryKeys": dict(r.primary_keys),
        "NumNodes": r.num_nodes,
        "Error": r.error,
    }


def keyring_errors(entries: list[dict[str, Any]]) -> str | None:
    """Consul's keyringErrorsOrNil, formatted as hashicorp/go-multierror prints."""
    errs: list[str] = []
    for e in entries:
        if e.get("Error"):
            pool = "WAN" if e["WAN"] else f"{e['Datacenter']} (LAN)"
            errs.append(f"{pool} error: {e['Error']}")
            errs.extend(f"{node}: {msg}" for node, msg in sorted(e["Messages"].items()))
    return multierror(errs) if errs else None


def multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror's ListFormatFunc."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


# --------------------------------------------------------------------------- user events

CONSUL_EVENT_PREFIX = "consul:event:"
"""Consul fires its events as Serf user events named ``consul:event:<name>``
(agent/consul/server_serf.go userEventName); others are not Consul's and are ignored."""
USER_EVENT_VERSION = 1
EVENT_NAME_MAX = 256


def encode_user_event(event: dict[str, Any]) -> bytes:
    """Consul's agent.UserEvent as the msgpack payload of the Serf event (Go field order)."""
    return pack(
        {
            "ID": event["ID"],
            "LTime": 0,
            "Name": event["Name"],
            "NodeFilter": event.get("NodeFilter", ""),
            "Payload": event.get("Payload") or None,
            "ServiceFilter": event.get("ServiceFilter", ""),
            "TagFilter": event.get("TagFilter", ""),
            "Version": USER_EVENT_VERSION,
        }
    )


def decode_user_event(serf_name: str, payload: bytes, ltime: int) -> dict[str, Any] | None:
    """The Consul event inside a Serf user event, or None when it is not one of Consul's."""
    if not serf_name.startswith(CONSUL_EVENT_PREFIX):
        return None
    try:
        f = struct_fields(
            unpack(payload),
            (
                (b"ID", "ID", "str"),
                (b"Name", "Name", "str"),
                (b"Payload", "Payload", "bytes"),
                (b"NodeFilter", "NodeFilter", "str"),
                (b"ServiceFilter", "ServiceFilter", "str"),
                (b"TagFilter", "TagFilter", "str"),
                (b"Version", "Version", "int"),
            ),
        )
    except DecodeError:
        return None
    if f["Version"] > USER_EVENT_VERSION:
        return None
    f["LTime"] = ltime
    return f


def validate_event_name(name: str) -> str | None:
    if not name:
        return "User event name cannot be blank"
    if len(name) > EVENT_NAME_MAX:
        return f"User event name is longer than {EVENT_NAME_MAX} characters"
    return None


def event_json(e: dict[str, Any]) -> dict[str, Any]:
    """Consul's /v1/event/* shape: Payload is base64 (Go []byte), or null when empty."""
    return {
        "ID": e["ID"],
        "Name": e["Name"],
        "Payload": base64.b64encode(e["Payload"]).decode() if e.get("Payload") else None,
        "NodeFilter": e.get("NodeFilter", ""),
        "ServiceFilter": e.get("ServiceFilter", ""),
        "TagFilter": e.get("TagFilter", ""),
        "Version": e.get("Version", USER_EVENT_VERSION),
        "LTime": e.get("LTime", 0),
    }


def uuid_to_index(u: str) -> int:
    """Consul's uuidToUint64: the X-Consul-Index of /v1/event/list is derived from the last
    event's ID."""
    try:
        lower = int(u[0:8] + u[9:13] + u[14:18], 16)
        upper = int(u[19:23] + u[24:36], 16)
    except ValueError:
        return 1
    return (lower ^ upper) or 1
