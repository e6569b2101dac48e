"""volumetric: out-of-core microscopy volumes as OME-Zarr, processed block-wise on dask."""

from volumetric._version import __version__
from volumetric.geometry import BlockGrid, Box
from volumetric.ops.convert import convert
from volumetric.ops.info import image_info

__all__ = ["BlockGrid", "Box", "__version__", "convert", "image_info"]
