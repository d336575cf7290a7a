"""Counter-based randomness: a value is a pure function of its labels, so a run can start anywhere in
simulated time (resume) and still draw what an uninterrupted run would have drawn."""

from __future__ import annotations

import hashlib
import math
import random


def unit(*labels: object) -> float:
    """A uniform number in [0, 1) named by ``labels``."""
    digest = hashlib.blake2b(":".join(map(str, labels)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def gauss(*labels: object) -> float:
    """A standard normal number named by ``labels`` (Box-Muller)."""
    u1 = max(unit(*labels, "u1"), 1e-12)
    u2 = unit(*labels, "u2")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)


def rng(*labels: object) -> random.Random:
    """A generator seeded by ``labels`` (for drawing a whole day's plan at once)."""
    return random.Random(":".join(map(str, labels)))  # noqa: S311 - simulation, not secrets


def poisson(generator: random.Random, mean: float) -> int:
    """Knuth's method; means here are small (a few events a day)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(generator.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= generator.random()
        if p <= limit:
            return k
        k += 1
