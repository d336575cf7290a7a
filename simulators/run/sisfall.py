"""Real accelerometer recordings (SisFall, packed at 50 Hz) replayed by simulated wearables.

A. Sucerquia, J. D. López, J. F. Vargas-Bonilla, "SisFall: A Fall and Movement Dataset", Sensors 17(1):198,
2017. The packed subset lives outside the repository (``../shared/data/sisfall``, see its README): counts of
1/256 g, the unit of the contract's ``accel`` message, so samples are replayed as recorded. Falls were
recorded by young adults (SA01-SA15; no elder performed falls), daily activities also by adults aged 60-75
(SE..); wearables replay the elders' activities where the set has them, so false alarms are measured on
elders' movements.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from eldercare.simulators.errors import SimError

HZ: Final = 50
CHUNK: Final = 25  # samples per accel message (0.5 s), as the gateway's evaluation assumes
DEFAULT_PATH: Final = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sisfall" / "sisfall_50hz.npz"
MAX_ACTIVITY_SAMPLES: Final = 30 * HZ  # activities longer than 30 s are cut to their first 30 s


@dataclass(frozen=True, slots=True)
class Trial:
    name: str  # F05_SA03_R02
    subject: str
    activity: str
    is_fall: bool
    samples: int


def default_path() -> Path:
    env = os.environ.get("ELDERCARE_SISFALL")
    return Path(env) if env else DEFAULT_PATH.resolve()


class Recordings:
    """The trials of a packed SisFall file; arrays are read on first use."""

    def __init__(self, path: Path) -> None:
        index = path.with_suffix(".csv")
        if not path.is_file() or not index.is_file():
            raise SimError(f"SisFall recordings not found at {path} (and {index.name} beside it)")
        with index.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        self.path = path
        self.trials = [
            Trial(r["trial"], r["subject"], r["activity"], r["is_fall"] == "1", int(r["samples_50hz"])) for r in rows
        ]
        self.falls = sorted(t.name for t in self.trials if t.is_fall)
        elders = sorted(t.name for t in self.trials if not t.is_fall and t.subject.startswith("SE"))
        self.activities = elders or sorted(t.name for t in self.trials if not t.is_fall)
        self._data: np.lib.npyio.NpzFile | None = None
        self._cache: dict[str, NDArray[np.int16]] = {}

    def samples(self, name: str) -> NDArray[np.int16]:
        """(n, 3) counts of 1/256 g at 50 Hz; activities are cut to 30 s."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if self._data is None:
            self._data = np.load(self.path)
        if name not in self._data.files:
            raise SimError(f"SisFall trial {name} is not in {self.path}")
        array = np.asarray(self._data[name], dtype=np.int16)
        if not name.startswith("F"):
            array = array[:MAX_ACTIVITY_SAMPLES]
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[name] = array
        return array

    def impact(self, name: str) -> int:
        """Index of the largest acceleration (the impact of a fall)."""
        xyz = self.samples(name).astype(np.float64)
        return int(np.argmax(np.sqrt((xyz**2).sum(axis=1))))

    def pick(self, *, fall: bool, u: float) -> str:
        names = self.falls if fall else self.activities
        return names[min(len(names) - 1, int(u * len(names)))]

    def chunks(self, name: str, start_ts: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
        """(ts of the first sample, samples) per chunk of 0.5 s, the trial starting at ``start_ts``."""
        xyz = self.samples(name)
        out = []
        for i in range(0, len(xyz), CHUNK):
            part = xyz[i : i + CHUNK]
            out.append((start_ts + i * 1000 // HZ, [(int(a), int(b), int(c)) for a, b, c in part]))
        return out


def duration_ms(samples: int) -> int:
    return samples * 1000 // HZ
