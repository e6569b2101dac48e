"""Loading a model for inference: TorchScript, a ``vol train`` checkpoint, or ``module:factory``.

``--model`` takes one of

- a TorchScript file (``torch.jit.save``; ``vol train``'s ``model.ts`` also
  says what it expects, see :mod:`volumetric.models.export`);
- a checkpoint written by ``vol train`` of a built-in architecture (rebuilt
  from the model registry, loaded with ``weights_only=True``);
- ``package.module:factory``, a function returning a ``torch.nn.Module``,
  optionally with ``--weights`` (a state dict or a checkpoint, also loaded
  with ``weights_only=True``); the checkpoint of a custom network loads this
  way only, since a file never makes volumetric import what it names.

Files holding pickled Python objects (``torch.save(model)``) are refused:
loading them would run arbitrary code.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from volumetric.errors import InputError
from volumetric.models.checkpoint import (
    check_checkpoint,
    is_checkpoint,
    is_torchscript,
    load_state,
    load_weights_only,
    model_from_checkpoint,
)
from volumetric.models.export import METADATA_FILE
from volumetric.models.factory import build_network
from volumetric.models.torch_messages import error_cause

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model for inference comes from: what ``--model`` and ``--weights`` name.

    Parameters
    ----------
    model : str
        A TorchScript or checkpoint file, or ``module:factory``.
    weights : str, optional
        Weights for a factory model.
    """

    model: str
    weights: str | None = None

    @property
    def is_factory(self) -> bool:
        return not os.path.exists(self.model) and bool(_FACTORY.match(self.model))

    def identity(self) -> dict[str, Any]:
        """Names, sizes and modification times: what changes when the model changes."""
        ident: dict[str, Any] = {"model": self.model, "weights": self.weights}
        for key in ("model", "weights"):
            path = getattr(self, key)
            if path and os.path.isfile(path):
                st = os.stat(path)
                ident[key] = {"path": os.path.abspath(path), "size": st.st_size,
                              "mtime_ns": st.st_mtime_ns}
        return ident


@dataclass
class LoadedModel:
    """A model ready for inference and what is known about it.

    ``in_channels``, ``out_channels``, ``spatial_dims``, ``preprocess`` (the
    input normalisation it was trained with), ``window`` (its training
    patch), ``output_activation`` (``sigmoid`` or ``softmax`` for a
    probability model) and ``target`` (the target's kind, normalisation and
    statistics, see :mod:`volumetric.train.targets`) come from checkpoints
    and ``vol train``'s TorchScript files, and are None (empty) for other models.
    """

    module: Any
    kind: str
    in_channels: int | None = None
    out_channels: int | None = None
    spatial_dims: int | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)
    window: tuple[int, ...] | None = None
    output_activation: str | None = None
    target: dict[str, Any] = field(default_factory=dict)

    def describe(self, info: dict[str, Any]) -> None:
        """Take what a checkpoint or TorchScript metadata says about the model."""
        self.in_channels = int(info["in_channels"])
        self.out_channels = int(info["out_channels"])
        self.spatial_dims = int(info["spatial_dims"])
        self.preprocess = dict(info.get("preprocess") or {})
        self.target = dict(info.get("target") or {})
        patch = info.get("patch") or (info.get("training") or {}).get("patch")
        self.window = tuple(int(p) for p in patch) if patch else None
        self.output_activation = (info.get("training") or {}).get("output_activation")


def _from_checkpoint(payload: dict[str, Any], path: str) -> LoadedModel:
    payload = check_checkpoint(payload, path)
    loaded = LoadedModel(model_from_checkpoint(payload, path), "checkpoint")
    loaded.describe(payload)
    return loaded


def _from_torchscript(path: str) -> LoadedModel:
    import torch

    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():  # deprecated in recent torch, still the common format
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except RuntimeError as exc:
        raise InputError(f"{path}: not a loadable TorchScript file ({error_cause(exc)})") from None
    loaded = LoadedModel(module, "torchscript")
    if extra[METADATA_FILE]:
        loaded.describe(json.loads(extra[METADATA_FILE]))
    return loaded


def _from_factory(spec: ModelSource) -> LoadedModel:
    """The factory's network; a checkpoint of this very factory also gives its configuration."""
    if spec.weights is None:
        return LoadedModel(build_network(spec.model, {}), "factory")
    if os.path.isfile(spec.weights) and is_torchscript(spec.weights):
        raise InputError(f"{spec.weights} is a TorchScript model; pass it as --model")
    payload = load_weights_only(spec.weights)
    checkpoint = check_checkpoint(payload, spec.weights) if is_checkpoint(payload) else None
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        state = payload["state_dict"]
    else:
        state = payload
    if not isinstance(state, dict):
        raise InputError(f"{spec.weights} holds no state dict")
    own = checkpoint is not None and checkpoint["architecture"] == spec.model
    loaded = LoadedModel(build_network(spec.model, checkpoint["model_config"] if own else {}),
                         "factory")
    if checkpoint is not None:
        loaded.describe(checkpoint)
    load_state(loaded.module, state, misfit=f"{spec.weights} does not fit {spec.model}")
    return loaded


def load_model(spec: ModelSource, *, device: Any = "cpu") -> LoadedModel:
    """Load the model ``spec`` names, in eval mode on ``device``.

    Raises
    ------
    InputError
        Missing file, unsafe pickle, unknown factory, or weights that do not fit.
    """
    import torch

    if spec.is_factory:
        loaded = _from_factory(spec)
    elif not os.path.isfile(spec.model):
        raise InputError(f"{spec.model}: no such model file (or module:factory to import)")
    elif spec.weights is not None:
        raise InputError("--weights goes with --model module:factory only")
    elif is_torchscript(spec.model):
        loaded = _from_torchscript(spec.model)
    else:
        loaded = _from_checkpoint(load_weights_only(spec.model), spec.model)
    if not isinstance(loaded.module, torch.nn.Module):
        raise InputError(f"{spec.model} did not give a torch.nn.Module")
    loaded.module = loaded.module.to(device).eval()
    return loaded


@lru_cache(maxsize=2)
def _cached(spec: ModelSource, device: str, stamp: str) -> LoadedModel:
    return load_model(spec, device=device)


def cached_model(spec: ModelSource, *, device: str = "cpu") -> LoadedModel:
    """:func:`load_model`, once per process for a given model file state and device."""
    return _cached(spec, device, repr(spec.identity()))
