"""Service catalog, health checks, KV, sessions and the HTTP API (grows with issue 4)."""
