"""Raft per datacenter and federation (issue 5 onwards). Nothing here yet."""
