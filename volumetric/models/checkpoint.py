"""The checkpoint format of ``vol train``, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values, never a
pickled object, so loading it cannot run code::

    {
      "format": "volumetric-checkpoint",
      "version": 1,
      "architecture": "unet3d",            # a name in volumetric.models.registry
      "model_config": {...},               # keyword arguments of the factory
      "state_dict": {...},                 # model weights
      "spatial_dims": 3,                   # 2: (N, C, Y, X) input, 3: (N, C, Z, Y, X)
      "in_channels": 1,
      "out_channels": 1,
      "preprocess": {"normalize": "percentile", ...},   # what the input expects
      "training": {...}                    # optional: optimizer state, epoch, metrics...
    }
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from volumetric.errors import InputError

FORMAT = "volumetric-checkpoint"
VERSION = 1


def save_checkpoint(
    path: str | Path,
    model: Any,
    *,
    architecture: str,
    model_config: dict[str, Any],
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    preprocess: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` and what is needed to rebuild it, atomically."""
    import torch

    payload = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture,
        "model_config": dict(model_config),
        "state_dict": model.state_dict(),
        "spatial_dims": int(spatial_dims),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "preprocess": dict(preprocess or {}),
        "training": dict(training or {}),
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), not a pickle of weights."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_weights_only(path: str | Path, *, map_location: str = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain values, never code.

    Raises
    ------
    InputError
        Missing file, a TorchScript file, an unsafe pickle, or a file torch cannot read.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if is_torchscript(path):
        raise InputError(f"{path} is a TorchScript file, not a checkpoint or state dict of "
                         "weights; give a checkpoint such as a run's model.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            f"refusing to load {path}: it holds pickled objects, not plain weights "
            "(unsafe to load); export it as TorchScript or a state dict"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable torch file ({first})") from None


def is_checkpoint(payload: Any) -> bool:
    """Whether a loaded object is a volumetric checkpoint dict."""
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def read_checkpoint(path: str | Path, *, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``).

    Raises
    ------
    InputError
        Missing file, an unsafe pickle, or a file that is not a volumetric checkpoint.
    """
    payload = load_weights_only(path, map_location=map_location)
    return check_checkpoint(payload, path)


def check_checkpoint(payload: Any, path: str | Path) -> dict[str, Any]:
    """Return ``payload`` if it is a checkpoint this version can read.

    Raises
    ------
    InputError
        Not a volumetric checkpoint, or one from a newer format.
    """
    if not is_checkpoint(payload):
        raise InputError(f"{path} is not a volumetric checkpoint")
    if payload.get("version", 0) > VERSION:
        raise InputError(f"{path} was written by a newer volumetric (format {payload['version']})")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> Any:
    """Rebuild the model of a checkpoint dict (registered or ``module:factory``) with its weights.

    Raises
    ------
    InputError
        When the weights do not fit the architecture.
    """
    from volumetric.models.factory import build_network

    model = build_network(payload["architecture"], payload["model_config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"checkpoint weights do not fit {payload['architecture']}: {first}") from None
    return model
