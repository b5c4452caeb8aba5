"""Agent configuration: what `gossamer agent` is told on its command line.

Field names follow Consul's config keys; the CLI (gossamer/cli.py) maps Consul's flag
spellings onto them (``-serf-lan-port`` -> ``serf_lan_port``). Defaults are Consul's.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from dataclasses import dataclass, field

__all__ = ["AgentConfig", "ConfigError", "decode_gossip_key", "pick_advertise"]

DEFAULT_HTTP_PORT = 8500
DEFAULT_SERF_LAN_PORT = 8301
DEFAULT_SERVER_PORT = 8300


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one line for the user."""


def decode_gossip_key(text: str) -> bytes:
    """A base64 gossip key of 16, 24 or 32 bytes (AES-128/192/256), as ``-encrypt`` takes it."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"Invalid encryption key: {e}") from None
    if len(key) not in (16, 24, 32):
        raise ConfigError(
            f"Invalid encryption key: key size must be 16, 24 or 32 bytes, got {len(key)}"
        )
    return key


@dataclass(frozen=True)
class AgentConfig:
    node_name: str = field(default_factory=socket.gethostname)
    datacenter: str = "dc1"
    bind_addr: str = "0.0.0.0"
    advertise_addr: str | None = None
    """Address other members use to reach us; defaults to bind_addr, or, when that is
    0.0.0.0, the host's one private IPv4 address (Consul's rule; see :func:`pick_advertise`)."""
    serf_lan_port: int = DEFAULT_SERF_LAN_PORT
    http_port: int = DEFAULT_HTTP_PORT
    client_addr: str = "127.0.0.1"
    """Address the HTTP API listens on."""
    data_dir: str | None = None
    retry_join: tuple[str, ...] = ()
    retry_interval_s: float = 30.0
    retry_max: int = 0
    """0 = retry forever, as Consul."""
    encrypt_key: bytes | None = None
    server: bool = False
    dev: bool = False
    leave_on_terminate: bool | None = None
    """None = Consul's default: clients leave on SIGTERM, servers do not."""
    gossip_profile: str = "lan"
    """Memberlist timing preset for the LAN pool: lan, wan or local."""
    log_level: str = "info"
    enable_script_checks: bool = False
    """Run ``Args`` (script) health checks; off by default, as in Consul, because anyone who
    can reach the HTTP API could otherwise run commands on the host."""
    bootstrap_expect: int = 0
    """Servers to wait for before electing a leader; 1 (or ``dev``) makes this server the
    leader at once. Needs ``server``."""
    server_port: int = DEFAULT_SERVER_PORT
    """Server RPC port, gossiped in the ``port`` tag."""
    raft_snapshot_threshold: int = 16384
    """Consul's raft_snapshot_threshold: log entries applied between two snapshots of the
    state store (the log before a snapshot is then compacted)."""
    raft_trailing_logs: int = 10240
    """Consul's raft_trailing_logs: entries kept behind a snapshot, so a follower that
    lags by fewer catches up from the log instead of a whole snapshot."""
    autopilot_dead_server_grace_s: float = 30.0
    """How long a server must be failed in gossip before the leader's autopilot removes it
    from the Raft configuration (its dead-server cleanup; gossamer's setting: Consul
    removes as soon as gossip says failed)."""
    raft_timing: str = "default"
    """Raft's timing preset: ``default`` (1 s election timeout, 100 ms heartbeats) or
    ``low-latency`` (300 ms / 50 ms), federation.raft.RaftConfig."""

    def validate(self) -> None:
        if not self.node_name:
            raise ConfigError("Node name cannot be empty")
        if len(self.node_name) > 128:
            raise ConfigError("Node name is too long (over 128 characters)")
        if not self.datacenter or any(c.isspace() for c in self.datacenter):
            raise ConfigError(f"Invalid datacenter name: {self.datacenter!r}")
        for name, port in (("serf-lan-port", self.serf_lan_port), ("http-port", self.http_port)):
            if not 0 < port < 65536:
                raise ConfigError(f"Invalid -{name}: {port}")
        for name, addr in (("bind", self.bind_addr), ("client", self.client_addr)):
            _check_ip(name, addr)
        if self.advertise_addr is not None:
            _check_ip("advertise", self.advertise_addr)
            if ipaddress.ip_address(self.advertise_addr).is_unspecified:
                raise ConfigError("Advertise address cannot be 0.0.0.0 or ::")
        if self.gossip_profile not in ("lan", "wan", "local"):
            raise ConfigError(f"Unknown gossip profile {self.gossip_profile!r}")
        if self.encrypt_key is not None and len(self.encrypt_key) not in (16, 24, 32):
            raise ConfigError("Invalid encryption key length")
        if self.retry_interval_s <= 0:
            raise ConfigError("-retry-interval must be positive")
        if self.bootstrap_expect < 0:
            raise ConfigError("-bootstrap-expect cannot be negative")
        if self.bootstrap_expect and not self.server:
            raise ConfigError("Bootstrap-expect mode can only be used with server mode")
        if self.autopilot_dead_server_grace_s < 0:
            raise ConfigError("-autopilot-dead-server-grace cannot be negative")
        if self.raft_snapshot_threshold < 1:
            raise ConfigError("-raft-snapshot-threshold must be at least 1")
        if self.raft_trailing_logs < 0:
            raise ConfigError("-raft-trailing-logs cannot be negative")
        if self.raft_timing not in ("default", "low-latency"):
            raise ConfigError(
                f"Invalid -raft-timing: {self.raft_timing!r} (use default or low-latency)"
            )
        if not 0 < self.server_port < 65536:
            raise ConfigError(f"Invalid -server-port: {self.server_port}")

    def advertise(self, host_addrs: list[str]) -> str:
        """The address to gossip; ``host_addrs`` are this host's IPv4 addresses, consulted
        only when neither -advertise nor a specific -bind says."""
        if self.advertise_addr:
            return self.advertise_addr
        if not ipaddress.ip_address(self.bind_addr).is_unspecified:
            return self.bind_addr
        return pick_advertise(host_addrs)

    @property
    def leaves_on_terminate(self) -> bool:
        if self.leave_on_terminate is not None:
            return self.leave_on_terminate
        return not self.server


_PRIVATE_V4 = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
"""RFC 1918 private space and RFC 6598 shared space, as Consul's GetPrivateIP takes them."""


def pick_advertise(host_addrs: list[str]) -> str:
    """Consul's default when bound to 0.0.0.0: the one private IPv4 address of the host
    (RFC 1918 or RFC 6598 shared space); none or several is an error asking for -bind or
    -advertise, because guessing wrong silently splits a cluster."""
    private = sorted(
        {a for a in host_addrs if any(ipaddress.ip_address(a) in net for net in _PRIVATE_V4)},
        key=ipaddress.ip_address,
    )
    if not private:
        raise ConfigError(
            "No private IPv4 address found; set -advertise (or -bind to a specific address)"
        )
    if len(private) > 1:
        raise ConfigError(
            f"Multiple private IPv4 addresses found ({', '.join(private)}). Please configure "
            "one with -bind and/or -advertise."
        )
    return private[0]


def _check_ip(flag: str, addr: str) -> None:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError(f"Invalid -{flag} address: {addr!r} is not an IP address") from None
