"""Training the fall model from recordings, reproducibly (same data and seed, same model file, byte for byte).

1. Every trial is streamed through :class:`~eldercare.gateway.fall.detector.FallDetector` without a model;
   each candidate peak it finds becomes a row of features.
2. Labels: in a fall trial, a candidate from 1 s before the impact (:meth:`Trial.impact_index`) to 0.3 s
   after it is a fall; one more than 1 s before it is not (the walk before the slip); later ones are left
   out (the body bouncing on the mat is neither). Every candidate of a daily-activity trial is not a fall.
   Teaching the model the impact and not the bounces keeps alarms within 2 s of the impact: an alarm comes
   1.2 s (:data:`~eldercare.gateway.fall.features.POST`) after its candidate's peak plus the wait for the
   chunk, so an alarm on a bounce a second after the impact would come too late.
3. An extremely randomised trees classifier (scikit-learn) is fitted and exported to numpy arrays.
4. The alarm threshold is chosen by subject-wise cross-validation inside the training subjects only: the
   highest trial-level sensitivity whose trial-level specificity is at least :data:`SPECIFICITY_GOAL`
   (1.0: the lowest threshold at which no daily activity of a held-out training subject raises an alarm).

scikit-learn is imported here only, never by the running gateway.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from eldercare.gateway.fall import features as ft
from eldercare.gateway.fall.data import Dataset, subject_folds
from eldercare.gateway.fall.detector import FallDetector, feed_recording
from eldercare.gateway.fall.model import FallModel, Forest

log = logging.getLogger(__name__)

LABEL_BEFORE: Final = ft.HZ  # a candidate from 1 s before the impact ...
LABEL_AFTER: Final = 15  # ... to 0.3 s after it is the fall
N_TREES: Final = 100
MIN_SAMPLES_LEAF: Final = 4
INNER_FOLDS: Final = 4
SPECIFICITY_GOAL: Final = 1.0
DEFAULT_THRESHOLD: Final = 0.7
THRESHOLDS: Final = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))  # 0.05 .. 0.95


@dataclass(frozen=True, slots=True)
class Candidates:
    x: NDArray[np.float64]  # (n, N_FEATURES)
    y: NDArray[np.int8]  # 1 fall, 0 not
    trial: NDArray[np.int32]  # index into the dataset's trials


def candidates(dataset: Dataset) -> Candidates:
    rows: list[NDArray[np.float64]] = []
    labels: list[int] = []
    owners: list[int] = []
    for index, trial in enumerate(dataset.trials):
        decisions = feed_recording(FallDetector(None), trial.counts, chunk=None)
        impact = trial.impact_index() if trial.is_fall else 0
        for decision in decisions:
            if not trial.is_fall:
                label = 0
            elif impact - LABEL_BEFORE <= decision.peak_index <= impact + LABEL_AFTER:
                label = 1
            elif decision.peak_index < impact - LABEL_BEFORE:
                label = 0
            else:
                continue
            rows.append(decision.features)
            labels.append(label)
            owners.append(index)
    x = np.vstack(rows) if rows else np.empty((0, ft.N_FEATURES))
    return Candidates(x, np.array(labels, dtype=np.int8), np.array(owners, dtype=np.int32))


def _subset(c: Candidates, mask: NDArray[np.bool_]) -> Candidates:
    return Candidates(c.x[mask], c.y[mask], c.trial[mask])


def fit_forest(c: Candidates, *, seed: int, n_jobs: int) -> Forest:
    from sklearn.ensemble import ExtraTreesClassifier

    if len(set(c.y.tolist())) < 2:
        raise ValueError("training needs candidates of both falls and daily activities")
    clf = ExtraTreesClassifier(
        n_estimators=N_TREES, min_samples_leaf=MIN_SAMPLES_LEAF, max_features=None, random_state=seed, n_jobs=n_jobs
    )
    clf.fit(c.x.astype(np.float32), c.y)
    return export(clf)


def export(clf: Any) -> Forest:  # noqa: ANN401 - a fitted scikit-learn tree ensemble (untyped library)
    """The trees of a fitted binary scikit-learn forest as one set of node arrays."""
    if list(clf.classes_) != [0, 1]:
        raise ValueError(f"expected classes [0, 1], got {list(clf.classes_)}")
    features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
    offset = 0
    for estimator in clf.estimators_:
        tree = estimator.tree_
        leaf = tree.children_left < 0
        counts = tree.value[:, 0, :].astype(np.float64)
        features.append(np.where(leaf, -1, tree.feature).astype(np.int32))
        thresholds.append(tree.threshold.astype(np.float64))
        lefts.append(np.where(leaf, -1, tree.children_left + offset).astype(np.int32))
        rights.append(np.where(leaf, -1, tree.children_right + offset).astype(np.int32))
        values.append(counts[:, 1] / counts.sum(axis=1))
        roots.append(offset)
        offset += tree.node_count
    return Forest(
        feature=np.concatenate(features),
        threshold=np.concatenate(thresholds),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        value=np.concatenate(values),
        roots=np.array(roots, dtype=np.int32),
    )


def trial_scores(forest: Forest, c: Candidates, n_trials: int) -> NDArray[np.float64]:
    """Each trial's highest candidate probability (0 for a trial without candidates)."""
    best = np.zeros(n_trials)
    for row, owner in zip(c.x, c.trial, strict=True):
        best[owner] = max(best[owner], forest.probability(row))
    return best


