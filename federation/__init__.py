"""Raft per datacenter and, later, federation across datacenters (issue 5 onwards).

``federation.raft`` is the sans-IO Raft core; the durable log, server RPC and server
agents follow."""
