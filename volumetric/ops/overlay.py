"""``vol overlay``: the lab's Vaa3D overlay of a predicted distance map on the raw volume.

Block by block: the raw volume is normalised with volume-wide percentiles,
the prediction is clipped, raised to a power and normalised, the two are
added and rescaled to uint16 (grey, or RGB with the prediction in red).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.ome import LevelSpec, OmeImage, create_image, open_image, with_axes
from volumetric.io.sources import ZarrSource, open_source
from volumetric.io.writes import write_box
from volumetric.kernels.overlay import overlay as overlay_kernel
from volumetric.ops.common import NormalizedInput, normalized_input, resolve_chunks
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute

BLOCK_TARGET_BYTES = 16 * 2**20


@dataclass(frozen=True)
class OverlayBlock:
    """Block task: overlay one spatial box and write it."""

    raw: NormalizedInput
    pred: ZarrSource
    channel: int
    clip: float
    power: float
    rgb: bool
    array: str

    def __call__(self, box: Box) -> int:
        channel = Box((self.channel, *box.start), (self.channel + 1, *box.stop))
        out = overlay_kernel(self.raw.read(box)[0], self.pred.read(channel)[0], clip=self.clip,
                             power=self.power, rgb=self.rgb)
        write_box(self.array, (slice(None), *box.slices) if self.rgb else box.slices, out)
        return int(out.nbytes)


def _check_positive(option: str, value: float) -> None:
    if not 0 < value < math.inf:
        raise InputError(f"{option} must be a positive finite value, got {value}")


@dataclass
class OverlayReport:
    """What :func:`overlay` did."""

    image: OmeImage
    clip: float
    blocks: int
    seconds: float


def overlay(
    raw: str,
    pred: str,
    out: str,
    *,
    clip: float | None = None,
    power: float = 1.0,
    channel: int = 0,
    rgb: bool = False,
    run: RunOptions = RunOptions(),
) -> OverlayReport:
    """Write the overlay of the prediction ``pred`` on ``raw`` to the OME-Zarr image ``out``.

    Parameters
    ----------
    raw : str
        Single-channel raw volume.
    pred : str
        Prediction image from ``vol predict`` (axes ``c`` + spatial).
    out : str
        Output image, uint16: spatial axes (grey) or ``c`` + spatial (RGB).
    clip : float, optional
        Distance clip, positive and finite (default: the prediction's 99.8th percentile).
    power : float
        Exponent of the normalised distance, positive and finite.
    channel : int
        Prediction channel to overlay.
    rgb : bool
        Write RGB instead of grey.
    run : RunOptions
        Where and how to run; ``block_bytes`` defaults to 16 MiB of output.

    Returns
    -------
    OverlayReport
    """
    t0 = time.monotonic()
    _check_positive("--power", power)
    if clip is not None:
        _check_positive("--clip", clip)
    raw, pred, out = absolute(raw), absolute(pred), absolute(out)
    source = open_source(raw)
    if "t" in source.axes or ("c" in source.axes and source.shape[0] != 1):
        raise InputError(f"{raw} must be a single-channel volume without a time axis")
    spatial_axes = "".join(a for a in source.axes if a != "c")
    spatial = tuple(s for a, s in zip(source.axes, source.shape) if a != "c")
    prediction = ZarrSource(pred)
    if prediction.axes != "c" + spatial_axes or tuple(prediction.shape[1:]) != spatial:
        raise InputError(
            f"the prediction {pred} ({prediction.axes} {prediction.shape}) does not match "
            f"{raw} ({source.axes} {source.shape})"
        )
    if not 0 <= channel < prediction.shape[0]:
        raise InputError(f"--channel {channel}: the prediction has {prediction.shape[0]} channels")
    if clip is None:
        clip = float(normalized_input(prediction, (channel,), "percentile").stats[0]["high"])
        if not 0 < clip < math.inf:
            raise InputError(f"the prediction's 99.8th percentile is {clip}, not a usable clip; "
                             "pass --clip")
    reader = normalized_input(source, (0,) if "c" in source.axes else None, "percentile")
    axes = ("c" if rgb else "") + spatial_axes
    out_shape = ((3,) if rgb else ()) + spatial
    chunks = resolve_chunks(None, out_shape, axes, np.uint16, what="chunks")
    itemsize = 2 * (3 if rgb else 1)
    block = block_shape_for(spatial, chunks[-len(spatial):], itemsize,
                            run.block_bytes or BLOCK_TARGET_BYTES)
    layout = {"operation": "overlay", "raw": source.identity(), "pred": prediction.identity(),
              "channel": channel, "clip": clip, "power": power, "rgb": rgb,
              "chunks": list(chunks), "block": list(block)}

    def create() -> None:
        create_image(out, with_axes(source.meta(), axes),
                     [LevelSpec("0", out_shape, (1,) * len(out_shape))],
                     dtype=np.uint16, chunks=chunks)

    grid = BlockGrid(spatial, block)
    task = OverlayBlock(reader, prediction, channel, clip, power, rgb, f"{out}/0")
    with block_operation(ImageOutput(out, layout, create, (raw, pred)), run) as op:
        op.run(task, list(grid.boxes()), job="overlay")
    return OverlayReport(open_image(out), clip, grid.num_blocks, time.monotonic() - t0)
