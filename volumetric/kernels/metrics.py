"""Segmentation and image-quality metrics on tensors or arrays (torch, any device).

Mask metrics count true/false positives over everything they are given, so
sums of :func:`confusion` over batches give the dataset-wide scores. When a
ratio has nothing to count (e.g. precision with no predicted foreground) it
is 1.0: an empty prediction of an empty target is perfect.

PSNR and SSIM follow ``skimage.metrics`` (SSIM: 7-voxel uniform window,
K1 = 0.01, K2 = 0.03, sample covariances, mean over the valid region) on 2D
or 3D images, batched over the leading ``(N, C)`` axes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from volumetric.kernels.scores import mask_scores, psnr_from_mse

__all__ = ["confusion", "dice", "iou", "mask_scores", "mse", "precision", "psnr",
           "psnr_from_mse", "recall", "ssim"]


def _tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def confusion(prediction: Any, target: Any) -> dict[str, int]:
    """True positives, false positives and false negatives of two boolean masks.

    Parameters
    ----------
    prediction, target : tensor or ndarray
        Masks of one shape (nonzero = foreground).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` as ints.
    """
    p, t = _tensor(prediction).bool(), _tensor(target).bool()
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    return {"tp": int((p & t).sum()), "fp": int((p & ~t).sum()), "fn": int((~p & t).sum())}


def dice(prediction: Any, target: Any) -> float:
    """Dice coefficient of two boolean masks."""
    return mask_scores(confusion(prediction, target))["dice"]


def iou(prediction: Any, target: Any) -> float:
    """Intersection over union (Jaccard index) of two boolean masks."""
    return mask_scores(confusion(prediction, target))["iou"]


def precision(prediction: Any, target: Any) -> float:
    """Share of predicted foreground that is foreground."""
    return mask_scores(confusion(prediction, target))["precision"]


def recall(prediction: Any, target: Any) -> float:
    """Share of the foreground that is predicted."""
    return mask_scores(confusion(prediction, target))["recall"]


def mse(image: Any, reference: Any) -> float:
    """Mean squared error."""
    a, b = _tensor(image).double(), _tensor(reference).double()
    return float(((a - b) ** 2).mean())


def psnr(image: Any, reference: Any, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images).

    Parameters
    ----------
    image, reference : tensor or ndarray
        Images of one shape.
    data_range : float
        Span of possible values (e.g. 1.0 for [0, 1] images).
    """
    return psnr_from_mse(mse(image, reference), data_range=data_range)


def ssim(image: Any, reference: Any, *, data_range: float, win_size: int = 7) -> float:
    """Mean structural similarity of 2D or 3D images, as ``skimage.metrics.structural_similarity``.

    Parameters
    ----------
    image, reference : tensor or ndarray
        ``(Y, X)``, ``(Z, Y, X)``, or batched ``(N, C, *spatial)`` with
        ``spatial_dims`` 2 or 3 (the mean over all images is returned).
    data_range : float
        Span of possible values.
    win_size : int
        Side of the uniform window (odd); every spatial axis must be at least this long.

    Raises
    ------
    ValueError
        Images smaller than the window.
    """
    x, y = _tensor(image).double(), _tensor(reference).double()
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() in (2, 3):
        x, y = x[None, None], y[None, None]
    x, y = x.flatten(0, 1)[:, None], y.flatten(0, 1)[:, None]
    if min(x.shape[2:]) < win_size:
        raise ValueError(f"SSIM needs every axis >= {win_size}, got {tuple(x.shape[2:])}")
    pool = F.avg_pool3d if x.dim() == 5 else F.avg_pool2d

    def mean(a: torch.Tensor) -> torch.Tensor:
        return pool(a, win_size, stride=1)

    n = win_size ** (x.dim() - 2)
    cov_norm = n / (n - 1)
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean())
