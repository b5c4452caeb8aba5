"""SWIM + Lifeguard gossip membership that speaks memberlist's wire protocol (Serf 0.9.4).

The public face: :class:`Serf` (the core an agent runs per gossip pool), its
:class:`SerfConfig` and :class:`SwimConfig` presets, the events and effects in
:mod:`swim.events`, and the :class:`Keyring`. The asyncio driver is :mod:`swim.aio`.
"""

from swim.config import SwimConfig
from swim.keyring import Keyring
from swim.serf import Serf, SerfConfig, SerfState

__all__ = ["Keyring", "Serf", "SerfConfig", "SerfState", "SwimConfig"]
