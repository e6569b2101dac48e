"""Seamless, sparse-aware, resumable sliding-window inference on the cluster.

Windows lie on one global grid placed as MONAI places them (see
:mod:`volumetric.windows`). The run has two block jobs, both journaled:

1. ``windows``: each block that owns windows evaluates them once and stores
   its fp32 weighted sum and weight sum over its region in
   ``OUT/.volumetric/partials/`` (one file per block, written by that block
   alone);
2. ``blend``: each output block sums the few partial regions overlapping it,
   normalises by the summed weights, post-processes and writes its chunks
   once.

The result equals MONAI's ``sliding_window_inference`` on the whole volume,
whatever the block size or worker count; the scratch files are removed once
the output is complete.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from volumetric.engine import (
    ask_workers,
    check_cluster,
    check_resources,
    layout_hash,
    run_blocks,
    session,
)
from volumetric.engine.cluster import scheduler_address
from volumetric.engine.journal import JOURNAL_DIR
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Coord, block_shape_for, ceil_div
from volumetric.io.cubes import read_cubes
from volumetric.io.ome import LevelSpec, OmeImage, create_image, open_image, with_axes
from volumetric.io.sources import Source, open_source
from volumetric.kernels.blending import BLEND_MODES, postprocess
from volumetric.kernels.inference import AMP_DTYPES
from volumetric.kernels.normalize import METHODS
from volumetric.models.device import auto_device, cuda_available, resolve_device
from volumetric.models.loading import ModelSource, cached_model
from volumetric.ops.common import normalized_input, resolve_chunks
from volumetric.ops.output import check_output, complete_output, open_output
from volumetric.ops.paths import absolute
from volumetric.ops.predict_tasks import BlendBlock, EvaluateWindows, OccupiedCubes, probe_model
from volumetric.windows import WindowGrid, WindowPlan

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("volumetric")

DTYPES = ("float32", "float16", "uint8")
DEFAULT_WINDOW = 64
DEFAULT_CHUNK = {2: 512, 3: 64}  # chunk edge by spatial dimensions: 1 MB of float32
DEFAULT_PERCENTILES = (1.0, 99.8)
REGION_TARGET_BYTES = 256 * 2**20
MIN_BLOCKS = 8
OVERLAP_WARN = 27  # windows over those without overlap: 3 per axis in 3D
OVERLAP_LIMIT = 4096  # 16 per axis in 3D: a step under 1/16 of the window
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


def _spatial(source: Source, raw: str) -> tuple[str, Coord]:
    if "t" in source.axes:
        raise InputError(f"{raw} has a time axis; predict one time point at a time")
    spatial = "".join(a for a in source.axes if a != "c")
    return spatial, tuple(s for a, s in zip(source.axes, source.shape) if a != "c")


def _channels(source: Source, channels: Sequence[int] | None) -> tuple[int, ...] | None:
    if "c" not in source.axes:
        if channels not in (None, (0,), [0]):
            raise InputError(f"--channels {list(channels or [])}: the input has no channel axis")
        return None
    n = source.shape[source.axes.index("c")]
    chosen = tuple(range(n)) if channels is None else tuple(int(c) for c in channels)
    if not chosen or any(not 0 <= c < n for c in chosen):
        raise InputError(f"--channels {list(chosen)}: the input has channels 0..{n - 1}")
    return chosen


def _check_outputs(clip: float | None, threshold: float | None) -> None:
    """Refuse a clip or threshold that would make every output voxel the same."""
    if clip is not None and not 0 < clip < math.inf:
        raise InputError(f"--clip must be a positive finite value, got {clip}")
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite value, got {threshold}")


def _check_overlap(grid: WindowGrid) -> None:
    """Refuse an overlap whose window step is under one voxel or whose windows are absurdly many.

    Warns when the windows are over ``OVERLAP_WARN`` times as many as without
    overlap, and refuses them over ``OVERLAP_LIMIT`` times.
    """
    shown = ",".join(f"{o:g}" for o in dict.fromkeys(grid.overlap))
    for size, w, o in zip(grid.shape, grid.window, grid.overlap):
        if max(size, w) > w > 1 and int(w * (1 - o)) < 1:
            raise InputError(f"--overlap {shown}: the window step of a {w}-voxel window would be "
                             f"under one voxel; use at most {1 - 1 / w:g}")
    factor = grid.count / WindowGrid(grid.shape, grid.window, (0.0,)).count
    if factor > OVERLAP_LIMIT:
        raise InputError(f"--overlap {shown}: {grid.count} windows, {factor:.0f}x as many as "
                         f"without overlap (at most {OVERLAP_LIMIT}x); use a smaller overlap")
    if factor > OVERLAP_WARN:
        log.warning("--overlap %s: %d windows, %.0fx as many as without overlap",
                    shown, grid.count, factor)


def _window_grid(shape: Coord, window: Sequence[int] | None, overlap: Sequence[float],
                 pad: bool, trained: Sequence[int] | None) -> WindowGrid:
    window = tuple(window or trained or (DEFAULT_WINDOW,) * len(shape))
    if len(window) != len(shape):
        raise InputError(f"--window has {len(window)} values for a {len(shape)}D volume {shape}")
    try:
        grid = WindowGrid(shape, window, tuple(overlap))
    except ValueError as exc:
        raise InputError(f"--window/--overlap: {exc}") from None
    if grid.padded_axes and not pad:
        axis = grid.padded_axes[0]
        raise InputError(
            f"window {window} is larger than the volume {shape} along axis {axis}; "
            "use a smaller --window or allow --pad"
        )
    _check_overlap(grid)
    return grid


def _default_block(shape: Coord, chunks: Coord, window: Coord, channels: int) -> Coord:
    """Chunk multiples about two windows wide.

    Blocks shrink (by halving their longest side, never below a chunk) while
    a block's region would exceed ``REGION_TARGET_BYTES``, or, down to half a
    window, while the volume has fewer than ``MIN_BLOCKS`` blocks, so that a
    small volume still keeps several workers busy.
    """
    block = [min(ceil_div(max(2 * w, c), c) * c, ceil_div(s, c) * c)
             for s, c, w in zip(shape, chunks, window)]

    def half(axis: int) -> int:
        return max(chunks[axis], block[axis] // 2 // chunks[axis] * chunks[axis])

    while True:
        region = np.prod([b + w for b, w in zip(block, window)], dtype=np.int64)
        too_big = region * (channels + 1) * 4 > REGION_TARGET_BYTES
        too_few = np.prod([ceil_div(s, b) for s, b in zip(shape, block)]) < MIN_BLOCKS
        floor = [c if too_big else max(c, w // 2) for c, w in zip(chunks, window)]
        axes = [a for a in range(len(block)) if floor[a] <= half(a) < block[a]]
        if not (too_big or too_few) or not axes:
            return tuple(block)
        axis = max(axes, key=lambda a: block[a])
        block[axis] = half(axis)


def _listed_cubes(cubes: str, shape: Coord) -> tuple[Coord, frozenset[Coord]]:
    listed = read_cubes(cubes, shape=shape)
    return listed.cube_shape, frozenset(listed.cubes)


def _open_mask(mask: str, shape: Coord) -> Source:
    source = open_source(mask)
    if tuple(source.shape) != shape:
        raise InputError(f"the mask {mask} has shape {source.shape}, not the volume's {shape}")
    return source


def _mask_cubes(source: Source, client: Client, progress: bool) -> tuple[Coord, frozenset[Coord]]:
    """The mask's chunks holding a nonzero voxel, found by a block job."""
    shape = source.shape
    cube_shape = tuple(source.chunks or (64,) * len(shape))
    grid = BlockGrid(shape, block_shape_for(shape, cube_shape, np.dtype(source.dtype).itemsize))
    found = run_blocks(OccupiedCubes(source, cube_shape), list(grid.boxes()), client=client,
                       label="mask cubes", progress=progress)
    return cube_shape, frozenset(c for cubes in found.values() for c in cubes)


