"""Copy a finished mask into an image as an NGFF label image, block by block.

``label(mask, image, name)`` writes ``IMAGE/labels/NAME``: an OME-Zarr
label image (``image-label`` metadata pointing back at ``../../``) with one
level per level of IMAGE: the mask at full resolution, then the pyramid
levels by nearest-neighbour sampling (:mod:`volumetric.ops.pyramid`), and
lists NAME in the ``labels`` group. It is the one
output that lies inside an input, and it is additive: IMAGE's own arrays and
metadata are never written, only the ``labels`` group (created when missing,
its listing updated once the label is complete) and ``labels/NAME``, which
follows every other output's rules (an existing label needs ``overwrite``;
an interrupted run resumes; it is not listed until complete).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.engine import Journal, RunOptions, block_operation
from volumetric.errors import DestinationError, InputError
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.ome import SPATIAL_AXES, LevelSpec, OmeImage, create_image, open_image
from volumetric.io.sources.base import Source
from volumetric.io.writes import write_box
from volumetric.ops.common import chunks_of, open_input, small_job
from volumetric.ops.output import check_output, complete_output, open_output
from volumetric.ops.paths import absolute
from volumetric.ops.pyramid import pyramid_jobs, run_pyramid

BLOCK_TARGET_BYTES = 16 * 2**20
# NGFF labels are integers; a boolean mask is stored as uint8.
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class LabelBlock:
    """Block task: one box of the label's full-resolution level, copied from the mask.

    ``positions`` gives, for each mask axis, its label axis (None for a
    ``t`` or ``c`` axis of length 1, which the label holds with length 1 too).
    """

    source: Source
    array: str
    positions: tuple[int | None, ...]
    dtype: str

    def __call__(self, box: Box) -> int:
        start = tuple(0 if k is None else box.start[k] for k in self.positions)
        stop = tuple(n if k is None else box.stop[k]
                     for n, k in zip(self.source.shape, self.positions))
        data = self.source.read(Box(start, stop))
        data = np.ascontiguousarray(data, dtype=self.dtype).reshape(box.shape)
        write_box(self.array, box.slices, data)
        return int(np.count_nonzero(data))


@dataclass(frozen=True)
class LabelOutput:
    """``IMAGE/labels/NAME``: an image output that is listed in ``IMAGE/labels`` once complete.

    Claiming it follows :func:`~volumetric.ops.output.open_output` (the mask
    is its input); creating it first drops NAME from the listing, so a label
    being rewritten is never listed while incomplete.
    """

    path: str
    layout: dict[str, Any]
    create_label: Callable[[], None] = field(compare=False)
    inputs: tuple[str, ...] = ()

    @property
    def labels(self) -> Path:
        return Path(self.path).parent

    def claim(self, overwrite: bool) -> tuple[Journal, bool]:
        def create() -> None:
            _list_label(self.labels, Path(self.path).name, listed=False)
            self.create_label()

        return open_output(self.path, self.layout, create, overwrite=overwrite,
                           inputs=self.inputs)

    def complete(self, journal: Journal) -> None:
        complete_output(self.path, journal)
        _list_label(self.labels, Path(self.path).name, listed=True)


def _list_label(labels: Path, name: str, *, listed: bool) -> None:
    """Add ``name`` to (or drop it from) the listing of the ``labels`` group."""
    import zarr

    from volumetric.io.ngff import label_names, labels_attributes

    group = zarr.open_group(str(labels), mode="r+")
    attrs = group.attrs.asdict()
    names = [n for n in label_names(attrs) if n != name] + ([name] if listed else [])
    version = "0.5" if group.metadata.zarr_format == 3 else "0.4"
    listing = labels_attributes(names, version)
    if version == "0.5":
        listing = {"ome": {**attrs.get("ome", {}), **listing["ome"]}}
    group.attrs.update(listing)


def _ensure_labels_group(image: OmeImage) -> None:
    """Create ``IMAGE/labels`` (listing nothing) when missing."""
    import zarr

    from volumetric.io.ngff import labels_attributes

    labels = Path(image.path) / "labels"
    if not labels.exists():
        try:
            zarr.create_group(str(labels), zarr_format=3 if image.ngff == "0.5" else 2,
                              attributes=labels_attributes([], image.ngff))
        except OSError as exc:
            raise DestinationError(f"cannot write {labels}: {exc.strerror or exc}") from None


def _check(source: Source, image: OmeImage, name: str) -> str:
    """Refuse a mask that cannot label ``image``; returns the label's dtype."""
    if not _NAME.fullmatch(name):
        raise InputError(f"label name {name!r}: use letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit")
    if image.ngff not in ("0.5", "0.4"):
        raise InputError(f"IMAGE {image.path} is NGFF {image.ngff}; labels need NGFF 0.5 or 0.4")
    if not image.complete:
        raise InputError(f"IMAGE {image.path} is incomplete (an interrupted run); finish it first")
    dtype = np.dtype(np.uint8 if source.dtype == np.bool_ else source.dtype)
    if dtype.name not in LABEL_DTYPES:
        raise InputError(f"MASK {source.path} is {source.dtype}; labels are integers "
                         f"({', '.join(LABEL_DTYPES)})")
    meta = image.meta
    mask_space = "".join(a for a in source.axes if a in SPATIAL_AXES)
    mask_shape = tuple(n for a, n in zip(source.axes, source.shape) if a in SPATIAL_AXES)
    image_shape = tuple(n for a, n in zip(meta.axes, image.shape) if a in SPATIAL_AXES)
    extra = [a for a, n in zip(source.axes, source.shape) if a not in SPATIAL_AXES and n > 1]
    if mask_space != meta.spatial_axes or mask_shape != image_shape or extra:
        raise InputError(f"MASK {source.path} ({source.axes} {source.shape}) does not cover "
                         f"IMAGE {image.path} ({meta.spatial_axes} {image_shape}): the spatial "
                         "axes and shape must be the same, any t or c of length 1")
    if source.voxel_size is not None and not np.allclose(source.voxel_size, meta.voxel_size):
        raise InputError(f"MASK {source.path} has voxel size {source.voxel_size}, "
                         f"IMAGE {image.path} {meta.voxel_size}")
    return dtype.name


