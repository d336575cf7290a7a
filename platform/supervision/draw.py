"""The random draw of 双随机一公开, deterministic from a published seed, so anyone can re-run it.

Algorithm ``hmac-sha256-v1``:

1. The candidate homes are the institution codes (统一社会信用代码) of the region, and the candidate
   inspectors the keys ``U<user id>`` of the region's active regulators; each list is sorted by its
   code points (Python ``sorted``, SQL ``ORDER BY ... COLLATE "C"``) and published with its SHA-256: the
   hex digest of the UTF-8 bytes of the keys joined by ``"\\n"``.
2. Each candidate gets the ticket ``HMAC-SHA256(key = seed as UTF-8, message = "home:" + code)`` (or
   ``"inspector:" + key``), as lower-case hex. Candidates are ranked by (ticket, key); the first k homes
   and the first m inspectors are drawn.
3. Teams: the home drawn i-th (from 0) is inspected by the drawn inspectors at positions
   (i * team_size + j) mod m for j in 0 .. team_size - 1, so every drawn inspector works in turn.

:func:`draw` is all of it; a citizen with the published JSON and ten lines of any language gets the same.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

ALGORITHM = "hmac-sha256-v1"


@dataclass(frozen=True, slots=True)
class Draw:
    homes: list[str]
    inspectors: list[str]
    teams: list[list[str]]  # teams[i] inspects homes[i]
    home_candidates_sha256: str
    inspector_candidates_sha256: str


class DrawError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def canonical(keys: Sequence[str]) -> list[str]:
    return sorted(set(keys))


def list_hash(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def ticket(seed: str, role: str, key: str) -> str:
    return hmac.new(seed.encode(), f"{role}:{key}".encode(), hashlib.sha256).hexdigest()


def _pick(seed: str, role: str, keys: list[str], n: int) -> list[str]:
    return [k for _, k in sorted((ticket(seed, role, k), k) for k in keys)[:n]]


def draw(*, seed: str, homes: Sequence[str], inspectors: Sequence[str], k: int, m: int, team_size: int) -> Draw:
    home_keys, inspector_keys = canonical(homes), canonical(inspectors)
    if k < 1 or k > len(home_keys):
        raise DrawError("homes", f"cannot draw {k} of {len(home_keys)} candidate homes")
    if m < 1 or m > len(inspector_keys):
        raise DrawError("inspectors", f"cannot draw {m} of {len(inspector_keys)} candidate inspectors")
    if team_size < 1 or team_size > m:
        raise DrawError("team_size", f"a team of {team_size} needs at least as many drawn inspectors (m = {m})")
    picked_homes = _pick(seed, "home", home_keys, k)
    picked_inspectors = _pick(seed, "inspector", inspector_keys, m)
    teams = [[picked_inspectors[(i * team_size + j) % m] for j in range(team_size)] for i in range(k)]
    return Draw(picked_homes, picked_inspectors, teams, list_hash(home_keys), list_hash(inspector_keys))
