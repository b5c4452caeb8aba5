"""Shared test settings.

Hypothesis runs derandomized (a fixed seed per test) and without an example database, so
a CI failure reproduces on any machine with the same code; set GOSSAMER_HYPOTHESIS=explore
to search with fresh randomness locally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None)
settings.load_profile("explore" if os.environ.get("GOSSAMER_HYPOTHESIS") == "explore" else "ci")
