"""Consul's ``operator`` verbs: ``operator raft list-peers|remove-peer|transfer-leader`` and
``operator autopilot get-config|set-config``.

Each copies hashicorp/consul's ``command/operator/...`` source for its flags, output,
messages and exit codes, and the ``api`` calls it makes (``api/operator_raft.go``,
``api/operator_autopilot.go``):

- ``raft list-peers`` (listpeers/operator_raft_list.go): a columnize table ``Node  ID
  Address  State  Voter  RaftProtocol  Commit Index  Trails Leader By``; a server with no
  protocol version shows ``<=1``; the leader trails by ``-``, others by ``N commits``
  (``1 commit``). ``-stale`` asks any server.
- ``raft remove-peer`` (removepeer/operator_raft_remove.go): exactly one of ``-address``
  and ``-id``; prints ``Removed peer with address "…"`` (or ``id``).
- ``raft transfer-leader`` (transferleader/transfer_leader.go): prints ``Success``; its
  error texts keep Consul's spelling (``Error transfering leadership: Failed to transfer
  leadership <error>``, no colon after "leadership", as Consul prints it).
- ``autopilot get-config`` and ``set-config`` (autopilot/get, autopilot/set): ``Name =
  value`` lines; set-config reads the configuration, changes the flags given, and writes
  it back with ``?cas=`` its ModifyIndex: ``Configuration updated!`` or, exit 1,
  ``Configuration could not be atomically updated, please try again`` (on stdout, as
  Consul's command prints it).

Deliberate differences, each a Consul bug: transfer-leader sends ``-id`` (some Consul
releases define the flag and drop it); list-peers shows ``0 commits`` for a server ahead of
the leader's recorded index, where Consul's unsigned subtraction prints 18446744073709551615.
``operator autopilot state`` is not here (gossamer's agent does not serve
``/v1/operator/autopilot/state`` yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gossamer.cli import (
    ApiClient,
    ApiError,
    CommandError,
    Flag,
    FlagKind,
    Verb,
    _as_dict,
    _as_int,
    _as_str,
    _Context,
    _out,
    columnize,
)
from gossamer.duration import format_duration, parse_duration_ns
from gossamer.duration import go_quote as _go_quote

__all__ = ["VERBS"]

_RAFT_CONFIGURATION = "/v1/operator/raft/configuration"
_RAFT_PEER = "/v1/operator/raft/peer"
_RAFT_TRANSFER = "/v1/operator/raft/transfer-leader"
_AUTOPILOT_CONFIGURATION = "/v1/operator/autopilot/configuration"


def _stale(ctx: _Context) -> list[tuple[str, str]]:
    return [("stale", "")] if ctx.flags.get_bool("stale") else []


def _go_bool(value: object) -> str:
    """``%v`` of a Go bool decoded from JSON (anything but true is false)."""
    return "true" if value is True else "false"


def _decode(data: bytes) -> object:
    try:
        decoded: object = json.loads(data)
    except ValueError as e:
        raise ApiError(f"invalid JSON in response: {e}") from None
    return decoded


# --------------------------------------------------------------------------------------
# operator raft
# --------------------------------------------------------------------------------------


def _run_list_peers(ctx: _Context) -> int:
    api = ctx.client()
    try:
        raw = api.call_json("GET", _RAFT_CONFIGURATION, _stale(ctx))
    except ApiError as e:
        raise CommandError(
            f"Error getting peers: Failed to retrieve raft configuration: {e}"
        ) from None
    listed = _as_dict(raw).get("Servers")
    servers = [_as_dict(s) for s in listed] if isinstance(listed, list) else []
    last_index = {_as_str(s.get("ID")): _as_int(s.get("LastIndex")) for s in servers}
    leader_index = 0
    for s in servers:
        if s.get("Leader") is True:
            leader_index = last_index[_as_str(s.get("ID"))]
    header = ("Node", "ID", "Address", "State", "Voter", "RaftProtocol", "Commit Index")
    rows = ["\x1f".join((*header, "Trails Leader By"))]
    for s in servers:
        protocol = _as_str(s.get("ProtocolVersion")) or "<=1"
        leader = s.get("Leader") is True
        index = last_index[_as_str(s.get("ID"))]
        behind = max(0, leader_index - index)
        trails = "-" if leader else ("1 commit" if behind == 1 else f"{behind} commits")
        cells = (
            _as_str(s.get("Node")),
            _as_str(s.get("ID")),
            _as_str(s.get("Address")),
            "leader" if leader else "follower",
            _go_bool(s.get("Voter")),
            protocol,
            str(_as_int(s.get("LastIndex"))),
            trails,
        )
        rows.append("\x1f".join(cells))
    _out(columnize(rows))
    return 0


def _run_remove_peer(ctx: _Context) -> int:
    f = ctx.flags
    address, server_id = f.get_str("address"), f.get_str("id")
    if not address and not server_id:
        raise CommandError(
            "Error removing peer: an address or id is required for the peer to remove"
        )
    if address and server_id:
        raise CommandError("Error removing peer: cannot give both an address and id")
    api = ctx.client()
    param = ("address", address) if address else ("id", server_id)
    try:
        api.call("DELETE", _RAFT_PEER, [param])
    except ApiError as e:
        raise CommandError(f"Error removing peer: {e}") from None
    if address:
        _out(f"Removed peer with address {_go_quote(address)}")
    else:
        _out(f"Removed peer with id {_go_quote(server_id)}")
    return 0


def _run_transfer_leader(ctx: _Context) -> int:
    api = ctx.client()
    server_id = ctx.flags.get_str("id")
    params = _stale(ctx) + ([("id", server_id)] if server_id else [])
    try:
        reply = _as_dict(_decode(api.call("POST", _RAFT_TRANSFER, params)))
    except ApiError as e:
        raise CommandError(
            f"Error transfering leadership: Failed to transfer leadership {e}"
        ) from None
    if reply.get("Success") is not True:
        raise CommandError("Error transfering leadership: Failed to transfer leadership")
    _out("Success")
    return 0


# --------------------------------------------------------------------------------------
# operator autopilot
# --------------------------------------------------------------------------------------


def _duration_ns(value: object) -> int:
    """``api.ReadableDuration`` as the client decodes it: a Go duration string, or a
    number of nanoseconds; anything else is an error, as Go's decoder says."""
    if isinstance(value, str):
        return parse_duration_ns(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if value is None:
        return 0
    raise ValueError(f"cannot decode {value!r} as a duration")


def _get_config(api: ApiClient, params: list[tuple[str, str]]) -> dict[str, object]:
    try:
        return _as_dict(api.call_json("GET", _AUTOPILOT_CONFIGURATION, params))
    except ApiError as e:
        raise CommandError(f"Error querying Autopilot configuration: {e}") from None


def _durations(config: dict[str, object]) -> tuple[int, int]:
    try:
        return (
            _duration_ns(config.get("LastContactThreshold")),
            _duration_ns(config.get("ServerStabilizationTime")),
        )
    except ValueError as e:
        raise CommandError(f"Error querying Autopilot configuration: {e}") from None


def _run_autopilot_get(ctx: _Context) -> int:
    config = _get_config(ctx.client(), _stale(ctx))
    last_contact, stabilization = _durations(config)
    _out(f"CleanupDeadServers = {_go_bool(config.get('CleanupDeadServers'))}")
    _out(f"LastContactThreshold = {format_duration(last_contact)}")
    _out(f"MaxTrailingLogs = {_as_int(config.get('MaxTrailingLogs'))}")
    _out(f"MinQuorum = {_as_int(config.get('MinQuorum'))}")
    _out(f"ServerStabilizationTime = {format_duration(stabilization)}")
    _out(f"RedundancyZoneTag = {_go_quote(_as_str(config.get('RedundancyZoneTag')))}")
    _out(f"DisableUpgradeMigration = {_go_bool(config.get('DisableUpgradeMigration'))}")
    _out(f"UpgradeVersionTag = {_go_quote(_as_str(config.get('UpgradeVersionTag')))}")
    return 0


def _run_autopilot_set(ctx: _Context) -> int:
    f = ctx.flags
    api = ctx.client()
    config = _get_config(api, [])
    last_contact, stabilization = _durations(config)
    if f.is_set("last-contact-threshold"):
        last_contact = round(f.get_float("last-contact-threshold") * 1e9)
    if f.is_set("server-stabilization-time"):
        stabilization = round(f.get_float("server-stabilization-time") * 1e9)

    def pick_bool(flag: str, key: str) -> bool:
        return f.get_bool(flag) if f.is_set(flag) else config.get(key) is True

    def pick_int(flag: str, key: str) -> int:
        return f.get_int(flag) if f.is_set(flag) else _as_int(config.get(key))

    def pick_str(flag: str, key: str) -> str:
        return f.get_str(flag) if f.is_set(flag) else _as_str(config.get(key))

    modify_index = _as_int(config.get("ModifyIndex"))
    body = {  # api.AutopilotConfiguration, in its field order
        "CleanupDeadServers": pick_bool("cleanup-dead-servers", "CleanupDeadServers"),
        "LastContactThreshold": format_duration(last_contact),
        "MaxTrailingLogs": pick_int("max-trailing-logs", "MaxTrailingLogs"),
        "MinQuorum": pick_int("min-quorum", "MinQuorum"),
        "ServerStabilizationTime": format_duration(stabilization),
        "RedundancyZoneTag": pick_str("redundancy-zone-tag", "RedundancyZoneTag"),
        "DisableUpgradeMigration": pick_bool(
            "disable-upgrade-migration", "DisableUpgradeMigration"
        ),
        "UpgradeVersionTag": pick_str("upgrade-version-tag", "UpgradeVersionTag"),
        "CreateIndex": _as_int(config.get("CreateIndex")),
        "ModifyIndex": modify_index,
    }
    try:
        data = api.call("PUT", _AUTOPILOT_CONFIGURATION, [("cas", str(modify_index))], body)
    except ApiError as e:
        raise CommandError(f"Error setting Autopilot configuration: {e}") from None
    # api.AutopilotCASConfiguration: strings.Contains(body, "true")
    if b"true" in data:
        _out("Configuration updated!")
        return 0
    _out("Configuration could not be atomically updated, please try again")
    return 1


# --------------------------------------------------------------------------------------
# The verb table
# --------------------------------------------------------------------------------------


def _leaf(
    name: str, synopsis: str, usage: str, run: Callable[[_Context], int], *flags: Flag
) -> Verb:
    return Verb(name, synopsis, usage, run, flags=flags, server_flags=True)


_RAFT_VERBS = (
    _leaf(
        "list-peers",
        "Display the current Raft peer configuration",
        """
Usage: gossamer operator raft list-peers [options]

  Displays the current Raft peer configuration.
""",
        _run_list_peers,
    ),
    _leaf(
        "remove-peer",
        "Remove a gossamer server from the Raft configuration",
        """
Usage: gossamer operator raft remove-peer [options]

  Remove the gossamer server with given -address from the Raft configuration.

  There are rare cases where a peer may be left behind in the Raft quorum even
  though the server is no longer present and known to the cluster. This command
  can be used to remove the failed server so that it is no longer affects the Raft
  quorum. If the server still shows in the output of the "gossamer members" command,
  it is preferable to clean up by simply running "gossamer force-leave" instead of
  this command.
""",
        _run_remove_peer,
        Flag("address", FlagKind.STRING, "The address to remove from the Raft configuration."),
        Flag("id", FlagKind.STRING, "The ID to remove from the Raft configuration."),
    ),
    _leaf(
        "transfer-leader",
        "Transfer raft leadership to another node",
        """
Usage: gossamer operator raft transfer-leader [options]

  Transfer raft leadership to another node.
""",
        _run_transfer_leader,
        Flag("id", FlagKind.STRING, "The ID of the node to transfer leadership to."),
    ),
)

_AUTOPILOT_VERBS = (
    _leaf(
        "get-config",
        "Display the current Autopilot configuration",
        """
Usage: gossamer operator autopilot get-config [options]

  Displays the current Autopilot configuration.
""",
        _run_autopilot_get,
    ),
    _leaf(
        "set-config",
        "Modify the current Autopilot configuration",
        """
Usage: gossamer operator autopilot set-config [options]

  Modifies the current Autopilot configuration.
""",
        _run_autopilot_set,
        Flag(
            "cleanup-dead-servers",
            FlagKind.BOOL,
            "Controls whether gossamer will automatically remove dead servers when new ones "
            "are successfully added. Must be one of `true|false`.",
        ),
        Flag(
            "max-trailing-logs",
            FlagKind.UINT,
            "Controls the maximum number of log entries that a server can trail the leader "
            "by before being considered unhealthy.",
        ),
        Flag(
            "min-quorum",
            FlagKind.UINT,
            "Sets the minimum number of servers required in a cluster before autopilot is "
            "allowed to prune dead servers.",
        ),
        Flag(
            "last-contact-threshold",
            FlagKind.DURATION,
            "Controls the maximum amount of time a server can go without contact from the "
            "leader before being considered unhealthy. Must be a duration value such as "
            "`200ms`.",
        ),
        Flag(
            "server-stabilization-time",
            FlagKind.DURATION,
            "Controls the minimum amount of time a server must be stable in the 'healthy' "
            "state before being added to the cluster. Only takes effect if all servers are "
            "running Raft protocol version 3 or higher. Must be a duration value such as "
            "`10s`.",
        ),
        Flag(
            "redundancy-zone-tag",
            FlagKind.STRING,
            "(Enterprise-only) Controls the node_meta tag name used for separating servers "
            "into different redundancy zones.",
        ),
        Flag(
            "disable-upgrade-migration",
            FlagKind.BOOL,
            "(Enterprise-only) Controls whether gossamer will avoid promoting new servers "
            "until it can perform a migration. Must be one of `true|false`.",
        ),
        Flag(
            "upgrade-version-tag",
            FlagKind.STRING,
            "(Enterprise-only) The node_meta tag to use for version info when performing "
            "upgrade migrations. If left blank, the gossamer version will be used.",
        ),
    ),
)

VERBS: tuple[Verb, ...] = (
    Verb(
        "operator",
        "Provides cluster-level tools for gossamer operators",
        """
Usage: gossamer operator <subcommand> [options]

  Provides cluster-level tools for gossamer operators, such as interacting with
  the Raft subsystem. NOTE: Use this command with extreme caution, as improper
  use could lead to a gossamer outage and even loss of data.

  If ACLs are enabled then a token with operator privileges may be required in
  order to use this command. Requests are forwarded internally to the leader
  if required, so this can be run from any gossamer node in a cluster.

  Run gossamer operator <subcommand> with no arguments for help on that
  subcommand.
""",
        http=False,
        subcommands=(
            Verb(
                "raft",
                "Provides cluster-level tools for gossamer operators",
                """
Usage: gossamer operator raft <subcommand> [options]

The Raft operator command is used to interact with gossamer's Raft subsystem. The
command can be used to verify Raft peers or in rare cases to recover quorum by
removing invalid peers.
""",
                http=False,
                subcommands=_RAFT_VERBS,
            ),
            Verb(
                "autopilot",
                "Provides tools for modifying Autopilot configuration",
                """
Usage: gossamer operator autopilot <subcommand> [options]

  The Autopilot operator command is used to interact with gossamer's Autopilot
  subsystem. The command can be used to view or modify the current configuration.
""",
                http=False,
                subcommands=_AUTOPILOT_VERBS,
            ),
        ),
    ),
)
