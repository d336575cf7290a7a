"""The fall model as the gateway runs it: a tree ensemble in plain numpy arrays, loaded from an ``.npz``.

The model is trained with scikit-learn (:mod:`eldercare.gateway.fall.train`) and exported to arrays, so
that the gateway needs neither scikit-learn at run time (importing it alone costs about 100 MB of memory,
more than the gateway's whole budget) nor pickle (loading a pickle runs code; an ``.npz`` of numbers
loaded with ``allow_pickle=False`` cannot). A test checks that :meth:`Forest.probability` equals
scikit-learn's ``predict_proba`` on the same trees.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from eldercare.gateway.errors import ModelError
from eldercare.gateway.fall import features as ft

FORMAT: Final = "eldercare-fall-forest/1"
SHIPPED_NAME: Final = "fall_detector.npz"


def shipped_model_path() -> Path:
    """The model file shipped as package data under ``gateway/models/``."""
    return Path(str(resources.files("eldercare.gateway").joinpath("models").joinpath(SHIPPED_NAME)))


@dataclass(frozen=True, slots=True, eq=False)
class Forest:
    """Binary decision trees, node arrays of all trees end to end; a leaf has ``feature == -1``.

    ``value`` is the leaf's probability of a fall. A sample goes left when ``x[feature] <= threshold``,
    with ``x`` rounded to float32 first, exactly as scikit-learn does.
    """

    feature: NDArray[np.int32]
    threshold: NDArray[np.float64]
    left: NDArray[np.int32]
    right: NDArray[np.int32]
    value: NDArray[np.float64]
    roots: NDArray[np.int32]

    def probability(self, x: NDArray[np.float64]) -> float:
        """Mean leaf probability over the trees for one feature vector."""
        x64 = x.astype(np.float32).astype(np.float64)
        node = self.roots.copy()
        while True:
            feat = self.feature[node]
            inner = feat >= 0
            if not inner.any():
                break
            active = node[inner]
            go_left = x64[feat[inner]] <= self.threshold[active]
            node[inner] = np.where(go_left, self.left[active], self.right[active])
        return float(self.value[node].mean())

    @property
    def n_nodes(self) -> int:
        return len(self.feature)


@dataclass(frozen=True, slots=True, eq=False)
class FallModel:
    forest: Forest
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def probability(self, x: NDArray[np.float64]) -> float:
        return self.forest.probability(x)


def save(model: FallModel, path: Path) -> None:
    """Write ``model`` as an ``.npz``; the same model gives the same bytes (fixed zip entry times)."""
    meta = {**model.meta, "format": FORMAT, "threshold": model.threshold, "window": ft.window_spec()}
    f = model.forest
    arrays: dict[str, NDArray[Any]] = {
        "feature": f.feature.astype(np.int16),
        "threshold": f.threshold,
        "left": f.left,
        "right": f.right,
        "value": f.value.astype(np.float32),
        "roots": f.roots,
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array if array.flags.c_contiguous else array.copy(), allow_pickle=False)
            archive.writestr(entry, buffer.getvalue())


def load(path: Path | None = None) -> FallModel:
    """Load a model file (the shipped one by default); :class:`ModelError` says what is wrong with it."""
    path = path or shipped_model_path()
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("feature", "threshold", "left", "right", "value", "roots", "meta")}
    except FileNotFoundError:
        raise ModelError(path, "no such file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(path, f"not a fall model file: {exc}") from exc
    try:
        meta = json.loads(str(arrays["meta"].reshape(-1)[0]))
    except (ValueError, IndexError) as exc:
        raise ModelError(path, f"its description is damaged: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ModelError(path, f"format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("window") != ft.window_spec():
        raise ModelError(path, f"trained for window {meta.get('window')}, this gateway uses {ft.window_spec()}")
    forest = Forest(
        feature=arrays["feature"].astype(np.int32),
        threshold=arrays["threshold"].astype(np.float64),
        left=arrays["left"].astype(np.int32),
        right=arrays["right"].astype(np.int32),
        value=arrays["value"].astype(np.float64),
        roots=arrays["roots"].astype(np.int32),
    )
    n = forest.n_nodes
    if not all(len(a) == n for a in (forest.threshold, forest.left, forest.right, forest.value)):
        raise ModelError(path, "node arrays of different lengths")
    inner = np.flatnonzero(forest.feature >= 0)
    left, right = forest.left[inner], forest.right[inner]
    # Children come after their parent (as scikit-learn numbers them), so a descent always ends.
    if (forest.feature >= ft.N_FEATURES).any() or (
        (left <= inner) | (right <= inner) | (left >= n) | (right >= n)
    ).any():
        raise ModelError(path, "a node refers to a feature or child that does not exist")
    return FallModel(forest=forest, threshold=float(meta["threshold"]), meta=meta)
