"""volumetric: out-of-core microscopy volumes as OME-Zarr, processed block-wise on dask."""

from volumetric._version import __version__
from volumetric.geometry import BlockGrid, Box
from volumetric.ops.convert import convert
from volumetric.ops.discover import discover
from volumetric.ops.distance import distance
from volumetric.ops.info import image_info
from volumetric.ops.project import project
from volumetric.ops.render import render

__all__ = [
    "BlockGrid", "Box", "__version__", "convert", "discover", "distance", "image_info",
    "project", "render",
]
