"""volumetric: out-of-core microscopy volumes as OME-Zarr, processed block-wise on dask.

Every ``vol`` command is a function here, with the same defaults and results::

    import volumetric

    with volumetric.cluster(workers=2):     # one cluster for every call in the block
        volumetric.convert("brain.h5", "brain.zarr")
        volumetric.distance("mask.zarr", "distance.zarr", clip=10)

Operations are imported on first use, so ``import volumetric`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from volumetric._version import __version__
from volumetric.geometry import BlockGrid, Box

# public name -> "module:attribute"
_LAZY = {
    "cluster": "volumetric.engine.cluster:SharedCluster",
    "RunOptions": "volumetric.engine.operation:RunOptions",
    "align": "volumetric.ops.align:align",
    "convert": "volumetric.ops.convert:convert",
    "info": "volumetric.ops.info:image_info",
    "image_info": "volumetric.ops.info:image_info",
    "discover": "volumetric.ops.discover:discover",
    "label": "volumetric.ops.label:label",
    "distance": "volumetric.ops.distance:distance",
    "render": "volumetric.ops.render:render",
    "project": "volumetric.ops.project:project",
    "predict": "volumetric.ops.predict:predict",
    "PredictOptions": "volumetric.ops.predict_plan:PredictOptions",
    "train": "volumetric.ops.train:train",
    "train_matcher": "volumetric.ops.train_matcher:train_matcher",
    "MatcherData": "volumetric.ops.train_matcher:MatcherData",
    "DataSettings": "volumetric.ops.train:DataSettings",
    "ModelChoice": "volumetric.ops.train:ModelChoice",
    "TrainSettings": "volumetric.train.loop:TrainSettings",
    "AugmentConfig": "volumetric.kernels.augment:AugmentConfig",
    "evaluate": "volumetric.ops.evaluate:evaluate",
    "export": "volumetric.ops.export:export",
    "overlay": "volumetric.ops.overlay:overlay",
    "patches": "volumetric.ops.patches:patch_gallery",
}

__all__ = ["BlockGrid", "Box", "__version__", *sorted(_LAZY)]

if TYPE_CHECKING:
    from volumetric.engine.cluster import SharedCluster as cluster
    from volumetric.engine.operation import RunOptions
    from volumetric.kernels.augment import AugmentConfig
    from volumetric.ops.align import align
    from volumetric.ops.convert import convert
    from volumetric.ops.discover import discover
    from volumetric.ops.distance import distance
    from volumetric.ops.evaluate import evaluate
    from volumetric.ops.export import export
    from volumetric.ops.info import image_info
    from volumetric.ops.info import image_info as info
    from volumetric.ops.label import label
    from volumetric.ops.overlay import overlay
    from volumetric.ops.patches import patch_gallery as patches
    from volumetric.ops.predict import predict
    from volumetric.ops.predict_plan import PredictOptions
    from volumetric.ops.project import project
    from volumetric.ops.render import render
    from volumetric.ops.train import DataSettings, ModelChoice, train
    from volumetric.ops.train_matcher import MatcherData, train_matcher
    from volumetric.train.loop import TrainSettings


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'volumetric' has no attribute {name!r}")
    module, attribute = _LAZY[name].split(":")
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
