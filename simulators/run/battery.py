"""Battery levels, a pure function of (device, time).

Long-life devices (call buttons, smoke sensors) start at 25-100 % on the world's as-of date and lose
0.05-0.3 % a day; a battery that reaches 5 % is replaced (back to 100 %). Wearables and wristbands are charged
every night from 21:00 to 07:00 (25 %/h) and lose 2-4 %/h (wearable) or 3-5 %/h (GPS wristband) while worn
(07:00-21:00) and 0.5 %/h lying idle; one night in twenty nobody puts them on the charger, so the next day they
start half empty and run low in the afternoon (a device at 0 % is silent until charged). Mains-powered
devices report 100 %.
"""

from __future__ import annotations

from eldercare.simulators.run import noise
from eldercare.simulators.run.clock import DAY, HOUR, day_start, local_day

WORN = ("wearable", "wristband")
IDLE_PER_H = 0.5


class Batteries:
    def __init__(self, *, seed: int, reference: int) -> None:
        self.seed = seed
        self.reference = reference  # ms: the world's as-of date, local midnight

    def level(self, code: str, kind: str, t: int) -> float:
        if kind in WORN:
            return self._worn(code, kind, t)
        if kind in ("button", "smoke"):
            start = 25 + 75 * noise.unit(self.seed, code, "battery0")
            per_day = 0.05 + 0.25 * noise.unit(self.seed, code, "battery-rate")
            used = (100 - start) + per_day * (t - self.reference) / DAY
            return 100 - used % 95
        return 100.0

    def _drain(self, code: str, kind: str) -> float:
        low = 2.0 if kind == "wearable" else 3.0
        return low + 2.0 * noise.unit(self.seed, code, "drain")

    def _charged(self, code: str, day: int) -> bool:
        """Put on the charger the night that ends on the morning of ``day``."""
        return noise.unit(self.seed, code, "forgot", day) >= 0.05

    def _morning(self, code: str, kind: str, day: int, depth: int = 0) -> float:
        if self._charged(code, day) or depth >= 3:
            return 100.0
        evening = self._morning(code, kind, day - 1, depth + 1) - self._drain(code, kind) * 14
        return max(0.0, evening - IDLE_PER_H * 10)

    def _worn(self, code: str, kind: str, t: int) -> float:
        day = local_day(t)
        hours = (t - day_start(day)) / HOUR
        if hours < 7:  # the charger's window of the night before (21:00-07:00)
            day, hours = day - 1, hours + 24
        morning = self._morning(code, kind, day)
        worn = min(hours, 21) - 7
        level = max(0.0, morning - self._drain(code, kind) * worn)
        if hours >= 21 and self._charged(code, day + 1):
            level = min(100.0, level + 25 * (hours - 21))
        elif hours >= 21:
            level = max(0.0, level - IDLE_PER_H * (hours - 21))
        return level
