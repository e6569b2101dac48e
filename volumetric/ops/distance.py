"""Exact Euclidean distance maps of a binary mask, block by block on the cluster.

Distances are physical (the voxel size is the EDT sampling, so anisotropic
stacks are handled) and written as a float32 OME-Zarr image shaped like
the mask.

Boundary rule: the volume's outer faces are **not** background. A voxel's
distance is measured to the nearest target voxel inside the volume and
nothing is assumed beyond the faces, exactly as
``scipy.ndimage.distance_transform_edt`` on the whole array (and ``edt``
with ``black_border=False``). Where the whole volume holds no target voxel
the unclipped distance is ``inf``.

Clipped maps (``clip=D``) are computed block-wise: each block reads its
write box grown by a halo of ``ceil(D / spacing)`` voxels per axis. This is
exact: a voxel whose true distance is below ``D`` has its nearest target
voxel within that halo, so the block sees it; any other voxel is at least
``D`` away in the block as in the whole volume, and clips to ``D`` in both.
A block whose padded read holds no target voxel is entirely ``D``; such
blocks are not even written, because ``D`` (shaped) is the output's fill value.
Otherwise the transform runs only on the bounding box of the block's target
voxels grown by ``D``, which in a sparse volume is often much smaller.

Unclipped maps use the separable exact transform (see
:mod:`volumetric.kernels.edt_separable`) out of core: the first pass runs on
blocks spanning the whole volume along the first spatial axis and writes
squared distances along it to an intermediate Zarr array; each further pass
reads blocks spanning the volume along its axis, takes the lower envelope
of parabolas and writes the next intermediate, the last one the output.
The intermediates live in the output's ``.volumetric`` folder and are
removed when the map is complete.

``signed`` maps are negative inside the mask, ``invert`` measures the
distance to background; ``power`` and ``scale_to_clip`` shape the clipped values
into training targets (see :func:`volumetric.kernels.edt_clip.shape_distance`).

With ``levels`` above 1 the map gets pyramid levels, each the mean of the
level below (see :mod:`volumetric.ops.pyramid`), computed once the full
resolution is written.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.engine import JOURNAL_DIR, RunOptions, block_operation
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.ome import OmeImage, create_image, open_image
from volumetric.io.sources import Source
from volumetric.io.writes import write_box
from volumetric.kernels.edt_clip import (
    combine,
    distance_map,
    empty_value,
    shape_distance,
    target_masks,
)
from volumetric.kernels.edt_separable import axis_distance_sq, parabolic_envelope
from volumetric.ops.common import (
    chunks_of,
    open_input,
    small_job,
    spacing_of,
    spatial_positions,
)
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute
from volumetric.ops.pyramid import (
    plan_pyramid,
    pyramid_jobs,
    pyramid_layout,
    run_pyramid,
)

BLOCK_TARGET_BYTES = 64 * 2**20  # a clipped block's output, or an unclipped pass's
_SHOWN_VALUES = 6


def _binary_value(data: np.ndarray) -> float | None:
    """The one nonzero value of a binary mask block (None when all zero)."""
    values = np.unique(data[data != 0])
    if values.size > 1:
        shown = ", ".join(str(v) for v in [0, *values[: _SHOWN_VALUES - 1].tolist()])
        more = " ..." if values.size >= _SHOWN_VALUES else ""
        raise InputError(
            f"the mask is not binary: values {shown}{more} seen; a distance map needs 0 and "
            "one other value (threshold or select a label first)"
        )
    return values[0].item() if values.size else None


def _spatial_mask(data: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """``data != 0`` with the length-1 ``t``/``c`` axes of a block dropped."""
    return (data != 0).reshape([data.shape[i] for i in spatial])


@dataclass(frozen=True)
class ClippedDistanceBlock:
    """Block task: clipped distance map of one write box from its padded read."""

    source: Source
    array: str
    spatial: tuple[int, ...]
    spacing: tuple[float, ...]
    halo: tuple[int, ...]
    target: str
    clip: float
    power: float | None
    scale_to_clip: bool

    def __call__(self, box: Box) -> tuple[float | None, bool]:
        read = box.grow(self.halo).clip(self.source.shape)
        data = self.source.read(read)
        value = _binary_value(data)
        mask = _spatial_mask(data, self.spatial)
        inner = box.relative_to(read)
        inner_spatial = tuple(inner[i] for i in self.spatial)
        empty = empty_value(mask, self.target)
        if empty is not None and empty > 0:
            return value, False  # all at least D away: the fill value
        if empty is not None:
            dist = np.full(mask[inner_spatial].shape, empty, dtype=np.float32)
        else:
            dist = distance_map(mask, self.spacing, target=self.target,
                                within=self.clip)[inner_spatial]
        out = shape_distance(dist, clip=self.clip, power=self.power,
                             scale_to_clip=self.scale_to_clip)
        write_box(self.array, box.slices, out.reshape(box.shape))
        return value, True


@dataclass(frozen=True)
class FirstAxisPass:
    """Block task: squared distances along the first spatial axis (blocks span that axis)."""

    source: Source
    array: str
    spatial: tuple[int, ...]
    spacing: float
    kinds: tuple[str, ...]

    def __call__(self, box: Box) -> tuple[float | None, bool]:
        data = self.source.read(box)
        value = _binary_value(data)
        mask = _spatial_mask(data, self.spatial)
        out = np.stack([
            axis_distance_sq(mask if kind == "foreground" else ~mask, 0, self.spacing)
            for kind in self.kinds
        ]).astype(np.float32)
        write_box(self.array, (slice(None), *box.slices),
                  out.reshape((len(self.kinds), *box.shape)))
        return value, True


@dataclass(frozen=True)
class EnvelopePass:
    """Block task: lower envelope along one spatial axis (blocks span that axis).

    Writes the next intermediate, or, when ``target`` is set, the final map.
    """

    src: str
    dst: str
    spatial: tuple[int, ...]
    axis: int
    spacing: float
    target: str | None = None
    power: float | None = None

    def __call__(self, box: Box) -> tuple[float | None, bool]:
        import zarr

        stack = zarr.open_array(self.src, mode="r")[(slice(None), *box.slices)]
        f = stack.reshape((stack.shape[0], *[box.shape[i] for i in self.spatial]))
        env = parabolic_envelope(f, self.axis + 1, self.spacing)
        if self.target is None:
            write_box(self.dst, (slice(None), *box.slices),
                      env.astype(np.float32).reshape(stack.shape))
        else:
            dist = combine([np.sqrt(e) for e in env], self.target)
            write_box(self.dst, box.slices,
                      shape_distance(dist, power=self.power).reshape(box.shape))
        return None, True


@dataclass
class DistanceReport:
    """What :func:`distance` did."""

    image: OmeImage
    blocks: int
    blocks_written: int
    seconds: float
    resumed: bool


def _target(signed: bool, invert: bool) -> str:
    if signed:
        return "signed-inverted" if invert else "signed"
    return "background" if invert else "foreground"


def _separable_passes(
    source: Source, spatial: tuple[int, ...], spacing: tuple[float, ...], chunks: tuple[int, ...],
    target: str, power: float | None, out_array: str, scratch: Path, block_bytes: int,
) -> list[tuple[str, Any, BlockGrid]]:
    """One job per spatial axis: its task and its grid of blocks spanning that axis."""
    shape, kinds = source.shape, target_masks(target)
    jobs: list[tuple[str, Any, BlockGrid]] = []
    for k, axis in enumerate(spatial):
        last = k == len(spatial) - 1
        written_to = out_array if last else str(scratch / str(k))
        task: Any
        if k == 0:
            task = FirstAxisPass(source, written_to, spatial, spacing[0], kinds)
        else:
            task = EnvelopePass(str(scratch / str(k - 1)), written_to, spatial, k, spacing[k],
                                target if last else None, power)
        base = [shape[i] if i == axis else c for i, c in enumerate(chunks)]
        others = [i for i in spatial if i != axis]
        block = block_shape_for(shape, base, 4 * len(kinds), block_bytes, axes=others,
                                cubic=True)
        jobs.append((f"pass-{source.axes[axis]}", task, BlockGrid(shape, block)))
    return jobs


def _check_options(clip: float | None, power: float | None, scale_to_clip: bool) -> None:
    if clip is not None and not 0 < clip < math.inf:
        raise InputError(f"--clip must be a positive distance, got {clip} "
                         "(leave it out for the unclipped map)")
    if power is not None and not 0 < power < math.inf:
        raise InputError(f"--power must be positive, got {power}")
    if scale_to_clip and clip is None:
        raise InputError("--normalize needs --clip (values are divided by the clipped maximum)")


def distance(
    src: str,
    dst: str,
    *,
    clip: float | None = None,
    signed: bool = False,
    invert: bool = False,
    power: float | None = None,
    scale_to_clip: bool = False,
    levels: int = 1,
    run: RunOptions = RunOptions(),
) -> DistanceReport:
    """Write the Euclidean distance map of the binary mask ``src`` to the OME-Zarr image ``dst``.

    Parameters
    ----------
    src : str
        The mask (OME-Zarr, Zarr, HDF5 or .npy); 0 is background, the one
        other value foreground. Every ``t``/``c`` is transformed separately.
    dst : str
        Output OME-Zarr image, float32, same shape, voxel size and unit.
    clip : float, optional
        Clip distances at this physical distance (block-wise with a halo);
        without it the exact unclipped map is computed in separable passes.
    signed : bool
        Negative distances inside the mask.
    invert : bool
        Distance to the background instead of the foreground.
    power : float, optional
        Raise magnitudes to this power after clipping.
    scale_to_clip : bool
        Divide by ``clip ** power`` (needs ``clip``), giving values in [-1, 1]
        (``--normalize`` of ``vol distance``).
    levels : int
        Pyramid levels including full resolution; each level is the mean of
        the one below.
    run : RunOptions
        Where and how to run; ``block_bytes``, the target size of a block's
        output, defaults to 64 MiB clipped and per pass unclipped (blocks
        are whole chunks, so small values give chunk-sized blocks), and that
        of a pyramid task's read to 16 MiB.

    Returns
    -------
    DistanceReport
    """
    _check_options(clip, power, scale_to_clip)
    src, dst = absolute(src), absolute(dst)
    source = open_input(src, what="MASK")
    spacing = spacing_of(source, what="MASK")
    meta = source.meta(spacing, name=Path(dst).name)
    spatial = tuple(spatial_positions(source.axes))
    if len(spatial) > 3:
        raise InputError(f"MASK {src} has {len(spatial)} spatial axes; at most 3 are supported")
    target = _target(signed, invert)
    shape = source.shape
    chunks = chunks_of(source, np.float32)
    specs = plan_pyramid(shape, meta, levels)
    kinds = target_masks(target)
    out_array = str(Path(dst) / "0")
    scratch = Path(dst) / JOURNAL_DIR / "passes"
    fill = 0.0
    if clip is not None:
        fill = float(shape_distance(np.float32(clip), clip=clip, power=power,
                                    scale_to_clip=scale_to_clip))
        halo = tuple(
            math.ceil(clip / spacing[spatial.index(i)]) if i in spatial else 0
            for i in range(len(shape))
        )
        task = ClippedDistanceBlock(source, out_array, spatial, spacing, halo, target, clip,
                                    power, scale_to_clip)
        block = block_shape_for(shape, chunks, 4, run.block_bytes or BLOCK_TARGET_BYTES,
                                axes=spatial, cubic=True)
        jobs = [("distance", task, BlockGrid(shape, block))]
    else:
        jobs = _separable_passes(source, spatial, spacing, chunks, target, power, out_array,
                                 scratch, run.block_bytes or BLOCK_TARGET_BYTES)
    pyramid = pyramid_jobs(dst, specs, chunks, 4, run.block_bytes, "mean")
    layout = {
        "operation": "distance",
        "source": source.identity(),
        "shape": list(shape),
        "chunks": list(chunks),
        "spacing": list(spacing),
        "target": target,
        "clip": clip,
        "power": power,
        "normalize": scale_to_clip,  # the key earlier runs stored: they still resume
        "blocks": [list(grid.block) for _, _, grid in jobs],
        **pyramid_layout(specs, pyramid),
    }

    def create() -> None:
        # for vol overlay and vol train: a distance map, shaped or not, is not an image
        create_image(dst, meta, specs, dtype=np.float32, chunks=chunks, fill_value=fill,
                     extra_attrs={"kind": "distance"})
        if clip is None:
            import zarr

            for k in range(len(spatial) - 1):
                zarr.create_array(
                    str(scratch / str(k)), shape=(len(kinds), *shape), chunks=(1, *chunks),
                    dtype=np.float32, fill_value=np.inf,
                )

    t0 = time.monotonic()
    values: set[float] = set()
    blocks = written = 0
    with block_operation(ImageOutput(dst, layout, create, (src,)), run,
                         small=small_job(source)) as op:
        for name, task, grid in jobs:
            label = name if name == "distance" else f"distance {name}"  # not "distance distance"
            results = op.run(task, list(grid.boxes()), job=name, label=label)
            blocks += grid.num_blocks
            written += sum(w for _, w in results.values())
            values.update(v for v, _ in results.values() if v is not None)
            if len(values) > 1:  # each block alone was binary; a rerun must find this again
                op.journal.forget(name)
                shown = ", ".join(str(v) for v in sorted({0, *values}))
                raise InputError(f"MASK {src} is not binary: values {shown} seen in "
                                 "different blocks")
        run_pyramid(op, pyramid, "distance")
    return DistanceReport(open_image(dst), blocks, written, time.monotonic() - t0, op.resumed)
