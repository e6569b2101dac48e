"""Seamless, sparse-aware, resumable sliding-window inference on the cluster.

Windows lie on one global grid placed as MONAI places them (see
:mod:`volumetric.windows`). The run's block jobs are all journaled:

1. ``windows``: each block that owns windows evaluates them once and stores
   its fp32 weighted sum and weight sum over its region in
   ``OUT/.volumetric/partials/`` (one file per block, written by that block
   alone);
2. ``blend``: each output block sums the few partial regions overlapping it,
   normalises by the summed weights, post-processes and writes its chunks
   once;
3. ``level-1``, ``level-2``...: with ``PredictOptions.levels`` above 1, each
   pyramid level from the one below: the mean, or the nearest downsampling
   of a thresholded (binary) output.

The result equals MONAI's ``sliding_window_inference`` on the whole volume,
whatever the block size or worker count; the scratch files are removed once
the output is complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from volumetric.engine import (
    Operation,
    RunOptions,
    ask_workers,
    block_operation,
    check_resources,
    current_client,
    resolve_target,
)
from volumetric.geometry import BlockGrid, Coord, block_shape_for
from volumetric.io.ome import OmeImage, open_image
from volumetric.io.sources import Source
from volumetric.models.device import auto_device, cuda_available
from volumetric.ops.predict_plan import PredictOptions, PredictPlan, plan_predict
from volumetric.ops.predict_tasks import BlendBlock, EvaluateWindows, OccupiedCubes
from volumetric.ops.pyramid import run_pyramid
from volumetric.windows import WindowPlan

log = logging.getLogger("volumetric")

GPU = "GPU"  # the worker resource held by a task driving a GPU (see engine.local_cluster)


@dataclass
class PredictReport:
    """What :func:`predict` did.

    ``device`` is where the model ran; ``evaluations`` counts the windows
    evaluated by this run (a resumed run counts only the blocks it ran);
    ``windows`` is the number the plan needs, the minimum any correct run
    evaluates.
    """

    image: OmeImage
    device: str
    windows: int
    evaluations: int
    evaluation_blocks: int
    output_blocks: int
    seconds: float
    resumed: bool


def predict(
    raw: str,
    out: str,
    options: PredictOptions,
    *,
    run: RunOptions = RunOptions(),
) -> PredictReport:
    """Predict ``raw`` with a model, window by window, into the OME-Zarr image ``out``.

    Parameters
    ----------
    raw : str
        Input volume (OME-Zarr or any source :func:`~volumetric.io.sources.open_source` reads),
        axes ``[t][c]zyx`` or ``[t][c]yx``; every time point is predicted, one after the
        other, with the normalisation statistics of the whole series.
    out : str
        Output OME-Zarr image; ``out/0`` has axes ``[t]c`` + the spatial axes.
    options : PredictOptions
        The model, its windows and the output (see :class:`PredictOptions`).
    run : RunOptions
        Where and how the block tasks run.

    Returns
    -------
    PredictReport

    Examples
    --------
    >>> from volumetric import PredictOptions, predict             # doctest: +SKIP
    >>> predict("brain.zarr", "pred.zarr", PredictOptions("unet.pt", cubes="cubes.json"))
    """
    t0 = time.monotonic()
    local = (current_client(run.client, run.cluster) is None
             and resolve_target(run.cluster).embedded)
    plan = plan_predict(raw, out, options, local=local, overwrite=run.overwrite)
    gpus = _gpu_count(plan.device) if local else 0
    with block_operation(plan.output(), run, gpus=gpus) as op:
        device = plan.device
        if device == "auto":  # an external cluster: what its workers have
            device = auto_device(ask_workers(op.client, cuda_available), resource=GPU)
            log.info("--device auto: the model runs on the workers' %s", device)
        gpu = {GPU: 1} if device.startswith("cuda") else None
        check_resources(op.client, gpu)
        windows = _window_plan(plan, op)
        # the blocks with the most windows first, so that workers finish together
        evaluated = sorted(windows.evaluation_blocks(), key=lambda i: -len(windows.windows_of(i)))
        written = windows.output_blocks(evaluated)
        evaluations = 0
        for t in range(plan.time_points[0]) if plan.time_points else [None]:
            at = "" if t is None else f"-t{t}"
            partials = str(op.scratch(f"partials{at}"))
            reader = plan.reader if t is None else replace(plan.reader, t=t)
            evaluate = EvaluateWindows(windows, reader, plan.model, device, options.blend,
                                       options.batch, options.amp, plan.out_channels, partials)
            counts = op.run(evaluate, [plan.blocks.box(i) for i in evaluated],
                            job=f"windows{at}", label=f"predict windows{at}", resources=gpu,
                            prepare=evaluate.read_first_rows)
            evaluations += sum(counts.values())
            blend = BlendBlock(windows, partials, f"{plan.out}/0", plan.out_channels, plan.dtype,
                               options.clip, options.threshold, plan.fill, plan.unscale, t)
            op.run(blend, [plan.blocks.box(i) for i in written], job=f"blend{at}",
                   label=f"predict blend{at}")
        run_pyramid(op, plan.pyramid(), "predict")
    times = plan.time_points[0] if plan.time_points else 1
    return PredictReport(open_image(plan.out), device, windows.selected_count() * times,
                         evaluations, len(evaluated) * times, len(written) * times,
                         time.monotonic() - t0, op.resumed)


def _window_plan(plan: PredictPlan, op: Operation) -> WindowPlan:
    """The windows to run: all, those of the listed cubes, or those of the mask's nonzero chunks."""
    occupied = plan.occupied
    if plan.mask is not None:
        occupied = _mask_cubes(plan.mask, plan.cube_shape, op)
    return WindowPlan(plan.windows, plan.blocks, plan.cube_shape, occupied)


def _mask_cubes(source: Source, cube_shape: Coord, op: Operation) -> frozenset[Coord]:
    """The mask's chunks holding a nonzero voxel, found by a block job in every run."""
    shape = source.shape
    grid = BlockGrid(shape, block_shape_for(shape, cube_shape, np.dtype(source.dtype).itemsize))
    found = op.run(OccupiedCubes(source, cube_shape), list(grid.boxes()), job="mask cubes",
                   journaled=False)
    return frozenset(c for cubes in found.values() for c in cubes)


def _gpu_count(device: str) -> int:
    import torch

    if device == "cuda":
        return torch.cuda.device_count()
    return 1 if device.startswith("cuda:") else 0