def predict(
    raw: str,
    out: str,
    *,
    model: str,
    weights: str | None = None,
    window: Sequence[int] | None = None,
    overlap: Sequence[float] = (0.5,),
    blend: str = "gaussian",
    normalize: str | None = None,
    channels: Sequence[int] | None = None,
    cubes: str | None = None,
    mask: str | None = None,
    batch: int = 1,
    device: str = "auto",
    dtype: str | None = None,
    threshold: float | None = None,
    clip: float | None = None,
    fill: float | None = None,
    amp: str | None = None,
    pad: bool = True,
    chunks: Sequence[int] | None = None,
    block: Sequence[int] | None = None,
    overwrite: bool = False,
    client: Client | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PredictReport:
    """Predict ``raw`` with a model, window by window, into the OME-Zarr image ``out``.

    Parameters
    ----------
    raw : str
        Input volume (OME-Zarr or any source :func:`~volumetric.io.sources.open_source` reads),
        axes ``[c]zyx`` or ``[c]yx``.
    out : str
        Output OME-Zarr image; ``out/0`` has axes ``c`` + the spatial axes.
    model : str
        TorchScript file, ``vol train`` checkpoint, or ``module:factory``.
    weights : str, optional
        State dict or checkpoint for a ``module:factory`` model.
    window : sequence of int, optional
        Window shape (default: the training patch recorded in the model file, else 64 per axis).
        A size-1 axis makes 2D model input.
    overlap : sequence of float
        Overlap fraction in ``[0, 1)``, one value or one per axis. A warning
        names the number of windows when they exceed 27 times those without
        overlap; over 4096 times, or with a window step under one voxel, the
        run is refused.
    blend : {"gaussian", "hann", "constant"}
        Window weights.
    normalize : {"none", "percentile", "zscore"}, optional
        Input normalisation with volume-wide statistics (default: the checkpoint's
        ``preprocess["normalize"]``, else none).
    channels : sequence of int, optional
        Input channels fed to the model, in order (default: all).
    cubes : str, optional
        Cube list from ``vol discover``: only windows touching a listed cube run.
    mask : str, optional
        A mask volume instead of ``cubes``: its chunks holding nonzero voxels are the cubes.
    batch : int
        Windows per model call.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. ``auto`` is ``cuda`` where the
        model runs: on this machine for the embedded cluster, else when some
        worker has CUDA and offers the ``GPU`` resource.
    dtype : {"float32", "float16", "uint8"}, optional
        Stored type (default float32; uint8 scales probabilities 0..1 to 0..255).
    threshold : float, optional
        Binary uint8 output: prediction > threshold (finite).
    clip : float, optional
        Clip predictions to ``[0, clip]`` (distance-map models); positive and finite.
    fill : float, optional
        Prediction assumed where no window ran (outside the listed cubes or
        the mask); stored as the array's fill value, so those chunks are never
        written. Default: ``clip`` when given (far from any structure), else 0.
    amp : {"bf16", "fp16"}, optional
        Mixed precision for the model (accumulation stays fp32).
    pad : bool
        Pad axes shorter than the window (as MONAI does); otherwise refuse them.
    chunks, block : sequence of int, optional
        Output chunk shape (spatial; default 64^3, or 512^2 in 2D) and block shape
        (chunk multiples; default about two windows).
    overwrite : bool
        Replace an existing output.
    client, cluster, workers, progress
        Where and how the block tasks run (see :func:`volumetric.ops.convert.convert`).

    Returns
    -------
    PredictReport
    """
    t0 = time.monotonic()
    check_choice(blend, BLEND_MODES, "--blend")
    check_choice(normalize, METHODS, "--normalize")
    check_choice(dtype, DTYPES, "--dtype")
    check_choice(amp, AMP_DTYPES, "--amp")
    if batch < 1:
        raise InputError(f"--batch must be at least 1, got {batch}")
    _check_outputs(clip, threshold)
    if threshold is not None and dtype not in (None, "uint8"):
        raise InputError("--threshold writes binary uint8; drop --dtype")
    if cubes is not None and mask is not None:
        raise InputError("give --cubes or --mask, not both")
    dtype = "uint8" if threshold is not None else (dtype or "float32")
    fill = float(fill if fill is not None else (clip if clip is not None else 0.0))
    stored_fill = postprocess(np.full(1, fill, np.float32), dtype=dtype, clip=clip,
                              threshold=threshold)[0]
    raw, out = absolute(raw), absolute(out)
    mask = absolute(mask) if mask else None
    check_output(out, inputs=tuple(p for p in (raw, mask, cubes) if p), overwrite=overwrite)
    source = open_source(raw)
    spatial_axes, shape = _spatial(source, raw)
    chosen = _channels(source, channels)
    n_in = 1 if chosen is None else len(chosen)
    spec = ModelSource(absolute(model) if os.path.exists(model) else model,  # or module:factory
                       absolute(weights) if weights else None)
    check_cluster(client, cluster)
    local = client is None and scheduler_address(cluster) == "local"
    # On an existing cluster, "auto" is what the workers have, asked once connected.
    ask = device == "auto" and not local
    run_device = device if ask else resolve_device(device, check=local)
    loaded = cached_model(spec, device="cpu")
    preprocess = loaded.preprocess
    windows = _window_grid(shape, window, overlap, pad, loaded.window)
    out_channels = probe_model(loaded, n_in, windows.window)
    method = normalize or preprocess.get("normalize") or "none"
    check_choice(method, METHODS, "normalisation")
    percentiles = tuple(preprocess.get("percentiles") or DEFAULT_PERCENTILES)
    reader = normalized_input(source, chosen, method, percentiles)

    out_axes = "c" + spatial_axes
    out_shape = (out_channels, *shape)
    chunks = chunks or (DEFAULT_CHUNK.get(len(shape), 64),) * len(shape)
    chunk_shape = resolve_chunks(chunks, out_shape, out_axes, dtype, what="--chunks")
    spatial_chunks = chunk_shape[1:]
    block_shape = tuple(block) if block else _default_block(shape, spatial_chunks, windows.window,
                                                            out_channels)
    if len(block_shape) != len(shape) or any(b % c for b, c in zip(block_shape, spatial_chunks)):
        raise InputError(f"--block {block_shape} must be a multiple of the chunks {spatial_chunks}")
    blocks = BlockGrid(shape, block_shape)
    meta = replace(with_axes(source.meta(), out_axes),
                   channel_names=tuple(f"prediction {i}" for i in range(out_channels)))
    cube_shape, occupied = _listed_cubes(cubes, shape) if cubes else (None, None)
    mask_source = _open_mask(mask, shape) if mask else None

    with session(client, cluster, workers, quiet=not progress,
                 gpus=_gpu_count(run_device) if local else 0) as cl:
        if ask:
            run_device = auto_device(ask_workers(cl, cuda_available), resource=GPU)
            log.info("--device auto: the model runs on the workers' %s", run_device)
        gpu = {GPU: 1} if run_device.startswith("cuda") else None
        check_resources(cl, gpu)
        if mask_source is not None:
            cube_shape, occupied = _mask_cubes(mask_source, cl, progress)
        plan = WindowPlan(windows, blocks, cube_shape, occupied)
        layout = {
            "operation": "predict",
            "source": source.identity(),
            "channels": list(chosen) if chosen is not None else None,
            "model": spec.identity(),
            "window": list(windows.window),
            "overlap": list(windows.overlap),
            "blend": blend,
            "normalize": method,
            "stats": [dict(s) for s in reader.stats],
            "amp": amp,
            "cubes": layout_hash({"cubes": sorted(occupied)}) if occupied is not None else None,
            "cube_shape": list(cube_shape) if cube_shape else None,
            "block": list(block_shape),
            "chunks": list(chunk_shape),
            "dtype": dtype,
            "threshold": threshold,
            "clip": clip,
            "fill": fill,
        }

        def create() -> None:
            create_image(out, meta, [LevelSpec("0", out_shape, (1,) * len(out_shape))],
                         dtype=dtype, chunks=chunk_shape, fill_value=stored_fill)

        journal, resumed = open_output(out, layout, create, overwrite=overwrite,
                                       inputs=tuple(p for p in (raw, mask, cubes) if p))
        if resumed:
            log.info("resuming the interrupted prediction of %s", out)
        partials = Path(out).resolve() / JOURNAL_DIR / "partials"
        partials.mkdir(parents=True, exist_ok=True)
        # the blocks with the most windows first, so that workers finish together
        evaluated = sorted(plan.evaluation_blocks(), key=lambda i: -len(plan.windows_of(i)))
        evaluate = EvaluateWindows(plan, reader, spec, run_device, blend, batch, amp,
                                   out_channels, str(partials))
        counts = run_blocks(evaluate, [blocks.box(i) for i in evaluated], client=cl,
                            journal=journal, job="windows", label="predict windows",
                            progress=progress, resources=gpu, prepare=evaluate.read_first_rows)
        written = plan.output_blocks(evaluated)
        blend_task = BlendBlock(plan, str(partials), str(Path(out).resolve() / "0"), out_channels,
                                dtype, clip, threshold, fill)
        run_blocks(blend_task, [blocks.box(i) for i in written], client=cl, journal=journal,
                   job="blend", label="predict blend", progress=progress)
    shutil.rmtree(partials)
    complete_output(out, journal)
    return PredictReport(open_image(out), run_device, plan.selected_count(), sum(counts.values()),
                         len(evaluated), len(written), time.monotonic() - t0, resumed)


def _gpu_count(device: str) -> int:
    import torch

    if device == "cuda":
        return torch.cuda.device_count()
    return 1 if device.startswith("cuda:") else 0
