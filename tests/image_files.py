"""Writing small in-memory arrays as OME-Zarr images for tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image


def write_image(
    path, data: np.ndarray, *, axes: str | None = None, voxel_size: Sequence[float] | None = None,
    unit: str | None = "micrometer", chunks: Sequence[int] | None = None,
) -> str:
    """Write ``data`` as a complete single-level OME-Zarr image at ``path``."""
    axes = axes or {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}[data.ndim]
    n_spatial = sum(a in "zyx" for a in axes)
    meta = ImageMeta(axes, tuple(voxel_size or (1.0,) * n_spatial), unit=unit)
    create_image(path, meta, [LevelSpec("0", data.shape, (1,) * data.ndim)], dtype=data.dtype,
                 chunks=tuple(chunks or data.shape))
    import zarr

    zarr.open_array(f"{path}/0", mode="r+")[...] = data
    finalize_image(path)
    return str(path)
