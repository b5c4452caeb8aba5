"""Go's ``regexp.MatchString`` for patterns that arrive from the network or from users.

Serf query tag filters and Consul event filters are Go regular expressions, evaluated by
whoever receives them. Go's regexp is RE2: linear time, no backreferences. Python's ``re``
backtracks, so a 100-byte filter such as ``(.?){400}x`` can pin a core for minutes, and
odd repetition counts raise OverflowError. We therefore use RE2 itself (google-re2), which
also gives Go's syntax and semantics. It is imported on first use: most agents never
evaluate a filter, and the import costs 2.5 MB of RSS.

Rules: a pattern longer than ``PATTERN_BYTES_MAX`` or that RE2 rejects raises
:class:`RegexpError`; matching never raises; compiled patterns are cached (bounded).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["PATTERN_BYTES_MAX", "RegexpError", "compile_check", "search"]

PATTERN_BYTES_MAX = 4096
_MAX_MEM = 8 << 20
"""RE2's memory budget per compiled pattern (its default is 8 MiB too)."""


class RegexpError(ValueError):
    """The pattern is not a valid Go (RE2) regular expression."""


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    if len(pattern.encode("utf-8", "surrogateescape")) > PATTERN_BYTES_MAX:
        raise RegexpError(f"regexp too long (over {PATTERN_BYTES_MAX} bytes)")
    import re2

    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = _MAX_MEM
    try:
        return re2.compile(pattern, opts)
    except Exception as e:  # re2.error, and anything odd from the C++ side
        msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise RegexpError(f"error parsing regexp: {msg}") from None


def compile_check(pattern: str) -> None:
    """Raise RegexpError if ``pattern`` is not a valid Go regular expression."""
    _compiled(pattern)


def search(pattern: str, text: str) -> bool:
    """Go's ``regexp.MatchString(pattern, text)``: does the pattern match anywhere in text?"""
    return _compiled(pattern).search(text) is not None
