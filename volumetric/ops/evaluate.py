"""Score a prediction against ground truth, block by block.

With a threshold, the prediction becomes a mask (``> T``, or ``< T`` with
``below`` for distance maps) and is compared with the truth twice:

- voxels: Dice, IoU, precision and recall from true/false positive counts
  summed over blocks (the truth's nonzero voxels are the foreground), so the
  scores equal those of the whole volume;
- objects: the connected components of the mask and of the truth, labelled
  block by block and merged across block borders (equal to
  ``scipy.ndimage.label`` on the whole volume), matched by IoU (see
  ``kernels.objects``). A truth with more than two values is an instance
  label image: each nonzero id is one object, as it is (not split into
  components); a truth with non-integer values has no objects and is refused.

Without a threshold both are images: mean squared error, PSNR and SSIM
(skimage's, uniform window) for one data range: the one given, or the
truth's max - min. A cube list restricts the comparison to its cubes:
voxels outside them are background, objects are those inside the listed
cubes (an object leaving them is cut at their border), and SSIM averages
the valid voxels inside them (windows may read beyond the cubes).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from volumetric.engine import Operation, RunOptions, block_operation
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.cubes import read_cubes
from volumetric.io.destination import claim_file, replacing
from volumetric.io.sources import Source
from volumetric.kernels.components import merge_labels
from volumetric.kernels.scores import mask_scores
from volumetric.kernels.objects import match_objects
from volumetric.ops.common import open_input, small_job
from volumetric.ops.evaluate_blocks import CompareBlock, ImageBlock, SurveyBlock, scored_axes
from volumetric.ops.paths import absolute

BLOCK_BYTES = 16 * 2**20


def _check_options(threshold: float | None, below: bool, iou: float, connectivity: int,
                   min_size: int, data_range: float | None, win_size: int,
                   per_object: str | None) -> None:
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite value, got {threshold}")
    if below and threshold is None:
        raise InputError("--below needs --threshold")
    if not 0 < iou <= 1:
        raise InputError(f"--iou must lie in (0, 1], got {iou}")
    check_choice(str(connectivity), ("6", "18", "26"), "--connectivity")
    if min_size < 0:
        raise InputError(f"--min-size must be 0 or more voxels, got {min_size}")
    if data_range is not None and not (math.isfinite(data_range) and data_range > 0):
        raise InputError(f"--data-range must be a positive finite value, got {data_range}")
    if win_size < 3 or win_size % 2 == 0:
        raise InputError(f"--win-size must be an odd number of voxels >= 3, got {win_size}")
    if per_object is not None and threshold is None:
        raise InputError("--per-object needs --threshold (objects come from the thresholded PRED)")


def _time_point(t: int | None, **sources: Source) -> int:
    """The time point scored: ``t``, or 0 when no input is a series of several."""
    for what, source in sources.items():
        if "t" not in source.axes:
            continue
        count = source.shape[source.axes.index("t")]
        if t is None and count > 1:
            raise InputError(f"{what} has {count} time points: score one at a time with --t")
        if t is not None and not 0 <= t < count:
            raise InputError(f"--t {t} is outside {what}'s time points 0..{count - 1}")
    return t or 0


def _survey(op: Operation, truth: Source, boxes: Sequence[Box], t: int) -> dict[str, Any]:
    parts = list(op.run(SurveyBlock(truth, t), boxes, job="evaluate-survey",
                        journaled=False).values())
    values = set().union(*(p["values"] for p in parts))
    odd = [v for p in parts for v in p["non_integer"]]
    return {"min": min(p["min"] for p in parts), "max": max(p["max"] for p in parts),
            "instances": len(values) > 2, "non_integer": odd[0] if odd else None}


def _objects(parts: list[tuple[Box, dict[str, Any]]], shape: tuple[int, ...], connectivity: int,
             instances: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    """Truth sizes, truth centroid sums, predicted sizes, shared voxels and truth ids."""
    starts = [b.start for b, _ in parts]
    stops = [b.stop for b, _ in parts]
    if instances:
        t_luts, n_truth, ids = merge_labels(starts, stops, [p["n_truth"] for _, p in parts], None,
                                            shape, connectivity,
                                            keys=[p["truth_keys"] for _, p in parts])
    else:
        t_luts, n_truth, ids = merge_labels(starts, stops, [p["n_truth"] for _, p in parts],
                                            [p["truth_faces"] for _, p in parts], shape,
                                            connectivity)
    p_luts, n_pred, _ = merge_labels(starts, stops, [p["n_pred"] for _, p in parts],
                                     [p["pred_faces"] for _, p in parts], shape, connectivity)
    truth_size = np.zeros(n_truth + 1, np.int64)
    sums = np.zeros((n_truth + 1, len(shape)))
    pred_size = np.zeros(n_pred + 1, np.int64)
    codes, shared = [], []
    for (_, part), t_lut, p_lut in zip(parts, t_luts, p_luts):
        np.add.at(truth_size, t_lut, part["truth_size"])
        np.add.at(sums, t_lut, part["truth_sums"])
        np.add.at(pred_size, p_lut, part["pred_size"])
        pairs = part["pairs"]
        codes.append(t_lut[pairs[:, 0]] * (n_pred + 1) + p_lut[pairs[:, 1]])
        shared.append(pairs[:, 2])
    code, where = np.unique(np.concatenate(codes or [np.zeros(0, np.int64)]), return_inverse=True)
    voxels = np.bincount(where, weights=np.concatenate(shared or [np.zeros(0)]),
                         minlength=code.size).astype(np.int64)
    pairs = np.stack([code // (n_pred + 1), code % (n_pred + 1), voxels], axis=1)
    return truth_size, sums, pred_size, pairs, ids


def _write_per_object(path: str, axes: str, ids: np.ndarray, sizes: np.ndarray,
                      centroids: np.ndarray, best: np.ndarray, matched: np.ndarray,
                      overwrite: bool) -> None:
    with replacing([path], overwrite=overwrite) as (temp,):
        with open(temp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "size", *(f"centroid_{a}" for a in axes), "best_iou",
                             "matched"])
            for row in zip(ids, sizes, centroids, best, matched):
                writer.writerow([int(row[0]), int(row[1]), *(f"{c:.3f}" for c in row[2]),
                                 f"{row[3]:.6f}", int(row[4])])


def _mask_and_objects(op: Operation, task: CompareBlock, boxes: Sequence[Box],
                      shape: tuple[int, ...], iou: float, min_size: int,
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Voxel and object scores, and the per-object table of the kept truth objects."""
    parts = list(op.run(task, boxes, job="evaluate").items())
    n = int(sum(p["counts"]["n"] for _, p in parts))
    counts = {k: int(sum(p["counts"][k] for _, p in parts)) for k in ("tp", "fp", "fn")}
    truth_size, sums, pred_size, pairs, ids = _objects(parts, shape, task.connectivity,
                                                       task.instances)
    found = match_objects(truth_size, pred_size, pairs, iou=iou, min_size=min_size)
    kept = found["kept"]
    table = {"ids": ids[kept - 1] if ids is not None else kept, "sizes": truth_size[kept],
             "centroids": sums[kept] / truth_size[kept, None], "best": found["best_iou"],
             "matched": found["matched"]}
    objects = {**found["scores"], "iou_threshold": iou, "connectivity": task.connectivity,
               "min_size": min_size, "truth_kind": "labels" if task.instances else "mask"}
    return {**mask_scores(counts), **counts, "voxels": n, "objects": objects}, table


