"""gossamer: Consul's multi-datacenter core in Python.

This package is the kernel (the core contract in :mod:`gossamer.core`), the agent that
composes the protocol cores, its asyncio runtime, and the CLI.
"""

from gossamer.core import Core, Effect, Entropy, Event, TimerExpired, TimerWheel

__all__ = ["Core", "Effect", "Entropy", "Event", "TimerExpired", "TimerWheel", "__version__"]

__version__ = "0.1.0"
