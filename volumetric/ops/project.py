"""Projections along one spatial axis as a block-wise tree reduction.

Every block of the source is reduced along the axis into a partial (one
per block along that axis), then groups of at most ``fan_in`` partials are
combined level by level until a single one is left, which is the output.
Every channel and time point is projected separately. Partials live in the
output's ``.volumetric`` folder and are removed when the projection is
complete.

The projected axis is **kept with length 1**, so the output has the same
axes as the source (``tczyx`` order, NGFF-valid, the same voxel size) and
the other axes keep their lengths; e.g. a ``czyx`` stack projected along
``z`` becomes ``c, 1, y, x``.

``max``/``min`` keep the source's dtype, ``sum`` accumulates in
(u)int64/float64, ``mean`` is float32 (sums in float64, one division at
the end).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import JOURNAL_DIR, RunOptions, block_operation
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Box, block_shape_for, ceil_div
from volumetric.io.ome import CHANNEL_COLOURS, LevelSpec, OmeImage, create_image, open_image
from volumetric.io.sources import Source
from volumetric.io.writes import write_box
from volumetric.kernels.display import composite_rgb
from volumetric.kernels.projection import (
    MODES,
    combine_partials,
    finish,
    output_dtype,
    partial_dtype,
    partial_projection,
)
from volumetric.ops.common import chunks_of, open_input, small_job
from volumetric.io.destination import claim_file, replacing
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute

BLOCK_TARGET_BYTES = 32 * 2**20


@dataclass(frozen=True)
class ReduceBlock:
    """Block task: reduce ``step`` inputs along ``axis`` into one partial (or the output).

    The write box has length 1 along ``axis``; its index ``j`` there reads
    inputs ``j * step .. (j + 1) * step - 1``: voxels of the source on the
    first level, partials of the previous level (a Zarr array path) later.
    """

    src: Source | str
    dst: str
    axis: int
    step: int
    mode: str
    length: int | None = None  # set on the last level: the source's length along axis
    dtype: str | None = None

    def __call__(self, box: Box) -> int:
        import zarr

        start, stop = list(box.start), list(box.stop)
        start[self.axis] = box.start[self.axis] * self.step
        stop[self.axis] = start[self.axis] + self.step
        wanted = Box(tuple(start), tuple(stop))
        if isinstance(self.src, str):
            partials = zarr.open_array(self.src, mode="r")
            part = combine_partials(partials[wanted.clip(partials.shape).slices], self.axis,
                                    self.mode)
        else:
            part = partial_projection(self.src.read(wanted.clip(self.src.shape)), self.axis,
                                      self.mode)
        if self.length is not None:
            part = finish(part, self.mode, self.length, np.dtype(self.dtype))
        write_box(self.dst, box.slices, part)
        return int(part.size)


@dataclass
class ProjectReport:
    """What :func:`project` did."""

    image: OmeImage
    blocks: int
    levels: int
    seconds: float
    resumed: bool


def _plan(length: int, first_step: int, fan_in: int) -> list[tuple[int, int]]:
    """``(step, partials)`` of each reduction level, ending with one partial."""
    levels = [(first_step, ceil_div(length, first_step))]
    while levels[-1][1] > 1:
        levels.append((fan_in, ceil_div(levels[-1][1], fan_in)))
    return levels


def _preview(image: str, png: str, axis: int, overwrite: bool) -> None:
    """Write the projection of the first time point as an RGB PNG, one colour per channel."""
    import imageio.v3 as iio

    opened = open_image(image)
    data = opened.array(0)[...]
    axes = opened.meta.axes
    index = tuple(0 if a == "t" or i == axis else slice(None) for i, a in enumerate(axes))
    planes = data[index]
    kept = [a for i, a in enumerate(axes) if a != "t" and i != axis]
    if "c" not in kept:
        planes = planes[None]
    with replacing([png], overwrite=overwrite) as (tmp,):
        iio.imwrite(tmp, composite_rgb(planes, CHANNEL_COLOURS))


def project(
    src: str,
    dst: str,
    *,
    axis: str = "z",
    mode: str = "max",
    png: str | None = None,
    fan_in: int = 16,
    run: RunOptions = RunOptions(),
) -> ProjectReport:
    """Project ``src`` along ``axis`` into the OME-Zarr image ``dst`` (axis kept, length 1).

    Parameters
    ----------
    src : str
        The image (OME-Zarr, Zarr, HDF5 or .npy).
    dst : str
        Output OME-Zarr image.
    axis : {"z", "y", "x"}
        The projected axis.
    mode : {"max", "mean", "min", "sum"}
        The reduction.
    png : str, optional
        Also write a colour preview of the first time point (channels in
        the OME colours, percentile contrast).
    fan_in : int
        Partials combined by one task on later levels.
    run : RunOptions
        Where and how to run; ``overwrite`` also replaces an existing ``png``,
        ``block_bytes`` (a source block) defaults to 32 MiB.

    Returns
    -------
    ProjectReport
    """
    check_choice(mode, MODES, "--mode")
    if fan_in < 2:
        raise InputError(f"fan-in must be at least 2, got {fan_in}")
    src, dst = absolute(src), absolute(dst)
    source = open_input(src, what="SRC")
    if axis not in source.axes or axis not in "zyx":
        raise InputError(f"SRC {src} has axes {source.axes!r}; cannot project along {axis!r}")
    if png is not None:
        kept = "".join(a for a in source.axes if a in "zyx" and a != axis)
        if len(kept) != 2:
            raise InputError(f"--png needs a 2D projection; projecting {source.axes} along "
                             f"{axis} leaves {kept}")
        claim_file(png, inputs=(src,), outputs=(dst,), overwrite=run.overwrite,
                   suffixes=(".png",), what="--png")
    k = source.axes.index(axis)
    shape = source.shape
    chunks = chunks_of(source, source.dtype)
    itemsize = np.dtype(source.dtype).itemsize
    spatial = [i for i, a in enumerate(source.axes) if a in "zyx"]
    block = block_shape_for(shape, chunks, itemsize, run.block_bytes or BLOCK_TARGET_BYTES,
                            axes=spatial, cubic=True)
    out_shape = tuple(1 if i == k else s for i, s in enumerate(shape))
    out_chunks = tuple(1 if i == k else c for i, c in enumerate(chunks))
    levels = _plan(shape[k], block[k], fan_in)
    acc = partial_dtype(source.dtype, mode)
    dtype = output_dtype(source.dtype, mode)
    meta = source.meta(name=Path(dst).name)
    scratch = Path(dst) / JOURNAL_DIR / "partials"
    partial = [str(scratch / str(n)) for n in range(len(levels) - 1)] + [str(Path(dst) / "0")]
    layout = {
        "operation": "project",
        "source": source.identity(),
        "axis": axis,
        "mode": mode,
        "block": list(block),
        "levels": levels,
    }

    def create() -> None:
        import zarr

        create_image(dst, meta, [LevelSpec("0", out_shape, (1,) * len(shape))], dtype=dtype,
                     chunks=out_chunks)
        for path, (_, n) in zip(partial[:-1], levels):
            zarr.create_array(path, shape=tuple(n if i == k else s for i, s in enumerate(shape)),
                              chunks=tuple(1 if i == k else b for i, b in enumerate(block)),
                              dtype=acc)

    t0 = time.monotonic()
    blocks = 0
    with block_operation(ImageOutput(dst, layout, create, (src,)), run,
                         small=small_job(source)) as op:
        for level, (step, n) in enumerate(levels):
            last = level == len(levels) - 1
            task = ReduceBlock(
                source if level == 0 else partial[level - 1], partial[level], k, step, mode,
                length=shape[k] if last else None,
                dtype=str(np.dtype(source.dtype)) if last else None,
            )
            level_shape = tuple(n if i == k else s for i, s in enumerate(shape))
            grid = BlockGrid(level_shape, tuple(1 if i == k else b for i, b in enumerate(block)))
            op.run(task, list(grid.boxes()), job=f"level-{level}", label=f"project level {level}")
            blocks += grid.num_blocks
    if png is not None:
        _preview(dst, png, k, run.overwrite)
    return ProjectReport(open_image(dst), blocks, len(levels), time.monotonic() - t0, op.resumed)