@dataclass
class LabelReport:
    """What :func:`label` did."""

    image: OmeImage
    blocks: int
    voxels: int
    seconds: float
    resumed: bool


def label(mask: str, image: str, name: str | None = None, *,
          run: RunOptions = RunOptions()) -> LabelReport:
    """Copy ``mask`` into ``image`` as the NGFF label image ``image/labels/name``.

    Parameters
    ----------
    mask : str
        A finished mask or label volume (OME-Zarr, Zarr, HDF5, .npy) with
        IMAGE's spatial axes and shape; integers or booleans.
    image : str
        A complete OME-Zarr image (NGFF 0.5 or 0.4). Only its ``labels``
        group is written.
    name : str, optional
        The label's name (default: the mask's file name without suffix).
    run : RunOptions
        Where and how to run; ``overwrite`` replaces an existing label of that name.

    Returns
    -------
    LabelReport
        The label image, blocks written (all levels), non-zero voxels at full resolution.
    """
    mask, image = absolute(mask), absolute(image)
    source = open_input(mask, what="MASK")
    target = open_image(image)
    name = name or Path(mask.rstrip("/")).stem
    dtype = _check(source, target, name)
    meta = replace(target.meta, channel_names=None, name=name)
    space = [i for i, a in enumerate(meta.axes) if a in SPATIAL_AXES]
    levels = [LevelSpec(lvl.path, tuple(lvl.shape[i] if i in space else 1
                                        for i in range(len(meta.axes))),
                        tuple(lvl.factors[i] if i in space else 1
                              for i in range(len(meta.axes))))
              for lvl in target.levels]
    mask_space = iter(space)
    positions = tuple(next(mask_space) if a in SPATIAL_AXES else None for a in source.axes)
    spatial_chunks = iter(c for a, c in zip(source.axes, chunks_of(source, dtype))
                          if a in SPATIAL_AXES)
    chunks = tuple(next(spatial_chunks) if i in space else 1 for i in range(len(meta.axes)))
    itemsize = np.dtype(dtype).itemsize
    grid = BlockGrid(levels[0].shape, block_shape_for(
        levels[0].shape, tuple(min(c, n) for c, n in zip(chunks, levels[0].shape)), itemsize,
        run.block_bytes or BLOCK_TARGET_BYTES, cubic=True))
    dst = str(Path(image) / "labels" / name)
    pyramid = pyramid_jobs(dst, levels, chunks, itemsize, run.block_bytes, "nearest")
    layout = {
        "operation": "label",
        "mask": source.identity(),
        "levels": [[lvl.path, list(lvl.shape), list(lvl.factors)] for lvl in levels],
        "blocks": [list(grid.block), *(list(job.grid.block) for job in pyramid)],
        "dtype": dtype,
    }

    def create() -> None:
        create_image(dst, meta, levels, dtype=dtype, chunks=chunks, ngff=target.ngff,
                     extra_attrs={"downsample": "nearest",
                                  "image_label": {"source": {"image": "../../"}}})

    if (Path(image) / "labels").exists():  # refuse before writing anything into IMAGE
        check_output(dst, inputs=(mask,), overwrite=run.overwrite)
    _ensure_labels_group(target)
    t0 = time.monotonic()
    with block_operation(LabelOutput(dst, layout, create, (mask,)), run,
                         small=small_job(source)) as op:
        task = LabelBlock(source, str(Path(dst) / levels[0].path), positions, dtype)
        voxels = sum(op.run(task, list(grid.boxes()), job=f"level-{levels[0].path}").values())
        run_pyramid(op, pyramid, "label")
    blocks = grid.num_blocks + sum(job.grid.num_blocks for job in pyramid)
    return LabelReport(open_image(dst), blocks, voxels, time.monotonic() - t0, op.resumed)
