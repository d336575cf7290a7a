"""Simulated time: milliseconds since the Unix epoch (UTC), as on the wire; local time is China's (UTC+8).

The simulated clock runs ``speed`` times as fast as the real one from an anchor: ``sim = sim0 + (real -
real0) * speed``. With no speed (``max``) the engine advances it as fast as it can deliver.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta, timezone

from eldercare.simulators.errors import SimError

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LOCAL_OFFSET = 8 * HOUR
CHINA = timezone(timedelta(hours=8))


def local_day(t: int) -> int:
    """Index of the local (China) calendar day holding ``t``: days since 1970-01-01."""
    return (t + LOCAL_OFFSET) // DAY


def day_start(day: int) -> int:
    """``t`` of local midnight starting day index ``day``."""
    return day * DAY - LOCAL_OFFSET


def day_of_date(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def date_of_day(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


def iso(t: int) -> str:
    """Local ISO 8601 with the offset, to the millisecond: 2026-03-01T02:40:00.000+08:00."""
    return datetime.fromtimestamp(t / 1000, CHINA).isoformat(timespec="milliseconds")


def from_iso(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise SimError(f"{text!r}: give a time zone (e.g. +08:00)")
    return int(moment.timestamp() * 1000)


def real_ms() -> int:
    return time.time_ns() // 1_000_000


_DURATION = re.compile(r"^(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """``90m``, ``1h30m``, ``15d``, ``45s`` -> milliseconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise SimError(f"{text!r} is not a duration such as 45s, 90m, 1h30m or 15d")
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return d * DAY + h * HOUR + m * MINUTE + s * SECOND


def format_duration(ms: int) -> str:
    seconds = ms // 1000
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v) or "0s"


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def clock_of(text: str) -> int:
    """``HH:MM`` -> milliseconds after local midnight."""
    match = _CLOCK.match(text.strip())
    if match is None:
        raise SimError(f"{text!r} is not a time of day HH:MM")
    return int(match.group(1)) * HOUR + int(match.group(2)) * MINUTE


def parse_start(text: str, *, now: int) -> int:
    """When a run starts: ``now``, ``next HH:MM`` (the first such local time from now), ``previous HH:MM``
    (the last one before now), ``previous month`` (local midnight on the 1st of last month),
    ``this month`` (the 1st of this month) or an ISO 8601 instant with its zone."""
    words = text.strip().split()
    if words == ["now"]:
        return now
    if len(words) == 2 and words[0] in ("next", "previous"):
        if words[1] == "month":
            today = date_of_day(local_day(now))
            first = today.replace(day=1)
            if words[0] == "previous":
                first = (first - timedelta(days=1)).replace(day=1)
            else:
                first = (first + timedelta(days=32)).replace(day=1)
            return day_start(day_of_date(first))
        at = clock_of(words[1])
        candidate = day_start(local_day(now)) + at
        if words[0] == "next":
            return candidate if candidate >= now else candidate + DAY
        return candidate if candidate < now else candidate - DAY
    if words == ["this", "month"]:
        return day_start(day_of_date(date_of_day(local_day(now)).replace(day=1)))
    try:
        return from_iso(text)
    except ValueError:
        raise SimError(
            f"start {text!r}: give now, next HH:MM, previous HH:MM, previous month, this month or an ISO instant"
        ) from None


def month_end(t: int) -> int:
    """Local midnight after the last day of ``t``'s month."""
    first = date_of_day(local_day(t)).replace(day=1)
    return day_start(day_of_date((first + timedelta(days=32)).replace(day=1)))


def parse_at(text: str, *, start: int, end: int) -> int:
    """When something happens in a run from ``start`` to ``end``: ``+90m`` (after the start), ``HH:MM`` (the
    first such local time at or after the start), ``day N HH:MM`` (day 1 is the start's local date; day -1
    the date of the run's last instant) or an ISO instant."""
    text = text.strip()
    if text.startswith("+"):
        return start + parse_duration(text[1:])
    words = text.split()
    if len(words) == 1 and _CLOCK.match(words[0]):
        candidate = day_start(local_day(start)) + clock_of(words[0])
        return candidate if candidate >= start else candidate + DAY
    if len(words) == 3 and words[0] == "day" and words[1].lstrip("-").isdigit() and int(words[1]) != 0:
        n = int(words[1])
        base = local_day(start) + n - 1 if n > 0 else local_day(end - 1) + n + 1
        return day_start(base) + clock_of(words[2])
    try:
        return from_iso(text)
    except ValueError:
        raise SimError(f"at {text!r}: give +DURATION, HH:MM, day N HH:MM or an ISO instant") from None


class SimClock:
    """Simulated time paced against the real clock (``speed`` x), or free-running (``speed`` None)."""

    def __init__(self, *, sim_ms: int, speed: float | None) -> None:
        if speed is not None and not 0.01 <= speed <= 100_000:
            raise SimError("--speed must be between 0.01 and 100000, or max")
        self.speed = speed
        self._sim0 = sim_ms
        self._real0 = time.monotonic()

    def now(self) -> int:
        if self.speed is None:
            return self._sim0
        return self._sim0 + int((time.monotonic() - self._real0) * 1000 * self.speed)

    def advance(self, sim_ms: int) -> None:
        """Free-running clocks are moved by the engine."""
        if self.speed is None:
            self._sim0 = sim_ms

    def real_seconds(self, sim_ms: int) -> float:
        """Real seconds a stretch of simulated time takes (0 when free-running)."""
        return 0.0 if self.speed is None else sim_ms / 1000 / self.speed

    def rebase(self, sim_ms: int) -> None:
        """Continue from ``sim_ms`` now (after a pause or a resume)."""
        self._sim0 = sim_ms
        self._real0 = time.monotonic()


def utc_date(t: int) -> date:
    return datetime.fromtimestamp(t / 1000, UTC).date()
