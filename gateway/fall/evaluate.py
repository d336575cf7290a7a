"""Scoring a fall model trial by trial, as the SisFall README describes, through the gateway's own detector.

Each trial is streamed in chunks as a wearable sends them (:data:`DEFAULT_CHUNK` samples, 0.5 s) through a
fresh :class:`~eldercare.gateway.fall.detector.FallDetector`, the class the gateway runs. A fall trial is
detected when at least one alarm is raised in it; a daily-activity trial is a false alarm when any alarm is
raised in it. Latency is from the impact (:meth:`~eldercare.gateway.fall.data.Trial.impact_index`) to the
end of the chunk that completed the first alarm's decision, i.e. the moment the gateway can raise it; the
report gives its distribution and names the falls raised more than :data:`LATENCY_TARGET_S` after it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.data import Dataset, Trial, subject_folds
from eldercare.gateway.fall.detector import FallDetector, feed_recording
from eldercare.gateway.fall.model import FallModel
from eldercare.gateway.fall.train import train

DEFAULT_CHUNK: Final = ft.HZ // 2
LATENCY_TARGET_S: Final = 2.0
T0: Final = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class TrialResult:
    name: str
    subject: str
    activity: str
    is_fall: bool
    alarms: int
    latency_s: float | None  # first alarm, from the impact (fall trials only)
    fold: int | None = None

    @property
    def elderly(self) -> bool:
        return self.subject.startswith("SE")


def score_trial(model: FallModel, trial: Trial, *, chunk: int, fold: int | None = None) -> TrialResult:
    decisions = feed_recording(FallDetector(model), trial.counts, chunk=chunk, t0=T0)
    alarms = [d for d in decisions if d.alarm]
    latency = None
    if trial.is_fall and alarms:
        impact_ts = T0 + trial.impact_index() * 1000 / ft.HZ
        latency = (alarms[0].decided_ts - impact_ts) / 1000
    return TrialResult(trial.name, trial.subject, trial.activity, trial.is_fall, len(alarms), latency, fold)


@dataclass(slots=True)
class Report:
    results: list[TrialResult]
    chunk: int
    folds: int | None = None
    thresholds: list[float] = field(default_factory=list)
    training_subjects: list[list[str]] = field(default_factory=list)  # per fold, what the model was trained on

    def _rate(self, selected: list[TrialResult], *, alarm: bool) -> float:
        if not selected:
            return float("nan")
        return sum((r.alarms > 0) == alarm for r in selected) / len(selected)

    @property
    def sensitivity(self) -> float:
        return self._rate([r for r in self.results if r.is_fall], alarm=True)

    @property
    def specificity(self) -> float:
        return self._rate([r for r in self.results if not r.is_fall], alarm=False)

    @property
    def elderly_adl_specificity(self) -> float:
        return self._rate([r for r in self.results if not r.is_fall and r.elderly], alarm=False)

    @property
    def f1(self) -> float:
        tp = sum(r.is_fall and r.alarms > 0 for r in self.results)
        fp = sum(not r.is_fall and r.alarms > 0 for r in self.results)
        fn = sum(r.is_fall and r.alarms == 0 for r in self.results)
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    def latencies(self) -> list[float]:
        return sorted(r.latency_s for r in self.results if r.latency_s is not None)

    def as_dict(self) -> dict[str, Any]:
        lat = self.latencies()
        latency: dict[str, Any] = {"n": len(lat)}
        if lat:
            q = np.quantile(lat, [0.5, 0.9, 0.99])
            latency |= {
                "min": lat[0],
                "p50": float(q[0]),
                "p90": float(q[1]),
                "p99": float(q[2]),
                "max": lat[-1],
                "within_2s": sum(v <= LATENCY_TARGET_S for v in lat) / len(lat),
                "over_2s": sum(v > LATENCY_TARGET_S for v in lat),
            }
        late = [r for r in self.results if r.latency_s is not None and r.latency_s > LATENCY_TARGET_S]
        missed = [r for r in self.results if r.is_fall and r.alarms == 0]
        false = [r for r in self.results if not r.is_fall and r.alarms > 0]
        return _no_nan(
            {
                "sensitivity": self.sensitivity,
                "specificity": self.specificity,
                "f1": self.f1,
                "elderly_adl_specificity": self.elderly_adl_specificity,
                "trials": len(self.results),
                "fall_trials": sum(r.is_fall for r in self.results),
                "adl_trials": sum(not r.is_fall for r in self.results),
                "elderly_adl_trials": sum(not r.is_fall and r.elderly for r in self.results),
                "missed_falls": [r.name for r in missed],
                "false_alarm_trials": [r.name for r in false],
                "missed_by_activity": dict(sorted(Counter(r.activity for r in missed).items())),
                "late_falls": {r.name: r.latency_s for r in late},
                "latency_s": latency,
                "chunk_samples": self.chunk,
                "cross_validation_folds": self.folds,
                "fold_thresholds": self.thresholds,
            }
        )

    def text(self) -> str:
        d = self.as_dict()
        lat = d["latency_s"]
        lines = [
            f"trials           {d['trials']} ({d['fall_trials']} falls, {d['adl_trials']} daily activities)",
            f"sensitivity      {d['sensitivity']:.4f}  (missed {len(d['missed_falls'])}: {d['missed_by_activity']})",
            f"specificity      {d['specificity']:.4f}  (false alarms in {len(d['false_alarm_trials'])} trials)",
            f"F1               {d['f1']:.4f}",
            f"elderly ADL spec {d['elderly_adl_specificity']:.4f}  ({d['elderly_adl_trials']} trials of SE subjects)",
        ]
        if lat["n"]:
            lines.append(
                f"latency (s)      min {lat['min']:.2f}  p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}"
                f"  p99 {lat['p99']:.2f}  max {lat['max']:.2f}  within 2 s {lat['within_2s']:.4f}"
                f"  over 2 s {lat['over_2s']} of {lat['n']}"
            )
        if d["late_falls"]:
            lines.append(f"late (> 2 s)     {', '.join(f'{k} {v:.2f} s' for k, v in d['late_falls'].items())}")
        if self.folds:
            lines.append(f"folds            {self.folds} subject-wise; thresholds {self.thresholds}")
        if d["false_alarm_trials"]:
            lines.append(f"false alarms     {', '.join(d['false_alarm_trials'])}")
        return "\n".join(lines)


def _no_nan(document: dict[str, Any]) -> dict[str, Any]:
    """NaN (a rate over no trials) as null, so that the JSON is valid."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in document.items()}


def evaluate(model: FallModel, dataset: Dataset, *, chunk: int = DEFAULT_CHUNK) -> Report:
    return Report([score_trial(model, t, chunk=chunk) for t in dataset.trials], chunk)


def cross_validate(dataset: Dataset, *, k: int, seed: int = 0, chunk: int = DEFAULT_CHUNK, n_jobs: int = 2) -> Report:
    """Train on k-1 folds of subjects, score the held-out fold; no subject is ever in both."""
    results: list[TrialResult] = []
    thresholds: list[float] = []
    trained_on: list[list[str]] = []
    for number, fold in enumerate(subject_folds(dataset.subjects, k, seed=seed)):
        held = set(fold)
        training = [s for s in dataset.subjects if s not in held]
        model = train(dataset.of_subjects(training), seed=seed, n_jobs=n_jobs)
        thresholds.append(model.threshold)
        trained_on.append(list(model.meta["subjects"]))
        results.extend(score_trial(model, t, chunk=chunk, fold=number) for t in dataset.trials if t.subject in held)
    return Report(results, chunk, folds=k, thresholds=thresholds, training_subjects=trained_on)