def _image(op: Operation, pred: Source, ref: Source, channel: int, boxes: Sequence[Box],
           shape: tuple[int, ...], data_range: float, given: bool, win_size: int, t: int,
           ) -> dict[str, Any]:
    """MSE, PSNR and SSIM (None when an axis longer than one voxel is shorter than the window)."""
    half = win_size // 2
    halo = tuple(half if s > 1 else 0 for s in shape)
    fits = any(h for h in halo) and all(s >= win_size for s, h in zip(shape, halo) if h)
    valid = Box(halo, tuple(s - h for s, h in zip(shape, halo))) if fits else None
    task = ImageBlock(pred, ref, channel, shape, valid, halo, win_size, data_range, t)
    parts = list(op.run(task, boxes, job="evaluate").values())
    n = int(sum(p["n"] for p in parts))
    mse = sum(p["sse"] for p in parts) / n
    psnr = math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)
    ssim_n = sum(p["ssim_n"] for p in parts)
    ssim = sum(p["ssim_sum"] for p in parts) / ssim_n if ssim_n else None
    return {"mse": mse, "psnr": psnr, "ssim": ssim, "data_range": data_range,
            "data_range_from": "given" if given else "truth max - min", "ssim_window": win_size,
            "voxels": n}


def evaluate(
    prediction: str,
    truth: str,
    *,
    threshold: float | None = None,
    below: bool = False,
    channel: int = 0,
    iou: float = 0.5,
    connectivity: int = 6,
    min_size: int = 0,
    data_range: float | None = None,
    win_size: int = 7,
    cubes: str | None = None,
    per_object: str | None = None,
    t: int | None = None,
    run: RunOptions = RunOptions(),
) -> dict[str, Any]:
    """Compare ``prediction`` with ``truth`` over the whole volume or the listed cubes.

    Parameters
    ----------
    prediction : str
        Image to score (e.g. ``vol predict``'s output, ``c, z, y, x``).
    truth : str
        Ground truth of the same spatial shape (axes of length 1 left out, so a
        projection lines up with a 2D image): a mask, an instance label image, or an image.
    threshold : float, optional
        Binarise the prediction (a finite value) and report mask and object
        scores; otherwise image scores.
    below : bool
        Foreground is ``prediction < threshold`` (distance maps).
    channel : int
        Prediction channel to score.
    iou : float
        Least IoU of a matched pair of objects, in (0, 1].
    connectivity : int
        6, 18 or 26: which neighbours join a connected component (4 or 8 on a single plane).
    min_size : int
        Objects smaller than this (voxels), truth or predicted, are dropped before matching.
    data_range : float, optional
        Data range of PSNR and SSIM; default: the truth's max - min.
    win_size : int
        SSIM window side (odd), over every spatial axis longer than one voxel.
    cubes : str, optional
        Cube list (``vol discover``): score only inside these cubes.
    per_object : str, optional
        CSV file to write, one row per truth object: id, size, centroid, best IoU, matched.
    t : int, optional
        Time point scored in inputs with a ``t`` axis (needed when one holds several).
    run : RunOptions
        Where and how to run (``overwrite`` applies to ``per_object``).

    Returns
    -------
    dict
        With a threshold: ``dice``, ``iou``, ``precision``, ``recall``, ``tp``,
        ``fp``, ``fn``, ``voxels`` and ``objects`` (``truth``, ``predicted``,
        ``matched``, ``precision``, ``recall``, ``f1``, ``splits``, ``merges``,
        ``mean_matched_iou`` and the settings used). Without: ``mse``,
        ``psnr``, ``ssim``, ``data_range`` (and ``data_range_from``), ``voxels``.
    """
    _check_options(threshold, below, iou, connectivity, min_size, data_range, win_size,
                   per_object)
    pred = open_input(absolute(prediction), what="PRED")
    ref = open_input(absolute(truth), what="TRUTH")
    t = _time_point(t, PRED=pred, TRUTH=ref)
    shape = tuple(pred.shape[i] for i in scored_axes(pred))
    ref_shape = tuple(ref.shape[i] for i in scored_axes(ref))
    if shape != ref_shape:
        raise InputError(f"PRED has spatial shape {shape} but TRUTH has {ref_shape}")
    n_channels = pred.shape[pred.axes.index("c")] if "c" in pred.axes else 1
    if not 0 <= channel < n_channels:
        raise InputError(f"--channel {channel} is outside PRED's {n_channels} channels")
    if per_object is not None:
        per_object = str(claim_file(per_object, inputs=(pred.path, ref.path, cubes),
                                    overwrite=run.overwrite, suffixes=(".csv",),
                                    what="--per-object"))
    if cubes is not None:
        listed = read_cubes(cubes, shape=shape)
        if not listed.cubes:
            raise InputError(f"cube list {cubes} is empty: nothing to evaluate")
        boxes = listed.boxes()
    else:
        chunks = tuple(ref.chunks[i] for i in scored_axes(ref)) if ref.chunks else shape
        block = block_shape_for(shape, [min(c, s) for c, s in zip(chunks, shape)], 8,
                                run.block_bytes or BLOCK_BYTES, cubic=True)
        boxes = list(BlockGrid(shape, block).boxes())
    with block_operation(None, run, small=small_job(pred, ref)) as op:
        survey = (_survey(op, ref, boxes, t) if threshold is not None or data_range is None
                  else None)
        if threshold is None:
            span = survey["max"] - survey["min"] if survey else 0.0
            if data_range is None and span == 0:
                raise InputError(f"TRUTH is constant ({survey['min']}): give --data-range")
            return _image(op, pred, ref, channel, boxes, shape, data_range or span,
                          data_range is not None, win_size, t)
        if survey["non_integer"] is not None:
            raise InputError(f"TRUTH holds non-integer values (e.g. {survey['non_integer']:g}): "
                             "objects need a mask or integer instance labels")
        task = CompareBlock(pred, ref, channel, threshold, below, connectivity,
                            survey["instances"], t)
        scores, table = _mask_and_objects(op, task, boxes, shape, iou, min_size)
    if per_object is not None:
        axes = "".join(ref.axes[i] for i in scored_axes(ref))
        _write_per_object(per_object, axes, **table, overwrite=run.overwrite)
    return scores
