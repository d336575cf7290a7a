"""Recordings in the format of ``shared/data/sisfall``: an ``.npz`` of trials and a ``.csv`` index beside it.

Each trial is an int16 array of shape (samples, 3) in counts of 1/256 g at 50 Hz, the y axis vertical. The
index (same stem, ``.csv``) has the columns ``trial, subject, activity, is_fall, samples_50hz``. Subjects
whose code starts with ``SE`` are the elderly ones.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from eldercare.gateway.errors import DataError

COLUMNS: Final = ("trial", "subject", "activity", "is_fall", "samples_50hz")
ELDERLY_PREFIX: Final = "SE"
POSTURE_SAMPLES: Final = 50  # the first and last second of a trial: the posture it starts and ends in
SMOOTH_SAMPLES: Final = 25  # posture averaged over 0.5 s
UPRIGHT_DEG: Final = 30.0
LASTING_CHANGE_DEG: Final = 60.0


@dataclass(frozen=True, slots=True, eq=False)
class Trial:
    name: str
    subject: str
    activity: str
    is_fall: bool
    counts: NDArray[np.int16]  # (samples, 3)

    @property
    def elderly(self) -> bool:
        return self.subject.startswith(ELDERLY_PREFIX)

    def impact_index(self) -> int:
        """The impact of a fall trial: the sample of the largest acceleration magnitude once the fall began.

        SisFall marks no impact, so it is read from the signal. Usually it is the trial's largest magnitude.
        But a stride of the jog or walk before the fall can be larger than the impact on the mat (F05: up to
        4.8 g strides, then a 4.6 g impact 3.6 s later); so when the wearer ends the trial in a posture at
        least :data:`LASTING_CHANGE_DEG` from the one they started in (lying after standing), peaks from
        before they last were in that starting posture (within :data:`UPRIGHT_DEG`, averaged over 0.5 s,
        from half a second before) do not count.
        """
        g = self.counts.astype(np.float64) / 256.0
        mag = np.sqrt(np.einsum("ij,ij->i", g, g))
        largest = int(np.argmax(mag))
        start = _direction(g[:POSTURE_SAMPLES].mean(axis=0))
        end = _direction(g[-POSTURE_SAMPLES:].mean(axis=0))
        if len(g) < 2 * POSTURE_SAMPLES or _degrees(start, end) < LASTING_CHANGE_DEG:
            return largest
        kernel = np.ones(SMOOTH_SAMPLES) / SMOOTH_SAMPLES
        smooth = np.stack([np.convolve(g[:, i], kernel, mode="valid") for i in range(3)], axis=1)
        smooth /= np.linalg.norm(smooth, axis=1, keepdims=True) + 1e-9
        upright = np.flatnonzero(np.degrees(np.arccos(np.clip(smooth @ start, -1.0, 1.0))) < UPRIGHT_DEG)
        fall_began = max(0, int(upright[-1]) - SMOOTH_SAMPLES) if len(upright) else 0
        return largest if largest >= fall_began else fall_began + int(np.argmax(mag[fall_began:]))


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    path: Path
    trials: tuple[Trial, ...]

    @property
    def subjects(self) -> list[str]:
        return sorted({t.subject for t in self.trials})

    def of_subjects(self, subjects: Sequence[str]) -> Dataset:
        wanted = set(subjects)
        return Dataset(self.path, tuple(t for t in self.trials if t.subject in wanted))


def _direction(v: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = v / (float(np.linalg.norm(v)) + 1e-9)
    return result


def _degrees(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(np.degrees(np.arccos(np.clip(float(a @ b), -1.0, 1.0))))


def load(npz_path: Path) -> Dataset:
    index_path = npz_path.with_suffix(".csv")
    if not npz_path.is_file():
        raise DataError(npz_path, "no such file")
    if not index_path.is_file():
        raise DataError(index_path, f"the index of {npz_path.name} is missing (same stem, .csv)")
    with index_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(index_path, f"missing column(s) {', '.join(missing)}")
        rows = list(reader)
    trials: list[Trial] = []
    try:
        with np.load(npz_path, allow_pickle=False) as arrays:
            for line, row in enumerate(rows, start=2):
                name = row["trial"]
                if name not in arrays:
                    raise DataError(index_path, f"line {line}: trial {name!r} is not in {npz_path.name}")
                counts = arrays[name]
                if counts.ndim != 2 or counts.shape[1] != 3:
                    raise DataError(npz_path, f"trial {name!r} has shape {counts.shape}, expected (samples, 3)")
                if row["is_fall"] not in {"0", "1"}:
                    raise DataError(index_path, f"line {line}: is_fall is {row['is_fall']!r}, expected 0 or 1")
                trials.append(Trial(name, row["subject"], row["activity"], row["is_fall"] == "1", counts))
    except (OSError, ValueError) as exc:
        raise DataError(npz_path, f"cannot read: {exc}") from exc
    if not trials:
        raise DataError(index_path, "no trials")
    return Dataset(npz_path, tuple(trials))


def subject_folds(subjects: Sequence[str], k: int, *, seed: int) -> list[list[str]]:
    """``k`` disjoint groups of subjects, shuffled reproducibly; elderly and young spread over the folds."""
    if k < 2 or k > len(subjects):
        raise ValueError(f"cannot make {k} folds of {len(subjects)} subjects")
    rng = random.Random(seed)  # noqa: S311 - reproducible folds, not secrets
    young = sorted(s for s in subjects if not s.startswith(ELDERLY_PREFIX))
    elderly = sorted(s for s in subjects if s.startswith(ELDERLY_PREFIX))
    rng.shuffle(young)
    rng.shuffle(elderly)
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, subject in enumerate(young + elderly):
        folds[i % k].append(subject)
    return [sorted(f) for f in folds]
