"""Score a prediction against ground truth, block by block.

With a threshold, the prediction becomes a mask (``> T``, or ``< T`` with
``below`` for distance maps) and is compared with the nonzero voxels of the
truth: Dice, IoU, precision and recall from true/false positive counts
summed over blocks, so the scores equal those of the whole volume. Without a
threshold both are images: mean squared error and PSNR (data range of the
truth). A cube list restricts the comparison to its cubes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.cubes import read_cubes
from volumetric.io.sources import Source
from volumetric.kernels.metrics import confusion, mask_scores
from volumetric.ops.common import open_input, spatial_positions
from volumetric.ops.paths import absolute

BLOCK_BYTES = 16 * 2**20


def _spatial_read(source: Source, box: Box, channel: int) -> np.ndarray:
    """Read the spatial ``box`` of ``source`` at one channel (and time point 0)."""
    spatial = iter(zip(box.start, box.stop))
    bounds = [
        next(spatial) if a in "zyx" else ((channel, channel + 1) if a == "c" else (0, 1))
        for a in source.axes
    ]
    full = Box(tuple(a for a, _ in bounds), tuple(b for _, b in bounds))
    return source.read(full).reshape(box.shape)


@dataclass(frozen=True)
class CompareBlock:
    """Block task: confusion counts, or squared error sums, over one box."""

    prediction: Source
    truth: Source
    channel: int
    threshold: float | None
    below: bool

    def __call__(self, box: Box) -> dict[str, float]:
        pred = _spatial_read(self.prediction, box, self.channel)
        truth = _spatial_read(self.truth, box, 0)
        if self.threshold is not None:
            mask = pred < self.threshold if self.below else pred > self.threshold
            return {**confusion(mask, truth != 0), "n": truth.size}
        diff = pred.astype(np.float64) - truth.astype(np.float64)
        return {"sse": float(np.square(diff).sum()), "n": truth.size,
                "min": float(truth.min()), "max": float(truth.max())}


def _scores(parts: Sequence[dict[str, float]], thresholded: bool) -> dict[str, Any]:
    n = int(sum(p["n"] for p in parts))
    if thresholded:
        counts = {k: int(sum(p[k] for p in parts)) for k in ("tp", "fp", "fn")}
        return {**mask_scores(counts), **counts, "voxels": n}
    mse = sum(p["sse"] for p in parts) / n
    span = max(p["max"] for p in parts) - min(p["min"] for p in parts)
    psnr = math.inf if mse == 0 else 10 * math.log10(span**2 / mse) if span > 0 else -math.inf
    return {"mse": mse, "psnr": psnr, "data_range": span, "voxels": n}


def evaluate(
    prediction: str,
    truth: str,
    *,
    threshold: float | None = None,
    below: bool = False,
    channel: int = 0,
    cubes: str | None = None,
    run: RunOptions = RunOptions(),
) -> dict[str, Any]:
    """Compare ``prediction`` with ``truth`` over the whole volume or the listed cubes.

    Parameters
    ----------
    prediction : str
        Image to score (e.g. ``vol predict``'s output, ``c, z, y, x``).
    truth : str
        Ground truth of the same spatial shape (a mask, or an image).
    threshold : float, optional
        Binarise the prediction (a finite value) and report mask scores; otherwise image scores.
    below : bool
        Foreground is ``prediction < threshold`` (distance maps).
    channel : int
        Prediction channel to score.
    cubes : str, optional
        Cube list (``vol discover``): score only inside these cubes.
    run : RunOptions
        Where and how to run (``overwrite`` and ``block_bytes`` do not apply).

    Returns
    -------
    dict
        ``dice``, ``iou``, ``precision``, ``recall``, ``tp``, ``fp``, ``fn`` with a
        threshold; ``mse``, ``psnr``, ``data_range`` without; ``voxels`` compared.
    """
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite value, got {threshold}")
    pred = open_input(absolute(prediction), what="PRED")
    ref = open_input(absolute(truth), what="TRUTH")
    shape = tuple(pred.shape[i] for i in spatial_positions(pred.axes))
    ref_shape = tuple(ref.shape[i] for i in spatial_positions(ref.axes))
    if shape != ref_shape:
        raise InputError(f"PRED has spatial shape {shape} but TRUTH has {ref_shape}")
    n_channels = pred.shape[pred.axes.index("c")] if "c" in pred.axes else 1
    if not 0 <= channel < n_channels:
        raise InputError(f"--channel {channel} is outside PRED's {n_channels} channels")
    if below and threshold is None:
        raise InputError("--below needs --threshold")
    if cubes is not None:
        listed = read_cubes(cubes, shape=shape)
        if not listed.cubes:
            raise InputError(f"cube list {cubes} is empty: nothing to evaluate")
        boxes = listed.boxes()
    else:
        chunks = tuple(ref.chunks[i] for i in spatial_positions(ref.axes)) if ref.chunks else shape
        block = block_shape_for(shape, [min(c, s) for c, s in zip(chunks, shape)], 8,
                                BLOCK_BYTES, cubic=True)
        boxes = list(BlockGrid(shape, block).boxes())
    task = CompareBlock(pred, ref, channel, threshold, below)
    with block_operation(None, run) as op:
        parts = op.run(task, boxes, job="evaluate")
    return _scores(list(parts.values()), threshold is not None)
