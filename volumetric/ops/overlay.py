"""``vol overlay``: the raw volume brightened where the prediction finds the structure.

Two passes over the same blocks: the first finds the volume-wide peak of
``normalised raw + weight * structure weight`` (see
:mod:`volumetric.kernels.overlay`), the second writes the sum scaled so that
this peak is 65535 (grey, or RGB with the structure on its own channel).
The output is an OME-Zarr image; ``vol export`` turns it into the TIFF or
v3draw file that Fiji and Vaa3D open. With ``levels`` above 1 it gets
pyramid levels, each the mean of the level below (see
:mod:`volumetric.ops.pyramid`), for napari and neuroglancer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.ome import OmeImage, create_image, open_image, with_axes
from volumetric.io.sources import Source, ZarrSource, open_source
from volumetric.io.writes import write_box
from volumetric.kernels.overlay import COLOURS, KINDS, overlay_sum, structure_weight
from volumetric.kernels.overlay import overlay as overlay_kernel
from volumetric.ops.common import NormalizedInput, chunks_of, normalized_input, small_job
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute
from volumetric.ops.pyramid import (
    plan_pyramid,
    pyramid_jobs,
    pyramid_layout,
    run_pyramid,
)

BLOCK_TARGET_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Weighting:
    """How a prediction becomes structure weights (see :func:`structure_weight`)."""

    kind: str
    clip: float | None
    power: float
    weight: float


@dataclass(frozen=True)
class OverlayBlock:
    """Block task: the overlay sum of one spatial box; its peak, or its scaled uint16 written."""

    raw: NormalizedInput
    pred: ZarrSource
    channel: int | None
    weighting: Weighting
    peak: float | None = None
    rgb: bool = False
    colour: str = "green"
    array: str = ""

    def _inputs(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        if self.channel is None:
            prediction = self.pred.read(box)
        else:
            prediction = self.pred.read(Box((self.channel, *box.start),
                                            (self.channel + 1, *box.stop)))[0]
        w = self.weighting
        return self.raw.read(box)[0], structure_weight(prediction, kind=w.kind, clip=w.clip,
                                                       power=w.power)

    def __call__(self, box: Box) -> float:
        raw, weights = self._inputs(box)
        if self.peak is None:
            return float(overlay_sum(raw, weights, weight=self.weighting.weight).max())
        out = overlay_kernel(raw, weights, weight=self.weighting.weight, peak=self.peak,
                             rgb=self.rgb, colour=self.colour)
        write_box(self.array, (slice(None), *box.slices) if self.rgb else box.slices, out)
        return float(out.nbytes)


def _check_finite(option: str, value: float, *, zero: bool = False) -> None:
    if not (0 <= value if zero else 0 < value) or not value < math.inf:
        kind = "non-negative" if zero else "positive"
        raise InputError(f"{option} must be a {kind} finite value, got {value}")


def mismatch(pred: str, prediction: Source, raw: str, source: Source) -> str | None:
    """What differs between the prediction's grid and the raw volume's, or None.

    Compares the spatial axes, the spatial shape and the voxel size, naming
    each difference with both values.
    """
    def spatial(s: Source) -> tuple[str, tuple[int, ...]]:
        axes = "".join(a for a in s.axes if a != "c")
        return axes, tuple(n for a, n in zip(s.axes, s.shape) if a != "c")

    (p_axes, p_shape), (r_axes, r_shape) = spatial(prediction), spatial(source)
    found = []
    if p_axes != r_axes:
        found.append(f"spatial axes {p_axes} vs {r_axes}")
    elif p_shape != r_shape:
        found.append(f"{p_axes} shape {p_shape} vs {r_shape}")
    if (len(p_axes) == len(r_axes) and prediction.voxel_size and source.voxel_size
            and not np.allclose(prediction.voxel_size, source.voxel_size, rtol=1e-6)):
        found.append(f"voxel size {tuple(prediction.voxel_size)} vs {tuple(source.voxel_size)}")
    if not found:
        return None
    return f"the prediction {pred} does not match RAW {raw}: " + "; ".join(found)


def _prediction_kind(prediction: ZarrSource) -> str:
    """The kind recorded in the prediction's metadata, else ``distance``."""
    recorded = None
    try:
        recorded = (open_image(prediction.path).attrs.get("volumetric") or {}).get("kind")
    except InputError:
        pass
    return recorded if recorded in KINDS else "distance"


@dataclass
class OverlayReport:
    """What :func:`overlay` did."""

    image: OmeImage
    kind: str
    clip: float | None
    peak: float
    blocks: int
    seconds: float


