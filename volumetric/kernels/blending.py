"""Blending overlapping window predictions: weights, fp32 accumulation, normalisation.

The weights match MONAI's ``compute_importance_map``: ``constant`` is all
ones; ``gaussian`` is a separable Gaussian with ``sigma = 0.125 * window``
per axis centred on the window; the product is clamped from below at
``max(min(weights), 1e-3)``, so no voxel of a window ever gets weight zero.
``hann`` is a separable Hann window sampled at voxel centres (so its ends are
not zero) with the same floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from volumetric.errors import check_choice
from volumetric.geometry import Box
from volumetric.kernels.casting import to_dtype

BLEND_MODES = ("gaussian", "hann", "constant")
SIGMA_SCALE = 0.125
MIN_WEIGHT = 1e-3


def _profile(n: int, mode: str) -> np.ndarray:
    if mode == "gaussian":
        x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)
        sigma = n * SIGMA_SCALE
        return np.exp(x**2 / np.float32(-2 * sigma**2))
    if mode == "hann":
        return (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
    return np.ones(n, dtype=np.float32)


def window_weights(window: Sequence[int], mode: str = "gaussian") -> np.ndarray:
    """The weight of each voxel of a window, float32 and strictly positive.

    Parameters
    ----------
    window : tuple of int
        Window shape.
    mode : {"gaussian", "hann", "constant"}
        Blending profile.

    Returns
    -------
    ndarray
        float32 array of shape ``window``.

    Examples
    --------
    >>> w = window_weights((1, 8, 8), "gaussian")
    >>> float(w.max()) < 1.0, float(w.min()) == 1e-3 or float(w.min()) > 1e-3
    (True, True)
    """
    check_choice(mode, BLEND_MODES, "blend mode")
    weights = np.ones((), dtype=np.float32)
    for n in window:
        weights = weights[..., None] * _profile(int(n), mode)
    floor = max(float(weights.min()), MIN_WEIGHT)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


class Accumulator:
    """Weighted sum and weight sum of window predictions over one box, in fp32.

    Lives on the model's device so that adding windows never waits for it.

    Parameters
    ----------
    box : Box
        The region accumulated (volume coordinates).
    channels : int
        Output channels of the model.
    weights : ndarray
        Weights of one window (see :func:`window_weights`).
    device : str or torch.device
        Where the sums are kept.
    """

    def __init__(self, box: Box, channels: int, weights: np.ndarray, *, device: Any = "cpu"):
        import torch

        self.box = box
        self.weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
        self.sums = torch.zeros((channels + 1, *box.shape), dtype=torch.float32, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def add(self, outputs: Any, starts: Sequence[Sequence[int]]) -> None:
        """Add a batch of predictions ``(N, C, *window)`` whose windows start at ``starts``.

        Parts of a window outside the box (padding) are dropped.
        """
        import torch

        outputs = outputs.float()
        self.nonfinite |= ~torch.isfinite(outputs).all()
        window = tuple(self.weights.shape)
        for out, start in zip(outputs, starts):
            inside = Box.from_shape(window, start).intersect(self.box)
            dst = inside.relative_to(self.box)
            src = inside.relative_to(Box.from_shape(window, start))
            w = self.weights[src]
            self.sums[(slice(None, -1), *dst)] += out[(slice(None), *src)] * w
            self.sums[(-1, *dst)] += w

    def result(self) -> tuple[np.ndarray, bool]:
        """The sums ``(C + 1, *box.shape)`` (last channel: weight sum) and whether all were finite."""
        return self.sums.cpu().numpy(), not bool(self.nonfinite)


def normalize_sums(sums: np.ndarray, *, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Divide weighted sums by the weight sum (last channel).

    Parameters
    ----------
    sums : ndarray
        ``(C + 1, ...)`` as produced by :meth:`Accumulator.result` (summed over windows).
    fill : float
        Value where no window contributed.

    Returns
    -------
    prediction : ndarray
        float32 ``(C, ...)``.
    covered : ndarray
        bool ``(...)``: voxels some window contributed to.
    """
    weight = sums[-1]
    covered = weight > 0
    pred = np.full(sums[:-1].shape, fill, dtype=np.float32)
    np.divide(sums[:-1], weight, out=pred, where=covered)
    return pred, covered


def postprocess(
    prediction: np.ndarray,
    *,
    dtype: str = "float32",
    clip: float | None = None,
    threshold: float | None = None,
    unscale: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Turn a blended prediction into stored values.

    Parameters
    ----------
    prediction : ndarray
        float32 prediction ``(C, ...)``.
    dtype : {"float32", "float16", "uint8", "uint16"}
        Stored type. Integer types round and clip to their range, except
        ``uint8`` without ``unscale``, which maps probabilities 0..1 to 0..255.
    clip : float, optional
        Clip to ``[0, clip]`` (distance-map models).
    threshold : float, optional
        Binary output: 1 where the prediction exceeds ``threshold`` (uint8).
    unscale : sequence of (offset, scale), optional
        Per channel, ``prediction * scale + offset`` first: a model trained on
        a normalised target (see :func:`volumetric.kernels.normalize.affine`)
        writes the target's units.

    Examples
    --------
    >>> postprocess(np.array([0.0, 0.5, 1.2], np.float32), dtype="uint8")
    array([  0, 128, 255], dtype=uint8)
    >>> postprocess(np.array([[-0.1, 0.5, 2.0]], np.float32), dtype="uint16",
    ...             unscale=[(100.0, 1000.0)])
    array([[   0,  600, 2100]], dtype=uint16)
    """
    out = prediction
    if unscale is not None:
        out = np.stack([channel * np.float32(scale) + np.float32(offset)
                        for channel, (offset, scale) in zip(out, unscale)])
    if clip is not None:
        out = np.clip(out, 0.0, clip)
    if threshold is not None:
        return (out > threshold).astype(np.uint8)
    if dtype == "uint8" and unscale is None:
        return np.rint(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)
    if np.dtype(dtype).kind == "u":
        return to_dtype(out, dtype)
    return out.astype(dtype)