def pick_threshold(scores: NDArray[np.float64], is_fall: NDArray[np.bool_]) -> tuple[float, float, float]:
    """``(threshold, sensitivity, specificity)``: best sensitivity at the specificity goal (trial level)."""
    best: tuple[float, float, float] | None = None
    fallback: tuple[float, float, float] | None = None
    for t in THRESHOLDS:
        alarm = scores >= t
        sens = float(alarm[is_fall].mean()) if is_fall.any() else 1.0
        spec = float(1 - alarm[~is_fall].mean()) if (~is_fall).any() else 1.0
        if spec >= SPECIFICITY_GOAL and (best is None or sens >= best[1]):
            best = (t, sens, spec)
        if fallback is None or (spec, sens) > (fallback[2], fallback[1]):
            fallback = (t, sens, spec)
    assert fallback is not None
    return best or fallback


def train(dataset: Dataset, *, seed: int = 0, n_jobs: int = 2) -> FallModel:
    c = candidates(dataset)
    is_fall = np.array([t.is_fall for t in dataset.trials])
    subjects = dataset.subjects
    trial_subject = np.array([t.subject for t in dataset.trials])
    folds = subject_folds(subjects, min(INNER_FOLDS, len(subjects)), seed=seed) if len(subjects) > 1 else []
    oof = np.zeros(len(dataset.trials))
    scored = np.zeros(len(dataset.trials), dtype=bool)
    for fold in folds:
        held_trials = np.isin(trial_subject, fold)
        held = held_trials[c.trial]
        rest = _subset(c, ~held)
        if len(set(rest.y.tolist())) < 2:
            continue  # too few subjects to leave these out (no falls or no activities left): not scored
        scores = trial_scores(fit_forest(rest, seed=seed, n_jobs=n_jobs), _subset(c, held), len(dataset.trials))
        oof[held_trials] = scores[held_trials]
        scored |= held_trials
    if scored.any():
        threshold, sens, spec = pick_threshold(oof[scored], is_fall[scored])
    else:
        threshold, sens, spec = DEFAULT_THRESHOLD, float("nan"), float("nan")
        log.warning("too few subjects to choose a threshold by cross-validation; using %.2f", threshold)
    log.info("threshold %.2f: inner cross-validation sensitivity %.4f specificity %.4f", threshold, sens, spec)
    forest = fit_forest(c, seed=seed, n_jobs=n_jobs)
    import sklearn

    meta = {
        "data": dataset.path.name,
        "data_sha256": hashlib.sha256(dataset.path.read_bytes()).hexdigest(),
        "trials": len(dataset.trials),
        "subjects": subjects,
        "candidates": len(c.y),
        "fall_candidates": int(c.y.sum()),
        "seed": seed,
        "sklearn": sklearn.__version__,
        "estimator": f"ExtraTreesClassifier(n_estimators={N_TREES}, min_samples_leaf={MIN_SAMPLES_LEAF})",
        "inner_cv": {"folds": len(folds), "scored_trials": int(scored.sum()), "sensitivity": sens, "specificity": spec},
        "features": list(ft.FEATURE_NAMES),
    }
    return FallModel(forest=forest, threshold=threshold, meta=meta)
