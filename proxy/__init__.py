"""The mTLS sidecar proxy (a later issue). Nothing here yet."""
