"""Writing a block's output: a full disk is the destination's fault, not a bug.

Block tasks write their boxes through :func:`write_box` (Zarr arrays) or
inside :func:`writing` (other scratch files), so that a disk that fills up
during a run ends it with one line naming what was being written, instead
of a traceback from deep inside the Zarr store.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from volumetric.errors import DestinationError
from volumetric.geometry import BlockGrid

FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk (or quota) while writing ``path`` into a :class:`DestinationError`.

    Raises
    ------
    DestinationError
        ``"no space left on device writing PATH"`` (or the quota's message).
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        raise DestinationError(f"{os.strerror(exc.errno).lower()} writing {path}") from None


def write_box(array: str, index: tuple[Any, ...], data: np.ndarray) -> None:
    """Write ``data`` at ``index`` of the Zarr array stored at ``array``.

    Chunks equal to the fill value everywhere are not stored, as zarr does by
    default; when :func:`every_chunk_holds_data` shows that no chunk of the
    box is one, zarr's own full comparison of each chunk is skipped.

    Raises
    ------
    DestinationError
        When the disk holding ``array`` is full.
    """
    import zarr

    with writing(array):
        target = zarr.open_array(array, mode="r+")
        if every_chunk_holds_data(target, index, data):
            target = target.with_config({"write_empty_chunks": True})
        target[index] = data


def every_chunk_holds_data(array: Any, index: tuple[Any, ...], data: Any) -> bool:
    """Whether ``index`` covers whole chunks of ``array`` and each gets a non-fill value.

    Most chunks of a dense image differ from the fill value at their first
    voxel, so this usually reads one voxel per chunk. ``False`` means "not
    shown": a box off the chunk grid, data of another type, a sharded or
    NaN-filled array, or a chunk that is all fill value.

    Parameters
    ----------
    array : zarr.Array
        The destination.
    index : tuple of slice
        Where ``data`` goes, one slice per axis of ``array``.
    data : ndarray
        The values, of the selection's shape.

    Examples
    --------
    >>> import zarr
    >>> a = zarr.create_array({}, shape=(4, 4), chunks=(2, 2), dtype="uint8")
    >>> rows = (slice(0, 2), slice(0, 4))
    >>> every_chunk_holds_data(a, rows, np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype="uint8"))
    True
    >>> every_chunk_holds_data(a, rows, np.eye(2, 4, dtype="uint8"))
    False
    """
    fill = array.fill_value
    if (not isinstance(data, np.ndarray) or data.dtype != array.dtype
            or data.dtype.kind not in "biuf" or fill is None or fill != fill
            or array.shards is not None or not len(index) == data.ndim == array.ndim):
        return False
    for selection, size, chunk, length in zip(index, array.shape, array.chunks, data.shape):
        if not isinstance(selection, slice):
            return False
        start, stop, step = selection.indices(size)
        if step != 1 or stop - start != length or start % chunk or (stop % chunk and stop != size):
            return False
    for box in BlockGrid(data.shape, array.chunks).boxes():
        region = data[box.slices]
        if region[(0,) * region.ndim] == fill and not np.not_equal(region, fill).any():
            return False
    return True