def overlay(
    raw: str,
    pred: str,
    out: str,
    *,
    kind: str | None = None,
    clip: float | None = None,
    power: float = 1.0,
    weight: float = 1.0,
    channel: int = 0,
    rgb: bool = False,
    colour: str = "green",
    levels: int = 1,
    run: RunOptions = RunOptions(),
) -> OverlayReport:
    """Write the overlay of the prediction ``pred`` on ``raw`` to the OME-Zarr image ``out``.

    Parameters
    ----------
    raw : str
        Single-channel raw volume.
    pred : str
        Prediction on the same grid: ``vol predict``'s output (axes ``c`` +
        spatial) or a map without ``c`` such as ``vol distance``'s.
    out : str
        Output image, uint16: spatial axes (grey) or ``c`` + spatial (RGB).
    kind : {"distance", "probability"}, optional
        What ``pred`` holds. Default: the kind ``vol predict`` or ``vol distance``
        recorded in its metadata, else ``distance``.
    clip : float, optional
        Distance ``D`` at which the weight ``(1 - min(d, D) / D) ** power``
        reaches 0, positive and finite (default: the prediction's 99.8th
        percentile). Distances only.
    power : float
        Exponent of a distance's weight, positive and finite. Distances only.
    weight : float
        Factor of the structure weight added to the normalised raw, >= 0.
    channel : int
        Prediction channel to overlay.
    rgb : bool
        Write RGB: the raw in every channel, the weight added to ``colour`` only.
    colour : {"red", "green", "blue"}
        The structure's channel with ``rgb``.
    levels : int
        Pyramid levels including full resolution; each level is the mean of
        the one below.
    run : RunOptions
        Where and how to run; ``block_bytes`` defaults to 16 MiB of output
        (whole chunks of RAW, which the output shares; for a pyramid task, of
        what it reads).

    Returns
    -------
    OverlayReport
    """
    t0 = time.monotonic()
    check_choice(kind, KINDS, "--kind")
    check_choice(colour, COLOURS, "--color")
    _check_finite("--power", power)
    _check_finite("--weight", weight, zero=True)
    if clip is not None:
        _check_finite("--clip", clip)
    raw, pred, out = absolute(raw), absolute(pred), absolute(out)
    source = open_source(raw)
    if "t" in source.axes or ("c" in source.axes and source.shape[0] != 1):
        raise InputError(f"{raw} must be a single-channel volume without a time axis")
    spatial_axes = "".join(a for a in source.axes if a != "c")
    spatial = tuple(s for a, s in zip(source.axes, source.shape) if a != "c")
    prediction = ZarrSource(pred)
    if "t" in prediction.axes:
        raise InputError(f"the prediction {pred} has a time axis; overlay one time point")
    found = mismatch(pred, prediction, raw, source)
    if found:
        raise InputError(found)
    channels = prediction.shape[0] if "c" in prediction.axes else 1
    if not 0 <= channel < channels:
        raise InputError(f"--channel {channel}: the prediction has {channels} channel"
                         f"{'s' if channels > 1 else ''}")
    kind = kind or _prediction_kind(prediction)
    if kind == "probability" and (clip is not None or power != 1.0):
        raise InputError("--clip and --power shape distances; a probability is used as it is "
                         "(pass --kind distance for a distance map)")
    pred_channel = channel if "c" in prediction.axes else None
    if kind == "distance" and clip is None:
        clip = float(normalized_input(prediction, None if pred_channel is None else (channel,),
                                      "percentile").stats[0]["high"])
        if not 0 < clip < math.inf:
            raise InputError(f"the prediction's 99.8th percentile is {clip}, not a usable clip; "
                             "pass --clip")
    reader = normalized_input(source, (0,) if "c" in source.axes else None, "percentile")
    axes = ("c" if rgb else "") + spatial_axes
    out_shape = ((3,) if rgb else ()) + spatial
    spatial_chunks = tuple(c for a, c in zip(source.axes, chunks_of(source, np.uint16)) if a != "c")
    chunks = ((1,) if rgb else ()) + spatial_chunks
    itemsize = 2 * (3 if rgb else 1)
    block = block_shape_for(spatial, spatial_chunks, itemsize,
                            run.block_bytes or BLOCK_TARGET_BYTES)
    weighting = Weighting(kind, clip, power, weight)
    meta = with_axes(source.meta(), axes)
    specs = plan_pyramid(out_shape, meta, levels)
    pyramid = pyramid_jobs(out, specs, chunks, 2, run.block_bytes, "mean")
    layout = {"operation": "overlay", "raw": source.identity(), "pred": prediction.identity(),
              "channel": channel, "kind": kind, "clip": clip, "power": power, "weight": weight,
              "rgb": rgb, "colour": colour, "chunks": list(chunks), "block": list(block),
              **pyramid_layout(specs, pyramid)}

    def create() -> None:
        create_image(out, meta, specs, dtype=np.uint16, chunks=chunks)

    boxes = list(BlockGrid(spatial, block).boxes())
    survey = OverlayBlock(reader, prediction, pred_channel, weighting)
    with block_operation(ImageOutput(out, layout, create, (raw, pred)), run,
                         small=small_job(source, prediction)) as op:
        peaks = op.run(survey, boxes, job="peak", label="overlay peak", journaled=False)
        peak = max(peaks.values())
        task = OverlayBlock(reader, prediction, pred_channel, weighting, peak, rgb, colour,
                            f"{out}/0")
        op.run(task, boxes, job="overlay")
        run_pyramid(op, pyramid, "overlay")
    return OverlayReport(open_image(out), kind, clip, peak, len(boxes), time.monotonic() - t0)
