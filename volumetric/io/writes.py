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

    Raises
    ------
    DestinationError
        When the disk holding ``array`` is full.
    """
    import zarr

    with writing(array):
        zarr.open_array(array, mode="r+")[index] = data
