"""The plan of ``vol predict``: every option checked and every shape fixed, without a cluster.

:func:`plan_predict` validates :class:`PredictOptions` against the input
and the model (loaded once, on the CPU, to learn its window and output
channels) and returns a frozen :class:`PredictPlan`: windows, blocks,
output image, resume layout. Nothing is written and no cluster is needed,
so every refusal comes before the first byte of output, and a plan can be
tested on its own. :func:`volumetric.ops.predict.predict` then runs it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from volumetric.engine import layout_hash
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Coord, ceil_div
from volumetric.io.cubes import read_cubes
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, with_axes
from volumetric.io.sources import Source, open_source
from volumetric.kernels.blending import BLEND_MODES, postprocess
from volumetric.kernels.inference import AMP_DTYPES
from volumetric.kernels.normalize import METHODS, affine
from volumetric.models.device import resolve_device
from volumetric.models.loading import ModelSource, cached_model
from volumetric.ops.common import NormalizedInput, normalized_input, resolve_chunks
from volumetric.ops.output import ImageOutput, check_output
from volumetric.ops.paths import absolute
from volumetric.ops.predict_tasks import probe_model
from volumetric.ops.pyramid import (
    PyramidJob,
    check_levels,
    plan_pyramid,
    pyramid_jobs,
    pyramid_layout,
)
from volumetric.windows import WindowGrid

log = logging.getLogger("volumetric")

DTYPES = ("float32", "float16", "uint8", "uint16")
DEFAULT_WINDOW = 64
DEFAULT_CHUNK = {2: 512, 3: 64}  # chunk edge by spatial dimensions: 1 MB of float32
DEFAULT_PERCENTILES = (1.0, 99.8)
REGION_TARGET_BYTES = 256 * 2**20
MIN_BLOCKS = 8
OVERLAP_WARN = 27  # windows over those without overlap: 3 per axis in 3D
OVERLAP_LIMIT = 4096  # 16 per axis in 3D: a step under 1/16 of the window


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: the model, its windows, the input channels and the stored output.

    Parameters
    ----------
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
    dtype : {"float32", "float16", "uint8", "uint16"}, optional
        Stored type (default float32). A model trained on a normalised image
        target (``vol train --target-normalize``) stores its target statistics:
        predictions are written back in the target's units, and integer types
        round and clip to their range. Otherwise uint8 scales probabilities
        0..1 to 0..255 and uint16 rounds and clips the model's values.
    threshold : float, optional
        Binary uint8 output: prediction > threshold (finite).
    clip : float, optional
        Clip predictions to ``[0, clip]`` (distance-map models); positive and finite.
    fill : float, optional
        Prediction assumed outside the listed cubes (or the mask's) and
        where no window ran, on the model's scale; stored as the array's fill value, so
        those chunks are never written. Default: ``clip`` when given (far
        from any structure), else 0.
    amp : {"bf16", "fp16"}, optional
        Mixed precision for the model (accumulation stays fp32).
    pad : bool
        Pad axes shorter than the window (as MONAI does); otherwise refuse them.
    chunks, block : sequence of int, optional
        Output chunk shape (spatial; default 64^3, or 512^2 in 2D) and block shape
        (chunk multiples; default about two windows).
    levels : int
        Pyramid levels of the output including full resolution; each level is
        the mean of the one below, or its nearest downsampling for the binary
        output of ``threshold`` (so it stays 0/1).
    """

    model: str
    weights: str | None = None
    window: tuple[int, ...] | None = None
    overlap: tuple[float, ...] = (0.5,)
    blend: str = "gaussian"
    normalize: str | None = None
    channels: tuple[int, ...] | None = None
    cubes: str | None = None
    mask: str | None = None
    batch: int = 1
    device: str = "auto"
    dtype: str | None = None
    threshold: float | None = None
    clip: float | None = None
    fill: float | None = None
    amp: str | None = None
    pad: bool = True
    chunks: tuple[int, ...] | None = None
    block: tuple[int, ...] | None = None
    levels: int = 1

    def check(self) -> None:
        """Refuse options that are wrong whatever the input.

        Raises
        ------
        InputError
            An unknown choice, a batch below 1, a clip or threshold that would
            make every output voxel the same, or options that exclude each other.
        """
        check_choice(self.blend, BLEND_MODES, "--blend")
        check_choice(self.normalize, METHODS, "--normalize")
        check_choice(self.dtype, DTYPES, "--dtype")
        check_choice(self.amp, AMP_DTYPES, "--amp")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1, got {self.batch}")
        if self.clip is not None and not 0 < self.clip < math.inf:
            raise InputError(f"--clip must be a positive finite value, got {self.clip}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise InputError(f"--threshold must be a finite value, got {self.threshold}")
        if self.threshold is not None and self.dtype not in (None, "uint8"):
            raise InputError("--threshold writes binary uint8; drop --dtype")
        if self.cubes is not None and self.mask is not None:
            raise InputError("give --cubes or --mask, not both")
        check_levels(self.levels)


@dataclass(frozen=True)
class PredictPlan:
    """A checked prediction: what to read, which windows and blocks, what to write.

    ``device`` is the device asked for, already resolved unless it is
    ``"auto"`` on an external cluster (then the workers are asked once
    connected). ``occupied`` is None for a dense run; with a ``mask`` it is
    found by a block job when the run starts.
    """

    raw: str
    out: str
    options: PredictOptions
    source: Source
    reader: NormalizedInput
    model: ModelSource
    device: str
    windows: WindowGrid
    blocks: BlockGrid
    out_channels: int
    meta: ImageMeta
    chunks: Coord
    dtype: str
    fill: float
    cube_shape: Coord | None
    occupied: frozenset[Coord] | None
    mask: Source | None
    levels: tuple[LevelSpec, ...]
    kind: str | None = None  # what the output holds, recorded for vol overlay
    unscale: tuple[tuple[float, float], ...] | None = None  # per channel (offset, scale)

    @property
    def out_shape(self) -> Coord:
        """Shape of ``out/0``: the input's time points, the model's channels, the spatial shape."""
        return (*self.time_points, self.out_channels, *self.windows.shape)

    @property
    def time_points(self) -> tuple[int, ...]:
        """``(T,)`` for a time series, predicted one time point after another; else ``()``."""
        return _time_points(self.source)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every file the run reads, which the output must stay apart from."""
        o = self.options
        return tuple(p for p in (self.raw, self.mask and self.mask.path, o.cubes) if p)

    @property
    def downsampling(self) -> str:
        """How pyramid levels are reduced: nearest for a thresholded (binary) output, else mean."""
        return "nearest" if self.options.threshold is not None else "mean"

    def pyramid(self) -> list[PyramidJob]:
        """The block jobs writing levels 1, 2, ... once level 0 is complete."""
        return pyramid_jobs(self.out, self.levels, self.chunks, np.dtype(self.dtype).itemsize,
                            None, self.downsampling)

    def layout(self) -> dict[str, Any]:
        """Everything that determines the output, for resume."""
        o = self.options
        return {
            "operation": "predict",
            "source": self.source.identity(),
            "channels": list(self.reader.channels) if self.reader.channels is not None else None,
            "model": self.model.identity(),
            "window": list(self.windows.window),
            "overlap": list(self.windows.overlap),
            "blend": o.blend,
            "normalize": self.reader.method,
            "stats": [dict(s) for s in self.reader.stats],
            "amp": o.amp,
            "cubes": (layout_hash({"cubes": sorted(self.occupied)})
                      if self.occupied is not None else None),
            "mask": self.mask.identity() if self.mask is not None else None,
            "cube_shape": list(self.cube_shape) if self.cube_shape else None,
            "block": list(self.blocks.block),
            "chunks": list(self.chunks),
            "dtype": self.dtype,
            "unscale": [list(u) for u in self.unscale] if self.unscale else None,
            "threshold": o.threshold,
            "clip": o.clip,
            "fill": self.fill,
            **pyramid_layout(self.levels, self.pyramid()),
        }

    def output(self) -> ImageOutput:
        """The output image, created empty with the fill value as its chunks' default."""
        o = self.options
        stored_fill = postprocess(np.full((self.out_channels, 1), self.fill, np.float32),
                                  dtype=self.dtype, clip=o.clip, threshold=o.threshold,
                                  unscale=self.unscale)[0, 0]

        attrs = {"kind": self.kind} if self.kind else {}
        if self.downsampling != "mean":
            attrs["downsample"] = self.downsampling

        def create() -> None:
            create_image(self.out, self.meta, self.levels, dtype=self.dtype, chunks=self.chunks,
                         fill_value=stored_fill, extra_attrs=attrs or None)

        return ImageOutput(self.out, self.layout(), create, self.inputs)


def plan_predict(raw: str, out: str, options: PredictOptions, *, local: bool,
                 overwrite: bool = False) -> PredictPlan:
    """Check ``options`` against the input and the model and fix every shape of the run.

    Parameters
    ----------
    raw, out : str
        Input volume and output image (see :func:`volumetric.ops.predict.predict`).
    options : PredictOptions
        The prediction's options.
    local : bool
        Whether the run uses the embedded cluster: ``--device`` is then
        checked against this machine.
    overwrite : bool
        Whether an existing output may be replaced (checked here, before the
        model is loaded).

    Returns
    -------
    PredictPlan

    Raises
    ------
    InputError
        Any option that does not fit the input or the model.
    DestinationError
        ``out`` may not be written.
    """
    options.check()
    raw, out = absolute(raw), absolute(out)
    mask_path = absolute(options.mask) if options.mask else None
    check_output(out, inputs=tuple(p for p in (raw, mask_path, options.cubes) if p),
                 overwrite=overwrite)
    source = open_source(raw)
    spatial_axes, shape = _spatial(source)
    times = _time_points(source)
    chosen = _channels(source, options.channels)
    model = ModelSource(absolute(options.model) if os.path.exists(options.model)
                        else options.model,  # or module:factory
                        absolute(options.weights) if options.weights else None)
    device = options.device if options.device == "auto" and not local else \
        resolve_device(options.device, check=local)
    loaded = cached_model(model, device="cpu")
    windows = _window_grid(shape, options.window, options.overlap, options.pad, loaded.window)
    out_channels = probe_model(loaded, 1 if chosen is None else len(chosen), windows.window)
    method = options.normalize or loaded.preprocess.get("normalize") or "none"
    check_choice(method, METHODS, "normalisation")
    percentiles = tuple(loaded.preprocess.get("percentiles") or DEFAULT_PERCENTILES)
    reader = normalized_input(source, chosen, method, percentiles)

    dtype = "uint8" if options.threshold is not None else (options.dtype or "float32")
    out_axes = "t" * len(times) + "c" + spatial_axes
    out_shape = (*times, out_channels, *shape)
    chunks = options.chunks or (DEFAULT_CHUNK.get(len(shape), 64),) * len(shape)
    chunk_shape = resolve_chunks(chunks, out_shape, out_axes, dtype, what="--chunks")
    spatial_chunks = chunk_shape[-len(shape):]
    block = options.block or _default_block(shape, spatial_chunks, windows.window, out_channels)
    if len(block) != len(shape) or any(b % c for b, c in zip(block, spatial_chunks)):
        raise InputError(f"--block {tuple(block)} must be a multiple of the chunks "
                         f"{spatial_chunks}")
    meta = replace(with_axes(source.meta(), out_axes),
                   channel_names=tuple(f"prediction {i}" for i in range(out_channels)))
    cube_shape, occupied = _listed_cubes(options.cubes, shape) if options.cubes else (None, None)
    mask = _open_mask(mask_path, shape) if mask_path else None
    if mask is not None:
        cube_shape = tuple(mask.chunks or (64,) * len(shape))
    fill = options.fill if options.fill is not None else (options.clip or 0.0)
    levels = tuple(plan_pyramid(out_shape, meta, options.levels))
    return PredictPlan(raw, out, options, source, reader, model, device, windows,
                       BlockGrid(shape, tuple(block)), out_channels, meta, chunk_shape, dtype,
                       float(fill), cube_shape, occupied, mask, levels,
                       _output_kind(options, loaded.output_activation),
                       _unscale(loaded.target, out_channels, options.model))


def _output_kind(options: PredictOptions, activation: str | None) -> str | None:
    """``distance`` for a clipped map, ``probability`` for a mask model, else None (unknown)."""
    if options.clip is not None:
        return "distance"
    if options.threshold is not None or activation in ("sigmoid", "softmax"):
        return "probability"
    return None


def _unscale(target: dict[str, Any], channels: int,
             model: str) -> tuple[tuple[float, float], ...] | None:
    """Per output channel ``(offset, scale)`` writing the trained target's units, or None."""
    method = target.get("normalize") or "none"
    if method == "none":
        return None
    stats = target.get("stats") or []
    if len(stats) != channels:
        raise InputError(f"{model} stores target statistics for {len(stats)} channels but "
                         f"outputs {channels}")
    return tuple(affine(s, method) for s in stats)


def _time_points(source: Source) -> tuple[int, ...]:
    return (source.shape[source.axes.index("t")],) if "t" in source.axes else ()


def _spatial(source: Source) -> tuple[str, Coord]:
    spatial = "".join(a for a in source.axes if a not in "tc")
    return spatial, tuple(s for a, s in zip(source.axes, source.shape) if a not in "tc")


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
