"""Scores from counts: no array library, so ``vol evaluate`` needs no torch.

:mod:`volumetric.kernels.metrics` computes the counts on tensors for
training; ``vol evaluate`` counts block by block with numpy; both turn the
counts into scores here. When a ratio has nothing to count (e.g. precision
with no predicted foreground) it is 1.0: an empty prediction of an empty
target is perfect.
"""

from __future__ import annotations

import math


def _ratio(num: int, den: int) -> float:
    return num / den if den else 1.0


def mask_scores(counts: dict[str, int]) -> dict[str, float]:
    """Dice, IoU, precision and recall from true/false positive and false negative counts.

    Parameters
    ----------
    counts : dict
        ``tp``, ``fp`` and ``fn``.

    Returns
    -------
    dict
        ``dice``, ``iou``, ``precision`` and ``recall``.

    Examples
    --------
    >>> mask_scores({"tp": 3, "fp": 1, "fn": 2})["dice"]
    0.6666666666666666
    """
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


def psnr_from_mse(error: float, *, data_range: float) -> float:
    """PSNR in dB of a mean squared ``error`` (e.g. one accumulated over many patches).

    Examples
    --------
    >>> psnr_from_mse(0.01, data_range=1.0)
    20.0
    >>> psnr_from_mse(0.0, data_range=1.0)
    inf
    """
    return math.inf if error == 0 else 10 * math.log10(data_range**2 / error)
