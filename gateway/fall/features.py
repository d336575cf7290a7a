"""What the fall detector looks at: candidate peaks in the acceleration magnitude and their features.

Signals are in g (count / 256) at :data:`HZ`. A *candidate* starts where the magnitude first reaches
:data:`TRIGGER_G`; its peak is the largest magnitude in the next :data:`PEAK_SEARCH` samples. Features are
computed on the samples from :data:`CONTEXT` before the peak to :data:`POST` after it, so a decision is
possible :data:`POST` samples (1.2 s) after the impact. Every number here is part of the model's contract:
the trained model records them and refuses to run with others (:func:`window_spec`).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

HZ: Final = 50
TRIGGER_G: Final = 1.6
PEAK_SEARCH: Final = 25  # 0.5 s after the first crossing in which the peak is sought
PRE: Final = 100  # 2 s before the peak: the fall itself (free fall, loss of posture)
POST: Final = 60  # 1.2 s after the peak: posture and stillness after the impact
CONTEXT: Final = 250  # 5 s before the peak: what the wearer was doing (walking, jogging, stairs)
REFRACTORY: Final = 25  # the next crossing is sought from this many samples after a peak
SETTLE: Final = 10  # samples right after the peak left out of the "after" statistics
FREE_FALL_G: Final = 0.6

FEATURE_NAMES: Final = (
    "peak_g",
    "pre1s_min_g",
    "free_fall_s",
    "pre_std_g",
    "pre_mean_g",
    "post_std_g",
    "post_mean_g",
    "tilt_rad",
    "before_y",
    "after_y",
    "after_x",
    "after_z",
    "pre_jerk_g",
    "post_jerk_g",
    "pre_peaks",
    "post_range_g",
    "pre1s_range_g",
    "impact_mean_g",
    "impact_std_g",
    "context_std_g",
    "context_peaks",
    "velocity_loss_s",
    "post_activity_g",
    "end_x",
    "end_y",
    "end_z",
    "end_tilt_rad",
    "impact_along_g",
    "impact_across_g",
    "pre_rotation_rad",
    "pre_vertical_velocity_gs",
    "pre_vertical_velocity_min_gs",
    "impact_energy_g2s",
    "impact_samples_above",
)
N_FEATURES: Final = len(FEATURE_NAMES)

Signal = NDArray[np.float32]


def window_spec() -> dict[str, float]:
    """The constants a trained model depends on (stored with it, compared when it is loaded)."""
    return {
        "hz": HZ,
        "trigger_g": TRIGGER_G,
        "peak_search": PEAK_SEARCH,
        "pre": PRE,
        "post": POST,
        "context": CONTEXT,
        "refractory": REFRACTORY,
        "settle": SETTLE,
        "n_features": N_FEATURES,
    }


def magnitude(xyz: Signal) -> Signal:
    result: Signal = np.sqrt(np.einsum("ij,ij->i", xyz, xyz)).astype(np.float32)
    return result


def _unit(xyz: Signal) -> NDArray[np.float64]:
    mean = xyz.astype(np.float64).mean(axis=0)
    result: NDArray[np.float64] = mean / (float(np.linalg.norm(mean)) + 1e-6)
    return result


def _angle(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(np.arccos(np.clip(float(a @ b), -1.0, 1.0)))


def _mean_abs_diff(values: Signal) -> float:
    return float(np.abs(np.diff(values)).mean()) if len(values) > 1 else 0.0


def _nonempty(values: Signal, fallback: Signal) -> Signal:
    return values if len(values) else fallback


def features(xyz: Signal, mag: Signal, peak: int) -> NDArray[np.float64]:
    """Features of the candidate whose peak is ``xyz[peak]``; ``xyz`` ends :data:`POST` samples after it.

    ``xyz`` holds what precedes the peak too, up to :data:`CONTEXT` samples (fewer at a stream's start).
    """
    k = peak
    lo = max(0, k - PRE)
    at_peak = mag[k : k + 1]
    before = xyz[lo : lo + max(1, min(k - lo, HZ))] if k > lo else xyz[k : k + 1]
    pre_m = _nonempty(mag[lo:k], at_peak)
    last1s = _nonempty(mag[max(0, k - HZ) : k], at_peak)
    post_from = k + SETTLE if k + SETTLE < len(mag) else k
    post_xyz = xyz[post_from:]
    post_m = mag[post_from:]
    context_lo = max(0, k - CONTEXT)
    context = mag[context_lo : max(context_lo + 1, k - HZ)]
    pre1s_xyz = xyz[max(lo, k - HZ) : k]

    g_before = _unit(before)
    g_after = _unit(post_xyz)
    g_end = _unit(xyz[-20:])
    core = np.array(
        [
            float(mag[k]),
            float(last1s.min()),
            float((last1s < FREE_FALL_G).sum()) / HZ,
            float(pre_m.std()),
            float(pre_m.mean()),
            float(post_m.std()),
            float(post_m.mean()),
            _angle(g_before, g_after),
            float(g_before[1]),
            float(g_after[1]),
            float(g_after[0]),
            float(g_after[2]),
            _mean_abs_diff(mag[lo : k + 1]),
            _mean_abs_diff(post_m),
            float((pre_m > TRIGGER_G).sum()) if k > lo else 0.0,
            float(np.ptp(post_xyz, axis=0).max()),
            float(np.ptp(pre1s_xyz, axis=0).max()) if len(pre1s_xyz) else 0.0,
            float(mag[k : k + SETTLE].mean()),
            float(mag[max(0, k - 15) : k + 15].std()),
            float(context.std()),
            float((context > TRIGGER_G).sum()),
            float(np.clip(1.0 - last1s, 0.0, None).sum()) / HZ,
            float(np.abs(post_m - 1.0).mean()),
            float(g_end[0]),
            float(g_end[1]),
            float(g_end[2]),
            _angle(g_before, g_end),
        ],
        dtype=np.float64,
    )
    return np.concatenate([core, _impact_features(xyz, mag, k)])


def _impact_features(xyz: Signal, mag: Signal, k: int) -> NDArray[np.float64]:
    """How the body met the ground, relative to the posture 2 to 1 s before the impact at ``k``.

    The impact split along and across that posture's gravity (a deliberate lie-down lands mostly along it),
    the trunk's rotation in the half second before the impact, the speed gained along the old vertical in
    the last second (sum of its acceleration minus 1 g, and its lowest running sum), the energy around the
    impact and how long the magnitude stays above the trigger after it.
    """
    g = xyz.astype(np.float64)
    lo = max(0, k - HZ)
    upright = _unit(xyz[max(0, k - 2 * HZ) : max(1, k - HZ)]) if k - HZ >= 10 else _unit(xyz[: max(1, k)])
    along = float(g[k] @ upright)
    across = float(np.linalg.norm(g[k] - along * upright))
    turned = _angle(_unit(xyz[max(0, k - HZ) : max(1, k - HZ // 2)]), _unit(xyz[max(0, k - 10) : max(1, k)]))
    vertical = g[lo:k] @ upright if k > lo else np.zeros(1)
    speed = float((vertical - 1.0).sum()) / HZ
    lowest = float(np.cumsum(vertical - 1.0).min()) / HZ if k > lo else 0.0
    energy = float(((mag[max(0, k - 10) : k + 10] - 1.0) ** 2).sum()) / HZ
    above = float((mag[k : k + PEAK_SEARCH] > TRIGGER_G).sum())
    return np.array([along, across, turned, speed, lowest, energy, above], dtype=np.float64)
