"""The block tasks of ``evaluate``: a survey of the truth, mask and object tables, image errors.

Each task reads its box of PRED (one channel) and TRUTH at one time point
and returns small tables; nothing is written. Their sums and merges are in ``ops.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from volumetric.geometry import Box
from volumetric.io.sources import Source
from volumetric.kernels.components import block_tables, faces, instance_block, label_block
from volumetric.kernels.ssim import ssim_sum


def scored_axes(source: Source) -> list[int]:
    """Positions of the spatial axes scored: those longer than one voxel (all, if none is).

    A projection's length-1 z thus lines up with a 2D image.
    """
    spatial = [i for i, a in enumerate(source.axes) if a in "zyx"]
    return [i for i in spatial if source.shape[i] > 1] or spatial


def spatial_read(source: Source, box: Box, channel: int, t: int = 0) -> np.ndarray:
    """Read ``box`` of the scored axes (:func:`scored_axes`) at one channel and time point."""
    scored = iter(zip(box.start, box.stop))
    kept = scored_axes(source)
    fixed = {"c": (channel, channel + 1), "t": (t, t + 1)}
    bounds = [next(scored) if i in kept else fixed.get(a, (0, 1))
              for i, a in enumerate(source.axes)]
    full = Box(tuple(a for a, _ in bounds), tuple(b for _, b in bounds))
    return source.read(full).reshape(box.shape)


@dataclass(frozen=True)
class SurveyBlock:
    """Block task: the truth's range, up to three of its values, whether all are integers."""

    truth: Source
    t: int = 0

    def __call__(self, box: Box) -> dict[str, Any]:
        truth = spatial_read(self.truth, box, 0, self.t)
        values = np.unique(truth)
        fraction = values[values != np.round(values)] if values.dtype.kind == "f" else values[:0]
        return {"min": float(values[0]), "max": float(values[-1]), "values": values[:3].tolist(),
                "non_integer": fraction[:1].tolist()}


@dataclass(frozen=True)
class CompareBlock:
    """Block task: confusion counts and the object tables of the thresholded prediction.

    Objects are the connected components of the prediction mask and of the
    truth mask, or the truth's ids when ``instances`` (a label image).
    """

    prediction: Source
    truth: Source
    channel: int
    threshold: float
    below: bool
    connectivity: int
    instances: bool
    t: int = 0

    def __call__(self, box: Box) -> dict[str, Any]:
        pred = spatial_read(self.prediction, box, self.channel, self.t)
        truth = spatial_read(self.truth, box, 0, self.t)
        mask = pred < self.threshold if self.below else pred > self.threshold
        fg = truth != 0
        counts = {"tp": int(np.count_nonzero(mask & fg)), "fp": int(np.count_nonzero(mask & ~fg)),
                  "fn": int(np.count_nonzero(~mask & fg)), "n": truth.size}
        pred_labels, n_pred = label_block(mask, self.connectivity)
        out: dict[str, Any] = {"counts": counts, "n_pred": n_pred, "pred_faces": faces(pred_labels)}
        if self.instances:
            truth_labels, keys = instance_block(truth)
            out.update(n_truth=keys.size, truth_keys=keys)
        else:
            truth_labels, n_truth = label_block(fg, self.connectivity)
            out.update(n_truth=n_truth, truth_faces=faces(truth_labels))
        tables = block_tables(truth_labels, out["n_truth"], pred_labels, n_pred, box.start)
        return {**out, **tables}


@dataclass(frozen=True)
class ImageBlock:
    """Block task: squared error over the box, and the SSIM map summed over its valid voxels.

    ``valid`` is the region whose voxels have their whole SSIM window in the
    volume (None: no SSIM); ``halo`` grows the read box by the window's half.
    """

    prediction: Source
    truth: Source
    channel: int
    shape: tuple[int, ...]
    valid: Box | None
    halo: tuple[int, ...]
    win_size: int
    data_range: float
    t: int = 0

    def __call__(self, box: Box) -> dict[str, float]:
        read = box.grow(self.halo).clip(self.shape)
        pred = spatial_read(self.prediction, read, self.channel, self.t)
        truth = spatial_read(self.truth, read, 0, self.t)
        inner = box.relative_to(read)
        diff = pred[inner].astype(np.float64) - truth[inner].astype(np.float64)
        out = {"sse": float(np.square(diff).sum()), "n": box.size, "ssim_sum": 0.0, "ssim_n": 0}
        window = box.intersect(self.valid) if self.valid is not None else None
        if window is not None and not window.empty:
            out["ssim_sum"] = ssim_sum(pred, truth, data_range=self.data_range,
                                       win_size=self.win_size, axes=[h > 0 for h in self.halo],
                                       crop=window.relative_to(read))
            out["ssim_n"] = window.size
        return out
