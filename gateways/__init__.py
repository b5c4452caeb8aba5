"""Mesh gateways (a later issue). Nothing here yet."""
