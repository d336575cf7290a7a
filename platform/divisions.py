"""Administrative division codes (GB/T 2260) as a region: the one rule every request, query and command applies."""

from __future__ import annotations

from typing import Final

LEVELS: Final = (2, 4, 6, 9)  # province, city, county, township
RULE: Final = "an administrative division code of 2, 4, 6 or 9 digits"


def is_region(code: str) -> bool:
    """A division code of a level: ASCII digits only ("٤٢" and "²²" are digits to ``str.isdigit``, not codes)."""
    return len(code) in LEVELS and code.isascii() and code.isdigit()
