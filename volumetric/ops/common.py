"""Input checks and block shapes shared by the block-wise image operations."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.ome import SPATIAL_AXES
from volumetric.io.sources import Source, open_source, split_hdf5_path
from volumetric.ops.convert import default_chunks

log = logging.getLogger("volumetric")


def open_input(path: str, *, what: str) -> Source:
    """Open an image input (OME-Zarr, Zarr, HDF5, .npy) for a block-wise operation.

    Parameters
    ----------
    path : str
        The input.
    what : str
        Its role in the command line (``"MASK"``, ``"RAW"``...), for messages.
    """
    if not os.path.exists(path) and split_hdf5_path(path) is None:
        raise InputError(f"{what} {path}: no such file or folder")
    source = open_source(path)
    if any(s == 0 for s in source.shape):
        raise InputError(f"{what} {path} is empty: shape {source.shape}")
    return source


def spatial_positions(axes: str) -> list[int]:
    """Positions of the spatial axes (z, y, x) in ``axes``."""
    return [i for i, a in enumerate(axes) if a in SPATIAL_AXES]


def spacing_of(source: Source, *, what: str) -> tuple[float, ...]:
    """The voxel size of ``source`` (z, y, x), or 1 per axis with a warning when unknown."""
    n = len(spatial_positions(source.axes))
    if source.voxel_size is None:
        log.warning(
            "%s %s has no voxel size; assuming 1 per axis (isotropic, distances in voxels)",
            what, source.path,
        )
        return (1.0,) * n
    return tuple(float(v) for v in source.voxel_size)


def chunks_of(source: Source, dtype: Any) -> tuple[int, ...]:
    """Chunks for an output shaped like ``source``: its own (one ``t``/``c`` each) or ~2 MB."""
    if source.chunks is None:
        return default_chunks(source.shape, source.axes, dtype)
    return tuple(
        min(c, s) if a in SPATIAL_AXES else 1
        for a, c, s in zip(source.axes, source.chunks, source.shape)
    )


def grow_block(
    shape: Sequence[int], base: Sequence[int], axes: Sequence[int], itemsize: int,
    target_bytes: int,
) -> tuple[int, ...]:
    """Double the shortest of ``axes`` in ``base`` while the block stays under ``target_bytes``.

    Starting from whole chunks, this keeps blocks near-cubic (least halo per
    voxel) and made of whole chunks. Axes never grow beyond the volume.

    Examples
    --------
    >>> grow_block((300, 300, 300), (64, 64, 64), [0, 1, 2], 4, 16 * 2**20)
    (128, 128, 256)
    """
    block = [int(b) for b in base]
    while True:
        free = [i for i in axes if block[i] < shape[i]]
        if not free:
            return tuple(block)
        i = min(free, key=lambda j: (block[j], -j))
        if int(np.prod(block, dtype=np.int64)) * 2 * itemsize > target_bytes:
            return tuple(block)
        block[i] *= 2
